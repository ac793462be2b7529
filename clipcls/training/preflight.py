"""Checks a run makes before anything slow: is the model there, is the accelerator there.

Without them a typo in `model_name`, a machine without network, or `--accelerator gpu` on a
machine without one ends only after the data set has been indexed and split, in a traceback of
50-90 lines from transformers or Lightning. Here each is one line naming the value at fault.
"""

from __future__ import annotations

from pathlib import Path

from clipcls.errors import ClipclsError


class PreflightError(ClipclsError):
    """A model or accelerator the run cannot have, naming the config value."""


def _looks_like_path(name: str) -> bool:
    """A Hub id is `name` or `owner/name`; anything else is meant as a directory."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name


def check_model_name(name: str) -> None:
    """`name` is a built-in model, a model directory, or a Hub model whose config can be had
    (from the local Hugging Face cache when offline); else a PreflightError saying which."""
    from clipcls.model.mini import MINI_NAME
    from clipcls.model.tiny import TINY_NAME

    if name in (TINY_NAME, MINI_NAME):
        return
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise PreflightError(f"model_name {name!r} is a directory without config.json: not a saved model")
        return
    if path.exists() or _looks_like_path(name):
        raise PreflightError(f"model_name {name!r}: no such model directory")
    _check_hub_model(name)


def _check_hub_model(name: str) -> None:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    try:
        hf_hub_download(name, "config.json", local_files_only=True)  # in the cache: nothing to ask
        return
    except HFValidationError:
        raise PreflightError(f"model_name {name!r} is neither a local directory nor a valid Hub model name") from None
    except LocalEntryNotFoundError:
        pass
    try:
        from huggingface_hub import constants, model_info

        if constants.HF_HUB_OFFLINE:
            raise LocalEntryNotFoundError("offline")
        model_info(name, timeout=10)  # one request, no retries: a failure ends in seconds
    except HFValidationError:
        raise PreflightError(f"model_name {name!r} is neither a local directory nor a valid Hub model name") from None
    except GatedRepoError:
        raise PreflightError(f"model_name {name!r}: a gated Hub model; log in with `hf auth login` first") from None
    except RepositoryNotFoundError:
        raise PreflightError(
            f"model_name {name!r} is neither a local directory nor a model on the Hugging Face Hub (check the spelling)"
        ) from None
    except LocalEntryNotFoundError:
        raise PreflightError(
            f"model_name {name!r} is neither a local directory nor in the Hugging Face cache, and the Hub "
            "cannot be reached (offline, or HF_HUB_OFFLINE is set): download it once online, or pass a directory"
        ) from None
    except Exception as err:  # noqa: BLE001 - network and HTTP errors of every kind: one line
        first = (str(err).splitlines() or [""])[0]
        if "Connect" in type(err).__name__ or "Timeout" in type(err).__name__:
            raise PreflightError(
                f"model_name {name!r} is neither a local directory nor in the Hugging Face cache, and the Hub "
                f"cannot be reached ({first}): download it once online, or pass a directory"
            ) from None
        raise PreflightError(f"model_name {name!r} cannot be loaded: {type(err).__name__}: {first}") from None


def check_accelerator(accelerator: str) -> None:
    """`--accelerator gpu`/`cuda`/`mps` on a machine that has none is an error, not a traceback."""
    import torch

    wanted = accelerator.lower()
    if wanted in ("gpu", "cuda") and not torch.cuda.is_available():
        built = f"a CUDA {torch.version.cuda} build" if torch.version.cuda else "a CPU-only build"
        raise PreflightError(
            f"accelerator {accelerator!r}: no CUDA GPU is available (PyTorch {torch.__version__} is {built}); "
            "use --accelerator cpu or auto"
        )
    if wanted == "mps" and not torch.backends.mps.is_available():
        raise PreflightError(f"accelerator {accelerator!r}: Apple's MPS is not available here; use cpu or auto")
