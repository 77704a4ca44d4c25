"""Voiced/unvoiced F1 of reconstructed speech against the original's."""

import datasets
import evaluate
import numpy as np

from hf_simvq.evaluation import audio_quality

_DESCRIPTION = """
Voiced/unvoiced F1: how well the voicing of reconstructed speech matches the original's, frame by frame
(40 ms frames every 10 ms, normalised-autocorrelation voicing detector).
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
    vuv_f1 (`float`): F1 of the predictions' voiced frames against the references', pooled over all frames.
Examples:
    >>> metric = evaluate.load("hf_simvq/evaluation/metrics/vuv_f1")
    >>> metric.compute(predictions=[speech], references=[speech])["vuv_f1"]
    1.0
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class VUVF1(evaluate.Metric):
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
        counts = sum(audio_quality.voicing_counts(p, r, sampling_rate) for p, r in pairs)
        return {"vuv_f1": audio_quality.f1_from_counts(counts)}
