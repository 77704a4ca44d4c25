"""One processor for a multimodal SimVQ language model: `AutoProcessor.from_pretrained(lm_folder)` restores it all."""

from pathlib import Path

import torch
from transformers import BatchFeature, PreTrainedTokenizerBase, ProcessorMixin

from .multimodal_vocabulary import ImageModality, SimVQMultimodalVocabulary, SpeechModality


class SimVQMultimodalProcessor(ProcessorMixin):
    """The text tokenizer, every SimVQ tokenizer's image processor or feature extractor, and the vocabulary joining
    them, as multimodal models ship in transformers (Chameleon, Emu3, Qwen2-Audio: one `ProcessorMixin`).

    `processor(["a cat", ("image", picture), "says", ("speech", waveform)])` gives `input_ids`;
    `processor.decode(ids)` gives the text pieces and `(modality, item)` pairs back. The SimVQ models themselves
    are not processor attributes: `save_pretrained` writes them beside the tokenizer through the vocabulary (each in
    `<name>_tokenizer/` with its pre-processor), and `from_pretrained` reads them back from there.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, vocabulary: SimVQMultimodalVocabulary, chat_template=None):
        if vocabulary.tokenizer is not tokenizer:
            raise ValueError("The vocabulary was built on another text tokenizer: pass vocabulary.tokenizer.")
        self.vocabulary = vocabulary
        super().__init__(tokenizer, chat_template=chat_template)

    @classmethod
    def from_vocabulary(cls, vocabulary: SimVQMultimodalVocabulary) -> "SimVQMultimodalProcessor":
        return cls(vocabulary.tokenizer, vocabulary)

    @property
    def image_processors(self) -> dict:
        """Each image modality's image processor, by name."""
        return {name: m.processor for name, m in self.vocabulary.modalities.items() if isinstance(m, ImageModality)}

    @property
    def feature_extractors(self) -> dict:
        """Each speech modality's feature extractor, by name."""
        return {name: m.processor for name, m in self.vocabulary.modalities.items() if isinstance(m, SpeechModality)}

    def __call__(self, segments: list, return_tensors: str = "pt") -> BatchFeature:
        """Text strings and `(modality name, data)` pairs → `input_ids` and `attention_mask` `(1, length)`."""
        input_ids = self.vocabulary.encode_interleaved(segments)[None]
        return BatchFeature(
            {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}, tensor_type=return_tensors
        )

    def decode(self, input_ids: torch.LongTensor) -> list:
        """One sequence → text pieces and `(modality name, PIL image or NumPy waveform)` pairs, in order."""
        return self.vocabulary.decode_interleaved(input_ids)

    def to_dict(self) -> dict:
        """Only the class name: the tokenizer, pre-processors and models are saved as their own files."""
        return {"processor_class": type(self).__name__}

    def save_pretrained(self, save_directory, push_to_hub: bool = False, **kwargs) -> list[str]:
        """The vocabulary's folder (text tokenizer, SimVQ tokenizers, layout) plus `processor_config.json`."""
        self.vocabulary.save_pretrained(save_directory)
        return super().save_pretrained(save_directory, push_to_hub=push_to_hub, **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, **kwargs) -> "SimVQMultimodalProcessor":
        """A local folder written by `save_pretrained` (or by `SimVQMultimodalVocabulary.save_pretrained`)."""
        return cls.from_vocabulary(SimVQMultimodalVocabulary.from_pretrained(pretrained_model_name_or_path))


__all__ = ["SimVQMultimodalProcessor"]
