"""The parity check of an exported graph: onnxruntime's CPU outputs against the PyTorch module's, on the
example batch and on its first row alone (another batch size)."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from xmodal.apis.export_onnx import ExportError, Graph


def parity(graph: Graph, path: Path) -> float:
    """Largest |onnxruntime − PyTorch| over the outputs, on the example batch and on its first row alone."""
    import numpy as np
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for rows in (slice(None), slice(0, 1)):
        inputs = {name: value[rows] for name, value in graph.inputs.items()}
        with torch.no_grad():
            expected = graph.module(*inputs.values())
        expected = expected if isinstance(expected, tuple) else (expected,)
        got = session.run(graph.outputs, {name: value.numpy() for name, value in inputs.items()})
        for name, want, have in zip(graph.outputs, expected, got):
            if tuple(have.shape) != tuple(want.shape):
                raise ExportError(f"{path.name}: output '{name}' has shape {tuple(have.shape)} in onnxruntime, "
                                  f"{tuple(want.shape)} in PyTorch")
            worst = max(worst, float(np.abs(have.astype(np.float64) - want.double().numpy()).max(initial=0.0)))
    return worst


def parity_or_skip(graph: Graph, path: Path) -> float | None:
    """:func:`parity`, or None (with a note on stderr) when onnxruntime is not installed."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        print("onnxruntime is not installed: parity check skipped (pip install onnxruntime)", file=sys.stderr)
        return None
    return parity(graph, path)
