"""Per-image PSNR and SSIM in PyTorch, shared by the `psnr`/`ssim` evaluate modules and `evaluate_tokenizer`.

Hand-written rather than taken from a library because the candidates do not fit here: `torchmetrics` is not a
dependency, and scikit-image works one numpy image at a time. The tests check SSIM against scikit-image.
"""

import torch
import torch.nn.functional as F

SSIM_WINDOW_SIZE = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def _check_pair(predictions: torch.Tensor, references: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if predictions.shape != references.shape or predictions.ndim != 4:
        raise ValueError(
            f"Expected predictions and references of the same shape (batch, channels, height, width), got "
            f"{tuple(predictions.shape)} and {tuple(references.shape)}."
        )
    return predictions.double(), references.double()


def psnr(predictions: torch.Tensor, references: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio of each image, `10·log10(data_range² / MSE)` in dB: a `(batch,)` tensor.

    Identical images give `inf`; callers average per-image values, as is usual for tokenizer benchmarks.
    """
    predictions, references = _check_pair(predictions, references)
    mse = (predictions - references).pow(2).flatten(1).mean(dim=1)
    return 10 * torch.log10(data_range**2 / mse)


def gaussian_window(size: int = SSIM_WINDOW_SIZE, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """The normalised 1-D Gaussian of Wang et al.'s SSIM (11 taps, σ = 1.5); used separably in both directions."""
    positions = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    window = torch.exp(-(positions**2) / (2 * sigma**2))
    return window / window.sum()


def ssim(predictions: torch.Tensor, references: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Structural similarity of each image (Wang et al., 2004), averaged over positions and channels: `(batch,)`.

    Gaussian 11×11 window with σ = 1.5, K1 = 0.01, K2 = 0.03, population covariances and only positions where the
    window fits inside the image: the same as `skimage.metrics.structural_similarity(..., gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False, channel_axis=0)`.
    """
    predictions, references = _check_pair(predictions, references)
    if min(predictions.shape[-2:]) < SSIM_WINDOW_SIZE:
        raise ValueError(
            f"SSIM needs images of at least {SSIM_WINDOW_SIZE}×{SSIM_WINDOW_SIZE} pixels (its Gaussian window), got "
            f"{tuple(predictions.shape[-2:])}."
        )
    channels = predictions.shape[1]
    window = gaussian_window().to(predictions.device)
    horizontal = window.view(1, 1, 1, -1).repeat(channels, 1, 1, 1)
    vertical = window.view(1, 1, -1, 1).repeat(channels, 1, 1, 1)

    def local_mean(images: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(images, horizontal, groups=channels), vertical, groups=channels)

    mean_x, mean_y = local_mean(predictions), local_mean(references)
    variance_x = local_mean(predictions * predictions) - mean_x**2
    variance_y = local_mean(references * references) - mean_y**2
    covariance = local_mean(predictions * references) - mean_x * mean_y
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    ssim_map = ((2 * mean_x * mean_y + c1) * (2 * covariance + c2)) / (
        (mean_x**2 + mean_y**2 + c1) * (variance_x + variance_y + c2)
    )
    return ssim_map.flatten(1).mean(dim=1)


__all__ = ["gaussian_window", "psnr", "ssim"]
