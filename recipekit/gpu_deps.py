"""Lazy imports of packages that only install or run with CUDA (requirements-gpu.txt)."""

from __future__ import annotations

import importlib
from types import ModuleType

from recipekit.errors import RecipekitError

GPU_REQUIREMENTS_FILE = "requirements-gpu.txt"


class MissingGpuPackage(RecipekitError, ImportError):
    """A GPU-only package is needed for the requested path but is not installed."""


def require_gpu_package(module: str, feature: str) -> ModuleType:
    """Import `module` or fail with a message naming the feature and the file to install."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingGpuPackage(
            f"{feature} needs the '{module}' package, which is not installed. "
            f"It needs a CUDA machine: pip install -r {GPU_REQUIREMENTS_FILE}  ({err})"
        ) from err
