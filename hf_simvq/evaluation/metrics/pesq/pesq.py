"""Wide-band PESQ of reconstructed speech (the `pesq` package)."""

import datasets
import evaluate
import numpy as np

from hf_simvq.evaluation import audio_quality

_DESCRIPTION = """
Wide-band PESQ (ITU-T P.862.2, at 16 kHz as the SimVQ paper reports it), with the reference
implementation `pesq`.
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
    pesq (`float`): mean MOS-LQO (about 1.0–4.64) over the utterances PESQ can score; pesq_utterances (`int`): how many.
Examples:
    >>> metric = evaluate.load("hf_simvq/evaluation/metrics/pesq")
    >>> metric.compute(predictions=[reconstruction], references=[utterance])  # a spoken utterance, ≥ 1 s
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class PESQ(evaluate.Metric):
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
        scores = [audio_quality.wideband_pesq(p, r, sampling_rate) for p, r in pairs]
        finite = [score for score in scores if not np.isnan(score)]
        if not finite:
            raise ValueError("PESQ found no speech in any reference: give utterances with voice activity.")
        return {"pesq": float(np.mean(finite)), "pesq_utterances": len(finite)}
