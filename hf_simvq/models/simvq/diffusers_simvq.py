"""SimVQ image tokenizer as a diffusers model with the `VQModel` interface, for diffusers' own pipelines.

One class cannot be both a transformers `PreTrainedModel` and a diffusers `ModelMixin`, so `SimVQDiffusersModel`
builds the very modules of `SimVQModel` under the same attribute names: the two state dicts match key for key, and
`from_transformers` / `to_transformers` convert between the two without loss.
"""

import dataclasses
import inspect
import math
from collections.abc import Callable
from typing import Any

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import FrozenDict, register_to_config
from diffusers.models.autoencoders.vae import AutoencoderMixin, DecoderOutput
from diffusers.models.autoencoders.vq_model import VQEncoderOutput
from diffusers.utils.accelerate_utils import apply_forward_hook
from torch import nn

from .autoencoder import build_decoder, build_encoder
from .configuration_simvq import SimVQConfig
from .modeling_simvq import SimVQModel, build_quantizer, check_pixel_values

# The fields `SimVQConfig` declares itself (not those of `PreTrainedConfig`), in declaration order.
SIMVQ_FIELDS: tuple[dataclasses.Field, ...] = tuple(
    field for field in dataclasses.fields(SimVQConfig) if field.name in SimVQConfig.__annotations__
)
SIMVQ_FIELD_NAMES = tuple(field.name for field in SIMVQ_FIELDS)


def _load_copy(target: nn.Module, source: nn.Module) -> None:
    """Give `target`, built on the meta device, its own copy of every tensor of `source` (parameters and the frozen
    codebook alike), each keeping its dtype and device; a missing or unexpected key raises."""
    target.load_state_dict({name: tensor.clone() for name, tensor in source.state_dict().items()}, assign=True)
    target.train(source.training)


def _with_simvq_config_signature(init: Callable) -> Callable:
    """Give `init(self, *, <own keywords>, **simvq_fields)` the signature it really accepts: its own keywords and then
    every field of `SimVQConfig` as a keyword with the config's default.

    diffusers reads the config keys off the `__init__` signature (`register_to_config` records them with their
    defaults, `from_config` passes exactly those keys back), so building it from the dataclass keeps each field
    spelled once, in `SimVQConfig`.
    """
    signature = inspect.signature(init)
    own = [parameter for parameter in signature.parameters.values() if parameter.kind is not parameter.VAR_KEYWORD]
    fields = [
        inspect.Parameter(field.name, inspect.Parameter.KEYWORD_ONLY, default=field.default, annotation=field.type)
        for field in SIMVQ_FIELDS
    ]
    init.__signature__ = signature.replace(parameters=[own[0], *fields, *own[1:]])
    return init


def vqmodel_fields(config: SimVQConfig) -> dict[str, Any]:
    """The `VQModel` config fields that follow from a `SimVQConfig`, with their `VQModel` meaning.

    `out_channels` and `norm_num_groups` are SimVQ fields of the same name and meaning. The block types name this
    model's stages (one per entry of `channel_multipliers`); they are not diffusers block classes, whose modules
    differ (e.g. the decoder upsamples by depth-to-space). Encoder and quantizer share one width, so
    `latent_channels == vq_embed_dim == embed_dim`, and `2 ** (len(block_out_channels) - 1)`, which pipelines take
    as the VAE scale factor, is `config.downsample_factor`.
    """
    num_stages = len(config.channel_multipliers)
    return {
        "in_channels": config.num_channels,
        "sample_size": config.image_size,
        "block_out_channels": tuple(config.base_channels * multiplier for multiplier in config.channel_multipliers),
        "layers_per_block": config.num_res_blocks,
        "down_block_types": ("SimVQEncoderStage",) * num_stages,
        "up_block_types": ("SimVQDecoderStage",) * num_stages,
        "act_fn": "silu",
        "norm_type": "group",
        "mid_block_add_attention": False,
        "latent_channels": config.embed_dim,
        "vq_embed_dim": config.embed_dim,
        "num_vq_embeddings": config.codebook_size,
        # `decode(h, force_not_quantize=True)` decodes the codes `h`; ids go through `quantize.get_codebook_entry`.
        "lookup_from_codebook": False,
    }


class SimVQDiffusersModel(ModelMixin, AutoencoderMixin, ConfigMixin):
    r"""
    The SimVQ tokenizer of [`SimVQModel`] behind diffusers' [`VQModel`] interface, for diffusers pipelines (e.g.
    `LDMPipeline(vqvae=...)`) and `save_pretrained` / `from_pretrained` folders.

    As in `VQModel`, `encode` returns the continuous latents `h` and `decode` quantizes them (unless told not to)
    before decoding. Codes for token ids come from `quantize.get_codebook_entry(indices, shape)`.

    The name says which library's interface this is; it was `SimVQVQModel`, which stays as an alias, and folders
    saved under that name load.

    Parameters:
        every field of [`SimVQConfig`], by keyword, with its defaults, and validated by it (invalid values raise the
            same `ValueError`s). They, `scaling_factor` and `force_upcast` are what `save_pretrained` writes.
        scaling_factor (`float`, defaults to 1.0):
            What latent diffusion pipelines multiply `encode`'s latents `h` by before the diffusion model sees them,
            and divide its output by before `decode` (LDM, §4.3.2): set it to `1 / h.std()` over training images of
            the trained tokenizer, so that the diffusion model works on unit-variance latents. For SimVQ, `h` is
            the encoder's output before the nearest-code snap, and its scale is whatever training gave the
            effective codebook `C·Wᵀ + b` (the codes it is pulled to), so no value holds for every checkpoint. The
            default 1.0 leaves `h` as it is: a neutral value rather than `VQModel`'s 0.18215, which was measured
            on another autoencoder (Stable Diffusion's KL-f8).
        force_upcast (`bool`, defaults to `False`):
            Whether pipelines must run this model in float32 when they run in float16 (a property of trained
            weights whose activations overflow in half precision, as in `VQModel`). The nearest-code search always
            runs in float32, whatever this says.

    `model.config` also holds the other `VQModel` fields pipelines read (`latent_channels`, `vq_embed_dim`,
    `num_vq_embeddings`, `block_out_channels`, ...): they are derived from the SimVQ fields on every access
    ([`vqmodel_fields`]), never saved, so they cannot disagree with the model.
    """

    # As in `VQModel`: the quantizers read their codebook tensors directly rather than through a forward call, so
    # casting and offloading hooks would not see them.
    _skip_layerwise_casting_patterns = ["quantize"]
    _supports_group_offloading = False
    _no_split_modules = ["ResnetBlock"]

    @register_to_config
    @_with_simvq_config_signature
    def __init__(self, *, scaling_factor: float = 1.0, force_upcast: bool = False, **simvq_fields):
        super().__init__()
        unknown = sorted(simvq_fields.keys() - SIMVQ_FIELD_NAMES)
        if unknown:
            raise ValueError(
                f"{type(self).__name__} got unknown arguments {unknown}; it takes the fields of SimVQConfig "
                f"({', '.join(SIMVQ_FIELD_NAMES)}), `scaling_factor` and `force_upcast`."
            )
        if not (math.isfinite(scaling_factor) and scaling_factor > 0):
            raise ValueError(
                f"`scaling_factor` must be a positive finite number (1 / std of the latents), got {scaling_factor}."
            )
        config = SimVQConfig(**simvq_fields)
        self._simvq_config = config
        self._vqmodel_fields = vqmodel_fields(config)
        self.encoder = build_encoder(config)
        self.quantize = build_quantizer(config)
        self.decoder = build_decoder(config)

    @property
    def config(self) -> FrozenDict:
        """The saved config (the SimVQ fields, `scaling_factor`, `force_upcast`) plus the derived `VQModel` fields."""
        return FrozenDict({**self._internal_dict, **self._vqmodel_fields})

    def to_simvq_config(self) -> SimVQConfig:
        """This model's fields as a [`SimVQConfig`], which also gives `downsample_factor` and `latent_size`."""
        return SimVQConfig(**{name: self.config[name] for name in SIMVQ_FIELD_NAMES})

    @classmethod
    def from_transformers(cls, model: SimVQModel, **diffusers_fields) -> "SimVQDiffusersModel":
        """The diffusers twin of a transformers [`SimVQModel`]: same config fields, a copy of every tensor.

        `diffusers_fields` are the fields only this class has: `scaling_factor`, `force_upcast`.
        """
        with torch.device("meta"):
            converted = cls(**{name: getattr(model.config, name) for name in SIMVQ_FIELD_NAMES}, **diffusers_fields)
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

        Quantization happens in `decode`, as in `VQModel`, so a diffusion model can work on `h` directly. Bad pixel
        values (wrong shape or dtype, non-finite, outside `[-1, 1]`) raise the same `ValueError`s as `SimVQModel`.
        """
        check_pixel_values(x, self._simvq_config)
        h = self.encoder(x)
        if not return_dict:
            return (h,)
        return VQEncoderOutput(latents=h)

    def _check_latents(self, h: torch.Tensor) -> None:
        """Raise `ValueError` unless `h` is a finite `(B, embed_dim, h, w)` batch: NaN latents would silently all
        snap to code 0 and decode to a plausible image."""
        embed_dim = self._simvq_config.embed_dim
        if h.ndim != 4 or h.shape[1] != embed_dim:
            raise ValueError(
                f"Expected latents of shape (batch, {embed_dim}, height, width), got {tuple(h.shape)}. To decode "
                "token ids, pass `quantize.get_codebook_entry(ids, shape)` with `force_not_quantize=True`."
            )
        if not torch.isfinite(h).all():
            raise ValueError(
                "The latents to decode contain NaN or infinite values; they would all snap to code 0. Check the "
                "model that produced them (and `scaling_factor`, which pipelines divide them by)."
            )

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
        only serves `lookup_from_codebook=True`; this model's `lookup_from_codebook` is `False`, so it is not used.
        """
        self._check_latents(h)
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


# The class's first name, kept so that code and `model_index.json` files naming it still work.
SimVQVQModel = SimVQDiffusersModel

__all__ = ["SimVQDiffusersModel", "SimVQVQModel", "vqmodel_fields"]
