"""Crash and resume: a training run killed with SIGKILL (mid-epoch, during validation, during a
checkpoint write) and resumed with ``tools/train.py CONFIG --resume`` ends with the same weights,
optimizer / scheduler / RNG state, losses and validation metrics as an uninterrupted run; a
checkpoint is never half-written and ``last_checkpoint`` only names complete ones. Also a staged
MST-Distill recipe killed in its routing stage (router, loss-weight decay, teacher cache)."""

import json
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

from tests.conftest import REPO, write_tiny_av
from xmodal.engine.checkpoint import load_checkpoint_file, save_checkpoint_file

pytestmark = pytest.mark.slow

MAX_EPOCHS = 3
ITERS_PER_EPOCH = 4  # 32 training samples, batch 8

COMMON = """
custom_imports = dict(imports=["tests.kill_hooks"], allow_failed_imports=False)
default_scope = "xmodal"
data_root = {root!r}
image = dict(type="LeNet5", input_size=12, out_dim=8)
audio = dict(type="SpectrogramCNN", channels=(4, 8), out_dim=6, dropout=0.3)
head = dict(type="ClsHead", num_classes=3)
student = dict(type="ModalityClassifier", encoders=dict(image=image), head=head)
fusion = dict(type="ModalityClassifier", encoders=dict(image=image, audio=audio),
              fusion=dict(type="ConcatFusion", out_dim=8, modality_dropout=0.4), head=head)
loader = dict(batch_size=8, num_workers=0, collate_fn=dict(type="default_collate"))
val_dataloader = dict(**loader, sampler=dict(type="DefaultSampler", shuffle=False),
                      dataset=dict(type="PairedDataset", data_root=data_root, split="val"))
test_dataloader = val_dataloader
val_evaluator = dict(type="ClassificationMetric", num_classes=3, items=("accuracy", "cross_entropy"))
test_evaluator = val_evaluator
val_cfg = dict()
test_cfg = dict()
default_hooks = dict(
    timer=dict(type="IterTimerHook"),
    logger=dict(type="LoggerHook", interval=1),
    param_scheduler=dict(type="ParamSchedulerHook"),
    checkpoint=dict(type="CheckpointHook", interval=1, max_keep_ckpts=1, save_best="cross_entropy", rule="less"),
    sampler_seed=dict(type="DistSamplerSeedHook"),
)
env_cfg = dict(cudnn_benchmark=False, mp_cfg=dict(mp_start_method="fork"), dist_cfg=dict(backend="gloo"))
visualizer = dict(type="Visualizer", vis_backends=[dict(type="LocalVisBackend")])
log_processor = dict(by_epoch=True, window_size=1)
log_level = "WARNING"
load_from = None
resume = False
randomness = dict(seed=0, deterministic=True)
"""

KD_CONFIG = COMMON + """
# image-only student distilled from an image+audio teacher; noisy inputs from torch, numpy and python RNGs
model = dict(type="Distiller", student=student,
             teachers=dict(t_fusion=dict(model=fusion, checkpoint={teacher!r})),
             losses=[dict(type="KDLoss", weight=1.0, student="logits", teacher="t_fusion.logits", temperature=4.0)])
pipeline = [dict(type="GaussianNoise", key="image", std=0.2), dict(type="RandomJitter", key="image")]
train_dataloader = dict(**loader, sampler=dict(type="DefaultSampler", shuffle=True),
                        dataset=dict(type="PairedDataset", data_root=data_root, split="train", pipeline=pipeline))
optim_wrapper = dict(type="OptimWrapper", optimizer=dict(type="AdamW", lr=1e-2, weight_decay=1e-2))
param_scheduler = [dict(type="CosineAnnealingLR", by_epoch=True, begin=0, end={epochs}, T_max={epochs},
                        eta_min=1e-4, convert_to_iter_based=True)]
train_cfg = dict(by_epoch=True, max_epochs={epochs}, val_interval=1)
custom_hooks = [dict(type="RNGStateHook"), dict(type="DistillWeightWarmupHook", terms=["kd_0"], warmup_epochs=3),
                dict(type="StudentExportHook"), dict(type="KillSwitchHook")]
"""

STAGED_CONFIG = COMMON + """
# MST-Distill in three short stages; the routing stage decays its loss weights every epoch
audio_model = dict(type="ModalityClassifier", encoders=dict(audio=audio), head=head)
teachers = dict(t_fusion=dict(model=fusion), t_audio=dict(model=audio_model))
mask_layers = dict(t_fusion=["fusion.fc1"], t_audio=["encoders.audio.fc"])
expert_names = ["t_fusion/fusion.fc1", "t_audio/encoders.audio.fc"]
train_dataloader = dict(**loader, sampler=dict(type="DefaultSampler", shuffle=True),
                        dataset=dict(type="PairedDataset", data_root=data_root, split="train"))
optim_wrapper = dict(type="OptimWrapper", optimizer=dict(type="Adam", lr=1e-2))
one_epoch = dict(by_epoch=True, max_epochs=1, val_interval=1)
stages = [
    dict(name="co_training", model=dict(type="MSTCoTrainer", student=student, teachers=teachers),
         train_cfg=one_epoch, default_hooks=dict(checkpoint=dict(save_best=None)),
         custom_hooks=[dict(type="KillSwitchHook")]),
    dict(name="mask_training",
         model=dict(type="MSTMaskTrainer", student=student, teachers=teachers, mask_layers=mask_layers),
         train_cfg=one_epoch, default_hooks=dict(checkpoint=dict(save_best=None)),
         val_evaluator=dict(_delete_=True, type="MaskKLMetric", expert_names=expert_names),
         custom_hooks=[dict(type="BestMaskHook"), dict(type="KillSwitchHook")]),
    dict(name="routing_distillation",
         model=dict(type="MSTRouterDistiller", student=student, teachers=teachers, mask_layers=mask_layers,
                    kl_decay=dict(factor=0.5, every=2), lb_decay=dict(factor=0.5, every=1)),
         train_cfg=dict(by_epoch=True, max_epochs={epochs}, val_interval=1),
         custom_hooks=[dict(type="RouterHook"), dict(type="TeacherCacheHook"), dict(type="StudentExportHook"),
                       dict(type="KillSwitchHook")]),
]
"""


def _write_data(root):
    write_tiny_av(root)


def _train(config, work_dir, kill_at=None, resume=False, write_log=None):
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    env.pop("XMODAL_TEST_KILL_AT", None)
    if kill_at:
        env["XMODAL_TEST_KILL_AT"] = kill_at
    if write_log:
        env["XMODAL_TEST_WRITE_LOG"] = str(write_log)
    args = [sys.executable, "tools/train.py", str(config), "--work-dir", str(work_dir)]
    args += ["--resume"] if resume else []
    result = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    expected = -signal.SIGKILL if kill_at else 0
    assert result.returncode == expected, f"exit {result.returncode}\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def kd(tmp_path_factory):
    """The tiny KD config and its uninterrupted reference run (computed once for the module)."""
    tmp = tmp_path_factory.mktemp("resume_kill")
    _write_data(tmp / "data")
    from xmodal.registry import MODELS

    torch.manual_seed(1)
    teacher = MODELS.build(dict(type="ModalityClassifier", encoders=dict(
        image=dict(type="LeNet5", input_size=12, out_dim=8),
        audio=dict(type="SpectrogramCNN", channels=(4, 8), out_dim=6, dropout=0.3)),
        fusion=dict(type="ConcatFusion", out_dim=8, modality_dropout=0.4), head=dict(type="ClsHead", num_classes=3)))
    save_checkpoint_file({"state_dict": teacher.state_dict()}, tmp / "teacher.pth")
    staged = tmp / "mst_tiny.py"
    staged.write_text(STAGED_CONFIG.format(root=str(tmp / "data"), epochs=MAX_EPOCHS))
    config = tmp / "kd_tiny.py"
    config.write_text(KD_CONFIG.format(root=str(tmp / "data"), teacher=str(tmp / "teacher.pth"), epochs=MAX_EPOCHS))
    reference = tmp / "reference"
    _train(config, reference, write_log=tmp / "reference_writes.log")
    return config, reference, tmp / "reference_writes.log", staged


# -- reading a finished run ------------------------------------------------------------------------
def _scalars(work_dir):
    """Per-iteration training losses and per-epoch validation metrics of all runs in ``work_dir`` (a
    resumed run's records replace the killed run's for the steps it trained again)."""
    train, val = {}, {}
    for log in sorted(work_dir.glob("*/vis_data/scalars.json")):
        for line in log.read_text().splitlines():
            record = json.loads(line)
            if "loss" in record:
                train[record["step"]] = {k: v for k, v in record.items() if k.startswith("loss") or k == "lr"}
            elif "val/accuracy" in record:
                val[record["step"]] = {k: v for k, v in record.items() if k in ("val/accuracy", "val/cross_entropy")}
    return train, val


def _assert_same_tensors(a, b, what):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), what
    elif isinstance(a, dict):
        assert set(a) == set(b), f"{what}: keys {sorted(a)} vs {sorted(b)}"
        for key in a:
            _assert_same_tensors(a[key], b[key], f"{what}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), what
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same_tensors(x, y, f"{what}[{i}]")
    elif isinstance(a, np.ndarray):
        assert np.array_equal(a, b), what
    else:
        assert a == b, f"{what}: {a!r} vs {b!r}"


def _assert_same_run(work_dir, reference, final="epoch_3.pth"):
    got, want = load_checkpoint_file(work_dir / final), load_checkpoint_file(reference / final)
    assert {"state_dict", "optimizer", "rng_state"} <= set(want)
    for key in ("state_dict", "optimizer", "param_schedulers", "rng_state", "nan_guard"):
        assert (key in got) == (key in want), key
        if key in want:
            _assert_same_tensors(got[key], want[key], key)
    assert (got["meta"]["epoch"], got["meta"]["iter"]) == (want["meta"]["epoch"], want["meta"]["iter"])
    assert got["message_hub"]["runtime_info"]["best_score"] == want["message_hub"]["runtime_info"]["best_score"]
    best = sorted(p.name for p in reference.glob("best_*.pth"))
    assert sorted(p.name for p in work_dir.glob("best_*.pth")) == best and len(best) == 1
    _assert_same_tensors(load_checkpoint_file(work_dir / best[0])["state_dict"],
                         load_checkpoint_file(reference / best[0])["state_dict"], "best state_dict")
    train, val = _scalars(work_dir)
    ref_train, ref_val = _scalars(reference)
    assert len(ref_train) == MAX_EPOCHS * ITERS_PER_EPOCH and len(ref_val) == MAX_EPOCHS
    assert train == ref_train  # exact floats: every iteration, including those trained again after the kill
    assert val == ref_val
    assert (work_dir / "last_checkpoint").read_text() == str(work_dir / final)
    assert not list(work_dir.glob(".*.tmp"))


# -- the tests -------------------------------------------------------------------------------------
def test_reference_run_writes_every_checkpoint_atomically(kd):
    config, reference, write_log, _ = kd
    written = set(write_log.read_text().split())
    on_disk = {f"reference/{p.name}" for p in reference.iterdir() if p.suffix == ".pth" or p.name == "last_checkpoint"}
    assert "reference/epoch_3.pth" in on_disk and "reference/last_checkpoint" in on_disk
    assert on_disk <= written
    # max_keep_ckpts=1: epoch_1 and epoch_2 were written, then deleted after their successor was complete
    assert {"reference/epoch_1.pth", "reference/epoch_2.pth"} <= written
    assert not (reference / "epoch_2.pth").exists()


@pytest.mark.parametrize("kill_at, resumes_from", [
    ("iter:6", "epoch_1.pth"),        # mid-epoch 2: resumes from the epoch 1 checkpoint
    ("val:2", "epoch_1.pth"),         # validating epoch 2: its checkpoint is only written after validation
    ("write:epoch_2.pth", "epoch_1.pth"),  # half of epoch_2.pth in its temp file
])
def test_killed_run_resumes_to_identical_result(kd, tmp_path, kill_at, resumes_from):
    config, reference, _, _ = kd
    work = tmp_path / "run"
    _train(config, work, kill_at=kill_at)
    assert (work / "last_checkpoint").read_text() == str(work / resumes_from)
    assert load_checkpoint_file(work / resumes_from)["meta"]["epoch"] == 1  # complete and readable
    assert not (work / "epoch_2.pth").exists()
    if kill_at.startswith("write:"):
        (leftover,) = work.glob(".epoch_2.pth.*.tmp")  # the half-written temp file, never under the final name
        assert 0 < leftover.stat().st_size
    _train(config, work, resume=True)
    _assert_same_run(work, reference)


def test_staged_recipe_killed_in_its_routing_stage_resumes_to_identical_result(kd, tmp_path):
    staged = kd[3]
    reference, work = tmp_path / "reference", tmp_path / "run"
    _train(staged, reference)
    for stage in ("stage1", "stage2"):  # finished stages, as the killed run would have left them (saves two runs)
        shutil.copytree(reference / stage, work / stage)
    _train(staged, work, kill_at="iter:6@stage3", resume=True)  # stage 3, epoch 2
    assert not (work / "stage3" / "stage_done.json").exists()
    assert (work / "stage3" / "last_checkpoint").read_text() == str(work / "stage3" / "epoch_1.pth")
    resumed = _train(staged, work, resume=True)
    assert resumed.stdout.count("already finished: skipped") == 2
    _assert_same_run(work / "stage3", reference / "stage3")
    # the router's choices and loss weights per epoch, logged once per epoch
    usage = "stage3/router_usage.jsonl"
    assert (work / usage).read_text() == (reference / usage).read_text()
    assert len(list((work / "stage3" / "teacher_cache").iterdir())) == 1


def test_resume_from_a_mid_epoch_checkpoint_is_refused(kd, tmp_path, monkeypatch):
    """mmengine's epoch-based loop would train the epoch's first batches again: xmodal refuses instead.
    An iteration checkpoint due at the end of an epoch is written after validation, as an epoch boundary."""
    from xmodal.apis import train as train_api
    from xmodal.engine.checkpoint import CheckpointError

    config, _, _, _ = kd
    monkeypatch.chdir(REPO)
    options = ["--cfg-options", "train_cfg.max_epochs=1", "randomness.deterministic=False",  # no global switch here
               "default_hooks.checkpoint.by_epoch=False",
               "default_hooks.checkpoint.interval=2", "default_hooks.checkpoint.max_keep_ckpts=2"]
    train_api.build_runner(train_api.parse_args([str(config), "--work-dir", str(tmp_path), *options])).train()
    mid, end = (load_checkpoint_file(tmp_path / f"iter_{i}.pth")["meta"] for i in (2, 4))
    assert (mid["epoch"], mid["iter"]) == (0, 2)
    assert (end["epoch"], end["iter"]) == (1, 4)  # 4 iterations per epoch: written after validation, a boundary
    args = train_api.parse_args([str(config), "--work-dir", str(tmp_path), "--resume", str(tmp_path / "iter_2.pth"),
                                 *options])
    with pytest.raises(CheckpointError, match=r"mid-epoch \(epoch 0, iteration 2, 4 iterations per epoch\)"):
        train_api.build_runner(args).train()
