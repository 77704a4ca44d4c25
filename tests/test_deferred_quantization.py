import torch
from conftest import tiny_config

from hf_simvq import SimVQModel
from hf_simvq.training.deferred_quantization import DeferredQuantizationAutoencoder, initialize_codebook_from_latents


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
