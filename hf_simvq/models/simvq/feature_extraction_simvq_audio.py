"""Feature extractor of the SimVQ speech tokenizer: mono waveforms → `input_values` and `padding_mask`."""

from transformers.models.wavtokenizer.feature_extraction_wavtokenizer import WavTokenizerFeatureExtractor


class SimVQAudioFeatureExtractor(WavTokenizerFeatureExtractor):
    r"""
    WavTokenizer's feature extractor (mono, no resampling, `input_values` `(batch, 1, samples)` + `padding_mask`;
    a stereo array or a `sampling_rate` other than the model's raises `ValueError`), with SimVQ's defaults: 24 kHz
    and a hop of 320 samples, and every padded batch padded up to a multiple of the hop, so each code covers whole
    hop-length frames and `padding_mask` marks exactly the samples that are not audio.

    Args:
        sampling_rate (`int`, *optional*, defaults to 24000): the rate the model was trained at, in Hz.
        hop_length (`int`, *optional*, defaults to 320): samples per code (`SimVQAudioConfig.hop_length`).
        kwargs: the other arguments of [`WavTokenizerFeatureExtractor`].
    """

    def __init__(self, sampling_rate: int = 24000, hop_length: int = 320, **kwargs):
        super().__init__(sampling_rate=sampling_rate, hop_length=hop_length, **kwargs)

    def pad(self, processed_features, *args, pad_to_multiple_of: int | None = None, **kwargs):
        """`SequenceFeatureExtractor.pad`, rounding padded lengths up to a multiple of the hop unless told otherwise."""
        pad_to_multiple_of = pad_to_multiple_of or self.hop_length
        return super().pad(processed_features, *args, pad_to_multiple_of=pad_to_multiple_of, **kwargs)


__all__ = ["SimVQAudioFeatureExtractor"]
