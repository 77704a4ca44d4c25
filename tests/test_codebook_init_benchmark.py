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
    trained_histogram = benchmark.code_histogram(model.quantize, measured_latents)
    rows = benchmark.codebook_init_rows(model, fit_latents, measured_latents, trained_histogram, generator)

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
    rows, by_radius = benchmark.main([*argv, "--output_json", str(tmp_path / "rows.json")])
    written = json.loads((tmp_path / "rows.json").read_text())
    assert written["codebooks"] == rows
    shells = written["by_code_radius"]["shells"]
    assert [shell["codes"] for shell in shells] == [7] * 4 + [6] * 6  # 64 codes in ten shells
    assert len(rows) == 4 and all(row["tokens"] == 8 * 8 * 8 for row in rows)
    assert sum(shell["hits"] for shell in shells) == 8 * 8 * 8
    assert json.loads(json.dumps(by_radius)) == written["by_code_radius"]


def test_shells_of_code_radius_count_hits_and_latents_as_worked_out_by_hand():
    """Codes on a slanted line (one spanned direction u = (0.6, 0.8) of the two) at -2u, -u, u, 2u: mean 0, variance
    10/3 along u (unbiased), so radii 2·√(3/10) and √(3/10). A latent t·u + s·v (v ⟂ u) has radius |t|·√(3/10)
    whatever s. The latents at 0.8u, 0.95u, 0.9u + 0.1v and 1.4u are the inner shell's four hits (all nearest to u),
    but 1.4u lies past u's radius, so it counts among the outer shell's latents with 2u and 9u (both nearest to 2u).
    """
    benchmark = load_script(CODEBOOK_INIT)
    u, v = torch.tensor([0.6, 0.8]), torch.tensor([-0.8, 0.6])
    quantizer = SimVQQuantizer(codebook_size=4, embed_dim=2)
    with torch.no_grad():
        quantizer.frozen_codebook.copy_(torch.tensor([-2.0, -1.0, 1.0, 2.0])[:, None] * u)
        quantizer.projection.weight.copy_(torch.eye(2))
        quantizer.projection.bias.zero_()
    along, across = torch.tensor([0.8, 0.95, 0.9, 1.4, 2.0, 9.0]), torch.tensor([0.0, 0.0, 0.1, 0.0, 0.0, 0.0])
    latents = along[:, None] * u + across[:, None] * v
    histogram = benchmark.code_histogram(quantizer, latents)
    by_radius = benchmark.usage_by_code_radius(quantizer.codebook().detach(), histogram, latents, num_shells=2)
    inner, outer = by_radius["shells"]
    radius = (3 / 10) ** 0.5  # one unit along the line, in code standard deviations
    assert inner["radius"] == pytest.approx((radius, radius)) and outer["radius"] == pytest.approx((2 * radius,) * 2)
    assert (inner["codes"], inner["used_codes"], inner["hits"]) == (2, 1, 4)  # 0.8u, 0.95u, 0.9u + 0.1v, 1.4u → u
    assert (outer["codes"], outer["used_codes"], outer["hits"]) == (2, 1, 2)  # 2u, 9u → 2u
    assert inner["latent_share"] == pytest.approx(3 / 6) and outer["latent_share"] == pytest.approx(3 / 6)
    # The latents' variance along u (the one spanned axis) in units of the codes' 10/3.
    assert by_radius["latent_variance"] == pytest.approx([float(along.double().var()) / (10 / 3)])


def test_more_shells_than_codes_is_refused():
    benchmark = load_script(CODEBOOK_INIT)
    with pytest.raises(ValueError, match="3 shells need at least as many codes; the codebook has 2"):
        benchmark.usage_by_code_radius(torch.zeros(2, 2), torch.zeros(2, dtype=torch.long), torch.zeros(1, 2), 3)
