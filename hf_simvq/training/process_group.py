"""Starting the training processes with the settings every trainer needs, and ending a multi-process run without
the exit deadlock of gloo process groups."""

import gc
import traceback
from collections.abc import Callable
from pathlib import Path

import torch
from accelerate import Accelerator, DataLoaderConfiguration, DistributedDataParallelKwargs
from accelerate.utils import ProjectConfiguration


def training_accelerator(
    output_dir: Path,
    gradient_accumulation_steps: int = 1,
    mixed_precision: str | None = None,
    log_with: str | None = None,
    checkpoints_total_limit: int | None = None,
    find_unused_parameters: bool = False,
) -> Accelerator:
    """An `Accelerator` whose checkpoints resume exactly: numbered under `output_dir/checkpoints`, and a sampler
    reseeded from `seed + epoch`, so the data order depends on the step only and a resumed run sees the same batches
    as an uninterrupted one."""
    return Accelerator(
        # Without an accelerator, torchrun processes only join up (MULTI_CPU, gloo) when accelerate is told so.
        cpu=not torch.accelerator.is_available(),
        gradient_accumulation_steps=gradient_accumulation_steps,
        mixed_precision=mixed_precision,
        log_with=log_with,
        project_config=ProjectConfiguration(
            project_dir=str(output_dir), automatic_checkpoint_naming=True, total_limit=checkpoints_total_limit
        ),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=find_unused_parameters)],
    )


def end_training(accelerator: Accelerator) -> None:
    """`accelerator.end_training()`, after every DDP wrapper is gone; call it once the caller holds none.

    When the last reference to a gloo process group is dropped by DDP's reducer, the group's destructor joins gloo's
    worker thread while holding the GIL, and deadlocks if that thread is still freeing a tensor of the last collective
    (pytorch/pytorch#56297; seen here at the end of about 1 two-process run in 20). Released by
    `destroy_process_group` instead, the group lets go of the GIL first.
    """
    accelerator.free_memory()  # drops accelerate's own references to the prepared (wrapped) models
    gc.collect()  # and any reference cycles through them
    accelerator.end_training()


def run_then_end_training(accelerator: Accelerator, train: Callable[..., None], *args) -> None:
    """`train(*args, accelerator)`, then `end_training`, also when it fails.

    `train` must return holding no DDP wrapper (keep the prepared models in its own frame, not the caller's); on a
    failure the traceback's frames, which would keep them alive, are cleared first.
    """
    try:
        train(*args, accelerator)
    except BaseException as error:
        traceback.clear_frames(error.__traceback__)
        raise
    finally:
        end_training(accelerator)


__all__ = ["end_training", "run_then_end_training", "training_accelerator"]
