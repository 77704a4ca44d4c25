import json

import pytest
import torch
from conftest import tiny_config, word_level_tokenizer
from transformers import LlamaConfig, LlamaForCausalLM

from hf_simvq import SimVQModel
from hf_simvq.lm.image_vocabulary import SimVQImageVocabulary
from hf_simvq.lm.language_model import ImageSpanLogitsProcessor, extend_language_model

CAPTIONS = ["a photo of an astronaut", "a cat on a sofa", "coffee in a cup", "a rocket at night"]


def build_vocabulary(
    codebook_size: int = 256, end_of_row: bool = True, quantizer_type: str = "simvq"
) -> SimVQImageVocabulary:
    torch.manual_seed(0)
    image_tokenizer = SimVQModel(tiny_config(codebook_size=codebook_size, quantizer_type=quantizer_type)).eval()
    return SimVQImageVocabulary.from_tokenizers(
        word_level_tokenizer(CAPTIONS), image_tokenizer, end_of_row_token="<|image_row_end|>" if end_of_row else None
    )


@pytest.mark.parametrize("end_of_row", [True, False])
def test_image_to_ids_to_image_equals_encode_decode_at_262k_codes(images, end_of_row):
    vocabulary = build_vocabulary(codebook_size=262144, end_of_row=end_of_row)
    input_ids = vocabulary.images_to_input_ids(images)
    layout = vocabulary.layout
    assert input_ids.shape == (2, layout.span_length)
    assert layout.span_length == 8 * 8 + 2 + (8 if end_of_row else 0)
    model = vocabulary.image_tokenizer
    with torch.no_grad():
        tokens = model.encode(images).image_tokens
        for index, sequence in enumerate(input_ids):
            assert torch.equal(vocabulary.span_to_token_map(sequence), tokens[index])
            decoded = vocabulary.input_ids_to_images(sequence)
            assert len(decoded) == 1
            assert torch.equal(decoded[0], model.decode_tokens(tokens[index : index + 1])[0])


@pytest.mark.parametrize("end_of_row", [True, False])
def test_multiscale_tokens_round_trip_scale_by_scale(images, end_of_row):
    """A VAR tokenizer's image is its token maps coarse to fine (1², 2², …, 8²), each row closed by end-of-row."""
    vocabulary = build_vocabulary(end_of_row=end_of_row, quantizer_type="multiscale_simvq")
    layout, model = vocabulary.layout, vocabulary.image_tokenizer
    assert layout.scales == (1, 2, 3, 4, 5, 6, 8)
    assert layout.span_length == 2 + sum(side * (side + end_of_row) for side in layout.scales)
    input_ids = vocabulary.images_to_input_ids(images)
    with torch.no_grad():
        tokens = model.encode(images).image_tokens  # (B, 155)
        scale_maps = model.img_to_idxBl(images)
    body = input_ids[0, 1:-1]
    if end_of_row:  # written row by row: the 1×1 map, its end-of-row, then the 2×2 map's first row, ...
        assert body[:5].tolist() == [
            int(scale_maps[0][0, 0]) + layout.image_token_offset,
            vocabulary.end_of_row_id,
            *(scale_maps[1][0, :2] + layout.image_token_offset).tolist(),
            vocabulary.end_of_row_id,
        ]
    for index, sequence in enumerate(input_ids):
        assert torch.equal(vocabulary.span_to_token_map(sequence), tokens[index])
        with torch.no_grad():
            expected = model.decode_tokens(tokens[index : index + 1])[0]
        assert torch.equal(vocabulary.input_ids_to_images(sequence)[0], expected)
    if end_of_row:  # the 1×1 map's end-of-row swapped with the next code
        malformed, message = input_ids[0, [0, 2, 1, *range(3, layout.span_length)]], "row must end with"
    else:  # a text id where the 1×1 map's code goes
        malformed, message = torch.cat([input_ids[0, :1], torch.tensor([3]), input_ids[0, 2:]]), "not an image code"
    with pytest.raises(ValueError, match=message):
        vocabulary.span_to_token_map(malformed)
    with pytest.raises(ValueError, match=r"\(batch, 155\)"):
        vocabulary.token_maps_to_input_ids(tokens.view(2, 5, 31))


def test_image_ids_never_collide_with_text_ids(images):
    vocabulary = build_vocabulary()
    text_ids = set(vocabulary.tokenizer.get_vocab().values())
    layout = vocabulary.layout
    image_ids = set(range(layout.image_token_offset, layout.total_vocab_size))
    assert not text_ids & image_ids
    assert max(text_ids) == layout.image_token_offset - 1  # specials included in the text part, no gap
    span = vocabulary.images_to_input_ids(images)[0]
    body = span[1:-1][span[1:-1] != vocabulary.end_of_row_id]
    assert set(body.tolist()) <= image_ids
    assert {vocabulary.begin_image_id, vocabulary.end_image_id, vocabulary.end_of_row_id} <= text_ids


def test_adding_text_tokens_after_the_layout_is_caught(tmp_path):
    vocabulary = build_vocabulary()
    vocabulary.save_pretrained(tmp_path)
    vocabulary.tokenizer.add_tokens(["zebra"])
    vocabulary.tokenizer.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="collide"):
        SimVQImageVocabulary.from_pretrained(tmp_path)


def test_text_and_images_mixed_in_one_sequence(images):
    vocabulary = build_vocabulary()
    pil_images = vocabulary.image_processor.postprocess(images)
    sequence = vocabulary.encode_interleaved(["a cat on a sofa", pil_images[0], "coffee in a cup", images[1:]])
    spans = vocabulary.find_image_spans(sequence)
    assert len(spans) == 2
    pieces = vocabulary.decode_interleaved(sequence)
    assert [type(piece).__name__ for piece in pieces] == ["str", "Image", "str", "Image"]
    assert pieces[0] == "a cat on a sofa" and pieces[2] == "coffee in a cup"
    assert pieces[1].size == (32, 32)


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (lambda span: span[:-1], "missing its end-of-image"),  # cut short
        (lambda span: torch.cat([span[:-2], span[-1:]]), "missing its end-of-image"),  # one code dropped
        (lambda span: torch.cat([span[:5], torch.tensor([3]), span[6:]]), "not an image code"),  # a text id inside
        (lambda span: torch.cat([span[:9], span[10:11], span[10:]]), "end with"),  # row marker displaced
    ],
)
def test_malformed_spans_give_clear_errors(images, corrupt, message):
    vocabulary = build_vocabulary()
    span = vocabulary.images_to_input_ids(images[:1])[0]
    with pytest.raises(ValueError, match=message):
        vocabulary.input_ids_to_images(corrupt(span))


def test_out_of_range_code_and_stray_end_are_rejected(images):
    vocabulary = build_vocabulary()
    with pytest.raises(ValueError, match="outside the codebook"):
        vocabulary.token_maps_to_input_ids(torch.full((1, 8, 8), 256))
    with pytest.raises(ValueError, match="closes no image span"):
        vocabulary.input_ids_to_images(torch.tensor([4, vocabulary.end_image_id]))


@pytest.mark.parametrize("quantizer_type", ["simvq", "multiscale_simvq"])
def test_save_and_reload_with_the_tokenizer(images, tmp_path, quantizer_type):
    vocabulary = build_vocabulary(quantizer_type=quantizer_type)
    expected = vocabulary.images_to_input_ids(images)
    vocabulary.save_pretrained(tmp_path)
    reloaded = SimVQImageVocabulary.from_pretrained(tmp_path)
    assert reloaded.layout == vocabulary.layout
    assert reloaded.begin_image_id == vocabulary.begin_image_id
    assert torch.equal(reloaded.images_to_input_ids(images), expected)
    assert reloaded.tokenizer("a cat").input_ids == vocabulary.tokenizer("a cat").input_ids


def test_a_single_scale_tokenizer_does_not_read_a_multiscale_layout(tmp_path):
    build_vocabulary(quantizer_type="multiscale_simvq").save_pretrained(tmp_path)
    build_vocabulary().image_tokenizer.save_pretrained(tmp_path / "image_tokenizer")
    with pytest.raises(ValueError, match=r"8×8 tokens\) does not match the vocabulary \(256 codes, 155 tokens at sc"):
        SimVQImageVocabulary.from_pretrained(tmp_path)


def test_a_layout_saved_before_multiscale_support_still_loads(images, tmp_path):
    """Such a folder has `image_vocabulary.json` (the image layout alone, no `scales`), not the multimodal file."""
    vocabulary = build_vocabulary()
    vocabulary.save_pretrained(tmp_path)
    multimodal_file = tmp_path / "multimodal_vocabulary.json"
    fields = json.loads(multimodal_file.read_text())["modalities"][0]["layout"]
    multimodal_file.unlink()
    del fields["scales"], fields["token_offset"]
    (tmp_path / "image_vocabulary.json").write_text(json.dumps(fields))
    reloaded = SimVQImageVocabulary.from_pretrained(tmp_path)
    assert reloaded.layout == vocabulary.layout and reloaded.layout.scales is None
    assert torch.equal(reloaded.images_to_input_ids(images), vocabulary.images_to_input_ids(images))


def tiny_language_model(vocabulary: SimVQImageVocabulary) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=vocabulary.layout.text_vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=False,
    )
    return LlamaForCausalLM(config)


def test_extend_language_model_resizes_and_initialises_from_the_codebook():
    vocabulary = build_vocabulary()
    model = tiny_language_model(vocabulary)
    text_rows = model.get_input_embeddings().weight.detach().clone()
    extend_language_model(model, vocabulary)
    layout = vocabulary.layout
    embeddings = model.get_input_embeddings().weight.detach()
    assert embeddings.shape[0] == model.get_output_embeddings().weight.shape[0] == layout.total_vocab_size
    assert torch.equal(embeddings[: layout.text_vocab_size], text_rows)
    image_rows = embeddings[layout.image_token_offset :].double()
    torch.testing.assert_close(image_rows.std(), text_rows.double().std(), rtol=1e-3, atol=0)
    torch.testing.assert_close(model.get_output_embeddings().weight[layout.image_token_offset :].double(), image_rows)
    # a fixed linear map of the centred codebook: distances between codes are preserved up to that map
    codebook = vocabulary.image_tokenizer.get_codebook().detach().double()
    solution = torch.linalg.lstsq(codebook - codebook.mean(0), image_rows).solution
    torch.testing.assert_close((codebook - codebook.mean(0)) @ solution, image_rows, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    ("end_of_row", "quantizer_type"), [(True, "simvq"), (False, "simvq"), (True, "multiscale_simvq")]
)
def test_generate_with_the_logits_processor_writes_only_decodable_images(end_of_row, quantizer_type):
    vocabulary = build_vocabulary(end_of_row=end_of_row, quantizer_type=quantizer_type)
    model = extend_language_model(tiny_language_model(vocabulary), vocabulary).eval()
    with torch.no_grad():  # make the unconstrained model prefer text ids everywhere: the processor must override
        model.get_output_embeddings().weight[vocabulary.layout.image_token_offset :] *= 0
        model.get_output_embeddings().weight[vocabulary.end_image_id] *= 0
    prompt = vocabulary.tokenizer("a cat on a sofa", return_tensors="pt").input_ids
    prompt = torch.cat([prompt, torch.tensor([[vocabulary.begin_image_id]])], dim=1).repeat(3, 1)
    generated = model.generate(
        prompt,
        attention_mask=torch.ones_like(prompt),
        logits_processor=[ImageSpanLogitsProcessor(vocabulary)],
        max_new_tokens=vocabulary.layout.span_body_length + 6,
        do_sample=True,
        pad_token_id=vocabulary.tokenizer.pad_token_id,
        suppress_tokens=[vocabulary.begin_image_id],  # one image per sequence, so the tail is checked as text
    )
    for sequence in generated:
        spans = vocabulary.find_image_spans(sequence)
        assert spans and spans[0][0] == prompt.shape[1] - 1
        images = vocabulary.input_ids_to_images(sequence)
        assert images[0].shape == (3, 32, 32)
        after = sequence[spans[-1][1] :]
        layout = vocabulary.layout
        assert not ((after >= layout.image_token_offset) | (after == vocabulary.end_image_id)).any()


def test_logits_processor_needs_an_extended_model():
    vocabulary = build_vocabulary()
    processor = ImageSpanLogitsProcessor(vocabulary)
    with pytest.raises(ValueError, match="extend_language_model"):
        processor(torch.tensor([[1, 2]]), torch.zeros(1, vocabulary.layout.text_vocab_size))
