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
    """A small word-level text tokenizer trained here (no download), with bos/eos/pad/unk."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<pad>", "<s>", "</s>"]
    tokenizer = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.train_from_iterator(texts, trainers.WordLevelTrainer(special_tokens=specials))
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="<unk>", pad_token="<pad>", bos_token="<s>", eos_token="</s>"
    )
