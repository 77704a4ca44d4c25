"""The tokenizer's optimizer: one place for both trainers' AdamW, its learning rates and their scaling."""

import argparse

import torch
from torch import nn


def scaled_learning_rate(args: argparse.Namespace, learning_rate: float, num_processes: int) -> float:
    """`learning_rate`, times processes × batch × accumulation under `--scale_lr` (diffusers' convention)."""
    if args.scale_lr:
        return learning_rate * args.gradient_accumulation_steps * args.train_batch_size * num_processes
    return learning_rate


def adam_options(args: argparse.Namespace) -> dict:
    """AdamW's betas, weight decay and epsilon from the command line, shared by generator and discriminator."""
    return {
        "betas": (args.adam_beta1, args.adam_beta2),
        "weight_decay": args.adam_weight_decay,
        "eps": args.adam_epsilon,
    }


def build_tokenizer_optimizer(model: nn.Module, args: argparse.Namespace, num_processes: int) -> torch.optim.AdamW:
    """AdamW over the model's trainable parameters, the quantizer's at `--quantizer_learning_rate`.

    SimVQ's `W` and `b` (or plain VQ's codebook) get their own rate because how fast the codebook follows the latents
    sets how fast codes come into use, and that need not match what the encoder and decoder tolerate.
    """
    learning_rate = scaled_learning_rate(args, args.learning_rate, num_processes)
    quantizer_rate = args.learning_rate if args.quantizer_learning_rate is None else args.quantizer_learning_rate
    quantizer_learning_rate = scaled_learning_rate(args, quantizer_rate, num_processes)
    quantizer_parameters = {id(parameter) for parameter in model.quantize.parameters()}
    trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
    groups = [
        {"params": [p for p in trainable if id(p) not in quantizer_parameters], "lr": learning_rate},
        {"params": [p for p in trainable if id(p) in quantizer_parameters], "lr": quantizer_learning_rate},
    ]
    return torch.optim.AdamW([group for group in groups if group["params"]], **adam_options(args))


def build_discriminator_optimizer(
    discriminator: nn.Module, args: argparse.Namespace, num_processes: int, learning_rate: float | None = None
) -> torch.optim.AdamW:
    """AdamW for the GAN critic: at `learning_rate` as given, else at the tokenizer's (scaled) rate."""
    if learning_rate is None:
        learning_rate = scaled_learning_rate(args, args.learning_rate, num_processes)
    return torch.optim.AdamW(discriminator.parameters(), lr=learning_rate, **adam_options(args))


__all__ = ["adam_options", "build_discriminator_optimizer", "build_tokenizer_optimizer", "scaled_learning_rate"]
