"""Codebook health: how many codes a tokenizer actually uses, how spread out its SimVQ projection is, and whether its
used codes have shrunk into a narrower region than the latents they quantize.

Every usage statistic starts from a token histogram (a bincount over the `K` codes), because histograms add up: the
training logs sum them over a window, and evaluation sums them over processes, before computing any ratio.
"""

import torch

# All pairs of 262,144 codes are 34 billion distances; 2,048 rows are 2 million, a few milliseconds.
MAX_PAIRWISE_ROWS = 2048


def token_histogram(image_tokens: torch.Tensor, codebook_size: int) -> torch.LongTensor:
    """How often each of the `codebook_size` codes occurs in `image_tokens` (any shape): a `(K,)` int64 tensor."""
    if image_tokens.dtype.is_floating_point or image_tokens.dtype == torch.bool:
        raise ValueError(f"Token ids must be an integer tensor, got dtype {image_tokens.dtype}.")
    tokens = image_tokens.reshape(-1).long()
    if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= codebook_size):
        raise ValueError(
            f"Token ids must lie in [0, {codebook_size}) for codebook_size={codebook_size}, got "
            f"[{int(tokens.min())}, {int(tokens.max())}]. Pass the codebook_size of the model that made the tokens."
        )
    return torch.bincount(tokens, minlength=codebook_size)


def scale_histograms(quantizer, image_tokens: torch.LongTensor) -> torch.LongTensor:
    """`(num_scales, K)` code counts of a multi-scale quantizer's concatenated ids `(B, L)`, one row per scale.

    Counts rather than ratios, so windows and processes add up before any usage statistic is taken
    (`codebook_usage(row)`); coarse scales have few tokens and use few codes by nature.
    """
    return torch.stack([token_histogram(ids, quantizer.codebook_size) for ids in quantizer.split_scales(image_tokens)])


def _check_histogram(histogram: torch.Tensor) -> torch.Tensor:
    if histogram.ndim != 1 or histogram.numel() == 0:
        raise ValueError(f"Expected a 1-D histogram with one count per code, got shape {tuple(histogram.shape)}.")
    return histogram


def utilization(histogram: torch.Tensor) -> float:
    """Fraction of codes used at least once: the paper's "codebook utilization"."""
    histogram = _check_histogram(histogram)
    return (histogram > 0).sum().item() / histogram.numel()


def dead_codes(histogram: torch.Tensor) -> int:
    """Number of codes never used."""
    return int((_check_histogram(histogram) == 0).sum())


def perplexity(histogram: torch.Tensor) -> float:
    """`exp(H(p))` of the code distribution: the number of equally likely codes that would give the same entropy.

    It equals the number of used codes when they are used equally often and drops when a few codes dominate,
    which utilization alone cannot show. An empty histogram has perplexity 1 (nothing is uncertain).
    """
    histogram = _check_histogram(histogram).double()
    total = histogram.sum()
    if total == 0:
        return 1.0
    probabilities = histogram[histogram > 0] / total
    return torch.exp(-(probabilities * probabilities.log()).sum()).item()


def codebook_usage(histogram: torch.Tensor) -> dict[str, float]:
    """All histogram statistics at once, under the names the logs, metrics and model cards use."""
    return {
        "utilization": utilization(histogram),
        "perplexity": perplexity(histogram),
        "used_codes": int((histogram > 0).sum()),
        "dead_codes": dead_codes(histogram),
    }


def effective_rank(weight: torch.Tensor) -> float:
    """Effective rank of a matrix (Roy & Vetterli, 2007): `exp` of the entropy of its normalised singular values.

    For the SimVQ projection `W` it says how many directions of the latent space the codebook really spans
    (`d` for a well-conditioned `W`, 1 for a rank-one one); the SimVQ paper reports it falling during training.
    """
    if weight.ndim != 2:
        raise ValueError(f"effective_rank needs a 2-D matrix, got shape {tuple(weight.shape)}.")
    singular_values = torch.linalg.svdvals(weight.detach().double())
    total = singular_values.sum()
    if total == 0:
        return 0.0
    probabilities = singular_values[singular_values > 0] / total
    return torch.exp(-(probabilities * probabilities.log()).sum()).item()


def _check_rows(points: torch.Tensor) -> torch.Tensor:
    if points.ndim != 2:
        raise ValueError(f"Expected an (N, d) matrix with one vector per row, got shape {tuple(points.shape)}.")
    return points.detach().double()


def rms_spread(points: torch.Tensor) -> float:
    """Root-mean-square distance of the rows of `points` `(N, d)` to their mean, `sqrt(trace(covariance))`: how far a
    cloud of vectors extends, in the vectors' own units, so latents and codes compare directly. 0 for no rows."""
    points = _check_rows(points)
    if points.shape[0] == 0:
        return 0.0
    return (points - points.mean(dim=0)).pow(2).sum(dim=1).mean().sqrt().item()


def mean_pairwise_distance(points: torch.Tensor, max_rows: int = MAX_PAIRWISE_ROWS) -> float:
    """Mean Euclidean distance between distinct rows of `points` `(N, d)`: how far apart the codes are from each other,
    which falls when a codebook shrinks even if no code dies. 0 for fewer than two rows.

    Above `max_rows` rows it averages over a fixed random subsample (seed 0), so the same codes always give the same
    estimate and the curves do not jitter from the subsampling.
    """
    points = _check_rows(points)
    if points.shape[0] < 2:
        return 0.0
    if points.shape[0] > max_rows:
        rows = torch.randperm(points.shape[0], generator=torch.Generator().manual_seed(0))[:max_rows]
        points = points[rows.to(points.device)]
    return torch.pdist(points).mean().item()


def shrinkage_statistics(
    codebook: torch.Tensor, histogram: torch.Tensor, latents: torch.Tensor | None = None
) -> dict[str, float]:
    """Has the codebook shrunk? ("Early Quantization Shrinks Codebook", Zhao et al.)

    Quantizing from the first step can anchor the codes to a narrow region of the latent space: utilization may stay
    high while the used codes cover only part of where the latents are. This compares the codes that `histogram`
    counts as used (rows of the effective `codebook` `(K, d)`) with the `latents` `(N, d)` they quantize:
    `code_spread` and `mean_code_distance` of the used codes, `latent_spread`, and `spread_ratio` = latent spread /
    code spread (about 1 when the used codes cover the latents; above 1 when they have shrunk; `inf` for one code).
    """
    used = codebook[_check_histogram(histogram).to(codebook.device) > 0]
    statistics = {"code_spread": rms_spread(used), "mean_code_distance": mean_pairwise_distance(used)}
    if latents is not None:
        statistics["latent_spread"] = rms_spread(latents)
        code_spread = statistics["code_spread"]
        statistics["spread_ratio"] = statistics["latent_spread"] / code_spread if code_spread else float("inf")
    return statistics


__all__ = [
    "codebook_usage",
    "dead_codes",
    "effective_rank",
    "mean_pairwise_distance",
    "perplexity",
    "rms_spread",
    "scale_histograms",
    "shrinkage_statistics",
    "token_histogram",
    "utilization",
]
