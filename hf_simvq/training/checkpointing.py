"""Checkpoints that resume exactly: accelerate's `save_state` / `load_state` plus the run's own progress.

A checkpoint counts only once its marker file is written, so a run killed while saving leaves a folder that
resuming skips; anything that cannot be resumed from raises one `CheckpointError` that says why.
"""

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from accelerate import Accelerator
from accelerate.logging import get_logger
from torch.utils.data import DataLoader

from .schedule import RunLength

logger = get_logger(__name__)
COMPLETE_MARKER = "training_progress.json"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be resumed from: damaged, incomplete, or written by a different training setup."""


@dataclass
class TrainingProgress:
    """Everything about the run that is not a tensor of a model or optimizer, checkpointed with them.

    `setup` identifies the training setup; resuming from a checkpoint of a different one is refused, since its
    weights would not mean what this run expects even where their shapes happen to fit.
    """

    setup: dict
    quantizing: bool
    global_step: int = 0
    history: list[dict] = field(default_factory=list)

    def record(self, accelerator: Accelerator, logs: dict[str, float]) -> None:
        """Send `logs` of the current step to the trackers and keep them in the history (for the curves and card)."""
        accelerator.log(logs, step=self.global_step)
        self.history.append({"step": self.global_step, **logs})

    def epoch_batches(
        self,
        accelerator: Accelerator,
        dataloader: DataLoader,
        epoch: int,
        length: RunLength,
        gradient_accumulation_steps: int,
    ) -> DataLoader:
        """The batches of `epoch`; in the epoch a resumed run starts in, without those its checkpoint trained on."""
        if epoch != self.global_step // length.steps_per_epoch or self.global_step == 0:
            return dataloader
        batches_done = (self.global_step % length.steps_per_epoch) * gradient_accumulation_steps
        return accelerator.skip_first_batches(dataloader, batches_done)

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        if state.get("setup") != self.setup:
            raise CheckpointError(
                f"The checkpoint was written by a different training setup: {state.get('setup')} "
                f"instead of {self.setup}."
            )
        self.global_step = state["global_step"]
        self.quantizing = state["quantizing"]
        self.history = state["history"]


def checkpoint_number(path: Path) -> int:
    return int(path.name.rsplit("_", 1)[-1])


def save_checkpoint(accelerator: Accelerator, progress: TrainingProgress) -> None:
    """`save_state`, then the marker file that makes the checkpoint complete."""
    checkpoint = Path(accelerator.save_state())
    if accelerator.is_main_process:
        (checkpoint / COMPLETE_MARKER).write_text(json.dumps({"global_step": progress.global_step}))


def latest_checkpoint(output_dir: Path) -> Path | None:
    """The newest complete checkpoint under `output_dir/checkpoints`, if any."""
    checkpoints = sorted((output_dir / "checkpoints").glob("checkpoint_*"), key=checkpoint_number, reverse=True)
    for checkpoint in checkpoints:
        if (checkpoint / COMPLETE_MARKER).is_file():
            return checkpoint
        logger.warning(f"Skipping {checkpoint}: it was never completed (the run stopped while saving it).")
    return None


def resume(accelerator: Accelerator, checkpoint: str, output_dir: Path) -> None:
    """Load `checkpoint` (a folder, or `latest` under `output_dir`) into every prepared and registered object.

    Any failure becomes one clear `CheckpointError`; `latest` with no checkpoint yet starts afresh.
    """
    if checkpoint == "latest":
        path = latest_checkpoint(output_dir)
        if path is None:
            logger.info("No checkpoint in the output folder yet: starting a new run.")
            return
    else:
        path = Path(checkpoint)
    if not path.is_dir():
        raise CheckpointError(f"--resume_from_checkpoint {path} is not a folder.")
    if not (path / COMPLETE_MARKER).is_file():
        raise CheckpointError(
            f"{path} is not a complete checkpoint of this script (no {COMPLETE_MARKER}): it was interrupted "
            "while being saved, or written by something else."
        )
    try:
        accelerator.load_state(str(path))
    except CheckpointError:
        raise
    except Exception as error:
        raise CheckpointError(
            f"Cannot resume from {path}: it is damaged or was written by a different training setup "
            f"({type(error).__name__}: {error})."
        ) from error
    # Number later checkpoints after every existing folder, complete or not, so no save collides with one.
    existing = [checkpoint_number(folder) for folder in (output_dir / "checkpoints").glob("checkpoint_*")]
    accelerator.project_configuration.iteration = max(existing, default=-1) + 1
    logger.info(f"Resumed from {path}")


__all__ = ["CheckpointError", "TrainingProgress", "latest_checkpoint", "resume", "save_checkpoint"]
