"""The dataset tokenizer: the model's own ids, saved for an LM trainer, resumable chunk by chunk, 1 or 2 processes."""

import subprocess
import sys
from pathlib import Path

import datasets
import pytest
import torch
from conftest import tiny_config

from hf_simvq import SimVQImageProcessor, SimVQModel
from hf_simvq.training.data import default_image_split
from hf_simvq.training.tokenization import TOKENS_COLUMN, tokenize_images

SCRIPT = Path(__file__).resolve().parents[1] / "training" / "tokenize_dataset.py"


@pytest.fixture
def tiny_model() -> SimVQModel:
    torch.manual_seed(0)
    return SimVQModel(tiny_config()).eval()


@pytest.fixture
def photos() -> datasets.Dataset:
    return default_image_split("train", resolution=32, num_images=20)


def count_encodes(model: SimVQModel, monkeypatch) -> list[int]:
    calls = []
    original = model.encode

    def counting(pixel_values):
        calls.append(len(pixel_values))
        return original(pixel_values)

    monkeypatch.setattr(model, "encode", counting)
    return calls


def test_tokens_are_the_models_ids_and_load_from_disk(tiny_model, photos, tmp_path):
    tokens = tokenize_images(photos, tiny_model, tmp_path, batch_size=6, chunk_size=8)
    pixel_values = SimVQImageProcessor.from_image_size(32)(list(photos["image"]), return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        expected = tiny_model.encode(pixel_values).image_tokens.flatten(1)
    loaded = datasets.load_from_disk(str(tmp_path / "tokens"))
    assert loaded.column_names == ["source", TOKENS_COLUMN]
    assert list(loaded["source"]) == list(photos["source"])
    assert torch.equal(torch.tensor(list(loaded[TOKENS_COLUMN])), expected)
    assert torch.equal(torch.tensor(list(tokens[TOKENS_COLUMN])), expected)
    assert len(list((tmp_path / "chunks").glob("*.arrow"))) == 3  # 20 images in chunks of 8


def test_a_second_run_reuses_finished_chunks(tiny_model, photos, tmp_path, monkeypatch):
    tokenize_images(photos, tiny_model, tmp_path, batch_size=4, chunk_size=8)
    first = list(datasets.load_from_disk(str(tmp_path / "tokens"))[TOKENS_COLUMN])
    calls = count_encodes(tiny_model, monkeypatch)
    tokenize_images(photos, tiny_model, tmp_path, batch_size=4, chunk_size=8)
    assert calls == []
    sorted((tmp_path / "chunks").glob("*.arrow"))[1].unlink()  # as if the run had stopped inside chunk 2
    tokenize_images(photos, tiny_model, tmp_path, batch_size=4, chunk_size=8)
    assert calls == [4, 4]
    assert list(datasets.load_from_disk(str(tmp_path / "tokens"))[TOKENS_COLUMN]) == first


def test_other_weights_never_reuse_the_cache(tiny_model, photos, tmp_path, monkeypatch):
    tokenize_images(photos, tiny_model, tmp_path, chunk_size=8)
    with torch.no_grad():
        tiny_model.quantize.projection.weight.mul_(2)
    calls = count_encodes(tiny_model, monkeypatch)
    tokenize_images(photos, tiny_model, tmp_path, chunk_size=8)
    assert sum(calls) == len(photos)


def test_bad_input_names_the_fix(tiny_model, photos, tmp_path):
    with pytest.raises(ValueError, match="image_column"):
        tokenize_images(photos, tiny_model, tmp_path, image_column="picture")
    with pytest.raises(ValueError, match="streaming"):
        tokenize_images(photos.to_iterable_dataset(), tiny_model, tmp_path)


def test_script_on_one_and_two_processes_gives_the_same_tokens(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path / "model")
    common = ["--model_name_or_path", str(tmp_path / "model"), "--num_default_images", "24", "--chunk_size", "8"]
    subprocess.run([sys.executable, str(SCRIPT), *common, "--output_dir", str(tmp_path / "one")], check=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            str(SCRIPT),
            *common,
            "--output_dir",
            str(tmp_path / "two"),
            "--brute_force",
        ],
        check=True,
    )
    one = datasets.load_from_disk(str(tmp_path / "one" / "tokens"))
    two = datasets.load_from_disk(str(tmp_path / "two" / "tokens"))
    assert len(one) == 24
    assert list(one[TOKENS_COLUMN]) == list(two[TOKENS_COLUMN]) and list(one["source"]) == list(two["source"])
