"""Ending a multi-process run without the exit deadlock of gloo process groups."""

import gc

from accelerate import Accelerator


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
