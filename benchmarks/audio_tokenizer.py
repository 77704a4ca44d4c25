"""Speech tokenizer speed and memory: SimVQAudioModel beside transformers' WavTokenizerModel, same shapes, same run.

Both models are built at the SimVQ authors' audio architecture (causal SEANet encoder, hop 320 at 24 kHz, 512-d
latents, Vocos backbone 768 / 2304 / 12 layers, ISTFT head) with random weights; they differ only in the quantizer:
SimVQ's tiled exact search over `C·Wᵀ + b` (cached for inference) vs WavTokenizer's full frames × codes distance
matrix. For 4,096 and 262,144 codes it prints, per model and direction:
  - seconds of audio processed per second of wall time (batch 1, 10 s of audio), from the median and from the best
    of the repeats: on a shared machine the best is the closer reading of what the code costs;
  - the process's peak resident memory during the timed calls, and how much of it is the model's own weights and
    buffers (each row runs in its own process; the peak is reset after a warm-up call). The allocator keeps memory
    freed by the warm-up, so "peak − weights" is the call's working memory plus the interpreter, not a delta.

    python benchmarks/audio_tokenizer.py
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import torch
from quantizer import _rss_kib, _seconds
from transformers import WavTokenizerConfig, WavTokenizerModel

from hf_simvq import SimVQAudioConfig, SimVQAudioModel

CODEBOOK_SIZES = (4096, 262144)
MODELS = ("simvq_audio", "wavtokenizer")
DIRECTIONS = ("encode", "decode")
SECONDS_OF_AUDIO = 10.0


def build_model(name: str, codebook_size: int) -> torch.nn.Module:
    """The authors' audio architecture with `codebook_size` codes, as SimVQ or as WavTokenizer (random codebook)."""
    config = SimVQAudioConfig(codebook_size=codebook_size)
    if name == "simvq_audio":
        return SimVQAudioModel(config).eval()
    shared = WavTokenizerConfig.__dataclass_fields__
    model = WavTokenizerModel(WavTokenizerConfig(**{k: v for k, v in config.to_dict().items() if k in shared}))
    with torch.no_grad():
        model.encoder_model.quantizer.codebook.embed.normal_(std=config.hidden_size**-0.5)
    return model.eval()


def worker(name: str, codebook_size: int, direction: str, repeats: int) -> dict:
    """One row, in a fresh process so the peak-memory reading belongs to this call alone."""
    torch.manual_seed(0)
    model = build_model(name, codebook_size)
    samples = int(SECONDS_OF_AUDIO * model.config.sampling_rate)
    audio = torch.randn(1, 1, samples, generator=torch.Generator().manual_seed(0)) * 0.1
    with torch.no_grad():
        codes = model.encode(audio).audio_codes
        call = (lambda: model.encode(audio)) if direction == "encode" else (lambda: model.decode(codes))
        call()  # warm-up: allocator, caches, SimVQ's effective-codebook table
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak RSS (VmHWM) to the current RSS
        times = [_seconds(call) for _ in range(repeats)]
    return {
        "median_seconds": statistics.median(times),
        "best_seconds": min(times),
        "peak_mib": _rss_kib("VmHWM") / 1024,
        "weights_mib": sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()]) / 2**20,
        "frames": codes.shape[-1],
    }


def run_worker(name: str, codebook_size: int, direction: str, repeats: int) -> dict:
    command = [sys.executable, __file__, "--worker", name, str(codebook_size), direction, "--repeats", str(repeats)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--worker", nargs=3, metavar=("MODEL", "CODEBOOK_SIZE", "DIRECTION"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        name, codebook_size, direction = args.worker
        print(json.dumps(worker(name, int(codebook_size), direction, args.repeats)))
        return

    print(
        f"{SECONDS_OF_AUDIO:g} s of 24 kHz audio, batch 1, fp32, {torch.get_num_threads()} threads, "
        f"load average before the run {os.getloadavg()[0]:.2f}\n"
    )
    columns = ["      K", "model        ", "direction", "frames", "median s", "audio s/s", "best s", "audio s/s"]
    header = " | ".join([*columns, "peak MiB", "weights MiB"])
    print(header)
    print("-" * len(header))
    for codebook_size in CODEBOOK_SIZES:
        for direction in DIRECTIONS:
            for name in MODELS:
                row = run_worker(name, codebook_size, direction, args.repeats)
                print(
                    f"{codebook_size:>7} | {name:<13} | {direction:<9} | {row['frames']:>6} | "
                    f"{row['median_seconds']:>8.3f} | {SECONDS_OF_AUDIO / row['median_seconds']:>9.1f} | "
                    f"{row['best_seconds']:>6.3f} | {SECONDS_OF_AUDIO / row['best_seconds']:>9.1f} | "
                    f"{row['peak_mib']:>8.0f} | {row['weights_mib']:>11.0f}"
                )


if __name__ == "__main__":
    main()
