"""Evaluating with the exponential moving average of the weights while training keeps the raw ones."""

import contextlib

from diffusers.training_utils import EMAModel
from torch import nn


@contextlib.contextmanager
def ema_weights(ema: EMAModel, model: nn.Module):
    """Swap the EMA weights into `model` for the duration of the block, then put the training weights back."""
    ema.store(model.parameters())
    ema.copy_to(model.parameters())
    try:
        yield model
    finally:
        ema.restore(model.parameters())


__all__ = ["ema_weights"]
