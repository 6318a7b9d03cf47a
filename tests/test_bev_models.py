"""Native BEV detectors (xmodal.models.bev): pillar scatter and lift-splat geometry by hand, CenterPoint
targets, loss, box coding and circle NMS, LiDAR / camera / fusion forward-backward, an overfit run on one
tiny scene, the nuScenes metric on the predictions, and bad input."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from xmodal.distill.unidistill import UniDistillFeatureLoss, UniDistillRelationLoss
from xmodal.evaluation.detection import NuScenesMetric
from xmodal.models.bev import BEVDetector, CenterPointHead, LiftSplatCamera, PillarFeatureNet
from xmodal.models.bev.centerpoint_head import (
    CIRCLE_NMS_RADIUS,
    circle_nms,
    decode_boxes,
    draw_heatmap,
    encode_boxes,
    gaussian_focal_loss,
)
from xmodal.models.bev.grid import build_grid
from xmodal.registry import MODELS

# 32 x 32 cells of 0.6 m around the sensor: the small grid of the tests and the demo
SMALL = dict(point_cloud_range=(-9.6, -9.6, -3.0, 9.6, 9.6, 3.0), cell_size=0.6)
CLASSES = ("car", "pedestrian")
TINY_CAMERA = dict(depth_bins=(1.0, 12.0, 1.0), widths=(8, 16))
TINY_BACKBONE = dict(out_channels=(32, 64), layer_nums=(1, 1), layer_strides=(1, 2), upsample_strides=(1, 2),
                     upsample_channels=(32, 32))
TINY_HEAD = dict(share_channels=32, head_channels=32)


@pytest.fixture(autouse=True)
def one_thread():
    # small convolutions on a shared 2-core machine run ~100x faster without thread contention
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _detector(modality, **kw):
    return BEVDetector(modality, CLASSES, grid=SMALL, pillar=dict(out_channels=32), camera=dict(TINY_CAMERA,
                       out_channels=32), fusion=dict(out_channels=32), backbone=TINY_BACKBONE, head=TINY_HEAD, **kw)


def _front_camera(position=(1.0, 0.0, 0.5)):
    """lidar2cam of a camera at ``position`` looking along +x (camera x = −y, y = −z, z = +x)."""
    rot = torch.tensor([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])
    pose = torch.eye(4)
    pose[:3, :3] = rot
    pose[:3, 3] = -rot @ torch.tensor(position)
    return pose


def _batch(b=2, cams=2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    points = []
    for _ in range(b):
        xyz = torch.rand(200, 3, generator=gen) * torch.tensor([19.0, 19.0, 4.0]) - torch.tensor([9.5, 9.5, 2.0])
        points.append(torch.cat([xyz, torch.rand(200, 2, generator=gen)], 1))
    intrinsics = torch.tensor([[16.0, 0.0, 15.5], [0.0, 16.0, 7.5], [0.0, 0.0, 1.0]])
    boxes = torch.tensor([[2.0, 1.0, 0.0, 4.0, 1.8, 1.5, 0.3, 1.0, 0.0],
                          [-3.0, -4.0, 0.0, 0.8, 0.8, 1.7, 0.0, math.nan, math.nan]])
    return dict(points=points, images=torch.rand(b, cams, 3, 16, 32, generator=gen),
                intrinsics=intrinsics.expand(b, cams, 3, 3).clone(), lidar2cam=_front_camera().expand(b, cams, 4, 4),
                gt_boxes=[boxes.clone() for _ in range(b)], gt_labels=[torch.tensor([0, 1]) for _ in range(b)],
                sample_token=[f"token{i}" for i in range(b)], index=torch.arange(b))


# --- pillars --------------------------------------------------------------------------------------------------


def test_pillar_scatter_hand_case():
    # 4 x 4 cells of 1 m over [0, 4]; the PointNet layer is made [I; −I] and BN the identity (eval, fresh
    # statistics) so the canvas shows max(ReLU(±decoration)) of the pillar's points
    net = PillarFeatureNet(dict(point_cloud_range=(0, 0, -2, 4, 4, 2), cell_size=1.0), out_channels=20).eval()
    with torch.no_grad():
        net.linear.weight.copy_(torch.cat([torch.eye(10), -torch.eye(10)]))
    p1, p2 = [2.2, 1.7, 0.5, 0.9, 0.1], [2.6, 1.1, -0.5, 0.3, 0.0]
    dropped = [[5.0, 1.0, 0.0, 1.0, 0.0], [1.0, 1.0, 2.5, 1.0, 0.0]]  # off the grid in x, above z_max
    canvas = net([torch.tensor([p1, p2, *dropped]), torch.tensor([[0.5, 3.5, 0.0, 0.2, 0.0]])])
    assert canvas.shape == (2, 20, 4, 4)
    mean = [(a + b) / 2 for a, b in zip(p1[:3], p2[:3])]
    centre = [2.5, 1.5]  # the cell (row 1, column 2)
    decorations = [p + [p[k] - mean[k] for k in range(3)] + [p[k] - centre[k] for k in range(2)] for p in (p1, p2)]
    scale = 1 / math.sqrt(1 + 1e-3)  # BatchNorm eps
    expected = [max(max(d[c], 0.0) for d in decorations) * scale for c in range(10)]
    expected += [max(max(-d[c], 0.0) for d in decorations) * scale for c in range(10)]
    torch.testing.assert_close(canvas[0, :, 1, 2], torch.tensor(expected), atol=1e-6, rtol=1e-6)
    occupied = canvas.abs().sum(1) > 0
    assert occupied[0].nonzero().tolist() == [[1, 2]]
    assert occupied[1].nonzero().tolist() == [[3, 0]]  # second sample: x 0.5 -> column 0, y 3.5 -> row 3


def test_max_points_per_pillar_keeps_the_first_points():
    net = PillarFeatureNet(dict(point_cloud_range=(0, 0, -2, 4, 4, 2), cell_size=1.0), out_channels=20,
                           max_points_per_pillar=1).eval()
    with torch.no_grad():
        net.linear.weight.copy_(torch.cat([torch.eye(10), -torch.eye(10)]))
    first = [2.2, 1.7, 0.5, 0.9, 0.1]
    canvas = net([torch.tensor([first, [2.6, 1.1, -0.5, 0.3, 0.0]])])
    # one point: no offset to the mean, offset (−0.3, 0.2) to the pillar centre
    torch.testing.assert_close(canvas[0, :10, 1, 2] * math.sqrt(1 + 1e-3),
                               torch.tensor(first + [0.0, 0.0, 0.0, 0.0, 0.2]), atol=1e-6, rtol=1e-6)


# --- lift-splat -----------------------------------------------------------------------------------------------


def test_lift_splat_frustum_point_by_hand():
    grid = dict(point_cloud_range=(-8, -8, -3, 8, 8, 3), cell_size=1.0)
    cam = LiftSplatCamera(grid, out_channels=1, depth_bins=(1.0, 10.0, 1.0), widths=(8,))  # stride 2
    intrinsics = torch.tensor([[[[10.0, 0.0, 7.5], [0.0, 10.0, 3.5], [0.0, 0.0, 1.0]]]])
    points = cam.frustum_points(intrinsics, _front_camera()[None, None], (8, 16), (4, 8))
    assert points.shape == (1, 1, 9, 4, 8, 3)
    # feature pixel (row 1, col 3) sits at image pixel (u, v) = (6.5, 2.5); depth bin 4 is d = 5 m:
    # camera point 5 · ((6.5 − 7.5) / 10, (2.5 − 3.5) / 10, 1) = (−0.5, −0.5, 5) -> LiDAR (5, 0.5, 0.5) + camera
    torch.testing.assert_close(points[0, 0, 4, 1, 3], torch.tensor([6.0, 0.5, 1.0]))


def test_lift_splat_sums_frustum_features_into_the_right_cells():
    grid = dict(point_cloud_range=(-8, -8, -0.5, 8, 8, 3), cell_size=1.0)
    cam = LiftSplatCamera(grid, out_channels=1, depth_bins=(1.0, 10.0, 1.0), widths=(8,))
    with torch.no_grad():  # all depth mass on bin 4 (5 m), context 1 everywhere
        last = cam.depth_net[-1]
        last.weight.zero_()
        last.bias.zero_()
        last.bias[4] = 50.0
        last.bias[-1] = 1.0
    intrinsics = torch.tensor([[10.0, 0.0, 7.5], [0.0, 10.0, 3.5], [0.0, 0.0, 1.0]]).expand(1, 1, 3, 3)
    canvas = cam(torch.rand(1, 1, 3, 8, 16), intrinsics, _front_camera()[None, None])
    expected = torch.zeros(16, 16)
    for j in range(8):
        # feature column j (u = 2j + 0.5) at 5 m: x = 6 (column 14), y = −5 (u − 7.5) / 10; its four rows
        # (v = 0.5 ... 6.5) sit at z = 2, 1, 0, −1 m and the last is below z_min = −0.5
        y = -5 * (2 * j + 0.5 - 7.5) / 10
        expected[math.floor(y + 8), 14] = 3.0
    torch.testing.assert_close(canvas[0, 0], expected, atol=1e-5, rtol=1e-5)


def test_lift_splat_with_a_timm_backbone_and_local_weights(tmp_path):
    timm = pytest.importorskip("timm")
    reference = timm.create_model("resnet18", pretrained=False)
    torch.nn.init.constant_(reference.conv1.weight, 0.5)
    torch.save(reference.state_dict(), tmp_path / "resnet18.pth")
    cam = LiftSplatCamera(SMALL, image_backbone="resnet18", checkpoint=str(tmp_path / "resnet18.pth"),
                          depth_bins=(1.0, 12.0, 1.0))
    assert (cam.backbone.stride, cam.backbone.out_channels) == (16, 256)
    assert torch.all(cam.backbone.body.conv1.weight == 0.5)
    intrinsics = torch.tensor([[16.0, 0.0, 31.5], [0.0, 16.0, 15.5], [0.0, 0.0, 1.0]]).expand(1, 1, 3, 3)
    canvas = cam(torch.rand(1, 1, 3, 32, 64), intrinsics, _front_camera()[None, None])
    assert canvas.shape == (1, 64, 32, 32) and canvas.abs().sum() > 0


# --- CenterPoint targets, coding, loss, NMS ------------------------------------------------------------------


def _centerpoint_radius(h, w, o):
    """CenterPoint's gaussian_radius, written out."""
    r1 = ((h + w) + math.sqrt((h + w) ** 2 - 4 * w * h * (1 - o) / (1 + o))) / 2
    r2 = (2 * (h + w) + math.sqrt(4 * (h + w) ** 2 - 16 * (1 - o) * w * h)) / 2
    r3 = (-2 * o * (h + w) + math.sqrt(4 * o**2 * (h + w) ** 2 - 16 * o * (o - 1) * w * h)) / 2
    return min(r1, r2, r3)


def test_heatmap_peak_and_radius():
    grid, _ = build_grid("test", dict(point_cloud_range=(0, 0, -3, 24, 24, 3), cell_size=1.0))
    boxes = torch.tensor([[10.3, 11.6, 0.0, 12.0, 8.0, 2.0, 0.4, 0.0, 0.0],  # large: radius from the formula
                          [3.5, 3.5, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0]])  # small: min_radius 2
    heat = draw_heatmap(boxes, torch.tensor([0, 1]), 2, grid, min_overlap=0.1, min_radius=2)
    radius = max(2, math.floor(_centerpoint_radius(8.0, 12.0, 0.1)))
    assert radius == 4
    assert heat[0, 11, 10] == 1.0 and heat[0].max() == 1.0
    assert heat[0, 11, 10 + radius] > 0 and heat[0, 11, 10 + radius + 1] == 0
    assert heat[0, 11 - radius, 10] > 0 and heat[0, 11 - radius - 1, 10] == 0
    sigma = (2 * radius + 1) / 6
    assert heat[0, 12, 11].item() == pytest.approx(math.exp(-2 / (2 * sigma**2)), rel=1e-6)
    assert heat[1, 3, 3] == 1.0 and heat[1, 3, 5] > 0 and heat[1, 3, 6] == 0


def test_boxes_off_the_grid_are_dropped_and_counted():
    head = CenterPointHead(SMALL, CLASSES, in_channels=8, **TINY_HEAD)
    boxes = torch.tensor([[0.0, 0.0, 0.0, 2.0, 1.0, 1.0, 0.0, 0.0, 0.0], [50.0, 0.0, 0.0, 2.0, 1.0, 1.0, 0.0, 0.0, 0.0],
                          [1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0]])  # far away; zero length
    heat, reg = torch.zeros(1, 2, 32, 32), torch.zeros(1, 10, 32, 32)
    loss = head.loss(heat, reg, [boxes], [torch.tensor([0, 0, 1])])
    assert head.last_dropped_boxes == 2
    assert all(torch.isfinite(v) for v in loss.values())
    assert head.targets([boxes], [torch.tensor([0, 0, 1])])["heatmap"][0, 1].max() == 0


def test_unknown_velocity_gets_no_regression_target():
    model = _detector("lidar")
    batch = _batch(b=1)
    out = {k: v.detach() for k, v in model(mode="tensor", **batch).items()}
    info = [dict(velocity_missing=[0])]  # the car's (1, 0) velocity is a stored 0 placeholder: unknown
    base = model.task_loss(out, {**batch, "info": info})["loss_bbox"]
    shifted = dict(out, regression=out["regression"].clone())
    shifted["regression"][:, 8:] += 5.0  # every velocity prediction changes
    assert model.task_loss(shifted, {**batch, "info": info})["loss_bbox"].item() == pytest.approx(base.item())
    assert model.task_loss(shifted, batch)["loss_bbox"] > base  # with a known velocity it counts


def test_encoding_by_hand():
    grid, _ = build_grid("test", dict(point_cloud_range=(0, 0, -3, 16, 16, 3), cell_size=0.5))
    col, row, target = encode_boxes(torch.tensor([[2.25, 1.1, 0.4, 4.0, 2.0, 1.5, math.pi / 6, 1.0, -2.0]]), grid)
    assert (int(col), int(row)) == (4, 2)
    expected = [0.5, 0.2, 0.4, math.log(4), math.log(2), math.log(1.5), 0.5, math.sqrt(3) / 2, 1.0, -2.0]
    torch.testing.assert_close(target[0], torch.tensor(expected), atol=1e-5, rtol=1e-5)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.floats(-9.5, 9.5), st.floats(-9.5, 9.5), st.floats(-2, 2), st.floats(0.1, 12),
                          st.floats(0.1, 5), st.floats(0.1, 4), st.floats(-3.14, 3.14), st.floats(-20, 20),
                          st.floats(-20, 20)), min_size=1, max_size=6))
def test_encode_decode_round_trip(rows):
    grid, _ = build_grid("test", SMALL)
    boxes = torch.tensor(rows, dtype=torch.float32)
    col, row, target = encode_boxes(boxes, grid)
    torch.testing.assert_close(decode_boxes(target, col, row, grid), boxes, atol=1e-4, rtol=1e-4)


def test_focal_loss_by_hand():
    logits = torch.tensor([[[[0.0, 1.0, -2.0]]]])
    target = torch.tensor([[[[1.0, 0.5, 0.0]]]])
    sig = lambda x: 1 / (1 + math.exp(-x))
    pos = -(1 - sig(0.0)) ** 2 * math.log(sig(0.0))
    neg = -(1 - 0.5) ** 4 * sig(1.0) ** 2 * math.log(1 - sig(1.0)) - sig(-2.0) ** 2 * math.log(1 - sig(-2.0))
    assert gaussian_focal_loss(logits, target, 1).item() == pytest.approx(pos + neg, rel=1e-6)
    assert gaussian_focal_loss(logits, target, 2).item() == pytest.approx((pos + neg) / 2, rel=1e-6)
    extreme = torch.tensor([[[[1e4, -1e4, 1e4]]]], requires_grad=True)
    value = gaussian_focal_loss(extreme, target, 1)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(extreme.grad).all()


def test_circle_nms_hand_case():
    centres = torch.tensor([[0.0, 0.0], [1.5, 0.0], [3.0, 0.0], [0.1, 0.0], [0.0, 2.0]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5])
    labels = torch.tensor([0, 0, 0, 1, 0])
    radius = torch.tensor([2.0, 0.5])
    # B is 1.5 m from A: suppressed; C is 3 m from A (B, suppressed, suppresses nothing): kept; D is another
    # class: kept; E is exactly 2 m from A: suppressed (the radius is inclusive, as CenterPoint's <=)
    assert circle_nms(centres, scores, labels, radius).tolist() == [0, 2, 3]
    perm = [4, 2, 0, 3, 1]  # the input order does not matter, only the scores
    kept = circle_nms(centres[perm], scores[perm], labels[perm], radius).tolist()
    assert [perm[k] for k in kept] == [0, 2, 3]
    assert CIRCLE_NMS_RADIUS["car"] ** 2 == pytest.approx(4.0)
    assert CIRCLE_NMS_RADIUS["pedestrian"] ** 2 == pytest.approx(0.175)


# --- detectors ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("modality", ["lidar", "camera", "fusion"])
def test_detector_forward_backward(modality):
    torch.manual_seed(0)
    model = _detector(modality)
    batch = _batch()
    out = model(mode="tensor", **batch)
    assert set(out) == set(BEVDetector.output_keys)
    assert out["bev_low"].shape == (2, 32, 32, 32) and out["bev_high"].shape == (2, 64, 32, 32)
    assert out["heatmap"].shape == (2, 2, 32, 32) and out["regression"].shape == (2, 10, 32, 32)
    losses = model(mode="loss", **batch)
    assert set(losses) == {"loss_heatmap", "loss_bbox"}
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    branch = model.pillar if modality == "lidar" else model.camera
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in branch.parameters())


def test_registry_config_and_default_grid():
    import xmodal.models.bev  # noqa: F401  (registers the parts)

    model = MODELS.build(dict(type="BEVDetector", modality="lidar", class_names=["car"],
                              grid=dict(point_cloud_range=SMALL["point_cloud_range"], cell_size=0.6),
                              backbone=dict(type="SECONDFPNBackbone", **TINY_BACKBONE)))
    assert model.grid.shape == (32, 32)
    assert BEVDetector("lidar").grid.shape == (180, 180)  # nuScenes default: [-54, 54] m at 0.6 m


def test_unidistill_losses_read_the_detector_maps():
    torch.manual_seed(0)
    lidar, camera = _detector("lidar"), _detector("camera")
    batch = _batch()
    s, t = camera(mode="tensor", **batch), lidar(mode="tensor", **batch)
    grid = dict(bev_range=SMALL["point_cloud_range"], cell_size=SMALL["cell_size"], stride=1)
    feature = UniDistillFeatureLoss(**grid)(s["bev_low"], t["bev_low"], batch["gt_boxes"])
    relation = UniDistillRelationLoss(**grid)(s["bev_high"], t["bev_high"], batch["gt_boxes"])
    assert torch.isfinite(feature) and torch.isfinite(relation) and feature > 0


def test_predictions_feed_the_nuscenes_metric():
    torch.manual_seed(0)
    model = _detector("lidar").eval()
    batch = _batch()
    with torch.no_grad():
        records = model(mode="predict", **batch)
    assert [r["sample_token"] for r in records] == ["token0", "token1"]
    gt = records[0]["gt_boxes"][0]
    assert gt["size"] == pytest.approx([1.8, 4.0, 1.5]) and gt["detection_name"] == "car"
    assert gt["rotation"] == pytest.approx([math.cos(0.15), 0.0, 0.0, math.sin(0.15)])
    assert all(0.1 < p["detection_score"] <= 1 for r in records for p in r["pred_boxes"])
    # the dataset's optional info (with_info=True): num_points, attributes, velocity_missing, lidar2ego
    lidar2ego = [[1.0, 0.0, 0.0, 1.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.8], [0.0, 0.0, 0.0, 1.0]]
    info = dict(num_points=[5, 0], attributes=["vehicle.moving", ""], velocity_missing=[0], lidar2ego=lidar2ego)
    with torch.no_grad():
        rich = model(mode="predict", **batch, info=[info, {}])
    car, pedestrian = rich[0]["gt_boxes"]
    assert car["num_pts"] == 5 and pedestrian["num_pts"] == 0 and "num_pts" not in rich[1]["gt_boxes"][0]
    assert car["attribute_name"] == "vehicle.moving" and rich[1]["gt_boxes"][0]["attribute_name"] == ""
    assert all(math.isnan(v) for v in car["velocity"]) and rich[1]["gt_boxes"][0]["velocity"] == [1.0, 0.0]
    assert car["ego_translation"] == pytest.approx([3.0, 1.0, 1.8])
    assert batch["gt_boxes"][0][0, 7] == 1.0  # the batch itself is left alone
    unlabelled = {k: v for k, v in batch.items() if k not in ("gt_boxes", "gt_labels")}
    with torch.no_grad():
        assert all(r["gt_boxes"] == [] for r in model(mode="predict", **unlabelled))
    metric = NuScenesMetric(class_names=CLASSES)
    metric.process(batch, records)
    result = metric.compute_metrics(metric.results)
    assert 0.0 <= result["mAP"] <= 1.0 and 0.0 <= result["NDS"] <= 1.0
    ranged = NuScenesMetric(class_names=CLASSES, class_range={"car": 50.0, "pedestrian": 40.0})
    ranged.process(batch, rich)  # every box carries ego_translation; num_pts 0 drops the pedestrian
    assert 0.0 <= ranged.compute_metrics(ranged.results)["NDS"] <= 1.0


def _surface_points(box, n, gen):
    """n points on the four vertical faces of a [x, y, z, dx, dy, dz, yaw] box."""
    x, y, z, dx, dy, dz, yaw = box[:7]
    face = torch.randint(0, 4, (n,), generator=gen)
    t = torch.rand(n, generator=gen) - 0.5
    side_x = torch.where(face == 2, dx / 2, -dx / 2) * torch.ones(n)
    side_y = torch.where(face == 0, dy / 2, -dy / 2) * torch.ones(n)
    lx, ly = torch.where(face < 2, t * dx, side_x), torch.where(face < 2, side_y, t * dy)
    c, s = math.cos(yaw), math.sin(yaw)
    height = (torch.rand(n, generator=gen) - 0.5) * dz
    return torch.stack([x + c * lx - s * ly, y + s * lx + c * ly, z + height, torch.rand(n, generator=gen),
                        torch.zeros(n)], 1)


def test_lidar_detector_overfits_one_scene():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    boxes = torch.tensor([[2.4, 1.5, 0.0, 4.0, 1.8, 1.6, 0.5, 0.0, 0.0],
                          [-4.0, -3.0, 0.0, 0.8, 0.8, 1.8, 0.0, 0.0, 0.0]])
    points = torch.cat([_surface_points(b.tolist(), 200, gen) for b in boxes])
    batch = dict(points=[points], gt_boxes=[boxes], gt_labels=[torch.tensor([0, 1])], sample_token=["scene"])
    model = _detector("lidar")
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(150):
        loss = sum(model(mode="loss", **batch).values())
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    with torch.no_grad():  # batch statistics: 150 steps at BN momentum 0.01 leave the running ones behind
        out = model(mode="tensor", **batch)
    det = model.head.decode(out["heatmap"], out["regression"])[0]
    for box, label in zip(boxes, (0, 1)):
        mine = det["boxes"][det["labels"] == label]
        assert len(mine), f"no {CLASSES[label]} detected"
        assert torch.linalg.vector_norm(mine[0, :2] - box[:2]) < 1.0


# --- bad input ------------------------------------------------------------------------------------------------


def test_bad_points_name_the_sample_and_field():
    model = _detector("lidar")
    batch = _batch()
    batch["points"][1] = batch["points"][1][:, :4]
    with pytest.raises(ValueError, match=r"sample 1, field 'points'.*\(N, 5\)"):
        model(mode="tensor", **batch)
    batch = _batch()
    batch["points"][1][7, 2] = math.nan
    with pytest.raises(ValueError, match=r"sample 1, field 'points': 1 rows hold NaN"):
        model(mode="tensor", **batch)


def test_bad_camera_and_ground_truth_input():
    camera = _detector("camera")
    batch = _batch()
    batch["intrinsics"][1, 0, 0, 0] = math.inf
    with pytest.raises(ValueError, match=r"sample 1, field 'intrinsics'"):
        camera(mode="tensor", **batch)
    with pytest.raises(KeyError, match="images"):
        camera(mode="tensor", points=batch["points"])
    lidar = _detector("lidar")
    batch = _batch()
    batch["gt_labels"][0] = torch.tensor([0, 2])
    with pytest.raises(ValueError, match=r"sample 0, field 'gt_labels'.*\[0, 1\]"):
        lidar(mode="loss", **batch)
    batch = _batch()
    batch["gt_boxes"][1] = batch["gt_boxes"][1][:, :7]
    with pytest.raises(ValueError, match=r"sample 1, field 'gt_boxes'"):
        lidar(mode="loss", **batch)
    with pytest.raises(ValueError, match="modality"):
        BEVDetector("radar")
    with pytest.raises(ValueError, match="circle-NMS radius"):
        BEVDetector("lidar", ["car", "tree"], grid=SMALL)
