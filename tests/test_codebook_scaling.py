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
    outputs += ["--output_curves_png", str(tmp_path / "curves.png")]
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
        assert record["deferred_quantization_steps"] is None  # not given: the recipe's own, not forced to 0

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


def test_deferred_quantization_axis_reaches_train_py_and_its_diagnostics_are_plotted(tmp_path):
    scaling = load_script(SCALING)
    outputs = ["--output_json", str(tmp_path / "dq.json"), "--output_png", str(tmp_path / "dq.png")]
    outputs += ["--output_curves_png", str(tmp_path / "curves.png")]
    recipe = ["--", *TINY_TRAIN_OPTIONS, "--max_train_steps", "4", "--validation_steps", "2"]
    argv = ["--quantizer_types", "simvq", "--codebook_sizes", "16", "--deferred_quantization_steps", "0", "2"]
    records = scaling.main([*argv, "--runs_dir", str(tmp_path / "runs"), *outputs, *recipe])

    assert [(r["deferred_quantization_steps"], Path(r["run_dir"]).name) for r in records] == [
        (0, "simvq-16-dq0"), (2, "simvq-16-dq2")
    ]  # fmt: skip
    series = scaling.diagnostic_series(records)
    assert set(series) == {key for key, _ in scaling.DIAGNOSTIC_PANELS}
    for record in records:
        history = json.loads((Path(record["run_dir"]) / "training_history.json").read_text())
        quantized_steps = [entry["step"] for entry in history if "train/perplexity" in entry]
        # The deferred run logs no codebook statistics while it trains unquantized (steps 1 and 2).
        assert quantized_steps == ([1, 2, 3, 4] if record["deferred_quantization_steps"] == 0 else [3, 4])
        expected = [(entry["step"], entry["train/spread_ratio"]) for entry in history if "train/spread_ratio" in entry]
        assert series["train/spread_ratio"][Path(record["run_dir"]).name] == expected and expected
    assert (tmp_path / "curves.png").stat().st_size > 10_000
