"""Optional dependencies (the `deploy` extra): imported on first use, with an error that says
which package is missing and how to install it, instead of a bare ModuleNotFoundError."""

from __future__ import annotations

import importlib
from types import ModuleType

from clipcls.errors import ClipclsError

# import name -> pip package that provides it
PACKAGES = {
    "onnx": "onnx",
    "onnxscript": "onnxscript",
    "onnxruntime": "onnxruntime",
    "openvino": "openvino",
    "nncf": "nncf",
    "fastapi": "fastapi",
    "uvicorn": "uvicorn",
    "python_multipart": "python-multipart",
    "mlflow": "mlflow-skinny",
    "wandb": "wandb",
}


class MissingDependencyError(ClipclsError, ImportError):
    """An optional package a feature needs is not installed; the message names it."""


def require(module: str, feature: str) -> ModuleType:
    """Import `module` for `feature` (e.g. "ONNX export"), or raise naming the pip package."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        package = PACKAGES.get(module.split(".")[0], module)
        raise MissingDependencyError(
            f"{feature} needs the {package!r} package, which is not installed: "
            f"pip install {package} (or pip install 'clipcls[deploy]')"
        ) from err
