"""The package layout: every module imports first in a fresh interpreter (no import circle)."""

import pkgutil
import subprocess
import sys
from pathlib import Path

from transformers.dynamic_module_utils import get_relative_import_files

import hf_simvq

# For each module: forget every hf_simvq module, then import that one first. A circle between two modules fails
# whenever one of them is the first imported, whatever order the rest of the package was loaded in.
IMPORT_EACH_FIRST = """
import importlib, sys
for name in sys.argv[1:]:
    for loaded in [m for m in sys.modules if m == "hf_simvq" or m.startswith("hf_simvq.")]:
        del sys.modules[loaded]
    importlib.import_module(name)
print("imported", len(sys.argv) - 1)
"""


def package_modules() -> list[str]:
    root = Path(hf_simvq.__file__).parent
    names = [
        info.name
        for info in pkgutil.walk_packages([str(root)], prefix="hf_simvq.")
        if ".evaluation.metrics." not in info.name  # evaluate modules: loaded by path with evaluate.load
    ]
    return ["hf_simvq", *names]


def test_every_module_imports_first_without_a_circle():
    modules = package_modules()
    assert "hf_simvq.models.simvq.modeling_simvq" in modules and "hf_simvq.training.options" in modules
    for order in (modules, modules[::-1]):
        result = subprocess.run(
            [sys.executable, "-c", IMPORT_EACH_FIRST, *order], capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert f"imported {len(modules)}" in result.stdout


# Tools that live with the model but are never copied with it: they may use the rest of the package.
NOT_COPIED = {"convert_original_checkpoint.py"}  # writes the package's model card (hf_simvq.model_card)


def test_model_folder_imports_only_one_level_relatively():
    """`save_pretrained` copies the model's files for trust_remote_code, following only `from .x import` imports."""
    folder = Path(hf_simvq.__file__).parent / "models" / "simvq"
    for path in folder.glob("*.py"):
        if path.name in NOT_COPIED:
            continue
        for line in path.read_text().splitlines():
            assert not line.lstrip().startswith(("from ..", "from hf_simvq")), f"{path.name}: {line}"


def test_tools_outside_the_rule_are_never_copied_with_the_model():
    """No registered file imports an exempt tool, so transformers' copier (relative imports, recursively) skips it."""
    folder = Path(hf_simvq.__file__).parent / "models" / "simvq"
    registered = ("modeling_simvq.py", "configuration_simvq.py", "image_processing_simvq.py")
    copied = {Path(path).name for name in registered for path in get_relative_import_files(str(folder / name))}
    assert "quantization.py" in copied and copied.isdisjoint(NOT_COPIED)
