"""The speech tokenizer's reconstruction loss: L1 between log-mel spectrograms (the authors'
`MelSpecReconstructionLoss`, as Vocos has it: 100 mels, n_fft 1024, hop 256, magnitude, log clipped at 1e-7),
weight 45 in their recipe.

The filter bank is transformers' `mel_filter_bank` (HTK scale, no normalisation: torchaudio's `MelSpectrogram`
defaults), so no torchaudio is needed.
"""

import torch
from torch import nn
from transformers.audio_utils import mel_filter_bank


class LogMelSpectrogram(nn.Module):
    """Waveforms `(B, samples)` or `(B, 1, samples)` → `log(max(mel magnitude, clip))`, `(B, n_mels, frames)`."""

    def __init__(
        self,
        sampling_rate: int = 24000,
        n_fft: int = 1024,
        hop_length: int = 256,
        n_mels: int = 100,
        clip_value: float = 1e-7,
    ):
        super().__init__()
        self.n_fft, self.hop_length, self.clip_value = n_fft, hop_length, clip_value
        filters = mel_filter_bank(n_fft // 2 + 1, n_mels, 0.0, sampling_rate / 2, sampling_rate)
        self.register_buffer("filters", torch.tensor(filters, dtype=torch.float32).T, persistent=False)
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        waveforms = waveforms.reshape(waveforms.shape[0], -1).float()
        spectrum = torch.stft(
            waveforms,
            self.n_fft,
            self.hop_length,
            window=self.window,
            center=True,
            pad_mode="reflect",
            return_complex=True,
        ).abs()
        return torch.log(torch.clamp(self.filters @ spectrum, min=self.clip_value))


class MelReconstructionLoss(nn.Module):
    """Mean L1 distance between the log-mel spectrograms of the reconstruction and of the original."""

    def __init__(self, sampling_rate: int = 24000, **spectrogram_kwargs):
        super().__init__()
        self.spectrogram = LogMelSpectrogram(sampling_rate, **spectrogram_kwargs)

    def forward(self, reconstruction: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
        return (self.spectrogram(reconstruction) - self.spectrogram(original)).abs().mean()


__all__ = ["LogMelSpectrogram", "MelReconstructionLoss"]
