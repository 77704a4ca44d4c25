"""Building blocks of the training scripts in `training/`: data, losses, checkpoints, reporting, process teardown.

They live in the package so the scripts stay short, tests import them directly, and other trainers reuse them.
Importing `hf_simvq` does not import this subpackage (it needs the `train` extra).
"""
