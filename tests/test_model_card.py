"""The rendered model card parses back with its model-index eval results."""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import tiny_config
from huggingface_hub import ModelCard

from hf_simvq import SimVQModel
from hf_simvq.model_card import build_model_card


@pytest.fixture
def card(tmp_path):
    model = SimVQModel(tiny_config(codebook_size=512))
    results = {"num_images": 64, "num_tokens": 4096, "utilization": 0.25, "psnr": 24.5, "ssim": 0.71, "rfid": None}
    card = build_model_card(
        model,
        results,
        dataset_name="scikit-image photos (default)",
        training_args={"learning_rate": 1e-3, "hub_token": "hf_secret", "seed": 0, "report_to": None},
        reconstruction_grid="reconstructions.png",
        repo_id="someone/simvq-tiny",
    )
    card.save(tmp_path / "README.md")
    return ModelCard.load(tmp_path / "README.md")


def test_eval_results_round_trip_through_model_index(card):
    results = {result.metric_type: result for result in card.data.eval_results}
    assert set(results) == {"codebook_utilization", "psnr", "ssim"}  # rFID was not measured: not reported
    assert results["psnr"].metric_value == 24.5
    assert results["codebook_utilization"].metric_value == 0.25
    assert results["ssim"].dataset_split == "validation"
    assert card.data.model_name == "simvq-tiny"


def test_card_holds_codebook_data_recipe_usage_and_grid(card):
    text = card.text
    assert "512 codes of dimension 16" in text
    assert "32×32 → 8×8 tokens" in text
    assert "| Codebook utilization | 25.00% |" in text
    assert 'AutoModel.from_pretrained("someone/simvq-tiny")' in text and "decode_tokens" in text
    assert "![Reconstructions](reconstructions.png)" in text
    assert "| `learning_rate` | `0.001` |" in text
    assert "hf_secret" not in text and "report_to" not in text


def test_missing_template_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="template_path"):
        build_model_card(SimVQModel(tiny_config()), {}, "data", template_path=tmp_path / "absent.md")


def test_a_built_wheel_ships_the_template_and_builds_cards_without_the_repository(tmp_path):
    """`pip install .` (not editable) must carry the template: build the wheel from a copy of the sources, unpack it
    somewhere the repository is not, and build a card from the unpacked package alone."""
    repository = Path(__file__).parents[1]
    sources = tmp_path / "sources"
    sources.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(repository / name, sources / name)
    for folder in ("hf_simvq", "model_cards"):
        shutil.copytree(
            repository / folder, sources / folder, symlinks=True, ignore=shutil.ignore_patterns("__pycache__")
        )
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", str(sources)]
    subprocess.run([*build, "-w", str(tmp_path / "dist")], check=True, capture_output=True, timeout=300)
    (wheel,) = (tmp_path / "dist").glob("hf_simvq-*.whl")
    installed = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(installed)
        packaged = archive.read("hf_simvq/templates/model_card.md")
    assert packaged == (repository / "model_cards" / "template.md").read_bytes()
    script = (
        "import hf_simvq, sys\n"
        "from hf_simvq import SimVQConfig, SimVQModel\n"
        "from hf_simvq.model_card import build_model_card\n"
        f"assert hf_simvq.__file__.startswith({str(installed)!r}), hf_simvq.__file__\n"
        "config = SimVQConfig(image_size=16, base_channels=8, channel_multipliers=[1, 2], num_res_blocks=1,"
        " norm_num_groups=4, embed_dim=8, codebook_size=64)\n"
        "card = build_model_card(SimVQModel(config), {'utilization': 0.5, 'psnr': 20.0}, dataset_name='toy')\n"
        "print('| PSNR (dB) | 20.00 |' in card.text)\n"
    )
    environment = {**os.environ, "PYTHONPATH": str(installed)}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, env=environment, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "True"
