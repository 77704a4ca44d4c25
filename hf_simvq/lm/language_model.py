"""The language-model side of SimVQ tokens: a resized vocabulary and generation that always yields decodable spans."""

import torch
from transformers import LogitsProcessor, PreTrainedModel

from .multimodal_vocabulary import CODE, CODE_OR_END, END, END_OF_ROW, SimVQMultimodalVocabulary


@torch.no_grad()
def extend_language_model(
    model: PreTrainedModel, vocabulary: SimVQMultimodalVocabulary, init_from_codebook: bool = True, seed: int = 0
) -> PreTrainedModel:
    """Resize `model`'s input embeddings and output head to text + specials + every modality's codes, in place.

    With `init_from_codebook`, each modality's code rows start as its effective SimVQ codebook sent through one fixed
    random projection to the hidden size (centred, scaled to the text embeddings' std): codes that are close in the
    tokenizer's latent space start close in the LM, instead of as unrelated noise.
    """
    model.resize_token_embeddings(vocabulary.total_vocab_size, mean_resizing=False)
    if not init_from_codebook:
        return model
    input_embeddings = model.get_input_embeddings().weight
    text_std = input_embeddings[: vocabulary.text_vocab_size].double().std()
    generator = torch.Generator().manual_seed(seed)
    for modality in vocabulary.modalities.values():
        codebook = modality.model.get_codebook().detach().double().cpu()
        projection = torch.randn(codebook.shape[1], input_embeddings.shape[1], generator=generator, dtype=torch.double)
        rows = (codebook - codebook.mean(dim=0)) @ projection
        rows = rows * (text_std / rows.std().clamp_min(1e-12))
        code_ids = slice(modality.layout.code_offset, modality.layout.code_end)
        for table in {input_embeddings, getattr(model.get_output_embeddings(), "weight", input_embeddings)}:
            table[code_ids] = rows.to(table.dtype).to(table.device)
    return model


class SpanLogitsProcessor(LogitsProcessor):
    """Makes `generate` write only well-formed spans, following whichever modality's span is open.

    Inside a span (after its begin token, before its end) only that modality's codes may follow: an image span gets
    an end-of-row after each row when its layout has one and its end token after exactly its codes (`h·w`, or every
    scale's); a speech span ends when the model writes end-of-speech, after `min_span_lengths[name]` codes at the
    earliest (default 1) and `max_span_lengths[name]` at the latest (default: no bound). Outside spans every
    modality's codes, row and end tokens are forbidden, so every id the LM writes decodes.
    """

    def __init__(
        self,
        vocabulary: SimVQMultimodalVocabulary,
        min_span_lengths: dict[str, int] | None = None,
        max_span_lengths: dict[str, int] | None = None,
    ):
        self.vocabulary = vocabulary
        self.min_span_lengths, self.max_span_lengths = min_span_lengths or {}, max_span_lengths or {}
        for name in {*self.min_span_lengths, *self.max_span_lengths}:
            vocabulary.modality_of(name)
            low, high = self.min_span_lengths.get(name, 1), self.max_span_lengths.get(name)
            if low < 0 or (high is not None and high < max(low, 1)):
                raise ValueError(f"Span lengths for {name!r} must satisfy 1 ≤ min ≤ max, got min {low}, max {high}.")

    def _masks(self, modality, vocab_size: int, device: torch.device) -> dict[int, torch.BoolTensor]:
        """For each kind of next token, the ids it allows inside this modality's spans."""
        codes, end = (torch.zeros(vocab_size, dtype=torch.bool, device=device) for _ in range(2))
        codes[modality.layout.code_offset : modality.layout.code_end] = True
        end[modality.end_id] = True
        end_of_row = torch.zeros_like(codes)
        if modality.end_of_row_id is not None:
            end_of_row[modality.end_of_row_id] = True
        return {CODE: codes, END_OF_ROW: end_of_row, END: end, CODE_OR_END: codes | end}

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        vocab_size = scores.shape[-1]
        if vocab_size < self.vocabulary.total_vocab_size:
            raise ValueError(
                f"The model scores {vocab_size} ids but the vocabulary needs {self.vocabulary.total_vocab_size}: call "
                "extend_language_model(model, vocabulary) first."
            )
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        outside = torch.ones(vocab_size, dtype=torch.bool, device=scores.device)
        allowed = torch.zeros_like(scores, dtype=torch.bool)
        open_any = torch.zeros(len(input_ids), dtype=torch.bool, device=scores.device)
        for name, modality in self.vocabulary.modalities.items():
            masks = self._masks(modality, vocab_size, scores.device)
            outside &= ~(masks[CODE] | masks[END] | masks[END_OF_ROW])
            last_begin = torch.where(input_ids == modality.begin_id, positions, -1).amax(dim=1)
            last_end = torch.where(input_ids == modality.end_id, positions, -1).amax(dim=1)
            inside = last_begin > last_end
            written = input_ids.shape[1] - 1 - last_begin  # body tokens of the open span so far
            kind = modality.layout.next_kind(
                written, self.min_span_lengths.get(name, 1), self.max_span_lengths.get(name)
            )
            span_allowed = torch.stack([masks[CODE], masks[END_OF_ROW], masks[END], masks[CODE_OR_END]])[kind]
            allowed |= inside[:, None] & span_allowed
            open_any |= inside
        allowed |= ~open_any[:, None] & outside
        return scores.masked_fill(~allowed, float("-inf"))


ImageSpanLogitsProcessor = SpanLogitsProcessor  # the name from before speech spans; the same processor

__all__ = ["ImageSpanLogitsProcessor", "SpanLogitsProcessor", "extend_language_model"]
