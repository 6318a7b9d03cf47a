"""Label budgets for detection scenes: the per-scene ``labelled`` flag, the detector's task loss on
labelled scenes only, and UniDistill keypoints from the teacher's detections on unlabelled scenes."""

import math

import torch

from tests.test_bev_models import CLASSES, SMALL, TINY_BACKBONE, TINY_HEAD, _batch
from tests.test_detection_data import SMALL as SMALL_SCENES
from xmodal.data import DetectionDataset, build_synthetic_scenes, detection_collate
from xmodal.distill.unidistill import UniDistillFeatureLoss, UniDistillRelationLoss, UniDistillResponseLoss
from xmodal.models.bev import BEVDetector
from xmodal.models.bev.centerpoint_head import encode_boxes
from xmodal.models.bev.grid import BEVGrid


def test_unlabelled_scenes_carry_a_flag_and_no_boxes(tmp_path):
    root = build_synthetic_scenes(SMALL_SCENES, root=tmp_path)
    full = DetectionDataset(root, "train")
    ds = DetectionDataset(root, "train", labelled=dict(fraction=0.5, seed=0))
    assert ds.labelled_flags.sum() == 2 and "labelled" not in full[0]
    for i in range(len(ds)):
        item = ds[i]
        assert bool(item["labelled"]) == bool(ds.labelled_flags[i])
        expected = len(full[i]["gt_boxes"]) if ds.labelled_flags[i] else 0
        assert len(item["gt_boxes"]) == len(item["gt_labels"]) == expected
    batch = detection_collate([ds[i] for i in range(len(ds))])
    assert batch["labelled"].tolist() == ds.labelled_flags.tolist()
    assert set(ds.labelled_record()["ids"]) == set(ds.rows[ds.labelled_flags].tolist())
    parts = [DetectionDataset(root, "train", subset=dict(part=p, of=2)) for p in range(2)]
    assert not set(parts[0].rows.tolist()) & set(parts[1].rows.tolist())


def test_detector_task_loss_skips_unlabelled_scenes():
    torch.manual_seed(0)
    model = BEVDetector("lidar", CLASSES, grid=SMALL, pillar=dict(out_channels=32), backbone=TINY_BACKBONE,
                        head=TINY_HEAD).train()
    batch = _batch(b=2)
    out = model(batch)
    flagged = dict(batch, labelled=torch.tensor([True, False]), gt_boxes=[batch["gt_boxes"][0], torch.zeros(0, 9)],
                   gt_labels=[batch["gt_labels"][0], torch.zeros(0, dtype=torch.long)])
    first = {k: (v[:1] if isinstance(v, torch.Tensor) and v.dim() else v[:1] if isinstance(v, list) else v)
             for k, v in batch.items()}
    got = model.task_loss(out, flagged)
    expected = model.supervised_loss({k: v[:1] for k, v in out.items()}, first)
    for key in ("loss_heatmap", "loss_bbox"):
        assert math.isclose(got[key].item(), expected[key].item(), rel_tol=1e-5)
    none = model.task_loss(out, dict(flagged, labelled=torch.tensor([False, False])))
    assert none["loss_heatmap"].item() == 0.0 and none["loss_bbox"].item() == 0.0


GRID = dict(bev_range=(0.0, 0.0, 8.0, 8.0), cell_size=0.5, stride=1)


def _teacher_maps(box: torch.Tensor):
    """A 1-class teacher heatmap with one confident peak at ``box``'s centre and regression maps that
    decode back to ``box``."""
    grid = BEVGrid.build(GRID["bev_range"], GRID["cell_size"], 1)
    height, width = grid.shape
    heat = torch.full((1, 1, height, width), -8.0)
    reg = torch.zeros(1, 10, height, width)
    col, row, target = encode_boxes(box[None], grid)
    heat[0, 0, int(row), int(col)] = 6.0
    reg[0, :, int(row), int(col)] = target[0]
    return heat, reg


def test_unidistill_takes_keypoints_from_the_teachers_detections_on_unlabelled_scenes():
    torch.manual_seed(0)
    box = torch.tensor([4.25, 3.75, 0.0, 2.0, 1.0, 1.0, 0.3, 0.0, 0.0])
    heat, reg = _teacher_maps(box)
    student, teacher = torch.randn(1, 4, 16, 16, requires_grad=True), torch.randn(1, 4, 16, 16)
    for loss in (UniDistillFeatureLoss(**GRID), UniDistillRelationLoss(**GRID)):
        with_gt = loss(student, teacher, [box[None]])
        pseudo = loss(student, teacher, [torch.zeros(0, 9)], labelled=torch.tensor([False]), teacher_heatmap=heat,
                      teacher_regression=reg)
        assert with_gt.item() > 0 and math.isclose(pseudo.item(), with_gt.item(), rel_tol=1e-5)
        labelled = loss(student, teacher, [torch.zeros(0, 9)], labelled=torch.tensor([True]), teacher_heatmap=heat,
                        teacher_regression=reg)
        assert labelled.item() == 0.0  # a labelled scene without boxes has no keypoints: its own GT rules
    response = UniDistillResponseLoss(**GRID)
    s_heat, s_reg = torch.randn(1, 1, 16, 16), torch.randn(1, 10, 16, 16)
    with_gt = response(s_heat, heat, [box[None]], s_reg, reg)
    pseudo = response(s_heat, heat, [torch.zeros(0, 9)], s_reg, reg, labelled=torch.tensor([False]))
    assert with_gt.item() > 0 and math.isclose(pseudo.item(), with_gt.item(), rel_tol=1e-5)
    high = UniDistillFeatureLoss(**GRID, pseudo_score=0.999)(
        student, teacher, [torch.zeros(0, 9)], labelled=torch.tensor([False]), teacher_heatmap=heat,
        teacher_regression=reg)
    assert high.item() == 0.0  # below the score threshold: no pseudo box
