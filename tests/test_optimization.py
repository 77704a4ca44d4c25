"""The trainers' optimizer: the quantizer's own learning rate, `--scale_lr`, frozen parameters left out."""

import argparse

import pytest
import torch
from conftest import tiny_config

from hf_simvq import SimVQModel
from hf_simvq.training.optimization import build_discriminator_optimizer, build_tokenizer_optimizer
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
    encoder_change, projection_change = one_step_changes(model, build_tokenizer_optimizer(model, args, num_processes=1))
    assert encoder_change == pytest.approx(1e-4, rel=0.05)
    assert projection_change == pytest.approx(1e-2, rel=0.05)


def test_without_a_quantizer_rate_everything_trains_at_the_learning_rate_and_frozen_codes_stay_out():
    model = SimVQModel(tiny_config())
    optimizer = build_tokenizer_optimizer(model, optimization_args("--learning_rate", "3e-4"), num_processes=1)
    assert [group["lr"] for group in optimizer.param_groups] == [3e-4, 3e-4]
    optimized = {id(parameter) for group in optimizer.param_groups for parameter in group["params"]}
    trainable = {id(parameter) for parameter in model.parameters() if parameter.requires_grad}
    assert optimized == trainable
    assert id(model.quantize.projection.weight) in {id(p) for p in optimizer.param_groups[1]["params"]}
    # The frozen C (a buffer) is not optimized; trained with W (`train_codebook`), it joins the quantizer's group.
    assert id(model.quantize.frozen_codebook) not in optimized
    trained_c = SimVQModel(tiny_config(train_codebook=True))
    optimizer = build_tokenizer_optimizer(trained_c, optimization_args("--quantizer_learning_rate", "1e-2"), 1)
    assert id(trained_c.quantize.frozen_codebook) in {id(p) for p in optimizer.param_groups[1]["params"]}


def test_a_quantizer_rate_of_zero_freezes_w_instead_of_falling_back():
    model = SimVQModel(tiny_config())
    args = optimization_args("--learning_rate", "1e-3", "--quantizer_learning_rate", "0")
    assert [group["lr"] for group in build_tokenizer_optimizer(model, args, 1).param_groups] == [1e-3, 0.0]


def test_the_discriminator_takes_its_own_rate_as_given_or_the_scaled_tokenizer_rate():
    critic = torch.nn.Linear(4, 1)
    args = optimization_args("--learning_rate", "1e-4", "--scale_lr", "--train_batch_size", "2")
    assert build_discriminator_optimizer(critic, args, 1).param_groups[0]["lr"] == pytest.approx(2e-4)
    assert build_discriminator_optimizer(critic, args, 1, learning_rate=5e-5).param_groups[0]["lr"] == 5e-5


def test_scale_lr_scales_both_rates():
    model = SimVQModel(tiny_config())
    args = optimization_args(
        "--learning_rate", "1e-4", "--quantizer_learning_rate", "1e-3", "--scale_lr", "--train_batch_size", "4",
        "--gradient_accumulation_steps", "2",
    )  # fmt: skip
    optimizer = build_tokenizer_optimizer(model, args, num_processes=3)
    assert [group["lr"] for group in optimizer.param_groups] == pytest.approx([1e-4 * 24, 1e-3 * 24])
