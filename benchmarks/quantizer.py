"""Nearest-code search at 1k–262k codes: this project's SimVQQuantizer vs vector-quantize-pytorch vs a naive reference.

Prints one table, every row measured in this run on this machine:
  - forward+backward of one quantizer step on 4,096 tokens of d = 128 (fp32), as in training: the projection
    changes before every step, so the effective codebook is rebuilt each time;
  - tokens/s, peak resident memory the step adds (each row runs in its own process, peak reset before the step);
  - the search's share of this machine's fp32 GEMM rate (measured here on a 2048³ `torch.mm`);
then whole-model `encode` images/s at 1k vs 262k codes, and the optimizer-state memory of `simvq` vs `vq`.

`--subspace` instead measures the exact subspace search on a trained-like codebook (see `subspace_rows`);
`--trained DIR …` on the codebooks of trained SimVQ models and their encoders' latents of the held-out photos, against
vector-quantize-pytorch on the same codebook, then each model's dataset tokenizer and training steps with and without
the search (see `trained_model_rows`). Every comparison counts identical indices. Search timings are the best of 2
runs (the subspace search's, of 3), the peer's too.

    pip install -e ".[bench]" && python benchmarks/quantizer.py [--subspace | --trained DIR …]
"""

import argparse
import copy
import json
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F

from hf_simvq import SimVQConfig, SimVQImageProcessor, SimVQModel, SimVQQuantizer, nearest_code_indices
from hf_simvq.models.simvq.quantization import TOKEN_BLOCK, squared_norms
from hf_simvq.models.simvq.subspace_search import SubspaceSearch, head_dimension, principal_axes
from hf_simvq.training.data import default_image_split
from hf_simvq.training.tokenization import tokenize_images

NUM_TOKENS = 4096
EMBED_DIM = 128
CODEBOOK_SIZES = (1024, 65536, 262144)
SUBSPACE_CODEBOOK_SIZES = (65536, 262144)
IMPLEMENTATIONS = ("hf_simvq", "vqtorch_simvq", "vqtorch_simvq_rotation", "naive_full_matrix")


def gemm_gflops(size: int = 2048, repeats: int = 5) -> float:
    """This machine's fp32 matrix-multiply rate: the ceiling any nearest-code search can reach."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    best = min(_seconds(lambda: torch.mm(a, b)) for _ in range(repeats))
    return 2 * size**3 / best / 1e9


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


class NaiveFullMatrix(torch.nn.Module):
    """The textbook SimVQ step: the whole tokens × codes distance matrix, and gradients through `C·Wᵀ`."""

    def __init__(self, codebook_size: int, embed_dim: int):
        super().__init__()
        self.register_buffer("frozen_codebook", torch.randn(codebook_size, embed_dim) * embed_dim**-0.5)
        self.projection = torch.nn.Linear(embed_dim, embed_dim)

    def forward(self, tokens: torch.Tensor):
        codebook = self.projection(self.frozen_codebook)
        with torch.no_grad():
            distances = tokens.pow(2).sum(1, keepdim=True) + codebook.pow(2).sum(1) - 2 * tokens @ codebook.T
            indices = distances.argmin(dim=1)
        codes = codebook[indices]
        loss = 0.25 * F.mse_loss(tokens, codes.detach()) + F.mse_loss(codes, tokens.detach())
        return tokens + (codes - tokens).detach(), indices, loss


def build_step(implementation: str, codebook_size: int):
    """A module and a closure running one forward+backward on `NUM_TOKENS` tokens."""
    torch.manual_seed(0)
    if implementation == "hf_simvq":
        module = SimVQQuantizer(codebook_size, EMBED_DIM)
        latents = torch.randn(1, EMBED_DIM, 64, NUM_TOKENS // 64, requires_grad=True)

        def run():
            output = module(latents)
            (output.quantized.sum() + output.loss).backward()

    elif implementation.startswith("vqtorch"):
        from vector_quantize_pytorch import SimVQ

        module = SimVQ(dim=EMBED_DIM, codebook_size=codebook_size, rotation_trick=implementation.endswith("rotation"))
        latents = torch.randn(1, NUM_TOKENS, EMBED_DIM, requires_grad=True)

        def run():
            quantized, _, loss = module(latents)
            (quantized.sum() + loss).backward()

    else:
        module = NaiveFullMatrix(codebook_size, EMBED_DIM)
        latents = torch.randn(NUM_TOKENS, EMBED_DIM, requires_grad=True)

        def run():
            quantized, _, loss = module(latents)
            (quantized.sum() + loss).backward()

    weights = [p for p in module.parameters() if p.requires_grad]

    def step():
        with torch.no_grad():  # stands in for the optimizer step: the codebook must be rebuilt, as in training
            for weight in weights:
                weight.add_(1e-6)
        run()

    return step


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def worker(implementation: str, codebook_size: int, repeats: int) -> dict:
    """One row, in a fresh process so the peak-memory reading belongs to this step alone."""
    step = build_step(implementation, codebook_size)
    step()  # warm-up: allocator, caches, lazy init
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak RSS (VmHWM) to the current RSS
    baseline = _rss_kib("VmRSS")
    times = [_seconds(step) for _ in range(repeats)]
    result = {"seconds": statistics.median(times), "peak_added_mib": (_rss_kib("VmHWM") - baseline) / 1024}
    if implementation == "hf_simvq":
        tokens, codebook = torch.randn(NUM_TOKENS, EMBED_DIM), torch.randn(codebook_size, EMBED_DIM)
        nearest_code_indices(tokens, codebook)
        result["search_seconds"] = min(_seconds(lambda: nearest_code_indices(tokens, codebook)) for _ in range(3))
    return result


def run_worker(implementation: str, codebook_size: int, repeats: int) -> dict:
    command = [sys.executable, __file__, "--worker", implementation, str(codebook_size), "--repeats", str(repeats)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def tile_sweep(codebook_size: int = 262144) -> None:
    """Search time for several tile shapes: how `TOKEN_BLOCK` × `CODE_BLOCK` was chosen for this machine's caches."""
    tokens, codebook = torch.randn(NUM_TOKENS, EMBED_DIM), torch.randn(codebook_size, EMBED_DIM)
    print(f"tile (tokens × codes) | tile MiB | search s at K={codebook_size:,}")
    for token_block, code_block in [(256, 1024), (512, 2048), (1024, 1024), (1024, 4096), (2048, 1024), (1024, 8192)]:
        search = partial(nearest_code_indices, tokens, codebook, token_block=token_block, code_block=code_block)
        search()
        best = min(_seconds(search) for _ in range(2))
        print(f"{token_block:>9} × {code_block:<9} | {token_block * code_block * 4 / 2**20:>8.0f} | {best:.3f}")


def paper_model(codebook_size: int, quantizer_type: str = "simvq") -> SimVQModel:
    torch.manual_seed(0)
    return SimVQModel(SimVQConfig(codebook_size=codebook_size, quantizer_type=quantizer_type)).eval()


def encode_images_per_second(codebook_size: int, batch_size: int = 8, repeats: int = 3) -> float:
    """Whole paper-size tokenizer (128×128 → 16×16 tokens), `encode` only, no grad."""
    model = paper_model(codebook_size)
    images = torch.rand(batch_size, 3, 128, 128) * 2 - 1
    with torch.no_grad():
        model.encode(images)
        seconds = min(_seconds(lambda: model.encode(images)) for _ in range(repeats))
    return batch_size / seconds


def optimizer_state_mib(quantizer_type: str, codebook_size: int = 262144) -> tuple[float, float]:
    """Adam state of the quantizer alone and of the whole model after one step: O(d²) for SimVQ vs O(K·d) for VQ."""
    model = paper_model(codebook_size, quantizer_type)
    totals = []
    for parameters in (list(model.quantize.parameters()), list(model.parameters())):
        optimizer = torch.optim.Adam(parameters)
        for parameter in parameters:
            parameter.grad = torch.zeros_like(parameter)
        optimizer.step()
        state_bytes = sum(
            t.numel() * t.element_size() for s in optimizer.state.values() for t in s.values() if t.dim() > 0
        )
        totals.append(state_bytes / 2**20)
    return totals[0], totals[1]


# W's singular values measured on the README's trained model (K = 8,192, d = 64; NOTES §7): 20.6, 14.8, 9.0, then
# 0.13, 0.08, 0.07 …, every code's component outside the top 16 directions ≤ 0.015. At d = 128: those three, a band
# falling from 0.13 to 0.03 up to direction 16, then 0.015 (code tails beyond direction 16 ≈ 0.015, as measured).
def trained_like_projection(dim: int = EMBED_DIM, seed: int = 0) -> torch.Tensor:
    """`W = U S Vᵀ` with random orthogonal `U`, `V` and the measured spectrum `S` (a stand-in for a trained W)."""
    generator = torch.Generator().manual_seed(seed)
    singular = torch.cat(
        [torch.tensor([20.6, 14.8, 9.0]), torch.linspace(0.13, 0.03, 13), torch.full((dim - 16,), 0.015)]
    )
    left, _ = torch.linalg.qr(torch.randn(dim, dim, generator=generator))
    right, _ = torch.linalg.qr(torch.randn(dim, dim, generator=generator))
    return left @ torch.diag(singular) @ right.T


def head_sweep_seconds(search: SubspaceSearch, latents: torch.Tensor) -> float:
    """One thin-GEMM pass over all K heads (addmm + running min, no bounds yet): the floor of a GEMM-based variant."""
    heads = torch.from_numpy(search.tree.data).float()
    queries = ((latents.double() - search.mean) @ search.axes)[:, : search.head_dim].float()
    return min(_seconds(lambda: nearest_code_indices(queries, heads)) for _ in range(2))


@torch.no_grad()
def peer_indices(peer, latents: torch.Tensor) -> torch.Tensor:
    """vector-quantize-pytorch's SimVQ search, 1,024 latents at a time."""
    return torch.cat([peer(chunk[None])[1][0] for chunk in latents.split(TOKEN_BLOCK)])


def subspace_rows(noise_levels: tuple[float, ...] = (0.01, 0.05, 0.2)) -> None:
    """Search on a trained-like codebook (`C·Wᵀ`, W from `trained_like_projection`, b = 0 so that the peer, which has
    no bias, searches the very same codebook) for `NUM_TOKENS` latents = a random code + N(0, σ²) in every direction.
    Identical indices are counted against our brute force. The peer runs on 1,024-token chunks (a 4,096 × 262,144
    `cdist` would need 4 GiB)."""
    from vector_quantize_pytorch import SimVQ

    print(
        f"Exact search on a trained-like codebook (W with the measured spectrum), {NUM_TOKENS} latents, d={EMBED_DIM}"
    )
    header = f"{'K':>8} | {'search':<42} | {'seconds':>8} | {'vs brute force':>14} | identical indices"
    print(header + "\n" + "-" * len(header))
    for codebook_size in SUBSPACE_CODEBOOK_SIZES:
        torch.manual_seed(0)
        frozen = torch.randn(codebook_size, EMBED_DIM) * EMBED_DIM**-0.5
        projection = trained_like_projection()
        codebook = frozen @ projection.T
        sq_norms = squared_norms(codebook)
        start = time.perf_counter()
        search = SubspaceSearch.build(codebook, sq_norms)
        build = time.perf_counter() - start
        peer = SimVQ(dim=EMBED_DIM, codebook_size=codebook_size).eval()
        with torch.no_grad():
            peer.frozen_codebook.copy_(frozen)
            peer.code_transform.weight.copy_(projection)
        for noise in noise_levels:
            latents = codebook[torch.randint(codebook_size, (NUM_TOKENS,))] + noise * torch.randn(NUM_TOKENS, EMBED_DIM)
            brute = nearest_code_indices(latents, codebook, sq_norms)
            brute_seconds = min(_seconds(partial(nearest_code_indices, latents, codebook, sq_norms)) for _ in range(2))
            found = search(latents)
            search_seconds = min(_seconds(partial(search, latents)) for _ in range(3))
            peer_ids = peer_indices(peer, latents)
            peer_seconds = min(_seconds(partial(peer_indices, peer, latents)) for _ in range(2))
            rows = [
                ("hf_simvq brute force (tiled)", brute_seconds, brute),
                (f"hf_simvq subspace (r={search.head_dim}, k-d tree + groups)", search_seconds, found),
                ("vector-quantize-pytorch SimVQ (cdist)", peer_seconds, peer_ids),
            ]
            print(f"{codebook_size:>8} | latents: code + N(0, {noise}²)")
            for name, seconds, indices in rows:
                same = int((indices == brute).sum())
                print(
                    f"{codebook_size:>8} | {name:<42} | {seconds:>8.3f} | {brute_seconds / seconds:>13.2f}× | "
                    f"{same}/{NUM_TOKENS}"
                )
        print(
            f"{codebook_size:>8} | {'(subspace set-up once per codebook)':<42} | {build:>8.3f} |\n"
            f"{codebook_size:>8} | {f'(thin GEMM over all heads, r={search.head_dim}, alone)':<42} | "
            f"{head_sweep_seconds(search, latents):>8.3f} |"
        )
    tokenizer_rows(projection)


@torch.no_grad()
def trained_model_rows(
    model_paths: list[str],
    larger_sizes: tuple[int, ...] = SUBSPACE_CODEBOOK_SIZES,
    num_tokens: int = NUM_TOKENS,
    num_tokenizer_images: int = 2048,
) -> None:
    """The subspace search on real trained codebooks: each model's `C·Wᵀ + b`, searched for its own encoder's latents
    of `num_tokens / tokens-per-image` crops of the held-out default photos, against our brute force and
    vector-quantize-pytorch's SimVQ given the same C, W and b. A codebook whose spectrum is too flat for the search
    (`SubspaceSearch.build` gives None) is searched by brute force; the row says so and why. Then each model's
    dataset tokenizer (`tokenize_images` on `num_tokenizer_images` held-out crops) with and without the search, and
    its training steps with and without `subspace_search_in_training`.

    Rows marked `C redrawn` stand in for a larger trained model: a frozen C of that size drawn as the model draws its
    own (the same init and std), mapped by the model's trained W and b. W was trained with the model's own K, not
    that one."""
    print(f"Exact search on trained codebooks, {num_tokens} latents of held-out crops each")
    header = (
        f"{'model':<32} | {'K':>7} | {'r (tail < 1e-4)':>15} | {'brute s':>8} | {'set-up s':>8} | {'subspace s':>10} | "
        f"speed-up | identical | {'peer s':>7} | peer identical"
    )
    print(header + "\n" + "-" * len(header))
    models = {}
    for path in model_paths:
        model = models[path] = SimVQModel.from_pretrained(path).eval()
        if not isinstance(model.quantize, SimVQQuantizer):
            raise SystemExit(
                f"{path} is a {model.config.quantizer_type!r} model: --trained measures SimVQ's codebook C·Wᵀ + b; "
                "give models trained with --quantizer_type simvq."
            )
        num_images = -(-num_tokens // model.config.latent_size**2)
        photos = default_image_split("validation", resolution=model.config.image_size, num_images=num_images)
        processor = SimVQImageProcessor.from_pretrained(path)
        latents = model.encoder(processor(list(photos["image"]), return_tensors="pt").pixel_values)
        latents = latents.movedim(1, -1).reshape(-1, latents.shape[1])[:num_tokens].contiguous()
        quantizer = model.quantize
        frozen_codebooks = {Path(path).name: quantizer.frozen_codebook}
        for size in larger_sizes:
            if size > quantizer.codebook_size:
                torch.manual_seed(0)
                frozen = quantizer.init_codebook_(torch.empty(size, quantizer.embed_dim))
                frozen_codebooks[f"{Path(path).name}, C redrawn"] = frozen
        for name, frozen in frozen_codebooks.items():
            _trained_codebook_row(name, frozen, quantizer.projection, latents)
    for path, model in models.items():
        _tokenizer_row(Path(path).name, model, num_tokenizer_images)
    for path, model in models.items():
        _training_step_row(Path(path).name, model)


def _trained_codebook_row(name: str, frozen: torch.Tensor, projection: torch.nn.Linear, latents: torch.Tensor) -> None:
    """A row of `trained_model_rows`: the spectrum's head, the brute force, the subspace search's set-up (paid again
    whenever W changes: every training step) and search where it applies, and the peer on the same codebook (its
    `code_transform` = our projection, bias included)."""
    from vector_quantize_pytorch import SimVQ

    codebook = projection(frozen)
    sq_norms = squared_norms(codebook)
    head_dim = head_dimension(principal_axes(codebook)[1])
    brute = nearest_code_indices(latents, codebook, sq_norms)
    brute_seconds = min(_seconds(partial(nearest_code_indices, latents, codebook, sq_norms)) for _ in range(2))
    start = time.perf_counter()
    search = SubspaceSearch.build(codebook, sq_norms)
    timing = f"{time.perf_counter() - start:>8.3f} | "
    if search is None:
        timing += f"{'(flat: brute force)':>10} |        - | -"
    else:
        found = search(latents)
        seconds = min(_seconds(partial(search, latents)) for _ in range(3))
        timing += f"{seconds:>10.3f} | {brute_seconds / seconds:>7.2f}× | {int((found == brute).sum())}/{len(brute)}"
    peer = SimVQ(dim=frozen.shape[1], codebook_size=len(frozen), codebook_transform=projection).eval()
    peer.frozen_codebook = frozen
    peer_ids = peer_indices(peer, latents)
    peer_seconds = min(_seconds(partial(peer_indices, peer, latents)) for _ in range(2))
    print(
        f"{name:<32} | {len(codebook):>7} | {head_dim:>15} | {brute_seconds:>8.3f} | {timing} | "
        f"{peer_seconds:>7.3f} | {int((peer_ids == brute).sum())}/{len(brute)}"
    )


def _tokenize(model: SimVQModel, photos, batch_size: int, subspace: bool) -> tuple[float, torch.Tensor]:
    """`tokenize_images` with the subspace search on or off: images/s and the tokens."""
    model.quantize.subspace_search = subspace
    with tempfile.TemporaryDirectory() as output_dir:
        start = time.perf_counter()
        saved = tokenize_images(photos, model, output_dir, batch_size=batch_size)
        seconds = time.perf_counter() - start
    return len(photos) / seconds, torch.tensor(saved["image_tokens"])


def _flat_note(quantizer: SimVQQuantizer) -> str:
    """What a row must say when its codebook's spectrum was too flat for the search, which then ran the brute force."""
    return " (flat spectrum: both brute force)" if quantizer._search_cache.subspace is None else ""


def _tokenizer_row(name: str, model: SimVQModel, num_images: int, batch_size: int = 64) -> None:
    """`tokenize_images` on held-out crops at the model's own resolution, with and without the subspace search, and
    whether both give the same tokens."""
    photos = default_image_split("validation", resolution=model.config.image_size, num_images=num_images)
    brute_rate, brute_tokens = _tokenize(model, photos, batch_size, subspace=False)
    rate, tokens = _tokenize(model, photos, batch_size, subspace=True)
    same = int((tokens == brute_tokens).all(dim=1).sum())
    print(
        f"dataset tokenizer, {name}: K={model.config.codebook_size:,}, {num_images} crops of "
        f"{model.config.image_size}², batch {batch_size}: brute force {brute_rate:.1f} images/s, subspace search "
        f"{rate:.1f} images/s ({rate / brute_rate:.2f}×){_flat_note(model.quantize)}, {same}/{num_images} images "
        "with identical tokens"
    )


@torch.enable_grad()  # called from `trained_model_rows`, which runs without gradients
def _training_step_row(name: str, model: SimVQModel, num_steps: int = 12, batch_size: int = 64) -> None:
    """Training steps (forward, L1 + quantizer loss, backward, Adam) from the trained weights, with the brute force
    and with `subspace_search_in_training` (its set-up paid every step, as W changes), each from the same weights on
    the same training crops; the two runs must pick the same codes at every step. The first step is not timed."""
    crops = default_image_split("train", resolution=model.config.image_size, num_images=num_steps * batch_size)
    pixel_values = SimVQImageProcessor.from_image_size(model.config.image_size)(
        list(crops["image"]), return_tensors="pt"
    ).pixel_values.split(batch_size)
    seconds, tokens = {}, {}
    for in_training in (False, True):
        trainee = copy.deepcopy(model).train()
        trainee.quantize.subspace_search = True  # the flag below decides; the model may come with the search off
        trainee.quantize.subspace_search_in_training = in_training
        optimizer = torch.optim.Adam(trainee.parameters(), lr=1e-3)
        times, tokens[in_training] = [], []
        for images in pixel_values:
            start = time.perf_counter()
            output = trainee(images)
            ((output.reconstruction - images).abs().mean() + output.quantization_loss).backward()
            optimizer.step()
            optimizer.zero_grad()
            times.append(time.perf_counter() - start)
            tokens[in_training].append(output.image_tokens)
        seconds[in_training] = statistics.mean(times[1:])
    flat = _flat_note(trainee.quantize)
    same = sum(torch.equal(a, b) for a, b in zip(tokens[False], tokens[True], strict=True))
    print(
        f"training step, {name}: K={model.config.codebook_size:,}, batch {batch_size}: brute force "
        f"{seconds[False]:.3f} s, subspace search in training {seconds[True]:.3f} s "
        f"({seconds[False] / seconds[True]:.2f}×){flat}, {same}/{num_steps} steps with identical codes"
    )


def tokenizer_rows(projection: torch.Tensor, num_images: int = 32, batch_size: int = 8) -> None:
    """The dataset tokenizer at K = 262,144 (paper config, 128×128 photos), with and without the subspace search.

    The encoder here is untrained: its latents lie off the trained-like codebook's subspace, so most of them take
    the brute force inside the search. The last row shows what a trained encoder's latents would cost instead: the
    measured encoder time plus the search of as many latents near the codes (σ = 0.05)."""
    model = paper_model(262144)
    with torch.no_grad():
        model.quantize.projection.weight.copy_(projection)
    photos = default_image_split("validation", resolution=128, num_images=num_images)
    print(
        f"\nDataset tokenizer (tokenize_images), paper config, K=262,144, {num_images} photos of 128×128, "
        f"batch {batch_size}"
    )
    for subspace in (False, True):
        rate, _ = _tokenize(model, photos, batch_size, subspace)
        print(f"  subspace_search={subspace!s:<5}: {rate:6.2f} images/s (untrained encoder's latents)")
    images = torch.rand(batch_size, 3, 128, 128) * 2 - 1
    with torch.no_grad():
        encoder_seconds = min(_seconds(lambda: model.encoder(images)) for _ in range(2))
    codebook, sq_norms = model.quantize._search_codebook()
    search = SubspaceSearch.build(codebook, sq_norms)
    tokens = batch_size * model.config.latent_size**2
    latents = codebook[torch.randint(len(codebook), (tokens,))] + 0.05 * torch.randn(tokens, EMBED_DIM)
    for name, run in (
        ("brute force", lambda: nearest_code_indices(latents, codebook, sq_norms)),
        ("subspace", lambda: search(latents)),
    ):
        run()
        seconds = encoder_seconds + min(_seconds(run) for _ in range(3))
        print(f"  encoder + {name:<11} search of near-code latents: {batch_size / seconds:6.2f} images/s")


def main() -> None:
    torch.set_num_threads(torch.get_num_threads())
    peak = gemm_gflops()
    print(f"fp32 GEMM rate of this machine (2048³ torch.mm): {peak:.0f} GFLOP/s, {torch.get_num_threads()} threads\n")
    print(
        f"Quantizer forward+backward, {NUM_TOKENS} tokens, d={EMBED_DIM}, fp32; ratios against vector-quantize-pytorch"
    )
    header = (
        f"{'K':>8} | {'implementation':<24} | {'step s':>7} | {'tokens/s':>8} | {'peak MiB':>8} | "
        "speed vs peer (rotation off / on) | memory vs peer | search % of GEMM"
    )
    print(header + "\n" + "-" * len(header))
    for codebook_size in CODEBOOK_SIZES:
        repeats = 3 if codebook_size < 262144 else 2
        rows = {name: run_worker(name, codebook_size, repeats) for name in IMPLEMENTATIONS}
        peers = rows["vqtorch_simvq"], rows["vqtorch_simvq_rotation"]
        for name, row in rows.items():
            speed = " / ".join(f"{peer['seconds'] / row['seconds']:5.2f}×" for peer in peers)
            memory = row["peak_added_mib"] / max(peer["peak_added_mib"] for peer in peers)
            search = ""
            if "search_seconds" in row:
                search = f"{2 * NUM_TOKENS * codebook_size * EMBED_DIM / row['search_seconds'] / 1e9 / peak:.0%}"
            print(
                f"{codebook_size:>8} | {name:<24} | {row['seconds']:>7.3f} | {NUM_TOKENS / row['seconds']:>8.0f} | "
                f"{row['peak_added_mib']:>8.1f} | {speed:>33} | {memory:>13.3f}× | {search:>16}"
            )
        gemm_floor = 2 * NUM_TOKENS * codebook_size * EMBED_DIM / (peak * 1e9)
        ceiling = " / ".join(f"{peer['seconds'] / gemm_floor:5.2f}×" for peer in peers)
        print(
            f"{codebook_size:>8} | {'(GEMM alone at peak rate)':<24} | {gemm_floor:>7.3f} |          |          | "
            f"{ceiling:>33} |  ← the most any exact fp32 search can gain"
        )
    small, large = encode_images_per_second(1024), encode_images_per_second(262144)
    print(
        f"\nWhole-model encode (paper config, 128×128, batch 8): K=1,024 {small:.2f} img/s, "
        f"K=262,144 {large:.2f} img/s → 262k takes {small / large:.2f}× the time of 1k"
    )
    for quantizer_type in ("simvq", "vq"):
        quantizer_mib, model_mib = optimizer_state_mib(quantizer_type)
        print(
            f"Adam state at K=262,144, {quantizer_type:>5}: quantizer {quantizer_mib:8.2f} MiB, "
            f"whole model {model_mib:8.2f} MiB"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", nargs=2, metavar=("IMPLEMENTATION", "CODEBOOK_SIZE"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tiles", action="store_true", help="only sweep the search's tile shapes")
    parser.add_argument("--subspace", action="store_true", help="only the subspace-search rows")
    parser.add_argument("--trained", nargs="+", metavar="MODEL_DIR", help="only the rows of these trained models")
    args = parser.parse_args()
    if args.tiles:
        tile_sweep()
    elif args.subspace:
        subspace_rows()
    elif args.trained:
        trained_model_rows(args.trained)
    elif args.worker:
        print(json.dumps(worker(args.worker[0], int(args.worker[1]), args.repeats)))
    else:
        main()
