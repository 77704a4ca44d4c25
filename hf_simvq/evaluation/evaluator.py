"""Evaluate a SimVQ tokenizer on a whole dataset: codebook usage, PSNR, SSIM, rFID and LPIPS, on 1 or N processes.

The formulas are those of the `evaluate` modules in `hf_simvq/evaluation/metrics` (they share the helpers used
here), but the data is reduced as it streams: the modules keep every input in an Arrow table until `compute`, which
for 50,000 images of 128² would be tens of gigabytes. Here each batch leaves behind only a token histogram,
per-image scores and feature sums. Under accelerate, every per-batch quantity goes through `gather_for_metrics`
(which also drops the samples padded onto the last uneven batch), so N processes give the 1-process result on the
same data.
"""

import logging
from collections.abc import Iterable, Sequence

import torch
from accelerate import Accelerator
from torch import nn

from .codebook_statistics import codebook_usage, token_histogram
from .image_quality import psnr, ssim
from .inception import GaussianStatistics, InceptionFeatureExtractor, InceptionWeightsNotFoundError, frechet_distance
from .lpips_network import LPIPSWeightsNotFoundError, load_lpips

logger = logging.getLogger(__name__)

DEFAULT_METRICS = ("codebook_usage", "psnr", "ssim", "rfid", "lpips")


def _load_optional(name: str, loader, missing_error: type[Exception]):
    """A metric's network, or `None` with a warning when its weights do not exist here (the metric is skipped)."""
    try:
        return loader()
    except missing_error as error:
        logger.warning("Skipping %s: %s", name, error)
        return None


@torch.no_grad()
def evaluate_tokenizer(
    model: nn.Module,
    dataloader: Iterable[dict[str, torch.Tensor]],
    accelerator: Accelerator | None = None,
    metrics: Sequence[str] = DEFAULT_METRICS,
    inception: nn.Module | None = None,
    lpips_model: nn.Module | None = None,
) -> dict[str, float]:
    """Reconstruct every image of `dataloader` and measure the tokenizer over the whole set.

    Args:
        model: a `SimVQModel` (possibly wrapped by `accelerator.prepare`); put in eval mode for the pass.
        dataloader: yields `{"pixel_values": (B, 3, H, W) in [-1, 1]}`; under several processes, a dataloader
            returned by `accelerator.prepare`, so each process sees its shard.
        accelerator: gathers the per-batch results of all processes; `None` for a plain single-process loop.
        metrics: any of `"codebook_usage"` (utilization, perplexity, used/dead codes), `"psnr"`, `"ssim"` (on images
            mapped to [0, 1]), `"rfid"`, `"lpips"`. rFID and LPIPS are skipped with a warning when their weights
            do not exist here.
        inception, lpips_model: networks already loaded (to reuse them across evaluations during training);
            loaded here when needed and not given.

    Returns:
        `{"num_images", "num_tokens", "utilization", "perplexity", "used_codes", "dead_codes", "psnr", "ssim",
        "rfid", "lpips"}`, limited to the metrics requested and available. Every process gets the same dict.
    """
    unknown = set(metrics) - set(DEFAULT_METRICS)
    if unknown:
        raise ValueError(f"Unknown metrics {sorted(unknown)}; choose from {DEFAULT_METRICS}.")
    if "rfid" in metrics and inception is None:
        inception = _load_optional("rfid", InceptionFeatureExtractor, InceptionWeightsNotFoundError)
    if "lpips" in metrics and lpips_model is None:
        lpips_model = _load_optional("lpips", load_lpips, LPIPSWeightsNotFoundError)
    tokenizer = accelerator.unwrap_model(model) if accelerator is not None else model
    device = accelerator.device if accelerator is not None else next(tokenizer.parameters()).device
    for network in (inception, lpips_model):
        if network is not None:
            network.to(device)
    gather = accelerator.gather_for_metrics if accelerator is not None else (lambda values: values)

    codebook_size = tokenizer.config.codebook_size
    histogram = torch.zeros(codebook_size, dtype=torch.long)
    score_sums = {name: 0.0 for name in ("psnr", "ssim", "lpips") if name in metrics}
    if lpips_model is None:
        score_sums.pop("lpips", None)
    feature_statistics = None
    num_images = 0

    was_training = tokenizer.training
    tokenizer.eval()
    for batch in dataloader:
        pixel_values = batch["pixel_values"].to(device)
        encoded = tokenizer.encode(pixel_values)
        reconstruction = tokenizer.decode(encoded.quantized).float().clamp(-1, 1)
        images_01, reconstruction_01 = (pixel_values.float() + 1) / 2, (reconstruction + 1) / 2
        results = {"image_tokens": encoded.image_tokens}
        if "psnr" in score_sums:
            results["psnr"] = psnr(reconstruction_01, images_01)
        if "ssim" in score_sums:
            results["ssim"] = ssim(reconstruction_01, images_01)
        if "lpips" in score_sums:
            results["lpips"] = lpips_model(reconstruction, pixel_values.float()).double()
        if inception is not None:
            results["features"] = torch.stack([inception(reconstruction), inception(pixel_values.float())], dim=1)
        results = gather(results)

        num_images += results["image_tokens"].shape[0]
        histogram += token_histogram(results["image_tokens"].cpu(), codebook_size)
        for name in score_sums:
            score_sums[name] += results[name].double().sum().item()
        if inception is not None:
            features = results["features"].cpu()
            if feature_statistics is None:
                feature_statistics = [GaussianStatistics(features.shape[-1]) for _ in range(2)]
            feature_statistics[0].update(features[:, 0])
            feature_statistics[1].update(features[:, 1])
    tokenizer.train(was_training)

    if num_images == 0:
        raise ValueError("The dataloader yielded no images; check the dataset split and the batch size.")
    evaluation = {"num_images": num_images, "num_tokens": int(histogram.sum())}
    if "codebook_usage" in metrics:
        evaluation.update(codebook_usage(histogram))
    evaluation.update({name: total / num_images for name, total in score_sums.items()})
    if feature_statistics is not None:
        reconstructed, original = (statistics.mean_and_covariance() for statistics in feature_statistics)
        evaluation["rfid"] = frechet_distance(*reconstructed, *original)
    return evaluation


__all__ = ["DEFAULT_METRICS", "evaluate_tokenizer"]
