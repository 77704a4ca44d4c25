import pytest
import torch
from accelerate import Accelerator
from conftest import tiny_config
from torch.utils.data import DataLoader

from hf_simvq import SimVQModel
from hf_simvq.models.simvq.quantization import nearest_code_indices
from hf_simvq.training.deferred_quantization import (
    DeferredQuantizationAutoencoder,
    encoder_latents,
    initialize_codebook_from_latents,
)


def correlated_latents(num: int, dim: int, seed: int = 0) -> torch.Tensor:
    """Latents far from the codebook's N(0, 1/d): shifted mean, strongly anisotropic covariance."""
    generator = torch.Generator().manual_seed(seed)
    mixing = torch.randn(dim, dim, generator=generator) * torch.linspace(0.05, 3.0, dim)
    return torch.randn(num, dim, generator=generator) @ mixing.T + torch.linspace(-2, 2, dim)


def test_unquantized_phase_skips_the_quantizer_and_quantized_phase_matches_the_model(images):
    torch.manual_seed(0)
    model = SimVQModel(tiny_config()).eval()
    autoencoder = DeferredQuantizationAutoencoder(model)
    with torch.no_grad():
        deferred = autoencoder(images, quantize=False)
        quantized = autoencoder(images, quantize=True)
        expected_deferred = model.decoder(model.encoder(images))
        expected_quantized = model(images)
    assert deferred["image_tokens"] is None
    assert float(deferred["quantization_loss"]) == 0.0
    torch.testing.assert_close(deferred["reconstruction"], expected_deferred, rtol=0, atol=0)
    torch.testing.assert_close(quantized["reconstruction"], expected_quantized.reconstruction, rtol=0, atol=0)
    assert torch.equal(quantized["image_tokens"], expected_quantized.image_tokens)
    assert not torch.allclose(deferred["reconstruction"], quantized["reconstruction"])


def test_simvq_init_matches_latent_moments_and_keeps_the_frozen_codebook():
    torch.manual_seed(0)
    quantizer = SimVQModel(tiny_config(codebook_size=4096)).quantize
    frozen_before = quantizer.frozen_codebook.clone()
    latents = correlated_latents(20000, quantizer.embed_dim)
    initialize_codebook_from_latents(quantizer, latents)

    codebook = quantizer.codebook().detach().double()
    latents = latents.double()
    assert torch.equal(quantizer.frozen_codebook, frozen_before)
    # Exact in population: the effective codebook's own sample moments equal the latents' to float precision.
    torch.testing.assert_close(codebook.mean(0), latents.mean(0), rtol=0, atol=1e-4)
    torch.testing.assert_close(torch.cov(codebook.T), torch.cov(latents.T), rtol=1e-3, atol=1e-3)


def test_vq_init_puts_codes_on_latent_clusters():
    torch.manual_seed(0)
    quantizer = SimVQModel(tiny_config(quantizer_type="vq", codebook_size=64)).quantize
    generator = torch.Generator().manual_seed(0)
    centers = 3 + torch.randn(32, quantizer.embed_dim, generator=generator)
    latents = centers.repeat_interleave(100, dim=0) + 0.05 * torch.randn(3200, quantizer.embed_dim, generator=generator)
    before = quantizer.codebook().detach().clone()
    initialize_codebook_from_latents(quantizer, latents, generator=torch.Generator().manual_seed(0))
    codebook = quantizer.codebook().detach()

    nearest_latent_before = torch.cdist(before, latents).min(dim=1).values
    nearest_latent_after = torch.cdist(codebook, latents).min(dim=1).values
    assert nearest_latent_before.min() > 5  # the random init N(0, 1/d) was far from the data
    assert nearest_latent_after.max() < 0.5  # every code now sits inside a cluster of latents
    # k-means lowers the quantization error below that of the same number of random latent samples.
    kmeans_error = torch.cdist(latents, codebook).min(dim=1).values.pow(2).mean()
    sampled = latents[torch.randperm(3200, generator=torch.Generator().manual_seed(1))[:64]]
    sample_error = torch.cdist(latents, sampled).min(dim=1).values.pow(2).mean()
    assert kmeans_error < sample_error


def clustered_latents(num: int, dim: int, seed: int) -> torch.Tensor:
    """Latents in 16 tight clusters: far from Gaussian, so a moment-matched Gaussian codebook misses their shape."""
    generator = torch.Generator().manual_seed(0)  # the same clusters for every seed
    centers = 4 * torch.randn(16, dim, generator=generator)
    generator.manual_seed(seed)
    which = torch.randint(16, (num,), generator=generator)
    return centers[which] + 0.1 * torch.randn(num, dim, generator=generator)


def distance_to_nearest_latent(codebook: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
    """Exact differences, not cdist's matmul shortcut (whose fp32 error at these norms is 1e-2)."""
    return torch.cdist(codebook, latents, compute_mode="donot_use_mm_for_euclid_dist").min(dim=1).values


def used_codes(quantizer, latents: torch.Tensor) -> int:
    return int(nearest_code_indices(latents, quantizer.codebook().detach()).unique().numel())


def test_samples_init_makes_the_codebook_distinct_latents_with_c_whitened_and_frozen():
    torch.manual_seed(0)
    quantizer = SimVQModel(tiny_config(codebook_size=256)).quantize
    latents = correlated_latents(2000, quantizer.embed_dim)
    latents = torch.cat([latents, latents[:1].expand(500, -1)])  # a flat region: one latent 501 times
    initialize_codebook_from_latents(quantizer, latents, torch.Generator().manual_seed(0), method="samples")

    codebook = quantizer.codebook().detach()
    assert distance_to_nearest_latent(codebook, latents).max() < 1e-4  # every code is a latent
    assert torch.unique(codebook.round(decimals=4), dim=0).shape[0] == 256  # and no two codes are the same one
    frozen = quantizer.frozen_codebook.double()
    assert "frozen_codebook" in dict(quantizer.named_buffers())  # still frozen: no optimizer can reach it
    std = quantizer.codebook_init_std
    torch.testing.assert_close(frozen.mean(0), torch.zeros_like(frozen.mean(0)), rtol=0, atol=1e-6)
    torch.testing.assert_close(torch.cov(frozen.T), std**2 * torch.eye(16, dtype=frozen.dtype), rtol=0, atol=1e-6)


def test_samples_init_covers_clustered_latents_where_the_moment_fit_leaves_codes_dead():
    dim = tiny_config().embed_dim
    training, held_out = clustered_latents(20000, dim, seed=1), clustered_latents(20000, dim, seed=2)
    usage = {}
    for method in ("fit", "samples"):
        torch.manual_seed(0)
        quantizer = SimVQModel(tiny_config(codebook_size=256)).quantize
        initialize_codebook_from_latents(quantizer, training, torch.Generator().manual_seed(0), method=method)
        usage[method] = used_codes(quantizer, held_out)
    # A Gaussian fitted to 16 clusters puts most codes in the empty space between them.
    assert usage["fit"] < 128 < 240 < usage["samples"], usage


def test_samples_init_of_plain_vq_and_too_few_distinct_latents():
    torch.manual_seed(0)
    quantizer = SimVQModel(tiny_config(quantizer_type="vq", codebook_size=64)).quantize
    latents = correlated_latents(500, quantizer.embed_dim)
    initialize_codebook_from_latents(quantizer, latents, torch.Generator().manual_seed(0), method="samples")
    assert distance_to_nearest_latent(quantizer.codebook().detach(), latents).max() < 1e-6

    repeated = latents[:40].repeat(10, 1)  # 400 latents, 40 distinct: not enough for 64 distinct codes
    with pytest.raises(ValueError, match="needs 64 distinct encoder latents.*gave 40.*--deferred_init_batches"):
        initialize_codebook_from_latents(quantizer, repeated, method="samples")
    with pytest.raises(ValueError, match="must be one of"):
        initialize_codebook_from_latents(quantizer, latents, method="kmeans")


def test_encoder_latents_reads_more_batches_until_one_latent_per_code(images):
    model = SimVQModel(tiny_config()).eval()
    dataloader = DataLoader([{"pixel_values": image} for image in torch.cat([images, images])], batch_size=1)
    tokens_per_image = (model.config.image_size // 4) ** 2
    assert len(encoder_latents(Accelerator(cpu=True), model, dataloader, 1)) == tokens_per_image
    wanted = 2 * tokens_per_image + 1  # two batches fall one short: a third is read
    assert len(encoder_latents(Accelerator(cpu=True), model, dataloader, 1, wanted)) == 3 * tokens_per_image
