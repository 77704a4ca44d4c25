"""benchmarks/codebook_scaling.py on a tiny recipe: one record per (quantizer, K), the plot, and a restart that
trains nothing again, and a report of a partial sweep."""

import json
from pathlib import Path

import pytest
from conftest import TINY_TRAIN_OPTIONS, load_script

SCALING = Path(__file__).parents[1] / "benchmarks" / "codebook_scaling.py"


def test_sweep_records_every_run_and_a_restart_skips_the_finished_ones(tmp_path):
    scaling = load_script(SCALING)
    outputs = ["--output_json", str(tmp_path / "scaling.json"), "--output_png", str(tmp_path / "scaling.png")]
    recipe = ["--", *TINY_TRAIN_OPTIONS, "--max_train_steps", "2", "--validation_steps", "2"]
    argv = ["--codebook_sizes", "16", "64", "--runs_dir", str(tmp_path / "runs"), *outputs, *recipe]
    records = scaling.main(argv)

    assert json.loads((tmp_path / "scaling.json").read_text()) == {"train_options": recipe[1:], "runs": records}
    assert (tmp_path / "scaling.png").stat().st_size > 10_000
    assert [(r["quantizer_type"], r["codebook_size"]) for r in records] == [
        ("simvq", 16), ("simvq", 64), ("vq", 16), ("vq", 64)
    ]  # fmt: skip
    for record in records:
        assert record["num_tokens"] == 64 * 8 * 8  # 64 validation images of 8×8 tokens
        assert record["utilization"] == record["used_codes"] / record["codebook_size"] and record["used_codes"] > 0
        assert record["psnr"] > 0 and -1 <= record["ssim"] <= 1 and record["perplexity"] >= 1
        rank = record["effective_rank_of_w"]
        assert (rank is None) == (record["quantizer_type"] == "vq")
        assert rank is None or 1 < rank <= 8  # d = 8
        assert Path(record["run_dir"]).name == f"{record['quantizer_type']}-{record['codebook_size']}"

    weights = {path: path.stat().st_mtime_ns for path in (tmp_path / "runs").glob("*/model.safetensors")}
    assert len(weights) == 4
    assert scaling.main(argv) == records
    assert {path: path.stat().st_mtime_ns for path in weights} == weights
    # A partial sweep reports what exists and trains nothing: K = 256 was never run.
    partial = ["--report_only", "--codebook_sizes", "16", "64", "256", *argv[3:]]
    assert scaling.main(partial) == records and not (tmp_path / "runs" / "simvq-256").exists()
    with pytest.raises(SystemExit, match="another recipe"):
        scaling.main([*argv, "--learning_rate", "1e-4"])


def test_options_the_sweep_sets_per_run_are_refused_in_the_recipe(capsys):
    scaling = load_script(SCALING)
    with pytest.raises(SystemExit):
        scaling.parse_args(["--", "--max_train_steps", "2", "--codebook_size=8"])
    assert "--codebook_size are set by this script" in capsys.readouterr().err
    args, train_options = scaling.parse_args(["--codebook_sizes", "8", "--max_train_steps", "2"])
    assert args.codebook_sizes == [8] and train_options == ["--max_train_steps", "2"]
