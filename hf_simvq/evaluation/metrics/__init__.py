"""The tokenizer metrics as `evaluate` modules that ship with the package and load offline.

Each metric is a folder `<name>/<name>.py`, the layout `evaluate.load(local_path)` expects; `load_metric` finds the
folder wherever the package is installed.
"""

from pathlib import Path

import evaluate

METRICS_DIR = Path(__file__).parent
METRIC_NAMES = ("codebook_usage", "psnr", "ssim", "rfid", "lpips", "mel_distance", "stoi", "pesq", "vuv_f1")


def metric_path(name: str) -> str:
    """Local folder of the metric `name`, for `evaluate.load(metric_path(name))`."""
    if name not in METRIC_NAMES:
        raise ValueError(f"Unknown metric {name!r}; the metrics shipped with hf_simvq are {METRIC_NAMES}.")
    return str(METRICS_DIR / name)


def load_metric(name: str, config_name: str | None = None, **kwargs) -> evaluate.EvaluationModule:
    """`evaluate.load` of one of the shipped metrics, offline."""
    return evaluate.load(metric_path(name), config_name, **kwargs)


__all__ = ["METRICS_DIR", "METRIC_NAMES", "load_metric", "metric_path"]
