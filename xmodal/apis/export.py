"""``tools/export.py CONFIG CHECKPOINT --out student.pth [--onnx student.onnx]``: the deployable student.

CONFIG is the config the checkpoint was trained with: a distiller (``Distiller``, MST-Distill's stage
models or a staged MST recipe, ``RetrievalDistiller``, the BEV UniDistill configs), whose ``model.student``
is exported, or a plain model config, whose whole model is. Only the student is built: the teachers,
masks, router and connectors are neither built nor loaded (a teacher would need its own checkpoint),
and the student takes the ``student.*`` weights of the checkpoint strictly through
:func:`~xmodal.engine.checkpoint.load_weights` (which loads through the trusted
:func:`~xmodal.engine.checkpoint.load_checkpoint_file`: a pickle that would run code is refused).
``--out`` then holds ``{"state_dict": student.state_dict(), "meta": ...}``, what
``Distiller.student_state_dict()`` and ``StudentExportHook``'s ``student_best.pth`` hold: it loads into
the plain student config (``tools/test.py configs/digits_av/student_image.py student.pth``).

``--onnx`` also writes the student's inference forward as ONNX, batch axis dynamic
(:mod:`xmodal.apis.export_onnx`; the parity check is :mod:`xmodal.apis.export_parity`):

* models fed modality tensors (``ModalityClassifier``, ``DualHeadClassifier``, ``FuseNetSegmenter``):
  one graph, one input per modality named after it, outputs ``logits`` and ``embedding``;
* ``DualEncoder``: two graphs, ``<stem>.image.onnx`` (``image`` → ``image_embedding``) and
  ``<stem>.text.onnx`` (``text``: token ids from the model's open_clip tokenizer → ``text_embedding``),
  since a retrieval index embeds its gallery and its queries apart;
* other students (the BEV detectors, fed point-cloud lists and camera geometry) are refused with an
  error naming what is supported.

The example inputs are the first samples of the config's test split (else val) built through the
dataset registry, or random tensors of the shapes given by ``--input-shape modality=C,H,W``. With
onnxruntime installed, ``--check`` (default) compares onnxruntime's CPU outputs with the PyTorch
student's on those inputs, and on the first one alone (another batch size), and fails if the largest
absolute difference exceeds ``--atol`` (1e-4).

The exporter is torch.onnx's default, torch.export-based one (``dynamo=True``): the TorchScript
exporter (``dynamo=False``) has no ONNX translation for the antialiased bilinear resize that
``DualEncoder`` applies to its input images.

Every file is written only after the export and the check succeeded, each atomically (temp file +
rename); an existing output is replaced only with ``--force``. Exit status: 2 for bad input (config,
checkpoint, arguments, existing outputs), 1 when the ONNX export or its parity check fails.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import sys
import tempfile
from functools import partial
from pathlib import Path

import torch
from mmengine.config import Config, DictAction
from mmengine.registry import FUNCTIONS, init_default_scope
from torch import nn

import xmodal.engine  # noqa: F401  (trusted checkpoint loading, atomic writes)
from xmodal.apis.config import load_config
from xmodal.apis.errors import cli_errors
from xmodal.apis.export_onnx import LARGE_MODEL_BYTES, ExportError, Graph, export_graph, onnx_paths
from xmodal.apis.export_parity import parity_or_skip
from xmodal.apis.stages import is_staged, stage_dir, test_config
from xmodal.engine.checkpoint import load_weights, resolve_checkpoint, save_checkpoint_file
from xmodal.models.base import TaskModel
from xmodal.registry import DATASETS, MODELS

NUM_SAMPLES = 4  # example batch for the export and the parity check
PLACEHOLDER_CAPTIONS = ("a photo", "a red circle above a small blue square")  # text graph inputs without a dataset


def student_config(cfg: Config) -> dict:
    """The student's model config: a distiller's ``student``, or the model itself."""
    return cfg.model["student"] if "student" in cfg.model else cfg.model


def load_student(config: str, checkpoint: str, cfg_options: dict | None = None) -> tuple[nn.Module, Config, Path, dict]:
    """Build the student of ``config`` alone and load its weights strictly from ``checkpoint``."""
    cfg = load_config(config, cfg_options)
    if is_staged(cfg):  # a staged recipe's result is its last stage's model (as in tools/test.py)
        last = stage_dir(cfg, len(cfg.stages))
        if Path(checkpoint).is_dir() and (Path(checkpoint) / last.name).is_dir():
            checkpoint = Path(checkpoint) / last.name
        cfg = test_config(cfg)
    init_default_scope(cfg.get("default_scope", "xmodal"))  # no Runner builds anything here
    path = resolve_checkpoint(checkpoint)
    student = MODELS.build(student_config(cfg))
    saved = load_weights(student, path, what="student" if "student" in cfg.model else "model")
    student.eval().requires_grad_(False)
    return student, cfg, path, saved


def student_checkpoint(student: nn.Module, config: str, path: Path, saved: dict) -> dict:
    meta = {"source": str(path), "config": str(config), "model": type(student).__name__}
    old = saved.get("meta") if isinstance(saved, dict) else None
    for key in ("epoch", "iter"):
        if isinstance(old, dict) and isinstance(old.get(key), int):
            meta[key] = old[key]
    return {"state_dict": student.state_dict(), "meta": meta}


# -- example inputs ---------------------------------------------------------------------------------------
def parse_input_shapes(items: list[str] | None) -> dict[str, tuple[int, ...]]:
    """``["image=1,28,28", ...]`` → ``{"image": (1, 28, 28)}`` (shapes without the batch axis)."""
    shapes = {}
    for item in items or []:
        name, sep, dims = item.partition("=")
        try:
            shape = tuple(int(d) for d in dims.split(","))
        except ValueError:
            shape = ()
        if not sep or not name or not shape or min(shape) < 1:
            raise ValueError(f"--input-shape {item!r}: expected MODALITY=D1,D2,... with positive integer sizes "
                             f"(the shape of one sample, without the batch axis), e.g. image=1,28,28")
        shapes[name] = shape
    return shapes


def dataset_batch(cfg: Config, config: str, count: int = NUM_SAMPLES) -> tuple[dict, str, dict]:
    """The first ``count`` samples of the test split (else val), collated as the dataloader does."""
    for split in ("test", "val"):
        loader = cfg.get(f"{split}_dataloader")
        if loader and loader.get("dataset"):
            break
    else:
        raise ValueError(f"{config}: no test_dataloader or val_dataloader with a dataset to take example inputs "
                         f"from; give the input shapes with --input-shape MODALITY=C,H,W")
    try:
        dataset = DATASETS.build(loader["dataset"])
    except Exception as err:  # whatever the dataset needs is missing: say what to do instead
        raise ValueError(f"{config}: could not build the {split} dataset for example inputs ({err}); prepare the "
                         f"data, or give the input shapes with --input-shape MODALITY=C,H,W") from err
    if len(dataset) == 0:
        raise ValueError(f"{config}: the {split} split is empty; give --input-shape MODALITY=C,H,W instead")
    # torch.export specialises a batch axis of size 1, so the example batch has at least two rows
    samples = [dataset[i % len(dataset)] for i in range(max(2, min(count, len(dataset))))]
    collate_cfg = dict(loader.get("collate_fn") or dict(type="pseudo_collate"))
    collate = collate_cfg.pop("type")
    collate = FUNCTIONS.get(collate) if isinstance(collate, str) else collate
    batch = partial(collate, **collate_cfg)(samples)
    meta = getattr(dataset, "metainfo", None) or {}
    return batch, f"{len(samples)} samples of the {split} split", meta


def random_batch(shapes: dict[str, tuple[int, ...]], count: int = 2) -> dict:
    generator = torch.Generator().manual_seed(0)
    return {name: torch.randn((count, *shape), generator=generator) for name, shape in shapes.items()}


# -- what goes into the ONNX graphs: each task model says (TaskModel.export_graphs) ---------------------------
def input_names(model: nn.Module) -> list[str]:
    """What an example batch must provide for the student's graphs."""
    if not isinstance(model, TaskModel):
        raise ValueError(f"--onnx: ONNX export of a {type(model).__name__} student is not supported; it covers "
                         f"xmodal task models (ModalityClassifier, DualHeadClassifier, FuseNetSegmenter: one input "
                         f"per modality; DualEncoder: image and text graphs). Write the student-only checkpoint "
                         f"without --onnx.")
    return model.export_inputs()


def graph_suffixes(model: nn.Module) -> list[str]:
    """One graph per student, two (image and text tower) for a dual encoder."""
    input_names(model)  # refuses unsupported students
    return model.export_suffixes()


def graphs(model: nn.Module, batch: dict, meta: dict) -> list[Graph]:
    """The ONNX graphs of ``model`` with example inputs taken from ``batch``."""
    names = input_names(model)
    missing = [n for n in names if n not in batch]
    if missing:
        raise ValueError(f"--onnx: the example batch has no {missing} (it has {sorted(batch)}); the student reads "
                         f"{names}: give --input-shape for each")
    common = {"xmodal.model": type(model).__name__}
    if meta.get("classes"):
        common["xmodal.classes"] = json.dumps(list(meta["classes"]))
    return [dataclasses.replace(g, metadata={**common, **g.metadata}) for g in model.export_graphs(batch)]


# -- export ------------------------------------------------------------------------------------------------------
def _check_free(paths: list[Path], force: bool) -> None:
    for path in paths:
        if path.is_dir():
            raise IsADirectoryError(f"{path}: is a directory; give a file path")
        if path.exists() and not force:
            raise FileExistsError(f"{path} already exists; pass --force to overwrite it, or choose another path")


def _describe(graph: Graph, path: Path) -> str:
    ins = ", ".join(f"{n} [batch, {', '.join(map(str, v.shape[1:]))}] {str(v.dtype).removeprefix('torch.')}"
                    for n, v in graph.inputs.items())
    return f"{path} (inputs: {ins}; outputs: {', '.join(graph.outputs)})"


def export(config: str, checkpoint: str, out: str, onnx: str | None = None, input_shapes: list[str] | None = None,
           check: bool = True, atol: float = 1e-4, force: bool = False, cfg_options: dict | None = None) -> dict:
    """Write the student-only checkpoint (and the ONNX graphs); returns what was written and the parity."""
    out_path = Path(out)
    shapes = parse_input_shapes(input_shapes)
    if onnx is not None and Path(onnx).resolve() == out_path.resolve():
        raise ValueError(f"--out and --onnx are the same file ({out}); give two paths")
    _check_free([out_path], force)
    student, cfg, path, saved = load_student(config, checkpoint, cfg_options)
    report = {"checkpoint": str(out_path), "source": str(path), "model": type(student).__name__,
              "parameters": sum(p.numel() for p in student.parameters()), "onnx": [], "max_abs_diff": None}
    with contextlib.ExitStack() as stack:
        staged: list[tuple[Path, Path]] = []  # (temp file, destination): moved into place once all succeeded
        if onnx is not None:
            targets = onnx_paths(Path(onnx), graph_suffixes(student))
            external = sum(p.numel() * p.element_size() for p in student.parameters()) > LARGE_MODEL_BYTES
            _check_free(targets + [t.with_name(t.name + ".data") for t in targets if external], force)
            parts, source = _graphs_for(student, cfg, config, shapes)
            diffs = []
            for graph, target in zip(parts, targets):
                target.parent.mkdir(parents=True, exist_ok=True)
                # beside the target, so that the final rename stays on one file system (atomic)
                tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=".xmodal-export-",
                                                                           dir=target.parent)))
                export_graph(graph, tmp / target.name, external)
                written = sorted(tmp.iterdir(), key=lambda f: f.name == target.name)  # external data first
                staged += [(f, target.with_name(f.name)) for f in written]
                report["onnx"].append(_describe(graph, target))
                if check:
                    diffs.append(parity_or_skip(graph, tmp / target.name))
            if diffs and all(d is not None for d in diffs):
                report["max_abs_diff"], report["parity_inputs"] = max(diffs), source
                if max(diffs) > atol:
                    raise ExportError(f"ONNX parity check failed: onnxruntime and PyTorch outputs differ by up to "
                                      f"{max(diffs):.3g} > --atol {atol:g} on {source}; nothing was written")
        save_checkpoint_file(student_checkpoint(student, config, path, saved), out_path)
        for temp, target in staged:
            os.replace(temp, target)
    return report


def _graphs_for(student: nn.Module, cfg: Config, config: str, shapes: dict) -> tuple[list[Graph], str]:
    """The student's graphs with example inputs: random ones of the given shapes, else dataset samples."""
    names = input_names(student)
    if shapes:
        unknown = sorted(set(shapes) - set(names))
        if unknown:
            raise ValueError(f"--input-shape names {unknown}, which the student does not read; it reads {names}")
        batch, source, meta = random_batch(shapes), "random inputs of the --input-shape shapes", {}
        if "text" in names:  # the text graph takes token ids: tokenise placeholder captions
            batch["text"] = list(PLACEHOLDER_CAPTIONS)
            source += " and placeholder captions"
    else:
        batch, source, meta = dataset_batch(cfg, config)
        batch = student.data_preprocessor(batch, False)
    return graphs(student, batch, meta), source


# -- command line ---------------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Write the student alone (no teachers, masks, router or connectors) as a checkpoint that loads "
                    "into the plain student config, and optionally as ONNX.")
    parser.add_argument("config", help="the config the checkpoint was trained with (a distiller or a plain model)")
    parser.add_argument("checkpoint", help="checkpoint file, or a work dir to use its best_*.pth")
    parser.add_argument("--out", required=True, help="the student-only checkpoint to write (.pth)")
    parser.add_argument("--onnx", help="also write the student's inference graph here (.onnx; a DualEncoder "
                        "gives <stem>.image.onnx and <stem>.text.onnx)")
    parser.add_argument("--input-shape", nargs="+", metavar="MODALITY=C,H,W",
                        help="example input shapes (one sample, no batch axis) instead of samples of the config's "
                             "test split, e.g. image=1,28,28")
    parser.add_argument("--check", action=argparse.BooleanOptionalAction, default=True,
                        help="compare onnxruntime (CPU) with PyTorch on the example inputs (default: on)")
    parser.add_argument("--atol", type=float, default=1e-4, help="largest allowed |ONNX - PyTorch| (default 1e-4)")
    parser.add_argument("--force", action="store_true", help="overwrite existing output files")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, help="override config keys: key=value ...")
    return parser.parse_args(argv)


@cli_errors
def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    try:
        report = export(args.config, args.checkpoint, args.out, args.onnx, args.input_shape, args.check, args.atol,
                        args.force, args.cfg_options)
    except ExportError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(1) from None
    print(f"student ({report['model']}, {report['parameters']:,} parameters) from {report['source']}")
    print(f"wrote {report['checkpoint']} (student-only checkpoint)")
    for line in report["onnx"]:
        print(f"wrote {line}")
    if report["max_abs_diff"] is not None:
        print(f"parity, onnxruntime CPU vs PyTorch on {report['parity_inputs']}: max abs diff "
              f"{report['max_abs_diff']:.3g} (limit {args.atol:g})")
    return report


if __name__ == "__main__":
    main()
