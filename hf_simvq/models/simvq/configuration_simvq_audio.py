"""SimVQ speech tokenizer configuration."""

from huggingface_hub.dataclasses import strict
from transformers.models.wavtokenizer.configuration_wavtokenizer import WavTokenizerConfig

from .configuration_simvq import check_codebook_ablation

# The multi-scale quantizer of the image model works on 2-D token maps only.
AUDIO_QUANTIZER_TYPES = ("simvq", "vq")


@strict
class SimVQAudioConfig(WavTokenizerConfig):
    r"""
    Configuration of a [`SimVQAudioModel`]: the SimVQ paper's speech tokenizer (Li et al., arXiv 2411.02038), a causal
    SEANet encoder, one SimVQ codebook (frozen Gaussian `C`, trained linear `W` with bias, effective codebook
    `C·Wᵀ + b`) and a Vocos backbone with an ISTFT head.

    It extends [`WavTokenizerConfig`] because the encoder, backbone and head are transformers' WavTokenizer blocks
    (the same computation as the authors' modules), which read their sizes from these fields; see that class for the
    encoder and decoder fields. The defaults are the authors' `configs/libritts_24khz.yaml`: 24 kHz mono, causal
    encoder with ratios `[8, 5, 4, 2]` (hop 320, 75 codes/s), 512-d latents, 1,024 codes, backbone 768 / 2304 / 12
    layers, ISTFT head with `n_fft = 4 · hop = 1280` and "same" padding.

    Args:
        codebook_size (`int`, defaults to 1024): number of codes `K` (the paper also trains 4,096, 65,536, 262,144).
        codebook_dim (`int`, *optional*): dimension of the codes; `hidden_size` when unset, the only value allowed
            (SimVQ quantizes the latents without projections around the quantizer).
        commitment_beta (`float`, defaults to 0.25): weight of `‖z − sg(q)‖²`, the encoder-side commitment term.
        codebook_init_std (`float`, *optional*): standard deviation of the frozen Gaussian codebook;
            `hidden_size ** -0.5` when unset, as in the reference implementation.
        codebook_init (`str`, defaults to `"normal"`): distribution of the initial codes, `"normal"` or `"uniform"`
            (the same std), as in [`SimVQConfig`].
        projection_bias (`bool`, defaults to `True`): whether the SimVQ projection `W` has a bias `b`.
        train_codebook (`bool`, defaults to `False`): SimVQ only: train `C` together with `W`, as in [`SimVQConfig`].
        quantizer_type (`str`, defaults to `"simvq"`): `"simvq"`, or `"vq"` (a plain learned codebook: the baseline
            whose codebook collapses, for comparison).
        adanorm_num_embeddings (`int`, defaults to 1): one codebook means one bandwidth, so the backbone's adaptive
            layer norms hold a single (scale, shift) row: exactly the authors' plain `LayerNorm`.
    """

    model_type = "simvq_audio"

    upsampling_ratios: list[int] | tuple[int, ...] = (8, 5, 4, 2)
    use_causal_conv: bool = True
    codebook_size: int = 1024
    codebook_dim: int | None = None
    adanorm_num_embeddings: int = 1
    commitment_beta: float = 0.25
    codebook_init_std: float | None = None
    codebook_init: str = "normal"
    projection_bias: bool = True
    train_codebook: bool = False
    quantizer_type: str = "simvq"

    def __post_init__(self, **kwargs):
        self.upsampling_ratios = list(self.upsampling_ratios)
        if self.codebook_dim is None:
            self.codebook_dim = self.hidden_size
        self._check_values()
        if self.codebook_init_std is None:
            self.codebook_init_std = self.hidden_size**-0.5
        super().__post_init__(**kwargs)

    @property
    def embed_dim(self) -> int:
        """Dimension `d` of the latents and of the codes (the encoder's `hidden_size`)."""
        return self.hidden_size

    def _check_values(self):
        """Reject values that would build a broken model with a `ValueError` naming the field.

        Runs in `__post_init__`, as `SimVQConfig`'s checks do: `@strict` class validators wrap errors in a
        `StrictDataclassClassValidationError`, which is not a `ValueError`.
        """
        positive = {"sampling_rate": self.sampling_rate, "hidden_size": self.hidden_size}
        for field, value in positive.items():
            if value <= 0:
                raise ValueError(f"`{field}` must be positive, got {value}.")
        if not self.upsampling_ratios or any(ratio <= 0 for ratio in self.upsampling_ratios):
            raise ValueError(
                f"`upsampling_ratios` must be a non-empty list of positive strides, got {self.upsampling_ratios}."
            )
        if self.audio_channels != 1:
            raise ValueError(f"SimVQ audio is mono: `audio_channels` must be 1, got {self.audio_channels}.")
        if self.quantizer_type not in AUDIO_QUANTIZER_TYPES:
            raise ValueError(
                f"`quantizer_type` must be one of {AUDIO_QUANTIZER_TYPES} for speech, got {self.quantizer_type!r}."
            )
        if self.codebook_size < 2:
            raise ValueError(f"`codebook_size` must be at least 2, got {self.codebook_size}.")
        if self.codebook_dim != self.hidden_size:
            raise ValueError(
                f"SimVQ quantizes the encoder's latents directly: `codebook_dim` ({self.codebook_dim}) must equal "
                f"`hidden_size` ({self.hidden_size})."
            )
        if self.adanorm_num_embeddings != 1:
            raise ValueError(
                "One codebook has one bandwidth: `adanorm_num_embeddings` must be 1, got "
                f"{self.adanorm_num_embeddings}."
            )
        if self.commitment_beta < 0:
            raise ValueError(f"`commitment_beta` must be non-negative, got {self.commitment_beta}.")
        if self.codebook_init_std is not None and self.codebook_init_std <= 0:
            raise ValueError(f"`codebook_init_std` must be positive, got {self.codebook_init_std}.")
        check_codebook_ablation(self.codebook_init, self.train_codebook, self.quantizer_type)


__all__ = ["SimVQAudioConfig"]
