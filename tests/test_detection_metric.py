"""nuScenes detection metric: hand-computed cases, input checks, the mmengine metric, devkit parity."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from xmodal.evaluation.detection import (
    ATTRIBUTE_NAMES,
    DETECTION_NAMES,
    TP_METRICS,
    NuScenesMetric,
    evaluate_nuscenes,
    yaw_difference,
)
from xmodal.registry import METRICS

RECALLS = [k / 100 for k in range(11, 101)]  # the recall points AP and the TP errors average over


def _quat(yaw_deg):
    half = math.radians(yaw_deg) / 2
    return [math.cos(half), 0.0, 0.0, math.sin(half)]


def _box(x, y, name="car", score=None, yaw=0.0, size=(2.0, 4.0, 1.5), velocity=(0.0, 0.0),
         attribute="vehicle.parked", **extra):
    box = {"translation": [x, y, 0.0], "size": list(size), "rotation": _quat(yaw), "velocity": list(velocity),
           "detection_name": name, "attribute_name": attribute, **extra}
    if score is not None:
        box["detection_score"] = score
    return box


def _ap_by_hand(precision_at):
    """AP from a precision(recall) function: mean over recall 0.11..1 of max(p - 0.1, 0) / 0.9."""
    return sum(max(precision_at(r) - 0.1, 0.0) for r in RECALLS) / len(RECALLS) / 0.9


def test_perfect_detection():
    gt = {"s0": [_box(1.0, 2.0, velocity=(1.0, -1.0))]}
    pred = {"s0": [_box(1.0, 2.0, score=0.7, velocity=(1.0, -1.0))]}
    out = evaluate_nuscenes(gt, pred, class_names=["car"])
    for th in (0.5, 1.0, 2.0, 4.0):
        assert out[f"car_AP_dist_{th}"] == pytest.approx(1.0)
    for metric in TP_METRICS:
        assert out[f"car_{metric}"] == pytest.approx(0.0, abs=1e-12)
    assert out["mAP"] == pytest.approx(1.0) and out["NDS"] == pytest.approx(1.0)
    assert out["mATE"] == pytest.approx(0.0, abs=1e-12)
    # with the default 10 classes, the 9 without ground truth count with AP 0 and errors 1
    out = evaluate_nuscenes(gt, pred)
    assert out["mAP"] == pytest.approx(0.1)
    assert out["truck_AP"] == 0.0 and out["truck_trans_err"] == 1.0
    # translation error is defined for all 10 classes: (0 + 9 ones) / 10
    assert out["mATE"] == pytest.approx(0.9)
    assert out["mAOE"] == pytest.approx(8 / 9)  # traffic_cone's orientation error is ignored
    assert out["mAVE"] == pytest.approx(7 / 8)  # cone and barrier have no velocity error


def test_false_positive_and_misses_by_hand():
    # three cars at x = 0, 10, 20; a pedestrian nobody detects
    gt = {"s0": [_box(0, 0), _box(10, 0), _box(20, 0), _box(30, 0, name="pedestrian", attribute="")]}
    pred = {"s0": [
        _box(0.2, 0, score=0.9),  # 0.2 m from car 0: TP at every distance
        _box(40, 0, score=0.8),  # nowhere near: FP
        _box(10, 0.7, score=0.7, size=(2.0, 4.0, 3.0)),  # 0.7 m from car 1: TP from 1 m on
        _box(20, 1.5, score=0.6, yaw=10.0),  # 1.5 m from car 2: TP from 2 m on
    ]}
    out = evaluate_nuscenes(gt, pred, class_names=["car", "pedestrian"])

    def linear(r, r0, p0, r1, p1):
        return p0 + (r - r0) * (p1 - p0) / (r1 - r0)

    # 0.5 m: TP FP FP FP -> recall 1/3 at precision 1 (left of the first recall point too), then nothing
    assert out["car_AP_dist_0.5"] == pytest.approx(_ap_by_hand(lambda r: 1.0 if r < 1 / 3 else 0.0))
    assert out["car_AP_dist_0.5"] == pytest.approx(23 / 90)
    # 1 m: TP FP TP FP -> (recall, precision) (1/3, 1) (1/3, 1/2) (2/3, 2/3) (2/3, 1/2), linear in between
    ap_1m = _ap_by_hand(lambda r: 1.0 if r < 1 / 3 else linear(r, 1 / 3, 0.5, 2 / 3, 2 / 3) if r < 2 / 3 else 0.0)
    assert out["car_AP_dist_1.0"] == pytest.approx(ap_1m)

    # 2 m and 4 m: TP FP TP TP -> (1/3, 1) (1/3, 1/2) (2/3, 2/3) (1, 3/4)
    def precision_2m(r):
        if r < 1 / 3:
            return 1.0
        return linear(r, 1 / 3, 0.5, 2 / 3, 2 / 3) if r < 2 / 3 else linear(r, 2 / 3, 2 / 3, 1.0, 0.75)

    assert out["car_AP_dist_2.0"] == pytest.approx(_ap_by_hand(precision_2m))
    assert out["car_AP_dist_4.0"] == out["car_AP_dist_2.0"]
    assert out["car_AP"] == pytest.approx((23 / 90 + ap_1m + 2 * _ap_by_hand(precision_2m)) / 4)

    # TP errors at 2 m: the score at each recall point (scores 0.9 0.8 0.7 0.6 at recalls 1/3 1/3 2/3 1) picks
    # the running mean of the errors of the matches (scores 0.9, 0.7, 0.6), linearly between them
    def score_at(r):
        return 0.9 if r < 1 / 3 else linear(r, 1 / 3, 0.8, 2 / 3, 0.7) if r < 2 / 3 else linear(r, 2 / 3, 0.7, 1, 0.6)

    def tp_by_hand(errors):
        running = [sum(errors[:i + 1]) / (i + 1) for i in range(3)]
        def at_score(c):
            if c >= 0.9:
                return running[0]
            return linear(c, 0.9, running[0], 0.7, running[1]) if c >= 0.7 else linear(c, 0.7, running[1], 0.6,
                                                                                          running[2])
        return sum(at_score(score_at(r)) for r in RECALLS) / len(RECALLS)

    assert out["car_trans_err"] == pytest.approx(tp_by_hand([0.2, 0.7, 1.5]))
    assert out["car_scale_err"] == pytest.approx(tp_by_hand([0.0, 1 - 1.5 / 3.0, 0.0]))  # IoU of aligned boxes 1/2
    assert out["car_orient_err"] == pytest.approx(tp_by_hand([0.0, 0.0, math.radians(10)]))
    assert out["car_vel_err"] == pytest.approx(0.0) and out["car_attr_err"] == pytest.approx(0.0)
    # the pedestrian: no detection -> AP 0 and all errors 1, still in the means
    assert out["pedestrian_AP"] == 0.0 and out["pedestrian_trans_err"] == 1.0
    assert out["mAP"] == pytest.approx(out["car_AP"] / 2)
    assert out["mATE"] == pytest.approx((out["car_trans_err"] + 1) / 2)
    scores = [max(0.0, 1 - out[k]) for k in ("mATE", "mASE", "mAOE", "mAVE", "mAAE")]
    assert out["NDS"] == pytest.approx((5 * out["mAP"] + sum(scores)) / 10)


def test_greedy_matching_order():
    # both predictions are nearest to gt 0; the higher score takes it, the other falls back to gt 1 (1.1 m)
    gt = {"s": [_box(0, 0), _box(1.5, 0)]}
    pred = {"s": [_box(0.4, 0, score=0.5), _box(0.1, 0, score=0.9)]}
    out = evaluate_nuscenes(gt, pred, class_names=["car"])
    assert out["car_AP_dist_2.0"] == pytest.approx(1.0) and out["car_AP_dist_4.0"] == pytest.approx(1.0)
    # below 1.1 m the second one is a FP: TP FP -> (recall, precision) (1/2, 1) (1/2, 1/2); at recall exactly
    # 0.5 the interpolation (np.interp, as in the devkit) takes the last of the equal recalls, 1/2
    expected = (39 * 0.9 + 0.4) / 90 / 0.9
    assert out["car_AP_dist_1.0"] == pytest.approx(expected) and out["car_AP_dist_0.5"] == pytest.approx(expected)
    # translation errors of the matches at 2 m: 0.1 then 1.1 (running mean 0.6)
    assert 0.1 < out["car_trans_err"] < 0.6


def test_yaw_wrap_and_barrier_period():
    assert yaw_difference(math.radians(179), math.radians(-179)) == pytest.approx(math.radians(2))
    assert yaw_difference(0.0, math.radians(179)) == pytest.approx(math.radians(179))
    assert yaw_difference(0.0, math.radians(179), period=math.pi) == pytest.approx(math.radians(1))
    assert yaw_difference(math.radians(90), math.radians(-90), period=math.pi) == pytest.approx(0.0, abs=1e-12)
    for name, expected in (("car", 179.0), ("barrier", 1.0)):
        gt = {"s": [_box(0, 0, name=name, yaw=-90.0, attribute="")]}
        pred = {"s": [_box(0, 0, name=name, yaw=89.0, score=0.5, attribute="")]}
        out = evaluate_nuscenes(gt, pred, class_names=[name])
        assert out[f"{name}_orient_err"] == pytest.approx(math.radians(expected))
    # a quaternion with roll and pitch: the yaw is that of the box's x axis in the ground plane
    q = np.array([0.9, 0.1, 0.2, 0.3])
    q /= np.linalg.norm(q)
    gt = {"s": [_box(0, 0, yaw=0.0)]}
    pred = {"s": [{**_box(0, 0, score=0.5), "rotation": q.tolist()}]}
    w, x, y, z = q
    yaw = math.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))
    assert evaluate_nuscenes(gt, pred, class_names=["car"])["car_orient_err"] == pytest.approx(abs(yaw))


def test_ignored_and_undefined_errors():
    nan2 = (math.nan, math.nan)
    gt = {"s": [_box(0, 0, name="barrier", velocity=nan2, attribute=""),
                _box(10, 0, name="traffic_cone", velocity=nan2, attribute=""),
                _box(20, 0, velocity=nan2, attribute="")]}  # a car without velocity or attribute
    pred = {"s": [_box(0, 0, name="barrier", score=0.9, velocity=(3.0, 0.0)),
                  _box(10, 0, name="traffic_cone", score=0.8, yaw=45.0),
                  _box(20.5, 0, score=0.7, velocity=(1.0, 1.0))]}
    out = evaluate_nuscenes(gt, pred, class_names=["car", "barrier", "traffic_cone"])
    for key in ("barrier_vel_err", "barrier_attr_err", "traffic_cone_vel_err", "traffic_cone_attr_err",
                "traffic_cone_orient_err"):
        assert math.isnan(out[key]), key
    assert out["barrier_orient_err"] == pytest.approx(0.0, abs=1e-12)
    # the car's only velocity / attribute errors are undefined (NaN): the running mean gives 1
    assert out["car_vel_err"] == 1.0 and out["car_attr_err"] == 1.0
    assert out["mAVE"] == 1.0 and out["mAAE"] == 1.0  # means over the classes that have the error
    assert out["mATE"] == pytest.approx(0.5 / 3)
    assert out["mAOE"] == pytest.approx(0.0, abs=1e-12)
    # NaN velocity in a prediction is fine too, and only cones: NaN means, NDS still finite
    only_cones = evaluate_nuscenes({"s": gt["s"][1:2]}, {"s": pred["s"][1:2]}, class_names=["traffic_cone"])
    assert math.isnan(only_cones["mAOE"]) and only_cones["NDS"] == pytest.approx((5 + 2) / 10)


def test_class_range_and_points_filters():
    ranges = {"car": 50.0}
    gt = {"s": [_box(0, 0, ego_translation=[30.0, 30.0, 1.0]),  # 42.4 m: kept
                _box(60, 0, ego_translation=[40.0, 40.0, 0.0]),  # 56.6 m: dropped
                _box(90, 0, ego_translation=[1.0, 1.0, 0.0], num_pts=0)]}  # no lidar/radar points: dropped
    pred = {"s": [_box(0, 0, score=0.9, ego_translation=[30.0, 30.0, 1.0]),
                  _box(80, 0, score=0.95, ego_translation=[50.0, 0.0, 0.0])]}  # exactly 50 m: dropped (strict)
    out = evaluate_nuscenes(gt, pred, class_names=["car"], class_range=ranges)
    assert out["car_AP"] == pytest.approx(1.0)
    unfiltered = evaluate_nuscenes(gt, pred, class_names=["car"])
    assert unfiltered["car_AP"] < 0.5
    for box in pred["s"]:
        del box["ego_translation"]
    with pytest.raises(ValueError, match=r"pred\['s'\]\[0\]: field 'ego_translation' is missing"):
        evaluate_nuscenes(gt, pred, class_names=["car"], class_range=ranges)
    with pytest.raises(ValueError, match="no range for"):
        evaluate_nuscenes(gt, pred, class_names=["car", "bus"], class_range=ranges)


def _bad(field, value):
    box = _box(0, 0, score=0.5)
    if value is None:
        del box[field]
    else:
        box[field] = value
    return box


@pytest.mark.parametrize("box, match", [
    (_bad("size", None), r"pred\['s1'\]\[1\]: field 'size' is missing"),
    (_bad("detection_score", None), r"pred\['s1'\]\[1\]: field 'detection_score' is missing"),
    (_bad("rotation", [1.0, 0.0, 0.0, 0.5]), r"pred\['s1'\]\[1\]: field 'rotation' must be a unit quaternion"),
    (_bad("rotation", 0.3), r"pred\['s1'\]\[1\]: field 'rotation' must be a list of 4 numbers"),
    (_bad("size", [2.0, 0.0, 1.0]), r"pred\['s1'\]\[1\]: field 'size' must be finite and > 0"),
    (_bad("size", [2.0, -1.0, 1.0]), r"pred\['s1'\]\[1\]: field 'size' must be finite and > 0"),
    (_bad("translation", [0.0, math.inf, 0.0]), r"pred\['s1'\]\[1\]: field 'translation' must be finite"),
    (_bad("detection_name", "cat"), r"pred\['s1'\]\[1\]: field 'detection_name' must be one of"),
    (_bad("attribute_name", "vehicle.flying"), r"pred\['s1'\]\[1\]: field 'attribute_name'"),
    (_bad("detection_score", math.nan), r"pred\['s1'\]\[1\]: field 'detection_score' must be finite"),
    (_bad("detection_score", "0.5"), r"pred\['s1'\]\[1\]: field 'detection_score' must be a number"),
    ("not a box", r"pred\['s1'\]\[1\]: expected a dict"),
])
def test_bad_boxes(box, match):
    gt = {"s0": [_box(0, 0)], "s1": [_box(0, 0)]}
    pred = {"s0": [_box(0, 0, score=0.5)], "s1": [_box(5, 5, score=0.1), box]}
    with pytest.raises(ValueError, match=match):
        evaluate_nuscenes(gt, pred)


def test_bad_ground_truth_and_options():
    pred = {"s0": [_box(0, 0, score=0.5)]}
    bad_gt = {"s0": [_box(0, 0), {**_box(1, 1), "rotation": [0.0, 0.0, 0.0, 0.0]}]}
    with pytest.raises(ValueError, match=r"gt\['s0'\]\[1\]: field 'rotation'"):
        evaluate_nuscenes(bad_gt, pred)
    with pytest.raises(ValueError, match="same samples"):
        evaluate_nuscenes({"s0": [], "s1": []}, pred)
    with pytest.raises(ValueError, match="max_boxes_per_sample=1"):
        evaluate_nuscenes({"s0": []}, {"s0": [_box(0, 0, score=0.5)] * 2}, max_boxes_per_sample=1)
    with pytest.raises(ValueError, match="dist_th_tp"):
        evaluate_nuscenes({"s0": []}, pred, dist_th_tp=3.0)
    with pytest.raises(ValueError, match="class_names"):
        evaluate_nuscenes({"s0": []}, pred, class_names=["car", "cat"])


def test_empty_and_unmatched():
    out = evaluate_nuscenes({"s": []}, {"s": []})
    assert out["mAP"] == 0.0 and out["mATE"] == 1.0 and out["NDS"] == 0.0
    out = evaluate_nuscenes({"s": [_box(0, 0)]}, {"s": [_box(9, 9, score=0.5)]}, class_names=["car"])
    assert out["car_AP"] == 0.0 and out["car_trans_err"] == 1.0


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), noise=st.floats(0.1, 3.0))
def test_bounds_and_score_rescaling(seed, noise):
    # AP depends on the ranking only and the TP errors are interpolated linearly in the score, so an
    # increasing affine map of the scores changes nothing
    gt, pred = _random_scene(seed, ["car", "barrier", "traffic_cone", "pedestrian"], noise)
    out = evaluate_nuscenes(gt, pred)
    assert 0.0 <= out["mAP"] <= 1.0 and 0.0 <= out["NDS"] <= 1.0
    assert all(0.0 <= out[f"{c}_AP_dist_{th}"] <= 1.0 for c in DETECTION_NAMES for th in (0.5, 1.0, 2.0, 4.0))
    rescaled = {t: [{**b, "detection_score": 0.5 * b["detection_score"] + 0.25} for b in boxes]
                for t, boxes in pred.items()}
    again = evaluate_nuscenes(gt, rescaled)
    assert all(again[k] == pytest.approx(out[k], abs=1e-9, nan_ok=True) for k in out)


def test_metric_collects_records():
    metric = METRICS.build(dict(type="NuScenesMetric", class_names=["car", "pedestrian"]))
    assert isinstance(metric, NuScenesMetric)
    gt_a = [_box(0, 0), _box(5, 5, name="pedestrian", attribute="pedestrian.standing")]
    pred_a = [_box(0.3, 0, score=0.8), _box(5, 5.2, name="pedestrian", score=0.6, attribute="pedestrian.moving")]
    gt_b, pred_b = [_box(1, 1)], [_box(9, 9, score=0.9)]
    tensor_box = {**pred_a[0], "translation": torch.tensor(pred_a[0]["translation"], dtype=torch.float64),
                  "detection_score": torch.tensor(0.8, dtype=torch.float64), "size": np.array(pred_a[0]["size"])}
    metric.process({}, [{"sample_token": "a", "pred_boxes": [tensor_box, pred_a[1]], "gt_boxes": gt_a},
                        {"sample_token": "b", "pred_boxes": pred_b, "gt_boxes": gt_b}])
    metric.process({}, [{"sample_token": "b", "pred_boxes": [], "gt_boxes": []}])  # a duplicate: first one wins
    out = metric.compute_metrics(metric.results)
    expected = evaluate_nuscenes({"a": gt_a, "b": gt_b}, {"a": pred_a, "b": pred_b},
                                 class_names=["car", "pedestrian"])
    assert out.keys() == expected.keys()
    assert all(out[k] == pytest.approx(expected[k], nan_ok=True) for k in out)
    with pytest.raises(ValueError, match="lacks"):
        metric.process({}, [{"sample_token": "c", "pred_boxes": []}])
    with pytest.raises(ValueError, match="dist_th_tp"):
        NuScenesMetric(dist_th_tp=3.0)


# --- parity with nuscenes-devkit ---------------------------------------------------------------------------


def _random_scene(seed, classes, noise, ties=False):
    rng = np.random.default_rng(seed)

    def quat(full):
        if full:
            q = rng.normal(size=4)
            return (q / np.linalg.norm(q)).tolist()
        yaw = rng.uniform(-np.pi, np.pi)
        return [math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)]

    gt, pred = {}, {}
    for s in range(12):
        g, p = [], []
        for _ in range(rng.integers(0, 12)):
            g.append({"translation": rng.uniform(-15, 15, 3).tolist(), "size": rng.uniform(0.3, 5, 3).tolist(),
                      "rotation": quat(rng.random() < 0.3),
                      "velocity": [math.nan] * 2 if rng.random() < 0.2 else rng.normal(size=2).tolist(),
                      "detection_name": classes[rng.integers(len(classes))],
                      "attribute_name": "" if rng.random() < 0.3 else ATTRIBUTE_NAMES[rng.integers(8)]})
        for box in g:
            for _ in range(rng.integers(0, 3)):  # 0-2 detections per object: misses and duplicates
                offset = rng.normal(scale=noise, size=3)
                p.append({**box, "translation": (np.array(box["translation"]) + offset).tolist(),
                          "size": (np.array(box["size"]) * rng.uniform(0.7, 1.3, 3)).tolist(),
                          "rotation": quat(rng.random() < 0.3),
                          "velocity": [math.nan] * 2 if rng.random() < 0.1 else rng.normal(size=2).tolist(),
                          "attribute_name": ATTRIBUTE_NAMES[rng.integers(8)],
                          "detection_name": box["detection_name"] if rng.random() < 0.9
                          else classes[rng.integers(len(classes))],
                          # better boxes score higher, on average
                          "detection_score": 0.5 * math.exp(-np.linalg.norm(offset[:2])) + 0.5 * rng.random()})
        for _ in range(rng.integers(0, 5)):
            p.append({"translation": rng.uniform(-15, 15, 3).tolist(), "size": rng.uniform(0.3, 5, 3).tolist(),
                      "rotation": quat(False), "velocity": rng.normal(size=2).tolist(),
                      "detection_name": classes[rng.integers(len(classes))], "attribute_name": "",
                      "detection_score": 0.5 * rng.random()})
        if ties:
            for box in p:
                box["detection_score"] = round(box["detection_score"], 1)
        gt[f"sample{s}"], pred[f"sample{s}"] = g, p
    return gt, pred


def _devkit_metrics(gt, pred):
    from nuscenes.eval.common.data_classes import EvalBoxes
    from nuscenes.eval.common.utils import center_distance
    from nuscenes.eval.detection.algo import accumulate, calc_ap, calc_tp
    from nuscenes.eval.detection.data_classes import DetectionBox, DetectionConfig, DetectionMetrics

    def eval_boxes(boxes_by_sample):
        out = EvalBoxes()
        for token, boxes in boxes_by_sample.items():
            out.add_boxes(token, [DetectionBox(
                sample_token=token, translation=tuple(b["translation"]), size=tuple(b["size"]),
                rotation=tuple(b["rotation"]), velocity=tuple(b["velocity"]), detection_name=b["detection_name"],
                attribute_name=b["attribute_name"], detection_score=float(b.get("detection_score", -1.0)))
                for b in boxes])
        return out

    gt_boxes, pred_boxes = eval_boxes(gt), eval_boxes(pred)
    cfg = DetectionConfig({name: 50 for name in DETECTION_NAMES}, "center_distance", [0.5, 1.0, 2.0, 4.0], 2.0,
                          0.1, 0.1, 500, 5)
    metrics = DetectionMetrics(cfg)
    for name in DETECTION_NAMES:  # as DetectionEval.evaluate, without the database
        data = {th: accumulate(gt_boxes, pred_boxes, name, center_distance, th) for th in cfg.dist_ths}
        for th in cfg.dist_ths:
            metrics.add_label_ap(name, th, calc_ap(data[th], 0.1, 0.1))
        for metric in TP_METRICS:
            ignored = (name == "traffic_cone" and metric in ("attr_err", "vel_err", "orient_err")
                       or name == "barrier" and metric in ("attr_err", "vel_err"))
            metrics.add_label_tp(name, metric, np.nan if ignored else calc_tp(data[2.0], 0.1, metric))
    return metrics


@pytest.mark.parametrize("seed, noise, ties", [(0, 0.5, False), (1, 1.0, False), (2, 2.0, False),
                                               (3, 0.3, False), (4, 1.0, True)])
def test_parity_with_devkit(seed, noise, ties):
    pytest.importorskip("nuscenes.eval.detection.algo")  # nuscenes-devkit (no database needed)
    classes = ["car", "pedestrian", "barrier", "traffic_cone", "bicycle"]
    gt, pred = _random_scene(seed, classes, noise, ties)
    ours = evaluate_nuscenes(gt, pred)
    ref = _devkit_metrics(gt, pred)
    for name in DETECTION_NAMES:
        for th in (0.5, 1.0, 2.0, 4.0):
            assert ours[f"{name}_AP_dist_{th}"] == pytest.approx(ref.get_label_ap(name, th), abs=1e-12)
        for metric in TP_METRICS:
            assert ours[f"{name}_{metric}"] == pytest.approx(ref.get_label_tp(name, metric), abs=1e-12, nan_ok=True)
    assert ours["mAP"] == pytest.approx(ref.mean_ap, abs=1e-12)
    assert ours["NDS"] == pytest.approx(ref.nd_score, abs=1e-12)
    for metric, key in (("trans_err", "mATE"), ("scale_err", "mASE"), ("orient_err", "mAOE"), ("vel_err", "mAVE"),
                        ("attr_err", "mAAE")):
        assert ours[key] == pytest.approx(ref.tp_errors[metric], abs=1e-12)
    assert 0.1 < sum(ours[f"{c}_AP"] for c in classes) / len(classes) < 0.95  # a non-trivial case
