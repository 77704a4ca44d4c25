"""Text, image and speech tokens in one language-model vocabulary.

Layout (Chameleon/Emu3 style, one shared embedding table): the text tokenizer's ids come first, including the
special tokens every modality adds as strings (its begin and end token; images also Emu3's end-of-row), then one
block of `codebook_size` ids per SimVQ tokenizer, in the order given, which have **no string form**. Registering
262,144 strings with `tokenizer.add_tokens` makes `tokenizer.json` ~125× larger and slows every load by seconds
(`benchmarks/add_tokens.py` measures it), while nothing needs the strings: code ids only ever come from `encode` and
go back through `decode`.

A span is `[begin, body…, end]`. An image's body has a fixed length: row-major codes with `eol` closing every row
when enabled; a multi-scale (VAR) tokenizer's image is its token maps coarse to fine, each written the same way. A
speech span's body is its codes at the tokenizer's frame rate, as many as the audio lasts: the end-of-speech token,
not a count, closes it. Each modality is a [`Modality`]: a layout (what `save_pretrained` records) plus the SimVQ
model and the image processor or feature extractor that feed it; the vocabulary, the logits processor and
`extend_language_model` see only that interface.
"""

import itertools
import json
from dataclasses import asdict, dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import ClassVar

import numpy as np
import PIL.Image
import torch
from transformers import AutoTokenizer, FeatureExtractionMixin, PreTrainedModel, PreTrainedTokenizerBase

from ..models.simvq.feature_extraction_simvq_audio import SimVQAudioFeatureExtractor
from ..models.simvq.image_processing_simvq import SimVQImageProcessor
from ..models.simvq.modeling_simvq import SimVQModel
from ..models.simvq.modeling_simvq_audio import SimVQAudioModel

VOCABULARY_FILE = "multimodal_vocabulary.json"
LEGACY_IMAGE_VOCABULARY_FILE = "image_vocabulary.json"  # written before speech: one image tokenizer


# What may come next inside a span, given how many body tokens it already holds (see `SpanLayout.next_kind`).
CODE, END_OF_ROW, END, CODE_OR_END = range(4)


@dataclass(frozen=True)
class SpanLayout:
    """Where one tokenizer's code ids sit and the special tokens around its spans."""

    text_vocab_size: int  # the text tokenizer's size (specials included) when the layout was made
    codebook_size: int

    @property
    def code_offset(self) -> int:
        """Id of code 0: right after the text vocabulary unless `token_offset` (a field of every subclass, after
        their required ones) places it after another modality's codes."""
        offset = getattr(self, "token_offset", None)
        return self.text_vocab_size if offset is None else offset

    @property
    def code_end(self) -> int:
        """One past the last code id."""
        return self.code_offset + self.codebook_size

    @property
    def special_tokens(self) -> tuple[str | None, ...]:
        """(begin, end, end-of-row or None)."""
        raise NotImplementedError

    def next_kind(self, written: torch.LongTensor, min_length: int, max_length: int | None) -> torch.LongTensor:
        """For spans holding `written` body tokens: what may come next (`CODE`, `END_OF_ROW`, `END`, `CODE_OR_END`).

        `min_length`/`max_length` bound the body of spans whose length is chosen at generation time.
        """
        raise NotImplementedError


@dataclass(frozen=True)
class ImageTokenLayout(SpanLayout):
    """An image span: fixed length, rows of a token map (or of every scale's maps), each closed by end-of-row."""

    token_map_height: int
    token_map_width: int
    begin_image_token: str
    end_image_token: str
    end_of_row_token: str | None
    scales: tuple[int, ...] | None = None  # a multi-scale tokenizer's token-map sides, coarse to fine
    token_offset: int | None = None  # None: right after the text vocabulary (all a layout saved before speech had)

    def __post_init__(self):
        if self.scales is not None:  # a list when read back from JSON
            object.__setattr__(self, "scales", tuple(self.scales))

    @property
    def special_tokens(self) -> tuple[str | None, ...]:
        return self.begin_image_token, self.end_image_token, self.end_of_row_token

    @property
    def image_token_offset(self) -> int:
        return self.code_offset

    @property
    def total_vocab_size(self) -> int:
        """The size the language model's embedding table and output head need for this image tokenizer's ids."""
        return self.code_end

    @property
    def row_lengths(self) -> list[int]:
        """Codes per row of the span, in order: `h` rows of `w`, or every scale's rows."""
        if self.scales is None:
            return [self.token_map_width] * self.token_map_height
        return [side for side in self.scales for _ in range(side)]

    @property
    def token_map_shape(self) -> tuple[int, ...]:
        """One image's tokens as the SimVQ model gives them: `(h, w)`, or `(L,)` for all scales."""
        if self.scales is None:
            return (self.token_map_height, self.token_map_width)
        return (sum(self.row_lengths),)

    @cached_property
    def body_code_positions(self) -> torch.LongTensor:
        """For each position between begin- and end-of-image, the index of the code it holds (row-major over the
        flattened tokens), or -1 where an end-of-row goes. The one description of a span that writing, reading and
        constrained generation all use."""
        positions, start = [], 0
        for length in self.row_lengths:
            positions.extend(range(start, start + length))
            start += length
            if self.end_of_row_token is not None:
                positions.append(-1)
        return torch.tensor(positions)

    @cached_property
    def body_is_end_of_row(self) -> torch.BoolTensor:
        return self.body_code_positions < 0

    @property
    def span_body_length(self) -> int:
        """Tokens between begin- and end-of-image: the codes, plus one end-of-row per row when enabled."""
        rows = self.row_lengths
        return sum(rows) + len(rows) * (self.end_of_row_token is not None)

    @property
    def span_length(self) -> int:
        return self.span_body_length + 2

    def next_kind(self, written: torch.LongTensor, min_length: int, max_length: int | None) -> torch.LongTensor:
        row_done = self.body_is_end_of_row.to(written.device)[written.clamp(0, self.span_body_length - 1)]
        kind = torch.where(row_done, END_OF_ROW, CODE)
        return torch.where(written >= self.span_body_length, END, kind)


@dataclass(frozen=True)
class SpeechTokenLayout(SpanLayout):
    """A speech span: the codes of one utterance, as many as it lasts, closed by end-of-speech."""

    begin_speech_token: str
    end_speech_token: str
    token_offset: int | None = None

    @property
    def special_tokens(self) -> tuple[str | None, ...]:
        return self.begin_speech_token, self.end_speech_token, None

    def next_kind(self, written: torch.LongTensor, min_length: int, max_length: int | None) -> torch.LongTensor:
        kind = torch.where(written >= max(min_length, 1), CODE_OR_END, CODE)  # a span holds at least one code
        return kind if max_length is None else torch.where(written >= max_length, END, kind)


class Modality:
    """One SimVQ tokenizer inside the vocabulary: its layout, model, pre-processor and special-token ids."""

    kind: ClassVar[str]
    layout_class: ClassVar[type[SpanLayout]]
    model_class: ClassVar[type[PreTrainedModel]]
    processor_class: ClassVar[type[FeatureExtractionMixin]]

    def __init__(self, name: str, layout: SpanLayout, model: PreTrainedModel, processor, tokenizer):
        self.name, self.layout, self.model, self.processor = name, layout, model, processor
        self.begin_id, self.end_id, self.end_of_row_id = (
            None if token is None else _special_id(tokenizer, token) for token in layout.special_tokens
        )
        self.check_model()

    @property
    def tokenizer_folder(self) -> str:
        """Where `save_pretrained` puts this modality's SimVQ model and pre-processor."""
        return tokenizer_folder(self.name)

    def check_model(self) -> None:
        """Raise `ValueError` if the SimVQ model does not give the codes the layout was made for."""
        if self.model.config.codebook_size != self.layout.codebook_size:
            raise ValueError(
                f"The {self.name} tokenizer has {self.model.config.codebook_size} codes but the vocabulary reserved "
                f"{self.layout.codebook_size}."
            )

    def codes_to_body(self, codes: torch.LongTensor) -> torch.LongTensor:
        """Model codes of one item → the ids between its begin and end tokens."""
        raise NotImplementedError

    def body_to_codes(self, body: torch.LongTensor) -> torch.LongTensor:
        """The ids between begin and end → the model's codes for one item; malformed bodies raise."""
        raise NotImplementedError

    def span_end(self, input_ids: torch.LongTensor, start: int) -> int:
        """End (exclusive) of the span that begins at `start`."""
        raise NotImplementedError

    def encode(self, inputs) -> list[torch.LongTensor]:
        """A batch of raw inputs → one span of ids per item."""
        raise NotImplementedError

    def decode(self, code_list: list[torch.LongTensor]) -> list[torch.Tensor]:
        """Codes of several items → the model's outputs (images in [-1, 1], waveforms), one per item."""
        raise NotImplementedError

    def postprocess(self, output: torch.Tensor):
        """A decoded item as users keep it: a PIL image, a NumPy waveform."""
        raise NotImplementedError

    def codes_to_span(self, codes: torch.LongTensor) -> torch.LongTensor:
        body = self.codes_to_body(codes)
        return torch.cat([body.new_tensor([self.begin_id]), body, body.new_tensor([self.end_id])])

    def span_to_codes(self, span: torch.LongTensor) -> torch.LongTensor:
        """One span starting with the begin token → the model's codes; malformed spans raise."""
        if span.ndim != 1 or span.numel() < 2 or span[0] != self.begin_id or span[-1] != self.end_id:
            raise ValueError(
                f"A {self.kind} span must start with {self.layout.special_tokens[0]} ({self.begin_id}) and end with "
                f"{self.layout.special_tokens[1]} ({self.end_id}), got {span.tolist()[:1]} … {span.tolist()[-1:]}."
            )
        return self.body_to_codes(span[1:-1])

    def body_codes(self, body: torch.LongTensor) -> torch.LongTensor:
        """Body ids → 0-based codes, refusing any id outside this tokenizer's range."""
        codes = body - self.layout.code_offset
        outside = (codes < 0) | (codes >= self.layout.codebook_size)
        if outside.any():
            raise ValueError(
                f"Id {int(body[outside][0])} inside a span of {self.name!r} is not {_article(self.kind)} {self.kind} "
                f"code ({self.name!r} ids are {self.layout.code_offset} … {self.layout.code_end - 1})."
            )
        return codes


class ImageModality(Modality):
    """A SimVQ image tokenizer, single- or multi-scale: fixed-length spans of row-major codes."""

    kind = "image"
    layout_class = ImageTokenLayout
    model_class = SimVQModel
    processor_class = SimVQImageProcessor
    layout: ImageTokenLayout

    @classmethod
    def make_layout(cls, name: str, model: SimVQModel, end_of_row: bool) -> ImageTokenLayout:
        """The layout with default special-token names; `from_tokenizers` places its ids."""
        return ImageTokenLayout(
            text_vocab_size=0,
            codebook_size=model.config.codebook_size,
            token_map_height=model.config.latent_size,
            token_map_width=model.config.latent_size,
            begin_image_token=f"<|{name}_start|>",
            end_image_token=f"<|{name}_end|>",
            end_of_row_token=f"<|{name}_row_end|>" if end_of_row else None,
            scales=_multiscale_scales(model.config),
        )

    @staticmethod
    def default_processor(model: SimVQModel) -> SimVQImageProcessor:
        return SimVQImageProcessor.from_image_size(model.config.image_size)

    def check_model(self) -> None:
        layout, config = self.layout, self.model.config
        model_tokens = (config.codebook_size, config.latent_size, _multiscale_scales(config))
        if model_tokens != (layout.codebook_size, layout.token_map_height, layout.scales):
            raise ValueError(
                f"The SimVQ model ({_describe_tokens(*model_tokens)}) does not match the vocabulary "
                f"({_describe_tokens(layout.codebook_size, layout.token_map_height, layout.scales)})."
            )

    def token_maps_to_input_ids(self, image_tokens: torch.LongTensor) -> torch.LongTensor:
        """SimVQ tokens `(B, h, w)` (multi-scale: `(B, L)`) → `(B, span_length)` LM ids between begin/end-of-image."""
        expected = self.layout.token_map_shape
        if image_tokens.ndim != 1 + len(expected) or tuple(image_tokens.shape[1:]) != expected:
            raise ValueError(
                f"Expected the image tokenizer's tokens (batch, {', '.join(map(str, expected))}), got "
                f"{tuple(image_tokens.shape)}."
            )
        self.model.quantize.check_indices(image_tokens)
        return torch.stack([self.codes_to_span(tokens) for tokens in image_tokens])

    def codes_to_body(self, codes: torch.LongTensor) -> torch.LongTensor:
        body = (codes.long().flatten() + self.layout.code_offset)[self.layout.body_code_positions.clamp(min=0)]
        if self.end_of_row_id is not None:
            body[self.layout.body_is_end_of_row] = self.end_of_row_id
        return body

    def span_to_codes(self, span: torch.LongTensor) -> torch.LongTensor:
        layout = self.layout
        if span.ndim != 1 or span.numel() != layout.span_length:
            raise ValueError(
                f"An image span must hold {layout.span_length} ids (begin, {layout.span_body_length} body, end), got "
                f"{span.numel()}: the image was cut short or is missing its end-of-image token."
            )
        return super().span_to_codes(span)

    def body_to_codes(self, body: torch.LongTensor) -> torch.LongTensor:
        layout = self.layout
        if self.end_of_row_id is not None and not torch.all(body[layout.body_is_end_of_row] == self.end_of_row_id):
            raise ValueError(f"Every image row must end with {layout.end_of_row_token} ({self.end_of_row_id}).")
        return self.body_codes(body[~layout.body_is_end_of_row]).view(layout.token_map_shape)

    def span_end(self, input_ids: torch.LongTensor, start: int) -> int:
        return start + self.layout.span_length

    @torch.no_grad()
    def encode(self, inputs) -> list[torch.LongTensor]:
        """PIL images (or a list of them), or `pixel_values` `(B, 3, H, W)` in [-1, 1] → one span per image."""
        if isinstance(inputs, torch.Tensor):
            pixel_values = inputs
        else:
            pixel_values = self.processor(
                [inputs] if isinstance(inputs, PIL.Image.Image) else inputs, return_tensors="pt"
            ).pixel_values
        pixel_values = pixel_values.to(device=self.model.device, dtype=self.model.dtype)
        return list(self.token_maps_to_input_ids(self.model.encode(pixel_values).image_tokens).cpu())

    @torch.no_grad()
    def decode(self, code_list: list[torch.LongTensor]) -> list[torch.Tensor]:
        return list(self.model.decode_tokens(torch.stack(code_list).to(self.model.device)).cpu())

    def postprocess(self, output: torch.Tensor) -> PIL.Image.Image:
        return self.processor.postprocess(output[None])[0]


class SpeechModality(Modality):
    """A SimVQ speech tokenizer: spans of its codes at its frame rate, as long as the utterance."""

    kind = "speech"
    layout_class = SpeechTokenLayout
    model_class = SimVQAudioModel
    processor_class = SimVQAudioFeatureExtractor
    layout: SpeechTokenLayout

    @classmethod
    def make_layout(cls, name: str, model: SimVQAudioModel, end_of_row: bool) -> SpeechTokenLayout:
        """The layout with default special-token names (`end_of_row` concerns images only)."""
        return SpeechTokenLayout(
            text_vocab_size=0,
            codebook_size=model.config.codebook_size,
            begin_speech_token=f"<|{name}_start|>",
            end_speech_token=f"<|{name}_end|>",
        )

    @staticmethod
    def default_processor(model: SimVQAudioModel) -> SimVQAudioFeatureExtractor:
        return SimVQAudioFeatureExtractor(sampling_rate=model.config.sampling_rate, hop_length=model.config.hop_length)

    def codes_to_body(self, codes: torch.LongTensor) -> torch.LongTensor:
        """Codes `(frames,)` or `(1, frames)` of one utterance → its body ids."""
        self.model.quantize.check_indices(codes)
        return codes.long().flatten() + self.layout.code_offset

    def body_to_codes(self, body: torch.LongTensor) -> torch.LongTensor:
        if body.numel() == 0:
            raise ValueError(f"A speech span needs at least one code between {self.begin_id} and {self.end_id}.")
        return self.body_codes(body)

    def span_end(self, input_ids: torch.LongTensor, start: int) -> int:
        ends = (input_ids[start + 1 :] == self.end_id).nonzero().flatten()
        if len(ends) == 0:
            raise ValueError(
                f"The speech span at position {start} has no {self.layout.end_speech_token} ({self.end_id}): it was "
                "cut short (raise max_new_tokens or give the logits processor a max length)."
            )
        return start + 2 + int(ends[0])

    @torch.no_grad()
    def encode(self, inputs) -> list[torch.LongTensor]:
        """1-D waveforms at the tokenizer's rate (one array or a list), or `input_values` `(B, 1, samples)` → spans.

        A padded batch gives each utterance only the codes of its own frames (the feature extractor's padding mask).
        """
        if isinstance(inputs, torch.Tensor):
            features = {"input_values": inputs, "padding_mask": None}
        else:
            waveforms = [inputs] if isinstance(inputs, np.ndarray) and inputs.ndim == 1 else list(inputs)
            features = self.processor(
                [np.asarray(waveform, dtype=np.float32) for waveform in waveforms],
                sampling_rate=self.processor.sampling_rate,
                return_tensors="pt",
            )
        input_values = features["input_values"].to(device=self.model.device, dtype=self.model.dtype)
        encoded = self.model.encode(input_values, padding_mask=features["padding_mask"])
        mask = encoded.audio_codes_mask
        codes = encoded.audio_codes[:, 0].cpu()
        lengths = [codes.shape[-1]] * len(codes) if mask is None else mask[:, 0].sum(-1).tolist()
        return [self.codes_to_span(row[:length]) for row, length in zip(codes, lengths, strict=True)]

    @torch.no_grad()
    def decode(self, code_list: list[torch.LongTensor]) -> list[torch.Tensor]:
        device = self.model.device
        return [self.model.decode(codes.view(1, 1, -1).to(device)).audio_values[0].cpu() for codes in code_list]

    def postprocess(self, output: torch.Tensor) -> np.ndarray:
        return output.float().numpy()


MODALITY_CLASSES: dict[str, type[Modality]] = {"image": ImageModality, "speech": SpeechModality}


def modality_class_for(model: PreTrainedModel) -> type[Modality]:
    """The modality a SimVQ tokenizer provides, from its class."""
    for modality_class in MODALITY_CLASSES.values():
        if isinstance(model, modality_class.model_class):
            return modality_class
    raise ValueError(f"Expected a SimVQModel or SimVQAudioModel tokenizer, got {type(model).__name__}.")


class SimVQMultimodalVocabulary:
    """A text tokenizer and any set of SimVQ tokenizers (image, multi-scale image, speech) sharing one id space.

    Build it with [`~SimVQMultimodalVocabulary.from_tokenizers`], which adds every modality's special tokens to the
    text tokenizer; resize the language model with [`extend_language_model`]; constrain generation with
    [`SpanLogitsProcessor`]. `save_pretrained` writes the text tokenizer, every SimVQ tokenizer with its image
    processor or feature extractor (in `<name>_tokenizer/`) and the layout to one folder; `from_pretrained` checks
    they still agree.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, modalities: dict[str, Modality]):
        self.tokenizer = tokenizer
        self.modalities = modalities
        text_vocab_size = {modality.layout.text_vocab_size for modality in modalities.values()}
        if len(text_vocab_size) != 1 or len(tokenizer) not in text_vocab_size:
            raise ValueError(
                f"The text tokenizer has {len(tokenizer)} tokens but the code ids were laid out after "
                f"{sorted(text_vocab_size)}: tokens were added after the vocabulary was built, so code ids would "
                "collide with text ids. Add text tokens before building the vocabulary."
            )
        ranges = sorted((m.layout.code_offset, m.layout.code_end, m.name) for m in modalities.values())
        for (_, end, first), (start, _, second) in itertools.pairwise(ranges):
            if start < end:
                raise ValueError(f"The code ids of {first!r} and {second!r} overlap: rebuild with from_tokenizers.")

    @classmethod
    def from_tokenizers(
        cls,
        tokenizer: PreTrainedTokenizerBase,
        tokenizers: dict[str, PreTrainedModel],
        processors: dict[str, FeatureExtractionMixin] | None = None,
        end_of_row: bool = True,
    ) -> "SimVQMultimodalVocabulary":
        """Add `<|name_start|>`/`<|name_end|>` (images also `<|name_row_end|>`) for every entry of `tokenizers`
        (SimVQ image or speech models, by name) to `tokenizer` in place, and give each a block of code ids after it.

        `processors` overrides a modality's image processor or feature extractor (default: built from its config).
        `end_of_row=False` drops Emu3's end-of-row marker from image spans.
        """
        if not tokenizers:
            raise ValueError(
                "Pass at least one SimVQ tokenizer, e.g. {'image': model}; a text-only LM needs none of this."
            )
        processors = processors or {}
        classes = {name: modality_class_for(model) for name, model in tokenizers.items()}
        drafts = {name: classes[name].make_layout(name, model, end_of_row) for name, model in tokenizers.items()}
        specials = [token for layout in drafts.values() for token in layout.special_tokens if token is not None]
        tokenizer.add_special_tokens({"extra_special_tokens": specials}, replace_extra_special_tokens=False)
        modalities, offset = {}, len(tokenizer)  # code blocks one after another, after the text and its new specials
        for name, model in tokenizers.items():
            first = offset == len(tokenizer)
            layout = replace(drafts[name], text_vocab_size=len(tokenizer), token_offset=None if first else offset)
            processor = processors.get(name) or classes[name].default_processor(model)
            modalities[name] = classes[name](name, layout, model, processor, tokenizer)
            offset = layout.code_end
        return cls(tokenizer, modalities)

    @property
    def total_vocab_size(self) -> int:
        """The size the language model's embedding table and output head need."""
        return max(modality.layout.code_end for modality in self.modalities.values())

    @property
    def text_vocab_size(self) -> int:
        return len(self.tokenizer)

    def modality_of(self, name: str | None) -> Modality:
        if name is None and len(self.modalities) == 1:
            return next(iter(self.modalities.values()))
        if name not in self.modalities:
            raise ValueError(
                f"Unknown modality {name!r}: this vocabulary has {list(self.modalities)}; pass (name, data) pairs."
            )
        return self.modalities[name]

    # ids ↔ spans -----------------------------------------------------------------------------------------------

    def find_spans(self, input_ids: torch.LongTensor) -> list[tuple[str, int, int]]:
        """`(modality name, start, end)` (end exclusive) of every span in a 1-D sequence, in order, validated."""
        if input_ids.ndim != 1:
            raise ValueError(f"Expected one sequence of ids (1-D), got shape {tuple(input_ids.shape)}.")
        begins = {modality.begin_id: modality for modality in self.modalities.values()}
        ends = {modality.end_id: modality for modality in self.modalities.values()}
        spans, cursor = [], 0
        for position, token in enumerate(input_ids.tolist()):
            if position < cursor:
                continue
            if token in begins:
                modality = begins[token]
                end = modality.span_end(input_ids, position)
                modality.span_to_codes(input_ids[position:end])
                spans.append((modality.name, position, end))
                cursor = end
            elif token in ends:
                raise ValueError(
                    f"End-of-{ends[token].kind} token at position {position} closes no {ends[token].kind} span."
                )
        return spans

    def decode_spans(self, input_ids: torch.LongTensor) -> list[tuple[str, torch.Tensor]]:
        """Every span of a 1-D sequence → `(modality name, decoded output)`, in order (batched per modality)."""
        spans = self.find_spans(input_ids)
        outputs: dict[int, torch.Tensor] = {}
        for name, modality in self.modalities.items():
            indices = [index for index, span in enumerate(spans) if span[0] == name]
            if indices:
                codes = [modality.span_to_codes(input_ids[spans[i][1] : spans[i][2]]) for i in indices]
                outputs.update(zip(indices, modality.decode(codes), strict=True))
        return [(spans[index][0], outputs[index]) for index in range(len(spans))]

    def encode_interleaved(self, segments: list) -> torch.LongTensor:
        """Text strings and `(modality name, data)` pairs in any order → one 1-D id sequence (text without the
        tokenizer's specials). With a single modality, bare data works too. Batched data contributes its first item."""
        pieces = []
        for segment in segments:
            if isinstance(segment, str):
                pieces.append(self.tokenizer(segment, add_special_tokens=False, return_tensors="pt").input_ids[0])
            else:
                name, data = segment if isinstance(segment, tuple) else (None, segment)
                pieces.append(self.modality_of(name).encode(data)[0])
        return torch.cat(pieces)

    def decode_interleaved(self, input_ids: torch.LongTensor) -> list:
        """A 1-D sequence → its text pieces (`str`) and `(modality name, item)` pairs (PIL image, NumPy waveform)."""
        pieces, cursor = [], 0
        spans = self.find_spans(input_ids)
        decoded = iter(self.decode_spans(input_ids)) if spans else iter(())
        for name, start, end in [*spans, (None, len(input_ids), len(input_ids))]:
            if start > cursor:
                pieces.append(self.tokenizer.decode(input_ids[cursor:start], skip_special_tokens=True))
            if name is not None:
                pieces.append((name, self.modalities[name].postprocess(next(decoded)[1])))
            cursor = end
        return pieces

    # persistence -----------------------------------------------------------------------------------------------

    def save_pretrained(self, save_directory: str | Path) -> None:
        """Text tokenizer, every SimVQ tokenizer with its pre-processor (in `<name>_tokenizer/`) and the layouts.

        The tokenizers are copied in, not referenced by path: code ids mean something only with exactly those
        codebooks, and a folder that holds them moves and uploads as one.
        """
        save_directory = Path(save_directory)
        self.tokenizer.save_pretrained(save_directory)
        entries = []
        for name, modality in self.modalities.items():
            modality.model.save_pretrained(save_directory / modality.tokenizer_folder)
            modality.processor.save_pretrained(save_directory / modality.tokenizer_folder)
            entries.append({"name": name, "kind": modality.kind, "layout": asdict(modality.layout)})
        (save_directory / VOCABULARY_FILE).write_text(json.dumps({"modalities": entries}, indent=2) + "\n")

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> "SimVQMultimodalVocabulary":
        directory = Path(directory)
        tokenizer = AutoTokenizer.from_pretrained(directory)
        return cls._from_modalities(tokenizer, load_modalities(directory, tokenizer))

    @classmethod
    def _from_modalities(cls, tokenizer: PreTrainedTokenizerBase, modalities: dict[str, Modality]):
        return cls(tokenizer, modalities)


def load_modalities(directory: Path, tokenizer: PreTrainedTokenizerBase) -> dict[str, Modality]:
    """The modalities a folder records: the multimodal layout file, or an image-only folder saved before it."""
    if (directory / VOCABULARY_FILE).is_file():
        entries = json.loads((directory / VOCABULARY_FILE).read_text())["modalities"]
    elif (directory / LEGACY_IMAGE_VOCABULARY_FILE).is_file():
        layout = json.loads((directory / LEGACY_IMAGE_VOCABULARY_FILE).read_text())
        entries = [{"name": "image", "kind": "image", "layout": layout}]
    else:
        raise FileNotFoundError(f"No {VOCABULARY_FILE} in {directory}: save the vocabulary with save_pretrained first.")
    modalities = {}
    for entry in entries:
        modality_class = MODALITY_CLASSES[entry["kind"]]
        folder = directory / tokenizer_folder(entry["name"])
        modalities[entry["name"]] = modality_class(
            entry["name"],
            modality_class.layout_class(**entry["layout"]),
            modality_class.model_class.from_pretrained(folder).eval(),
            modality_class.processor_class.from_pretrained(folder),
            tokenizer,
        )
    return modalities


def tokenizer_folder(name: str) -> str:
    return f"{name}_tokenizer"


def _special_id(tokenizer: PreTrainedTokenizerBase, token: str) -> int:
    token_id = tokenizer.convert_tokens_to_ids(token)
    if token_id is None or token_id == tokenizer.unk_token_id:
        raise ValueError(f"The text tokenizer does not know the special token {token!r}.")
    return token_id


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _multiscale_scales(config) -> tuple[int, ...] | None:
    return tuple(config.scales) if config.quantizer_type == "multiscale_simvq" else None


def _describe_tokens(codebook_size: int, latent_size: int, scales: tuple[int, ...] | None) -> str:
    if scales is None:
        return f"{codebook_size} codes, {latent_size}×{latent_size} tokens"
    return f"{codebook_size} codes, {sum(side * side for side in scales)} tokens at scales {scales}"


__all__ = [
    "ImageModality",
    "ImageTokenLayout",
    "Modality",
    "SimVQMultimodalVocabulary",
    "SpanLayout",
    "SpeechModality",
    "SpeechTokenLayout",
]
