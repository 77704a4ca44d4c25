"""SimVQ image tokenizer as a diffusers model with the `VQModel` interface.

One class cannot be both a transformers `PreTrainedModel` and a diffusers `ModelMixin`, so `SimVQVQModel` builds the
very modules of `SimVQModel` under the same attribute names: the two state dicts match key for key, and
`from_transformers` / `to_transformers` convert between the two without loss.
"""

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from diffusers.models.autoencoders.vae import AutoencoderMixin, DecoderOutput
from diffusers.models.autoencoders.vq_model import VQEncoderOutput
from diffusers.utils.accelerate_utils import apply_forward_hook
from torch import nn

from .autoencoder import build_decoder, build_encoder
from .configuration_simvq import SimVQConfig
from .modeling_simvq import SimVQModel, build_quantizer, check_pixel_values

MODEL_FIELDS = (
    "image_size",
    "num_channels",
    "out_channels",
    "base_channels",
    "channel_multipliers",
    "num_res_blocks",
    "norm_num_groups",
    "embed_dim",
    "codebook_size",
    "quantizer_type",
    "commitment_beta",
    "codebook_init_std",
    "projection_bias",
    "scales",
    "quant_resi",
    "num_shared_phi",
)


def _load_copy(target: nn.Module, source: nn.Module) -> None:
    """Give `target`, built on the meta device, its own copy of every tensor of `source` (parameters and the frozen
    codebook alike), each keeping its dtype and device; a missing or unexpected key raises."""
    target.load_state_dict({name: tensor.clone() for name, tensor in source.state_dict().items()}, assign=True)
    target.train(source.training)


class SimVQVQModel(ModelMixin, AutoencoderMixin, ConfigMixin):
    r"""
    The SimVQ tokenizer of [`SimVQModel`] behind diffusers' [`VQModel`] interface, for diffusers pipelines and
    `save_pretrained` / `from_pretrained` folders.

    As in `VQModel`, `encode` returns the continuous latents `h` and `decode` quantizes them (unless told not to)
    before decoding. Codes for token ids come from `quantize.get_codebook_entry(indices, shape)`.

    The arguments are the model fields of [`SimVQConfig`], with the same defaults, and are validated by it: invalid
    values raise the same `ValueError`s.

    Parameters:
        image_size (`int`, defaults to 128): side of the square input images.
        num_channels (`int`, defaults to 3): channels of the input images.
        out_channels (`int`, defaults to 3): channels of the reconstructed images.
        base_channels (`int`, defaults to 128): width of the first encoder stage.
        channel_multipliers (`tuple[int]`, defaults to `(1, 2, 2, 4)`): width of each stage relative to
            `base_channels`; every stage but the last halves the resolution.
        num_res_blocks (`int`, defaults to 2): residual blocks per stage.
        norm_num_groups (`int`, defaults to 32): groups of every GroupNorm.
        embed_dim (`int`, defaults to 128): dimension of the latents and of the codes.
        codebook_size (`int`, defaults to 65536): number of codes.
        quantizer_type (`str`, defaults to `"simvq"`): `"simvq"` or `"vq"` (the plain-VQ baseline).
        commitment_beta (`float`, defaults to 0.25): weight of the encoder-side commitment term.
        codebook_init_std (`float`, *optional*): standard deviation of the Gaussian codebook; `embed_dim ** -0.5`
            when unset.
        projection_bias (`bool`, defaults to `True`): whether the SimVQ projection has a bias.
        scales, quant_resi, num_shared_phi: `"multiscale_simvq"` only, as in [`SimVQConfig`].
    """

    # As in `VQModel`: the quantizers read their codebook tensors directly rather than through a forward call, so
    # casting and offloading hooks would not see them.
    _skip_layerwise_casting_patterns = ["quantize"]
    _supports_group_offloading = False
    _no_split_modules = ["ResnetBlock"]

    @register_to_config
    def __init__(
        self,
        image_size: int = 128,
        num_channels: int = 3,
        out_channels: int = 3,
        base_channels: int = 128,
        channel_multipliers: tuple[int, ...] = (1, 2, 2, 4),
        num_res_blocks: int = 2,
        norm_num_groups: int = 32,
        embed_dim: int = 128,
        codebook_size: int = 65536,
        quantizer_type: str = "simvq",
        commitment_beta: float = 0.25,
        codebook_init_std: float | None = None,
        projection_bias: bool = True,
        scales: list[int] | None = None,
        quant_resi: float = 0.5,
        num_shared_phi: int = 4,
    ):
        super().__init__()
        config = SimVQConfig(
            image_size=image_size,
            num_channels=num_channels,
            out_channels=out_channels,
            base_channels=base_channels,
            channel_multipliers=channel_multipliers,
            num_res_blocks=num_res_blocks,
            norm_num_groups=norm_num_groups,
            embed_dim=embed_dim,
            codebook_size=codebook_size,
            quantizer_type=quantizer_type,
            commitment_beta=commitment_beta,
            codebook_init_std=codebook_init_std,
            projection_bias=projection_bias,
            scales=scales,
            quant_resi=quant_resi,
            num_shared_phi=num_shared_phi,
        )
        self._simvq_config = config
        self.encoder = build_encoder(config)
        self.quantize = build_quantizer(config)
        self.decoder = build_decoder(config)

    def to_simvq_config(self) -> SimVQConfig:
        """This model's fields as a [`SimVQConfig`], which also gives `downsample_factor` and `latent_size`."""
        return SimVQConfig(**{field: self.config[field] for field in MODEL_FIELDS})

    @classmethod
    def from_transformers(cls, model: SimVQModel) -> "SimVQVQModel":
        """The diffusers twin of a transformers [`SimVQModel`]: same config fields, a copy of every tensor."""
        with torch.device("meta"):
            converted = cls(**{field: getattr(model.config, field) for field in MODEL_FIELDS})
        _load_copy(converted, model)
        return converted

    def to_transformers(self) -> SimVQModel:
        """The transformers [`SimVQModel`] twin of this model: same config fields, a copy of every tensor."""
        with torch.device("meta"):
            converted = SimVQModel(self.to_simvq_config())
        _load_copy(converted, self)
        return converted

    @apply_forward_hook
    def encode(self, x: torch.Tensor, return_dict: bool = True) -> VQEncoderOutput | tuple[torch.Tensor]:
        """Images `(B, C, H, W)` in `[-1, 1]` → continuous latents `h` `(B, embed_dim, H/f, W/f)`.

        Quantization happens in `decode`, as in `VQModel`, so a diffusion model can work on `h` directly.
        """
        check_pixel_values(x, self._simvq_config)
        h = self.encoder(x)
        if not return_dict:
            return (h,)
        return VQEncoderOutput(latents=h)

    @apply_forward_hook
    def decode(
        self,
        h: torch.Tensor,
        force_not_quantize: bool = False,
        return_dict: bool = True,
        shape: tuple[int, int, int, int] | None = None,
    ) -> DecoderOutput | tuple[torch.Tensor, torch.Tensor]:
        """Latents `(B, embed_dim, h, w)` → images, snapping them to the nearest codes first.

        `force_not_quantize=True` decodes `h` as given, e.g. codes from `quantize.get_codebook_entry`; the commitment
        loss is then zero, one per sample, as in `VQModel`. `shape` is accepted for `VQModel` compatibility, where it
        only serves that model's `lookup_from_codebook` option; this model has no such option, so it is not used.
        """
        if force_not_quantize:
            quantized = h
            commit_loss = torch.zeros(h.shape[0], device=h.device, dtype=h.dtype)
        else:
            quantizer_output = self.quantize(h)
            quantized, commit_loss = quantizer_output.quantized, quantizer_output.loss
        sample = self.decoder(quantized)
        if not return_dict:
            return sample, commit_loss
        return DecoderOutput(sample=sample, commit_loss=commit_loss)

    def forward(self, sample: torch.Tensor, return_dict: bool = True) -> DecoderOutput | tuple[torch.Tensor, ...]:
        """Encode, quantize and decode: the reconstruction of `sample` and the quantizer's commitment loss."""
        decoded = self.decode(self.encode(sample).latents)
        if not return_dict:
            return decoded.sample, decoded.commit_loss
        return decoded


__all__ = ["SimVQVQModel"]
