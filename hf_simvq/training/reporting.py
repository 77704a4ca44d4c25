"""What a training run shows and leaves: codebook health for the logs, a reconstruction grid, the training curves,
and the Hub-ready output folder."""

import json
from collections import deque
from pathlib import Path

import matplotlib
import PIL.Image
import torch
from accelerate import Accelerator
from huggingface_hub import upload_folder
from torch import nn

from ..evaluation.codebook_statistics import codebook_usage, effective_rank, shrinkage_statistics, token_histogram
from ..model_card import build_model_card
from ..models.simvq.image_processing_simvq import SimVQImageProcessor
from ..models.simvq.modeling_simvq import SimVQModel

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen before pyplot is imported)

GRID_MIN_WIDTH = 1024


def codebook_health(model: nn.Module, token_window: deque, latents: torch.Tensor | None = None) -> dict[str, float]:
    """Usage statistics of the tokens of the last steps, the effective rank of SimVQ's `W` (VQ: the codebook), and
    the shrinkage statistics of the codes they used, against the step's `latents` `(B, d, …)` when given."""
    histogram = sum(token_histogram(tokens, model.config.codebook_size) for tokens in token_window)
    health = {f"train/{name}": value for name, value in codebook_usage(histogram).items()}
    health["train/window_tokens"] = int(histogram.sum())  # from every process: the window holds gathered tokens
    quantizer = model.quantize
    matrix = quantizer.embedding.weight if model.config.quantizer_type == "vq" else quantizer.projection.weight
    health["train/effective_rank"] = effective_rank(matrix)
    if latents is not None:
        latents = latents.detach().movedim(1, -1).reshape(-1, latents.shape[1])
    # `embedding` is the effective codebook on every quantizer (SimVQ: `C·Wᵀ + b` from the search cache, which the
    # next step's search then reuses: W does not change in between).
    shrinkage = shrinkage_statistics(quantizer.embedding.weight.detach(), histogram, latents)
    health.update({f"train/{name}": value for name, value in shrinkage.items()})
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


# (title, history keys, log scale): the eight panels of the training-curve plot; the second one is the modality's own.
CODEBOOK_PANELS = (
    ("Codebook utilization (training window)", ["train/utilization"], False),
    ("Perplexity / dead codes", ["train/perplexity", "train/dead_codes"], False),
    ("Effective rank of W", ["train/effective_rank"], False),
    ("Validation utilization", ["validation/utilization"], False),
    ("Spread: latents vs used codes", ["train/latent_spread", "train/code_spread", "train/mean_code_distance"], False),
    ("Shrinkage: latent spread / used-code spread", ["train/spread_ratio"], False),
)
IMAGE_PANELS = (
    ("Training losses", ["train/reconstruction_loss", "train/quantization_loss", "train/generator_loss"], True),
    ("Validation PSNR (EMA weights, dB)", ["validation/psnr"], False),
    *CODEBOOK_PANELS,
)
AUDIO_PANELS = (
    (
        "Training losses",
        ["train/mel_loss", "train/quantization_loss", "train/generator_loss", "train/feature_matching_loss"],
        True,
    ),
    ("Validation log-mel distance (EMA weights)", ["validation/mel_distance"], False),
    *CODEBOOK_PANELS,
)


def plot_training_curves(history: list[dict], path: Path, panels: tuple = IMAGE_PANELS) -> None:
    """Losses, a validation score and the codebook health over training, one panel each."""
    columns = -(-len(panels) // 2)
    figure, axes = plt.subplots(2, columns, figsize=(5 * columns, 8))
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


def training_logs(accelerator: Accelerator, losses: dict[str, torch.Tensor], learning_rate: float) -> dict[str, float]:
    """The step's losses averaged over the processes, and the learning rate, under `train/` names."""
    logs = {f"train/{name}": accelerator.reduce(value.detach(), "mean").item() for name, value in losses.items()}
    logs["train/lr"] = learning_rate
    return logs


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
    _write_curves_and_card(output_dir, model, history, results, IMAGE_PANELS, dataset_name, training_args, repo_id)


def _write_curves_and_card(
    output_dir: Path,
    model,
    history: list[dict],
    results: dict,
    panels: tuple,
    dataset_name: str,
    training_args: dict,
    repo_id: str | None,
) -> None:
    """The training curves and the model card (pointing at `reconstructions.png`): the same for every modality."""
    plot_training_curves(history, output_dir / "training_curves.png", panels)
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


def save_audio_reconstructions(
    model, clips: torch.Tensor, masks: torch.Tensor, output_dir: Path, spectrogram: nn.Module
) -> None:
    """`reconstructions.png` (each clip's waveform and log-mel spectrogram, the original above its reconstruction
    from codes) and `original_<i>.wav` / `reconstruction_<i>.wav`, trimmed to the clip's real samples."""
    import soundfile

    with torch.no_grad():
        codes = model.encode(clips.to(model.device)).audio_codes
        reconstructions = model.decode(codes).audio_values[..., : clips.shape[-1]].cpu().clamp(-1, 1)
    rate = model.config.sampling_rate
    figure, axes = plt.subplots(4, len(clips), figsize=(4 * len(clips), 9), squeeze=False)
    for column, (clip, reconstruction, mask) in enumerate(zip(clips[:, 0], reconstructions, masks, strict=True)):
        length = int(mask.sum())
        pair = (clip[:length], reconstruction[:length])
        for row, (name, waveform) in enumerate(zip(("original", "reconstruction"), pair, strict=True)):
            soundfile.write(output_dir / f"{name}_{column}.wav", waveform.numpy(), rate)
            time = torch.arange(length) / rate
            axes[2 * row, column].plot(time, waveform, linewidth=0.5)
            axes[2 * row, column].set_ylim(-1, 1)
            axes[2 * row, column].set_title(f"{name} {column}")
            axes[2 * row + 1, column].imshow(
                spectrogram(waveform[None])[0], origin="lower", aspect="auto", cmap="magma"
            )
    for axis in axes[:, 1:].flat:
        axis.set_yticks([])
    figure.tight_layout()
    figure.savefig(output_dir / "reconstructions.png", dpi=80)
    plt.close(figure)


def write_audio_output_folder(
    output_dir: Path,
    model,
    feature_extractor,
    sample_clips: dict[str, torch.Tensor],
    spectrogram: nn.Module,
    history: list[dict],
    results: dict,
    dataset_name: str,
    training_args: dict,
    repo_id: str | None = None,
) -> None:
    """The speech tokenizer's folder: weights, feature extractor, evaluation, history, waveform/spectrogram plot and
    `.wav` reconstructions of `sample_clips` (`input_values`, `padding_mask`), curves and model card."""
    model.save_pretrained(output_dir)
    feature_extractor.save_pretrained(output_dir)
    (output_dir / "eval_results.json").write_text(json.dumps(results, indent=2))
    (output_dir / "training_history.json").write_text(json.dumps(history))
    save_audio_reconstructions(
        model, sample_clips["input_values"], sample_clips["padding_mask"], output_dir, spectrogram
    )
    _write_curves_and_card(output_dir, model, history, results, AUDIO_PANELS, dataset_name, training_args, repo_id)


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
    "training_logs",
    "save_audio_reconstructions",
    "save_reconstruction_grid",
    "write_audio_output_folder",
    "write_output_folder",
]
