"""How long a run is and how its learning rate moves: the one place the trainers count steps and build schedulers."""

import math
from dataclasses import dataclass

import torch
from diffusers.optimization import get_scheduler
from torch.utils.data import DataLoader


@dataclass(frozen=True)
class RunLength:
    """Optimizer steps of a run and of each epoch, counted on the *prepared* (per-process) dataloader."""

    steps_per_epoch: int
    max_train_steps: int

    @property
    def num_train_epochs(self) -> int:
        return math.ceil(self.max_train_steps / self.steps_per_epoch)


def run_length(
    train_dataloader: DataLoader,
    num_processes: int,
    gradient_accumulation_steps: int,
    max_train_steps: int | None,
    num_train_epochs: int | None,
    streaming: bool = False,
) -> RunLength:
    """The run's length from `--max_train_steps` or `--num_train_epochs`.

    `train_dataloader` is the process's *prepared* dataloader: under several processes each one serves a shard, so
    counting before `prepare` would give the whole dataset's batches and end the run early. A stream has no length:
    it is one epoch of `max_train_steps`.
    """
    if streaming:
        return RunLength(steps_per_epoch=max_train_steps, max_train_steps=max_train_steps)
    steps_per_epoch = len(train_dataloader) // gradient_accumulation_steps
    if steps_per_epoch == 0:
        raise ValueError(
            f"The training set has {len(train_dataloader.dataset)} examples: fewer than one batch of "
            f"{train_dataloader.batch_size} × {num_processes} processes × "
            f"{gradient_accumulation_steps} accumulation steps."
        )
    return RunLength(steps_per_epoch, max_train_steps or num_train_epochs * steps_per_epoch)


def learning_rate_scheduler(
    name: str,
    optimizer: torch.optim.Optimizer,
    warmup_steps: int,
    training_steps: int,
    num_processes: int = 1,
) -> torch.optim.lr_scheduler.LRScheduler:
    """diffusers' `get_scheduler` (constant, linear, cosine, … with warmup) for a scheduler Accelerate will prepare.

    A prepared scheduler advances once per process at every optimizer step, so its step counts are scaled by
    `num_processes` to keep the schedule in optimizer steps.
    """
    return get_scheduler(
        name,
        optimizer=optimizer,
        num_warmup_steps=warmup_steps * num_processes,
        num_training_steps=training_steps * num_processes,
    )


__all__ = ["RunLength", "learning_rate_scheduler", "run_length"]
