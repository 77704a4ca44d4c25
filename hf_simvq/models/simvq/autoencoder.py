"""The convolutional encoder and decoder of the SimVQ image tokenizer (MAGVIT2-style, no attention)."""

import torch
import torch.nn.functional as F
from torch import nn


class ResnetBlock(nn.Module):
    """GroupNorm → swish → 3×3 conv, twice, with a 1×1 shortcut when the width changes."""

    def __init__(self, in_channels: int, out_channels: int, norm_num_groups: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(norm_num_groups, in_channels, eps=1e-6)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.norm2 = nn.GroupNorm(norm_num_groups, out_channels, eps=1e-6)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1, bias=False) if in_channels != out_channels else None

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        residual = hidden_states if self.shortcut is None else self.shortcut(hidden_states)
        hidden_states = self.conv1(F.silu(self.norm1(hidden_states)))
        hidden_states = self.conv2(F.silu(self.norm2(hidden_states)))
        return residual + hidden_states


def depth_to_space(hidden_states: torch.Tensor, block_size: int = 2) -> torch.Tensor:
    """`(B, s²·c, h, w)` → `(B, c, s·h, s·w)` in DCR order: channel `(i·s + j)·c + k` lands on pixel `(i, j)` of `k`.

    The reference upsampler uses this order; `F.pixel_shuffle` is CRD (channel `k·s² + i·s + j`), so the same
    weights would give a different image.
    """
    batch, channels, height, width = hidden_states.shape
    hidden_states = hidden_states.view(batch, block_size, block_size, channels // block_size**2, height, width)
    hidden_states = hidden_states.permute(0, 3, 4, 1, 5, 2)
    return hidden_states.reshape(batch, channels // block_size**2, height * block_size, width * block_size)


class Upsample(nn.Module):
    """Doubles the resolution: a 3×3 conv to four times the channels, then depth-to-space (no checkerboard)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels * 4, 3, padding=1)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return depth_to_space(self.conv(hidden_states))


class Encoder(nn.Module):
    """Image `(B, C, H, W)` → latents `(B, embed_dim, H/f, W/f)` with `f = 2 ** (len(channel_multipliers) - 1)`."""

    def __init__(
        self,
        in_channels: int,
        base_channels: int,
        channel_multipliers: list[int],
        num_res_blocks: int,
        embed_dim: int,
        norm_num_groups: int,
    ):
        super().__init__()
        widths = [base_channels * m for m in channel_multipliers]
        self.conv_in = nn.Conv2d(in_channels, base_channels, 3, padding=1, bias=False)
        self.stages = nn.ModuleList()
        channels = base_channels
        for level, width in enumerate(widths):
            stage = nn.Module()
            stage.blocks = nn.ModuleList()
            for _ in range(num_res_blocks):
                stage.blocks.append(ResnetBlock(channels, width, norm_num_groups))
                channels = width
            last = level == len(widths) - 1
            stage.downsample = None if last else nn.Conv2d(channels, channels, 3, stride=2, padding=1)
            self.stages.append(stage)
        self.mid = nn.ModuleList(ResnetBlock(channels, channels, norm_num_groups) for _ in range(num_res_blocks))
        self.norm_out = nn.GroupNorm(norm_num_groups, channels, eps=1e-6)
        self.conv_out = nn.Conv2d(channels, embed_dim, 1)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        hidden_states = self.conv_in(pixel_values)
        for stage in self.stages:
            for block in stage.blocks:
                hidden_states = block(hidden_states)
            if stage.downsample is not None:
                hidden_states = stage.downsample(hidden_states)
        for block in self.mid:
            hidden_states = block(hidden_states)
        return self.conv_out(F.silu(self.norm_out(hidden_states)))


class Decoder(nn.Module):
    """Latents `(B, embed_dim, h, w)` → image `(B, C, h·f, w·f)`; the encoder's mirror image.

    `stages[level]` works at the resolution of `encoder.stages[level]`; they run from the coarsest level to the
    finest, each with `num_res_blocks` blocks and (but the finest) an upsampler, as in the reference decoder.
    """

    def __init__(
        self,
        out_channels: int,
        base_channels: int,
        channel_multipliers: list[int],
        num_res_blocks: int,
        embed_dim: int,
        norm_num_groups: int,
    ):
        super().__init__()
        widths = [base_channels * m for m in channel_multipliers]
        channels = widths[-1]
        self.conv_in = nn.Conv2d(embed_dim, channels, 3, padding=1)
        self.mid = nn.ModuleList(ResnetBlock(channels, channels, norm_num_groups) for _ in range(num_res_blocks))
        stages = []
        for level in reversed(range(len(widths))):
            stage = nn.Module()
            stage.blocks = nn.ModuleList()
            for _ in range(num_res_blocks):
                stage.blocks.append(ResnetBlock(channels, widths[level], norm_num_groups))
                channels = widths[level]
            stage.upsample = Upsample(channels) if level > 0 else None
            stages.insert(0, stage)
        self.stages = nn.ModuleList(stages)
        self.norm_out = nn.GroupNorm(norm_num_groups, channels, eps=1e-6)
        self.conv_out = nn.Conv2d(channels, out_channels, 3, padding=1)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        hidden_states = self.conv_in(latents)
        for block in self.mid:
            hidden_states = block(hidden_states)
        for stage in reversed(self.stages):
            for block in stage.blocks:
                hidden_states = block(hidden_states)
            if stage.upsample is not None:
                hidden_states = stage.upsample(hidden_states)
        return self.conv_out(F.silu(self.norm_out(hidden_states)))


def build_encoder(config) -> Encoder:
    return Encoder(
        config.num_channels,
        config.base_channels,
        config.channel_multipliers,
        config.num_res_blocks,
        config.embed_dim,
        config.norm_num_groups,
    )


def build_decoder(config) -> Decoder:
    return Decoder(
        config.out_channels,
        config.base_channels,
        config.channel_multipliers,
        config.num_res_blocks,
        config.embed_dim,
        config.norm_num_groups,
    )
