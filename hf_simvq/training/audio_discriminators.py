"""The speech tokenizer's critics: HiFi-GAN's multi-period and Vocos' multi-resolution discriminators, with the hinge
and feature-matching losses the authors train them with (youngsheen/SimVQ `taming/modules/losses/stft.py`).

Nothing installed ships them (transformers has HiFi-GAN's generator only). `channels` scales every width so that a
CPU run can afford them; 32 is the published width (periods 2, 3, 5, 7, 11; resolutions 512 / 1024 / 2048).
"""

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

LEAKY_SLOPE = 0.1


class PeriodDiscriminator(nn.Module):
    """Folds the waveform into `(samples / period, period)` and scores it with 2-D convolutions along time."""

    def __init__(self, period: int, channels: int = 32):
        super().__init__()
        self.period = period
        widths = [1, channels, 4 * channels, 16 * channels, 32 * channels]
        self.convs = nn.ModuleList(
            weight_norm(nn.Conv2d(c_in, c_out, (5, 1), (3, 1), padding=(2, 0)))
            for c_in, c_out in zip(widths[:-1], widths[1:], strict=True)
        )
        self.convs.append(weight_norm(nn.Conv2d(widths[-1], widths[-1], (5, 1), 1, padding=(2, 0))))
        self.post = weight_norm(nn.Conv2d(widths[-1], 1, (3, 1), 1, padding=(1, 0)))

    def forward(self, waveforms: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = waveforms.reshape(waveforms.shape[0], 1, -1)
        remainder = x.shape[-1] % self.period
        if remainder:
            x = F.pad(x, (0, self.period - remainder), mode="reflect")
        x = x.view(x.shape[0], 1, -1, self.period)
        features = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), LEAKY_SLOPE)
            features.append(x)
        x = self.post(x)
        features.append(x)
        return x.flatten(1), features


class ResolutionDiscriminator(nn.Module):
    """Scores the magnitude spectrogram at one STFT resolution with 2-D convolutions over (frequency, time)."""

    def __init__(self, n_fft: int, channels: int = 32):
        super().__init__()
        self.n_fft, self.hop_length = n_fft, n_fft // 4
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        self.convs = nn.ModuleList(
            [
                weight_norm(nn.Conv2d(1, channels, (7, 5), (2, 2), padding=(3, 2))),
                weight_norm(nn.Conv2d(channels, channels, (5, 3), (2, 1), padding=(2, 1))),
                weight_norm(nn.Conv2d(channels, channels, (5, 3), (2, 2), padding=(2, 1))),
                weight_norm(nn.Conv2d(channels, channels, 3, (2, 1), padding=1)),
                weight_norm(nn.Conv2d(channels, channels, 3, (2, 2), padding=1)),
            ]
        )
        self.post = weight_norm(nn.Conv2d(channels, 1, 3, padding=1))

    def forward(self, waveforms: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = waveforms.reshape(waveforms.shape[0], -1)
        x = torch.stft(x, self.n_fft, self.hop_length, window=self.window, center=True, return_complex=True)
        x = x.abs().unsqueeze(1)
        features = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), LEAKY_SLOPE)
            features.append(x)
        x = self.post(x)
        features.append(x)
        return x.flatten(1), features


class SpeechDiscriminator(nn.Module):
    """Every period and resolution critic in one module (one optimizer, one `prepare`); returns their
    `(logits, features)` pairs."""

    def __init__(
        self,
        periods: tuple[int, ...] = (2, 3, 5, 7, 11),
        resolutions: tuple[int, ...] = (512, 1024, 2048),
        channels: int = 32,
    ):
        super().__init__()
        self.critics = nn.ModuleList(
            [PeriodDiscriminator(period, channels) for period in periods]
            + [ResolutionDiscriminator(n_fft, channels) for n_fft in resolutions]
        )
        self.num_period_critics = len(periods)

    def forward(self, waveforms: torch.Tensor) -> list[tuple[torch.Tensor, list[torch.Tensor]]]:
        return [critic(waveforms) for critic in self.critics]


def _family_mean(values: list[torch.Tensor], split: int) -> torch.Tensor:
    """The authors' weighting: each family (periods, resolutions) averaged over its critics, the families summed."""
    return torch.stack(values[:split]).mean() + torch.stack(values[split:]).mean()


def speech_discriminator_loss(
    discriminator: SpeechDiscriminator, real: torch.Tensor, fake: torch.Tensor
) -> torch.Tensor:
    """Hinge loss of every critic, `mean(relu(1 − D(real))) + mean(relu(1 + D(fake)))`, on detached `fake`."""
    scores = discriminator(torch.cat([real, fake.detach()]))
    losses = [F.relu(1 - logits[: len(real)]).mean() + F.relu(1 + logits[len(real) :]).mean() for logits, _ in scores]
    return _family_mean(losses, discriminator.num_period_critics)


def speech_generator_losses(
    discriminator: SpeechDiscriminator, real: torch.Tensor, fake: torch.Tensor
) -> dict[str, torch.Tensor]:
    """The generator's hinge loss `mean(relu(1 − D(fake)))` and feature matching (L1 between the critics' features
    of real and reconstructed audio, averaged per critic), each summed over the two families."""
    real_scores = [[feature.detach() for feature in features] for _, features in discriminator(real)]
    fake_scores = discriminator(fake)
    adversarial = [F.relu(1 - logits).mean() for logits, _ in fake_scores]
    matching = [
        torch.stack([(r - f).abs().mean() for r, f in zip(real_features, fake_features, strict=True)]).sum()
        for real_features, (_, fake_features) in zip(real_scores, fake_scores, strict=True)
    ]
    split = discriminator.num_period_critics
    return {"generator_loss": _family_mean(adversarial, split), "feature_matching_loss": _family_mean(matching, split)}


__all__ = [
    "PeriodDiscriminator",
    "ResolutionDiscriminator",
    "SpeechDiscriminator",
    "speech_discriminator_loss",
    "speech_generator_losses",
]
