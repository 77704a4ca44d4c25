"""The trainers' optimizer: the quantizer's own learning rate, `--scale_lr`, frozen parameters left out."""

import argparse

import pytest
import torch
from conftest import tiny_config

from hf_simvq import SimVQModel
from hf_simvq.training.optimization import tokenizer_optimizer
from hf_simvq.training.options import add_optimization_arguments


def optimization_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_optimization_arguments(parser)
    return parser.parse_args(list(argv))


def one_step_changes(model: SimVQModel, optimizer: torch.optim.Optimizer) -> tuple[float, float]:
    """Largest change of an encoder weight and of SimVQ's `W` after one step (Adam's first step is ≈ lr per entry)."""
    encoder_before = model.encoder.conv_in.weight.detach().clone()
    projection_before = model.quantize.projection.weight.detach().clone()
    pixel_values = torch.rand(2, 3, 16, 16) * 2 - 1
    output = model(pixel_values)
    ((output.reconstruction - pixel_values).abs().mean() + output.quantization_loss).backward()
    optimizer.step()
    encoder_change = (model.encoder.conv_in.weight - encoder_before).abs().max().item()
    projection_change = (model.quantize.projection.weight - projection_before).abs().max().item()
    return encoder_change, projection_change


def test_the_quantizer_trains_at_its_own_learning_rate():
    torch.manual_seed(0)
    model = SimVQModel(tiny_config())
    args = optimization_args("--learning_rate", "1e-4", "--quantizer_learning_rate", "1e-2")
    encoder_change, projection_change = one_step_changes(model, tokenizer_optimizer(model, args, num_processes=1))
    assert encoder_change == pytest.approx(1e-4, rel=0.05)
    assert projection_change == pytest.approx(1e-2, rel=0.05)


def test_without_a_quantizer_rate_everything_trains_at_the_learning_rate_and_frozen_codes_stay_out():
    model = SimVQModel(tiny_config())
    optimizer = tokenizer_optimizer(model, optimization_args("--learning_rate", "3e-4"), num_processes=1)
    assert [group["lr"] for group in optimizer.param_groups] == [3e-4, 3e-4]
    optimized = {id(parameter) for group in optimizer.param_groups for parameter in group["params"]}
    trainable = {id(parameter) for parameter in model.parameters() if parameter.requires_grad}
    assert optimized == trainable
    assert id(model.quantize.projection.weight) in {id(p) for p in optimizer.param_groups[1]["params"]}
    frozen = [name for name, parameter in model.named_parameters() if id(parameter) not in optimized]
    assert all(not model.get_parameter(name).requires_grad for name in frozen)


def test_scale_lr_scales_both_rates():
    model = SimVQModel(tiny_config())
    args = optimization_args(
        "--learning_rate", "1e-4", "--quantizer_learning_rate", "1e-3", "--scale_lr", "--train_batch_size", "4",
        "--gradient_accumulation_steps", "2",
    )  # fmt: skip
    optimizer = tokenizer_optimizer(model, args, num_processes=3)
    assert [group["lr"] for group in optimizer.param_groups] == pytest.approx([1e-4 * 24, 1e-3 * 24])
