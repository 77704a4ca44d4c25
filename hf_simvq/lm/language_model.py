"""The language-model side of image tokens: a resized vocabulary and generation that always yields decodable spans."""

import torch
from transformers import LogitsProcessor, PreTrainedModel

from .image_vocabulary import ImageTokenLayout, SimVQImageVocabulary


@torch.no_grad()
def extend_language_model(
    model: PreTrainedModel, vocabulary: SimVQImageVocabulary, init_from_codebook: bool = True, seed: int = 0
) -> PreTrainedModel:
    """Resize `model`'s input embeddings and output head to text + specials + image codes, in place.

    With `init_from_codebook`, image-code rows start as the effective SimVQ codebook sent through one fixed random
    projection to the hidden size (centred, scaled to the text embeddings' std): codes that are close in the
    tokenizer's latent space start close in the LM, instead of as unrelated noise.
    """
    layout = vocabulary.layout
    model.resize_token_embeddings(layout.total_vocab_size, mean_resizing=False)
    if not init_from_codebook:
        return model
    input_embeddings = model.get_input_embeddings().weight
    codebook = vocabulary.image_tokenizer.get_codebook().detach().double().cpu()
    generator = torch.Generator().manual_seed(seed)
    projection = torch.randn(codebook.shape[1], input_embeddings.shape[1], generator=generator, dtype=torch.double)
    image_rows = (codebook - codebook.mean(dim=0)) @ projection
    text_std = input_embeddings[: layout.text_vocab_size].double().std()
    image_rows = image_rows * (text_std / image_rows.std().clamp_min(1e-12))
    image_ids = slice(layout.image_token_offset, layout.total_vocab_size)
    for table in {input_embeddings, getattr(model.get_output_embeddings(), "weight", input_embeddings)}:
        table[image_ids] = image_rows.to(table.dtype).to(table.device)
    return model


class ImageSpanLogitsProcessor(LogitsProcessor):
    """Makes `generate` write only well-formed image spans.

    Inside a span (after begin-of-image, before its end) only image codes may follow, an end-of-row token closes
    each row when the layout has one, and end-of-image comes after exactly the image's codes (`h·w`, or every scale's
    for a multi-scale tokenizer). Outside a span image codes, end-of-row and end-of-image are forbidden, so every id
    the LM writes decodes.
    """

    def __init__(self, vocabulary: SimVQImageVocabulary):
        self.layout: ImageTokenLayout = vocabulary.layout
        self.begin_image_id = vocabulary.begin_image_id
        self.end_image_id = vocabulary.end_image_id
        self.end_of_row_id = vocabulary.end_of_row_id

    def _token_masks(self, vocab_size: int, device: torch.device) -> tuple[torch.Tensor, ...]:
        layout = self.layout
        if vocab_size < layout.total_vocab_size:
            raise ValueError(
                f"The model scores {vocab_size} ids but the vocabulary needs {layout.total_vocab_size}: call "
                "extend_language_model(model, vocabulary) first."
            )
        codes = torch.zeros(vocab_size, dtype=torch.bool, device=device)
        codes[layout.image_token_offset : layout.total_vocab_size] = True
        end_image, end_of_row = (torch.zeros_like(codes) for _ in range(2))
        end_image[self.end_image_id] = True
        if self.end_of_row_id is not None:
            end_of_row[self.end_of_row_id] = True
        return codes, end_image, end_of_row

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        codes, end_image, end_of_row = self._token_masks(scores.shape[-1], scores.device)
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        last_begin = torch.where(input_ids == self.begin_image_id, positions, -1).amax(dim=1)
        last_end = torch.where(input_ids == self.end_image_id, positions, -1).amax(dim=1)
        inside = last_begin > last_end
        written = input_ids.shape[1] - 1 - last_begin  # body tokens of the open span so far
        span_done = inside & (written >= self.layout.span_body_length)
        body_position = written.clamp(0, self.layout.span_body_length - 1)
        row_done = inside & ~span_done & self.layout.body_is_end_of_row.to(input_ids.device)[body_position]
        allowed = torch.where(
            inside[:, None],
            torch.where(span_done[:, None], end_image, torch.where(row_done[:, None], end_of_row, codes)),
            ~(codes | end_image | end_of_row),
        )
        return scores.masked_fill(~allowed, float("-inf"))


__all__ = ["ImageSpanLogitsProcessor", "extend_language_model"]
