"""The text-to-speech-tokens demo, end to end with a tiny random speech tokenizer and synthetic tone words."""

import json
import subprocess
import sys
from pathlib import Path

import scipy.io.wavfile
import torch
from conftest import tiny_audio_config
from transformers import AutoProcessor, LlamaForCausalLM

from hf_simvq import SimVQAudioFeatureExtractor, SimVQAudioModel, SimVQMultimodalProcessor

SCRIPT = Path(__file__).resolve().parents[1] / "training" / "train_speech_lm.py"


def test_demo_trains_generates_speech_and_saves_one_folder(tmp_path):
    audio_tokenizer = tmp_path / "speech"
    torch.manual_seed(0)
    SimVQAudioModel(tiny_audio_config(codebook_size=128)).save_pretrained(audio_tokenizer)
    SimVQAudioFeatureExtractor(hop_length=8).save_pretrained(audio_tokenizer)
    output_dir = tmp_path / "demo"
    command = [sys.executable, str(SCRIPT), "--audio_tokenizer", str(audio_tokenizer), "--output_dir", str(output_dir),
               "--num_utterances", "64", "--frames_per_word", "4", "--max_train_steps", "40", "--train_batch_size",
               "8", "--hidden_size", "32", "--num_hidden_layers", "1", "--num_samples", "3"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]

    metrics = json.loads((output_dir / "metrics.json").read_text())
    assert metrics["steps"] == 40 and metrics["num_samples"] == 3 and "synthetic" in metrics["data"]
    assert metrics["final_loss"] < metrics["first_loss"] - 0.2
    assert (output_dir / "loss_curve.png").stat().st_size > 1000
    for sample in metrics["samples"]:
        rate, waveform = scipy.io.wavfile.read(output_dir / "samples" / sample["wav"])
        assert rate == 24000 and 1 <= sample["frames"] <= metrics["max_speech_frames"] == 2 * 3 * 4
        assert waveform.shape == (sample["frames"] * 8,)

    processor = AutoProcessor.from_pretrained(output_dir / "lm")
    assert type(processor) is SimVQMultimodalProcessor and list(processor.feature_extractors) == ["speech"]
    language_model = LlamaForCausalLM.from_pretrained(output_dir / "lm")
    assert language_model.get_input_embeddings().weight.shape[0] == processor.vocabulary.total_vocab_size
    ids = processor(["do re", ("speech", torch.zeros(1, 1, 64))]).input_ids
    assert processor.decode(ids[0])[-1][1].shape == (64,)
