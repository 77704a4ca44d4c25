"""Text, image, multi-scale image and speech spans in one LM vocabulary: round trips, persistence, AutoProcessor,
constrained generation."""

import numpy as np
import pytest
import torch
from conftest import tiny_audio_config, tiny_config, word_level_tokenizer
from transformers import AutoProcessor, LlamaConfig, LlamaForCausalLM

from hf_simvq import SimVQAudioModel, SimVQModel, SimVQMultimodalProcessor
from hf_simvq.lm.language_model import SpanLogitsProcessor, extend_language_model
from hf_simvq.lm.multimodal_vocabulary import SimVQMultimodalVocabulary

TEXTS = ["a cat on a sofa", "it says hello", "then a rocket"]


def build_vocabulary() -> SimVQMultimodalVocabulary:
    torch.manual_seed(0)
    tokenizers = {
        "image": SimVQModel(tiny_config(codebook_size=256)).eval(),
        "multiscale": SimVQModel(tiny_config(codebook_size=128, quantizer_type="multiscale_simvq")).eval(),
        "speech": SimVQAudioModel(tiny_audio_config(codebook_size=64)).eval(),
    }
    return SimVQMultimodalVocabulary.from_tokenizers(word_level_tokenizer(TEXTS), tokenizers)


def chirp(samples: int, start_hz: float, rate: int = 24000) -> np.ndarray:
    """A synthetic test signal (a rising tone), not speech."""
    t = np.arange(samples) / rate
    return (0.5 * np.sin(2 * np.pi * (start_hz + 2000 * t) * t)).astype(np.float32)


@pytest.fixture(scope="module")
def vocabulary() -> SimVQMultimodalVocabulary:
    return build_vocabulary()


def test_id_ranges_are_disjoint_and_follow_the_text(vocabulary):
    text_ids = set(vocabulary.tokenizer.get_vocab().values())
    ranges = [range(m.layout.code_offset, m.layout.code_end) for m in vocabulary.modalities.values()]
    assert ranges[0].start == len(vocabulary.tokenizer) == max(text_ids) + 1
    assert [r.stop for r in ranges[:-1]] == [r.start for r in ranges[1:]]  # back to back, no gap, no overlap
    assert vocabulary.total_vocab_size == len(vocabulary.tokenizer) + 256 + 128 + 64
    specials = {vocabulary.tokenizer.convert_tokens_to_ids(t) for t in ["<|speech_start|>", "<|multiscale_end|>"]}
    assert specials <= text_ids


def test_text_image_multiscale_and_speech_interleave_and_round_trip(vocabulary, images):
    waveform = chirp(203, 300.0)  # 203 samples → ceil(203 / 8) = 26 frames
    sequence = vocabulary.encode_interleaved(
        [
            "a cat on a sofa",
            ("image", images[:1]),
            "then a rocket",
            ("multiscale", images[1:]),
            "it says",
            ("speech", waveform),
            "hello",
        ]  # fmt: skip
    )
    spans = vocabulary.find_spans(sequence)
    assert [name for name, _, _ in spans] == ["image", "multiscale", "speech"]
    image, multiscale, speech = (vocabulary.modalities[name] for name in ("image", "multiscale", "speech"))
    with torch.no_grad():
        image_tokens = image.model.encode(images[:1]).image_tokens[0]
        multiscale_tokens = multiscale.model.encode(images[1:]).image_tokens[0]
        padded = torch.from_numpy(np.pad(waveform, (0, 5)))[None, None]
        speech_codes = speech.model.encode(padded).audio_codes[0, 0]
    assert speech_codes.shape == (26,) and spans[2][2] - spans[2][1] == 26 + 2
    for (name, start, end), expected in zip(spans, [image_tokens, multiscale_tokens, speech_codes], strict=True):
        span = sequence[start:end]
        assert torch.equal(vocabulary.modalities[name].span_to_codes(span), expected)
        body = span[1:-1][span[1:-1] != (vocabulary.modalities[name].end_of_row_id or -1)]
        layout = vocabulary.modalities[name].layout
        assert ((body >= layout.code_offset) & (body < layout.code_end)).all()

    decoded = vocabulary.decode_spans(sequence)
    with torch.no_grad():
        assert torch.equal(decoded[0][1], image.model.decode_tokens(image_tokens[None])[0])
        assert torch.equal(decoded[1][1], multiscale.model.decode_tokens(multiscale_tokens[None])[0])
        assert torch.equal(decoded[2][1], speech.model.decode(speech_codes.view(1, 1, -1)).audio_values[0])
    pieces = vocabulary.decode_interleaved(sequence)
    assert [p if isinstance(p, str) else p[0] for p in pieces] == [
        "a cat on a sofa", "image", "then a rocket", "multiscale", "it says", "speech", "hello"]  # fmt: skip
    assert pieces[1][1].size == (32, 32) and pieces[5][1].shape == (26 * 8,)


def test_a_padded_speech_batch_gives_each_utterance_its_own_length(vocabulary):
    speech = vocabulary.modalities["speech"]
    short, long = chirp(80, 500.0), chirp(200, 200.0)
    spans = speech.encode([short, long])
    assert [len(span) for span in spans] == [10 + 2, 25 + 2]
    alone = speech.encode(short)[0]
    assert torch.equal(spans[0], alone)  # causal encoder: the padding after it changes none of its codes


def test_malformed_speech_spans_are_refused(vocabulary, images):
    speech, image = vocabulary.modalities["speech"], vocabulary.modalities["image"]
    span = speech.encode(chirp(64, 400.0))[0]
    with pytest.raises(ValueError, match="has no <\\|speech_end\\|>"):
        vocabulary.find_spans(span[:-1])
    foreign = torch.cat([span[:3], torch.tensor([image.layout.code_offset]), span[4:]])
    with pytest.raises(ValueError, match="is not a speech code"):
        vocabulary.find_spans(foreign)
    with pytest.raises(ValueError, match="at least one code"):
        vocabulary.find_spans(torch.tensor([speech.begin_id, speech.end_id]))
    with pytest.raises(ValueError, match="closes no speech span"):
        vocabulary.find_spans(torch.tensor([5, speech.end_id]))
    with pytest.raises(ValueError, match="pass \\(name, data\\) pairs"):
        vocabulary.encode_interleaved([images[:1]])  # three modalities: which one is meant must be said


def test_save_reload_and_auto_processor_restore_everything(vocabulary, images, tmp_path):
    processor = SimVQMultimodalProcessor.from_vocabulary(vocabulary)
    segments = ["a cat on a sofa", ("image", images[:1]), ("multiscale", images[1:]), ("speech", chirp(150, 250.0))]
    expected = processor(segments).input_ids
    processor.save_pretrained(tmp_path)
    LlamaForCausalLM(tiny_llama_config(vocabulary)).save_pretrained(tmp_path)  # the LM's own config.json beside it

    reloaded = AutoProcessor.from_pretrained(tmp_path)
    assert type(reloaded) is SimVQMultimodalProcessor
    assert torch.equal(reloaded(segments).input_ids, expected)
    assert reloaded.tokenizer.get_vocab() == vocabulary.tokenizer.get_vocab()
    for name, modality in vocabulary.modalities.items():
        again = reloaded.vocabulary.modalities[name]
        assert again.layout == modality.layout and type(again.model) is type(modality.model)
        assert again.processor.to_dict() == modality.processor.to_dict()
        for key, value in modality.model.state_dict().items():
            assert torch.equal(again.model.state_dict()[key], value), key
    assert set(reloaded.image_processors) == {"image", "multiscale"}
    assert list(reloaded.feature_extractors) == ["speech"] and reloaded.feature_extractors["speech"].hop_length == 8
    np.testing.assert_array_equal(reloaded.decode(expected[0])[-1][1], processor.decode(expected[0])[-1][1])


def test_text_added_after_the_layout_is_caught_for_every_modality(vocabulary, tmp_path):
    vocabulary.save_pretrained(tmp_path)
    tokenizer = vocabulary.tokenizer.__class__.from_pretrained(tmp_path)
    tokenizer.add_tokens(["zebra"])
    tokenizer.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="collide"):
        SimVQMultimodalVocabulary.from_pretrained(tmp_path)


def tiny_llama_config(vocabulary: SimVQMultimodalVocabulary) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=len(vocabulary.tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=False,
    )


def language_model(vocabulary: SimVQMultimodalVocabulary, favour: list[int]) -> LlamaForCausalLM:
    """An extended tiny Llama whose unconstrained choice is always one of `favour`: the processor must override."""
    torch.manual_seed(0)
    model = extend_language_model(LlamaForCausalLM(tiny_llama_config(vocabulary)), vocabulary).eval()
    with torch.no_grad():
        head = model.get_output_embeddings()
        head.weight.zero_()
        head.bias = torch.nn.Parameter(torch.zeros(head.out_features))
        head.bias[favour] = 50.0  # every other id scores 0: greedy ties go to the lowest allowed id
    return model


def test_extend_language_model_seeds_every_modality_from_its_codebook(vocabulary):
    model = extend_language_model(LlamaForCausalLM(tiny_llama_config(vocabulary)), vocabulary)
    embeddings = model.get_input_embeddings().weight.detach().double()
    assert embeddings.shape[0] == vocabulary.total_vocab_size
    for modality in vocabulary.modalities.values():
        rows = embeddings[modality.layout.code_offset : modality.layout.code_end]
        codebook = modality.model.get_codebook().detach().double()
        centred = codebook - codebook.mean(0)
        solution = torch.linalg.lstsq(centred, rows).solution
        torch.testing.assert_close(centred @ solution, rows, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("wants", ["to_end_at_once", "never_to_end", "text"])
def test_generation_inside_a_speech_span_respects_its_bounds_and_ends_with_end_of_speech(vocabulary, wants):
    speech = vocabulary.modalities["speech"]
    favour = {
        "to_end_at_once": [speech.end_id],
        "never_to_end": [speech.layout.code_offset + 3, vocabulary.modalities["image"].layout.code_offset],
        "text": [vocabulary.tokenizer.convert_tokens_to_ids("hello")],
    }[wants]
    model = language_model(vocabulary, favour)
    prompt = vocabulary.tokenizer("it says", add_special_tokens=False, return_tensors="pt").input_ids
    prompt = torch.cat([prompt, torch.tensor([[speech.begin_id]])], dim=1).repeat(2, 1)
    processor = SpanLogitsProcessor(vocabulary, min_span_lengths={"speech": 3}, max_span_lengths={"speech": 7})
    generated = model.generate(
        prompt, attention_mask=torch.ones_like(prompt), logits_processor=[processor], max_new_tokens=12,
        do_sample=False, pad_token_id=vocabulary.tokenizer.pad_token_id,
        suppress_tokens=[m.begin_id for m in vocabulary.modalities.values()],  # no second span: the tail is text
    )  # fmt: skip
    for sequence in generated:
        (name, start, end), *others = vocabulary.find_spans(sequence)
        assert name == "speech" and start == prompt.shape[1] - 1 and not others
        body = sequence[start + 1 : end - 1]
        assert sequence[end - 1] == speech.end_id
        assert len(body) == {"to_end_at_once": 3, "never_to_end": 7, "text": 3}[wants]  # min 3, max 7
        assert ((body >= speech.layout.code_offset) & (body < speech.layout.code_end)).all()
        tail = sequence[end:]
        assert (tail < vocabulary.text_vocab_size).all() and not torch.isin(tail, torch.tensor([speech.end_id])).any()
        assert vocabulary.decode_spans(sequence)[0][1].shape == (len(body) * 8,)


def test_the_processor_follows_whichever_span_is_open(vocabulary):
    image, multiscale, speech = (vocabulary.modalities[name] for name in ("image", "multiscale", "speech"))
    processor = SpanLogitsProcessor(vocabulary, max_span_lengths={"speech": 4})
    scores = torch.zeros(5, vocabulary.total_vocab_size)
    text = vocabulary.tokenizer.convert_tokens_to_ids("cat")
    image_codes = image.layout.code_offset + 1
    histories = [
        [text] * 5,  # outside: text and begin tokens only
        [text] * 3 + [image.begin_id, image_codes],  # inside an image row
        [text] * 3 + [multiscale.begin_id, multiscale.layout.code_offset],  # 1×1 scale written: its row ends now
        [text] * 3 + [speech.begin_id, speech.layout.code_offset],  # one speech code: more codes or end-of-speech
        [speech.begin_id, *[speech.layout.code_offset] * 4],  # four speech codes = the bound: end only
    ]
    allowed = torch.isfinite(processor(torch.tensor(histories), scores))
    ids = torch.arange(vocabulary.total_vocab_size)
    code_ids = {m.name: (ids >= m.layout.code_offset) & (ids < m.layout.code_end) for m in (image, multiscale, speech)}
    closers = [m.end_id for m in (image, multiscale, speech)] + [image.end_of_row_id, multiscale.end_of_row_id]
    assert torch.equal(allowed[0], (ids < vocabulary.text_vocab_size) & ~torch.isin(ids, torch.tensor(closers)))
    assert torch.equal(allowed[1], code_ids["image"])
    assert allowed[2].nonzero().flatten().tolist() == [multiscale.end_of_row_id]
    assert torch.equal(allowed[3], code_ids["speech"] | (ids == speech.end_id))
    assert allowed[4].nonzero().flatten().tolist() == [speech.end_id]
    with pytest.raises(ValueError, match="1 ≤ min ≤ max"):
        SpanLogitsProcessor(vocabulary, min_span_lengths={"speech": 5}, max_span_lengths={"speech": 4})
    with pytest.raises(ValueError, match="Unknown modality"):
        SpanLogitsProcessor(vocabulary, max_span_lengths={"audio": 4})


def test_building_without_a_simvq_tokenizer_is_refused():
    with pytest.raises(ValueError, match="at least one SimVQ tokenizer"):
        SimVQMultimodalVocabulary.from_tokenizers(word_level_tokenizer(TEXTS), {})
    llama = LlamaForCausalLM(tiny_llama_config(build_vocabulary()))
    with pytest.raises(ValueError, match="Expected a SimVQModel or SimVQAudioModel tokenizer, got LlamaForCausalLM"):
        SimVQMultimodalVocabulary.from_tokenizers(word_level_tokenizer(TEXTS), {"image": llama})


@pytest.mark.parametrize("name", ["image", "multiscale"])
def test_generation_inside_an_image_span_keeps_its_fixed_layout_beside_other_modalities(vocabulary, name):
    modality, speech = vocabulary.modalities[name], vocabulary.modalities["speech"]
    model = language_model(vocabulary, [speech.layout.code_offset, speech.end_id, modality.end_id])  # all wrong here
    prompt = torch.tensor([[vocabulary.tokenizer.bos_token_id, modality.begin_id]])
    generated = model.generate(
        prompt, attention_mask=torch.ones_like(prompt), logits_processor=[SpanLogitsProcessor(vocabulary)],
        max_new_tokens=modality.layout.span_body_length + 1, do_sample=False,
        pad_token_id=vocabulary.tokenizer.pad_token_id, eos_token_id=modality.end_id,
    )[0]  # fmt: skip
    assert vocabulary.find_spans(generated) == [(name, 1, 1 + modality.layout.span_length)]
    tokens = modality.span_to_codes(generated[1:])
    assert (
        vocabulary.decode_spans(generated)[0][1].shape == (3, 32, 32)
        and tokens.shape == modality.layout.token_map_shape
    )
