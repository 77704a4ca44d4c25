"""Short-time objective intelligibility of reconstructed speech (pystoi)."""

import datasets
import evaluate
import numpy as np

from hf_simvq.evaluation import audio_quality

_DESCRIPTION = """
Short-time objective intelligibility (Taal et al. 2011), with the reference implementation pystoi.
Each prediction and reference is one mono waveform (float samples in [-1, 1]) at `sampling_rate`;
the score is computed per utterance with the formula of `hf_simvq.evaluation.audio_quality` and averaged over
utterances.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of 1-D arrays): reconstructed waveforms.
    references (`list` of 1-D arrays): original waveforms, same lengths.
    sampling_rate (`int`, defaults to 24000): their rate in Hz.
Returns:
    stoi (`float`): mean STOI in [0, 1] (1: as intelligible as the original).
Examples:
    >>> metric = evaluate.load("hf_simvq/evaluation/metrics/stoi")
    >>> speech = np.random.default_rng(0).normal(size=24000).astype(np.float32) * 0.1
    >>> round(metric.compute(predictions=[speech], references=[speech])["stoi"], 3)
    1.0
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class STOI(evaluate.Metric):
    def _info(self):
        waveform = datasets.Sequence(datasets.Value("float32"))
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": waveform, "references": waveform}),
        )

    def _compute(self, predictions, references, sampling_rate: int = 24000):
        pairs = [
            (np.asarray(prediction, dtype=np.float32), np.asarray(reference, dtype=np.float32))
            for prediction, reference in zip(predictions, references, strict=True)
        ]
        return {"stoi": float(np.mean([audio_quality.stoi(p, r, sampling_rate) for p, r in pairs]))}
