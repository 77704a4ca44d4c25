"""Runs `evaluate_tokenizer` for test_evaluation.py, under `python` (1 process) or `torchrun` (2 processes).

rFID and LPIPS use small stand-in networks with seeded random weights: this checks how features and scores are
gathered across processes, not the metrics' values (their real weights are tested elsewhere or do not exist here).
"""

import json
import sys

import torch
from accelerate import Accelerator
from torch import nn
from torch.utils.data import DataLoader

from hf_simvq import SimVQModel
from hf_simvq.evaluation import evaluate_tokenizer
from hf_simvq.evaluation.lpips_network import LPIPS

NUM_IMAGES = 11  # not a multiple of batch size × processes: the padded last batch must not be counted twice


def main(model_dir: str, output_file: str) -> None:
    accelerator = Accelerator(cpu=True)
    torch.manual_seed(0)
    inception_stand_in = nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(12, 6))
    lpips_stand_in = LPIPS()
    images = torch.rand(NUM_IMAGES, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    dataloader = DataLoader([{"pixel_values": image} for image in images], batch_size=4)
    model, dataloader = accelerator.prepare(SimVQModel.from_pretrained(model_dir), dataloader)
    results = evaluate_tokenizer(
        model, dataloader, accelerator, inception=inception_stand_in, lpips_model=lpips_stand_in
    )
    if accelerator.is_main_process:
        with open(output_file, "w") as file:
            json.dump(results, file)


if __name__ == "__main__":
    main(*sys.argv[1:])
