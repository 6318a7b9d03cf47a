"""Label budgets: which samples of a split keep their labels, and disjoint parts of a split.

Cross-modal distillation pays where the student's modality has few labels but many samples paired
with the teacher's modality. Two dataset fields express that (docs/label_scarce.md):

- ``subset=dict(part=0, of=2, seed=0)``: the split cut into ``of`` disjoint, class-stratified parts;
  the dataset is part ``part``. A teacher trained on part 0 and a student on part 1 never share a
  sample.
- ``labelled=dict(fraction=0.1, seed=0)`` or ``labelled=dict(ids_file="labelled_ids.json")``: a
  class-stratified, seeded subset keeps its labels; every other sample reads as unlabelled (label
  −1, or ``labelled=False`` for a detection scene). With ``fraction``, each class keeps
  ``max(1, round(fraction · n_class))`` samples, so no class is left without a label.

Ids are the dataset's row ids (positions in ``labels.npy`` / the manifest), stable whatever the
split or subset; ``labelled_ids.json`` in the work dir lists them (and is a valid ``ids_file``).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

UNLABELLED = -1  # label of an unlabelled sample (classification) or of every pixel of one (segmentation)
_TRAINING_ONLY = ("val", "validation", "test")


@dataclasses.dataclass(frozen=True)
class LabelBudget:
    fraction: float | None = None
    ids_file: str | None = None
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class Subset:
    part: int
    of: int
    seed: int = 0


def _fail(where: str, message: str) -> ValueError:
    return ValueError(f"{where}: {message}")


def parse_budget(cfg: dict | None, split: str, where: str = "labelled") -> LabelBudget | None:
    if cfg is None:
        return None
    if not isinstance(cfg, dict):
        raise _fail(where, f"expected dict(fraction=0.1, seed=0) or dict(ids_file='...'), got {cfg!r}")
    unknown = sorted(set(cfg) - {"fraction", "ids_file", "seed"})
    if unknown:
        raise _fail(where, f"unknown key(s) {unknown}; expected 'fraction' or 'ids_file', and 'seed'")
    if ("fraction" in cfg) == ("ids_file" in cfg):
        raise _fail(where, "give exactly one of 'fraction' (e.g. 0.1) or 'ids_file' (a labelled_ids.json)")
    if split in _TRAINING_ONLY:
        raise _fail(where, f"split '{split}' is an evaluation split; val and test keep every label (set "
                           f"'labelled' on the training split only)")
    fraction = cfg.get("fraction")
    if fraction is not None and (isinstance(fraction, bool) or not isinstance(fraction, (int, float))
                                 or not 0 < fraction <= 1):
        raise _fail(f"{where}.fraction", f"expected a number in (0, 1], got {fraction!r}")
    seed = cfg.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise _fail(f"{where}.seed", f"expected an integer, got {seed!r}")
    return LabelBudget(None if fraction is None else float(fraction), cfg.get("ids_file"), seed)


def parse_subset(cfg: dict | None, where: str = "subset") -> Subset | None:
    if cfg is None:
        return None
    if not isinstance(cfg, dict) or not {"part", "of"} <= set(cfg) or set(cfg) - {"part", "of", "seed"}:
        raise _fail(where, f"expected dict(part=0, of=2, seed=0), got {cfg!r}")
    part, of, seed = cfg["part"], cfg["of"], cfg.get("seed", 0)
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (part, of, seed)) or of < 2 \
            or not 0 <= part < of:
        raise _fail(where, f"expected integers with of ≥ 2 and 0 ≤ part < of, got {cfg!r}")
    return Subset(part, of, seed)


def _strata(labels: np.ndarray | None, n: int) -> list[np.ndarray]:
    """Positions grouped by class (one group when there are no per-sample classes)."""
    if labels is None:
        return [np.arange(n)]
    return [np.flatnonzero(labels == c) for c in np.unique(labels)]


def subset_positions(labels: np.ndarray | None, n: int, subset: Subset) -> np.ndarray:
    """Sorted positions of part ``subset.part``: each class is shuffled (seeded) and dealt to the
    parts in turn, so the parts are disjoint, cover the split and have the same class mix."""
    rng = np.random.default_rng(subset.seed)
    chosen = []
    for group in _strata(labels, n):
        order = rng.permutation(group)
        chosen.append(order[subset.part::subset.of])
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)


def budget_mask(labels: np.ndarray | None, rows: np.ndarray, budget: LabelBudget, where: str = "labelled",
                class_names: list | None = None) -> np.ndarray:
    """(n,) bool over the split's positions: which samples keep their labels. ``labels``: the
    positions' class ids (None: no per-sample class, e.g. segmentation maps); samples that are
    unlabelled on disk (−1) are never chosen."""
    n = len(rows)
    known = np.ones(n, bool) if labels is None else labels != UNLABELLED
    if budget.ids_file is not None:
        keep = np.isin(rows, _read_ids(budget.ids_file, rows, f"{where}.ids_file")) & known
        if labels is not None:
            missing = [int(c) for c in np.unique(labels[known]) if not keep[labels == c].any()]
            if missing:
                names = [class_names[c] if class_names and c < len(class_names) else c for c in missing]
                raise _fail(f"{where}.ids_file", f"class(es) {names} have samples in this split but none labelled; "
                                                 f"label at least one of each, or drop the class")
    else:
        rng = np.random.default_rng(budget.seed)
        keep = np.zeros(n, bool)
        groups = [np.flatnonzero(known)] if labels is None else \
            [np.flatnonzero(labels == c) for c in np.unique(labels[known])]
        for group in groups:
            keep[rng.permutation(group)[:max(1, round(budget.fraction * len(group)))]] = True
    if not keep.any():
        raise _fail(where, "no sample of this split is labelled")
    return keep


def _read_ids(path: str, rows: np.ndarray, where: str) -> np.ndarray:
    file = Path(path).expanduser()
    if not file.is_file():
        raise _fail(where, f"{file} does not exist; expected a JSON list of sample ids or a labelled_ids.json")
    try:
        data = json.loads(file.read_text())
    except json.JSONDecodeError as err:
        raise _fail(where, f"{file} is not valid JSON ({err})") from err
    ids = data.get("ids") if isinstance(data, dict) else data
    if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise _fail(where, f"{file}: expected a list of integer sample ids (or {{'ids': [...]}})")
    ids_array = np.asarray(ids, dtype=np.int64)
    values, counts = np.unique(ids_array, return_counts=True)
    if (counts > 1).any():
        raise _fail(where, f"{file}: id {int(values[counts > 1][0])} is listed twice")
    unknown = np.setdiff1d(values, rows)
    if unknown.size:
        raise _fail(where, f"{file}: id {int(unknown[0])} ({unknown.size} in all) is not a sample of this "
                           f"split/subset")
    return ids_array


def labelled_record(dataset) -> dict:
    """What ``labelled_ids.json`` holds for a dataset with a label budget."""
    flags = dataset.labelled_flags
    rows = np.asarray(dataset.rows)
    return {
        "data_root": str(dataset.data_root), "split": dataset.split,
        "subset": dataclasses.asdict(dataset.subset) if dataset.subset else None,
        "labelled": dataclasses.asdict(dataset.budget) if dataset.budget else None,
        "num_samples": int(len(flags)), "num_labelled": int(flags.sum()),
        "ids": [int(r) for r in rows[flags]],
    }
