"""Log-mel L1 distance between reconstructed and original speech."""

import datasets
import evaluate
import numpy as np

from hf_simvq.evaluation import audio_quality
from hf_simvq.training.audio_losses import LogMelSpectrogram

_DESCRIPTION = """
Log-mel L1 distance (100 mels, n_fft 1024, hop 256: the training loss's spectrogram).
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
    mel_distance (`float`): mean |log-mel difference|, 0 for identical audio.
Examples:
    >>> metric = evaluate.load("hf_simvq/evaluation/metrics/mel_distance")
    >>> metric.compute(predictions=[np.zeros(4800)], references=[np.zeros(4800)])["mel_distance"]
    0.0
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class MelDistance(evaluate.Metric):
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
        spectrogram = LogMelSpectrogram(sampling_rate)
        return {"mel_distance": float(np.mean([audio_quality.mel_distance(p, r, spectrogram) for p, r in pairs]))}
