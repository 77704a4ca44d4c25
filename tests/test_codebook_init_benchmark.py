"""benchmarks/codebook_init.py: the trained row is the tokenizer's own usage on the measured half, the init rows
leave the model alone, and the script runs end to end on the embedded photos."""

import json
from pathlib import Path

import torch
from conftest import load_script, tiny_config

from hf_simvq import SimVQModel
from hf_simvq.evaluation.codebook_statistics import token_histogram

CODEBOOK_INIT = Path(__file__).parents[1] / "benchmarks" / "codebook_init.py"


def test_rows_measure_the_second_half_and_leave_the_model_as_it_was():
    benchmark = load_script(CODEBOOK_INIT)
    torch.manual_seed(0)
    model = SimVQModel(tiny_config(codebook_size=64)).eval()
    pixel_values = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    codebook_before = model.quantize.codebook().detach().clone()
    rows = benchmark.codebook_init_rows(model, pixel_values, seed=3, batch_size=3)

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
    rows = benchmark.main([*argv, "--output_json", str(tmp_path / "rows.json")])
    assert json.loads((tmp_path / "rows.json").read_text()) == rows
    assert len(rows) == 4 and all(row["tokens"] == 8 * 8 * 8 for row in rows)
