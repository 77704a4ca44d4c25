"""The README's speech snippet runs as written, against a saved model and a real WAV file."""

import re
from pathlib import Path

import numpy as np
import scipy.io.wavfile
import torch
from conftest import tiny_audio_config

from hf_simvq import SimVQAudioFeatureExtractor, SimVQAudioModel

README = Path(__file__).resolve().parents[1] / "README.md"


def test_speech_snippet_runs_and_round_trips(tmp_path, monkeypatch):
    snippet = re.search(r"### Speech\n\n.*?```python\n(.*?)```", README.read_text(), re.S).group(1)
    assert len(snippet.strip().splitlines()) <= 15
    model_dir = tmp_path / "model"
    torch.manual_seed(0)
    SimVQAudioModel(tiny_audio_config()).save_pretrained(model_dir)
    SimVQAudioFeatureExtractor(hop_length=8).save_pretrained(model_dir)
    speech = (np.random.default_rng(0).standard_normal(1001) * 3000).astype(np.int16)
    scipy.io.wavfile.write(tmp_path / "speech.wav", 24000, speech)
    monkeypatch.chdir(tmp_path)

    namespace = {}
    exec(snippet.replace("path/or/hub-id", str(model_dir)), namespace)

    assert namespace["codes"].shape == (1, 1, 126)  # ceil(1001 / 8) frames
    rate, reconstruction = scipy.io.wavfile.read("reconstruction.wav")
    assert rate == 24000 and reconstruction.shape == (126 * 8,)
    reloaded = SimVQAudioModel.from_pretrained(model_dir).eval()
    with torch.no_grad():
        padded = torch.from_numpy(np.pad(speech / 32768, (0, 7))).float()  # the extractor pads to whole hops
        expected = reloaded.encode(padded[None, None]).audio_codes
    assert torch.equal(namespace["codes"], expected)
