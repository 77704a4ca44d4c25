"""What a training run shows: codebook health for the logs, a reconstruction grid and the training curves."""

from collections import deque
from pathlib import Path

import matplotlib
import PIL.Image
import torch

from ..evaluation.codebook_statistics import codebook_usage, effective_rank, token_histogram
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


__all__ = ["codebook_health", "plot_training_curves", "save_reconstruction_grid"]
