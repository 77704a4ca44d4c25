"""SimVQ image tokenizer as a transformers `PreTrainedModel`: images ↔ integer token maps."""

import math
from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from .autoencoder import build_decoder, build_encoder
from .configuration_simvq import SimVQConfig
from .quantization import SimVQQuantizer, VQQuantizer, build_quantizer


@dataclass
class SimVQEncoderOutput(ModelOutput):
    """
    Args:
        latents (`torch.FloatTensor` of shape `(batch_size, embed_dim, height, width)`):
            The encoder's continuous output `z`, before quantization.
        quantized (`torch.FloatTensor` of shape `(batch_size, embed_dim, height, width)`):
            The chosen codes (straight-through while gradients flow); what `decode` takes.
        image_tokens (`torch.LongTensor` of shape `(batch_size, height, width)`):
            Index of the chosen code at every position, in `[0, codebook_size)`; what `decode_tokens` takes.
        quantization_loss (`torch.FloatTensor` of shape `()`):
            Commitment plus codebook loss of the quantizer.
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
        image_tokens (`torch.LongTensor` of shape `(batch_size, latent_height, latent_width)`):
            The token map the reconstruction was decoded from.
        quantization_loss (`torch.FloatTensor` of shape `()`):
            Commitment plus codebook loss; add the reconstruction (and perceptual/adversarial) losses to train.
    """

    reconstruction: torch.FloatTensor | None = None
    image_tokens: torch.LongTensor | None = None
    quantization_loss: torch.FloatTensor | None = None


def check_pixel_values(pixel_values: torch.Tensor, config: SimVQConfig) -> None:
    """Raise `ValueError` unless `pixel_values` is a `(B, C, H, W)` batch the encoder can downsample evenly."""
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
            init.normal_(module.frozen_codebook, std=self.config.codebook_init_std)
        elif isinstance(module, VQQuantizer):
            init.normal_(module.embedding.weight, std=self.config.codebook_init_std)


class SimVQModel(SimVQPreTrainedModel):
    """Encoder → SimVQ quantizer → decoder. `encode` turns images into token maps, `decode_tokens` turns them back."""

    def __init__(self, config: SimVQConfig):
        super().__init__(config)
        self.encoder = build_encoder(config)
        self.quantize = build_quantizer(config)
        self.decoder = build_decoder(config)
        self.post_init()

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
        """Token map `(B, h, w)` → quantized latents `(B, embed_dim, h, w)`; validates rank and id range."""
        if image_tokens.ndim != 3:
            raise ValueError(
                f"Expected image_tokens of shape (batch, height, width), got rank {image_tokens.ndim} "
                f"{tuple(image_tokens.shape)}. For a single image, add a batch dimension with tokens[None]."
            )
        self.quantize.check_indices(image_tokens)
        return self.quantize.lookup(image_tokens.long()).permute(0, 3, 1, 2)

    def decode_tokens(self, image_tokens: torch.LongTensor) -> torch.FloatTensor:
        """Token map `(B, h, w)` with ids in `[0, codebook_size)` → images `(B, C, h·f, w·f)`."""
        return self.decode(self.tokens_to_latents(image_tokens))

    def get_codebook(self) -> torch.Tensor:
        """The effective `(codebook_size, embed_dim)` codebook (SimVQ: `C·Wᵀ + b`)."""
        return self.quantize.codebook()

    def forward(self, pixel_values: torch.FloatTensor, return_dict: bool | None = None) -> SimVQModelOutput | tuple:
        encoded = self.encode(pixel_values)
        output = SimVQModelOutput(
            reconstruction=self.decode(encoded.quantized),
            image_tokens=encoded.image_tokens,
            quantization_loss=encoded.quantization_loss,
        )
        return output if return_dict is not False else output.to_tuple()


__all__ = ["SimVQModel", "SimVQPreTrainedModel", "SimVQEncoderOutput", "SimVQModelOutput"]
