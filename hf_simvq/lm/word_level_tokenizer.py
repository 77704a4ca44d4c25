"""A word-level text tokenizer trained on the spot: the demos and tests need a text vocabulary but no download."""

from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = {"unk_token": "<unk>", "pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>"}


def word_level_tokenizer(
    texts: list[str], pre_tokenizer: pre_tokenizers.PreTokenizer | None = None
) -> PreTrainedTokenizerFast:
    """One id per word of `texts` plus unk/pad/bos/eos; `pre_tokenizer` splits words (default: on whitespace)."""
    tokenizer = Tokenizer(models.WordLevel(unk_token=SPECIAL_TOKENS["unk_token"]))
    tokenizer.pre_tokenizer = pre_tokenizer or pre_tokenizers.WhitespaceSplit()
    tokenizer.train_from_iterator(texts, trainers.WordLevelTrainer(special_tokens=list(SPECIAL_TOKENS.values())))
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, **SPECIAL_TOKENS)


__all__ = ["word_level_tokenizer"]
