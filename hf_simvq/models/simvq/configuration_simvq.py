"""SimVQ model configuration."""

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

QUANTIZER_TYPES = ("simvq", "vq", "multiscale_simvq")
CODEBOOK_INITS = ("normal", "uniform")
VAR_SCALES = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)


def default_scales(latent_size: int) -> list[int]:
    """VAR's token-map sides for a 16×16 latent, rescaled to `latent_size`: rounded, deduplicated, starting at 1.

    Rescaling keeps VAR's shape (small steps at coarse scales, larger ones at fine scales) for any latent size,
    and gives VAR's own progression back at 16.
    """
    return sorted({1, *(max(1, round(side * latent_size / VAR_SCALES[-1])) for side in VAR_SCALES)})


def check_codebook_ablation(codebook_init: str, train_codebook: bool, quantizer_type: str) -> None:
    """Checks of the codebook ablation fields, shared by the image and speech configs: a known distribution, and a
    frozen `C` to train (plain VQ has none: its codebook is always trained)."""
    if codebook_init not in CODEBOOK_INITS:
        raise ValueError(f"`codebook_init` must be one of {CODEBOOK_INITS}, got {codebook_init!r}.")
    if train_codebook and quantizer_type == "vq":
        raise ValueError(
            "`train_codebook` trains SimVQ's frozen codebook `C` together with `W`; plain VQ's codebook is always "
            "trained: leave it False for quantizer_type='vq'."
        )


@strict
class SimVQConfig(PreTrainedConfig):
    r"""
    Configuration of a [`SimVQModel`]: a MAGVIT2-style convolutional autoencoder whose latents are quantized
    against a frozen Gaussian codebook reparameterised by one linear layer (Li et al., arXiv 2411.02038).

    The defaults are the paper's ImageNet-128 tokenizer with a 65,536-code codebook (128×128 images → 16×16 tokens).

    Args:
        image_size (`int`, defaults to 128): side of the square input images; must be divisible by the
            downsampling factor `2 ** (len(channel_multipliers) - 1)`.
        num_channels (`int`, defaults to 3): channels of the input images.
        out_channels (`int`, defaults to 3): channels of the reconstructed images.
        base_channels (`int`, defaults to 128): width of the first encoder stage.
        channel_multipliers (`list[int]`, defaults to `[1, 2, 2, 4]`): width of each stage relative to
            `base_channels`; every stage but the last halves the resolution.
        num_res_blocks (`int`, defaults to 2): residual blocks per stage.
        norm_num_groups (`int`, defaults to 32): groups of every GroupNorm; each stage width must be divisible by it.
        embed_dim (`int`, defaults to 128): dimension `d` of the latents and of the codes.
        codebook_size (`int`, defaults to 65536): number of codes `K`.
        quantizer_type (`str`, defaults to `"simvq"`): `"simvq"` (frozen codebook `C`, trained projection,
            effective codebook `C·Wᵀ + b`) or `"vq"` (plain VQ with a learned codebook: the baseline that collapses).
        commitment_beta (`float`, defaults to 0.25): weight of `‖z − sg(q)‖²`, the encoder-side commitment term.
        codebook_init_std (`float`, *optional*): standard deviation of the Gaussian codebook; `embed_dim ** -0.5`
            when unset, as in the reference implementation.
        codebook_init (`str`, defaults to `"normal"`): distribution of the initial codes (SimVQ's `C`, VQ's learned
            codebook): `"normal"`, N(0, std²) as in the paper, or `"uniform"`, U(−a, a) with a = std·√3 (the same
            std), to ablate the Gaussian's shape without changing its scale.
        projection_bias (`bool`, defaults to `True`): whether the SimVQ projection `W` has a bias `b`.
        train_codebook (`bool`, defaults to `False`): SimVQ only: train `C` together with `W`, the ablation of the
            paper's frozen `C` (it keeps its state-dict key `quantize.frozen_codebook`, so folders load either way).
        scales (`list[int]`, *optional*): `"multiscale_simvq"` only: sides of the token maps, coarse to fine, as VAR's
            `patch_nums`; strictly increasing and ending at the latent size. When unset, VAR's
            `(1, 2, 3, 4, 5, 6, 8, 10, 13, 16)` rescaled to the latent size (exactly that for a 16×16 latent).
        quant_resi (`float`, defaults to 0.5): `"multiscale_simvq"` only: weight `r` of the 3×3 convolution in VAR's
            residual refiner `φ(h) = (1 − r)·h + r·conv(h)`; 0 turns the refiners off.
        num_shared_phi (`int`, defaults to 4): `"multiscale_simvq"` only: number of refiners `φ` shared across the
            scales, each serving the scales nearest its position (VAR's partial sharing); `len(scales)` gives one
            per scale, 1 a single shared one.
    """

    model_type = "simvq"

    image_size: int = 128
    num_channels: int = 3
    out_channels: int = 3
    base_channels: int = 128
    channel_multipliers: list[int] | tuple[int, ...] = (1, 2, 2, 4)
    num_res_blocks: int = 2
    norm_num_groups: int = 32
    embed_dim: int = 128
    codebook_size: int = 65536
    quantizer_type: str = "simvq"
    commitment_beta: float = 0.25
    codebook_init_std: float | None = None
    codebook_init: str = "normal"
    projection_bias: bool = True
    train_codebook: bool = False
    scales: list[int] | tuple[int, ...] | None = None
    quant_resi: float = 0.5
    num_shared_phi: int = 4

    def __post_init__(self, **kwargs):
        self.channel_multipliers = list(self.channel_multipliers)
        if self.scales is not None:
            self.scales = list(self.scales)
        self._check_values()
        if self.codebook_init_std is None:
            self.codebook_init_std = self.embed_dim**-0.5
        if self.scales is None and self.quantizer_type == "multiscale_simvq":
            self.scales = default_scales(self.latent_size)
        super().__post_init__(**kwargs)

    @property
    def downsample_factor(self) -> int:
        """How many pixels one token covers along each side."""
        return 2 ** (len(self.channel_multipliers) - 1)

    @property
    def latent_size(self) -> int:
        """Side of the token map produced for one image."""
        return self.image_size // self.downsample_factor

    def _check_values(self):
        """Reject values that would build a broken model with a `ValueError` naming the field.

        Runs in `__post_init__` rather than as a `@strict` class validator because those wrap the error in a
        `StrictDataclassClassValidationError`, which is not a `ValueError`.
        """
        positive = {
            "image_size": self.image_size,
            "num_channels": self.num_channels,
            "out_channels": self.out_channels,
            "base_channels": self.base_channels,
            "num_res_blocks": self.num_res_blocks,
            "norm_num_groups": self.norm_num_groups,
            "embed_dim": self.embed_dim,
        }
        for field, value in positive.items():
            if value <= 0:
                raise ValueError(f"`{field}` must be positive, got {value}.")
        if not self.channel_multipliers or any(m <= 0 for m in self.channel_multipliers):
            raise ValueError(
                f"`channel_multipliers` must be a non-empty list of positive integers, got {self.channel_multipliers}."
            )
        for multiplier in self.channel_multipliers:
            width = self.base_channels * multiplier
            if width % self.norm_num_groups:
                raise ValueError(
                    f"`base_channels` × `channel_multipliers` gives a stage of {width} channels, which GroupNorm "
                    f"cannot split into `norm_num_groups`={self.norm_num_groups} groups; choose widths divisible by it."
                )
        if self.codebook_size < 2:
            raise ValueError(f"`codebook_size` must be at least 2, got {self.codebook_size}.")
        if self.quantizer_type not in QUANTIZER_TYPES:
            raise ValueError(f"`quantizer_type` must be one of {QUANTIZER_TYPES}, got {self.quantizer_type!r}.")
        if self.image_size % self.downsample_factor:
            raise ValueError(
                f"`image_size`={self.image_size} is not divisible by the downsampling factor {self.downsample_factor} "
                f"(2 ** (len(channel_multipliers) - 1)); use a multiple of {self.downsample_factor}."
            )
        if self.commitment_beta < 0:
            raise ValueError(f"`commitment_beta` must be non-negative, got {self.commitment_beta}.")
        if self.codebook_init_std is not None and self.codebook_init_std <= 0:
            raise ValueError(f"`codebook_init_std` must be positive, got {self.codebook_init_std}.")
        check_codebook_ablation(self.codebook_init, self.train_codebook, self.quantizer_type)
        if self.scales is not None:
            self._check_scales()
        if not 0 <= self.quant_resi <= 1:
            raise ValueError(f"`quant_resi` must lie in [0, 1] (0 turns the refiners φ off), got {self.quant_resi}.")
        if self.num_shared_phi < 1:
            raise ValueError(
                f"`num_shared_phi` must be at least 1 (1: one φ for all scales; len(scales): one per scale), "
                f"got {self.num_shared_phi}."
            )

    def _check_scales(self):
        """Scales must grow strictly from coarse to fine and end at the latent map, which the last scale quantizes."""
        scales = self.scales
        if not scales or any(side < 1 for side in scales):
            raise ValueError(f"`scales` must be a non-empty list of positive token-map sides, got {scales}.")
        if any(scales[i + 1] <= scales[i] for i in range(len(scales) - 1)):
            raise ValueError(f"`scales` must be strictly increasing (coarse to fine), got {scales}.")
        if scales[-1] != self.latent_size:
            raise ValueError(
                f"The last of `scales` must equal the latent size {self.latent_size} (image_size {self.image_size} / "
                f"downsampling factor {self.downsample_factor}), got {scales}; end the list at {self.latent_size} or "
                f"leave `scales` unset to derive it."
            )


__all__ = ["SimVQConfig"]
