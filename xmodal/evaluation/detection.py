"""nuScenes 3-D detection metric: mAP, the five TP errors and NDS, with the devkit's rules, in numpy.

Caesar et al., "nuScenes: A multimodal dataset for autonomous driving" (CVPR 2020); the reference is
nuscenes-devkit 1.2.0 (``nuscenes/eval/detection``), which this module reproduces without importing it.

For each class c and match distance d (0.5, 1, 2, 4 m):

* predictions of c from all samples are ranked by score, highest first (equal scores: the later box in
  the submission first, as the devkit's reversed sort of (score, index) pairs); each takes the nearest
  (2-D centre distance) not yet matched ground-truth box of c in its sample, and is a true positive when
  that distance is < d (a strict inequality);
* precision and recall along the ranking are interpolated at 101 recall points 0, 0.01, ..., 1
  (precision 0 beyond the highest recall reached);
* AP = mean over the recall points above ``min_recall`` (indices 11..100, so 90 points by default) of
  max(precision - ``min_precision``, 0), divided by 1 - ``min_precision``.

mAP is the mean AP over classes and distances. The TP errors of a class come from the matches at
``dist_th_tp`` = 2 m: translation error (centre distance, m), scale error (1 - IoU of the two sizes,
centres and yaws aligned), orientation error (smallest yaw difference, rad; barriers have a period of
pi), velocity error (L2 of the xy velocity difference, m/s) and attribute error (1 - accuracy). Each
is a running mean along the ranking (NaNs skipped; errors that are all NaN give 1), resampled at the
101 recall points and averaged from recall ``min_recall`` (exclusive) to the highest recall reached;
a class that never reaches past ``min_recall`` gets 1. Traffic cones have no orientation, velocity or
attribute error and barriers no velocity or attribute error (NaN, left out of the class mean). A
class without ground truth or without any match counts with AP 0 and errors 1, as in the devkit.

NDS = (5 mAP + sum over the 5 mean TP errors of max(1 - error, 0)) / 10.

Boxes use the submission format: ``translation`` [x, y, z] (m), ``size`` [w, l, h] (m),
``rotation`` quaternion [w, x, y, z] (normalised before use, as pyquaternion does), ``velocity``
[vx, vy] (NaN allowed, as in the ground truth of static objects), ``detection_name``,
``attribute_name`` ('' for none) and, for predictions, ``detection_score``. The devkit's box filters
need the database; here they are optional: ``class_range`` keeps boxes whose ``ego_translation``
(box centre minus ego position; only x, y count) is closer than the class's range (strict), and a box
with ``num_pts`` = 0 is dropped as the devkit drops annotations without lidar/radar points. Bike-rack
filtering (bicycles and motorcycles inside a rack's box) needs the map annotations and is left to the
caller.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from mmengine.evaluator import BaseMetric

from xmodal.registry import METRICS

# nuscenes/eval/detection/constants.py
DETECTION_NAMES = ("car", "truck", "bus", "trailer", "construction_vehicle", "pedestrian", "motorcycle", "bicycle",
                   "traffic_cone", "barrier")
ATTRIBUTE_NAMES = ("pedestrian.moving", "pedestrian.sitting_lying_down", "pedestrian.standing", "cycle.with_rider",
                   "cycle.without_rider", "vehicle.moving", "vehicle.parked", "vehicle.stopped")
TP_METRICS = ("trans_err", "scale_err", "orient_err", "vel_err", "attr_err")
TP_SUMMARY_KEYS = {"trans_err": "mATE", "scale_err": "mASE", "orient_err": "mAOE", "vel_err": "mAVE",
                   "attr_err": "mAAE"}
# the ranges of the official config (detection_cvpr_2019.json), for ``class_range=DEFAULT_CLASS_RANGE``
DEFAULT_CLASS_RANGE = {"car": 50.0, "truck": 50.0, "bus": 50.0, "trailer": 50.0, "construction_vehicle": 50.0,
                       "pedestrian": 40.0, "motorcycle": 40.0, "bicycle": 40.0, "traffic_cone": 30.0,
                       "barrier": 30.0}
# TP errors that are undefined for a class: cones are round and static, barriers static (and 180°-symmetric)
IGNORED_TP_ERRORS = {"traffic_cone": ("attr_err", "vel_err", "orient_err"), "barrier": ("attr_err", "vel_err")}
MEAN_AP_WEIGHT = 5  # mAP's weight in NDS, against weight 1 for each of the five TP scores
RECALL_POINTS = 101
QUATERNION_TOL = 1e-3  # |‖q‖ - 1| allowed: rounding in a JSON file, not a wrong parameterisation
_VECTOR_FIELDS = (("translation", 3), ("size", 3), ("rotation", 4), ("velocity", 2))
_FIELDS = ("translation", "size", "rotation", "velocity", "detection_name", "attribute_name")


# --- input parsing ---------------------------------------------------------------------------------------------


@dataclass
class _Boxes:
    """All boxes of one side (gt or pred) flattened in submission order (samples in dict order)."""

    sample: np.ndarray  # (N,) index into the token list
    translation: np.ndarray  # (N, 3)
    size: np.ndarray  # (N, 3)
    yaw: np.ndarray  # (N,)
    velocity: np.ndarray  # (N, 2)
    name: np.ndarray  # (N,) index into DETECTION_NAMES
    attribute: np.ndarray  # (N,) index into ATTRIBUTE_NAMES, -1 for ''
    score: np.ndarray  # (N,) zeros for ground truth
    ego: np.ndarray | None  # (N, 2) ego_translation's x, y where every box has one, else None
    ego_missing: str | None  # the first box without ego_translation, for the error message
    keep: np.ndarray  # (N,) bool: num_pts != 0, and in range once the class_range filter ran


_NAME_INDEX = {name: i for i, name in enumerate(DETECTION_NAMES)}
_ATTRIBUTE_INDEX = {"": -1, **{name: i for i, name in enumerate(ATTRIBUTE_NAMES)}}
_REAL_TYPES = (float, int, np.float64, np.float32, np.float16, np.int64, np.int32)


class _Locator:
    """Where the k-th flattened box came from, spelled out only when an error needs it."""

    def __init__(self, side: str, tokens: list[str], sample: list[int], index: list[int]) -> None:
        self.side, self.tokens, self.sample, self.index = side, tokens, sample, index

    def __call__(self, k: int) -> str:
        return f"{self.side}[{self.tokens[self.sample[k]]!r}][{self.index[k]}]"

    def error(self, k: int, field: str, problem: str) -> ValueError:
        return ValueError(f"evaluate_nuscenes: {self(k)}: field {field!r} {problem}")


def _column(boxes: list, field: str, where: _Locator, default: Any = ...) -> list:
    try:  # one comprehension per field: ~20x faster than checking box by box
        if default is ...:
            return [box[field] for box in boxes]
        return [box.get(field, default) for box in boxes]
    except (KeyError, TypeError, AttributeError):
        for k, box in enumerate(boxes):
            if not isinstance(box, Mapping):
                raise ValueError(f"evaluate_nuscenes: {where(k)}: expected a dict, got {type(box).__name__}") from None
            if default is ... and field not in box:
                raise where.error(k, field, f"is missing (keys: {sorted(map(str, box))})") from None
        raise


def _vectors(values: list, width: int, field: str, where: _Locator) -> np.ndarray:
    if not values:
        return np.zeros((0, width))
    try:
        out = np.asarray(values, dtype=np.float64)
        if out.shape == (len(values), width) and not any(isinstance(v, (str, bytes)) for v in values):
            return out
    except (TypeError, ValueError):
        pass
    for k, value in enumerate(values):  # find the culprit for the message
        ok = not isinstance(value, (str, bytes))
        try:
            ok = ok and np.asarray(value, dtype=np.float64).shape == (width,)
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise where.error(k, field, f"must be a list of {width} numbers, got {value!r}")
    raise ValueError(f"evaluate_nuscenes: field {field!r}: could not read the values")  # not reached


def _first_bad(bad: np.ndarray, values: np.ndarray, field: str, problem: str, where: _Locator) -> None:
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise where.error(k, field, f"{problem}, got {values[k].tolist()}")


def _lookup(values: list, table: dict[str, int], field: str, allowed: str, where: _Locator) -> np.ndarray:
    try:
        return np.asarray([table[v] for v in values], dtype=np.int64)
    except (KeyError, TypeError):
        k = next(k for k, v in enumerate(values) if not isinstance(v, str) or v not in table)
        raise where.error(k, field, f"must be {allowed}, got {values[k]!r}") from None


def _parse(boxes_by_sample: Mapping[str, Sequence[Mapping[str, Any]]], side: str, tokens: list[str],
           is_pred: bool, max_boxes: int) -> _Boxes:
    token_index = {t: i for i, t in enumerate(tokens)}
    boxes: list = []
    sample: list[int] = []
    index: list[int] = []
    for token, sample_boxes in boxes_by_sample.items():
        if isinstance(sample_boxes, (str, bytes, Mapping)) or not isinstance(sample_boxes, Sequence):
            raise ValueError(f"evaluate_nuscenes: {side}[{token!r}] must be a list of boxes, got "
                             f"{type(sample_boxes).__name__}")
        if is_pred and len(sample_boxes) > max_boxes:
            raise ValueError(f"evaluate_nuscenes: {side}[{token!r}] has {len(sample_boxes)} boxes; at most "
                             f"max_boxes_per_sample={max_boxes} are allowed")
        boxes.extend(sample_boxes)
        sample.extend([token_index[token]] * len(sample_boxes))
        index.extend(range(len(sample_boxes)))
    where = _Locator(side, tokens, sample, index)

    columns = {field: _column(boxes, field, where) for field in _FIELDS}
    rows = {field: _vectors(columns[field], width, field, where) for field, width in _VECTOR_FIELDS}
    translation, size, quat = rows["translation"], rows["size"], rows["rotation"]
    _first_bad(~np.isfinite(translation).all(1), translation, "translation", "must be finite", where)
    _first_bad(~(np.isfinite(size).all(1) & (size > 0).all(1)), size, "size", "must be finite and > 0", where)
    norm = np.sqrt((quat**2).sum(1))
    _first_bad(~(np.abs(norm - 1) <= QUATERNION_TOL), quat, "rotation",
               f"must be a unit quaternion [w, x, y, z] (|norm - 1| <= {QUATERNION_TOL})", where)
    name = _lookup(columns["detection_name"], _NAME_INDEX, "detection_name",
                   f"one of the nuScenes classes {DETECTION_NAMES}", where)
    attribute = _lookup(columns["attribute_name"], _ATTRIBUTE_INDEX, "attribute_name",
                        f"'' or one of {ATTRIBUTE_NAMES}", where)

    score = np.zeros(len(boxes))
    if is_pred:
        values = _column(boxes, "detection_score", where)
        for k, value in enumerate(values):
            if type(value) not in _REAL_TYPES and (isinstance(value, bool) or not isinstance(value, numbers.Real)):
                raise where.error(k, "detection_score", f"must be a number, got {value!r}")
        score = np.asarray(values, dtype=np.float64).reshape(len(boxes))
        _first_bad(~np.isfinite(score), score, "detection_score", "must be finite", where)

    ego_values = _column(boxes, "ego_translation", where, default=None)
    ego, missing = None, next((k for k, v in enumerate(ego_values) if v is None), None)
    if missing is None:  # only z may be left out: it never counts
        ego_values = [v[:2] if hasattr(v, "__len__") and len(v) == 3 else v for v in ego_values]
        ego = _vectors(ego_values, 2, "ego_translation", where)
        _first_bad(~np.isfinite(ego).all(1), ego, "ego_translation", "must be finite", where)

    num_pts = _column(boxes, "num_pts", where, default=-1)
    for k, value in enumerate(num_pts):
        if type(value) is not int and (isinstance(value, bool) or not isinstance(value, numbers.Integral)):
            raise where.error(k, "num_pts", f"must be an integer, got {value!r}")
    return _Boxes(sample=np.asarray(sample, dtype=np.int64), translation=translation, size=size,
                  yaw=_quaternion_yaw(quat / norm[:, None]), velocity=rows["velocity"], name=name,
                  attribute=attribute, score=score, ego=ego, ego_missing=None if missing is None else where(missing),
                  keep=np.asarray(num_pts, dtype=np.int64).reshape(len(boxes)) != 0)


# --- geometry --------------------------------------------------------------------------------------------------


def _quaternion_yaw(q: np.ndarray) -> np.ndarray:
    """Heading of the box's x axis in the xy plane (atan2 of the first column of the rotation matrix)."""
    w, x, y, z = q.T
    return np.arctan2(2 * (x * y + w * z), 1 - 2 * (y * y + z * z))


def yaw_difference(yaw_gt: np.ndarray, yaw_pred: np.ndarray, period: float = 2 * np.pi) -> np.ndarray:
    """|smallest angle from ``yaw_pred`` to ``yaw_gt``| in [0, pi], angles equal modulo ``period``."""
    diff = np.mod(np.asarray(yaw_gt) - np.asarray(yaw_pred) + period / 2, period) - period / 2
    diff = np.where(diff > np.pi, diff - 2 * np.pi, diff)  # only reachable with a period above 2 pi
    return np.abs(diff)


def _xy_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = a[..., :2] - b[..., :2]
    return np.sqrt(d[..., 0] * d[..., 0] + d[..., 1] * d[..., 1])


def _scale_iou(gt_size: np.ndarray, pred_size: np.ndarray) -> np.ndarray:
    inter = np.prod(np.minimum(gt_size, pred_size), axis=-1)
    return inter / (np.prod(gt_size, axis=-1) + np.prod(pred_size, axis=-1) - inter)


# --- matching and the per-class curves -------------------------------------------------------------------------


def _greedy_match(dist: np.ndarray, threshold: float) -> np.ndarray:
    """Rows (predictions, best score first) each take the nearest free column (first one on ties) if it
    is closer than ``threshold``; returns the column of each row or -1."""
    match = np.full(dist.shape[0], -1, dtype=np.int64)
    free = np.ones(dist.shape[1], dtype=bool)
    # a row with no column in reach neither matches nor takes anything
    for r in np.flatnonzero(dist.min(1, initial=np.inf) < threshold):
        row = np.where(free, dist[r], np.inf)
        c = int(np.argmin(row))
        if row[c] < threshold:
            match[r] = c
            free[c] = False
            if not free.any():
                break
    return match


def _group(values: np.ndarray) -> dict[int, np.ndarray]:
    """Positions of each value, in their original order (one sort instead of a scan per value)."""
    order = np.argsort(values, kind="stable")
    keys, starts = np.unique(values[order], return_index=True)
    return dict(zip(keys.tolist(), np.split(order, starts[1:])))


def _cummean(x: np.ndarray) -> np.ndarray:
    """Running mean that skips NaNs (0 before the first number); all NaN -> ones."""
    valid = ~np.isnan(x)
    if not valid.any():
        return np.ones(len(x))
    total, count = np.nancumsum(x), np.cumsum(valid)
    return np.divide(total, count, out=np.zeros_like(total), where=count != 0)


def _no_predictions() -> dict[str, np.ndarray]:
    curves = {"precision": np.zeros(RECALL_POINTS), "confidence": np.zeros(RECALL_POINTS)}
    curves.update({m: np.ones(RECALL_POINTS) for m in TP_METRICS})
    return curves


def _curves(is_tp: np.ndarray, scores: np.ndarray, errors: dict[str, np.ndarray], num_gt: int) -> dict:
    """Precision, score and running-mean TP errors at the 101 recall points, from the ranked predictions."""
    tp = np.cumsum(is_tp).astype(np.float64)
    fp = np.cumsum(~is_tp).astype(np.float64)
    precision, recall = tp / (fp + tp), tp / float(num_gt)
    points = np.linspace(0, 1, RECALL_POINTS)
    curves = {"precision": np.interp(points, recall, precision, right=0),
              "confidence": np.interp(points, recall, scores, right=0)}
    match_scores = scores[is_tp]
    for metric in TP_METRICS:
        # a recall point takes the running mean at the match whose score its interpolated score equals
        # (np.interp needs ascending abscissae, hence the reversals)
        curves[metric] = np.interp(curves["confidence"][::-1], match_scores[::-1],
                                   _cummean(errors[metric])[::-1])[::-1]
    return curves


def average_precision(precision: np.ndarray, min_recall: float = 0.1, min_precision: float = 0.1) -> float:
    """AP from the 101-point precision curve: the points above ``min_recall``, precision above ``min_precision``
    rescaled to [0, 1]."""
    kept = precision[round(100 * min_recall) + 1:] - min_precision
    return float(np.mean(np.maximum(kept, 0))) / (1.0 - min_precision)


def tp_error(error: np.ndarray, confidence: np.ndarray, min_recall: float = 0.1) -> float:
    """Mean of a 101-point TP error curve from ``min_recall`` (exclusive) to the highest recall reached (the
    last point with a non-zero interpolated score); 1 when that recall is not above ``min_recall``."""
    first = round(100 * min_recall) + 1
    nonzero = np.flatnonzero(confidence)
    last = int(nonzero[-1]) if len(nonzero) else 0
    return 1.0 if last < first else float(np.mean(error[first:last + 1]))


# --- the metric ------------------------------------------------------------------------------------------------


def _check_options(class_names: Sequence[str], dist_ths: Sequence[float], dist_th_tp: float, min_recall: float,
                   min_precision: float, max_boxes_per_sample: int, class_range: Mapping[str, float] | None) -> None:
    unknown = [c for c in class_names if c not in DETECTION_NAMES]
    if unknown or not class_names or len(set(class_names)) != len(class_names):
        raise ValueError(f"evaluate_nuscenes: class_names must be distinct nuScenes classes from {DETECTION_NAMES}, "
                         f"got {list(class_names)}")
    if not dist_ths or any(not d > 0 for d in dist_ths):
        raise ValueError(f"evaluate_nuscenes: dist_ths must be positive distances, got {list(dist_ths)}")
    if dist_th_tp not in dist_ths:
        raise ValueError(f"evaluate_nuscenes: dist_th_tp={dist_th_tp} must be one of dist_ths={list(dist_ths)}")
    if not 0 <= min_recall <= 1 or not 0 <= min_precision < 1:
        raise ValueError(f"evaluate_nuscenes: need 0 <= min_recall <= 1 and 0 <= min_precision < 1, got "
                         f"min_recall={min_recall}, min_precision={min_precision}")
    if max_boxes_per_sample < 1:
        raise ValueError(f"evaluate_nuscenes: max_boxes_per_sample must be >= 1, got {max_boxes_per_sample}")
    if class_range is not None:
        missing = [c for c in class_names if c not in class_range]
        if missing:
            raise ValueError(f"evaluate_nuscenes: class_range has no range for {missing}")


def _apply_range(boxes: _Boxes, class_range: Mapping[str, float]) -> None:
    if boxes.ego is None:
        raise ValueError(f"evaluate_nuscenes: {boxes.ego_missing}: field 'ego_translation' is missing; class_range "
                         f"needs it on every box (box centre minus ego position), or pass class_range=None")
    limit = np.array([class_range.get(c, np.inf) for c in DETECTION_NAMES], dtype=np.float64)[boxes.name]
    ego_dist = np.sqrt(boxes.ego[:, 0] ** 2 + boxes.ego[:, 1] ** 2)
    boxes.keep &= ego_dist < limit


def _class_curves(gt: _Boxes, pred: _Boxes, cls: int, dist_ths: Sequence[float]) -> dict[float, dict]:
    gt_rows = np.flatnonzero((gt.name == cls) & gt.keep)
    if not len(gt_rows):
        return {th: _no_predictions() for th in dist_ths}
    pred_rows = np.flatnonzero((pred.name == cls) & pred.keep)
    # ranking: score descending, ties by position descending (the devkit's reversed sorted (score, i) list)
    pred_rows = pred_rows[np.lexsort((np.arange(len(pred_rows)), pred.score[pred_rows]))[::-1]]

    # matching is independent between samples: one distance matrix per sample, ranked rows, gts in order
    gt_by_sample = {s: gt_rows[positions] for s, positions in _group(gt.sample[gt_rows]).items()}
    # each prediction's nearest ground truth in its sample (first on ties), whatever the threshold
    nearest = np.full(len(pred_rows), -1, dtype=np.int64)
    nearest_dist = np.full(len(pred_rows), np.inf)
    block_of = np.full(len(pred_rows), -1, dtype=np.int64)
    blocks = []
    for s, positions in _group(pred.sample[pred_rows]).items():
        if s in gt_by_sample:
            candidates = gt_by_sample[s]
            dist = _xy_distance(pred.translation[pred_rows[positions]][:, None], gt.translation[candidates][None])
            cols = dist.argmin(1)
            nearest[positions] = candidates[cols]
            nearest_dist[positions] = dist[np.arange(len(positions)), cols]
            block_of[positions] = len(blocks)
            blocks.append((positions, candidates, dist))

    period = np.pi if DETECTION_NAMES[cls] == "barrier" else 2 * np.pi  # a barrier looks the same turned by 180°
    out = {}
    for th in dist_ths:
        in_reach = nearest_dist < th
        # while no two predictions in reach want the same ground truth, none finds its nearest taken and
        # greedy matching = nearest; only samples with a contested ground truth need the sequential pass
        matched = np.where(in_reach, nearest, -1)  # gt row of each ranked prediction
        wanted, count = np.unique(nearest[in_reach], return_counts=True)
        contested = in_reach & np.isin(nearest, wanted[count > 1])
        for b in np.unique(block_of[contested]):
            positions, candidates, dist = blocks[b]
            cols = _greedy_match(dist, th)
            matched[positions] = np.where(cols >= 0, candidates[cols], -1)
        is_tp = matched >= 0
        if not is_tp.any():
            out[th] = _no_predictions()
            continue
        p, g = pred_rows[is_tp], matched[is_tp]
        gt_attr = gt.attribute[g]
        errors = {
            "trans_err": _xy_distance(pred.translation[p], gt.translation[g]),
            "vel_err": _xy_distance(pred.velocity[p], gt.velocity[g]),
            "scale_err": 1 - _scale_iou(gt.size[g], pred.size[p]),
            "orient_err": yaw_difference(gt.yaw[g], pred.yaw[p], period),
            # ground truth without an attribute: undefined (NaN), skipped by the running mean
            "attr_err": np.where(gt_attr < 0, np.nan, (gt_attr != pred.attribute[p]).astype(np.float64)),
        }
        out[th] = _curves(is_tp, pred.score[pred_rows], errors, len(gt_rows))
    return out


def evaluate_nuscenes(gt: Mapping[str, Sequence[Mapping[str, Any]]], pred: Mapping[str, Sequence[Mapping[str, Any]]],
                      class_names: Sequence[str] | None = None,
                      dist_ths: Sequence[float] = (0.5, 1.0, 2.0, 4.0), dist_th_tp: float = 2.0,
                      min_recall: float = 0.1, min_precision: float = 0.1, max_boxes_per_sample: int = 500,
                      class_range: Mapping[str, float] | None = None) -> dict[str, float]:
    """nuScenes detection metrics of ``pred`` against ``gt`` (both: sample_token -> list of boxes).

    Both must cover the same samples (a sample without detections maps to ``[]``). Returns ``mAP``,
    ``NDS``, ``mATE``, ``mASE``, ``mAOE``, ``mAVE``, ``mAAE`` and per class ``{c}_AP`` (mean over
    distances), ``{c}_AP_dist_{d}`` and ``{c}_{err}`` for err in ``TP_METRICS`` (NaN where ignored).
    ``class_names`` defaults to the 10 detection classes; boxes of other classes are not evaluated.
    """
    class_names = tuple(DETECTION_NAMES if class_names is None else class_names)
    dist_ths = tuple(float(d) for d in dist_ths)
    _check_options(class_names, dist_ths, float(dist_th_tp), min_recall, min_precision, max_boxes_per_sample,
                   class_range)
    if not isinstance(gt, Mapping) or not isinstance(pred, Mapping):
        raise ValueError("evaluate_nuscenes: gt and pred must map sample_token -> list of boxes")
    if set(gt) != set(pred):
        only_gt, only_pred = sorted(set(gt) - set(pred)), sorted(set(pred) - set(gt))
        raise ValueError(f"evaluate_nuscenes: gt and pred must cover the same samples; only in gt: {only_gt[:5]} "
                         f"({len(only_gt)}), only in pred: {only_pred[:5]} ({len(only_pred)})")
    tokens = list(pred)
    gt_boxes = _parse(gt, "gt", tokens, is_pred=False, max_boxes=max_boxes_per_sample)
    pred_boxes = _parse(pred, "pred", tokens, is_pred=True, max_boxes=max_boxes_per_sample)
    if class_range is not None:
        _apply_range(gt_boxes, class_range)
        _apply_range(pred_boxes, class_range)

    result: dict[str, float] = {}
    class_aps, class_errors = [], {m: [] for m in TP_METRICS}
    for name in class_names:
        curves = _class_curves(gt_boxes, pred_boxes, DETECTION_NAMES.index(name), dist_ths)
        aps = [average_precision(curves[th]["precision"], min_recall, min_precision) for th in dist_ths]
        for th, ap in zip(dist_ths, aps):
            result[f"{name}_AP_dist_{th}"] = ap
        result[f"{name}_AP"] = float(np.mean(aps))
        class_aps.append(result[f"{name}_AP"])
        tp_curves = curves[float(dist_th_tp)]
        for metric in TP_METRICS:
            ignored = metric in IGNORED_TP_ERRORS.get(name, ())
            err = np.nan if ignored else tp_error(tp_curves[metric], tp_curves["confidence"], min_recall)
            result[f"{name}_{metric}"] = err
            class_errors[metric].append(err)

    result["mAP"] = float(np.mean(class_aps))
    tp_scores = []
    for metric in TP_METRICS:
        with warnings.catch_warnings():  # all classes ignoring a metric (e.g. only cones) -> NaN, no warning
            warnings.simplefilter("ignore", RuntimeWarning)
            mean_err = float(np.nanmean(class_errors[metric]))
        result[TP_SUMMARY_KEYS[metric]] = mean_err
        tp_scores.append(max(0.0, 1.0 - mean_err))  # errors are unbounded above; NaN scores 0 as in the devkit
    result["NDS"] = (MEAN_AP_WEIGHT * result["mAP"] + sum(tp_scores)) / (MEAN_AP_WEIGHT + len(TP_METRICS))
    return result


def _plain(value: Any) -> Any:
    """Tensors / arrays -> Python lists and numbers, so results pickle small and device-free to rank 0."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


@METRICS.register_module()
class NuScenesMetric(BaseMetric):
    """nuScenes mAP / NDS / TP errors (keys of :func:`evaluate_nuscenes`) over per-sample records
    ``{"sample_token": str, "pred_boxes": [box, ...], "gt_boxes": [box, ...]}`` in the submission format.

    A sample token seen twice (records gathered from several ranks) keeps its first record.
    """

    default_prefix = None

    def __init__(self, class_names: Sequence[str] | None = None, dist_ths: Sequence[float] = (0.5, 1.0, 2.0, 4.0),
                 dist_th_tp: float = 2.0, min_recall: float = 0.1, min_precision: float = 0.1,
                 max_boxes_per_sample: int = 500, class_range: Mapping[str, float] | None = None,
                 collect_device: str = "cpu", prefix: str | None = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.options = dict(class_names=None if class_names is None else tuple(class_names),
                            dist_ths=tuple(dist_ths), dist_th_tp=dist_th_tp, min_recall=min_recall,
                            min_precision=min_precision, max_boxes_per_sample=max_boxes_per_sample,
                            class_range=None if class_range is None else dict(class_range))
        _check_options(self.options["class_names"] or DETECTION_NAMES, self.options["dist_ths"], dist_th_tp,
                       min_recall, min_precision, max_boxes_per_sample, class_range)

    def process(self, data_batch: Any, data_samples: Sequence[Mapping[str, Any]]) -> None:
        for i, sample in enumerate(data_samples):
            missing = [k for k in ("sample_token", "pred_boxes", "gt_boxes") if k not in sample]
            if missing:
                raise ValueError(f"NuScenesMetric: record {i} of the batch lacks {missing}; got keys {sorted(sample)}")
            boxes = {}
            for key in ("pred_boxes", "gt_boxes"):
                boxes[key] = [{k: _plain(v) for k, v in box.items()} if isinstance(box, Mapping) else box
                              for box in sample[key]]
            self.results.append((str(sample["sample_token"]), boxes["pred_boxes"], boxes["gt_boxes"]))

    def compute_metrics(self, results: list) -> dict[str, float]:
        gt: dict[str, list] = {}
        pred: dict[str, list] = {}
        for token, pred_boxes, gt_boxes in results:
            if token not in pred:
                pred[token], gt[token] = pred_boxes, gt_boxes
        return evaluate_nuscenes(gt, pred, **self.options)
