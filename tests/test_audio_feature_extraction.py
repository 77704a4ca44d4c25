"""SimVQAudioFeatureExtractor: mono waveforms padded to whole hops, with the mask that says which samples are audio."""

import numpy as np
import pytest
import torch

from hf_simvq import SimVQAudioFeatureExtractor


@pytest.fixture
def extractor() -> SimVQAudioFeatureExtractor:
    return SimVQAudioFeatureExtractor(hop_length=8)


def test_defaults_are_24khz_and_the_hop_of_320():
    extractor = SimVQAudioFeatureExtractor()
    assert (extractor.sampling_rate, extractor.hop_length, extractor.feature_size) == (24000, 320, 1)


def test_a_batch_pads_to_a_multiple_of_the_hop_with_a_mask_of_the_real_samples(extractor):
    clips = [np.full(10, 0.5, dtype=np.float32), np.full(21, -0.25, dtype=np.float32)]
    batch = extractor(clips, sampling_rate=24000, return_tensors="pt")
    assert batch["input_values"].shape == (2, 1, 24) and batch["padding_mask"].shape == (2, 24)
    assert batch["padding_mask"].sum(dim=1).tolist() == [10, 21]
    for clip, values, mask in zip(clips, batch["input_values"][:, 0], batch["padding_mask"], strict=True):
        assert torch.equal(values[: len(clip)], torch.from_numpy(clip))
        assert mask[: len(clip)].all() and not mask[len(clip) :].any()
        assert not values[len(clip) :].any()  # padding is silence


def test_a_single_clip_is_padded_to_whole_hops_too(extractor):
    single = extractor(np.ones(17, dtype=np.float32), sampling_rate=24000, return_tensors="pt")
    assert single["input_values"].shape == (1, 1, 24) and single["padding_mask"].sum().item() == 17
    exact = extractor(np.ones(16, dtype=np.float32), sampling_rate=24000, return_tensors="pt")
    assert exact["input_values"].shape == (1, 1, 16) and exact["padding_mask"].all()


def test_explicit_padding_choices_are_honoured(extractor):
    unpadded = extractor(np.ones(17, dtype=np.float32), sampling_rate=24000, padding=False)
    assert np.shape(unpadded["input_values"]) == (1, 1, 17)
    fixed = extractor(np.ones(17, dtype=np.float32), sampling_rate=24000, padding="max_length", max_length=30)
    assert np.shape(fixed["input_values"]) == (1, 1, 32)  # 30 rounded up to whole hops


@pytest.mark.parametrize(
    ("audio", "sampling_rate", "message"),
    [
        (np.ones(16), 16000, "sampling rate of 24000"),
        (np.ones((2, 16)), 24000, "mono"),
        ([np.ones(16), np.ones((16, 2))], 24000, "mono"),
        (np.ones(0), 24000, "empty"),
    ],
)
def test_bad_audio_is_rejected(extractor, audio, sampling_rate, message):
    with pytest.raises(ValueError, match=message):
        extractor(audio, sampling_rate=sampling_rate)


def test_save_and_reload_keep_the_hop(extractor, tmp_path):
    extractor.save_pretrained(tmp_path)
    reloaded = SimVQAudioFeatureExtractor.from_pretrained(tmp_path)
    assert reloaded.hop_length == 8
    assert reloaded(np.ones(9), sampling_rate=24000, return_tensors="pt")["input_values"].shape == (1, 1, 16)
