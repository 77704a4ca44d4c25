"""How many of a trained tokenizer's codes its encoder's latents could use, with each Deferred Quantization init.

    python benchmarks/codebook_init.py --model_name_or_path DIR                  # the default validation photos
    python benchmarks/codebook_init.py --model_name_or_path DIR --train_data_dir PHOTOS --split train

The crops are encoded once and split in two halves (seeded): the codebook variants are initialised from the first
half's latents and measured on the second's, so no variant sees the latents it is scored on. Rows: the codebook as
trained; Deferred Quantization's `fit` (SimVQ: W, b moment-matched to the model's own C; VQ: k-means) and `samples`
(K distinct latents) initialisations applied to this encoder; and, for reference, Gaussian latents with the second
half's mean and covariance under the `fit` codebook (with a Gaussian C: what the moment fit would reach if the latents
were Gaussian). The gap between the rows says whether the codebook's extent, its shape, or the latents limit
utilization. A second table says where the trained codebook's unused codes are: its codes in ten equal shells of
distance from the codebook's centre, with the share of each shell in use and its hits, and the latents' variance along
the codebook's axes. An experiment, not a test.
"""

import argparse
import copy
import json
from pathlib import Path

import torch
from transformers import AutoModel

import hf_simvq  # noqa: F401  (registers SimVQ with the Auto classes)
from hf_simvq.evaluation.codebook_statistics import codebook_usage, token_histogram
from hf_simvq.training.data import load_image_split, with_pixel_values
from hf_simvq.training.deferred_quantization import (
    DEFERRED_CODEBOOK_INITS,
    initialize_codebook_from_latents,
    mean_and_covariance,
    symmetric_matrix_power,
)
from hf_simvq.training.options import add_data_arguments, data_source


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model_name_or_path", required=True, help="Saved model folder or Hub id.")
    add_data_arguments(parser)
    parser.add_argument("--split", default="validation")
    parser.add_argument("--num_default_images", type=int, default=8192, help="Crops of the default data.")
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output_json", help="Also write both tables here.")
    return parser.parse_args(argv)


@torch.no_grad()
def code_histogram(quantizer, latents: torch.Tensor) -> torch.LongTensor:
    """How often each code is nearest to one of the `(N, d)` latents, searched as the tokenizer searches."""
    indices = torch.cat([quantizer(block.T[None, :, :]).indices.flatten() for block in latents.split(65536)])
    return token_histogram(indices, quantizer.codebook_size)


def usage_row(name: str, histogram: torch.LongTensor) -> dict:
    """Utilization and perplexity of a codebook from its `code_histogram`."""
    return {"codebook": name, **codebook_usage(histogram), "tokens": int(histogram.sum())}


@torch.no_grad()
def usage_by_code_radius(
    codebook: torch.Tensor, histogram: torch.LongTensor, latents: torch.Tensor, num_shells: int = 10
) -> dict:
    """Where a codebook's unused codes are: its codes in `num_shells` equal-count shells of Mahalanobis distance from
    their mean, each shell's codes in use and hits (`histogram`, the `code_histogram` of `latents`), and the share of
    the latents at that distance.

    Distances are measured in the codes' own covariance over the directions the codes span (variance above 1e-6 of
    the largest, a std ratio of 1e-3: a low-rank W leaves the others empty); a latent's part off that span is left
    out. `latent_variance` is the latents' variance along each spanned axis (largest first) in units of the codes':
    below 1 where the codebook is wider than its latents, as the distortion-optimal code density (∝ p^(r/(r+2)) of
    the latents' density p in r directions, Zador) is for Gaussian latents.
    """
    if num_shells > len(codebook):
        raise ValueError(f"{num_shells} shells need at least as many codes; the codebook has {len(codebook)}.")
    codes = codebook.double()
    mean, covariance = mean_and_covariance(codes)
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
    spanned = (eigenvalues > eigenvalues.max() * 1e-6).nonzero().flatten().flip(0)
    whiten = eigenvectors[:, spanned] / eigenvalues[spanned].sqrt()
    code_coordinates, latent_coordinates = (codes - mean) @ whiten, (latents.double() - mean) @ whiten
    code_radius, latent_radius = code_coordinates.norm(dim=1), latent_coordinates.norm(dim=1)
    shells = code_radius.argsort().tensor_split(num_shells)
    outer_edges = torch.stack([code_radius[shell].max() for shell in shells[:-1]])
    latent_shell = torch.bucketize(latent_radius, outer_edges)  # a latent beyond every shell counts in the last
    return {
        "latent_variance": latent_coordinates.var(dim=0).tolist(),
        "shells": [
            {
                "radius": (float(code_radius[shell].min()), float(code_radius[shell].max())),
                "codes": len(shell),
                "used_codes": int((histogram[shell] > 0).sum()),
                "hits": int(histogram[shell].sum()),
                "latent_share": float((latent_shell == index).double().mean()),
            }
            for index, shell in enumerate(shells)
        ],
    }


def gaussian_like(latents: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """As many Gaussian rows as `latents`, with their mean and covariance."""
    mean, covariance = mean_and_covariance(latents.double())
    noise = torch.randn(latents.shape, generator=generator, dtype=torch.double)
    return (mean + noise @ symmetric_matrix_power(covariance, 0.5)).float()


@torch.no_grad()
def half_latents(
    model, pixel_values: torch.Tensor, generator: torch.Generator, batch_size: int = 256
) -> tuple[torch.Tensor, torch.Tensor]:
    """`(N, d)` encoder latents of a random half of the `(N, 3, H, W)` crops (to fit on) and of the rest (to score)."""
    order = torch.randperm(len(pixel_values), generator=generator)
    halves = order[: len(order) // 2], order[len(order) // 2 :]
    latents = [
        torch.cat([model.encoder(pixel_values[half[i : i + batch_size]]) for i in range(0, len(half), batch_size)])
        for half in halves
    ]
    fit_latents, measured_latents = (block.movedim(1, -1).reshape(-1, block.shape[1]) for block in latents)
    return fit_latents, measured_latents


def codebook_init_rows(
    model,
    fit_latents: torch.Tensor,
    measured_latents: torch.Tensor,
    trained_histogram: torch.LongTensor,
    generator: torch.Generator,
) -> list[dict]:
    """The first table's rows for `model` on the two halves' latents (`trained_histogram`: the model's own
    `code_histogram` of the measured half, which the shell table shares); the model itself is left as it was."""
    rows = [usage_row("as trained", trained_histogram)]
    for method in DEFERRED_CODEBOOK_INITS:
        quantizer = copy.deepcopy(model.quantize)
        initialize_codebook_from_latents(quantizer, fit_latents, generator=generator, method=method)
        rows.append(usage_row(f"init `{method}`", code_histogram(quantizer, measured_latents)))
        if method == "fit":
            reference = gaussian_like(measured_latents, generator)
            gaussian = code_histogram(quantizer, reference)
            rows.append(usage_row("init `fit`, Gaussian latents of the same moments", gaussian))
    return rows


def main(argv: list[str] | None = None) -> tuple[list[dict], dict]:
    args = parse_args(argv)
    model = AutoModel.from_pretrained(args.model_name_or_path).eval()
    resolution = model.config.image_size
    dataset = load_image_split(args.split, resolution, args.num_default_images, **data_source(args))
    crops = with_pixel_values(dataset, resolution, args.image_column)
    pixel_values = torch.stack([example["pixel_values"] for example in crops])
    generator = torch.Generator().manual_seed(args.seed)
    fit_latents, measured_latents = half_latents(model, pixel_values, generator, args.batch_size)
    trained_histogram = code_histogram(model.quantize, measured_latents)
    rows = codebook_init_rows(model, fit_latents, measured_latents, trained_histogram, generator)
    print(f"K = {model.config.codebook_size:,}; fitted on {len(pixel_values) // 2:,} crops, measured on the rest")
    print("| codebook | codes used | perplexity | tokens |\n|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['codebook']} | {row['utilization']:.1%} ({row['used_codes']:,}) | {row['perplexity']:,.0f} | "
            f"{row['tokens']:,} |"
        )
    by_radius = usage_by_code_radius(model.quantize.codebook(), trained_histogram, measured_latents)
    variances = ", ".join(f"{variance:.2f}" for variance in by_radius["latent_variance"])
    print(
        f"\nThe trained codebook by distance from its centre, over the {len(by_radius['latent_variance'])} directions"
    )
    print(f"it spans (the latents' variance along them, in units of the codes': {variances})")
    print("| code radius | codes | in use | hits a code | latents at that radius |\n|---|---|---|---|---|")
    for shell in by_radius["shells"]:
        print(
            f"| {shell['radius'][0]:.2f}–{shell['radius'][1]:.2f} | {shell['codes']:,} | "
            f"{shell['used_codes'] / shell['codes']:.1%} | {shell['hits'] / shell['codes']:.2f} | "
            f"{shell['latent_share']:.1%} |"
        )
    if args.output_json:
        Path(args.output_json).write_text(json.dumps({"codebooks": rows, "by_code_radius": by_radius}, indent=2))
    return rows, by_radius


if __name__ == "__main__":
    main()
