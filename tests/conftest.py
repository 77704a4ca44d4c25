import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest
import torch

from hf_simvq import SimVQAudioConfig, SimVQConfig, SimVQModel

# training/train.py on a tiny model and data set (16×16 images → 8×8 tokens, d = 8): a run of a few steps takes
# seconds. The codebook size is the caller's.
TINY_TRAIN_OPTIONS = [
    "--resolution", "16",
    "--num_train_images", "256",
    "--num_validation_images", "64",
    "--num_validation_images_during_training", "32",
    "--base_channels", "8",
    "--channel_multipliers", "1", "2",
    "--norm_num_groups", "4",
    "--embed_dim", "8",
    "--train_batch_size", "16",
    "--eval_batch_size", "32",
    "--num_grid_images", "4",
    "--eval_metrics", "codebook_usage", "psnr", "ssim",
    "--logging_steps", "1",
]  # fmt: skip


def tiny_config(**overrides) -> SimVQConfig:
    """A model small enough for CPU tests: 32×32 images → 8×8 tokens."""
    values = {
        "image_size": 32,
        "base_channels": 32,
        "channel_multipliers": [1, 1, 2],
        "num_res_blocks": 1,
        "embed_dim": 16,
        "codebook_size": 256,
    }
    values.update(overrides)
    return SimVQConfig(**values)


def tiny_audio_config(**overrides) -> SimVQAudioConfig:
    """A speech tokenizer small enough for CPU tests: hop 8 (3,000 codes/s at 24 kHz), 16-d latents, 64 codes."""
    values = {
        "num_filters": 8,
        "upsampling_ratios": [4, 2],
        "num_lstm_layers": 1,
        "hidden_size": 16,
        "decoder_hidden_size": 32,
        "decoder_intermediate_size": 64,
        "decoder_num_layers": 2,
        "decoder_attention_num_groups": 4,
        "codebook_size": 64,
    }
    values.update(overrides)
    return SimVQAudioConfig(**values)


# Runs a script in a fresh interpreter where `import hf_simvq` fails, as on a machine without the package.
HIDE_HF_SIMVQ = """
import importlib.abc, sys

class HideHfSimvq(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] == "hf_simvq":
            raise ModuleNotFoundError("hf_simvq is hidden in this test")

sys.meta_path.insert(0, HideHfSimvq())
"""


def run_without_hf_simvq(script: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run `script` in a subprocess that cannot import hf_simvq (the `trust_remote_code=True` route)."""
    code = HIDE_HF_SIMVQ + textwrap.dedent(script)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, timeout=300)


def load_script(path: Path) -> ModuleType:
    """A script outside the package (examples/, benchmarks/) as a module, so a test can call its `main(argv)`."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def images() -> torch.Tensor:
    return torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1


@pytest.fixture(params=["simvq", "vq"])
def model(request) -> SimVQModel:
    torch.manual_seed(0)
    return SimVQModel(tiny_config(quantizer_type=request.param)).eval()


def word_level_tokenizer(texts: list[str]):
    """A small word-level text tokenizer trained here (no download), splitting punctuation off words too."""
    from tokenizers import pre_tokenizers

    from hf_simvq.lm.word_level_tokenizer import word_level_tokenizer as build

    return build(texts, pre_tokenizers.Whitespace())
