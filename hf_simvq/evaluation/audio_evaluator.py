"""Evaluate a SimVQ speech tokenizer on a whole set of clips, on 1 or N processes: codebook utilization and
perplexity, log-mel distance, STOI, wide-band PESQ and V/UV F1 (`audio_quality.py`; the same formulas as the
`evaluate` modules in `metrics/`).

Each process scores the clips of its shard; only per-clip scores, voicing counts and token histograms go through
`gather_for_metrics` (which also drops the clips padded onto the last uneven batch), so N processes give the
1-process result on the same data. Every clip is scored over its real samples only (its `padding_mask`).
"""

import logging
import math
from collections.abc import Iterable, Sequence

import numpy as np
import torch
from accelerate import Accelerator
from torch import nn

from ..training.audio_losses import LogMelSpectrogram
from .audio_quality import UTMOS_UNAVAILABLE, f1_from_counts, mel_distance, stoi, voicing_counts, wideband_pesq
from .codebook_statistics import codebook_usage, token_histogram

logger = logging.getLogger(__name__)

AUDIO_METRICS = ("codebook_usage", "mel_distance", "stoi", "pesq", "vuv_f1", "utmos")
DEFAULT_AUDIO_METRICS = ("codebook_usage", "mel_distance", "stoi", "pesq", "vuv_f1")


@torch.no_grad()
def evaluate_audio_tokenizer(
    model: nn.Module,
    dataloader: Iterable[dict[str, torch.Tensor]],
    accelerator: Accelerator | None = None,
    metrics: Sequence[str] = DEFAULT_AUDIO_METRICS,
) -> dict[str, float]:
    """Encode every clip of `dataloader` to codes, decode them, and measure the tokenizer over the whole set.

    Args:
        model: a `SimVQAudioModel` (possibly prepared by `accelerator`); evaluated in eval mode.
        dataloader: yields `{"input_values": (B, 1, samples), "padding_mask": (B, samples)}` at the model's rate.
        accelerator: gathers the results of all processes; `None` for a single-process loop.
        metrics: any of `AUDIO_METRICS`; `"utmos"` is skipped with a warning saying why (no weights offline).

    Returns:
        `{"num_clips", "num_tokens", "utilization", "perplexity", "used_codes", "dead_codes", "mel_distance",
        "stoi", "pesq", "vuv_f1"}`, limited to the metrics requested; PESQ averages the clips it can score
        (`pesq_clips` of them). Every process gets the same dict.
    """
    unknown = set(metrics) - set(AUDIO_METRICS)
    if unknown:
        raise ValueError(f"Unknown audio metrics {sorted(unknown)}; choose from {AUDIO_METRICS}.")
    if "utmos" in metrics:
        logger.warning("Skipping utmos: %s", UTMOS_UNAVAILABLE)
    tokenizer = accelerator.unwrap_model(model) if accelerator is not None else model
    device = accelerator.device if accelerator is not None else next(tokenizer.parameters()).device
    gather = accelerator.gather_for_metrics if accelerator is not None else (lambda values: values)
    rate = tokenizer.config.sampling_rate
    spectrogram = LogMelSpectrogram(rate)
    scorers = {
        "mel_distance": lambda fake, real: mel_distance(fake, real, spectrogram),
        "stoi": lambda fake, real: stoi(fake, real, rate),
        "pesq": lambda fake, real: wideband_pesq(fake, real, rate),
    }
    scorers = {name: scorer for name, scorer in scorers.items() if name in metrics}

    histogram = torch.zeros(tokenizer.config.codebook_size, dtype=torch.long)
    scores: dict[str, list[float]] = {name: [] for name in scorers}
    voicing_totals = np.zeros(3)
    num_clips = 0
    was_training = tokenizer.training
    tokenizer.eval()
    for batch in dataloader:
        input_values, padding_mask = batch["input_values"].to(device), batch["padding_mask"].to(device)
        encoded = tokenizer.encode(input_values, padding_mask=padding_mask)
        reconstruction = tokenizer.decode(encoded.audio_codes).audio_values[..., : input_values.shape[-1]]
        reconstruction = reconstruction.float().clamp(-1, 1).cpu().numpy()
        originals = input_values[:, 0].float().cpu().numpy()
        lengths = padding_mask.sum(dim=-1).cpu().tolist()
        per_clip = {name: [] for name in scorers}
        counts = []
        for fake, real, length in zip(reconstruction, originals, lengths, strict=True):
            fake, real = fake[:length], real[:length]
            for name, scorer in scorers.items():
                per_clip[name].append(scorer(fake, real))
            if "vuv_f1" in metrics:
                counts.append(voicing_counts(fake, real, rate))
        # Codes of padding-only frames are marked -1 and left out of the histogram.
        codes = encoded.audio_codes.masked_fill(encoded.audio_codes_mask == 0, -1)[:, 0]
        results = {
            "codes": codes,
            **{name: torch.tensor(values, dtype=torch.float64, device=device) for name, values in per_clip.items()},
        }
        if counts:
            results["voicing"] = torch.tensor(np.stack(counts), dtype=torch.float64, device=device)
        results = gather(results)
        num_clips += results["codes"].shape[0]
        codes = results["codes"].cpu()
        histogram += token_histogram(codes[codes >= 0], tokenizer.config.codebook_size)
        for name in scores:
            scores[name] += results[name].cpu().tolist()
        if "voicing" in results:
            voicing_totals += results["voicing"].sum(dim=0).cpu().numpy()
    tokenizer.train(was_training)

    if num_clips == 0:
        raise ValueError("The dataloader yielded no clips; check the dataset split and the batch size.")
    evaluation = {"num_clips": num_clips, "num_tokens": int(histogram.sum())}
    if "codebook_usage" in metrics:
        evaluation.update(codebook_usage(histogram))
    for name, values in scores.items():
        finite = [value for value in values if not math.isnan(value)]
        if not finite:
            logger.warning("Skipping %s: no clip holds speech it can score.", name)
            continue
        evaluation[name] = sum(finite) / len(finite)
        if name == "pesq":
            evaluation["pesq_clips"] = len(finite)
    if "vuv_f1" in metrics:
        evaluation["vuv_f1"] = f1_from_counts(voicing_totals)
    return evaluation


__all__ = ["AUDIO_METRICS", "DEFAULT_AUDIO_METRICS", "evaluate_audio_tokenizer"]
