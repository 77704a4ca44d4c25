"""Multi-scale residual SimVQ: VAR's next-scale token maps (Tian et al., arXiv 2404.02905) over one SimVQ codebook.

The latent map is quantized coarse to fine: at every scale the still-unexplained residual is area-downsampled to
that scale's side, each position takes its nearest code, and the codes are upsampled back to the full latent map and
refined by a residual convolution `φ` before being added to the running reconstruction `f_hat`. All scales share one
SimVQ codebook `C·Wᵀ + b`, so a VAR transformer gets SimVQ's large, fully used vocabulary.
"""

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .quantization import QuantizerOutput, SimVQQuantizer


@dataclass
class MultiScaleQuantizerOutput(QuantizerOutput):
    """
    Args:
        quantized (`torch.FloatTensor` of shape `(batch_size, embed_dim, height, width)`):
            `f_hat`, the sum of every scale's refined codes. While gradients flow, it carries the straight-through
            estimator `z + sg(f_hat − z)`.
        indices (`torch.LongTensor` of shape `(batch_size, L)`):
            Every scale's token map flattened row-major and concatenated coarse to fine, `L = Σ side²`: VAR's
            training target `gt_BL`.
        loss (`torch.FloatTensor` of shape `()`):
            `beta·‖z − sg(f_hat)‖² + ‖sg(z) − f_hat‖²` after each scale, averaged over the scales.
        scale_indices (`list[torch.LongTensor]`, each of shape `(batch_size, side²)`):
            The same ids split by scale: VAR's `idx_Bl` list.
    """

    scale_indices: list[torch.LongTensor] | None = None


class Phi(nn.Conv2d):
    """VAR's residual refiner `φ(h) = (1 − r)·h + r·conv3×3(h)`: smooths the blockiness of upsampled coarse codes."""

    def __init__(self, embed_dim: int, residual_ratio: float):
        super().__init__(embed_dim, embed_dim, kernel_size=3, padding=1)
        self.residual_ratio = residual_ratio

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        return codes * (1 - self.residual_ratio) + super().forward(codes) * self.residual_ratio


def shared_phi_assignment(num_scales: int, num_shared_phi: int) -> list[int]:
    """Which of the `num_shared_phi` refiners serves each scale: the one whose tick is nearest the scale's position.

    As VAR's `PhiPartiallyShared`: scale `i` sits at `i / (num_scales − 1)` in [0, 1]; the ticks are spread evenly
    inside [0, 1] (with VAR's tighter margin of `1/(3n)` for four refiners); ties go to the lower refiner. The ticks
    come from `np.linspace` as in VAR, because some positions fall exactly halfway between two ticks and only the
    same floating-point rounding picks the same refiner (which matters for converted VAR weights).
    """
    margin = 1 / 3 / num_shared_phi if num_shared_phi == 4 else 1 / 2 / num_shared_phi
    ticks = np.linspace(margin, 1 - margin, num_shared_phi)
    positions = np.arange(num_scales) / max(num_scales - 1, 1)
    return np.abs(ticks[None, :] - positions[:, None]).argmin(axis=1).tolist()


class MultiScaleSimVQQuantizer(SimVQQuantizer):
    """Residual quantization over scales (VAR's `VectorQuantizer2`) against one shared SimVQ codebook.

    It is a `SimVQQuantizer`, so the frozen codebook `C`, the projection `W`, the cached nearest-code search table,
    `lookup` and the id checks are those of single-scale SimVQ (and so are their parameter names); only `forward`
    differs (`embedding`, the effective codebook as an `nn.Embedding`, is what VAR's transformer reads).
    """

    def __init__(
        self,
        codebook_size: int,
        embed_dim: int,
        scales: list[int],
        commitment_beta: float = 0.25,
        codebook_init_std: float | None = None,
        projection_bias: bool = True,
        quant_resi: float = 0.5,
        num_shared_phi: int = 4,
        codebook_init: str = "normal",
        train_codebook: bool = False,
    ):
        super().__init__(
            codebook_size, embed_dim, commitment_beta, codebook_init_std, projection_bias, codebook_init, train_codebook
        )
        self.scales = list(scales)
        self.phi = nn.ModuleList(
            Phi(embed_dim, quant_resi) if quant_resi > 0 else nn.Identity() for _ in range(num_shared_phi)
        )
        self.phi_of_scale = shared_phi_assignment(len(self.scales), num_shared_phi)
        # VAR's progressive training (its trainer sets `quantize.prog_si`): when >= 0, only scales 0 … prog_si are in
        # play, in `img_to_idxBl` and the teacher-forcing input; -1 (VAR's default) means every scale.
        self.prog_si = -1

    @property
    def latent_size(self) -> int:
        """Side of the full latent map: the finest scale."""
        return self.scales[-1]

    @property
    def sequence_length(self) -> int:
        """`L`, the number of tokens of all scales together."""
        return sum(side * side for side in self.scales)

    def progressive_scales(self, scale_indices: list[torch.LongTensor]) -> list[torch.LongTensor]:
        """The per-scale ids that progressive training (`prog_si >= 0`) keeps: scales `0 … prog_si`."""
        return scale_indices if self.prog_si < 0 else scale_indices[: self.prog_si + 1]

    def split_scales(self, image_tokens: torch.LongTensor) -> list[torch.LongTensor]:
        """Concatenated ids `(B, L)` → VAR's `idx_Bl` list of `(B, side²)`; `ValueError` when `L` does not fit."""
        if image_tokens.ndim != 2 or image_tokens.shape[1] != self.sequence_length:
            raise ValueError(
                f"Expected multi-scale token ids of shape (batch, {self.sequence_length}) (scales {self.scales} "
                f"concatenated coarse to fine), got {tuple(image_tokens.shape)}."
            )
        return list(image_tokens.split([side * side for side in self.scales], dim=1))

    def tokens_to_latents(self, image_tokens: torch.LongTensor) -> torch.Tensor:
        """Concatenated multi-scale ids `(B, L)` → the latents `f_hat` `(B, d, h, w)` they stand for."""
        return self.f_hat_per_scale(self.split_scales(image_tokens))[-1]

    def get_codebook_entry(self, indices: torch.LongTensor, shape: tuple[int, int, int, int] | None = None):
        """diffusers' `VQModel` interface: `f_hat` of multi-scale ids `(B, L)`; `shape` follows from the scales."""
        return self.tokens_to_latents(indices)

    def check_scale_indices(self, scale_indices: list[torch.Tensor]) -> None:
        """Raise `ValueError` unless `scale_indices` are `(B, side²)` ids of the first (coarsest) scales, in order."""
        if not 0 < len(scale_indices) <= len(self.scales):
            raise ValueError(f"Expected 1 to {len(self.scales)} per-scale token maps, got {len(scale_indices)}.")
        batch = scale_indices[0].shape[0]
        for side, indices in zip(self.scales, scale_indices, strict=False):  # a prefix of the scales is allowed
            if indices.shape != (batch, side * side):
                raise ValueError(
                    f"The token map of the {side}×{side} scale must have shape ({batch}, {side * side}), got "
                    f"{tuple(indices.shape)}; scales are {self.scales}, coarse to fine."
                )
            self.check_indices(indices)

    def scale_residual(self, codes: torch.Tensor, scale_index: int) -> torch.Tensor:
        """Codes of one scale `(B, d, side, side)` → their share of `f_hat`: upsampled to the latent, then `φ`."""
        if codes.shape[-1] != self.latent_size:
            codes = F.interpolate(codes, size=(self.latent_size, self.latent_size), mode="bicubic")
        return self.refine(codes, scale_index)

    def refine(self, codes: torch.Tensor, scale_index: int) -> torch.Tensor:
        """Apply the refiner `φ` that serves scale `scale_index` (shared with its neighbouring scales)."""
        return self.phi[self.phi_of_scale[scale_index]](codes)

    def scale_codes(self, indices: torch.LongTensor, scale_index: int) -> torch.Tensor:
        """Ids of one scale `(B, side²)` → their codes as a map `(B, d, side, side)`."""
        side = self.scales[scale_index]
        return self.lookup(indices).transpose(1, 2).reshape(indices.shape[0], self.embed_dim, side, side)

    def downsample(self, f_hat: torch.Tensor, side: int) -> torch.Tensor:
        """Area-average a latent map to `side × side`: how VAR looks at the residual, and at `f_hat`, per scale.

        Always a new tensor, also at full size (where it is an exact copy): `get_next_autoregressive_input` updates
        `f_hat` in place, and a returned alias would change under its caller.
        """
        return F.interpolate(f_hat, size=(side, side), mode="area")

    def f_hat_per_scale(self, scale_indices: list[torch.LongTensor], same_shape: bool = True) -> list[torch.Tensor]:
        """`f_hat` after each scale, as VAR's `embed_to_fhat`.

        `same_shape=True` gives every `f_hat` at the latent size (what training and inference use). `same_shape=False`
        is VAR's experimental variant: `f_hat` grows with the scales, upsampled to each side before that scale's
        codes (refined at their own size) are added, so the `i`-th map is `side_i × side_i`.
        """
        self.check_scale_indices(scale_indices)
        side = self.latent_size if same_shape else self.scales[0]
        # Every path accumulates onto zeros: convolutions may return another memory layout than their input, and
        # starting from a fresh contiguous tensor keeps `f_hat`'s layout, hence its decoding, identical everywhere.
        f_hat = self._zeros(scale_indices[0].shape[0], side, scale_indices[0].device)
        f_hats = []
        for si, ids in enumerate(scale_indices):
            codes = self.scale_codes(ids, si)
            if same_shape:
                f_hat = f_hat + self.scale_residual(codes, si)
            else:
                f_hat = F.interpolate(f_hat, size=codes.shape[-2:], mode="bicubic") + self.refine(codes, si)
            f_hats.append(f_hat)
        return f_hats

    def _zeros(self, batch: int, side: int, device: torch.device) -> torch.Tensor:
        """An empty fp32 `f_hat` of `side × side` to accumulate scales onto."""
        return torch.zeros(batch, self.embed_dim, side, side, device=device)

    def idxBl_to_var_input(self, scale_indices: list[torch.LongTensor]) -> torch.Tensor:
        """Teacher-forcing input of a VAR transformer: `(B, L − first_l, d)` with `first_l = scales[0]²`.

        Position block `i` holds `f_hat` after scales `0 … i` (from `f_hat_per_scale`), area-downsampled to scale
        `i + 1`: what the transformer sees when it predicts scale `i + 1`. The first scale has no such input (VAR
        starts it from the class token). Under progressive training only scales `1 … prog_si` get an input.
        """
        self.check_scale_indices(scale_indices)
        scale_indices = self.progressive_scales(scale_indices)
        if len(scale_indices) == 1:
            return torch.zeros(scale_indices[0].shape[0], 0, self.embed_dim, device=scale_indices[0].device)
        f_hats = self.f_hat_per_scale(scale_indices[:-1])
        next_scale_inputs = [
            self.downsample(f_hat, side).flatten(2).transpose(1, 2)
            for f_hat, side in zip(f_hats, self.scales[1 : len(scale_indices)], strict=True)
        ]
        return torch.cat(next_scale_inputs, dim=1)

    def get_next_autoregressive_input(
        self, si: int, SN: int, f_hat: torch.Tensor, h: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One step of VAR sampling: add scale `si`'s codes `h` `(B, d, side, side)` to `f_hat` **in place**.

        Returns `(f_hat, next input)`: `f_hat` area-downsampled to scale `si + 1`, or `f_hat` itself after the
        last scale (`si == SN − 1`).
        """
        if SN != len(self.scales) or not 0 <= si < SN:
            raise ValueError(
                f"Expected SN = {len(self.scales)} (the number of scales) and 0 <= si < SN, got si={si}, SN={SN}."
            )
        f_hat.add_(self.scale_residual(h, si))
        if si == SN - 1:
            return f_hat, f_hat
        return f_hat, self.downsample(f_hat, self.scales[si + 1])

    def forward(self, latents: torch.Tensor) -> MultiScaleQuantizerOutput:
        if latents.ndim != 4 or latents.shape[1:] != (self.embed_dim, self.latent_size, self.latent_size):
            raise ValueError(
                f"Expected latents of shape (batch, {self.embed_dim}, {self.latent_size}, {self.latent_size}): the "
                f"multi-scale quantizer's finest scale is {self.latent_size}, got {tuple(latents.shape)}. Resize "
                f"the images to the model's image_size."
            )
        # Residuals accumulate over many scales, so they are kept in fp32 whatever the autocast context (as VAR).
        with torch.autocast(device_type=latents.device.type, enabled=False):
            target = latents.float()
            residual = target.detach()
            f_hat = torch.zeros_like(residual)
            loss = target.new_zeros(())
            scale_indices = []
            for si, side in enumerate(self.scales):
                queries = self.downsample(residual, side).permute(0, 2, 3, 1).reshape(-1, self.embed_dim)
                ids = self._nearest_codes(queries).view(latents.shape[0], side * side)
                contribution = self.scale_residual(self.scale_codes(ids, si), si)
                f_hat = f_hat + contribution
                residual = residual - contribution.detach()
                loss = (
                    loss
                    + self.commitment_beta * F.mse_loss(target, f_hat.detach())
                    + F.mse_loss(f_hat, target.detach())
                )
                scale_indices.append(ids)
            loss = loss / len(self.scales)
        # As SimVQQuantizer: straight-through only while gradients flow, so decoding `quantized` outside autograd is
        # bit-identical to decoding the indices.
        quantized = target + (f_hat - target).detach() if latents.requires_grad else f_hat
        return MultiScaleQuantizerOutput(
            quantized=quantized.to(latents.dtype),
            indices=torch.cat(scale_indices, dim=1),
            loss=loss,
            scale_indices=scale_indices,
        )


__all__ = ["MultiScaleQuantizerOutput", "MultiScaleSimVQQuantizer", "Phi", "shared_phi_assignment"]
