"""benchmarks/codebook_init.py: the trained row is the tokenizer's own usage on the measured half, the init rows
leave the model alone, the shells of code radius count hits as worked out by hand, and the script runs end to end on
the embedded photos."""

import json
from pathlib import Path

import pytest
import torch
from conftest import load_script, tiny_config

from hf_simvq import SimVQModel
from hf_simvq.evaluation.codebook_statistics import token_histogram
from hf_simvq.models.simvq.quantization import SimVQQuantizer

CODEBOOK_INIT = Path(__file__).parents[1] / "benchmarks" / "codebook_init.py"


def test_rows_measure_the_second_half_and_leave_the_model_as_it_was():
    benchmark = load_script(CODEBOOK_INIT)
    torch.manual_seed(0)
    model = SimVQModel(tiny_config(codebook_size=64)).eval()
    pixel_values = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    codebook_before = model.quantize.codebook().detach().clone()
    generator = torch.Generator().manual_seed(3)
    fit_latents, measured_latents = benchmark.half_latents(model, pixel_values, generator, batch_size=3)
    rows = benchmark.codebook_init_rows(model, fit_latents, measured_latents, generator)

    measured = torch.randperm(8, generator=torch.Generator().manual_seed(3))[4:]
    with torch.no_grad():
        expected = token_histogram(model.encode(pixel_values[measured]).image_tokens, 64)
    assert rows[0]["used_codes"] == int((expected > 0).sum()) and rows[0]["tokens"] == 4 * 8 * 8
    assert [row["codebook"] for row in rows[1:]] == [
        "init `fit`", "init `fit`, Gaussian latents of the same moments", "init `samples`"
    ]  # fmt: skip
    assert all(row["utilization"] == row["used_codes"] / 64 for row in rows)
    torch.testing.assert_close(model.quantize.codebook().detach(), codebook_before, rtol=0, atol=0)


def test_script_writes_its_rows_on_the_embedded_photos(tmp_path):
    benchmark = load_script(CODEBOOK_INIT)
    torch.manual_seed(0)
    SimVQModel(tiny_config(codebook_size=64)).save_pretrained(tmp_path / "model")
    argv = ["--model_name_or_path", str(tmp_path / "model"), "--num_default_images", "16"]
    rows, shells = benchmark.main([*argv, "--output_json", str(tmp_path / "rows.json")])
    written = json.loads((tmp_path / "rows.json").read_text())
    assert written["codebooks"] == rows
    assert [shell["codes"] for shell in written["by_code_radius"]] == [7] * 4 + [6] * 6  # 64 codes in ten shells
    assert len(rows) == 4 and all(row["tokens"] == 8 * 8 * 8 for row in rows)
    assert sum(shell["mean_hits"] * shell["codes"] for shell in shells) == 8 * 8 * 8


def test_shells_of_code_radius_count_hits_and_latents_as_worked_out_by_hand():
    """A codebook on a line (one spanned direction of the two): codes at -2, -1, 1, 2 have mean 0 and (unbiased)
    variance 10/3, so radii 2·√(3/10) and √(3/10). Three latents near code 1 (one off the line, in the direction the
    codes do not span) are the inner shell's three hits; code 2 takes one on it and one far out, which counts in the
    outer shell's latents; codes -2 and -1 stay unused."""
    benchmark = load_script(CODEBOOK_INIT)
    quantizer = SimVQQuantizer(codebook_size=4, embed_dim=2)
    with torch.no_grad():
        quantizer.frozen_codebook.copy_(torch.tensor([[-2.0, 0.0], [-1.0, 0.0], [1.0, 0.0], [2.0, 0.0]]))
        quantizer.projection.weight.copy_(torch.eye(2))
        quantizer.projection.bias.zero_()
    latents = torch.tensor([[0.8, 0.0], [0.95, 0.0], [0.9, 0.1], [2.0, 0.0], [9.0, 0.0]])
    inner, outer = benchmark.usage_by_code_radius(quantizer, latents, num_shells=2)
    radius = (3 / 10) ** 0.5  # one unit along the line, in code standard deviations
    assert inner["radius"] == pytest.approx((radius, radius)) and outer["radius"] == pytest.approx((2 * radius,) * 2)
    assert (inner["codes"], inner["used"], inner["mean_hits"], inner["latent_share"]) == (2, 0.5, 1.5, 0.6)
    assert (outer["codes"], outer["used"], outer["mean_hits"], outer["latent_share"]) == (2, 0.5, 1.0, 0.4)
    assert inner["spanned_directions"] == 1
