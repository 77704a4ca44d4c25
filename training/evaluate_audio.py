"""Evaluate a saved SimVQ speech tokenizer: codebook utilization and perplexity, log-mel distance, STOI, wide-band
PESQ and V/UV F1 (UTMOS: skipped with the reason, its weights do not exist offline).

    python training/evaluate_audio.py --model_name_or_path DIR --output_file eval_results.json
    torchrun --nproc_per_node 2 training/evaluate_audio.py --model_name_or_path DIR   # the same numbers

Without --dataset_name or --train_data_dir it uses the embedded default speech (the validation voices and sentences,
which training never sees).
"""

import argparse
import json
from pathlib import Path

import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader
from transformers import AutoModelForAudioTokenization

import hf_simvq  # noqa: F401  (registers SimVQ with the Auto classes)
from hf_simvq.evaluation import AUDIO_METRICS, DEFAULT_AUDIO_METRICS, evaluate_audio_tokenizer
from hf_simvq.training.process_group import end_training
from hf_simvq.training.speech_data import speech_datasets


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model_name_or_path", required=True, help="Saved model folder or Hub id.")
    parser.add_argument("--dataset_name", default=None)
    parser.add_argument("--dataset_config_name", default=None)
    parser.add_argument("--train_data_dir", default=None, help="A folder of audio files; its last tenth is scored.")
    parser.add_argument("--audio_column", default="audio")
    parser.add_argument("--split", default="validation")
    parser.add_argument("--cache_dir", default=None)
    parser.add_argument("--clip_seconds", type=float, default=4.0, help="Utterances are cut into clips this long.")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--metrics", nargs="+", default=list(DEFAULT_AUDIO_METRICS), choices=AUDIO_METRICS)
    parser.add_argument("--output_file", default="eval_results.json")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, float]:
    args = parse_args(argv)
    # Without an accelerator, torchrun processes only join up (MULTI_CPU, gloo) when accelerate is told so.
    accelerator = Accelerator(cpu=not torch.accelerator.is_available())
    model = AutoModelForAudioTokenization.from_pretrained(args.model_name_or_path)
    with accelerator.main_process_first():
        _, dataset = speech_datasets(
            model.config.sampling_rate,
            args.clip_seconds,
            dataset_name=args.dataset_name,
            dataset_config_name=args.dataset_config_name,
            train_data_dir=args.train_data_dir,
            audio_column=args.audio_column,
            validation_split=args.split,
            cache_dir=args.cache_dir,
        )
    model, dataloader = accelerator.prepare(model, DataLoader(dataset, batch_size=args.batch_size))
    results = evaluate_audio_tokenizer(model, dataloader, accelerator, metrics=args.metrics)
    if accelerator.is_main_process:
        width = max(len(name) for name in results)
        print("\n".join(f"{name:<{width}}  {value}" for name, value in results.items()))
        Path(args.output_file).write_text(json.dumps(results, indent=2))
    del model, dataloader  # the DDP wrapper must be gone before the process group is (see `end_training`)
    end_training(accelerator)
    return results


if __name__ == "__main__":
    main()
