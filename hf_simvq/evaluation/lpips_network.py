"""LPIPS-VGG perceptual distance (Zhang et al., 2018) without torchvision.

Two sets of weights are needed, and neither may ever be replaced by random ones:

- the linear heads ("lin" layers, v0.1), which ship inside the PyPI wheels `lpips` and `torchmetrics`; the file is
  found through the installed package's path and read with `torch.load(weights_only=True)`, without importing the
  package (`lpips` imports torchvision);
- the ImageNet VGG16 backbone, which ships in no wheel: it comes from a local file (torchvision's
  `vgg16-397923af.pth` or any state dict with the same `features.*` keys) or, where there is internet, from
  torchvision's download URL through `torch.hub` (cached in `~/.cache/torch/hub/checkpoints`).

When either is missing, `load_lpips` raises `LPIPSWeightsNotFoundError` so the caller can turn the loss or metric
off with a clear message.
"""

from pathlib import Path

import torch
from torch import nn

from ..package_files import installed_package_file

VGG16_URL = "https://download.pytorch.org/models/vgg16-397923af.pth"
# torchvision's VGG16 `features` up to relu5_3 ("M" is a 2×2 max-pool); indices match its state-dict keys.
VGG16_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
# Indices in `features` of relu1_2, relu2_2, relu3_3, relu4_3 and relu5_3, the layers LPIPS compares.
LPIPS_TAPS = (3, 8, 15, 22, 29)
LPIPS_CHANNELS = (64, 128, 256, 512, 512)
# LPIPS' ScalingLayer: inputs in [-1, 1] are shifted and scaled to ImageNet statistics.
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)
LINEAR_WEIGHTS_IN_WHEELS = (
    ("lpips", "weights/v0.1/vgg.pth"),
    ("torchmetrics", "functional/image/lpips_models/vgg.pth"),
)


class LPIPSWeightsNotFoundError(FileNotFoundError):
    """LPIPS weights (VGG16 backbone or linear heads) are not available; turn the LPIPS loss/metric off."""


def lpips_linear_weights_path() -> Path:
    """The LPIPS v0.1 VGG linear heads inside an installed `lpips` or `torchmetrics` wheel."""
    for package, relative_path in LINEAR_WEIGHTS_IN_WHEELS:
        path = installed_package_file(package, relative_path)
        if path is not None:
            return path
    raise LPIPSWeightsNotFoundError(
        "The LPIPS linear heads (vgg.pth) ship in the PyPI wheels `lpips` and `torchmetrics`; install one "
        "(`pip install --no-deps lpips`) or turn the LPIPS loss off."
    )


def build_vgg16_features() -> nn.Sequential:
    """torchvision's `vgg16().features[:30]` layer for layer, so its `features.N.*` state-dict keys load as is."""
    layers: list[nn.Module] = []
    in_channels = 3
    for entry in VGG16_LAYOUT:
        if entry == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(in_channels, entry, kernel_size=3, padding=1), nn.ReLU()]
            in_channels = entry
    return nn.Sequential(*layers)


def load_vgg16_features_state_dict(vgg16_weights: str | Path | None = None, allow_download: bool = True) -> dict:
    """The `features.*` tensors of an ImageNet VGG16, from `vgg16_weights` or torchvision's URL, keys without prefix."""
    if vgg16_weights is not None:
        path = Path(vgg16_weights)
        if not path.is_file():
            raise LPIPSWeightsNotFoundError(
                f"No VGG16 weights file at {path}. Pass torchvision's vgg16-397923af.pth (from {VGG16_URL})."
            )
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    elif allow_download:
        try:
            state_dict = torch.hub.load_state_dict_from_url(
                VGG16_URL, map_location="cpu", weights_only=True, check_hash=True, progress=False
            )
        except OSError as error:  # URLError, no network, read-only cache …
            raise LPIPSWeightsNotFoundError(
                f"Could not download the VGG16 weights for LPIPS from {VGG16_URL} ({error}). Download the file "
                "where there is internet and pass its path, or turn the LPIPS loss off."
            ) from error
    else:
        raise LPIPSWeightsNotFoundError(
            "LPIPS needs ImageNet VGG16 weights: pass the path of torchvision's vgg16-397923af.pth, allow the "
            "download, or turn the LPIPS loss off."
        )
    features = {
        key.removeprefix("features."): tensor for key, tensor in state_dict.items() if key.startswith("features.")
    }
    expected = set(build_vgg16_features().state_dict())
    if not expected <= set(features):
        missing = sorted(expected - set(features))
        raise ValueError(
            f"{vgg16_weights or VGG16_URL} is not a torchvision VGG16 state dict: missing {missing[:4]}"
            f"{' …' if len(missing) > 4 else ''}. Expected keys like 'features.0.weight'."
        )
    return {key: features[key] for key in expected}


class LPIPS(nn.Module):
    """LPIPS distance between image batches in `[-1, 1]`: unit-normalised VGG16 activations at five depths, their
    squared differences weighted per channel by the linear heads, averaged over positions and summed over depths.

    All weights are frozen; gradients flow to the inputs, which is what a perceptual loss needs. Build with
    `load_lpips`, which loads real weights or refuses.
    """

    def __init__(self):
        super().__init__()
        self.register_buffer("shift", torch.tensor(LPIPS_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(LPIPS_SCALE).view(1, 3, 1, 1), persistent=False)
        self.features = build_vgg16_features()
        self.linear_heads = nn.ModuleList(nn.Conv2d(channels, 1, 1, bias=False) for channels in LPIPS_CHANNELS)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "LPIPS":
        """Always in evaluation mode: it is a fixed metric, even inside a model that is training."""
        return super().train(False)

    def _activations(self, images: torch.Tensor) -> list[torch.Tensor]:
        hidden = (images - self.shift) / self.scale
        activations = []
        for index, layer in enumerate(self.features):
            hidden = layer(hidden)
            if index in LPIPS_TAPS:
                activations.append(hidden / (hidden.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10))
        return activations

    def forward(self, predictions: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
        """`(B,)` distances between `(B, 3, H, W)` images in `[-1, 1]`."""
        if predictions.shape != references.shape or predictions.ndim != 4 or predictions.shape[1] != 3:
            raise ValueError(
                f"Expected two RGB batches of the same shape (B, 3, H, W) in [-1, 1], got {tuple(predictions.shape)} "
                f"and {tuple(references.shape)}."
            )
        distance = 0
        for head, features_a, features_b in zip(
            self.linear_heads, self._activations(predictions), self._activations(references), strict=True
        ):
            distance = distance + head((features_a - features_b).pow(2)).mean(dim=(1, 2, 3))
        return distance


def load_lpips(
    vgg16_weights: str | Path | None = None,
    linear_weights: str | Path | None = None,
    allow_download: bool = True,
) -> LPIPS:
    """LPIPS-VGG with real weights, or `LPIPSWeightsNotFoundError` saying what is missing (never random weights).

    Args:
        vgg16_weights: torchvision's `vgg16-397923af.pth` (or a state dict with its `features.*` keys); when
            unset, torchvision's URL through `torch.hub`, if `allow_download`.
        linear_weights: the LPIPS v0.1 `vgg.pth` heads; when unset, the file inside the `lpips`/`torchmetrics` wheel.
    """
    linear_path = Path(linear_weights) if linear_weights is not None else lpips_linear_weights_path()
    if not linear_path.is_file():
        raise LPIPSWeightsNotFoundError(f"No LPIPS linear-head weights at {linear_path}.")
    linear_state = torch.load(linear_path, map_location="cpu", weights_only=True)
    # The lpips package names the heads `lin{i}.model.1.weight` (a Dropout then the 1×1 conv).
    heads = {f"{index}.weight": linear_state.get(f"lin{index}.model.1.weight") for index in range(len(LPIPS_CHANNELS))}
    if any(value is None for value in heads.values()):
        raise ValueError(f"{linear_path} is not an LPIPS VGG linear-head file: expected keys 'lin0.model.1.weight' …")
    model = LPIPS()
    model.features.load_state_dict(load_vgg16_features_state_dict(vgg16_weights, allow_download))
    model.linear_heads.load_state_dict(heads)
    return model


__all__ = ["LPIPS", "LPIPSWeightsNotFoundError", "build_vgg16_features", "load_lpips", "lpips_linear_weights_path"]
