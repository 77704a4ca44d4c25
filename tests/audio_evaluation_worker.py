"""Runs `evaluate_audio_tokenizer` for test_audio_metrics.py, under `python` (1 process) or `torchrun` (2 processes)."""

import json
import sys

import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader

from hf_simvq import SimVQAudioModel
from hf_simvq.evaluation import evaluate_audio_tokenizer
from hf_simvq.training.process_group import end_training

NUM_CLIPS = 7  # not a multiple of batch size × processes: the padded last batch must not be counted twice


def speech_like_clips(num_clips: int, samples: int, rate: int = 24000) -> list[dict[str, torch.Tensor]]:
    """Voiced stretches (a harmonic tone whose pitch differs per clip) between noise, some clips shorter (masked)."""
    generator = torch.Generator().manual_seed(0)
    time = torch.arange(samples) / rate
    clips = []
    for index in range(num_clips):
        pitch = 110 + 25 * index
        tone = sum(torch.sin(2 * torch.pi * pitch * harmonic * time) / harmonic for harmonic in range(1, 6))
        envelope = (torch.sin(2 * torch.pi * 3 * time) > 0).float()
        audio = 0.3 * tone * envelope + 0.01 * torch.randn(samples, generator=generator)
        length = samples - index * samples // 10
        mask = (torch.arange(samples) < length).long()
        clips.append({"input_values": (audio * mask)[None].float(), "padding_mask": mask})
    return clips


def main(model_dir: str, output_file: str) -> None:
    accelerator = Accelerator(cpu=True)
    dataloader = DataLoader(speech_like_clips(NUM_CLIPS, 24000), batch_size=2)
    model, dataloader = accelerator.prepare(SimVQAudioModel.from_pretrained(model_dir), dataloader)
    results = evaluate_audio_tokenizer(model, dataloader, accelerator)
    if accelerator.is_main_process:
        with open(output_file, "w") as file:
            json.dump(results, file)
    del model, dataloader  # the DDP wrapper must be gone before the process group is (see `end_training`)
    end_training(accelerator)


if __name__ == "__main__":
    main(*sys.argv[1:])
