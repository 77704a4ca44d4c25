"""Text-to-speech tokens with a SimVQ speech tokenizer in a causal LM's vocabulary, at toy scale.

    python training/train_speech_lm.py --audio_tokenizer outputs/cpu-speech --output_dir outputs/speech-lm-demo

The data are **synthetic**, made here offline: "tone words" (`do`, `re`, `mi`, … each a sine of its own pitch,
`--frames_per_word` codes long) strung into 1–3-word utterances whose text is the words. They stand in for speech
until the embedded espeak-ng data of the speech trainer can be used; they test the plumbing (text and speech spans in
one vocabulary, constrained generation, decoding to `.wav`), not speech quality. A tiny `LlamaForCausalLM` learns
`<s> words <|speech_start|> codes <|speech_end|> </s>`; `generate` with `SpanLogitsProcessor` then writes a speech
span for each prompt, of a length the LM chooses (bounded by `--max_speech_frames`), closed by end-of-speech, and the
codes are decoded to `samples/*.wav`. Writes the loss curve, `metrics.json`, the LM and its processor
(`AutoProcessor.from_pretrained(output_dir / "lm")`).
"""

import argparse
import json
from pathlib import Path

import numpy as np
import scipy.io.wavfile
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from train_lm import add_language_model_arguments, loss_summary, padded_dataset, save_loss_curve, train_language_model
from transformers import AutoModelForAudioTokenization

import hf_simvq  # noqa: F401  (registers the SimVQ classes with the Auto classes)
from hf_simvq.lm.language_model import SpanLogitsProcessor
from hf_simvq.lm.multimodal_vocabulary import SimVQMultimodalVocabulary, SpeechModality
from hf_simvq.lm.processing_simvq import SimVQMultimodalProcessor
from hf_simvq.lm.word_level_tokenizer import word_level_tokenizer
from hf_simvq.training.process_group import run_then_end_training

TONE_WORDS = ("do", "re", "mi", "fa", "sol", "la", "ti")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--audio_tokenizer", required=True, help="a saved SimVQAudioModel folder")
    parser.add_argument("--num_utterances", type=int, default=512, help="synthetic tone-word utterances to train on")
    parser.add_argument("--frames_per_word", type=int, default=6, help="codes each tone word lasts")
    parser.add_argument(
        "--max_speech_frames", type=int, default=None, help="bound on a generated span (default 2×3 words)"
    )
    parser.add_argument("--num_samples", type=int, default=4, help="texts to generate speech for")
    add_language_model_arguments(parser)
    parser.set_defaults(output_dir="outputs/speech-lm-demo", max_train_steps=300)
    return parser.parse_args(argv)


def tone_utterances(count: int, samples_per_word: int, sampling_rate: int, seed: int) -> tuple[list, list]:
    """`count` synthetic utterances of 1–3 tone words: their texts and float32 waveforms (not speech)."""
    rng = np.random.default_rng(seed)
    t = np.arange(samples_per_word) / sampling_rate
    envelope = np.hanning(samples_per_word)
    pitch = {word: 220.0 * 2 ** (index * 2 / 12) for index, word in enumerate(TONE_WORDS)}  # whole tones up from A3
    tones = {word: (0.5 * envelope * np.sin(2 * np.pi * hz * t)).astype(np.float32) for word, hz in pitch.items()}
    texts, waveforms = [], []
    for _ in range(count):
        words = list(rng.choice(TONE_WORDS, size=int(rng.integers(1, 4))))
        texts.append(" ".join(words))
        waveforms.append(np.concatenate([tones[word] for word in words]))
    return texts, waveforms


def prompt_ids(vocabulary: SimVQMultimodalVocabulary, text: str) -> torch.LongTensor:
    """`<s> text <|speech_start|>`: what the LM continues with speech."""
    tokenizer = vocabulary.tokenizer
    words = tokenizer(text, add_special_tokens=False).input_ids
    return torch.tensor([tokenizer.bos_token_id, *words, vocabulary.modalities["speech"].begin_id])


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    run_then_end_training(Accelerator(), train, args)


def train(args: argparse.Namespace, accelerator: Accelerator) -> None:
    """Tokenize the tone utterances, train the LM on (text, speech) sequences, generate speech, save."""
    set_seed(args.seed)
    output_dir = Path(args.output_dir)
    (output_dir / "samples").mkdir(parents=True, exist_ok=True)

    audio_tokenizer = AutoModelForAudioTokenization.from_pretrained(args.audio_tokenizer).eval()
    rate, hop = audio_tokenizer.config.sampling_rate, audio_tokenizer.config.hop_length
    texts, waveforms = tone_utterances(args.num_utterances, args.frames_per_word * hop, rate, args.seed)
    vocabulary = SimVQMultimodalVocabulary.from_tokenizers(word_level_tokenizer(texts), {"speech": audio_tokenizer})
    speech: SpeechModality = vocabulary.modalities["speech"]
    spans = [span for start in range(0, len(waveforms), 64) for span in speech.encode(waveforms[start : start + 64])]
    eos = torch.tensor([vocabulary.tokenizer.eos_token_id])
    dataset = padded_dataset(
        [torch.cat([prompt_ids(vocabulary, text)[:-1], span, eos]) for text, span in zip(texts, spans, strict=True)],
        vocabulary.tokenizer.pad_token_id,
    )

    model, losses = train_language_model(args, accelerator, vocabulary, dataset)

    if accelerator.is_main_process:
        max_frames = args.max_speech_frames or 2 * 3 * args.frames_per_word
        processor = SpanLogitsProcessor(vocabulary, max_span_lengths={"speech": max_frames})
        samples = []
        for text in list(dict.fromkeys(texts))[: args.num_samples]:
            prompt = prompt_ids(vocabulary, text)[None].to(accelerator.device)
            with torch.no_grad():
                sequence = model.generate(
                    prompt,
                    attention_mask=torch.ones_like(prompt),
                    logits_processor=[processor],
                    max_new_tokens=max_frames + 1,
                    do_sample=True,
                    top_k=20,
                    pad_token_id=vocabulary.tokenizer.pad_token_id,
                    eos_token_id=speech.end_id,  # the prompt asked for one utterance: stop when it ends
                )[0].cpu()
            ((_, waveform),) = vocabulary.decode_spans(sequence)
            name = f"{len(samples)}_{text.replace(' ', '_')}.wav"
            scipy.io.wavfile.write(output_dir / "samples" / name, rate, waveform.numpy())
            frames = len(waveform) // hop
            samples.append(
                {
                    "text": text,
                    "wav": name,
                    "frames": frames,
                    "frames_of_the_text": args.frames_per_word * len(text.split()),
                }
            )
        save_loss_curve(output_dir, losses)
        metrics = {
            **loss_summary(losses),
            "data": "synthetic tone words (not speech)",
            "speech_codes": speech.layout.codebook_size,
            "vocab_size": vocabulary.total_vocab_size,
            "sequence_length": dataset.tensors[0].shape[1],
            "max_speech_frames": max_frames,
            "num_samples": len(samples),
            "samples": samples,
        }
        (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        model.save_pretrained(output_dir / "lm")
        SimVQMultimodalProcessor.from_vocabulary(vocabulary).save_pretrained(output_dir / "lm")
        accelerator.print(json.dumps({key: value for key, value in metrics.items() if key != "samples"}))


if __name__ == "__main__":
    main()
