"""What registering image codes as tokenizer strings would cost, at 8k / 65k / 262k codes.

Measures `tokenizer.add_tokens` with Emu3-style names (`<|visual token 000123|>`), then save, reload, the size of
`tokenizer.json` and text encoding speed, against the same tokenizer without them. This is why
`SimVQImageVocabulary` reserves image ids without strings.

    python benchmarks/add_tokens.py
"""

import inspect
import tempfile
import time
from pathlib import Path

import transformers.modeling_utils
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

CODEBOOK_SIZES = (0, 8192, 65536, 262144)
SAMPLE_TEXT = "a photo of an astronaut next to a rocket on the launch pad " * 8


def base_tokenizer_folder(folder: Path) -> Path:
    """An 8k byte-level BPE trained here on transformers' own source (no download), saved to `folder`."""
    lines = inspect.getsource(transformers.modeling_utils).splitlines()
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel()
    tokenizer.train_from_iterator(lines, trainers.BpeTrainer(vocab_size=8000, special_tokens=["<unk>", "<s>", "</s>"]))
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="<unk>").save_pretrained(folder)
    return folder


def seconds(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def measure(base: Path, codebook_size: int, folder: Path) -> dict[str, float]:
    """Register `codebook_size` image strings on a fresh copy of the base tokenizer and time what that costs."""
    tokenizer = PreTrainedTokenizerFast.from_pretrained(base)
    names = [f"<|visual token {index:06d}|>" for index in range(codebook_size)]
    return {
        "add": seconds(tokenizer.add_tokens, names) if names else 0.0,
        "save": seconds(tokenizer.save_pretrained, folder),
        "load": seconds(PreTrainedTokenizerFast.from_pretrained, folder),
        "encode_ms": min(seconds(tokenizer, SAMPLE_TEXT) for _ in range(50)) * 1e3,
        "size_mb": (folder / "tokenizer.json").stat().st_size / 1e6,
    }


def main() -> None:
    with tempfile.TemporaryDirectory() as workdir:
        base = base_tokenizer_folder(Path(workdir) / "base")
        print(
            f"{'image strings':>13} | {'add_tokens s':>12} | {'save s':>6} | {'load s':>6} | "
            f"{'tokenizer.json MB':>17} | {'encode ms':>9}"
        )
        print("-" * 80)
        for codebook_size in CODEBOOK_SIZES:
            row = measure(base, codebook_size, Path(workdir) / str(codebook_size))
            print(
                f"{codebook_size:>13,} | {row['add']:>12.2f} | {row['save']:>6.2f} | {row['load']:>6.2f} | "
                f"{row['size_mb']:>17.1f} | {row['encode_ms']:>9.3f}"
            )


if __name__ == "__main__":
    main()
