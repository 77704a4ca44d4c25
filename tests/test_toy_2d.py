"""examples/toy_2d.py at a tiny size: the figure and results are written, and VQ's codebook collapses first."""

import json
from pathlib import Path

from conftest import load_script

TOY = Path(__file__).parents[1] / "examples" / "toy_2d.py"


def test_toy_writes_figure_and_results_and_vq_uses_fewer_codes_than_simvq(tmp_path):
    toy = load_script(TOY)
    options = ["--steps", "60", "--eval_every", "20", "--num_codes", "128", "--num_eval_points", "2048"]
    results = toy.main([*options, "--output_dir", str(tmp_path)])
    assert (tmp_path / "toy_2d.png").stat().st_size > 10_000
    assert json.loads((tmp_path / "toy_2d.json").read_text()) == results
    methods = results["methods"]
    assert set(methods) == {"vq", "simvq", "simvq_train_codebook"} and results["steps"] == 60
    assert all(method["used_codes"] + method["dead_codes"] == 128 for method in methods.values())
    # All three start from the same codes; within 60 steps SimVQ's moving cloud already wins more of them.
    assert methods["vq"]["utilization"] < methods["simvq"]["utilization"]
