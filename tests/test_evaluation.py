"""evaluate_tokenizer: whole-set results that agree with the metric modules, and 2 processes = 1 process."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from conftest import tiny_config
from torch.utils.data import DataLoader

from hf_simvq import SimVQModel
from hf_simvq.evaluation import evaluate_tokenizer
from hf_simvq.evaluation.metrics import load_metric

TESTS_DIR = Path(__file__).parent
REPO_DIR = TESTS_DIR.parent


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny_model")
    SimVQModel(tiny_config(codebook_size=64)).save_pretrained(folder)
    return folder


def _run(command: list[str], cwd: Path) -> None:
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_DIR)}
    completed = subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]


def test_results_cover_the_whole_set_and_match_the_metric_modules(model_dir):
    model = SimVQModel.from_pretrained(model_dir).eval()
    images = torch.rand(10, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    dataloader = DataLoader([{"pixel_values": image} for image in images], batch_size=4)
    results = evaluate_tokenizer(model, dataloader, metrics=("codebook_usage", "psnr", "ssim"))

    with torch.no_grad():
        encoded = model.encode(images)
        reconstruction = model.decode(encoded.quantized).clamp(-1, 1)
    tokens = encoded.image_tokens.flatten(1).numpy()
    expected_usage = load_metric("codebook_usage").compute(predictions=tokens, codebook_size=64)
    originals, reconstructions = ((images + 1) / 2).numpy(), ((reconstruction + 1) / 2).numpy()
    expected_psnr = load_metric("psnr").compute(predictions=reconstructions, references=originals)["psnr"]
    expected_ssim = load_metric("ssim").compute(predictions=reconstructions, references=originals)["ssim"]

    assert results["num_images"] == 10 and results["num_tokens"] == 10 * 64
    assert results["utilization"] == expected_usage["utilization"]
    assert results["perplexity"] == pytest.approx(expected_usage["perplexity"])
    assert results["psnr"] == pytest.approx(expected_psnr, abs=1e-4)  # the modules store float32
    assert results["ssim"] == pytest.approx(expected_ssim, abs=1e-5)
    assert "rfid" not in results and "lpips" not in results  # not asked for
    assert not model.training


def test_two_processes_give_the_one_process_results(model_dir, tmp_path):
    worker = str(TESTS_DIR / "evaluation_worker.py")
    _run([sys.executable, worker, str(model_dir), str(tmp_path / "one.json")], tmp_path)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    _run([*torchrun, worker, str(model_dir), str(tmp_path / "two.json")], tmp_path)
    one = json.loads((tmp_path / "one.json").read_text())
    two = json.loads((tmp_path / "two.json").read_text())
    assert set(one) == {
        "num_images",
        "num_tokens",
        "utilization",
        "perplexity",
        "used_codes",
        "dead_codes",
        "psnr",
        "ssim",
        "lpips",
        "rfid",
    }
    assert one["num_images"] == two["num_images"] == 11
    assert {key: two[key] for key in ("num_tokens", "used_codes", "dead_codes")} == {
        key: one[key] for key in ("num_tokens", "used_codes", "dead_codes")
    }
    for key in ("utilization", "perplexity", "psnr", "ssim", "lpips", "rfid"):
        assert two[key] == pytest.approx(one[key], rel=1e-6, abs=1e-9), key


def test_cli_writes_the_results_of_the_python_api(model_dir, tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "images").mkdir()
    for index in range(6):
        PIL.Image.fromarray(rng.integers(0, 256, (36, 40, 3), dtype=np.uint8)).save(
            tmp_path / "images" / f"{index}.png"
        )
    output_file = tmp_path / "eval_results.json"
    script = REPO_DIR / "training" / "evaluate_tokenizer.py"
    command = [sys.executable, str(script), "--model_name_or_path", str(model_dir)]
    command += ["--train_data_dir", str(tmp_path / "images"), "--split", "train", "--batch_size", "4"]
    command += ["--metrics", "codebook_usage", "psnr", "--output_file", str(output_file)]
    _run(command, tmp_path)
    results = json.loads(output_file.read_text())
    assert results["num_images"] == 6 and results["num_tokens"] == 6 * 64
    assert 0 < results["utilization"] <= 1 and results["psnr"] > 0
    assert set(results) == {"num_images", "num_tokens", "utilization", "perplexity", "used_codes", "dead_codes", "psnr"}
