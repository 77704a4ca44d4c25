"""Why SimVQ does not collapse, in two dimensions: plain VQ, SimVQ, and SimVQ with its codebook trained too.

    python examples/toy_2d.py                     # ≈ 25 s on one CPU thread → examples/results/toy_2d.{png,json}
    python examples/toy_2d.py --steps 5000 --num_codes 1024 --output_dir /tmp/toy

The data are 2-D points from a mixture of Gaussian blobs; the "latents" are the points themselves (no encoder), so
of the quantizer loss `β·‖z − sg(q)‖² + ‖sg(z) − q‖²` only the codebook term trains anything. All three quantizers are
the package's own (`build_quantizer` of a `SimVQConfig` with `embed_dim=2`) and start from the same codes: a Gaussian
cloud that only partly overlaps the data (SimVQ's `W` starts at the identity and `b` at zero, so its effective
codebook equals VQ's). Plain VQ moves only the codes that win a point, so the codes on the far side of the cloud never
win and stay dead. SimVQ moves every code at once through `W` and `b`, so the whole cloud travels onto the data.

An affine image of a Gaussian cannot take the blobs' exact shape, so a few of SimVQ's codes (its tails) stay unused.
Training `C` as well (`train_codebook=True`) adds VQ's per-code updates on top of `W`'s: at the defaults it rises
more slowly than SimVQ at first, then overtakes it once `W` has brought every code near the data. That ranking
depends on the learning rate and run length (at `--learning_rate 0.01` and 1,000 steps it stays below SimVQ); VQ
staying far below both does not.
"""

import argparse
import json
import time
from pathlib import Path

import matplotlib
import torch

from hf_simvq import SimVQConfig
from hf_simvq.evaluation.codebook_statistics import codebook_usage, shrinkage_statistics, token_histogram
from hf_simvq.models.simvq.modeling_simvq import build_quantizer
from hf_simvq.models.simvq.quantization import VectorQuantizer

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen before pyplot is imported)

RESULTS_DIR = Path(__file__).parent / "results"
# name: (label, SimVQConfig fields)
METHODS = {
    "vq": ("VQ (codebook trained)", {"quantizer_type": "vq"}),
    "simvq": ("SimVQ (C frozen, W trained)", {"quantizer_type": "simvq"}),
    "simvq_train_codebook": ("SimVQ (C and W trained)", {"quantizer_type": "simvq", "train_codebook": True}),
}
# Five overlapping blobs (a clover) centred at (2, 2); the codes start as N(0, 1) around the origin.
BLOB_CENTRES = torch.tensor([[2.0, 2.0], [3.0, 2.0], [1.0, 2.0], [2.0, 3.0], [2.0, 1.0]])
BLOB_STD = 0.35


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num_codes", type=int, default=256)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch_size", type=int, default=256, help="Data points a step.")
    parser.add_argument("--learning_rate", type=float, default=0.03, help="Adam, for every method.")
    parser.add_argument("--codebook_std", type=float, default=1.0, help="Std of the initial codes around the origin.")
    parser.add_argument("--num_eval_points", type=int, default=8192, help="Fixed points that utilization counts.")
    parser.add_argument("--eval_every", type=int, default=25, help="Steps between utilization measurements.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output_dir", type=Path, default=RESULTS_DIR, help="Where toy_2d.png and toy_2d.json go.")
    return parser.parse_args(argv)


def sample_mixture(num_points: int, generator: torch.Generator) -> torch.Tensor:
    """`(num_points, 2)` points from the blob mixture, each blob equally likely."""
    blobs = torch.randint(len(BLOB_CENTRES), (num_points,), generator=generator)
    return BLOB_CENTRES[blobs] + BLOB_STD * torch.randn(num_points, 2, generator=generator)


def build_toy_quantizer(fields: dict, args: argparse.Namespace) -> VectorQuantizer:
    """The method's quantizer on the shared initial codes: the same seed draws the same `C` (VQ: codebook), and
    SimVQ's projection starts as the identity so its effective codebook is those codes too."""
    config = SimVQConfig(embed_dim=2, codebook_size=args.num_codes, codebook_init_std=args.codebook_std, **fields)
    torch.manual_seed(args.seed)
    quantizer = build_quantizer(config)
    if config.quantizer_type == "simvq":
        with torch.no_grad():
            quantizer.projection.weight.copy_(torch.eye(2))
            quantizer.projection.bias.zero_()
    return quantizer


def as_latents(points: torch.Tensor) -> torch.Tensor:
    """`(N, 2)` points as the `(1, d, N)` sequence latents the quantizers take."""
    return points.T.unsqueeze(0)


@torch.no_grad()
def measure(quantizer: VectorQuantizer, points: torch.Tensor) -> tuple[dict, torch.Tensor]:
    """Usage of the codes over `points` and how much narrower the used codes are than the points (shrinkage); and
    which codes are used."""
    histogram = token_histogram(quantizer(as_latents(points)).indices, quantizer.codebook_size)
    shrinkage = shrinkage_statistics(quantizer.codebook(), histogram, points)
    return {**codebook_usage(histogram), "spread_ratio": shrinkage["spread_ratio"]}, histogram > 0


def train(quantizer: VectorQuantizer, args: argparse.Namespace, eval_points: torch.Tensor) -> dict:
    """Adam on the quantizer loss over fresh batches of the mixture; utilization every `eval_every` steps."""
    optimizer = torch.optim.Adam(quantizer.parameters(), lr=args.learning_rate)
    generator = torch.Generator().manual_seed(args.seed + 1)  # the same batches for every method
    initial_codes = quantizer.codebook().detach().clone()
    curve = [(0, measure(quantizer, eval_points)[0]["utilization"])]
    for step in range(1, args.steps + 1):
        loss = quantizer(as_latents(sample_mixture(args.batch_size, generator))).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % args.eval_every == 0 or step == args.steps:
            curve.append((step, measure(quantizer, eval_points)[0]["utilization"]))
    final, used = measure(quantizer, eval_points)
    return {
        "initial_codes": initial_codes,
        "final_codes": quantizer.codebook().detach().clone(),
        "used": used,
        "curve": curve,
        "final": final,
    }


def plot(runs: dict, eval_points: torch.Tensor, path: Path, steps: int) -> None:
    """Per method, the codes over the data before and after training (dead codes as red crosses); below, the
    utilization of every method over the steps."""
    figure = plt.figure(figsize=(5 * len(runs), 13))
    grid = figure.add_gridspec(3, len(runs), height_ratios=(1, 1, 0.7))
    points = eval_points[:2000]
    codes = torch.cat([torch.cat([run["initial_codes"], run["final_codes"]]) for run in runs.values()])
    low = (torch.minimum(codes.min(dim=0).values, points.min(dim=0).values) - 0.3).tolist()
    high = (torch.maximum(codes.max(dim=0).values, points.max(dim=0).values) + 0.3).tolist()
    for column, (name, run) in enumerate(runs.items()):
        label = METHODS[name][0]
        for row, (codes, title) in enumerate(
            ((run["initial_codes"], "before training"), (run["final_codes"], f"after {steps} steps"))
        ):
            axis = figure.add_subplot(grid[row, column])
            axis.scatter(*points.T, s=2, color="0.75", label="data")
            if row == 0:
                axis.scatter(*codes.T, s=10, color="tab:blue", label="codes")
            else:
                used = run["used"]
                axis.scatter(*codes[used].T, s=10, color="tab:blue", label=f"used codes ({int(used.sum())})")
                axis.scatter(*codes[~used].T, s=14, color="tab:red", marker="x", label=f"dead ({int((~used).sum())})")
                title += f": {run['final']['utilization']:.0%} used"
            axis.set_title(f"{label}\n{title}")
            axis.set_xlim(low[0], high[0])
            axis.set_ylim(low[1], high[1])
            axis.set_aspect("equal")
            axis.legend(loc="upper left", fontsize=8)
    axis = figure.add_subplot(grid[2, :])
    for name, run in runs.items():
        axis.plot(*zip(*run["curve"], strict=True), label=METHODS[name][0])
    axis.set_title(f"Codebook utilization over {len(eval_points)} fixed data points")
    axis.set_xlabel("step")
    axis.set_ylabel("utilization")
    axis.set_ylim(0, 1.02)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)


def main(argv: list[str] | None = None) -> dict:
    """Train the three quantizers, write `toy_2d.png` and `toy_2d.json`, and return the JSON's content."""
    args = parse_args(argv)
    eval_points = sample_mixture(args.num_eval_points, torch.Generator().manual_seed(args.seed + 2))
    runs = {}
    for name, (label, fields) in METHODS.items():
        start = time.perf_counter()
        runs[name] = train(build_toy_quantizer(fields, args), args, eval_points)
        final = runs[name]["final"]
        print(
            f"{label:30s} utilization {final['utilization']:6.1%} ({final['used_codes']} of {args.num_codes} codes), "
            f"perplexity {final['perplexity']:6.1f}, spread ratio {final['spread_ratio']:.2f}, "
            f"{time.perf_counter() - start:.1f} s"
        )
    args.output_dir.mkdir(parents=True, exist_ok=True)
    plot(runs, eval_points, args.output_dir / "toy_2d.png", args.steps)
    results = {
        "num_codes": args.num_codes,
        "steps": args.steps,
        "num_eval_points": args.num_eval_points,
        "methods": {name: {"label": METHODS[name][0], **run["final"]} for name, run in runs.items()},
    }
    (args.output_dir / "toy_2d.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
