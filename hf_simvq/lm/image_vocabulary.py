"""SimVQ image codes inside a language model's vocabulary.

Layout (Chameleon/Emu3 style, one shared embedding table): the text tokenizer's ids come first, then three special
tokens the tokenizer learns as strings (begin-of-image, end-of-image and, optionally, Emu3's end-of-row), then
`codebook_size` ids reserved for the image codes, which have **no string form**. Registering 262,144 strings with
`tokenizer.add_tokens` makes `tokenizer.json` ~125× larger and slows every load by seconds
(`benchmarks/add_tokens.py` measures it), while nothing needs the strings: image ids only ever come from
`images_to_input_ids` and go back through `input_ids_to_images`.

An image becomes `[boi, c₀₀ … c₀,w₋₁, eol, c₁₀ …, eol, eoi]`: row-major codes, `eol` closing every row when enabled.
A multi-scale (VAR) tokenizer's image is its token maps coarse to fine, each written the same way, one after another.
"""

import json
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path

import PIL.Image
import torch
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from ..models.simvq.image_processing_simvq import SimVQImageProcessor
from ..models.simvq.modeling_simvq import SimVQModel

VOCABULARY_FILE = "image_vocabulary.json"
IMAGE_TOKENIZER_FOLDER = "image_tokenizer"


@dataclass(frozen=True)
class ImageTokenLayout:
    """Where the image ids sit and what an image span looks like; everything `save_pretrained` records."""

    text_vocab_size: int
    codebook_size: int
    token_map_height: int
    token_map_width: int
    begin_image_token: str
    end_image_token: str
    end_of_row_token: str | None
    scales: tuple[int, ...] | None = None  # a multi-scale tokenizer's token-map sides, coarse to fine

    def __post_init__(self):
        if self.scales is not None:  # a list when read back from JSON
            object.__setattr__(self, "scales", tuple(self.scales))

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
    def image_token_offset(self) -> int:
        """Id of image code 0: right after the text vocabulary (specials included)."""
        return self.text_vocab_size

    @property
    def total_vocab_size(self) -> int:
        """The size the language model's embedding table and output head need."""
        return self.text_vocab_size + self.codebook_size

    @property
    def span_body_length(self) -> int:
        """Tokens between begin- and end-of-image: the codes, plus one end-of-row per row when enabled."""
        rows = self.row_lengths
        return sum(rows) + len(rows) * (self.end_of_row_token is not None)

    @property
    def span_length(self) -> int:
        return self.span_body_length + 2


class SimVQImageVocabulary:
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
        self.tokenizer = tokenizer
        self.image_tokenizer = image_tokenizer
        self.image_processor = image_processor or SimVQImageProcessor.from_image_size(image_tokenizer.config.image_size)
        self.layout = layout
        self.begin_image_id = self._special_id(layout.begin_image_token)
        self.end_image_id = self._special_id(layout.end_image_token)
        self.end_of_row_id = None if layout.end_of_row_token is None else self._special_id(layout.end_of_row_token)
        self._check_consistent()

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
        layout = ImageTokenLayout(
            text_vocab_size=len(tokenizer),
            codebook_size=image_tokenizer.config.codebook_size,
            token_map_height=image_tokenizer.config.latent_size,
            token_map_width=image_tokenizer.config.latent_size,
            begin_image_token=begin_image_token,
            end_image_token=end_image_token,
            end_of_row_token=end_of_row_token,
            scales=_multiscale_scales(image_tokenizer.config),
        )
        return cls(tokenizer, image_tokenizer, layout, image_processor)

    def _special_id(self, token: str) -> int:
        token_id = self.tokenizer.convert_tokens_to_ids(token)
        if token_id is None or token_id == self.tokenizer.unk_token_id:
            raise ValueError(f"The text tokenizer does not know the image special token {token!r}.")
        return token_id

    def _check_consistent(self) -> None:
        """Catch a tokenizer, SimVQ model and layout that were not saved together."""
        layout, config = self.layout, self.image_tokenizer.config
        if len(self.tokenizer) != layout.text_vocab_size:
            raise ValueError(
                f"The text tokenizer has {len(self.tokenizer)} tokens but the image ids were laid out after "
                f"{layout.text_vocab_size}: tokens were added after the vocabulary was built, so image ids would "
                "collide with text ids. Add text tokens before building the vocabulary."
            )
        model_tokens = (config.codebook_size, config.latent_size, _multiscale_scales(config))
        if model_tokens != (layout.codebook_size, layout.token_map_height, layout.scales):
            raise ValueError(
                f"The SimVQ model ({_describe_tokens(*model_tokens)}) does not match the vocabulary "
                f"({_describe_tokens(layout.codebook_size, layout.token_map_height, layout.scales)})."
            )

    # ids ↔ token maps ------------------------------------------------------------------------------------------

    def token_maps_to_input_ids(self, image_tokens: torch.LongTensor) -> torch.LongTensor:
        """SimVQ tokens `(B, h, w)` (multi-scale: `(B, L)`) → `(B, span_length)` LM ids between begin/end-of-image."""
        expected = self.layout.token_map_shape
        if image_tokens.ndim != 1 + len(expected) or tuple(image_tokens.shape[1:]) != expected:
            raise ValueError(
                f"Expected the image tokenizer's tokens (batch, {', '.join(map(str, expected))}), got "
                f"{tuple(image_tokens.shape)}."
            )
        self.image_tokenizer.quantize.check_indices(image_tokens)
        codes = image_tokens.long().flatten(1) + self.layout.image_token_offset
        body = codes[:, self.layout.body_code_positions.clamp(min=0)]
        if self.end_of_row_id is not None:
            body[:, self.layout.body_is_end_of_row] = self.end_of_row_id
        return torch.cat(
            [
                body.new_full((len(body), 1), self.begin_image_id),
                body,
                body.new_full((len(body), 1), self.end_image_id),
            ],
            dim=1,
        )

    def span_to_token_map(self, span: torch.LongTensor) -> torch.LongTensor:
        """One span starting with begin-of-image → its tokens `(h, w)` (multi-scale: `(L,)`); malformed spans raise."""
        layout = self.layout
        if span.ndim != 1 or span.numel() != layout.span_length:
            raise ValueError(
                f"An image span must hold {layout.span_length} ids (begin, {layout.span_body_length} body, end), got "
                f"{span.numel()}: the image was cut short or is missing its end-of-image token."
            )
        if span[0] != self.begin_image_id or span[-1] != self.end_image_id:
            raise ValueError(
                f"An image span must start with {layout.begin_image_token} ({self.begin_image_id}) and end with "
                f"{layout.end_image_token} ({self.end_image_id}), got {int(span[0])} … {int(span[-1])}."
            )
        body = span[1:-1]
        if self.end_of_row_id is not None and not torch.all(body[layout.body_is_end_of_row] == self.end_of_row_id):
            raise ValueError(f"Every image row must end with {layout.end_of_row_token} ({self.end_of_row_id}).")
        codes = body[~layout.body_is_end_of_row] - layout.image_token_offset
        outside = (codes < 0) | (codes >= layout.codebook_size)
        if outside.any():
            raise ValueError(
                f"Id {int(codes[outside][0]) + layout.image_token_offset} inside an image span is not an image code "
                f"(image ids are {layout.image_token_offset} … {layout.total_vocab_size - 1})."
            )
        return codes.view(layout.token_map_shape)

    def find_image_spans(self, input_ids: torch.LongTensor) -> list[tuple[int, int]]:
        """`(start, end)` positions (end exclusive) of every image span in a 1-D sequence, validated."""
        if input_ids.ndim != 1:
            raise ValueError(f"Expected one sequence of ids (1-D), got shape {tuple(input_ids.shape)}.")
        starts = (input_ids == self.begin_image_id).nonzero().flatten().tolist()
        spans = [(start, start + self.layout.span_length) for start in starts]
        for start, end in spans:
            self.span_to_token_map(input_ids[start:end])
        stray_ends = set((input_ids == self.end_image_id).nonzero().flatten().tolist()) - {end - 1 for _, end in spans}
        if stray_ends:
            raise ValueError(f"End-of-image token at position {min(stray_ends)} closes no image span.")
        return spans

    # images ↔ ids ----------------------------------------------------------------------------------------------

    @torch.no_grad()
    def images_to_input_ids(self, images) -> torch.LongTensor:
        """PIL images (or a list of them), or `pixel_values` `(B, 3, H, W)` in [-1, 1] → `(B, span_length)` ids."""
        if isinstance(images, torch.Tensor):
            pixel_values = images
        else:
            pixel_values = self.image_processor(images, return_tensors="pt").pixel_values
        model = self.image_tokenizer
        pixel_values = pixel_values.to(device=model.device, dtype=model.dtype)
        return self.token_maps_to_input_ids(model.encode(pixel_values).image_tokens).cpu()

    @torch.no_grad()
    def input_ids_to_images(self, input_ids: torch.LongTensor) -> list[torch.FloatTensor]:
        """Every image span of a 1-D sequence → decoded `(3, H, W)` images in [-1, 1], in order."""
        spans = self.find_image_spans(input_ids)
        if not spans:
            return []
        token_maps = torch.stack([self.span_to_token_map(input_ids[start:end]) for start, end in spans])
        return list(self.image_tokenizer.decode_tokens(token_maps.to(self.image_tokenizer.device)).cpu())

    def encode_interleaved(self, segments: list) -> torch.LongTensor:
        """Text strings and images in any order → one 1-D id sequence (text without the tokenizer's specials)."""
        pieces = []
        for segment in segments:
            if isinstance(segment, str):
                ids = self.tokenizer(segment, add_special_tokens=False, return_tensors="pt").input_ids[0]
            else:
                ids = self.images_to_input_ids([segment] if isinstance(segment, PIL.Image.Image) else segment)[0]
            pieces.append(ids)
        return torch.cat(pieces)

    def decode_interleaved(self, input_ids: torch.LongTensor) -> list:
        """A 1-D sequence → its text pieces (`str`) and images (PIL), in order."""
        pieces, cursor = [], 0
        spans = self.find_image_spans(input_ids)
        images = (
            iter(self.image_processor.postprocess(torch.stack(self.input_ids_to_images(input_ids)))) if spans else ()
        )
        for start, end in [*spans, (len(input_ids), len(input_ids))]:
            if start > cursor:
                pieces.append(self.tokenizer.decode(input_ids[cursor:start], skip_special_tokens=True))
            if end > start:
                pieces.append(next(images))
            cursor = end
        return pieces

    # persistence -----------------------------------------------------------------------------------------------

    def save_pretrained(self, save_directory: str | Path) -> None:
        """Text tokenizer, SimVQ model (in `image_tokenizer/`) and the id layout, in one folder."""
        save_directory = Path(save_directory)
        self.tokenizer.save_pretrained(save_directory)
        self.image_tokenizer.save_pretrained(save_directory / IMAGE_TOKENIZER_FOLDER)
        self.image_processor.save_pretrained(save_directory / IMAGE_TOKENIZER_FOLDER)
        (save_directory / VOCABULARY_FILE).write_text(json.dumps(asdict(self.layout), indent=2) + "\n")

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> "SimVQImageVocabulary":
        directory = Path(directory)
        layout_file = directory / VOCABULARY_FILE
        if not layout_file.is_file():
            raise FileNotFoundError(f"No {VOCABULARY_FILE} in {directory}: save it with save_pretrained first.")
        layout = ImageTokenLayout(**json.loads(layout_file.read_text()))
        image_folder = directory / IMAGE_TOKENIZER_FOLDER
        return cls(
            AutoTokenizer.from_pretrained(directory),
            SimVQModel.from_pretrained(image_folder).eval(),
            layout,
            SimVQImageProcessor.from_pretrained(image_folder),
        )


def _multiscale_scales(config) -> tuple[int, ...] | None:
    return tuple(config.scales) if config.quantizer_type == "multiscale_simvq" else None


def _describe_tokens(codebook_size: int, latent_size: int, scales: tuple[int, ...] | None) -> str:
    if scales is None:
        return f"{codebook_size} codes, {latent_size}×{latent_size} tokens"
    return f"{codebook_size} codes, {sum(side * side for side in scales)} tokens at scales {scales}"


__all__ = ["ImageTokenLayout", "SimVQImageVocabulary"]
