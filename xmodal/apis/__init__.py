"""Programmatic entry points behind the commands, and the Python API (docs/api.md)::

    from xmodal.apis import fit, evaluate, load_student, export_student

The API names are imported on first use, so ``import xmodal.apis.<module>`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

_API = ("fit", "evaluate", "load_student", "export_student", "TrainResult")


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module("xmodal.apis.api"), name)
    raise AttributeError(f"module 'xmodal.apis' has no attribute {name!r}")


__all__ = list(_API)
