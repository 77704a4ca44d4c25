"""End-to-end tests of training/train.py, each a real run of the script in a subprocess on a tiny model."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import TINY_TRAIN_OPTIONS
from safetensors.torch import load_file
from transformers import AutoModel

import hf_simvq  # noqa: F401  (registers SimVQ with the Auto classes)
from hf_simvq.evaluation.lpips_network import LPIPSWeightsNotFoundError, build_vgg16_features, lpips_linear_weights_path

TRAIN_SCRIPT = Path(__file__).parents[1] / "training" / "train.py"
TINY_RUN = [*TINY_TRAIN_OPTIONS, "--codebook_size", "64"]


def train_command(output_dir: Path, *options: str) -> list[str]:
    return [sys.executable, str(TRAIN_SCRIPT), "--output_dir", str(output_dir), *TINY_RUN, *options]


def run_train(output_dir: Path, *options: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        train_command(output_dir, *options), capture_output=True, text=True, timeout=300, env=environment
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A short deferred-quantization run: 3 unquantized steps, then 3 quantized ones from a codebook of latent samples,
    a checkpoint every 3.

    The LPIPS loss is on, with a *generated* VGG16 weight file: the real ImageNet weights do not exist offline, and
    this checks the plumbing (file → loss → logs), not the perceptual quality.
    """
    output_dir = tmp_path_factory.mktemp("run")
    vgg16_weights = output_dir.parent / "generated-vgg16.pth"
    torch.manual_seed(0)
    features = build_vgg16_features().state_dict()
    torch.save({f"features.{name}": value for name, value in features.items()}, vgg16_weights)
    result = run_train(
        output_dir,
        "--max_train_steps", "6",
        "--deferred_quantization_steps", "3",
        "--deferred_init_batches", "2",
        "--deferred_codebook_init", "samples",
        "--validation_steps", "3",
        "--checkpointing_steps", "3",
        "--perceptual_weight", "0.1",
        "--vgg16_weights", str(vgg16_weights),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return output_dir


def test_run_writes_a_hub_ready_folder(trained):
    model = AutoModel.from_pretrained(trained)
    assert type(model).__name__ == "SimVQModel"
    assert model.config.codebook_size == 64 and model.config.image_size == 16
    with torch.no_grad():
        reconstruction = model(torch.zeros(1, 3, 16, 16)).reconstruction
    assert reconstruction.shape == (1, 3, 16, 16)

    card = (trained / "README.md").read_text()
    assert card.startswith("---") and "model-index" in card
    results = json.loads((trained / "eval_results.json").read_text())
    assert results["num_images"] == 64 and 0 < results["utilization"] <= 1 and results["psnr"] > 0
    assert (trained / "preprocessor_config.json").is_file()
    for picture in ("reconstructions.png", "training_curves.png"):
        assert (trained / picture).stat().st_size > 1000


def test_saved_model_holds_the_ema_weights_not_the_last_training_weights(trained):
    saved = load_file(trained / "model.safetensors")
    last_training = load_file(trained / "checkpoints" / "checkpoint_1" / "model.safetensors")
    name = "decoder.conv_out.weight"
    assert not torch.equal(saved[name], last_training[f"model.{name}"])


def test_deferred_quantization_switches_phase_at_the_given_step(trained):
    history = json.loads((trained / "training_history.json").read_text())
    train_logs = {entry["step"]: entry for entry in history if "train/reconstruction_loss" in entry}
    assert sorted(train_logs) == [1, 2, 3, 4, 5, 6]
    for step in (1, 2, 3):
        assert train_logs[step]["train/quantization_loss"] == 0.0
        assert "train/utilization" not in train_logs[step]
    for step in (4, 5, 6):
        assert train_logs[step]["train/quantization_loss"] > 0
        assert 0 < train_logs[step]["train/utilization"] <= 1


def test_samples_init_reached_the_saved_codebook(trained):
    """`--deferred_codebook_init samples` whitens the chosen latents into C: its 64 rows then have zero mean and
    covariance std²·I exactly, which the Gaussian draw it replaced (the `fit` init keeps that) does not."""
    frozen = load_file(trained / "model.safetensors")["quantize.frozen_codebook"].double()
    std = frozen.shape[1] ** -0.5
    identity = torch.eye(frozen.shape[1], dtype=frozen.dtype)
    torch.testing.assert_close(torch.cov(frozen.T), std**2 * identity, rtol=0, atol=1e-5)
    torch.testing.assert_close(frozen.mean(0), torch.zeros_like(frozen.mean(0)), rtol=0, atol=1e-6)
    gaussian = torch.randn(frozen.shape, generator=torch.Generator().manual_seed(0), dtype=frozen.dtype) * std
    assert (torch.cov(gaussian.T) - std**2 * identity).abs().max() > 1e-2


def test_shrinkage_statistics_are_logged_beside_the_codebook_health(trained):
    history = json.loads((trained / "training_history.json").read_text())
    train_logs = {entry["step"]: entry for entry in history if "train/reconstruction_loss" in entry}
    assert all("train/spread_ratio" not in train_logs[step] for step in (1, 2, 3))  # unquantized: nothing to compare
    for step in (4, 5, 6):
        entry = train_logs[step]
        assert (
            entry["train/latent_spread"] > 0
            and entry["train/code_spread"] > 0
            and entry["train/mean_code_distance"] > 0
        )
        assert entry["train/spread_ratio"] == pytest.approx(entry["train/latent_spread"] / entry["train/code_spread"])


def test_perceptual_loss_is_logged_at_every_step(trained):
    try:
        lpips_linear_weights_path()
    except LPIPSWeightsNotFoundError as error:
        pytest.skip(f"LPIPS heads absent, so the run trained without the perceptual loss: {error}")
    history = json.loads((trained / "training_history.json").read_text())
    train_logs = [entry for entry in history if "train/reconstruction_loss" in entry]
    assert len(train_logs) == 6 and all(entry["train/perceptual_loss"] > 0 for entry in train_logs)


def test_corrupt_or_foreign_checkpoint_gives_a_clear_error(trained, tmp_path):
    checkpoint = trained / "checkpoints" / "checkpoint_0"
    foreign_options = ["--max_train_steps", "6", "--codebook_size", "32", "--resume_from_checkpoint", str(checkpoint)]
    foreign = run_train(tmp_path / "foreign", *foreign_options)
    assert foreign.returncode != 0
    assert "CheckpointError" in foreign.stderr and "different training setup" in foreign.stderr

    damaged = tmp_path / "damaged"
    damaged.mkdir()
    for file in checkpoint.iterdir():
        (damaged / file.name).write_bytes(file.read_bytes())
    (damaged / "model.safetensors").write_bytes(b"not a safetensors file")
    options = ["--max_train_steps", "6", "--deferred_quantization_steps", "3", "--resume_from_checkpoint"]
    result = run_train(tmp_path / "out", *options, str(damaged))
    assert result.returncode != 0
    assert "CheckpointError" in result.stderr and "damaged" in result.stderr

    not_a_checkpoint = tmp_path / "empty"
    not_a_checkpoint.mkdir()
    result = run_train(tmp_path / "out", *options, str(not_a_checkpoint))
    assert result.returncode != 0 and "not a complete checkpoint" in result.stderr


def test_resume_after_sigkill_ends_with_the_weights_of_an_uninterrupted_run(tmp_path):
    """Killed right after the step-10 checkpoint and resumed: identical final weights, bit for bit.

    The run switches quantization on at step 12, trains a discriminator from step 5 with gradient accumulation and
    augments its data, so the optimizers, the EMA, the data position, the crops and the phase all have to come back
    exactly.
    """
    options = [
        "--max_train_steps", "24",
        "--gradient_accumulation_steps", "2",
        "--deferred_quantization_steps", "12",
        "--deferred_init_batches", "2",
        "--discriminator_weight", "0.1",
        "--discriminator_layers", "2",
        "--discriminator_start_step", "5",
        "--checkpointing_steps", "5",
        "--validation_steps", "7",
        "--random_crop",
    ]  # fmt: skip
    uninterrupted = run_train(tmp_path / "uninterrupted", *options)
    assert uninterrupted.returncode == 0, uninterrupted.stderr[-3000:]

    interrupted_dir = tmp_path / "interrupted"
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        train_command(interrupted_dir, *options), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=environment
    )
    marker = interrupted_dir / "checkpoints" / "checkpoint_1" / "training_progress.json"
    deadline = time.time() + 240
    while not marker.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert marker.exists(), "the run never reached its step-10 checkpoint"
    assert not (interrupted_dir / "model.safetensors").exists(), "the run finished before it could be killed"

    resumed = run_train(interrupted_dir, *options, "--resume_from_checkpoint", "latest")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Resumed from" in resumed.stderr
    expected = load_file(tmp_path / "uninterrupted" / "model.safetensors")
    actual = load_file(interrupted_dir / "model.safetensors")
    assert expected.keys() == actual.keys()
    for name in expected:
        assert torch.equal(expected[name], actual[name]), name


def patched_train_script(path: Path, patch: str) -> Path:
    """A script at `path` that imports train.py's modules, applies `patch` (source code) to them, then runs `main`."""
    path.write_text(f"import sys\nsys.path.insert(0, {str(TRAIN_SCRIPT.parent)!r})\n{patch}\ntrain.main()\n")
    return path


# When `end_training` destroys the process group, no DDP wrapper may be alive: a gloo group released last by DDP's
# reducer can deadlock the exit (see `main`). Checking the ordering is deterministic where the hang itself shows up in
# only about 1 run in 20.
CHECK_TEARDOWN = """
import gc
from accelerate import Accelerator
from torch.nn.parallel import DistributedDataParallel
import train

end_training = Accelerator.end_training

def end_training_after_every_ddp_wrapper(self):
    alive = [type(o.module).__name__ for o in gc.get_objects() if isinstance(o, DistributedDataParallel)]
    assert not alive, f"DDP wrappers {alive} outlive the process group"
    print(f"process {self.process_index}: no DDP wrapper left at end_training", file=sys.stderr)
    end_training(self)

Accelerator.end_training = end_training_after_every_ddp_wrapper
"""
# Under several processes accelerate's `set_epoch` reaches only the sampler: train.py must tell the dataset itself.
RECORD_CROP_EPOCHS = """
from hf_simvq.training import data

set_epoch = data.TransformedImageDataset.set_epoch

def recording_set_epoch(self, epoch):
    if self.transform.augment:
        print(f"crop epoch {epoch}", file=sys.stderr)
    set_epoch(self, epoch)

data.TransformedImageDataset.set_epoch = recording_set_epoch
"""


def test_two_processes_log_the_tokens_of_both(tmp_path):
    """Under torchrun, the usage window gathers every process's tokens: 2 processes × 16 images × 64 tokens a step.

    The discriminator is on, so two DDP wrappers must be released before the process group; the 64 training images
    make 2 steps an epoch, so the crops' epoch must advance.
    """
    script = patched_train_script(tmp_path / "train_two_processes.py", CHECK_TEARDOWN + RECORD_CROP_EPOCHS)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    options = ["--max_train_steps", "3", "--eval_metrics", "psnr", "--num_train_images", "64", "--random_crop"]
    options += ["--discriminator_weight", "0.1", "--discriminator_layers", "2"]
    command = [*torchrun, str(script), *train_command(tmp_path / "two", *options)[2:]]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=environment)
    assert result.returncode == 0, result.stderr[-3000:]
    history = json.loads((tmp_path / "two" / "training_history.json").read_text())
    window_tokens = [entry["train/window_tokens"] for entry in history if "train/window_tokens" in entry]
    tokens_per_step = 2 * 16 * 8 * 8
    assert window_tokens == [tokens_per_step, 2 * tokens_per_step, 3 * tokens_per_step]
    assert json.loads((tmp_path / "two" / "eval_results.json").read_text())["num_images"] == 64
    assert sorted(set(re.findall(r"crop epoch (\d+)", result.stderr))) == ["0", "1"]


def test_a_failing_process_still_releases_its_ddp_wrappers_first(tmp_path):
    """An exception keeps the failed frames (and the DDP wrappers in them) alive: the teardown must clear them."""
    fail_on_main_process = """
def failing_write_output_folder(*args, **kwargs):
    raise RuntimeError("injected failure while writing the output folder")

train.write_output_folder = failing_write_output_folder
"""
    script = patched_train_script(tmp_path / "train_failing.py", CHECK_TEARDOWN + fail_on_main_process)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    command = [*torchrun, str(script), *train_command(tmp_path / "two", "--max_train_steps", "2")[2:]]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=environment)
    assert result.returncode != 0 and "injected failure" in result.stderr
    assert "process 0: no DDP wrapper left at end_training" in result.stderr, result.stderr[-3000:]
    assert "process 1: no DDP wrapper left at end_training" in result.stderr


def test_multiscale_tokenizer_trains_and_loads(tmp_path):
    result = run_train(
        tmp_path, "--quantizer_type", "multiscale_simvq", "--max_train_steps", "3", "--validation_steps", "3"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    model = AutoModel.from_pretrained(tmp_path).eval()
    scales = model.config.scales
    assert model.config.quantizer_type == "multiscale_simvq" and scales[-1] == model.config.latent_size == 8
    with torch.no_grad():
        scale_ids = model.img_to_idxBl(torch.zeros(1, 3, 16, 16))
    assert [ids.shape[1] for ids in scale_ids] == [side * side for side in scales]
    evaluation = json.loads((tmp_path / "eval_results.json").read_text())
    assert 0 < evaluation["utilization"] <= 1
    assert evaluation["num_tokens"] == 64 * sum(side * side for side in scales)  # every scale's tokens count


# The tiny codebook is below MIN_CODES, which would keep the brute force: lift that, and tell the training steps that
# took the subspace search apart from the evaluation's.
RECORD_TRAINING_SEARCHES = """
import torch
import train
from hf_simvq.models.simvq import subspace_search

subspace_search.MIN_CODES = 0
search = subspace_search.SubspaceSearch.__call__

def recording_search(self, vectors):
    if torch.is_grad_enabled():
        print("subspace search in a training step", file=sys.stderr)
    return search(self, vectors)

subspace_search.SubspaceSearch.__call__ = recording_search
"""


def test_subspace_search_in_training_steps_ends_with_the_brute_forces_weights(tmp_path):
    """--subspace_search_in_training reaches the quantizer, and since it finds the brute force's codes, the run ends
    with bit-identical weights."""
    script = patched_train_script(tmp_path / "train_recording.py", RECORD_TRAINING_SEARCHES)
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    options = ["--max_train_steps", "4", "--eval_metrics", "psnr", "--validation_steps", "4"]
    stderr = {}
    for name, flag in (("subspace", "--subspace_search_in_training"), ("brute", "--no-subspace_search_in_training")):
        command = [sys.executable, str(script), *train_command(tmp_path / name, *options)[2:], flag]
        result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=environment)
        assert result.returncode == 0, result.stderr[-3000:]
        stderr[name] = result.stderr
    assert stderr["subspace"].count("subspace search in a training step") == 4  # one search a step
    assert "subspace search in a training step" not in stderr["brute"]
    expected = load_file(tmp_path / "brute" / "model.safetensors")
    actual = load_file(tmp_path / "subspace" / "model.safetensors")
    for name in expected:
        assert torch.equal(expected[name], actual[name]), name
