"""UniDistill's BEV losses (Zhou et al., CVPR 2023) against hand computation on 4 × 4 grids: box
keypoints, grid coordinates and bilinear sampling, CenterPoint's Gaussian radius and mask, the
feature / relation / response values, empty and off-grid boxes, stability and bad input."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from xmodal.distill.unidistill import (
    UNIDISTILL_WEIGHTS,
    UniDistillFeatureLoss,
    UniDistillRelationLoss,
    UniDistillResponseLoss,
)
from xmodal.models.bev.grid import (
    KEYPOINT_NAMES,
    box_keypoints,
    draw_gaussian_mask,
    gaussian_radius,
    sample_bev,
    to_grid,
)
from xmodal.registry import MODELS

# a 4 × 4 output grid over [0, 4] m: one metre per cell, cell (row i, col j) centred at (j + .5, i + .5)
GRID = dict(bev_range=(0.0, 0.0, 4.0, 4.0), cell_size=0.5, stride=2)
# keypoints on cell centres: box 1 covers the 3 × 3 block rows/cols 0-2 (cells given as (col, row))
BOX_IN = [1.5, 1.5, 0.0, 2.0, 2.0, 1.0, 0.0]
CELLS_IN = [(0, 0), (0, 2), (2, 2), (2, 0), (1, 1), (0, 1), (1, 2), (2, 1), (1, 0)]
# box 2 hangs over the top-right corner: c0, centre, mid c0c1, mid c3c0 stay on the map, 5 drop out
BOX_EDGE = [3.5, 3.5, 0.0, 2.0, 2.0, 1.0, 0.0]
CELLS_EDGE = [(2, 2), (3, 3), (2, 3), (3, 2)]
S = [[[0.0, 1.0, 2.0, 3.0], [1.0, -1.0, 0.5, 2.0], [3.0, 0.0, 1.0, -2.0], [0.5, 1.5, 2.5, 1.0]],
     [[1.0, 0.0, -1.0, 2.0], [2.0, 1.0, 0.0, 1.0], [-1.0, 2.0, 3.0, 0.0], [1.0, 1.0, -1.0, 2.0]]]
T = [[[1.0, 1.0, 0.0, 2.0], [0.0, 0.5, 1.5, 2.0], [2.0, 1.0, -1.0, 0.0], [0.0, 2.0, 2.0, 1.5]],
     [[0.0, 1.0, 1.0, 1.0], [1.0, 3.0, -1.0, 0.0], [0.5, 1.0, 2.0, 1.0], [2.0, 0.0, 0.0, 1.0]]]


def _maps():
    return torch.tensor([S]), torch.tensor([T])


def _feat(m, cell):  # channel vector of a (C, H, W) nested list at (col, row)
    col, row = cell
    return [m[c][row][col] for c in range(len(m))]


def _cos(a, b, eps=1e-4):
    na, nb = math.sqrt(sum(x * x for x in a)), math.sqrt(sum(x * x for x in b))
    return sum(x * y for x, y in zip(a, b)) / ((na + eps) * (nb + eps))


def _close(got, expected, atol=1e-6):
    torch.testing.assert_close(got.double(), torch.tensor(expected, dtype=torch.float64), atol=atol, rtol=1e-6)


def test_keypoints_of_an_axis_aligned_box_by_hand():
    got = box_keypoints(torch.tensor([[1.0, 2.0, 0.0, 4.0, 2.0, 1.0, 0.0]]))
    # dx = 4 along x, dy = 2 along y: corners rear-right, rear-left, front-left, front-right,
    # centre, then the midpoints of the rear, left, front and right edges
    expected = [[-1, 1], [-1, 3], [3, 3], [3, 1], [1, 2], [-1, 2], [1, 3], [3, 2], [1, 1]]
    assert len(KEYPOINT_NAMES) == 9
    assert got.shape == (1, 9, 2)
    _close(got[0], expected)


def test_quarter_turn_permutes_the_keypoints():
    turned = box_keypoints(torch.tensor([[0.0, 0.0, 0.0, 4.0, 2.0, 1.0, math.pi / 2]]))[0]
    upright = box_keypoints(torch.tensor([[0.0, 0.0, 0.0, 2.0, 4.0, 1.0, 0.0]]))[0]
    # heading +y: rear-right corner (−2, −1) → (1, −2), the upright box's front-right corner, etc.
    assert turned[0].tolist() == pytest.approx([1.0, -2.0], abs=1e-6)
    _close(turned, upright[[3, 0, 1, 2, 4, 8, 5, 6, 7]].tolist())


def test_to_grid_and_sampling_at_cell_centres():
    _close(to_grid(torch.tensor([[1.5, 2.5], [-54.0, 54.0]]), (-54, -54, -5, 54, 54, 3), 0.075, 8),
           [[55.5 / 0.6, 56.5 / 0.6], [0.0, 180.0]], atol=1e-4)
    assert to_grid(torch.tensor([1.5, 2.5]), **GRID).tolist() == [1.5, 2.5]
    feature = torch.arange(32.0).view(1, 2, 4, 4)
    centres = torch.tensor([[[j + 0.5, i + 0.5] for i in range(4) for j in range(4)]])
    got = sample_bev(feature, centres)
    assert got.shape == (1, 16, 2)
    assert torch.equal(got, feature.flatten(2).transpose(1, 2))
    # halfway between the centres of cells (row 1, col 0) and (row 1, col 1); the edge band
    # outside the outermost centre takes the edge cell
    between = sample_bev(feature, torch.tensor([[[1.0, 1.5], [0.2, 0.5]]]))
    assert between[0, 0].tolist() == pytest.approx([(4 + 5) / 2, (20 + 21) / 2])
    assert between[0, 1].tolist() == pytest.approx([0.0, 16.0])


def test_gaussian_radius_is_centerpoints_formula():
    h, w, o = 3.0, 5.0, 0.7
    # CenterPoint: r1 from a=1, b=h+w, c=wh(1−o)/(1+o); r2 from a=4, b=2(h+w), c=(1−o)wh;
    # r3 from a=4o, b=−2o(h+w), c=(o−1)wh; each root taken as (b + √(b² − 4ac)) / 2
    r1 = (8 + math.sqrt(64 - 4 * 15 * 0.3 / 1.7)) / 2
    r2 = (16 + math.sqrt(256 - 16 * 0.3 * 15)) / 2
    r3 = (-11.2 + math.sqrt(11.2**2 - 4 * 2.8 * (-0.3 * 15))) / 2
    assert gaussian_radius(h, w, o) == pytest.approx(min(r1, r2, r3))
    assert gaussian_radius(torch.tensor([h]), torch.tensor([w]), o).item() == pytest.approx(min(r1, r2, r3))
    assert gaussian_radius(4.0, 4.0) == pytest.approx(1.0932, abs=1e-4)
    with pytest.raises(ValueError, match="min_overlap"):
        gaussian_radius(1.0, 1.0, 1.0)


def test_gaussian_mask_by_hand():
    # 4 m × 4 m box at (1.5, 1.5): 4 × 4 cells → r = ⌊1.093⌋ = 1, σ = 3/6, centre cell (col 1, row 1)
    mask = draw_gaussian_mask(torch.tensor([[1.5, 1.5, 0.0, 4.0, 4.0, 1.0, 0.3]]), **GRID)
    e2, e4 = math.exp(-2), math.exp(-4)
    expected = [[e4, e2, e4, 0], [e2, 1, e2, 0], [e4, e2, e4, 0], [0, 0, 0, 0]]
    _close(mask, expected, atol=1e-7)
    # a small box gets radius 0 (min_radius 0 as in the official code), boxes merge by max,
    # a centre off the grid is skipped
    two = draw_gaussian_mask(torch.tensor([[1.5, 1.5, 0.0, 4.0, 4.0, 1.0, 0.0], [2.2, 1.9, 0.0, 0.5, 0.5, 1.0, 0.0],
                                           [9.0, 1.0, 0.0, 4.0, 4.0, 1.0, 0.0]]), **GRID)
    expected[1][2] = 1.0
    _close(two, expected, atol=1e-7)
    assert draw_gaussian_mask(torch.tensor([[2.2, 1.9, 0, 0.5, 0.5, 1, 0]]), **GRID, min_radius=1)[1, 1] == \
        pytest.approx(math.exp(-1 / (2 * 0.25)))


def test_feature_loss_by_hand_with_a_box_half_off_the_map():
    s, t = _maps()
    box_in = sum(abs(a - b) for c in CELLS_IN for a, b in zip(_feat(S, c), _feat(T, c))) / (9 * 2)
    box_edge = sum(abs(a - b) for c in CELLS_EDGE for a, b in zip(_feat(S, c), _feat(T, c))) / (4 * 2)
    loss = UniDistillFeatureLoss(**GRID)
    assert loss(s, t, [torch.tensor([BOX_IN])]).item() == pytest.approx(box_in, rel=1e-6)
    assert loss.last_dropped_keypoints.item() == 0
    value = loss(s, t, [torch.tensor([BOX_IN, BOX_EDGE])])
    assert value.item() == pytest.approx((box_in + box_edge) / 2, rel=1e-6)
    assert loss.last_dropped_keypoints.item() == 5 and loss.last_num_boxes == 2


def test_relation_loss_by_hand():
    s, t = _maps()
    total = 0.0
    for a in CELLS_IN:
        for b in CELLS_IN:
            total += abs(_cos(_feat(S, a), _feat(S, b)) - _cos(_feat(T, a), _feat(T, b)))
    value = UniDistillRelationLoss(**GRID)(s, t, [torch.tensor([BOX_IN])])
    assert value.item() == pytest.approx(total / 81, rel=1e-5)
    # the teacher may have another width: similarities are 9 × 9 either way
    wide = torch.cat([t, t], dim=1)
    assert UniDistillRelationLoss(**GRID)(s, wide, [torch.tensor([BOX_IN])]).item() == pytest.approx(total / 81,
                                                                                                     rel=1e-4)


def test_response_loss_by_hand():
    hs = torch.tensor([[[[0.5, -1.0, 2.0, 0.0]] * 4, [[1.0, 0.0, -2.0, 3.0]] * 4]])  # (1, 2, 4, 4) logits
    ht = torch.tensor([[[[1.0, 2.0, 0.0, -1.0]] * 4, [[0.0, -3.0, 1.0, 0.0]] * 4, [[2.0, 0.0, 0.0, 0.0]] * 4]])
    rs = torch.tensor([[[[0.1 * j for j in range(4)]] * 4, [[1.0, 2.0, 3.0, 4.0]] * 4]])
    rt = torch.tensor([[[[0.0] * 4] * 4, [[1.5, 2.0, 2.0, 4.0]] * 4]])
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    e2, e4 = math.exp(-2), math.exp(-4)
    weights = {(0, 0): e4, (1, 0): e2, (2, 0): e4, (0, 1): e2, (1, 1): 1.0, (2, 1): e2, (0, 2): e4, (1, 2): e2,
               (2, 2): e4}  # (col, row) → mask, the 4 m box of test_gaussian_mask_by_hand
    cls = reg = 0.0
    for (col, row), w in weights.items():
        student = max(sig(hs[0, k, row, col].item()) for k in range(2))
        teacher = max(sig(ht[0, k, row, col].item() / 2) for k in range(3))  # teacher σ(logit / 2)
        cls += w * abs(student - teacher)
        reg += w * (abs(rs[0, 0, row, col].item() - rt[0, 0, row, col].item())
                    + abs(rs[0, 1, row, col].item() - rt[0, 1, row, col].item())) / 2
    total = sum(weights.values())
    loss = UniDistillResponseLoss(**GRID)
    boxes = [torch.tensor([[1.5, 1.5, 0.0, 4.0, 4.0, 1.0, 0.0]])]
    assert loss(hs, ht, boxes).item() == pytest.approx(cls / total, rel=1e-5)
    value = loss(hs, ht, boxes, student_regression=rs, teacher_regression=rt)
    assert value.item() == pytest.approx((cls + reg) / total, rel=1e-5)
    assert loss.last_terms["reg"].item() == pytest.approx(reg / total, rel=1e-5)
    # per-task heads as lists are joined along channels
    assert loss([hs[:, :1], hs[:, 1:]], ht, boxes, [rs], [rt]).item() == pytest.approx(value.item())


def test_zero_when_student_equals_teacher():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 4, 4)
    boxes = [torch.tensor([BOX_IN, BOX_EDGE]), torch.tensor([[2.0, 2.0, 0.0, 1.5, 3.0, 1.0, 0.7]])]
    assert UniDistillFeatureLoss(**GRID)(x, x.clone(), boxes).item() == 0.0
    assert UniDistillRelationLoss(**GRID)(x, x.clone(), boxes).item() == pytest.approx(0.0, abs=1e-6)
    assert UniDistillResponseLoss(**GRID, teacher_temperature=1.0)(x, x.clone(), boxes, x, x.clone()).item() == 0.0
    # with the default temperatures the teacher's logits are halved first
    assert UniDistillResponseLoss(**GRID)(x, 2 * x, boxes).item() == pytest.approx(0.0, abs=1e-6)


def test_empty_samples_add_nothing_and_all_empty_is_zero_with_zero_gradients():
    torch.manual_seed(0)
    s, t = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    box = torch.tensor([BOX_IN])
    for loss in (UniDistillFeatureLoss(**GRID), UniDistillRelationLoss(**GRID), UniDistillResponseLoss(**GRID)):
        with_empty = loss(s, t, [torch.zeros(0, 7), box])
        assert with_empty.item() == pytest.approx(loss(s[1:], t[1:], [box]).item(), rel=1e-6)
        student = s.clone().requires_grad_()
        value = loss(student, t, [torch.zeros(0, 9), torch.zeros(0, 7)])
        value.backward()
        assert value.item() == 0.0 and torch.equal(student.grad, torch.zeros_like(s))
        # a box entirely off the map: all its keypoints dropped, nothing to compare
        assert loss(s[:1], t[:1], [torch.tensor([[50.0, 50.0, 0, 2, 2, 1, 0]])]).item() == 0.0


def test_duplicated_batch_gives_the_same_value():
    torch.manual_seed(1)
    s, t = torch.randn(1, 3, 4, 4), torch.randn(1, 3, 4, 4)
    boxes = [torch.tensor([BOX_IN, BOX_EDGE])]
    for loss in (UniDistillFeatureLoss(**GRID), UniDistillRelationLoss(**GRID), UniDistillResponseLoss(**GRID)):
        once = loss(s, t, boxes).item()
        assert loss(torch.cat([s, s]), torch.cat([t, t]), boxes * 2).item() == pytest.approx(once, rel=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_finite_gradients_at_extremes_and_zero_features(dtype):
    boxes = [torch.tensor([BOX_IN, BOX_EDGE])]
    zero = torch.zeros(1, 2, 4, 4)  # post-ReLU maps: all-zero keypoint features
    big = torch.full((1, 2, 4, 4), 1e4)
    big[:, 1, ::2] = -1e4
    for s, t in ((zero, big), (big, zero), (big, -big)):
        for loss in (UniDistillFeatureLoss(**GRID), UniDistillRelationLoss(**GRID), UniDistillResponseLoss(**GRID)):
            student = s.to(dtype).requires_grad_()
            value = loss(student, t.to(dtype).requires_grad_(), boxes)
            value.backward()
            assert value.dtype == torch.float32 and torch.isfinite(value)
            assert student.grad is not None and torch.isfinite(student.grad.float()).all()


def test_teacher_gets_no_gradient():
    s, t = (torch.randn(1, 2, 4, 4, requires_grad=True) for _ in range(2))
    boxes = [torch.tensor([BOX_IN])]
    (UniDistillFeatureLoss(**GRID)(s, t, boxes) + UniDistillRelationLoss(**GRID)(s, t, boxes)
     + UniDistillResponseLoss(**GRID)(s, t, boxes, s, t)).backward()
    assert s.grad.abs().sum() > 0 and t.grad is None


_coord = st.floats(-12.0, 12.0, allow_nan=False)


@settings(max_examples=30, deadline=None)
@given(boxes=st.lists(st.lists(st.tuples(_coord, _coord, st.floats(0.0, 9.0), st.floats(0.0, 9.0),
                                         st.floats(-7.0, 7.0)), max_size=5), min_size=1, max_size=3),
       channels=st.integers(1, 4), seed=st.integers(0, 10_000))
def test_random_boxes_never_crash(boxes, channels, seed):
    g = torch.Generator().manual_seed(seed)
    batch = len(boxes)
    gt = [torch.tensor([[x, y, 0.0, dx, dy, 1.0, yaw, 0.5, -0.5] for x, y, dx, dy, yaw in sample],
                       dtype=torch.float32).view(-1, 9) for sample in boxes]
    s = torch.randn(batch, channels, 4, 4, generator=g).requires_grad_()
    t = torch.randn(batch, channels, 4, 4, generator=g)
    for loss in (UniDistillFeatureLoss(**GRID), UniDistillRelationLoss(**GRID), UniDistillResponseLoss(**GRID)):
        value = loss(s, t, gt)
        (grad,) = torch.autograd.grad(value, s)
        assert torch.isfinite(value) and value.item() >= 0 and torch.isfinite(grad).all()
        if not isinstance(loss, UniDistillResponseLoss):
            assert 0 <= loss.last_dropped_keypoints.item() <= 9 * sum(len(b) for b in boxes)


def test_bad_input_is_named():
    s, t = _maps()
    box = torch.tensor([BOX_IN])
    with pytest.raises(ValueError, match=r"UniDistillFeatureLoss: gt_boxes\[0\] is \(1, 5\).*7\+"):
        UniDistillFeatureLoss(**GRID)(s, t, [box[:, :5]])
    with pytest.raises(ValueError, match="UniDistillFeatureLoss.*differ.*connector"):
        UniDistillFeatureLoss(**GRID)(s, torch.cat([t, t], 1), [box])
    with pytest.raises(ValueError, match=r"UniDistillRelationLoss: student is \(1, 2, 5, 5\).*\(4, 4\)"):
        UniDistillRelationLoss(**GRID)(torch.zeros(1, 2, 5, 5), torch.zeros(1, 2, 5, 5), [box])
    with pytest.raises(ValueError, match="2 box tensors for a batch of 1"):
        UniDistillFeatureLoss(**GRID)(s, t, [box, box])
    with pytest.raises(ValueError, match="list with one"):
        UniDistillFeatureLoss(**GRID)(s, t, box)
    with pytest.raises(ValueError, match="student_regression and teacher_regression"):
        UniDistillResponseLoss(**GRID)(s, t, [box], student_regression=s)
    with pytest.raises(ValueError, match="regression"):
        UniDistillResponseLoss(**GRID)(s, t, [box], s, t[:, :1])
    with pytest.raises(ValueError, match="temperature"):
        UniDistillResponseLoss(teacher_temperature=0.0)
    with pytest.raises(ValueError, match="bev_range"):
        UniDistillFeatureLoss(bev_range=(0, 0, -1, 4))


def test_registered_with_the_official_defaults():
    loss = MODELS.build(dict(type="UniDistillResponseLoss"))
    assert loss.grid.shape == (180, 180) and loss.teacher_temperature == 2.0 and loss.min_radius == 0
    assert MODELS.build(dict(type="UniDistillFeatureLoss")).grid.step == pytest.approx((0.6, 0.6))
    assert isinstance(MODELS.build(dict(type="UniDistillRelationLoss")), UniDistillRelationLoss)
    assert UNIDISTILL_WEIGHTS["camera_from_lidar"] == dict(feature=100.0, relation=40.0, response=10.0)
    assert UNIDISTILL_WEIGHTS["lidar_from_fusion"] == dict(feature=10.0, relation=1.0, response=10.0)


def _official_gaussian_mask(boxes, height, width, cell):
    """The official calculate_box_mask_gaussian in plain Python: centre cell = int() of the grid
    coordinate (truncation towards zero), radius max(0, int(r)), every cell within r (Chebyshev) of
    the centre that lies on the map gets exp(−(Δx² + Δy²) / 2σ²), σ = (2r + 1) / 6, merged by max."""
    mask = [[0.0] * width for _ in range(height)]
    for x, y, _z, dx, dy, *_ in boxes:
        r = max(0, int(gaussian_radius(dy / cell, dx / cell)))
        cx, cy, sigma = int(x / cell), int(y / cell), (2 * r + 1) / 6
        for row in range(height):
            for col in range(width):
                if abs(row - cy) <= r and abs(col - cx) <= r:
                    g = math.exp(-((row - cy) ** 2 + (col - cx) ** 2) / (2 * sigma * sigma))
                    mask[row][col] = max(mask[row][col], g)
    return mask


def test_a_box_centred_just_off_the_grid_draws_its_partial_gaussian():
    grid = dict(bev_range=(0.0, 0.0, 8.0, 8.0), cell_size=0.5, stride=2)  # 8 × 8 cells of 1 m
    boxes = [[-0.3, 3.5, 0.0, 8.0, 8.0, 1.0, 0.0],   # int(−0.3) = 0: the official code centres it on column 0
             [-1.5, 6.2, 0.0, 8.0, 8.0, 1.0, 0.0],   # centre column −1: the right part of its Gaussian
             [9.2, -2.7, 0.0, 8.0, 8.0, 1.0, 0.0],   # centre (9, −2), r = 2: only cell (col 7, row 0)
             [20.0, 4.0, 0.0, 8.0, 8.0, 1.0, 0.0]]   # too far: nothing
    assert int(gaussian_radius(8.0, 8.0)) == 2
    got = draw_gaussian_mask(torch.tensor(boxes), **grid)
    _close(got, _official_gaussian_mask(boxes, 8, 8, 1.0), atol=1e-6)
    assert got[0, 7].item() == pytest.approx(math.exp(-8 / (2 * (5 / 6) ** 2)), rel=1e-6)
    assert got[:, :2].max().item() == 1.0 and got[6, 1].item() == pytest.approx(math.exp(-4 / (2 * (5 / 6) ** 2)))
    # the response loss uses it, counts the box that draws nothing, and takes a mask-weighted mean even
    # when only a partial Gaussian (sum below 1) is left
    loss = UniDistillResponseLoss(**grid, teacher_temperature=1.0)
    hs, ht = torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8)
    ht[0, 0, 0, 7] = 2.0
    value = loss(hs, ht, [torch.tensor(boxes[2:])])
    assert loss.last_skipped_boxes == 1
    assert value.item() == pytest.approx(abs(0.5 - 1 / (1 + math.exp(-2))), rel=1e-5)
