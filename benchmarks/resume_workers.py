"""Exact resume with data loader workers: kill -9 at random iterations, resume, compare with a run that was
never interrupted.

    python benchmarks/resume_workers.py [--trials 10] [--variants default labelled] [--seed 0]

A tiny distillation run (32 training samples, 3 epochs of 4 iterations, batch 8) with ``num_workers=2``
and ``persistent_workers=True`` on every loader; the training pipeline draws random numbers from torch,
numpy and Python in the workers (``GaussianNoise``, ``RandomJitter``) and the student has dropout.
Variants: ``default`` (mmengine's ``DefaultSampler``) and ``labelled`` (half of the labels,
``LabelledRatioBatchSampler`` with 4 labelled samples in each batch of 8). Each trial trains, sends
SIGKILL once the run has logged iteration K (K drawn at random from 5..11, after the first epoch, so the
process dies somewhere in the iteration after it: loading data, stepping, validating or writing a
checkpoint), resumes with ``--resume`` (were no checkpoint written yet, it would start again) and
compares the final checkpoint (weights, optimizer, schedulers, RNG states) and every logged loss and
metric, bit for bit, with the uninterrupted run. Prints one row per trial and the count of identical
results.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

ITERATIONS = 12  # 3 epochs of 4

CONFIG = """
custom_imports = dict(imports=["tests.kill_hooks"], allow_failed_imports=False)  # RandomJitter
default_scope = "xmodal"
data_root = {root!r}
image = dict(type="LeNet5", input_size=12, out_dim=8)
audio = dict(type="SpectrogramCNN", channels=(4, 8), out_dim=6)
head = dict(type="ClsHead", num_classes=3)
student = dict(type="ModalityClassifier", encoders=dict(image=image),
               head=dict(type="ClsHead", num_classes=3, dropout=0.3))
fusion = dict(type="ModalityClassifier", encoders=dict(image=image, audio=audio),
              fusion=dict(type="ConcatFusion", out_dim=8), head=head)
model = dict(type="Distiller", student=student, teachers=dict(t_fusion=dict(model=fusion, checkpoint={teacher!r})),
             losses=[dict(type="KDLoss", weight=1.0, student="logits", teacher="t_fusion.logits", temperature=4.0)])
loader = dict(batch_size=8, num_workers=2, persistent_workers=True, collate_fn=dict(type="default_collate"))
pipeline = [dict(type="GaussianNoise", key="image", std=0.2), dict(type="RandomJitter", key="image")]
train_dataloader = dict(**loader, sampler=dict(type="DefaultSampler", shuffle=True),
                        dataset=dict(type="PairedDataset", data_root=data_root, split="train", pipeline=pipeline))
val_dataloader = dict(**loader, sampler=dict(type="DefaultSampler", shuffle=False),
                      dataset=dict(type="PairedDataset", data_root=data_root, split="val"))
val_evaluator = dict(type="ClassificationMetric", num_classes=3, items=("accuracy", "cross_entropy"))
val_cfg = dict()
optim_wrapper = dict(type="OptimWrapper", optimizer=dict(type="AdamW", lr=1e-2, weight_decay=1e-2))
param_scheduler = [dict(type="CosineAnnealingLR", by_epoch=True, begin=0, end=3, T_max=3, eta_min=1e-4,
                        convert_to_iter_based=True)]
train_cfg = dict(by_epoch=True, max_epochs=3, val_interval=1)
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
randomness = dict(seed=0, deterministic=True)
"""

LABELLED = """
train_dataloader = dict(**loader, sampler=dict(type="DefaultSampler", shuffle=True),
                        batch_sampler=dict(type="LabelledRatioBatchSampler", labelled_per_batch=4),
                        dataset=dict(type="PairedDataset", data_root=data_root, split="train", pipeline=pipeline,
                                     labelled=dict(fraction=0.5, seed=0)))
"""


def prepare(root: Path) -> dict[str, Path]:
    """The data, a teacher checkpoint and one config per variant under ``root``."""
    from tests.conftest import write_tiny_av
    from xmodal.engine.checkpoint import save_checkpoint_file
    from xmodal.registry import MODELS

    write_tiny_av(root / "data")
    torch.manual_seed(1)
    teacher = MODELS.build(dict(type="ModalityClassifier", encoders=dict(
        image=dict(type="LeNet5", input_size=12, out_dim=8), audio=dict(type="SpectrogramCNN", channels=(4, 8),
                                                                        out_dim=6)),
        fusion=dict(type="ConcatFusion", out_dim=8), head=dict(type="ClsHead", num_classes=3)))
    save_checkpoint_file({"state_dict": teacher.state_dict()}, root / "teacher.pth")
    text = CONFIG.format(root=str(root / "data"), teacher=str(root / "teacher.pth"))
    configs = {"default": root / "default.py", "labelled": root / "labelled.py"}
    configs["default"].write_text(text)
    configs["labelled"].write_text(text + LABELLED)
    return configs


def start(config: Path, work_dir: Path, resume: bool = False) -> subprocess.Popen:
    """``tools/train.py CONFIG`` in a process of its own; its stderr goes to ``<work_dir>.stderr`` (a file, not
    a pipe: the data loader workers of a killed run keep a pipe open until they notice)."""
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    args = [sys.executable, str(REPO / "tools/train.py"), str(config), "--work-dir", str(work_dir)]
    with open(f"{work_dir}.stderr", "w") as err:
        process = subprocess.Popen(args + (["--resume"] if resume else []), cwd=REPO, env=env,
                                   stdout=subprocess.DEVNULL, stderr=err)
    process.stderr_path = f"{work_dir}.stderr"
    return process


def finish(process: subprocess.Popen, timeout: float = 600) -> None:
    if process.wait(timeout=timeout) != 0:
        err = Path(process.stderr_path).read_text()
        raise RuntimeError(f"training failed (exit {process.returncode}):\n{err[-3000:]}")


def logged_iterations(work_dir: Path) -> int:
    """The last training iteration any run in ``work_dir`` has logged."""
    steps = [json.loads(line)["step"] for log in work_dir.glob("*/vis_data/scalars.json")
             for line in log.read_text().splitlines() if '"loss"' in line]
    return max(steps, default=0)


def kill_after(process: subprocess.Popen, work_dir: Path, iteration: int) -> int | None:
    """SIGKILL once the run has logged ``iteration``; the last iteration it logged before it died (None
    when it finished before the signal)."""
    while process.poll() is None and logged_iterations(work_dir) < iteration:
        time.sleep(0.02)
    killed = process.poll() is None
    if killed:
        os.kill(process.pid, signal.SIGKILL)
    process.wait()
    return logged_iterations(work_dir) if killed else None


def resume(config: Path, work_dir: Path) -> str:
    """Resume (or start again without a checkpoint) and run to the end; returns what it resumed from."""
    last = work_dir / "last_checkpoint"
    source = Path(last.read_text()).name if last.is_file() else "the start"
    finish(start(config, work_dir, resume=last.is_file()))
    return source


def _same(a, b, what: str, out: list[str]) -> None:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and torch.equal(a, b)):
            out.append(what)
    elif isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            out.append(f"{what} keys")
        for key in set(a) & set(b):
            _same(a[key], b[key], f"{what}.{key}", out)
    elif isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{what}[{i}]", out)
    elif isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        if not np.array_equal(a, b):
            out.append(what)
    elif a != b:
        out.append(what)


def _records(work_dir: Path) -> dict:
    """Every logged training loss and validation metric by step; a resumed run's records replace those the
    killed run logged for the steps it trained again."""
    records: dict = {}
    for log in sorted(work_dir.glob("*/vis_data/scalars.json")):
        for line in log.read_text().splitlines():
            record = json.loads(line)
            kind = "train" if "loss" in record else "val"
            records[(kind, record["step"])] = {k: v for k, v in record.items() if not k.endswith("time")}  # clocks
    return records


def differences(work_dir: Path, reference: Path) -> list[str]:
    """What differs between two finished runs (empty: identical, bit for bit)."""
    from xmodal.engine.checkpoint import load_checkpoint_file

    got, want = load_checkpoint_file(work_dir / "epoch_3.pth"), load_checkpoint_file(reference / "epoch_3.pth")
    out: list[str] = []
    for key in ("state_dict", "optimizer", "param_schedulers", "rng_state"):
        _same(got.get(key), want.get(key), key, out)
    if _records(work_dir) != _records(reference):
        out.append("logged losses / metrics")
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10, help="kill / resume trials per variant")
    parser.add_argument("--variants", nargs="+", default=["default", "labelled"], choices=["default", "labelled"])
    parser.add_argument("--seed", type=int, default=0, help="draws the kill iterations")
    args = parser.parse_args(argv)
    draw = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        configs = prepare(Path(tmp))
        print("| variant | trial | killed after iteration | resumed from | result |")
        print("|---|---|---|---|---|")
        identical = total = 0
        for variant in args.variants:
            reference = Path(tmp) / f"{variant}_reference"
            finish(start(configs[variant], reference))
            for trial in range(1, args.trials + 1):
                work = Path(tmp) / f"{variant}_{trial}"
                # after the first epoch's checkpoint and before the last iteration: every trial resumes
                at = draw.randint(ITERATIONS // 3 + 1, ITERATIONS - 1)
                died = kill_after(start(configs[variant], work), work, at)
                source = resume(configs[variant], work)
                diff = differences(work, reference)
                identical += not diff
                total += 1
                result = "identical" if not diff else f"DIFFERENT: {', '.join(diff[:3])}" + (
                    f" ... ({len(diff)} in all)" if len(diff) > 3 else "")
                print(f"| {variant} | {trial} | {'finished first' if died is None else died} | {source} | {result} |",
                      flush=True)
        print(f"\nidentical: {identical}/{total}")


if __name__ == "__main__":
    main()
