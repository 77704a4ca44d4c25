"""Deferred Quantization ("Early Quantization Shrinks Codebook"): train the autoencoder without its quantizer first,
then start the codebook where the encoder's latents already are.

A codebook that is quantized against from step 0 chases latents that are still moving, and codes that lose that
race are never picked again. Deferring quantization lets the latents settle; initialising the codebook from them
puts every code in the region the encoder actually uses, so more codes can win from the start.

Two initialisations (`DEFERRED_CODEBOOK_INITS`): `"fit"` matches the codebook to the latents' statistics (SimVQ: W, b
moment-matched, C stays the Gaussian draw; VQ: k-means); `"samples"` makes the codebook K distinct encoder latents
themselves (SimVQ: C becomes those latents whitened, and W, b un-whiten them). A moment-matched Gaussian covers the
latents' extent but not their shape: fitted to a trained 65,536-code encoder's latents (cpu-65k of 2026-12-03: d = 16,
600 steps) of half the validation photos' crops, it uses 65.0 % of the codes on the other half, latent samples 92.0 %
(`benchmarks/codebook_init.py`, training/RESULTS.md). Samples match the latents of the photos they come from; on
unseen photos that edge shrinks.
"""

import torch
from accelerate import Accelerator
from accelerate.logging import get_logger
from diffusers.training_utils import EMAModel
from torch import nn
from torch.utils.data import DataLoader

from ..models.simvq.modeling_simvq import SimVQModel
from ..models.simvq.modeling_simvq_audio import SimVQAudioModel
from ..models.simvq.quantization import SimVQQuantizer, VectorQuantizer, VQQuantizer, nearest_code_indices

logger = get_logger(__name__)

DEFERRED_CODEBOOK_INITS = ("fit", "samples")


class DeferredQuantizationAutoencoder(nn.Module):
    """The training view of a `SimVQModel`: one `forward` that either quantizes or skips the quantizer.

    Both phases go through this module's `forward` so that a `DistributedDataParallel` wrapper around it sees every
    step (calling `model.decoder(model.encoder(x))` on the inner module would bypass DDP's gradient sync).
    """

    def __init__(self, model: SimVQModel):
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor, quantize: bool = True) -> dict[str, torch.Tensor | None]:
        """`reconstruction`, `latents`, `image_tokens` (None unquantized) and `quantization_loss` (0 unquantized)."""
        if not quantize:
            latents = self.model.encoder(pixel_values)
            return {
                "reconstruction": self.model.decoder(latents),
                "latents": latents,
                "image_tokens": None,
                "quantization_loss": latents.new_zeros(()),
            }
        encoded = self.model.encode(pixel_values)
        return {
            "reconstruction": self.model.decode(encoded.quantized),
            "latents": encoded.latents,
            "image_tokens": encoded.image_tokens,
            "quantization_loss": encoded.quantization_loss,
        }


class DeferredQuantizationSpeechAutoencoder(nn.Module):
    """The same training view of a `SimVQAudioModel`: its `forward`, or the encoder straight into the decoder."""

    def __init__(self, model: SimVQAudioModel):
        super().__init__()
        self.model = model

    def forward(
        self, input_values: torch.Tensor, padding_mask: torch.Tensor | None = None, quantize: bool = True
    ) -> dict[str, torch.Tensor | None]:
        """`audio_values` (trimmed to the input), `audio_codes` and `audio_codes_mask` (None unquantized) and
        `quantization_loss` (0 unquantized)."""
        if quantize:
            outputs = self.model(input_values, padding_mask=padding_mask)
            return {
                "audio_values": outputs.audio_values,
                "audio_codes": outputs.audio_codes,
                "audio_codes_mask": outputs.audio_codes_mask,
                "quantization_loss": outputs.quantization_loss,
            }
        latents = self.model.encoder(input_values)
        return {
            "audio_values": self.model.decode_latents(latents)[..., : input_values.shape[-1]],
            "audio_codes": None,
            "audio_codes_mask": None,
            "quantization_loss": latents.new_zeros(()),
        }


def symmetric_matrix_power(matrix: torch.Tensor, power: float, eps: float = 1e-8) -> torch.Tensor:
    """`matrix ** power` of a symmetric positive semi-definite matrix; eigenvalues below `eps` are clamped to it."""
    eigenvalues, eigenvectors = torch.linalg.eigh(matrix)
    return eigenvectors @ torch.diag(eigenvalues.clamp_min(eps) ** power) @ eigenvectors.T


def mean_and_covariance(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and unbiased `d × d` covariance of `(N, d)` rows."""
    mean = rows.mean(dim=0)
    centered = rows - mean
    return mean, centered.T @ centered / max(rows.shape[0] - 1, 1)


@torch.no_grad()
def fit_projection_to_latents(quantizer: SimVQQuantizer, latents: torch.Tensor) -> None:
    """Set SimVQ's `W`, `b` so the effective codebook `C·Wᵀ + b` has the latents' mean and covariance.

    `C` stays frozen. With `W = Σ_z^{1/2} Σ_C^{-1/2}` the codes' covariance becomes `W Σ_C Wᵀ = Σ_z`, and
    `b = μ_z − W μ_C` moves their mean onto the latents' mean. Computed in float64: Σ_C^{-1/2} of a d×d matrix
    estimated from K codes is otherwise noticeably off when some directions carry little variance.
    """
    if quantizer.projection.bias is None:
        raise ValueError("Deferred quantization needs the SimVQ projection bias (`projection_bias=True`).")
    latent_mean, latent_covariance = mean_and_covariance(latents.double())
    code_mean, code_covariance = mean_and_covariance(quantizer.frozen_codebook.double())
    weight = symmetric_matrix_power(latent_covariance, 0.5) @ symmetric_matrix_power(code_covariance, -0.5)
    quantizer.projection.weight.copy_(weight)
    quantizer.projection.bias.copy_(latent_mean - weight @ code_mean)


@torch.no_grad()
def sample_codebook_from_latents(
    quantizer: VectorQuantizer, latents: torch.Tensor, generator: torch.Generator | None = None
) -> None:
    """Make the effective codebook `K` distinct rows of the latents, drawn at random; for SimVQ `C` stays frozen.

    Distinct, because two equal codes tie forever and the tie rule gives every latent to the lower index (flat image
    regions encode to identical latents). SimVQ stores the samples whitened, `C = (s − μ)·Σ^{-1/2}·std` with the
    codebook's own init std, and sets `W = Σ^{1/2} / std`, `b = μ`, so that `C·Wᵀ + b = s`: C keeps the scale of the
    Gaussian draw it replaces (so W trains at the same rate) and only its shape comes from the data.
    """
    num_codes = quantizer.codebook_size
    distinct = torch.unique(latents.double(), dim=0)
    if distinct.shape[0] < num_codes:
        raise ValueError(
            f"The codebook needs {num_codes} distinct encoder latents, the init batches gave {distinct.shape[0]}: "
            "raise --deferred_init_batches, or use --deferred_codebook_init fit."
        )
    samples = distinct[torch.randperm(distinct.shape[0], generator=generator)[:num_codes].to(distinct.device)]
    if isinstance(quantizer, VQQuantizer):
        quantizer.embedding.weight.copy_(samples)
        return
    if quantizer.projection.bias is None:
        raise ValueError("A codebook of latent samples needs the SimVQ projection bias (`projection_bias=True`).")
    mean, covariance = mean_and_covariance(samples)
    std = quantizer.codebook_init_std
    quantizer.frozen_codebook.copy_((samples - mean) @ symmetric_matrix_power(covariance, -0.5) * std)
    quantizer.projection.weight.copy_(symmetric_matrix_power(covariance, 0.5) / std)
    quantizer.projection.bias.copy_(mean)


@torch.no_grad()
def kmeans_codebook(
    quantizer: VQQuantizer, latents: torch.Tensor, num_iterations: int = 5, generator: torch.Generator | None = None
) -> None:
    """Set a plain-VQ codebook to k-means centroids of the latents (Lloyd's algorithm, seeded with latent samples).

    A cluster that ends up empty keeps its seed, which is itself a latent, so no code starts outside the data.
    With fewer latents than codes, the seeds repeat latents; Lloyd then leaves the duplicates where they are.
    """
    num_codes = quantizer.codebook_size
    latents = latents.float()
    replace = latents.shape[0] < num_codes
    if replace:
        seeds = torch.randint(latents.shape[0], (num_codes,), generator=generator)
    else:
        seeds = torch.randperm(latents.shape[0], generator=generator)[:num_codes]
    centroids = latents[seeds.to(latents.device)].clone()
    for _ in range(num_iterations):
        assignment = nearest_code_indices(latents, centroids)
        sums = torch.zeros_like(centroids).index_add_(0, assignment, latents)
        counts = torch.bincount(assignment, minlength=num_codes).unsqueeze(1)
        centroids = torch.where(counts > 0, sums / counts.clamp_min(1), centroids)
    quantizer.embedding.weight.copy_(centroids)


def initialize_codebook_from_latents(
    quantizer: VectorQuantizer,
    latents: torch.Tensor,
    generator: torch.Generator | None = None,
    method: str = "fit",
) -> None:
    """Start the codebook where the `(N, d)` encoder latents are: `"fit"` (moment matching for SimVQ, k-means for
    VQ) or `"samples"` (K distinct latents, both quantizers)."""
    if latents.ndim != 2 or latents.shape[1] != quantizer.embed_dim:
        raise ValueError(f"Expected latents of shape (N, {quantizer.embed_dim}), got {tuple(latents.shape)}.")
    if method not in DEFERRED_CODEBOOK_INITS:
        raise ValueError(f"The deferred codebook init must be one of {DEFERRED_CODEBOOK_INITS}, got {method!r}.")
    if method == "samples":
        sample_codebook_from_latents(quantizer, latents, generator=generator)
    elif isinstance(quantizer, SimVQQuantizer):
        fit_projection_to_latents(quantizer, latents)
    elif isinstance(quantizer, VQQuantizer):
        kmeans_codebook(quantizer, latents, generator=generator)
    else:
        raise TypeError(f"Deferred quantization does not know how to initialise a {type(quantizer).__name__}.")


@torch.no_grad()
def encoder_latents(
    accelerator: Accelerator,
    model: SimVQModel | SimVQAudioModel,
    dataloader: DataLoader,
    num_batches: int,
    min_latents: int = 0,
):
    """`(N, d)` encoder latents of the first `num_batches` batches, gathered from every process; more batches if
    those hold fewer than `min_latents` rows (a codebook of latent samples needs a distinct one per code).

    A batch holds `pixel_values` (image) or `input_values` (speech); the latents' channel axis is 1 in both.
    """
    input_name = "input_values" if isinstance(model, SimVQAudioModel) else "pixel_values"
    latents, num_latents = [], 0
    for batch_index, batch in enumerate(dataloader):
        if batch_index >= num_batches and num_latents >= min_latents:
            break
        batch_latents = model.encoder(batch[input_name])
        latents.append(accelerator.gather(batch_latents.movedim(1, -1).reshape(-1, batch_latents.shape[1])))
        num_latents += latents[-1].shape[0]
    return torch.cat(latents).float()


def start_quantizing(
    accelerator: Accelerator,
    model: SimVQModel | SimVQAudioModel,
    ema: EMAModel,
    latent_dataloader: DataLoader,
    num_batches: int,
    seed: int,
    method: str = "fit",
) -> None:
    """End of the unquantized phase: put the codebook where the encoder's latents are, and restart the EMA there.

    Every process computes the same initialisation from the same gathered latents (k-means and the sampling are
    seeded), so the replicas stay identical without a broadcast.
    """
    # Twice K for `samples`: flat image regions repeat latents (576 of 65,536 on the default photos were repeats).
    min_latents = 2 * model.quantize.codebook_size if method == "samples" else 0
    latents = encoder_latents(accelerator, model, latent_dataloader, num_batches, min_latents)
    generator = torch.Generator(device=latents.device).manual_seed(seed)
    initialize_codebook_from_latents(model.quantize, latents, generator=generator, method=method)
    # The averaged weights before the switch belong to a model without a working codebook.
    for shadow, parameter in zip(ema.shadow_params, model.parameters(), strict=True):
        shadow.copy_(parameter.detach())
    ema.optimization_step = 0
    logger.info(f"Quantization starts: codebook initialised ({method}) from {len(latents)} encoder latents.")


__all__ = [
    "DEFERRED_CODEBOOK_INITS",
    "DeferredQuantizationAutoencoder",
    "fit_projection_to_latents",
    "initialize_codebook_from_latents",
    "kmeans_codebook",
    "mean_and_covariance",
    "sample_codebook_from_latents",
    "start_quantizing",
    "symmetric_matrix_power",
]
