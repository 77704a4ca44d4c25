"""Speech reconstruction scores, per utterance: log-mel distance, STOI, wide-band PESQ and voicing F1.

STOI and PESQ are the reference implementations (`pystoi`; `pesq`, ITU-T P.862.2 wide-band at 16 kHz as the SimVQ
paper reports it); the audio is resampled for them by scipy's polyphase filter. V/UV F1 uses a plain normalised
autocorrelation voicing detector (no pitch-tracker weights exist offline here): a 40 ms frame is voiced when it
holds energy and its autocorrelation peaks above 0.5 at a lag of 60–400 Hz. UTMOS needs SSL weights that no
offline package ships, so it is never computed here (`UTMOS_UNAVAILABLE` says why) rather than faked.
"""

import numpy as np
import torch

from ..training.audio_losses import LogMelSpectrogram
from ..training.speech_data import resample

PESQ_RATE = 16000
VOICING_RATE = 16000
UTMOS_UNAVAILABLE = (
    "UTMOS needs the weights of its SSL speech model (UTMOS22 strong learner: wav2vec 2.0 + its MOS head), which no "
    "installed package ships and this machine cannot download; it is left out rather than estimated."
)


def mel_distance(reconstruction: np.ndarray, original: np.ndarray, spectrogram: LogMelSpectrogram) -> float:
    """Mean |log-mel(reconstruction) − log-mel(original)|: the training loss's spectrogram, on one utterance."""
    pair = torch.from_numpy(np.stack([reconstruction, original]).astype(np.float32))
    mels = spectrogram(pair)
    return (mels[0] - mels[1]).abs().mean().item()


def stoi(reconstruction: np.ndarray, original: np.ndarray, sampling_rate: int) -> float:
    """Short-time objective intelligibility in [0, 1] (pystoi; it resamples to 10 kHz itself)."""
    from pystoi import stoi as reference_stoi

    return float(reference_stoi(original, reconstruction, sampling_rate, extended=False))


def wideband_pesq(reconstruction: np.ndarray, original: np.ndarray, sampling_rate: int) -> float:
    """Wide-band PESQ (MOS-LQO, about 1.0–4.6) at 16 kHz; NaN where the reference holds no speech to compare."""
    from pesq import PesqError, pesq

    score = pesq(
        PESQ_RATE,
        resample(original, sampling_rate, PESQ_RATE).astype(np.float64),
        resample(reconstruction, sampling_rate, PESQ_RATE).astype(np.float64),
        "wb",
        on_error=PesqError.RETURN_VALUES,
    )
    return float(score) if score >= 0 else float("nan")  # negative values are pesq's error codes


def voicing(
    waveform: np.ndarray,
    sampling_rate: int,
    frame_seconds: float = 0.04,
    hop_seconds: float = 0.01,
    threshold: float = 0.5,
) -> np.ndarray:
    """Per-frame voiced (True) / unvoiced decisions from the normalised autocorrelation at pitch lags 60–400 Hz."""
    signal = resample(waveform, sampling_rate, VOICING_RATE).astype(np.float64)
    frame, hop = round(frame_seconds * VOICING_RATE), round(hop_seconds * VOICING_RATE)
    if len(signal) < frame:
        return np.zeros(0, dtype=bool)
    frames = np.lib.stride_tricks.sliding_window_view(signal, frame)[::hop]
    frames = frames - frames.mean(axis=1, keepdims=True)
    energy = (frames**2).sum(axis=1)
    spectrum = np.fft.rfft(frames, n=2 * frame, axis=1)
    autocorrelation = np.fft.irfft(np.abs(spectrum) ** 2, axis=1)[:, :frame]
    low, high = VOICING_RATE // 400, VOICING_RATE // 60
    peak = autocorrelation[:, low : high + 1].max(axis=1) / np.maximum(autocorrelation[:, 0], 1e-12)
    loud = energy > 1e-3 * max(energy.max(), 1e-12)
    return loud & (peak > threshold)


def voicing_counts(reconstruction: np.ndarray, original: np.ndarray, sampling_rate: int) -> np.ndarray:
    """`(true positives, false positives, false negatives)` of the reconstruction's voiced frames vs the original's."""
    predicted, reference = voicing(reconstruction, sampling_rate), voicing(original, sampling_rate)
    return np.array([(predicted & reference).sum(), (predicted & ~reference).sum(), (~predicted & reference).sum()])


def f1_from_counts(counts: np.ndarray) -> float:
    true_positives, false_positives, false_negatives = (float(value) for value in counts)
    denominator = 2 * true_positives + false_positives + false_negatives
    return 2 * true_positives / denominator if denominator else 1.0


__all__ = [
    "UTMOS_UNAVAILABLE",
    "f1_from_counts",
    "mel_distance",
    "stoi",
    "voicing",
    "voicing_counts",
    "wideband_pesq",
]
