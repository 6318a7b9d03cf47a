"""Segmentation: mIoU metric, FuseNet segmenter, SegmentationDataset checks, NYU-Depth-V2 configs."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config

from tests.conftest import REPO
from xmodal.data.segmentation import SegmentationDataset
from xmodal.errors import DatasetFormatError
from xmodal.evaluation.segmentation import SegmentationMetric, pixel_confusion_matrix
from xmodal.models.fusenet import FuseNetSegmenter
from xmodal.registry import METRICS, MODELS

TINY = 1 / 16  # widths 4-8-16-32-32


def _metric(records, **kwargs):
    metric = SegmentationMetric(**{"num_classes": 4, "ignore_index": 0, **kwargs})
    metric.process({}, records)
    return metric.compute_metrics(metric.results)


def test_metric_by_hand():
    # 4 classes, 0 = void. Labels / predictions of 8 pixels in two samples:
    label = torch.tensor([[1, 1, 2, 2], [3, 0, 0, 1]])
    pred = torch.tensor([[1, 2, 2, 2], [0, 3, 1, 1]])
    records = [{"pred": pred[i], "label": label[i]} for i in range(2)]
    # "drop" (official): void labels (2 px) and the void prediction of a class-3 pixel leave;
    # kept (true, pred): (1,1) (1,2) (2,2) (2,2) (1,1)  -> class 1: TP 2, FN 1, FP 0 -> 2/3
    # class 2: TP 2, FP 1 -> 2/3; class 3: no kept pixel -> left out.
    out = _metric(records, items=("mIoU", "pixel_accuracy", "mean_accuracy"))
    assert out["mIoU"] == pytest.approx(2 / 3)
    assert out["pixel_accuracy"] == pytest.approx(4 / 5)
    assert out["mean_accuracy"] == pytest.approx((2 / 3 + 1) / 2)
    # "count": the class-3 pixel predicted void is a miss: class 3 IoU 0/1, accuracy 4/6
    out = _metric(records, void_predictions="count")
    assert out["mIoU"] == pytest.approx((2 / 3 + 2 / 3 + 0) / 3)
    assert out["pixel_accuracy"] == pytest.approx(4 / 6)
    assert out["mean_accuracy"] == pytest.approx((2 / 3 + 1 + 0) / 3)


def test_metric_matches_sklearn():
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    label = rng.integers(0, 41, size=(5, 12, 16))
    label[label > 30] = 7  # classes 36-40 in neither labels nor predictions, 31-35 only predicted
    pred = np.where(rng.random(label.shape) < 0.5, label, rng.integers(0, 36, size=label.shape))
    records = [{"pred": torch.from_numpy(p), "label": torch.from_numpy(t)} for p, t in zip(pred, label)]
    valid = list(range(1, 41))
    y, p = label.reshape(-1), pred.reshape(-1)

    # official metrics(): sklearn's confusion matrix over labels 1..40 drops void predictions too
    cm = sk.confusion_matrix(y[y != 0], p[y != 0], labels=valid)
    tp = np.diag(cm)
    union = cm.sum(0) + cm.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        official_miou = np.nanmean(np.where(union > 0, tp / union, np.nan))
    keep = (y != 0) & (p != 0)
    # jaccard over the classes in the kept labels or predictions (the others have an empty union)
    seen = sorted(set(y[keep]) | set(p[keep]))
    assert len(seen) < 40
    assert sk.jaccard_score(y[keep], p[keep], labels=seen, average="macro") == pytest.approx(official_miou)
    metric = SegmentationMetric(num_classes=41, ignore_index=0)
    for i in range(0, 5, 2):  # batches of 2, 2, 1: summed confusion matrices
        metric.process({}, records[i : i + 2])
    out = metric.compute_metrics(metric.results)
    assert out["mIoU"] == pytest.approx(official_miou)
    assert out["pixel_accuracy"] == pytest.approx(sk.accuracy_score(y[keep], p[keep]))
    present = sorted(set(y[keep]))
    assert out["mean_accuracy"] == pytest.approx(sk.recall_score(y[keep], p[keep], labels=present, average="macro"))

    counted = _metric(records, num_classes=41, void_predictions="count")
    seen = sorted((set(y) | set(p)) - {0})
    assert counted["mIoU"] == pytest.approx(sk.jaccard_score(y[y != 0], p[y != 0], labels=seen, average="macro"))
    assert counted["pixel_accuracy"] == pytest.approx(sk.accuracy_score(y[y != 0], p[y != 0]))


def test_confusion_matrix_skips_out_of_range_labels():
    cm = pixel_confusion_matrix(torch.tensor([1, 2, 0]), torch.tensor([1, 255, 2]), 3)
    assert cm.sum() == 2 and cm[1, 1] == 1 and cm[2, 0] == 1
    with pytest.raises(ValueError, match="predictions"):
        pixel_confusion_matrix(torch.tensor([3]), torch.tensor([1]), 3)


@pytest.mark.parametrize("modalities", [("rgb", "depth"), ("rgb",), ("depth",)])
def test_model_shapes(modalities):
    torch.manual_seed(0)
    model = FuseNetSegmenter(modalities=modalities, width=TINY)
    batch = {"rgb": torch.rand(2, 3, 36, 50), "depth": torch.rand(2, 1, 36, 50)}  # not multiples of 32
    out = model(mode="tensor", **batch)
    assert out["logits"].shape == (2, 41, 36, 50)
    assert out["embedding"].shape == (2, 32, 1, 1)
    assert all(m in model.encoders for m in modalities) and len(model.encoders) == len(modalities)
    # the module paths the docs map the official mask layers to
    for path in ("after_fusion", "decoder.stage5", "decoder.stage1.0", f"encoders.{modalities[0]}.stage5"):
        model.get_submodule(path)
    with pytest.raises(KeyError, match="has no"):
        model(mode="tensor", label=torch.zeros(1))


def test_loss_ignores_void_pixels():
    torch.manual_seed(0)
    model = FuseNetSegmenter(modalities=("rgb",), width=TINY, num_classes=5)
    label = torch.zeros(2, 32, 32, dtype=torch.long)
    label[:, :8, :8] = torch.randint(1, 5, (2, 8, 8))
    logits = torch.randn(2, 5, 32, 32, requires_grad=True)
    loss = model.task_loss({"logits": logits}, {"label": label})["loss_ce"]
    picked = logits.permute(0, 2, 3, 1)[label != 0]
    assert loss.item() == pytest.approx(F.cross_entropy(picked, label[label != 0]).item(), rel=1e-6)
    loss.backward()
    assert logits.grad[:, :, 8:, :].abs().sum() == 0 and logits.grad[:, :, :8, :8].abs().sum() > 0
    all_void = model.task_loss({"logits": logits}, {"label": torch.zeros_like(label)})["loss_ce"]
    assert all_void.item() == 0.0 and torch.isfinite(all_void)


def test_predict_records_feed_the_metric():
    torch.manual_seed(0)
    model = FuseNetSegmenter(modalities=("rgb", "depth"), width=TINY).eval()
    batch = {"rgb": torch.rand(2, 3, 32, 32), "depth": torch.rand(2, 1, 32, 32),
             "label": torch.randint(0, 41, (2, 32, 32)), "index": torch.tensor([5, 6])}
    records = model(mode="predict", **batch)
    assert [r["index"] for r in records] == [5, 6]
    assert records[0]["pred"].shape == (32, 32) and records[0]["num_pixels"] == int((batch["label"][0] != 0).sum())
    logits = model(mode="tensor", **batch)["logits"]
    nll = F.cross_entropy(logits, batch["label"], ignore_index=0)
    metric = SegmentationMetric(num_classes=41, items=("mIoU", "cross_entropy"))
    metric.process({}, records)
    out = metric.compute_metrics(metric.results)
    assert out["cross_entropy"] == pytest.approx(nll.item(), rel=1e-5)
    assert 0.0 <= out["mIoU"] <= 1.0


@pytest.mark.parametrize("name", ["teacher_fusion", "student_rgb", "student_depth"])
def test_configs_build_and_run(name):
    cfg = Config.fromfile(str(REPO / "configs" / "nyudv2" / f"{name}.py"))
    assert cfg.train_dataloader.batch_size == 6 and cfg.optim_wrapper.optimizer.lr == 1e-4
    cfg.model.width = TINY
    model = MODELS.build(cfg.model)
    batch = {"rgb": torch.rand(2, 3, 32, 64), "depth": torch.rand(2, 1, 32, 64),
             "label": torch.randint(0, 41, (2, 32, 64)), "index": torch.arange(2)}
    losses = model(mode="loss", **batch)
    losses["loss_ce"].backward()
    assert torch.isfinite(losses["loss_ce"])
    metric = METRICS.build(cfg.val_evaluator)
    metric.process({}, model.eval()(mode="predict", **batch))
    assert set(metric.compute_metrics(metric.results)) == {"mIoU", "pixel_accuracy", "mean_accuracy", "cross_entropy"}


def _seg_dataset(root, labels, classes=3, hw=(4, 5)):
    root.mkdir()
    n = len(labels)
    np.save(root / "rgb.npy", np.zeros((n, 3, *hw), np.uint8))
    np.save(root / "labels.npy", labels)
    meta = {"name": "t", "task": "segmentation", "classes": [f"c{i}" for i in range(classes)], "ignore_index": 0,
            "modalities": {"rgb": {"shape": [3, *hw], "dtype": "uint8"}}}
    (root / "meta.json").write_text(json.dumps(meta))
    (root / "splits.json").write_text(json.dumps({"train": [0, 1], "val": [2], "test": [3]}))
    return root


def test_dataset_validates_label_maps(tmp_path):
    good = np.ones((4, 4, 5), np.uint8)
    ds = SegmentationDataset(_seg_dataset(tmp_path / "ok", good))
    assert ds[1]["label"].shape == (4, 5) and ds[1]["rgb"].dtype == torch.uint8 and ds.ignore_index == 0
    bad = good.copy()
    bad[2, 1, 3] = 3
    with pytest.raises(DatasetFormatError, match=r"labels.npy: labels: label 3 in map 2 is outside \[0, 2\]"):
        SegmentationDataset(_seg_dataset(tmp_path / "range", bad))
    with pytest.raises(DatasetFormatError, match="N x H x W integers"):
        SegmentationDataset(_seg_dataset(tmp_path / "flat", np.ones(4, np.int64)))
    with pytest.raises(DatasetFormatError, match=r"rgb.npy: shape: H x W \[4, 5\]"):
        SegmentationDataset(_seg_dataset(tmp_path / "hw", np.ones((4, 4, 6), np.uint8)))
