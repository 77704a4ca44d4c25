"""Codebook health: how many codes a tokenizer actually uses, and how spread out its SimVQ projection is.

Every statistic starts from a token histogram (a bincount over the `K` codes), because histograms add up: the
training logs sum them over a window, and evaluation sums them over processes, before computing any ratio.
"""

import torch


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


__all__ = [
    "codebook_usage",
    "dead_codes",
    "effective_rank",
    "perplexity",
    "scale_histograms",
    "token_histogram",
    "utilization",
]
