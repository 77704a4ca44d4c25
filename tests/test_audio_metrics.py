"""The speech metrics: each `evaluate` module against a hand computation or the reference package, and the whole-set
evaluator on 1 and 2 processes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from audio_evaluation_worker import NUM_CLIPS, speech_like_clips
from conftest import tiny_audio_config
from pesq import pesq as reference_pesq
from pystoi import stoi as reference_stoi
from transformers.audio_utils import mel_filter_bank

from hf_simvq import SimVQAudioModel
from hf_simvq.evaluation import evaluate_audio_tokenizer
from hf_simvq.evaluation.audio_quality import f1_from_counts, voicing
from hf_simvq.evaluation.metrics import load_metric
from hf_simvq.training.speech_data import EspeakSynthesizer, resample

TESTS_DIR = Path(__file__).parent


@pytest.fixture(scope="module")
def utterance_pair() -> tuple[np.ndarray, np.ndarray]:
    """A spoken sentence at 16 kHz (espeak-ng, resampled) and a degraded copy: noise plus a low-pass smear."""
    synthesizer = EspeakSynthesizer()
    spoken = synthesizer.speak("The quick brown fox jumps over the lazy dog by the river.", "en-us+m1", 160, 50)
    clean = resample(spoken, synthesizer.sampling_rate, 16000)
    rng = np.random.default_rng(0)
    degraded = np.convolve(clean, np.ones(4) / 4, mode="same") + 0.01 * rng.standard_normal(len(clean))
    return degraded.astype(np.float32), clean


def test_mel_distance_module_equals_a_numpy_log_mel_l1(utterance_pair):
    degraded, clean = utterance_pair
    n_fft, hop = 1024, 256
    filters = mel_filter_bank(n_fft // 2 + 1, 100, 0.0, 8000.0, 16000)

    def log_mel(x):
        padded = np.pad(x.astype(np.float64), n_fft // 2, mode="reflect")
        frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop] * np.hanning(n_fft + 1)[:-1]
        return np.log(np.maximum(np.abs(np.fft.rfft(frames, axis=1)) @ filters, 1e-7))

    expected = np.abs(log_mel(degraded) - log_mel(clean)).mean()
    metric = load_metric("mel_distance")
    result = metric.compute(predictions=[degraded], references=[clean], sampling_rate=16000)["mel_distance"]
    assert result == pytest.approx(expected, rel=1e-4)
    assert metric.compute(predictions=[clean], references=[clean], sampling_rate=16000)["mel_distance"] == 0.0


def test_stoi_and_pesq_modules_equal_the_reference_packages(utterance_pair):
    degraded, clean = utterance_pair
    stoi = load_metric("stoi").compute(predictions=[degraded], references=[clean], sampling_rate=16000)["stoi"]
    assert stoi == pytest.approx(reference_stoi(clean, degraded, 16000, extended=False), abs=1e-9)
    pesq = load_metric("pesq").compute(predictions=[degraded], references=[clean], sampling_rate=16000)
    expected = reference_pesq(16000, clean.astype(np.float64), degraded.astype(np.float64), "wb")
    assert pesq["pesq"] == pytest.approx(expected, abs=1e-6) and pesq["pesq_utterances"] == 1
    assert 1.0 < pesq["pesq"] < 4.0  # a degraded copy scores below the clean maximum (4.64)


def test_vuv_f1_counts_frames_by_hand():
    """A tone is voiced in every frame, silence in none: half-voiced reference vs all-voiced prediction gives
    TP = voiced frames of the reference, FP = the rest, FN = 0."""
    rate = 16000
    time = np.arange(rate) / rate
    tone = (0.5 * np.sin(2 * np.pi * 150 * time)).astype(np.float32)
    half = tone.copy()
    half[rate // 2 :] = 0
    predicted, reference = voicing(tone, rate), voicing(half, rate)
    assert predicted.all() and 0 < reference.sum() < len(reference)
    true_positives, false_positives = reference.sum(), (~reference).sum()
    expected = 2 * true_positives / (2 * true_positives + false_positives)
    metric = load_metric("vuv_f1")
    assert metric.compute(predictions=[tone], references=[half], sampling_rate=rate)["vuv_f1"] == pytest.approx(
        expected
    )
    assert metric.compute(predictions=[tone], references=[tone], sampling_rate=rate)["vuv_f1"] == 1.0
    assert f1_from_counts(np.array([0, 0, 0])) == 1.0


def test_codebook_usage_module_counts_speech_codes():
    metric = load_metric("codebook_usage")
    assert metric.compute(predictions=[[3, 3, 5], [5, 7]], codebook_size=8)["utilization"] == 3 / 8


@pytest.fixture(scope="module")
def audio_model_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("audio-model")
    SimVQAudioModel(tiny_audio_config()).save_pretrained(path)
    return path


def test_evaluator_scores_real_samples_only_and_skips_utmos_with_its_reason(audio_model_dir, caplog):
    model = SimVQAudioModel.from_pretrained(audio_model_dir).eval()
    clips = speech_like_clips(3, 12000)
    loader = torch.utils.data.DataLoader(clips, batch_size=2)
    results = evaluate_audio_tokenizer(model, loader, metrics=("codebook_usage", "mel_distance", "utmos"))
    assert "utmos" not in results and "UTMOS needs the weights" in caplog.text
    frames = sum(-(-int(clip["padding_mask"].sum()) // model.config.hop_length) for clip in clips)
    assert results["num_clips"] == 3 and results["num_tokens"] == frames
    with torch.no_grad():
        first = clips[0]
        codes = model.encode(first["input_values"][None]).audio_codes
        reconstruction = model.decode(codes).audio_values[0].clamp(-1, 1).numpy()
    single = load_metric("mel_distance").compute(
        predictions=[reconstruction], references=[first["input_values"][0].numpy()]
    )["mel_distance"]
    first_only = evaluate_audio_tokenizer(model, [{k: v[None] for k, v in first.items()}], metrics=("mel_distance",))
    assert first_only["mel_distance"] == pytest.approx(single, rel=1e-5)
    with pytest.raises(ValueError, match="Unknown audio metrics"):
        evaluate_audio_tokenizer(model, loader, metrics=("fad",))


def test_two_processes_give_the_one_process_results(audio_model_dir, tmp_path):
    worker = str(TESTS_DIR / "audio_evaluation_worker.py")
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(TESTS_DIR.parent)}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    for name, launcher in (("one", [sys.executable]), ("two", torchrun)):
        command = [*launcher, worker, str(audio_model_dir), str(tmp_path / f"{name}.json")]
        completed = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=300)
        assert completed.returncode == 0, completed.stderr[-3000:]
    one, two = (json.loads((tmp_path / f"{name}.json").read_text()) for name in ("one", "two"))
    assert one["num_clips"] == two["num_clips"] == NUM_CLIPS
    assert set(one) == set(two) >= {"utilization", "mel_distance", "stoi", "vuv_f1"}
    for key in one:
        assert two[key] == pytest.approx(one[key], rel=1e-6, abs=1e-9), key
