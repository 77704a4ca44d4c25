"""Nearest-code search at 1k–262k codes: this project's SimVQQuantizer vs vector-quantize-pytorch vs a naive reference.

Prints one table, every row measured in this run on this machine:
  - forward+backward of one quantizer step on 4,096 tokens of d = 128 (fp32), as in training: the projection
    changes before every step, so the effective codebook is rebuilt each time;
  - tokens/s, peak resident memory the step adds (each row runs in its own process, peak reset before the step);
  - the search's share of this machine's fp32 GEMM rate (measured here on a 2048³ `torch.mm`);
then whole-model `encode` images/s at 1k vs 262k codes, and the optimizer-state memory of `simvq` vs `vq`.

    pip install -e ".[bench]" && python benchmarks/quantizer.py
"""

import argparse
import json
import statistics
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F

from hf_simvq import SimVQConfig, SimVQModel, SimVQQuantizer, nearest_code_indices

NUM_TOKENS = 4096
EMBED_DIM = 128
CODEBOOK_SIZES = (1024, 65536, 262144)
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
    args = parser.parse_args()
    if args.tiles:
        tile_sweep()
    elif args.worker:
        print(json.dumps(worker(args.worker[0], int(args.worker[1]), args.repeats)))
    else:
        main()
