"""Measuring tokenizers: streaming whole-set evaluation, its metric building blocks, and `evaluate` metric modules.

- `evaluator.py`, `audio_evaluator.py`: `evaluate_tokenizer` (images), `evaluate_audio_tokenizer` (speech), one pass
  over a dataset on 1 or N processes.
- `codebook_statistics.py`, `image_quality.py`, `inception.py`, `lpips_network.py`: the formulas and networks.
- `metrics/<name>/<name>.py`: the same formulas as `evaluate` modules (`load_metric(name)`), loadable offline.
"""

from .audio_evaluator import AUDIO_METRICS, DEFAULT_AUDIO_METRICS, evaluate_audio_tokenizer
from .evaluator import DEFAULT_METRICS, evaluate_tokenizer

__all__ = [
    "AUDIO_METRICS",
    "DEFAULT_AUDIO_METRICS",
    "DEFAULT_METRICS",
    "evaluate_audio_tokenizer",
    "evaluate_tokenizer",
]
