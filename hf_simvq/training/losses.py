"""The tokenizer's training objective: reconstruction, perceptual (LPIPS) and adversarial terms around the
quantizer's own loss, as in the SimVQ paper's recipe (L1 + LPIPS-VGG + PatchGAN + commitment)."""

import contextlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from accelerate.logging import get_logger
from torch import nn

from ..evaluation.lpips_network import LPIPS, LPIPSWeightsNotFoundError, load_lpips
from .discriminator import generator_loss

logger = get_logger(__name__)
RECONSTRUCTION_LOSSES = {"l1": F.l1_loss, "l2": F.mse_loss}


def load_perceptual_loss(weight: float, vgg16_weights: str | None) -> LPIPS | None:
    """LPIPS-VGG when asked for (`weight > 0`) and its real weights exist; otherwise a clear warning and None."""
    if weight <= 0:
        return None
    try:
        return load_lpips(vgg16_weights=vgg16_weights)
    except LPIPSWeightsNotFoundError as error:
        logger.warning(f"LPIPS perceptual loss is OFF: {error}", main_process_only=True)
        return None


@contextlib.contextmanager
def frozen(module: nn.Module):
    """Let gradients pass through `module` to its inputs without touching (or DDP-syncing) its own parameters."""
    parameters = [p for p in module.parameters() if p.requires_grad]
    for parameter in parameters:
        parameter.requires_grad_(False)
    try:
        yield module
    finally:
        for parameter in parameters:
            parameter.requires_grad_(True)


@dataclass
class TokenizerLoss:
    """The autoencoder's side of the objective; `__call__` gives the weighted total and each term, for the logs.

    Set `perceptual_loss` to None and `discriminator` to None to leave those terms out.
    """

    reconstruction_loss: str = "l1"
    quantizer_loss_weight: float = 1.0
    perceptual_loss: LPIPS | None = None
    perceptual_weight: float = 0.0
    discriminator_weight: float = 0.0
    generator_loss: str = "non-saturating"

    def __call__(
        self,
        reconstruction: torch.Tensor,
        pixel_values: torch.Tensor,
        quantization_loss: torch.Tensor,
        discriminator: nn.Module | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """`(total, terms)`; the adversarial term only when a `discriminator` (unwrapped) is passed."""
        reconstruction_fp32, pixel_values_fp32 = reconstruction.float(), pixel_values.float()
        terms = {
            "reconstruction_loss": RECONSTRUCTION_LOSSES[self.reconstruction_loss](
                reconstruction_fp32, pixel_values_fp32
            ),
            "quantization_loss": quantization_loss,
        }
        total = terms["reconstruction_loss"] + self.quantizer_loss_weight * quantization_loss
        if self.perceptual_loss is not None:
            terms["perceptual_loss"] = self.perceptual_loss(reconstruction_fp32, pixel_values_fp32).mean()
            total = total + self.perceptual_weight * terms["perceptual_loss"]
        if discriminator is not None:
            with frozen(discriminator) as critic:
                terms["generator_loss"] = generator_loss(critic(reconstruction), self.generator_loss)
            total = total + self.discriminator_weight * terms["generator_loss"]
        return total, terms


__all__ = ["RECONSTRUCTION_LOSSES", "TokenizerLoss", "frozen", "load_perceptual_loss"]
