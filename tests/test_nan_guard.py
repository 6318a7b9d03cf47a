"""The non-finite loss guard on a tiny Distiller run: a NaN / Inf loss term stops training with a
message naming the term and the iteration, before the optimizer step and with no checkpoint after
it; ``action="skip"`` skips such batches (no optimizer step), counts them and stops after
``max_skips`` in a row."""

import math

import pytest
import torch
from torch import nn

from tests.conftest import REPO, write_dataset
from xmodal.apis import train as train_api
from xmodal.engine.checkpoint import load_checkpoint_file, save_checkpoint_file
from xmodal.engine.nan_guard import NonFiniteLossError, NonFiniteLossGuard
from xmodal.registry import MODELS

pytestmark = pytest.mark.slow

CONFIG = """
default_scope = "xmodal"
mlp = dict(type="FeatureMLP", in_dim=6, hidden_dims=[8])
model = dict(
    type="Distiller",
    student=dict(type="ModalityClassifier", encoders=dict(audio=mlp), head=dict(type="ClsHead", num_classes=3)),
    teachers=dict(t=dict(model=dict(type="ModalityClassifier", encoders=dict(audio=mlp),
                                    head=dict(type="ClsHead", num_classes=3)), checkpoint={teacher!r})),
    losses=[dict(type="FlakyLoss", student="logits", teacher="t.logits", bad_calls={bad_calls}, value={value!r})],
)
loader = dict(batch_size=2, num_workers=0, collate_fn=dict(type="default_collate"))
train_dataloader = dict(**loader, sampler=dict(type="DefaultSampler", shuffle=True),
                        dataset=dict(type="PairedDataset", data_root={root!r}, split="train"))
val_dataloader = dict(**loader, sampler=dict(type="DefaultSampler", shuffle=False),
                      dataset=dict(type="PairedDataset", data_root={root!r}, split="val"))
val_evaluator = dict(type="ClassificationMetric", num_classes=3)
val_cfg = dict()
optim_wrapper = dict(type={wrapper!r}, optimizer=dict(type="Adam", lr=1e-2))
train_cfg = dict(by_epoch=True, max_epochs=3, val_interval=1)
default_hooks = dict(checkpoint=dict(type="CheckpointHook", interval=1, max_keep_ckpts=3),
                     logger=dict(type="LoggerHook", interval=1))
visualizer = dict(type="Visualizer", vis_backends=[dict(type="LocalVisBackend")])
log_level = "WARNING"
randomness = dict(seed=0)
"""
ITERS_PER_EPOCH = 2  # 4 training samples, batch 2


@MODELS.register_module(force=True)
class FlakyLoss(nn.Module):
    """Squared logit difference; NaN or Inf on the listed (1-based) training calls."""

    def __init__(self, bad_calls=(), value="nan") -> None:
        super().__init__()
        self.bad_calls, self.value, self.calls = set(bad_calls), float(value), 0

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        loss = (student - teacher).pow(2).mean()
        return loss * self.value if self.calls in self.bad_calls else loss


@pytest.fixture
def run(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    root = write_dataset(tmp_path / "data", n=8)
    teacher = MODELS.build(dict(type="ModalityClassifier", encoders=dict(audio=dict(type="FeatureMLP", in_dim=6,
                                hidden_dims=[8])), head=dict(type="ClsHead", num_classes=3)))
    save_checkpoint_file({"state_dict": teacher.state_dict()}, tmp_path / "teacher.pth")

    def build(bad_calls=(), value="nan", nan_guard=None, wrapper="OptimWrapper"):
        config = tmp_path / "flaky.py"
        text = CONFIG.format(teacher=str(tmp_path / "teacher.pth"), root=str(root), bad_calls=list(bad_calls),
                             value=value, wrapper=wrapper)
        config.write_text(text + (f"nan_guard = {nan_guard!r}\n" if nan_guard is not None else ""))
        return train_api.build_runner(train_api.parse_args([str(config), "--work-dir", str(tmp_path / "work")]))

    return build, tmp_path / "work"


def _guard(runner) -> NonFiniteLossGuard:
    (guard,) = [h for h in runner.hooks if isinstance(h, NonFiniteLossGuard)]
    return guard


@pytest.mark.parametrize("value, shown", [("nan", "nan"), ("inf", "inf"), ("-inf", "-inf")])
def test_non_finite_loss_stops_before_the_step_with_no_checkpoint_after(run, value, shown):
    build, work = run
    runner = build(bad_calls=[3], value=value)  # the 3rd iteration: epoch 2, batch 1
    with pytest.raises(NonFiniteLossError) as err:
        runner.train()
    message = str(err.value)
    assert f"non-finite loss loss_flaky_0={shown} at iteration 3 (epoch 2, batch 1 of 2)" in message
    assert "loss_ce=" in message and "\n" not in message
    # epoch 1's checkpoint is the last one; the model still holds its weights: no step on the bad batch
    assert sorted(p.name for p in work.glob("*.pth")) == ["epoch_1.pth"]
    assert (work / "last_checkpoint").read_text() == str(work / "epoch_1.pth")
    saved = load_checkpoint_file(work / "epoch_1.pth")["state_dict"]
    current = runner.model.state_dict()
    assert all(torch.equal(saved[k], current[k]) for k in saved)


def test_cli_prints_one_error_line(run, capsys):
    build, work = run
    runner = build(bad_calls=[3])
    config = runner.cfg.filename
    with pytest.raises(SystemExit) as exit_info:
        train_api.main([config, "--work-dir", str(work)])
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("error: non-finite loss loss_flaky_0=nan at iteration 3")


def test_skip_mode_completes_without_stepping_on_bad_batches(run):
    build, work = run
    runner = build(bad_calls=[2, 5], nan_guard=dict(action="skip", max_skips=2))
    model = runner.train()
    total = 3 * ITERS_PER_EPOCH
    assert _guard(runner).skipped == 2
    checkpoint = load_checkpoint_file(work / "epoch_3.pth")
    assert checkpoint["nan_guard"] == {"skipped": 2, "consecutive": 0}
    assert checkpoint["meta"]["iter"] == total
    # Adam counts its steps: two batches fewer than iterations
    steps = {float(s["step"]) for s in checkpoint["optimizer"]["state"].values()}
    assert steps == {total - 2}
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_skip_mode_with_cpu_bf16_autocast(run):
    build, work = run
    runner = build(bad_calls=[4], nan_guard=dict(action="skip"), wrapper="CPUBf16OptimWrapper")
    runner.train()
    steps = {float(s["step"]) for s in load_checkpoint_file(work / "epoch_3.pth")["optimizer"]["state"].values()}
    assert steps == {3 * ITERS_PER_EPOCH - 1}


def test_too_many_consecutive_skips_stop(run):
    build, work = run
    runner = build(bad_calls=range(3, 100), nan_guard=dict(action="skip", max_skips=3))
    with pytest.raises(NonFiniteLossError, match=r"at iteration 5 .*3 batches in a row .*max_skips=3"):
        runner.train()
    assert _guard(runner).skipped == 3
    # epoch 2 skipped both its batches: its checkpoint holds epoch 1's weights and the running count
    epoch_1, epoch_2 = (load_checkpoint_file(work / f"epoch_{e}.pth") for e in (1, 2))
    assert epoch_2["nan_guard"] == {"skipped": 2, "consecutive": 2}
    assert all(torch.equal(epoch_1["state_dict"][k], v) for k, v in epoch_2["state_dict"].items())
    assert not (work / "epoch_3.pth").exists()


def test_guard_off_and_bad_settings(run):
    build, _ = run
    assert not [h for h in build(nan_guard=dict(action="off")).hooks if isinstance(h, NonFiniteLossGuard)]
    assert _guard(build()).action == "stop"  # on by default
    with pytest.raises(ValueError, match=r"nan_guard.action='explode'; expected one of \('stop', 'skip', 'off'\)"):
        build(nan_guard=dict(action="explode"))
    with pytest.raises(ValueError, match=r"nan_guard: unknown key\(s\) \['max_skip'\]"):
        build(nan_guard=dict(action="skip", max_skip=3))


def test_checkpoint_with_non_finite_weights_is_not_written():
    class Runner:
        iter = 7

    guard = NonFiniteLossGuard()
    state = {"ok": torch.ones(2), "count": torch.tensor(3), "bad": torch.tensor([1.0, math.inf])}
    with pytest.raises(NonFiniteLossError, match="weight bad is not finite at iteration 7"):
        guard.before_save_checkpoint(Runner(), {"state_dict": state})
    checkpoint = {"state_dict": {"ok": torch.ones(2)}}
    guard.before_save_checkpoint(Runner(), checkpoint)
    assert checkpoint["nan_guard"] == {"skipped": 0, "consecutive": 0}
