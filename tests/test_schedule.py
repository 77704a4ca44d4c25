"""Run length and learning-rate schedule: counted in optimizer steps on the per-process dataloader."""

import pytest
import torch
from torch.utils.data import DataLoader

from hf_simvq.training.schedule import learning_rate_scheduler, run_length


def loader(num_examples: int, batch_size: int) -> DataLoader:
    return DataLoader(range(num_examples), batch_size=batch_size, drop_last=True)


def test_run_length_counts_optimizer_steps_of_the_shard():
    length = run_length(
        loader(100, 8), num_processes=2, gradient_accumulation_steps=3, max_train_steps=None, num_train_epochs=5
    )
    assert (length.steps_per_epoch, length.max_train_steps, length.num_train_epochs) == (4, 20, 5)
    length = run_length(loader(100, 8), 1, 1, max_train_steps=30, num_train_epochs=None)
    assert (length.steps_per_epoch, length.num_train_epochs) == (12, 3)


def test_a_stream_is_one_epoch_of_the_given_steps():
    length = run_length(None, 1, 1, max_train_steps=7, num_train_epochs=None, streaming=True)
    assert (length.steps_per_epoch, length.max_train_steps, length.num_train_epochs) == (7, 7, 1)


def test_too_little_data_for_one_step_names_the_sizes():
    with pytest.raises(ValueError, match=r"has 10 examples: fewer than one batch of 8 × 2 processes × 4"):
        run_length(
            loader(10, 8), num_processes=2, gradient_accumulation_steps=4, max_train_steps=5, num_train_epochs=None
        )


@pytest.mark.parametrize("num_processes", [1, 3])
def test_the_schedule_is_in_optimizer_steps_whatever_the_number_of_processes(num_processes):
    """A prepared scheduler steps once per process per optimizer step: warmup and decay must end where asked."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = learning_rate_scheduler(
        "cosine", optimizer, warmup_steps=10, training_steps=100, num_processes=num_processes
    )
    rates = []
    for _ in range(100):
        rates.append(scheduler.get_last_lr()[0])
        for _ in range(num_processes):  # what Accelerate's prepared scheduler does at each optimizer step
            scheduler.step()
    assert rates[0] == 0.0 and rates[10] == pytest.approx(1.0)
    assert rates[5] == pytest.approx(0.5) and rates[55] == pytest.approx(0.5)
    assert rates[99] < 1e-3 and all(a >= b for a, b in zip(rates[10:-1], rates[11:], strict=True))
