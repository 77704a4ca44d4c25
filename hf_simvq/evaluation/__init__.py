"""Measuring tokenizers: streaming whole-set evaluation, its metric building blocks, and `evaluate` metric modules.

- `evaluator.py`: `evaluate_tokenizer`, one pass over a dataset on 1 or N processes.
- `codebook_statistics.py`, `image_quality.py`, `inception.py`, `lpips_network.py`: the formulas and networks.
- `metrics/<name>/<name>.py`: the same formulas as `evaluate` modules (`load_metric(name)`), loadable offline.
"""

from .evaluator import DEFAULT_METRICS, evaluate_tokenizer

__all__ = ["DEFAULT_METRICS", "evaluate_tokenizer"]
