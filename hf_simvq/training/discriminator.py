"""PatchGAN discriminator (pix2pix / taming-transformers' `NLayerDiscriminator`) and its GAN losses.

An adversarial loss on local patches restores the high-frequency texture that L1/L2 and perceptual losses blur.
"""

import torch
import torch.nn.functional as F
from torch import nn


class PatchDiscriminator(nn.Module):
    """`num_layers` stride-2 convolutions, then two stride-1 ones: one real/fake logit per overlapping patch."""

    def __init__(self, in_channels: int = 3, base_channels: int = 64, num_layers: int = 3):
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, base_channels, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2, inplace=True),
        ]
        channels = base_channels
        for layer in range(1, num_layers + 1):
            out_channels = base_channels * min(2**layer, 8)
            stride = 2 if layer < num_layers else 1
            layers += [
                nn.Conv2d(channels, out_channels, 4, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(out_channels),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            channels = out_channels
        layers.append(nn.Conv2d(channels, 1, 4, stride=1, padding=1))
        self.layers = nn.Sequential(*layers)
        # `num_layers` halvings, then two 4×4 stride-1 convolutions that each take one pixel off.
        self.min_image_size = 3 * 2**num_layers
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        """The DCGAN init that pix2pix and taming use: N(0, 0.02) convolutions, N(1, 0.02) norm scales."""
        if isinstance(module, nn.Conv2d):
            nn.init.normal_(module.weight, 0.0, 0.02)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.normal_(module.weight, 1.0, 0.02)
            nn.init.zeros_(module.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.layers(images)


def build_discriminator(image_channels: int, num_layers: int, image_size: int) -> PatchDiscriminator:
    """A PatchGAN for `image_size`² images, refusing sizes its layers would shrink to nothing."""
    discriminator = PatchDiscriminator(image_channels, num_layers=num_layers)
    if image_size < discriminator.min_image_size:
        raise ValueError(
            f"A {num_layers}-layer PatchGAN needs images of at least {discriminator.min_image_size}px; use a larger "
            "--resolution or fewer --discriminator_layers."
        )
    return discriminator


def hinge_discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """`½·(E[relu(1 − D(x))] + E[relu(1 + D(x̂))])`: stops pushing logits once they are past the margin."""
    return 0.5 * (F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean())


def generator_loss(fake_logits: torch.Tensor, kind: str = "non-saturating") -> torch.Tensor:
    """`non-saturating`: `E[softplus(−D(x̂))]`, strong gradients while the discriminator wins; `hinge`: `−E[D(x̂)]`."""
    if kind == "non-saturating":
        return F.softplus(-fake_logits).mean()
    if kind == "hinge":
        return -fake_logits.mean()
    raise ValueError(f"Unknown generator loss {kind!r}; choose 'non-saturating' or 'hinge'.")
