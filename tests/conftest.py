import pytest
import torch

from hf_simvq import SimVQConfig, SimVQModel


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
