"""Checkpoints: atomic writes, one trusted loader, checked state-dict loading.

* Every local file mmengine writes (checkpoints, ``last_checkpoint``) goes through
  :class:`AtomicLocalBackend`: temp file in the same directory, fsync, rename. A crash leaves the
  previous file, never half of a new one.
* Every checkpoint xmodal or mmengine loads from a local path goes through
  :func:`load_checkpoint_file`: ``torch.load(weights_only=True)`` with an explicit allow-list of
  the few non-tensor classes mmengine stores. A pickle that would run code is refused.
"""

from __future__ import annotations

import difflib
import os
import pickle
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch
from mmengine.fileio.backends import LocalBackend, register_backend
from mmengine.logging.history_buffer import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader
from torch import nn


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used: missing, corrupt, untrusted or not matching the model."""


def _numpy_globals() -> list:
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray
    names = [np.ndarray, np.dtype, multiarray._reconstruct, multiarray.scalar]
    names += [type(np.dtype(t)) for t in ("float16", "float32", "float64", "int32", "int64", "uint32", "bool")]
    return names


# What mmengine writes besides tensors and plain containers: its message hub keeps HistoryBuffer
# objects (holding numpy arrays) and numpy scalars / RNG states.
SAFE_GLOBALS = [HistoryBuffer, *_numpy_globals()]


def _history_buffer_state(self: HistoryBuffer) -> dict:
    """mmengine pickles a HistoryBuffer with its statistics functions, which reach the pickle as
    ``getattr(HistoryBuffer, "min")``: allowing ``getattr`` would open the loader to arbitrary
    code. The functions are registered on the class at import, so the state can leave them out."""
    return {k: v for k, v in self.__dict__.items() if k != "statistics_methods"}


HistoryBuffer.__getstate__ = _history_buffer_state


def load_checkpoint_file(path: str | os.PathLike, map_location: str | torch.device | None = "cpu") -> dict:
    """Load a checkpoint with ``weights_only=True`` and xmodal's allow-list; clear errors otherwise."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0]
        raise CheckpointError(
            f"{path}: refused to load: the file holds objects outside xmodal's allow-list of safe types "
            f"({first}). Only load checkpoints you trust; nothing from it was executed."
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as err:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (truncated or corrupt?): {err}") from None


@CheckpointLoader.register_scheme(prefixes="", force=True)
def _mmengine_local_loader(filename: str, map_location=None) -> dict:
    """mmengine's loader for local paths (``load_from``, ``--resume``), replaced by the trusted one."""
    return load_checkpoint_file(filename, map_location=map_location)


def atomic_write_bytes(data: bytes, path: str | os.PathLike) -> None:
    """Write ``data`` to ``path`` via a temp file + fsync + rename in the same directory."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def save_checkpoint_file(obj: dict, path: str | os.PathLike) -> None:
    import io

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(buffer.getvalue(), path)


class AtomicLocalBackend(LocalBackend):
    """mmengine's local file backend with atomic ``put`` / ``put_text``."""

    def put(self, obj: bytes, filepath) -> None:
        atomic_write_bytes(obj, filepath)

    def put_text(self, obj: str, filepath, encoding: str = "utf-8") -> None:
        atomic_write_bytes(obj.encode(encoding), filepath)


register_backend("local", AtomicLocalBackend, force=True, prefixes="")


def state_dict_of(checkpoint: dict) -> dict:
    """The weights in a checkpoint: mmengine's ``{"state_dict": ...}`` or a bare state dict."""
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError("the checkpoint holds no state dict of tensors (expected key 'state_dict')")
    return state


def _strip_prefix_if_needed(state: dict, wanted: set[str], prefix: str = "student.") -> dict:
    """A full Distiller checkpoint loads into the plain student model: keep the student's weights."""
    if wanted & set(state):
        return state
    stripped = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    return stripped if wanted & set(stripped) else state


def load_weights(model: nn.Module, path: str | os.PathLike, what: str = "model") -> dict:
    """Load weights into ``model`` strictly; mismatches raise one error naming the keys and shapes."""
    checkpoint = load_checkpoint_file(path)
    try:
        state = state_dict_of(checkpoint)
    except CheckpointError as err:
        raise CheckpointError(f"{path}: {err}") from None
    expected = model.state_dict()
    state = _strip_prefix_if_needed(state, set(expected))
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = [f"{k}: checkpoint {tuple(state[k].shape)} vs {what} {tuple(expected[k].shape)}"
                   for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong_shape:
        lines = [f"{path}: the checkpoint does not match the {what}'s config."]
        if missing:
            hint = difflib.get_close_matches(missing[0], unexpected, n=1)
            lines.append(f"  missing keys ({len(missing)}): {_head(missing)}"
                         + (f" (did the checkpoint call it '{hint[0]}'?)" if hint else ""))
        if unexpected:
            lines.append(f"  unexpected keys ({len(unexpected)}): {_head(unexpected)}")
        if wrong_shape:
            lines.append(f"  shape mismatches ({len(wrong_shape)}): {_head(wrong_shape)}")
        raise CheckpointError("\n".join(lines))
    model.load_state_dict(state, strict=True)
    return checkpoint


def _head(items: list[str], n: int = 5) -> str:
    return ", ".join(items[:n]) + (f", ... (+{len(items) - n} more)" if len(items) > n else "")


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A checkpoint file, or a work dir: its single ``best_*.pth`` (else the one ``last_checkpoint`` names)."""
    path = Path(path).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        best = sorted(path.glob("best_*.pth"))
        if len(best) == 1:
            return best[0]
        if len(best) > 1:
            raise CheckpointError(f"{path}: several best_*.pth ({[b.name for b in best]}); name one file")
        last = path / "last_checkpoint"
        if last.is_file():
            return Path(last.read_text().strip())
        raise CheckpointError(f"{path}: no best_*.pth or last_checkpoint in this work dir; train it first")
    raise CheckpointError(f"{path}: no such checkpoint file or work dir")
