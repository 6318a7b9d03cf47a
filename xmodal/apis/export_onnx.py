"""The ONNX driver of ``tools/export.py``: one :class:`Graph` (module, example inputs, output names,
metadata) written as one ``.onnx`` file with a dynamic batch axis by torch.onnx's torch.export-based
exporter. What goes into the graphs is decided in :mod:`xmodal.apis.export`."""

from __future__ import annotations

import inspect
from pathlib import Path

import torch

from xmodal.models.base import ExportGraph

LARGE_MODEL_BYTES = 1 << 30  # above this, weights go to an external ``.onnx.data`` file (protobuf's 2 GB limit)


class ExportError(RuntimeError):
    """The ONNX export or its parity check failed (the inputs were fine)."""


# -- the student -------------------------------------------------------------------------------------------


Graph = ExportGraph  # one ONNX file: module, example inputs, output names, metadata


def onnx_paths(onnx: Path, parts: list[str]) -> list[Path]:
    """``student.onnx`` for a single graph; ``student.image.onnx``, ``student.text.onnx`` for several."""
    return [onnx if not part else onnx.with_name(onnx.stem + part + onnx.suffix) for part in parts]


def export_graph(graph: Graph, path: Path, external_data: bool = False) -> None:
    """Export with a dynamic batch axis (one dimension shared by all inputs) into ``path``, with the metadata."""
    batch = torch.export.Dim("batch")
    specs = tuple({0: batch} for _ in graph.inputs)
    # a ``*tensors`` forward takes its inputs as one tuple argument
    star = any(p.kind is p.VAR_POSITIONAL for p in inspect.signature(graph.module.forward).parameters.values())
    dynamic = (specs,) if star else specs
    try:
        program = torch.onnx.export(graph.module.eval(), tuple(graph.inputs.values()), None, dynamo=True,
                                    input_names=list(graph.inputs), output_names=graph.outputs,
                                    dynamic_shapes=dynamic, verbose=False)
    except ImportError as err:  # torch.onnx needs onnxscript (and onnx)
        raise ExportError(f"ONNX export needs the export extra ({err}): pip install 'xmodal[export]'") from err
    except Exception as err:  # an operator or Python construct that torch.export / ONNX cannot express
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ExportError(f"ONNX export of {type(graph.module.model).__name__} failed: {first}") from err
    program.model.metadata_props.update(graph.metadata)
    program.save(str(path), external_data=external_data)
