"""A stable description of a transform, for dataset fingerprints (and so teacher-output caches).

``repr`` is not enough: a torch module prints its sub-modules but not their hyper-parameters
(``MelSpectrogram(n_mels=64)`` and ``MelSpectrogram(n_mels=32)`` print alike), and a plain object or a
function prints its memory address, which changes from run to run. :func:`describe` walks the object
instead: every argument a transform keeps as an attribute, every tensor by a hash of its bytes, every
sub-module, and a function by its name, code, defaults and closure. Two transforms that can produce
different samples get different descriptions; the same transform gets the same one in every process.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import types
from typing import Any

import numpy as np
import torch
from torch import nn

_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_MAX_DEPTH = 32


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _tensor(value: torch.Tensor) -> dict:
    flat = value.detach().cpu().reshape(-1).contiguous()
    return {"tensor": str(value.dtype), "shape": list(value.shape), "sha256": _digest(flat.view(torch.uint8).numpy())}


def _function(fn: types.FunctionType, seen: frozenset[int], depth: int) -> dict:
    code = fn.__code__
    cells = [cell.cell_contents for cell in fn.__closure__ or () if cell.cell_contents is not fn]
    return {"function": f"{fn.__module__}.{fn.__qualname__}",
            "code": _digest(code.co_code + _ADDRESS.sub("", repr(code.co_consts)).encode()),
            "defaults": _describe(fn.__defaults__, seen, depth),
            "kwdefaults": _describe(fn.__kwdefaults__, seen, depth),
            "closure": _describe(cells, seen, depth)}


def _module(module: nn.Module, seen: frozenset[int], depth: int) -> dict:
    # public attributes are the hyper-parameters (n_mels, hop_length, ...); the rest is torch's bookkeeping
    settings = {k: v for k, v in vars(module).items() if not k.startswith("_") and k != "training"}
    return {"module": f"{type(module).__module__}.{type(module).__qualname__}",
            "settings": _describe(settings, seen, depth),
            "parameters": {n: _tensor(p) for n, p in module.named_parameters(recurse=False)},
            "buffers": {n: _tensor(b) for n, b in module.named_buffers(recurse=False)},
            "children": {n: _describe(c, seen, depth) for n, c in module.named_children()}}


def _describe(obj: Any, seen: frozenset[int], depth: int) -> Any:
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if depth > _MAX_DEPTH or id(obj) in seen:
        return f"<{type(obj).__qualname__}: nested too deep or cyclic>"
    seen, depth = seen | {id(obj)}, depth + 1
    if isinstance(obj, bytes):
        return {"bytes": _digest(obj)}
    if isinstance(obj, torch.Tensor):
        return _tensor(obj)
    if isinstance(obj, np.ndarray) and obj.dtype != object:
        return {"array": str(obj.dtype), "shape": list(obj.shape),
                "sha256": _digest(np.ascontiguousarray(obj).tobytes())}
    if isinstance(obj, dict):
        return {"dict": sorted(([_describe(k, seen, depth), _describe(v, seen, depth)] for k, v in obj.items()),
                               key=lambda item: json.dumps(item, sort_keys=True, default=str))}
    if isinstance(obj, (list, tuple)):
        return {type(obj).__name__: [_describe(v, seen, depth) for v in obj]}
    if isinstance(obj, (set, frozenset)):
        return {"set": sorted((_describe(v, seen, depth) for v in obj), key=lambda v: json.dumps(v, sort_keys=True))}
    if isinstance(obj, nn.Module):
        return _module(obj, seen, depth)
    if isinstance(obj, types.FunctionType):
        return _function(obj, seen, depth)
    if isinstance(obj, functools.partial):
        return {"partial": _describe(obj.func, seen, depth), "args": _describe(obj.args, seen, depth),
                "keywords": _describe(obj.keywords, seen, depth)}
    if isinstance(obj, (types.BuiltinFunctionType, types.MethodType, type)):
        bound = getattr(obj, "__self__", None)
        return {"callable": f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', repr(obj))}",
                "self": None if bound is None or isinstance(bound, types.ModuleType) else _describe(bound, seen, depth)}
    if hasattr(obj, "__dict__") and not isinstance(obj, types.ModuleType):
        return {"object": f"{type(obj).__module__}.{type(obj).__qualname__}",
                "state": _describe(vars(obj), seen, depth)}
    return {"repr": f"{type(obj).__qualname__}:{_ADDRESS.sub('', repr(obj))}"}


def describe(obj: Any) -> Any:
    """A JSON-serialisable description of ``obj`` that changes when anything it computes with changes:
    its class, attributes, tensors (hashed), sub-modules, and for functions their code and closure."""
    return _describe(obj, frozenset(), 0)


def describe_json(obj: Any) -> str:
    """:func:`describe` as canonical JSON text, ready to hash."""
    return json.dumps(describe(obj), sort_keys=True)
