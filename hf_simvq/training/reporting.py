"""What a training run shows and leaves: codebook health for the logs, a reconstruction grid, the training curves,
and the Hub-ready output folder."""

import json
from collections import deque
from pathlib import Path

import matplotlib
import PIL.Image
import torch
from huggingface_hub import upload_folder

from ..evaluation.codebook_statistics import codebook_usage, effective_rank, token_histogram
from ..model_card import build_model_card
from ..models.simvq.image_processing_simvq import SimVQImageProcessor
from ..models.simvq.modeling_simvq import SimVQModel

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen before pyplot is imported)

GRID_MIN_WIDTH = 1024


def codebook_health(model: SimVQModel, token_window: deque) -> dict[str, float]:
    """Usage statistics of the tokens of the last steps, and the effective rank of SimVQ's `W` (VQ: the codebook)."""
    histogram = sum(token_histogram(tokens, model.config.codebook_size) for tokens in token_window)
    health = {f"train/{name}": value for name, value in codebook_usage(histogram).items()}
    health["train/window_tokens"] = int(histogram.sum())  # from every process: the window holds gathered tokens
    quantizer = model.quantize
    matrix = quantizer.embedding.weight if model.config.quantizer_type == "vq" else quantizer.projection.weight
    health["train/effective_rank"] = effective_rank(matrix)
    return health


def save_reconstruction_grid(
    model: SimVQModel, processor: SimVQImageProcessor, pixel_values: torch.Tensor, path: Path
) -> None:
    """Originals in the top row, their reconstructions below; small images are enlarged (nearest) to be seen."""
    with torch.no_grad():
        reconstructions = model(pixel_values).reconstruction
    rows = [torch.cat(list(images), dim=-1) for images in (pixel_values, reconstructions)]
    grid = processor.postprocess(torch.cat(rows, dim=-2))[0]
    scale = max(1, GRID_MIN_WIDTH // grid.width)
    grid.resize((grid.width * scale, grid.height * scale), PIL.Image.Resampling.NEAREST).save(path)


def plot_training_curves(history: list[dict], path: Path) -> None:
    """Losses, validation PSNR and the codebook health over training, one panel each."""
    panels = [
        ("Training losses", ["train/reconstruction_loss", "train/quantization_loss", "train/generator_loss"], True),
        ("Validation PSNR (EMA weights, dB)", ["validation/psnr"], False),
        ("Codebook utilization (training window)", ["train/utilization"], False),
        ("Perplexity / dead codes", ["train/perplexity", "train/dead_codes"], False),
        ("Effective rank of W", ["train/effective_rank"], False),
        ("Validation utilization", ["validation/utilization"], False),
    ]
    figure, axes = plt.subplots(2, 3, figsize=(15, 8))
    for axis, (title, keys, log_scale) in zip(axes.flat, panels, strict=True):
        for key in keys:
            points = [(entry["step"], entry[key]) for entry in history if key in entry]
            if points:
                axis.plot(*zip(*points, strict=True), marker=".", label=key.split("/")[-1])
        axis.set_title(title)
        axis.set_xlabel("step")
        if log_scale and axis.lines:
            axis.set_yscale("log")
        if axis.lines:
            axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def write_output_folder(
    output_dir: Path,
    model: SimVQModel,
    processor: SimVQImageProcessor,
    grid_images: list[torch.Tensor],
    history: list[dict],
    results: dict,
    dataset_name: str,
    training_args: dict,
    repo_id: str | None = None,
) -> None:
    """Weights, processor, evaluation, history, reconstruction grid, curves and model card: a folder for the Hub."""
    model.save_pretrained(output_dir)
    processor.save_pretrained(output_dir)
    (output_dir / "eval_results.json").write_text(json.dumps(results, indent=2))
    (output_dir / "training_history.json").write_text(json.dumps(history))
    grid = torch.stack(grid_images).to(model.device)
    save_reconstruction_grid(model, processor, grid, output_dir / "reconstructions.png")
    plot_training_curves(history, output_dir / "training_curves.png")
    card = build_model_card(
        model=model,
        eval_results=results,
        dataset_name=dataset_name,
        training_args=training_args,
        reconstruction_grid="reconstructions.png",
        model_name=output_dir.name,
        repo_id=repo_id,
    )
    card.save(output_dir / "README.md")


def push_output_folder(repo_id: str, output_dir: Path, token: str | None = None) -> None:
    """Upload the output folder, leaving out the training state (checkpoints, tracker logs)."""
    upload_folder(
        repo_id=repo_id,
        folder_path=output_dir,
        commit_message="SimVQ tokenizer trained with hf-simvq",
        ignore_patterns=["checkpoints/*", "logs/*"],
        token=token,
    )


__all__ = [
    "codebook_health",
    "plot_training_curves",
    "push_output_folder",
    "save_reconstruction_grid",
    "write_output_folder",
]
