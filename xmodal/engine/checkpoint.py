"""Checkpoints: atomic writes, one trusted loader, checked state-dict loading.

* Every local file mmengine writes (checkpoints, ``last_checkpoint``) goes through
  :class:`AtomicLocalBackend`: temp file in the same directory, fsync, rename. A crash leaves the
  previous file, never half of a new one.
* Every checkpoint xmodal or mmengine loads from a local path goes through
  :func:`load_checkpoint_file`: ``torch.load(weights_only=True)`` with an explicit allow-list of
  the few non-tensor classes mmengine stores. A pickle that would run code is refused; a truncated
  or corrupt file is a :class:`CheckpointError` naming it.
* ``*.safetensors`` files hold weights only (no pickle at all): they load as ``{"state_dict": ...}``
  (plus ``"meta"`` when xmodal wrote one) wherever a checkpoint is accepted, and
  :func:`save_checkpoint_file` writes one when the path ends with ``.safetensors``.
"""

from __future__ import annotations

import difflib
import errno
import io
import json
import os
import pickle
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from mmengine.fileio.backends import LocalBackend, register_backend
from mmengine.logging.history_buffer import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader
from torch import nn

from xmodal.errors import CheckpointError, DiskFullError


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


SAFETENSORS_SUFFIX = ".safetensors"
_META_KEY = "xmodal_meta"  # safetensors metadata entry holding the checkpoint's JSON "meta"


def load_checkpoint_file(path: str | os.PathLike, map_location: str | torch.device | None = "cpu") -> dict:
    """Load a checkpoint with ``weights_only=True`` and xmodal's allow-list; clear errors otherwise.

    ``*.safetensors`` files are read with safetensors (no unpickling) and returned as
    ``{"state_dict": tensors}``, with ``"meta"`` when :func:`save_checkpoint_file` stored one."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    if path.suffix == SAFETENSORS_SUFFIX:
        return _load_safetensors(path, map_location)
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        blocked = re.search(r"GLOBAL ([\w.]+)", str(err))
        if blocked is None:  # the weights-only unpickler met bytes that are no pickle opcode: damage, not a threat
            raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (truncated or corrupt?): "
                                  f"{_unpickler_reason(err)}") from None
        raise CheckpointError(
            f"{path}: refused to load: the file asks for '{blocked.group(1)}', which is not on xmodal's allow-list "
            "of safe types (tensors, plain containers, NumPy arrays, mmengine's HistoryBuffer). Nothing from it was "
            "executed. If you trust the file, load it yourself and save its state dict (torch.save or .safetensors)."
        ) from None
    except Exception as err:  # noqa: BLE001 - with weights_only=True nothing ran: any failure means a damaged file
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (truncated or corrupt?): "
                              f"{_first_sentence(err)}") from None


def _first_sentence(err: Exception) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    if len(text) > 120 and ". " in text:  # torch appends paragraphs of advice to zip errors
        text = text[:text.index(". ") + 1]
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _unpickler_reason(err: Exception) -> str:
    """torch wraps the unpickler's complaint ("Unsupported operand 216") in paragraphs of advice."""
    lines = (line.strip() for line in str(err).splitlines())
    return next((line for line in lines if line.startswith("Unsupported")), "not a valid pickle stream")


class WeightsOnlyCheckpoint(dict):
    """What a ``.safetensors`` file loads as: asking it for more than weights (``--resume`` wants
    ``meta`` and the optimizer) names the file and the way out instead of a bare ``KeyError``."""

    def __init__(self, path: Path, **items) -> None:
        super().__init__(**items)
        self.path = path

    def __missing__(self, key):
        raise CheckpointError(f"{self.path}: a .safetensors file holds weights only, not '{key}': resuming a run "
                              "needs its full .pth checkpoint; to start from these weights use load_from")


def _load_safetensors(path: Path, map_location) -> dict:
    try:
        from safetensors import safe_open
    except ImportError as err:
        raise CheckpointError(f"{path}: reading .safetensors needs the safetensors package: "
                              "pip install safetensors") from err
    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            state = {key: fh.get_tensor(key) for key in fh.keys()}
            metadata = fh.metadata() or {}
    except Exception as err:  # noqa: BLE001 - safetensors never executes code: any failure means a damaged file
        reason = str(err).strip() or type(err).__name__
        raise CheckpointError(f"{path}: not a readable safetensors file (truncated or corrupt?): {reason}") from None
    if isinstance(map_location, (str, torch.device)) and str(map_location) != "cpu":
        state = {key: value.to(map_location) for key, value in state.items()}
    checkpoint: dict = WeightsOnlyCheckpoint(path, state_dict=state)
    if _META_KEY in metadata:
        try:
            checkpoint["meta"] = json.loads(metadata[_META_KEY])
        except json.JSONDecodeError:
            raise CheckpointError(f"{path}: metadata '{_META_KEY}' is not valid JSON") from None
    return checkpoint


@CheckpointLoader.register_scheme(prefixes="", force=True)
def _mmengine_local_loader(filename: str, map_location=None) -> dict:
    """mmengine's loader for local paths (``load_from``, ``--resume``), replaced by the trusted one."""
    return load_checkpoint_file(filename, map_location=map_location)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_WRITE_BLOCK = 1 << 24


def _size(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def disk_full_error(path: Path, needed: int, err: OSError) -> DiskFullError:
    """The error of a write to ``path`` that ran out of space: the file, what it needed and what is free."""
    try:
        free = f"{_size(shutil.disk_usage(path.parent).free)} free"
    except OSError:
        free = "free space unknown"
    kept = f"the previous {path.name} is unchanged" if path.exists() else f"no {path.name} was written"
    error = DiskFullError(f"{path}: cannot write {_size(needed)}: {os.strerror(err.errno)} ({free} on "
                          f"{path.parent}); {kept}. Free some space (old checkpoints, max_keep_ckpts) or write "
                          "elsewhere")
    error.errno = err.errno  # set after construction: str() stays the message above
    return error


def atomic_write_bytes(data: bytes, path: str | os.PathLike) -> None:
    """Write ``data`` to ``path`` via a temp file + fsync + rename in the same directory. A write that
    runs out of space removes the temp file and raises :class:`DiskFullError`; ``path`` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        try:
            view = memoryview(data)
            while view:  # os.write may write less than asked
                view = view[os.write(fd, view[:_WRITE_BLOCK]):]
            os.fchmod(fd, 0o666 & ~_umask())  # mkstemp's 0600 -> what open() would have given
            os.fsync(fd)  # a network or delayed-allocation file system reports ENOSPC here
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        if err.errno in _NO_SPACE:
            raise disk_full_error(path, len(data), err) from err
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


TEMP_GLOB = ".*.tmp"  # what atomic_write_bytes names its temp files: .<name>.<random>.tmp


def remove_stale_temp_files(directory: str | os.PathLike) -> list[Path]:
    """Delete the temp files that writes killed before their rename left in ``directory``; they are
    never read (a finished write renames its temp file), so a resumed run clears them."""
    directory = Path(directory)
    stale = [p for p in directory.glob(TEMP_GLOB) if p.is_file()] if directory.is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def save_checkpoint_file(obj: dict, path: str | os.PathLike) -> None:
    """Write a checkpoint atomically: ``torch.save`` format, or safetensors when ``path`` ends with
    ``.safetensors`` (then ``obj`` is ``{"state_dict": tensors}`` with an optional JSON-able ``"meta"``)."""
    if Path(path).suffix == SAFETENSORS_SUFFIX:
        atomic_write_bytes(_safetensors_bytes(obj, path), path)
        return
    if isinstance(obj, WeightsOnlyCheckpoint):  # pickled as a plain dict: the trusted loader knows no subclass
        obj = dict(obj)
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(buffer.getvalue(), path)


def _safetensors_bytes(obj: dict, path: str | os.PathLike) -> bytes:
    from safetensors.torch import save

    extra = sorted(set(obj) - {"state_dict", "meta"}) if isinstance(obj, dict) else []
    if extra:  # optimizer states, message hubs: safetensors holds tensors only
        raise CheckpointError(f"{path}: a .safetensors file holds weights only; cannot store {extra} "
                              "(save a full training checkpoint as .pth)")
    state = state_dict_of(obj)
    # clone: safetensors refuses tensors sharing storage (tied weights) and needs them contiguous
    tensors = {key: value.detach().cpu().contiguous().clone() for key, value in state.items()}
    metadata = {"format": "pt"}
    if obj.get("meta") is not None:
        try:
            metadata[_META_KEY] = json.dumps(obj["meta"])
        except TypeError as err:
            raise CheckpointError(f"{path}: 'meta' must be JSON-serialisable for .safetensors ({err})") from None
    return save(tensors, metadata=metadata)


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
