"""One function rescales epoch-based schedules whichever tool changes the number of epochs."""

from __future__ import annotations

import copy

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import PARAM_SCHEDULERS

from tests.conftest import REPO
from xmodal.apis import train as train_api
from xmodal.apis.compare import entry_config
from xmodal.apis.config import load_config
from xmodal.errors import ConfigError

EPOCH_LENGTH = 5


def lr_curve(cfg: Config, epochs: int) -> list[float]:
    """The learning rate of every training iteration, built the way mmengine's Runner builds it."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.optim_wrapper.optimizer.lr)
    schedulers = []
    for spec in copy.deepcopy(cfg.param_scheduler):
        spec = dict(spec)
        cls = PARAM_SCHEDULERS.get(spec.pop("type"))
        if spec.pop("convert_to_iter_based", False):
            spec.pop("by_epoch", None)
            schedulers.append(cls.build_iter_from_epoch(optimizer, epoch_length=EPOCH_LENGTH, **spec))
        else:
            schedulers.append(cls(optimizer, **spec))
    curve = []
    for _ in range(epochs * EPOCH_LENGTH):
        curve.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        for scheduler in schedulers:
            scheduler.step()
    return curve


def test_train_and_compare_give_the_same_lr_curve_for_the_same_override(tmp_path):
    args = train_api.parse_args([str(REPO / "configs/digits_av/kd_image_from_fusion.py"),
                                 "--cfg-options", "train_cfg.max_epochs=3"])
    trained = load_config(args.config, args.cfg_options)
    spec = Config.fromfile(str(REPO / "configs/compare/digits_av_losses.py"))
    spec.student_config = str(REPO / spec.student_config)
    compared = entry_config(spec, spec.entries[1], {"t_fusion": tmp_path}, tmp_path, seed=0, epochs=3)
    assert trained.param_scheduler == compared.param_scheduler
    curve = lr_curve(trained, 3)
    assert curve == lr_curve(compared, 3)
    assert curve[-1] < 1e-4  # the cosine reaches eta_min=1e-5 at the end of the 3 epochs, not of the base's 30


def test_a_warm_up_keeps_its_length_and_a_schedule_set_with_the_override_is_kept(tmp_path):
    cfg = load_config(REPO / "configs/retrieval/student_shapes.py", {"train_cfg.max_epochs": 4})
    ends = [(s.get("by_epoch", True), s.get("begin"), s.get("end")) for s in cfg.param_scheduler]
    assert ends[-1][2] == 4 and all(end <= 4 for by_epoch, _, end in ends if by_epoch)
    cfg = load_config(REPO / "configs/digits_av/student_image.py",
                      {"train_cfg.max_epochs": 4, "param_scheduler.0.end": 4, "param_scheduler.0.T_max": 8})
    assert cfg.param_scheduler[0].T_max == 8  # the user's own schedule, as given


def test_an_override_whose_schedule_runs_past_the_end_is_refused():
    with pytest.raises(ConfigError, match=r"param_scheduler\[0\]\.end: 30 is past train_cfg\.max_epochs=3; "
                                          r"expected an end <= 3"):
        load_config(REPO / "configs/digits_av/student_image.py",
                    {"train_cfg.max_epochs": 3, "param_scheduler.0.eta_min": 0.0})
