"""SimVQ image tokenizer as a transformers `PreTrainedModel`: images ↔ integer token maps."""

import math
import re
from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from .autoencoder import build_decoder, build_encoder
from .configuration_simvq import SimVQConfig
from .multiscale_quantization import MultiScaleSimVQQuantizer
from .quantization import SimVQQuantizer, VectorQuantizer, VQQuantizer


@dataclass
class SimVQEncoderOutput(ModelOutput):
    """
    Args:
        latents (`torch.FloatTensor` of shape `(batch_size, embed_dim, height, width)`):
            The encoder's continuous output `z`, before quantization.
        quantized (`torch.FloatTensor` of shape `(batch_size, embed_dim, height, width)`):
            The chosen codes (straight-through while gradients flow); what `decode` takes.
        image_tokens (`torch.LongTensor` of shape `(batch_size, height, width)`, or `(batch_size, L)` multi-scale):
            Index of the chosen code at every position, in `[0, codebook_size)`; what `decode_tokens` takes. For
            `"multiscale_simvq"`, every scale's map flattened and concatenated coarse to fine (`L = Σ side²`, VAR's
            `gt_BL`); `img_to_idxBl` gives the same ids split by scale.
        quantization_loss (`torch.FloatTensor` of shape `()`):
            Commitment plus codebook loss of the quantizer (multi-scale: averaged over the scales).
    """

    latents: torch.FloatTensor | None = None
    quantized: torch.FloatTensor | None = None
    image_tokens: torch.LongTensor | None = None
    quantization_loss: torch.FloatTensor | None = None


@dataclass
class SimVQModelOutput(ModelOutput):
    """
    Args:
        reconstruction (`torch.FloatTensor` of shape `(batch_size, out_channels, height, width)`):
            The decoded image, in the range the inputs were given in (`[-1, 1]` from `SimVQImageProcessor`).
        image_tokens (`torch.LongTensor` of shape `(batch_size, latent_height, latent_width)`, or `(batch_size, L)`):
            The token map the reconstruction was decoded from (multi-scale: all scales concatenated, as in `encode`).
        quantization_loss (`torch.FloatTensor` of shape `()`):
            Commitment plus codebook loss; add the reconstruction (and perceptual/adversarial) losses to train.
    """

    reconstruction: torch.FloatTensor | None = None
    image_tokens: torch.LongTensor | None = None
    quantization_loss: torch.FloatTensor | None = None


# Pixel values may exceed [-1, 1] by resampling overshoot: PyTorch's bicubic kernel (a = -0.75) can reach
# 1.375² ≈ 1.89 in 2-D at worst (a resized photo reaches about 1.2). Beyond 2 the input was not scaled to [-1, 1]:
# 0-255 pixels, or ImageNet mean/std normalisation (up to 2.64).
PIXEL_VALUE_LIMIT = 2.0


def check_pixel_values(pixel_values: torch.Tensor, config: SimVQConfig) -> None:
    """Raise `ValueError` unless `pixel_values` is a float `(B, C, H, W)` batch in `[-1, 1]` that the encoder can
    downsample evenly: a wrong input would otherwise encode to plausible tokens without a word (NaN → code 0)."""
    factor = config.downsample_factor
    if pixel_values.ndim != 4 or pixel_values.shape[1] != config.num_channels:
        raise ValueError(
            f"Expected pixel_values of shape (batch, {config.num_channels}, height, width), got "
            f"{tuple(pixel_values.shape)}. Use SimVQImageProcessor to turn images into pixel_values."
        )
    if pixel_values.shape[2] % factor or pixel_values.shape[3] % factor:
        raise ValueError(
            f"Image height and width must be multiples of {factor} (the downsampling factor), got "
            f"{tuple(pixel_values.shape[2:])}. Resize or crop, e.g. with SimVQImageProcessor."
        )
    if not pixel_values.is_floating_point():
        raise ValueError(
            f"pixel_values must be a floating-point tensor in [-1, 1], got dtype {pixel_values.dtype}. Use "
            "SimVQImageProcessor, or scale 8-bit images yourself with `pixel_values.float() / 127.5 - 1`."
        )
    if pixel_values.numel() == 0:
        return
    low, high = (float(value) for value in torch.aminmax(pixel_values))  # NaN if any is NaN
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(
            f"pixel_values contain {int((~torch.isfinite(pixel_values)).sum())} NaN or infinite values, which would "
            "encode to code 0 without an error; every value must be finite. Check the images and any transform "
            "applied to them."
        )
    if low < -PIXEL_VALUE_LIMIT or high > PIXEL_VALUE_LIMIT:
        raise ValueError(
            f"pixel_values must lie in [-1, 1] (values up to ±{PIXEL_VALUE_LIMIT:g} pass, for resampling overshoot), "
            f"got [{low:.4g}, {high:.4g}]. Were they 0-255 pixels or normalised with another mean/std? Use "
            "SimVQImageProcessor, or scale 8-bit images with `pixel_values.float() / 127.5 - 1`."
        )


def build_quantizer(config) -> VectorQuantizer:
    """The quantizer named by `config.quantizer_type`, sized by the config."""
    common = {
        "codebook_size": config.codebook_size,
        "embed_dim": config.embed_dim,
        "commitment_beta": config.commitment_beta,
        "codebook_init_std": config.codebook_init_std,
        "codebook_init": config.codebook_init,
    }
    if config.quantizer_type == "vq":
        return VQQuantizer(**common)
    common |= {"projection_bias": config.projection_bias, "train_codebook": config.train_codebook}
    if config.quantizer_type == "multiscale_simvq":
        return MultiScaleSimVQQuantizer(
            **common, scales=config.scales, quant_resi=config.quant_resi, num_shared_phi=config.num_shared_phi
        )
    return SimVQQuantizer(**common)


class SimVQPreTrainedModel(PreTrainedModel):
    config: SimVQConfig
    base_model_prefix = "simvq"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    _no_split_modules = ["ResnetBlock"]

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """PyTorch's default init for convolutions and linears, and the Gaussian codebook of the paper.

        The frozen SimVQ codebook needs its own case: the generic init would draw it from N(0, 0.02). `init.*`
        skips tensors already loaded from a checkpoint, so `from_pretrained` restores `C` exactly.
        """
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            init.kaiming_uniform_(module.weight, a=math.sqrt(5))
            if module.bias is not None:
                fan_in = module.weight[0].numel()
                init.uniform_(module.bias, -(fan_in**-0.5), fan_in**-0.5)
        elif isinstance(module, nn.GroupNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, SimVQQuantizer):
            module.init_codebook_(module.frozen_codebook)
        elif isinstance(module, VQQuantizer):
            module.init_codebook_(module.embedding.weight)


class SimVQModel(SimVQPreTrainedModel):
    """Encoder → SimVQ quantizer → decoder. `encode` turns images into token maps, `decode_tokens` turns them back.

    With `quantizer_type="multiscale_simvq"` it also speaks VAR's tokenizer interface: `img_to_idxBl`,
    `idxBl_to_img`, `idxBl_to_var_input`, `get_next_autoregressive_input`, `fhat_to_img`, `Cvae`, `vocab_size`,
    `quantize.embedding` and `quantize.prog_si` (progressive training), so VAR's own `VAR(vae_local=...)` runs on it.
    """

    def __init__(self, config: SimVQConfig):
        super().__init__(config)
        self.encoder = build_encoder(config)
        self.quantize = build_quantizer(config)
        self.decoder = build_decoder(config)
        self.post_init()

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """`PreTrainedModel.from_pretrained`, refusing folders saved before the decoder was the authors' one.

        Those decoders had `num_res_blocks + 1` blocks per level and a `pixel_shuffle` upsampler (another channel
        order): transformers would only warn about the extra block and the model would decode different images.
        """
        output_loading_info = kwargs.pop("output_loading_info", False)
        model, loading_info = super().from_pretrained(*args, output_loading_info=True, **kwargs)
        extra_block = re.compile(rf"decoder\.stages\.\d+\.blocks\.{model.config.num_res_blocks}\.")
        if any(extra_block.match(key) for key in loading_info["unexpected_keys"]):
            raise ValueError(
                f"{args[0] if args else kwargs.get('pretrained_model_name_or_path')} was saved by an earlier "
                f"hf-simvq whose decoder had num_res_blocks + 1 = {model.config.num_res_blocks + 1} blocks per level "
                "and another upsampler channel order; this version builds the SimVQ authors' decoder and would "
                "decode it wrongly. Retrain it, or load it with the hf-simvq version that saved it."
            )
        return (model, loading_info) if output_loading_info else model

    def encode(self, pixel_values: torch.FloatTensor) -> SimVQEncoderOutput:
        """Images in `[-1, 1]`, `(B, C, H, W)` → latents, quantized latents and token map `(B, H/f, W/f)`."""
        check_pixel_values(pixel_values, self.config)
        latents = self.encoder(pixel_values)
        quantizer_output = self.quantize(latents)
        return SimVQEncoderOutput(
            latents=latents,
            quantized=quantizer_output.quantized,
            image_tokens=quantizer_output.indices,
            quantization_loss=quantizer_output.loss,
        )

    def decode(self, quantized: torch.FloatTensor) -> torch.FloatTensor:
        """Quantized latents `(B, embed_dim, h, w)` → images `(B, C, h·f, w·f)`."""
        if quantized.ndim != 4 or quantized.shape[1] != self.config.embed_dim:
            raise ValueError(
                f"Expected quantized latents of shape (batch, {self.config.embed_dim}, height, width), got "
                f"{tuple(quantized.shape)}. To decode token ids, use decode_tokens."
            )
        return self.decoder(quantized)

    def tokens_to_latents(self, image_tokens: torch.LongTensor) -> torch.FloatTensor:
        """Token map `(B, h, w)` (multi-scale: `(B, L)`) → quantized latents `(B, embed_dim, h, w)`; validates them."""
        return self.quantize.tokens_to_latents(image_tokens)

    def decode_tokens(self, image_tokens: torch.LongTensor) -> torch.FloatTensor:
        """Token map `(B, h, w)` (multi-scale: `(B, L)`) with ids in `[0, codebook_size)` → images `(B, C, H, W)`."""
        return self.decode(self.tokens_to_latents(image_tokens))

    def get_codebook(self) -> torch.Tensor:
        """The effective `(codebook_size, embed_dim)` codebook (SimVQ: `C·Wᵀ + b`)."""
        return self.quantize.codebook()

    @property
    def Cvae(self) -> int:  # noqa: N802  (VAR's name, read by its transformer as `vae_local.Cvae`)
        """Dimension of the latents and codes, as VAR's `VQVAE.Cvae`: the input width of VAR's word embedding."""
        return self.config.embed_dim

    @property
    def vocab_size(self) -> int:
        """Number of codes, as VAR's `VQVAE.vocab_size`: the size of VAR's output head."""
        return self.config.codebook_size

    def fhat_to_img(self, f_hat: torch.FloatTensor) -> torch.FloatTensor:
        """Latents `f_hat` `(B, d, h, w)` → images clamped to `[-1, 1]`, as VAR's `VQVAE.fhat_to_img` (its sampler's
        last step)."""
        return self.decode(f_hat).clamp(-1, 1)

    def _multiscale_quantizer(self, method: str) -> MultiScaleSimVQQuantizer:
        """The quantizer, when it is multi-scale; VAR's interface means nothing for a single token map."""
        if not isinstance(self.quantize, MultiScaleSimVQQuantizer):
            raise ValueError(
                f"`{method}` is VAR's next-scale interface and needs a multi-scale tokenizer, but this model has "
                f"quantizer_type={self.config.quantizer_type!r}; build it with quantizer_type='multiscale_simvq'."
            )
        return self.quantize

    @torch.no_grad()
    def img_to_idxBl(self, pixel_values: torch.FloatTensor) -> list[torch.LongTensor]:
        """Images in `[-1, 1]` → VAR's per-scale ids, a list of `(B, side²)` from the coarsest scale to the finest."""
        quantizer = self._multiscale_quantizer("img_to_idxBl")
        return quantizer.progressive_scales(quantizer.split_scales(self.encode(pixel_values).image_tokens))

    def idxBl_to_img(
        self, idx_list: list[torch.LongTensor], same_shape: bool, last_one: bool = False
    ) -> torch.FloatTensor | list[torch.FloatTensor]:
        """Per-scale ids → images in `[-1, 1]` (clamped, as VAR), decoded from `f_hat` after each scale.

        `last_one=True` returns only the image of all the given scales; otherwise one image per scale, coarse to
        fine. `same_shape=False` is VAR's experimental variant whose `i`-th image is `side_i · f` pixels wide.
        """
        f_hats = self._multiscale_quantizer("idxBl_to_img").f_hat_per_scale(idx_list, same_shape=same_shape)
        if last_one:
            return self.decode(f_hats[-1]).clamp(-1, 1)
        return [self.decode(f_hat).clamp(-1, 1) for f_hat in f_hats]

    def idxBl_to_var_input(self, idx_list: list[torch.LongTensor]) -> torch.FloatTensor:
        """VAR's teacher-forcing input `(B, L − first_l, d)`: `f_hat` after each scale, downsampled to the next one."""
        return self._multiscale_quantizer("idxBl_to_var_input").idxBl_to_var_input(idx_list)

    def get_next_autoregressive_input(
        self, si: int, SN: int, f_hat: torch.FloatTensor, h: torch.FloatTensor
    ) -> tuple[torch.FloatTensor, torch.FloatTensor]:
        """VAR sampling step: add scale `si`'s codes `h` to `f_hat` in place; return it and the next scale's input."""
        quantizer = self._multiscale_quantizer("get_next_autoregressive_input")
        return quantizer.get_next_autoregressive_input(si, SN, f_hat, h)

    def forward(self, pixel_values: torch.FloatTensor, return_dict: bool | None = None) -> SimVQModelOutput | tuple:
        encoded = self.encode(pixel_values)
        output = SimVQModelOutput(
            reconstruction=self.decode(encoded.quantized),
            image_tokens=encoded.image_tokens,
            quantization_loss=encoded.quantization_loss,
        )
        return output if return_dict is not False else output.to_tuple()


__all__ = ["build_quantizer", "SimVQModel", "SimVQPreTrainedModel", "SimVQEncoderOutput", "SimVQModelOutput"]
