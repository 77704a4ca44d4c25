"""SimVQ speech tokenizer as a transformers audio tokenizer: mono 24 kHz waveforms ↔ one stream of integer codes.

This file sits in the image model's folder rather than in a `models/simvq_audio/` of its own on purpose: the audio
model quantizes with the package's one SimVQ quantizer and exact tiled search (`quantization.py`), and the code
copier behind `save_pretrained` / `trust_remote_code=True` follows only one-level relative imports
(`from .quantization import ...`), so a sibling folder could not import it from a saved model folder.

The architecture is the authors' (`taming/models/vq_audio.py` of youngsheen/SimVQ). Three of its four parts are the
same computation as transformers' WavTokenizer blocks and are reused as they are:
- the causal SEANet encoder is `WavTokenizerEncoder` (weight-normed convolutions, residual units with a 1×1
  shortcut, two-layer LSTM with skip);
- the Vocos backbone is `WavTokenizerVocosBackbone` (embedding conv, the ResNet/attention `pos_net`, ConvNeXt
  blocks); its adaptive layer norms with one embedding row are the authors' plain `LayerNorm`s;
- the ISTFT head is `WavTokenizerISTFTHead` (magnitude/phase → irfft → overlap-add with "same" padding).
Only the quantizer differs: SimVQ's frozen codebook and trained projection instead of WavTokenizer's k-means VQ.
The authors' model also builds a SEANet decoder that its `decode` never calls; it is left out here.
"""

from dataclasses import dataclass

import torch
from torch import nn
from transformers import initialization as init
from transformers.modeling_utils import PreTrainedAudioTokenizerBase
from transformers.models.wavtokenizer.modeling_wavtokenizer import (
    WavTokenizerAdaLayerNorm,
    WavTokenizerConv1d,
    WavTokenizerConvNeXtBlock,
    WavTokenizerEncoder,
    WavTokenizerISTFTHead,
    WavTokenizerVocosBackbone,
)
from transformers.utils import ModelOutput

from .configuration_simvq_audio import SimVQAudioConfig
from .modeling_simvq import build_quantizer
from .quantization import SimVQQuantizer, VQQuantizer


@dataclass
class SimVQAudioEncoderOutput(ModelOutput):
    """
    Args:
        audio_codes (`torch.LongTensor` of shape `(batch_size, 1, frames)`):
            Index of the chosen code for every frame (`ceil(samples / hop_length)` of them), in `[0, codebook_size)`;
            what `decode` takes.
        audio_codes_mask (`torch.LongTensor` of shape `(batch_size, 1, frames)`, *optional*):
            1 for frames that cover real audio, 0 for frames made only of padding (from `padding_mask`).
        latents (`torch.FloatTensor` of shape `(batch_size, hidden_size, frames)`):
            The encoder's continuous output `z`, before quantization.
        quantized (`torch.FloatTensor` of shape `(batch_size, hidden_size, frames)`):
            The chosen codes (straight-through while gradients flow); what `decode_latents` takes.
        quantization_loss (`torch.FloatTensor` of shape `()`):
            Commitment plus codebook loss of the quantizer (unweighted; the authors train with weight 1000).
    """

    audio_codes: torch.LongTensor | None = None
    audio_codes_mask: torch.LongTensor | None = None
    latents: torch.FloatTensor | None = None
    quantized: torch.FloatTensor | None = None
    quantization_loss: torch.FloatTensor | None = None


@dataclass
class SimVQAudioDecoderOutput(ModelOutput):
    """
    Args:
        audio_values (`torch.FloatTensor` of shape `(batch_size, samples)`):
            The decoded waveform, `frames · hop_length` samples.
    """

    audio_values: torch.FloatTensor | None = None


@dataclass
class SimVQAudioOutput(ModelOutput):
    """
    Args:
        audio_values (`torch.FloatTensor` of shape `(batch_size, samples)`):
            The reconstruction, trimmed to the input's length.
        audio_codes (`torch.LongTensor` of shape `(batch_size, 1, frames)`):
            The codes the reconstruction was decoded from.
        audio_codes_mask (`torch.LongTensor` of shape `(batch_size, 1, frames)`, *optional*):
            Which frames cover real audio, when a `padding_mask` was given.
        quantization_loss (`torch.FloatTensor` of shape `()`):
            Commitment plus codebook loss; add the reconstruction (mel, adversarial) losses to train.
    """

    audio_values: torch.FloatTensor | None = None
    audio_codes: torch.LongTensor | None = None
    audio_codes_mask: torch.LongTensor | None = None
    quantization_loss: torch.FloatTensor | None = None


class SimVQAudioPreTrainedModel(PreTrainedAudioTokenizerBase):
    config: SimVQAudioConfig
    base_model_prefix = "simvq_audio"
    main_input_name = "input_values"
    input_modalities = ("audio",)
    _no_split_modules = ["WavTokenizerConvNeXtBlock", "WavTokenizerVocosResnetBlock"]

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """The authors' initialisation, and the buffers `from_pretrained` must rebuild because they are not saved.

        Encoder and `pos_net` layers keep PyTorch's defaults (as in the authors' code); the backbone's embedding and
        ConvNeXt layers get N(0, 0.02) truncated with zero bias; the frozen codebook is the paper's Gaussian (the
        generic init would draw it from N(0, 0.02)). `init.*` skips tensors loaded from a checkpoint.
        """
        if isinstance(module, WavTokenizerConv1d):
            stride, dilation = module.conv.stride[0], module.conv.dilation[0]
            kernel_size = (module.conv.kernel_size[0] - 1) * dilation + 1
            init.copy_(module.stride, torch.tensor(stride))
            init.copy_(module.kernel_size, torch.tensor(kernel_size))
            init.copy_(module.padding_total, torch.tensor(kernel_size - stride))
        elif isinstance(module, WavTokenizerISTFTHead):
            init.copy_(module.window, torch.hann_window(module.n_fft))
        elif isinstance(module, SimVQQuantizer):
            module.init_codebook_(module.frozen_codebook)
        elif isinstance(module, VQQuantizer):
            module.init_codebook_(module.embedding.weight)
        elif isinstance(module, WavTokenizerAdaLayerNorm):
            init.ones_(module.scale.weight)
            init.zeros_(module.shift.weight)
        elif isinstance(module, WavTokenizerConvNeXtBlock):
            for layer in (module.dwconv, module.pwconv1, module.pwconv2):
                init.trunc_normal_(layer.weight, std=0.02)
                init.zeros_(layer.bias)
            init.constant_(module.gamma, 1.0 / self.config.decoder_num_layers)
        elif isinstance(module, WavTokenizerVocosBackbone):
            init.trunc_normal_(module.embed.weight, std=0.02)
            init.zeros_(module.embed.bias)
        elif isinstance(module, (nn.GroupNorm, nn.LayerNorm)):
            init.ones_(module.weight)
            init.zeros_(module.bias)


class SimVQAudioModel(SimVQAudioPreTrainedModel):
    """Causal SEANet encoder → SimVQ quantizer → Vocos backbone → ISTFT head, with `WavTokenizerModel`'s interface.

    `encode(input_values)` gives `audio_codes` `(batch, 1, frames)` at `sampling_rate / hop_length` frames per
    second; `decode(audio_codes)` gives the waveform back.
    """

    def __init__(self, config: SimVQAudioConfig):
        super().__init__(config)
        self.encoder = WavTokenizerEncoder(config)
        self.quantize = build_quantizer(config)
        self.backbone = WavTokenizerVocosBackbone(config)
        self.head = WavTokenizerISTFTHead(config)
        self.post_init()

    def save_pretrained(self, save_directory, *args, **kwargs):
        """`PreTrainedModel.save_pretrained`, naming this class in `auto_map` for `AutoModelForAudioTokenization` too.

        `register_for_auto_class` records a single Auto class (`AutoModel`); without the second entry a folder
        loaded with `trust_remote_code=True` would open through `AutoModel` only.
        """
        if self._auto_class is not None:
            module = type(self).__module__.split(".")[-1]
            auto_map = getattr(self.config, "auto_map", None) or {}
            self.config.auto_map = {**auto_map, "AutoModelForAudioTokenization": f"{module}.{type(self).__name__}"}
        return super().save_pretrained(save_directory, *args, **kwargs)

    def _check_input_values(self, input_values: torch.Tensor, padding_mask: torch.Tensor | None) -> None:
        """Raise `ValueError` unless `input_values` is a non-empty, finite `(batch, 1, samples)` waveform batch."""
        if input_values.ndim != 3 or input_values.shape[1] != 1:
            raise ValueError(
                f"Expected input_values of shape (batch, 1, samples) (mono), got {tuple(input_values.shape)}. "
                "SimVQAudioFeatureExtractor gives that layout; for one waveform of shape (samples,), use x[None, None]."
            )
        if input_values.shape[0] == 0 or input_values.shape[-1] == 0:
            raise ValueError(f"input_values is empty: got shape {tuple(input_values.shape)}; pass at least one sample.")
        if not torch.isfinite(input_values).all():
            raise ValueError("input_values holds NaN or infinite samples; clean or clip the audio before encoding.")
        if padding_mask is not None and padding_mask.reshape(padding_mask.shape[0], -1).shape != (
            input_values.shape[0],
            input_values.shape[-1],
        ):
            raise ValueError(
                f"padding_mask must have shape (batch, samples) = {(input_values.shape[0], input_values.shape[-1])} "
                f"to match input_values, got {tuple(padding_mask.shape)}."
            )

    def encode(
        self, input_values: torch.FloatTensor, padding_mask: torch.Tensor | None = None
    ) -> SimVQAudioEncoderOutput:
        """Waveforms `(B, 1, samples)` → codes `(B, 1, ceil(samples / hop_length))`, latents and quantization loss.

        The encoder is causal: a frame's code depends only on samples up to its end, so right padding never changes
        the codes of the frames before it. `padding_mask` (`(B, samples)`, 1 = real audio, as the feature extractor
        returns it) only yields `audio_codes_mask`.
        """
        self._check_input_values(input_values, padding_mask)
        latents = self.encoder(input_values)
        quantizer_output = self.quantize(latents)
        audio_codes = quantizer_output.indices.unsqueeze(1)
        audio_codes_mask = None
        if padding_mask is not None:
            real_samples = padding_mask.reshape(padding_mask.shape[0], 1, -1).long().sum(dim=-1, keepdim=True)
            real_frames = (real_samples + self.config.hop_length - 1) // self.config.hop_length
            audio_codes_mask = (torch.arange(audio_codes.shape[-1], device=audio_codes.device) < real_frames).long()
        return SimVQAudioEncoderOutput(
            audio_codes=audio_codes,
            audio_codes_mask=audio_codes_mask,
            latents=latents,
            quantized=quantizer_output.quantized,
            quantization_loss=quantizer_output.loss,
        )

    def codes_to_latents(self, audio_codes: torch.LongTensor) -> torch.FloatTensor:
        """Codes `(B, 1, frames)` → the quantized latents `(B, hidden_size, frames)` they stand for; validates them."""
        if audio_codes.ndim != 3 or audio_codes.shape[1] != 1:
            raise ValueError(
                f"Expected audio_codes of shape (batch, 1, frames) (one codebook), got {tuple(audio_codes.shape)}. "
                "For a single stream of shape (frames,), use codes[None, None]."
            )
        if audio_codes.shape[0] == 0 or audio_codes.shape[-1] == 0:
            raise ValueError(f"audio_codes is empty: got shape {tuple(audio_codes.shape)}; pass at least one frame.")
        self.quantize.check_indices(audio_codes)
        return self.quantize.lookup(audio_codes[:, 0].long()).movedim(-1, 1)

    def decode_latents(self, quantized: torch.FloatTensor) -> torch.FloatTensor:
        """Quantized latents `(B, hidden_size, frames)` → waveforms `(B, frames · hop_length)`."""
        if quantized.ndim != 3 or quantized.shape[1] != self.config.embed_dim:
            raise ValueError(
                f"Expected quantized latents of shape (batch, {self.config.embed_dim}, frames), got "
                f"{tuple(quantized.shape)}. To decode codes, use decode."
            )
        # One codebook, one bandwidth: the backbone's adaptive norms always read their single row.
        bandwidth_id = torch.zeros(1, dtype=torch.long, device=quantized.device)
        return self.head(self.backbone(quantized, bandwidth_id)).squeeze(1)

    def decode(self, audio_codes: torch.LongTensor) -> SimVQAudioDecoderOutput:
        """Codes `(B, 1, frames)` with ids in `[0, codebook_size)` → `audio_values` `(B, frames · hop_length)`."""
        return SimVQAudioDecoderOutput(audio_values=self.decode_latents(self.codes_to_latents(audio_codes)))

    def get_codebook(self) -> torch.Tensor:
        """The effective `(codebook_size, hidden_size)` codebook: `C·Wᵀ + b` for SimVQ, the learned table for VQ."""
        return self.quantize.codebook()

    def forward(
        self,
        input_values: torch.FloatTensor,
        padding_mask: torch.Tensor | None = None,
        return_dict: bool | None = None,
    ) -> SimVQAudioOutput | tuple:
        """Encode, quantize and decode: the reconstruction (trimmed to the input's length), codes and loss to train.

        Decodes the straight-through quantized latents, so the reconstruction loss reaches the encoder.
        """
        encoded = self.encode(input_values, padding_mask=padding_mask)
        output = SimVQAudioOutput(
            audio_values=self.decode_latents(encoded.quantized)[..., : input_values.shape[-1]],
            audio_codes=encoded.audio_codes,
            audio_codes_mask=encoded.audio_codes_mask,
            quantization_loss=encoded.quantization_loss,
        )
        return output if return_dict is not False else output.to_tuple()


__all__ = [
    "SimVQAudioDecoderOutput",
    "SimVQAudioEncoderOutput",
    "SimVQAudioModel",
    "SimVQAudioOutput",
    "SimVQAudioPreTrainedModel",
]
