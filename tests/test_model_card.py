"""The rendered model card parses back with its model-index eval results."""

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
