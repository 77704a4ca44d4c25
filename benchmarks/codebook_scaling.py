"""Utilization, perplexity, PSNR, SSIM and the rank of W against the codebook size, for SimVQ and plain VQ, with and
without Deferred Quantization.

    python benchmarks/codebook_scaling.py                                  # cpu-small recipe, K = 1k … 262k, both
    python benchmarks/codebook_scaling.py --codebook_sizes 1024 8192 -- --max_train_steps 500 --learning_rate 3e-4
    python benchmarks/codebook_scaling.py --codebook_sizes 8192 --deferred_quantization_steps 0 300  # DQ vs none

Every (quantizer, K) is one run of training/train.py in its own process, with the same recipe: options after `--`
(or any this script does not know) go to train.py unchanged, so the preset (`--config`), model size, data and run
length are given once for all runs. Each run writes its folder under `--runs_dir`; a folder that already holds
`eval_results.json` is skipped and an interrupted one resumes from its last checkpoint, so the sweep can be stopped
and started again (with the same recipe: `--runs_dir` remembers it and refuses another). The results are one JSON
record per run and two plots: utilization and PSNR against K (log axis), one line per quantizer (and Deferred
Quantization length); and the shrinkage diagnostics of "Early Quantization Shrinks Codebook" over the training steps
(perplexity, latent / used-code spread, mean distance between used codes, utilization), one line per run.

Utilization counts the codes used over the evaluation set, so it cannot exceed tokens / K, and it nears that bound
only when the set holds several times K tokens: the plot draws the bound. The cpu-small recipe evaluates 4,096 crops
× 64 tokens = 262,144 tokens, one per code at K = 262,144; raise `--num_validation_images` to measure large K.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

import matplotlib

from hf_simvq import SimVQModel
from hf_simvq.evaluation.codebook_statistics import effective_rank

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen before pyplot is imported)

ROOT = Path(__file__).parents[1]
TRAIN_SCRIPT = ROOT / "training" / "train.py"
RESULTS_DIR = ROOT / "examples" / "results"
# The options this script sets for every run: giving them for train.py too would make the sweep's labels lie.
OWN_TRAIN_OPTIONS = (
    "--quantizer_type",
    "--codebook_size",
    "--deferred_quantization_steps",
    "--output_dir",
    "--resume_from_checkpoint",
)
EVAL_METRICS = ("utilization", "used_codes", "perplexity", "psnr", "ssim", "num_tokens")


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    """This script's options, and the rest: the options of every train.py run."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    parser.add_argument("--quantizer_types", nargs="+", choices=["simvq", "vq"], default=["simvq", "vq"])
    parser.add_argument("--codebook_sizes", nargs="+", type=int, default=[1024, 4096, 16384, 65536, 262144])
    parser.add_argument(
        "--deferred_quantization_steps",
        nargs="+",
        type=int,
        default=[None],
        help="Unquantized steps before the codebook starts from the latents; 0 = quantize from the first step. "
        "Unset: as the recipe (its preset) says, and the run folders carry no `-dq` suffix.",
    )
    parser.add_argument(
        "--runs_dir", type=Path, default=Path("outputs/codebook-scaling"), help="One folder per run (git-ignored)."
    )
    parser.add_argument("--output_json", type=Path, default=RESULTS_DIR / "codebook_scaling.json")
    parser.add_argument("--output_png", type=Path, default=RESULTS_DIR / "codebook_scaling.png")
    parser.add_argument("--output_curves_png", type=Path, default=RESULTS_DIR / "codebook_scaling_curves.png")
    parser.add_argument(
        "--report_only", action="store_true", help="Train nothing: report the runs already evaluated, skip the rest."
    )
    args, train_options = parser.parse_known_args(argv)
    train_options = [option for option in train_options if option != "--"]
    conflicts = sorted({option.split("=")[0] for option in train_options} & set(OWN_TRAIN_OPTIONS))
    if conflicts:
        parser.error(f"{', '.join(conflicts)} are set by this script for each run; leave them out of the recipe.")
    return args, train_options


def run_label(quantizer_type: str, codebook_size: int, deferred_steps: int | None) -> str:
    """`simvq-8192` (Deferred Quantization as the recipe says), `simvq-8192-dq0`, `simvq-8192-dq300`: the run's
    folder name and its plot label. A given 0 gets its own folder: the recipe's preset may defer quantization."""
    return f"{quantizer_type}-{codebook_size}" + ("" if deferred_steps is None else f"-dq{deferred_steps}")


def claim_runs_dir(runs_dir: Path, train_options: list[str]) -> None:
    """Write the recipe into `runs_dir`, or refuse it when the runs there were trained with another one: a skipped
    run must have been trained like the runs that are still to come."""
    recipe = runs_dir / "recipe.json"
    if recipe.is_file() and json.loads(recipe.read_text()) != train_options:
        raise SystemExit(
            f"{runs_dir} holds runs of another recipe ({json.loads(recipe.read_text())}); give a new --runs_dir "
            "for this one."
        )
    runs_dir.mkdir(parents=True, exist_ok=True)
    recipe.write_text(json.dumps(train_options))


def train_run(
    output_dir: Path, quantizer_type: str, codebook_size: int, deferred_steps: int | None, train_options: list[str]
) -> None:
    """One train.py run in a fresh process (as tests/test_train.py runs it); resumes its last checkpoint, if any."""
    command = [sys.executable, str(TRAIN_SCRIPT), *train_options, "--quantizer_type", quantizer_type]
    command += ["--codebook_size", str(codebook_size), "--output_dir", str(output_dir)]
    if deferred_steps is not None:
        command += ["--deferred_quantization_steps", str(deferred_steps)]
    subprocess.run([*command, "--resume_from_checkpoint", "latest"], check=True)


def run_record(output_dir: Path, quantizer_type: str, codebook_size: int, deferred_steps: int | None) -> dict:
    """The run's evaluation (a metric it did not compute is None) and the effective rank of SimVQ's `W`."""
    evaluation = json.loads((output_dir / "eval_results.json").read_text())
    rank = None
    if quantizer_type == "simvq":
        rank = effective_rank(SimVQModel.from_pretrained(output_dir).quantize.projection.weight)
    return {
        "quantizer_type": quantizer_type,
        "codebook_size": codebook_size,
        "deferred_quantization_steps": deferred_steps,
        **{name: evaluation.get(name) for name in EVAL_METRICS},
        "effective_rank_of_w": rank,
        "run_dir": str(output_dir),
    }


def plot(records: list[dict], path: Path) -> None:
    """Utilization (with its tokens / K bound) and PSNR against K, one line per quantizer and Deferred Quantization
    length."""
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    sizes = sorted({record["codebook_size"] for record in records})
    panels = (("utilization", "Codebook utilization (evaluation set)"), ("psnr", "PSNR (dB)"))
    for axis, (metric, title) in zip(axes, panels, strict=True):
        for variant in dict.fromkeys(_variant(record) for record in records):
            points = [
                (record["codebook_size"], record[metric])
                for record in records
                if _variant(record) == variant and record[metric] is not None
            ]
            if points:
                axis.plot(*zip(*points, strict=True), marker="o", label=variant)
        axis.set_xscale("log", base=2)
        axis.set_xticks(sizes, labels=[f"{size:,}" for size in sizes])
        axis.minorticks_off()
        axis.set_xlabel("codebook size K")
        axis.set_title(title)
    bound = sorted({(r["codebook_size"], min(1.0, r["num_tokens"] / r["codebook_size"])) for r in records})
    axes[0].plot(*zip(*bound, strict=True), linestyle="--", color="0.6", label="bound: tokens / K")
    axes[0].set_ylim(0, 1.05)
    for axis in axes:
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _variant(record: dict) -> str:
    steps = record["deferred_quantization_steps"]
    return record["quantizer_type"] + (f" + DQ {steps} steps" if steps else "")


# (history key, title): the shrinkage diagnostics train.py logs, drawn over the steps for every run.
DIAGNOSTIC_PANELS = (
    ("train/perplexity", "Perplexity (training window)"),
    ("train/spread_ratio", "Shrinkage: latent spread / used-code spread"),
    ("train/mean_code_distance", "Mean distance between used codes"),
    ("train/utilization", "Codebook utilization (training window)"),
)


def diagnostic_series(records: list[dict]) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """`{history key: {run folder name: [(step, value), …]}}` of the `DIAGNOSTIC_PANELS`, read from each run's
    `training_history.json` (a run that never logged a key, e.g. unquantized steps, has no points there)."""
    series = {key: {} for key, _ in DIAGNOSTIC_PANELS}
    for record in records:
        run_dir = Path(record["run_dir"])
        history = json.loads((run_dir / "training_history.json").read_text())
        for key in series:
            series[key][run_dir.name] = [(entry["step"], entry[key]) for entry in history if key in entry]
    return series


def plot_diagnostics(records: list[dict], path: Path) -> None:
    """Each run's shrinkage diagnostics over the training steps, one panel per diagnostic."""
    figure, axes = plt.subplots(1, len(DIAGNOSTIC_PANELS), figsize=(5 * len(DIAGNOSTIC_PANELS), 4.5))
    series = diagnostic_series(records)
    for axis, (key, title) in zip(axes, DIAGNOSTIC_PANELS, strict=True):
        for label, points in series[key].items():
            if points:
                axis.plot(*zip(*points, strict=True), marker=".", label=label)
        axis.set_title(title)
        axis.set_xlabel("step")
        if key == "train/perplexity":
            axis.set_yscale("log")
        if axis.lines:
            axis.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main(argv: list[str] | None = None) -> list[dict]:
    """Train what is missing, then write the JSON and the plots of every (quantizer, K, Deferred Quantization);
    returns the records."""
    args, train_options = parse_args(argv)
    claim_runs_dir(args.runs_dir, train_options)
    records = []
    runs = [
        (quantizer_type, codebook_size, deferred_steps)
        for quantizer_type in args.quantizer_types
        for deferred_steps in args.deferred_quantization_steps
        for codebook_size in args.codebook_sizes
    ]
    for run in runs:
        output_dir = args.runs_dir / run_label(*run)
        if (output_dir / "eval_results.json").is_file():
            print(f"{output_dir}: already evaluated, skipped")
        elif args.report_only:
            print(f"{output_dir}: not evaluated, left out of the report")
            continue
        else:
            train_run(output_dir, *run, train_options)
        records.append(run_record(output_dir, *run))
    args.output_json.parent.mkdir(parents=True, exist_ok=True)
    args.output_json.write_text(json.dumps({"train_options": train_options, "runs": records}, indent=2) + "\n")
    args.output_png.parent.mkdir(parents=True, exist_ok=True)
    plot(records, args.output_png)
    args.output_curves_png.parent.mkdir(parents=True, exist_ok=True)
    plot_diagnostics(records, args.output_curves_png)
    return records


if __name__ == "__main__":
    main()
