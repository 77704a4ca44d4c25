"""End-to-end tests of training/train_audio.py (real runs of the script in a subprocess on a tiny model), and of the
speech data it trains on."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from huggingface_hub import ModelCard
from safetensors.torch import load_file
from transformers import AutoFeatureExtractor, AutoModelForAudioTokenization

import hf_simvq  # noqa: F401  (registers SimVQ with the Auto classes)
from hf_simvq.training.speech_data import (
    DEFAULT_SPLITS,
    EspeakSynthesizer,
    clips,
    generated_sentences,
    speech_datasets,
)

TRAIN_SCRIPT = Path(__file__).parents[1] / "training" / "train_audio.py"
TINY_RUN = [
    "--num_filters", "4",
    "--num_lstm_layers", "1",
    "--hidden_size", "8",
    "--decoder_hidden_size", "16",
    "--decoder_intermediate_size", "32",
    "--decoder_num_layers", "1",
    "--decoder_attention_num_groups", "4",
    "--codebook_size", "32",
    "--clip_seconds", "0.2",
    "--eval_clip_seconds", "0.5",
    "--train_batch_size", "2",
    "--eval_batch_size", "4",
    "--discriminator_channels", "1",
    "--discriminator_resolutions", "256", "512",
    "--num_sample_clips", "2",
    "--logging_steps", "1",
    "--deferred_quantization_steps", "0",  # the preset defers quantization past a tiny run's end
]  # fmt: skip


@pytest.fixture(scope="module")
def audio_folder(tmp_path_factory) -> Path:
    """Five 16 kHz files of harmonic tones with pauses (the trainer resamples them to 24 kHz)."""
    folder = tmp_path_factory.mktemp("audio")
    rate = 16000
    rng = np.random.default_rng(0)
    for index in range(5):
        time_axis = np.arange(int(rate * (0.7 + 0.1 * index))) / rate
        pitch = 100 + 30 * index
        tone = sum(np.sin(2 * np.pi * pitch * h * time_axis) / h for h in range(1, 5))
        audio = 0.3 * tone * (np.sin(2 * np.pi * 2 * time_axis) > -0.3) + 0.01 * rng.standard_normal(len(time_axis))
        soundfile.write(folder / f"{index}.wav", audio.astype(np.float32), rate)
    return folder


def train_command(output_dir: Path, data_dir: Path, *options: str) -> list[str]:
    return [
        sys.executable, str(TRAIN_SCRIPT), "--output_dir", str(output_dir), "--train_data_dir", str(data_dir),
        *TINY_RUN, *options,
    ]  # fmt: skip


def run_train(output_dir: Path, data_dir: Path, *options: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = train_command(output_dir, data_dir, *options)
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=environment)


def test_run_writes_a_folder_that_auto_model_for_audio_tokenization_loads(audio_folder, tmp_path):
    output_dir = tmp_path / "run"
    result = run_train(output_dir, audio_folder, "--max_train_steps", "3", "--validation_steps", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    for name in ("config.json", "model.safetensors", "preprocessor_config.json", "eval_results.json", "README.md",
                 "reconstructions.png", "training_curves.png", "original_0.wav", "reconstruction_1.wav"):  # fmt: skip
        assert (output_dir / name).is_file(), name
    model = AutoModelForAudioTokenization.from_pretrained(output_dir)
    assert type(model).__name__ == "SimVQAudioModel" and model.config.codebook_size == 32
    assert AutoFeatureExtractor.from_pretrained(output_dir).sampling_rate == 24000
    results = json.loads((output_dir / "eval_results.json").read_text())
    assert {"utilization", "mel_distance", "stoi", "vuv_f1"} <= set(results)
    card = ModelCard.load(output_dir / "README.md")
    reported = {result.metric_type: result.metric_value for result in card.data.eval_results}
    assert reported["mel_distance"] == pytest.approx(results["mel_distance"])
    assert card.data.eval_results[0].task_type == "audio-to-audio" and "audio-tokenizer" in card.data.tags
    assert "AutoModelForAudioTokenization" in card.text
    history = json.loads((output_dir / "training_history.json").read_text())
    logged = {key for entry in history for key in entry}
    assert {"train/mel_loss", "train/generator_loss", "train/feature_matching_loss", "train/discriminator_loss",
            "validation/mel_distance"} <= logged  # fmt: skip
    reconstruction, rate = soundfile.read(output_dir / "reconstruction_0.wav")
    assert rate == 24000 and len(reconstruction) > 0


def test_resume_after_sigkill_ends_with_the_weights_of_an_uninterrupted_run(audio_folder, tmp_path):
    """Killed right after the step-3 checkpoint and resumed: identical final weights (generator, critics, EMA and
    shuffled data order all come back), across the switch from unquantized to quantized training at step 2."""
    options = ["--max_train_steps", "6", "--checkpointing_steps", "3", "--validation_steps", "100"]
    options += ["--deferred_quantization_steps", "2", "--deferred_init_batches", "1"]
    uninterrupted = run_train(tmp_path / "uninterrupted", audio_folder, *options)
    assert uninterrupted.returncode == 0, uninterrupted.stderr[-3000:]

    interrupted_dir = tmp_path / "interrupted"
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        train_command(interrupted_dir, audio_folder, *options),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=environment,
    )
    marker = interrupted_dir / "checkpoints" / "checkpoint_0" / "training_progress.json"
    deadline = time.time() + 240
    while not marker.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert marker.exists(), "the run never reached its step-3 checkpoint"
    assert not (interrupted_dir / "model.safetensors").exists(), "the run finished before it could be killed"

    resumed = run_train(interrupted_dir, audio_folder, *options, "--resume_from_checkpoint", "latest")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Resumed from" in resumed.stderr
    expected = load_file(tmp_path / "uninterrupted" / "model.safetensors")
    actual = load_file(interrupted_dir / "model.safetensors")
    assert expected.keys() == actual.keys()
    for name in expected:
        assert torch.equal(expected[name], actual[name]), name


def test_deferred_quantization_trains_unquantized_then_starts_the_codebook_from_latents(audio_folder, tmp_path):
    output_dir = tmp_path / "run"
    options = ["--max_train_steps", "4", "--deferred_quantization_steps", "2", "--deferred_init_batches", "1"]
    result = run_train(output_dir, audio_folder, *options, "--validation_steps", "100")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Quantization starts: codebook initialised (fit) from" in result.stderr  # the default init
    history = json.loads((output_dir / "training_history.json").read_text())
    train_logs = {entry["step"]: entry for entry in history if "train/mel_loss" in entry}
    assert sorted(train_logs) == [1, 2, 3, 4]
    for step in (1, 2):
        assert train_logs[step]["train/quantization_loss"] == 0.0 and "train/utilization" not in train_logs[step]
    for step in (3, 4):
        assert train_logs[step]["train/quantization_loss"] > 0 and 0 < train_logs[step]["train/utilization"] <= 1


def test_default_speech_holds_out_voices_and_sentences():
    train, validation = DEFAULT_SPLITS["train"], DEFAULT_SPLITS["validation"]
    assert not set(train.voices) & set(validation.voices)
    train_sentences = set(generated_sentences(train.num_sentences, train.sentence_seed))
    assert len(train_sentences) == train.num_sentences
    assert set(generated_sentences(validation.num_sentences, validation.sentence_seed)) - train_sentences


def test_espeak_speaks_every_default_voice():
    synthesizer = EspeakSynthesizer()
    for voice in DEFAULT_SPLITS["train"].voices + DEFAULT_SPLITS["validation"].voices:
        audio = synthesizer.speak("A short test.", voice, 170, 50)
        assert 0.3 < len(audio) / synthesizer.sampling_rate < 3 and 0.05 < np.abs(audio).max() <= 1, voice
    with pytest.raises(ValueError, match="no voice"):
        synthesizer.speak("A short test.", "xx-nonexistent", 170, 50)


def test_clips_pad_the_last_piece_and_mask_it():
    tensors = clips([np.ones(25, dtype=np.float32), np.ones(10, dtype=np.float32)], clip_samples=10)
    assert tensors["input_values"].shape == (4, 1, 10)
    assert tensors["padding_mask"].sum(dim=1).tolist() == [10, 10, 5, 10]
    assert tensors["input_values"][2, 0, 5:].abs().sum() == 0


def test_folder_data_is_resampled_and_bad_sources_say_what_to_do(audio_folder, tmp_path):
    train, validation = speech_datasets(24000, 0.5, train_data_dir=str(audio_folder))
    total = sum(int(mask.sum()) for mask in (*train.tensors["padding_mask"], *validation.tensors["padding_mask"]))
    expected = sum(round(len(soundfile.read(path)[0]) * 1.5) for path in audio_folder.glob("*.wav"))
    assert abs(total - expected) <= 5
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="No audio files"):
        speech_datasets(24000, 0.5, train_data_dir=str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="clip_seconds must be positive"):
        speech_datasets(24000, 0.0, train_data_dir=str(audio_folder))
