"""The text-to-image demo, end to end at toy size."""

import json
import subprocess
import sys
from pathlib import Path

import torch
from conftest import tiny_config
from transformers import AutoProcessor, LlamaForCausalLM

from hf_simvq import SimVQImageProcessor, SimVQModel
from hf_simvq.lm.image_vocabulary import SimVQImageVocabulary

SCRIPT = Path(__file__).resolve().parents[1] / "training" / "train_lm.py"


def test_demo_trains_generates_and_saves(tmp_path):
    image_tokenizer = tmp_path / "simvq"
    SimVQModel(tiny_config(codebook_size=1024)).save_pretrained(image_tokenizer)
    SimVQImageProcessor.from_image_size(32).save_pretrained(image_tokenizer)
    output_dir = tmp_path / "demo"
    command = [sys.executable, str(SCRIPT), "--image_tokenizer", str(image_tokenizer), "--output_dir", str(output_dir),
               "--num_images", "64", "--max_train_steps", "40", "--train_batch_size", "8", "--hidden_size", "32",
               "--num_hidden_layers", "1", "--num_samples", "2"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]

    metrics = json.loads((output_dir / "metrics.json").read_text())
    assert metrics["steps"] == 40 and metrics["num_samples"] == 2
    assert metrics["final_loss"] < metrics["first_loss"] - 0.2  # it learns (captions, row ends, span ends)
    for picture in ("loss_curve.png", "samples.png"):
        assert (output_dir / picture).stat().st_size > 1000

    vocabulary = SimVQImageVocabulary.from_pretrained(output_dir / "lm")
    processor = AutoProcessor.from_pretrained(output_dir / "lm")
    assert processor.vocabulary.modalities["image"].layout == vocabulary.layout
    language_model = LlamaForCausalLM.from_pretrained(output_dir / "lm")
    assert (
        language_model.get_input_embeddings().weight.shape[0]
        == vocabulary.layout.total_vocab_size
        == 1024 + (vocabulary.layout.text_vocab_size)
    )
    images = torch.rand(1, 3, 32, 32) * 2 - 1
    ids = vocabulary.images_to_input_ids(images)
    assert vocabulary.input_ids_to_images(ids[0])[0].shape == (3, 32, 32)
