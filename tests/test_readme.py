"""The README's usage snippet runs as written, against a saved model and a real image file."""

import re
from pathlib import Path

import numpy as np
import PIL.Image
import torch
from conftest import tiny_config

from hf_simvq import SimVQImageProcessor, SimVQModel

README = Path(__file__).resolve().parents[1] / "README.md"


def test_usage_snippet_runs_and_round_trips(tmp_path, monkeypatch):
    snippet = re.search(r"## Usage\n\n```python\n(.*?)```", README.read_text(), re.S).group(1)
    assert len(snippet.strip().splitlines()) <= 15
    model_dir = tmp_path / "model"
    SimVQModel(tiny_config()).save_pretrained(model_dir)
    SimVQImageProcessor.from_image_size(32).save_pretrained(model_dir)
    photo = (np.random.default_rng(0).random((48, 64, 3)) * 255).astype(np.uint8)
    PIL.Image.fromarray(photo).save(tmp_path / "photo.jpg")
    monkeypatch.chdir(tmp_path)

    namespace = {}
    exec(snippet.replace("path/or/hub-id", str(model_dir)), namespace)

    assert namespace["tokens"].shape == (1, 8, 8)
    assert PIL.Image.open("reconstruction.png").size == (32, 32)
    reloaded = SimVQModel.from_pretrained("my-simvq").eval()
    with torch.no_grad():
        assert torch.equal(reloaded.encode(namespace["pixel_values"]).image_tokens, namespace["tokens"])


def test_ci_runs_the_readme_test_command_word_for_word():
    """A README whose test command drifts from what CI runs would let CI pass where a new user's run fails."""
    lines = README.read_text().splitlines()
    marker = next(i for i, line in enumerate(lines) if line.startswith("# 2. install and run the tests"))
    command = lines[marker + 1].strip()
    assert command.endswith("python -m pytest -q")
    ci_lines = [line.strip() for line in (README.parent / ".ci" / "run").read_text().splitlines()]
    assert command in ci_lines
