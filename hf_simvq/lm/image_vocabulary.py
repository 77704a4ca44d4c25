"""One SimVQ image tokenizer in a language model's vocabulary: the image-only view of the multimodal vocabulary.

Kept for the API and the folders that existed before speech: `SimVQImageVocabulary` is a
[`SimVQMultimodalVocabulary`] with a single image modality named `"image"`, with the image-specific names
(`images_to_input_ids`, `begin_image_id`, …) on top. Folders it saved before then (`image_vocabulary.json`) load.
"""

from dataclasses import replace

import torch
from transformers import PreTrainedTokenizerBase

from ..models.simvq.image_processing_simvq import SimVQImageProcessor
from ..models.simvq.modeling_simvq import SimVQModel
from .multimodal_vocabulary import ImageModality, ImageTokenLayout, Modality, SimVQMultimodalVocabulary


class SimVQImageVocabulary(SimVQMultimodalVocabulary):
    """A text tokenizer and a SimVQ image tokenizer sharing one id space, for a causal LM that reads and writes images.

    Build it with [`~SimVQImageVocabulary.from_tokenizers`], which adds the special tokens to the text tokenizer;
    resize the language model with [`extend_language_model`]; constrain generation with
    [`ImageSpanLogitsProcessor`]. `save_pretrained` writes the text tokenizer, the SimVQ model and the layout to one
    folder, and `from_pretrained` checks they still agree.
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        image_tokenizer: SimVQModel,
        layout: ImageTokenLayout,
        image_processor: SimVQImageProcessor | None = None,
    ):
        image_processor = image_processor or ImageModality.default_processor(image_tokenizer)
        super().__init__(
            tokenizer, {"image": ImageModality("image", layout, image_tokenizer, image_processor, tokenizer)}
        )

    @classmethod
    def from_tokenizers(
        cls,
        tokenizer: PreTrainedTokenizerBase,
        image_tokenizer: SimVQModel,
        image_processor: SimVQImageProcessor | None = None,
        begin_image_token: str = "<|image_start|>",
        end_image_token: str = "<|image_end|>",
        end_of_row_token: str | None = "<|image_row_end|>",
    ) -> "SimVQImageVocabulary":
        """Add the image special tokens to `tokenizer` (in place) and reserve the image ids after it.

        `end_of_row_token=None` drops Emu3's end-of-row marker: spans get shorter, but the model then has to count
        columns itself to know where a row ends.
        """
        specials = [begin_image_token, end_image_token] + ([end_of_row_token] if end_of_row_token else [])
        tokenizer.add_special_tokens({"extra_special_tokens": specials}, replace_extra_special_tokens=False)
        layout = replace(
            ImageModality.make_layout("image", image_tokenizer, end_of_row_token is not None),
            text_vocab_size=len(tokenizer),
            begin_image_token=begin_image_token,
            end_image_token=end_image_token,
            end_of_row_token=end_of_row_token,
        )
        return cls(tokenizer, image_tokenizer, layout, image_processor)

    @classmethod
    def _from_modalities(cls, tokenizer: PreTrainedTokenizerBase, modalities: dict[str, Modality]):
        if list(modalities) != ["image"]:
            raise ValueError(
                f"This folder holds the modalities {list(modalities)}: load it with SimVQMultimodalVocabulary."
            )
        image = modalities["image"]
        return cls(tokenizer, image.model, image.layout, image.processor)

    @property
    def image(self) -> ImageModality:
        return self.modalities["image"]

    @property
    def layout(self) -> ImageTokenLayout:
        return self.image.layout

    @property
    def image_tokenizer(self) -> SimVQModel:
        return self.image.model

    @property
    def image_processor(self) -> SimVQImageProcessor:
        return self.image.processor

    @property
    def begin_image_id(self) -> int:
        return self.image.begin_id

    @property
    def end_image_id(self) -> int:
        return self.image.end_id

    @property
    def end_of_row_id(self) -> int | None:
        return self.image.end_of_row_id

    def token_maps_to_input_ids(self, image_tokens: torch.LongTensor) -> torch.LongTensor:
        """SimVQ tokens `(B, h, w)` (multi-scale: `(B, L)`) → `(B, span_length)` LM ids between begin/end-of-image."""
        return self.image.token_maps_to_input_ids(image_tokens)

    def span_to_token_map(self, span: torch.LongTensor) -> torch.LongTensor:
        """One span starting with begin-of-image → its tokens `(h, w)` (multi-scale: `(L,)`); malformed spans raise."""
        return self.image.span_to_codes(span)

    def find_image_spans(self, input_ids: torch.LongTensor) -> list[tuple[int, int]]:
        """`(start, end)` positions (end exclusive) of every image span in a 1-D sequence, validated."""
        return [(start, end) for _, start, end in self.find_spans(input_ids)]

    def images_to_input_ids(self, images) -> torch.LongTensor:
        """PIL images (or a list of them), or `pixel_values` `(B, 3, H, W)` in [-1, 1] → `(B, span_length)` ids."""
        return torch.stack(self.image.encode(images))

    def input_ids_to_images(self, input_ids: torch.LongTensor) -> list[torch.FloatTensor]:
        """Every image span of a 1-D sequence → decoded `(3, H, W)` images in [-1, 1], in order."""
        return [image for _, image in self.decode_spans(input_ids)]

    def decode_interleaved(self, input_ids: torch.LongTensor) -> list:
        """A 1-D sequence → its text pieces (`str`) and images (PIL), in order."""
        return [piece if isinstance(piece, str) else piece[1] for piece in super().decode_interleaved(input_ids)]


__all__ = ["ImageTokenLayout", "SimVQImageVocabulary"]
