"""The README's multimodal-vocabulary snippet runs as written, with tiny tokenizers and a tiny Llama."""

import re
from pathlib import Path

import numpy as np
import PIL.Image
import torch
from conftest import tiny_audio_config, tiny_config, word_level_tokenizer
from transformers import LlamaConfig, LlamaForCausalLM

from hf_simvq import SimVQAudioModel, SimVQModel, SimVQMultimodalProcessor

README = Path(__file__).resolve().parents[1] / "README.md"


def test_multimodal_snippet_runs_and_round_trips(tmp_path, monkeypatch):
    snippet = re.search(
        r"## Image and speech tokens in a language model\n\n.*?```python\n(.*?)```", README.read_text(), re.S
    )
    snippet = snippet.group(1)
    assert len(snippet.strip().splitlines()) <= 20
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=32, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, tie_word_embeddings=False)  # fmt: skip
    llm = LlamaForCausalLM(config)
    text_tokenizer = word_level_tokenizer(["a cat says hello"])
    hello = text_tokenizer.convert_tokens_to_ids("hello")
    original_resize = llm.resize_token_embeddings

    def resize_then_favour_hello(*args, **kwargs):  # an LM that writes "hello": text after the prompt, no open span
        result = original_resize(*args, **kwargs)
        with torch.no_grad():
            llm.lm_head.weight.zero_()
            llm.lm_head.bias = torch.nn.Parameter(torch.zeros(llm.lm_head.out_features))
            llm.lm_head.bias[hello] = 10.0
        return result

    monkeypatch.setattr(llm, "resize_token_embeddings", resize_then_favour_hello)
    picture = PIL.Image.fromarray((np.random.default_rng(0).random((40, 48, 3)) * 255).astype(np.uint8))
    waveform = (np.sin(np.arange(203) / 5) * 0.3).astype(np.float32)  # a synthetic tone, 26 frames at hop 8
    namespace = {
        "text_tokenizer": text_tokenizer,
        "simvq_model": SimVQModel(tiny_config()).eval(),
        "multiscale_model": SimVQModel(tiny_config(quantizer_type="multiscale_simvq")).eval(),
        "speech_model": SimVQAudioModel(tiny_audio_config()).eval(),
        "llm": llm,
        "picture": picture,
        "waveform": waveform,
    }
    monkeypatch.chdir(tmp_path)
    exec(snippet, namespace)

    pieces = namespace["pieces"]
    assert pieces[0] == "a cat" and pieces[1][0] == "image" and pieces[1][1].size == (32, 32)
    assert pieces[2] == "says" and pieces[3][0] == "speech" and pieces[3][1].shape == (26 * 8,)
    assert pieces[4].split() == ["hello"] * 32
    reloaded = namespace["processor"]
    assert type(reloaded) is SimVQMultimodalProcessor and list(reloaded.vocabulary.modalities) == [
        "image",
        "var",
        "speech",
    ]
    assert torch.equal(
        reloaded(["a cat", ("image", picture), "says", ("speech", waveform)]).input_ids, namespace["ids"]
    )
    vocab_size = reloaded.vocabulary.total_vocab_size
    assert vocab_size == len(text_tokenizer) + 256 + 256 + 64 and len(text_tokenizer) == 8 + 8  # words + specials
    assert LlamaForCausalLM.from_pretrained("my-lm").get_input_embeddings().weight.shape[0] == vocab_size
