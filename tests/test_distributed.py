"""Distributed runs through mmengine's launcher, as a user starts them: ``torchrun ... tools/train.py CONFIG
--launcher pytorch`` on CPU (gloo), then ``tools/test.py`` on one and on two processes.

Checked: two processes with 8 samples each train the same weights as one process with 16 (the
DistributedSampler splits each global batch, DDP averages the gradients); the test metrics of one
checkpoint are the same on one and two processes although the sampler pads the odd test split, and
equal a computation by hand; only rank 0 writes checkpoints and logs; the teacher cache is built once.
"""

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config

from tests.conftest import REPO
from xmodal.apis.config import load_config
from xmodal.apis.test import evaluate
from xmodal.data.paired import PairedDataset
from xmodal.data.writer import write_dataset
from xmodal.engine.checkpoint import load_checkpoint_file, load_weights, save_checkpoint_file
from xmodal.registry import MODELS

SPLITS = {"train": range(0, 64), "val": range(64, 73), "test": range(73, 86)}  # val 9, test 13: both odd
EPOCHS = 3
CONFIG = """
_base_ = [{kd!r}]
data_root = {data!r}
train_dataloader = dict(batch_size=8, dataset=dict(data_root=data_root))
val_dataloader = dict(batch_size=4, dataset=dict(data_root=data_root))
test_dataloader = dict(batch_size=4, dataset=dict(data_root=data_root))
model = dict(teachers=dict(t_fusion=dict(config={teacher_config!r}, checkpoint={teacher!r})))
optim_wrapper = dict(optimizer=dict(lr=3e-3))
param_scheduler = []
train_cfg = dict(max_epochs={epochs})
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(max_keep_ckpts={epochs}))
test_evaluator = dict(type="ClassificationMetric", num_classes=10,
                      items=("accuracy", "macro_f1", "kappa", "cross_entropy"))
visualizer = dict(type="Visualizer", vis_backends=[dict(type="LocalVisBackend")])  # no TensorBoard import
"""


def _env() -> dict:
    # CPU and gloo even on a GPU machine; one thread per process so two ranks fit on two cores
    return {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}


def _run(cwd: Path, *args: str, nproc: int = 1) -> subprocess.CompletedProcess:
    """``python ARGS``, or ``torchrun --standalone --nproc-per-node NPROC ARGS`` (as ``-m torch.distributed.run``)."""
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"] if nproc > 1 else []
    result = subprocess.run([sys.executable, *launcher, *args], cwd=cwd, env=_env(), capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict:
    """A small learnable digits-av-format dataset (86 samples), a fusion teacher checkpoint, the KD config."""
    root = tmp_path_factory.mktemp("dist")
    rng = np.random.default_rng(0)
    n = sum(len(r) for r in SPLITS.values())
    labels = np.arange(n) % 10
    patterns = rng.normal(size=(10, 1, 28, 28)).astype(np.float32)
    arrays = {"image": (rng.normal(size=(n, 1, 28, 28)) + 1.5 * patterns[labels]).astype(np.float32),
              "audio": rng.normal(size=(n, 1, 64, 64)).astype(np.float32)}
    write_dataset(root / "data", arrays, labels, [str(i) for i in range(10)], "tiny-digits-av", "tests",
                  {k: list(v) for k, v in SPLITS.items()})
    teacher_config = str(REPO / "configs/digits_av/teacher_fusion.py")
    torch.manual_seed(0)
    save_checkpoint_file({"state_dict": MODELS.build(Config.fromfile(teacher_config).model).state_dict()},
                         root / "teacher.pth")
    config = root / "kd_tiny.py"
    config.write_text(CONFIG.format(kd=str(REPO / "configs/digits_av/kd_image_from_fusion.py"),
                                    data=str(root / "data"), teacher_config=teacher_config,
                                    teacher=str(root / "teacher.pth"), epochs=EPOCHS))
    return {"root": root, "config": config, "data": root / "data"}


@pytest.fixture(scope="module")
def trained(setup) -> dict:
    """The same recipe trained on 2 processes × batch 8 and on 1 process × batch 16."""
    root, config = setup["root"], str(setup["config"])
    _run(root, str(REPO / "tools/train.py"), config, "--work-dir", "two", "--launcher", "pytorch", nproc=2)
    _run(root, str(REPO / "tools/train.py"), config, "--work-dir", "one", "--cfg-options",
         "train_dataloader.batch_size=16")
    return {"two": root / "two", "one": root / "one", **setup}


def _student(path: Path) -> dict[str, torch.Tensor]:
    state = load_checkpoint_file(path)["state_dict"]
    return {k: v for k, v in state.items() if k.startswith("student.")}


def _max_diff(a: dict, b: dict) -> float:
    return max(float((a[k] - b[k]).abs().max()) for k in a)


@pytest.mark.slow
def test_two_processes_train_the_weights_of_one_process_with_the_same_global_batch(trained):
    # The image student has no BatchNorm and no dropout, and the DefaultSampler gives rank r the
    # positions r, r+2, ... of the shuffled order, so step i of the two ranks together sees exactly
    # the 16 samples of step i of the single process; KD and CE are means over the batch, so the
    # DDP-averaged gradient is the single-process gradient up to float summation order. Adam turns
    # rounding in near-zero gradient entries into updates of up to ~1e-5 over these 12 steps;
    # weights that missed the all-reduce would differ by ~lr = 3e-3 per step.
    one, two = _student(trained["one"] / f"epoch_{EPOCHS}.pth"), _student(trained["two"] / f"epoch_{EPOCHS}.pth")
    assert one.keys() == two.keys() and one
    assert _max_diff(one, two) < 1e-4
    moved = _max_diff(_student(trained["two"] / "epoch_1.pth"), two)
    assert moved > 100 * 1e-4  # training moved the weights far more than the tolerance


def _files(work_dir: Path) -> list[str]:
    names = []
    for path in sorted(work_dir.rglob("*")):
        if path.is_file():
            rel = re.sub(r"^\d{8}_\d{6}/", "<run>/", path.relative_to(work_dir).as_posix())
            names.append(re.sub(r"\d{8}_\d{6}", "<run>", rel))
    return names


@pytest.mark.slow
def test_only_rank_0_writes_checkpoints_and_logs(trained):
    # mmengine saves checkpoints on the main process only (Runner.save_checkpoint is master_only,
    # CheckpointHook writes last_checkpoint and removes old files on rank 0), xmodal's student export
    # returns on other ranks, and rank > 0 keeps no log file at log_level INFO. So the two-process work
    # dir holds exactly the files of the single-process one: one checkpoint per epoch, one best, one
    # log, one scalars file, no per-rank copies, no temporary files of interrupted writes.
    one, two = _files(trained["one"]), _files(trained["two"])
    assert two == one
    assert [f for f in two if f.endswith(".pth")] == sorted(
        [f"epoch_{e}.pth" for e in range(1, EPOCHS + 1)] + [f"best_accuracy_epoch_{_best_epoch(trained['two'])}.pth",
                                                            "student_best.pth", "student_last.pth"])
    assert sum(f.endswith(".log") for f in two) == 1 and sum(f.endswith("scalars.json") for f in two) == 1
    assert not [f for f in two if "rank" in f or f.endswith(".tmp")]
    assert (trained["two"] / "last_checkpoint").read_text().strip() == str(trained["two"] / f"epoch_{EPOCHS}.pth")
    assert not any((trained["root"] / ".dist_test").glob("*"))  # mmengine's result exchange cleaned up

    dumped = Config.fromfile(str(trained["two"] / "kd_tiny.py"))  # the config the ranks ran with
    assert dumped.env_cfg.dist_cfg.backend == "gloo"
    assert dumped.model_wrapper_cfg.device_ids is None
    assert any(h["type"] == "SyncBuffersHook" for h in dumped.custom_hooks)


def _best_epoch(work_dir: Path) -> int:
    (best,) = work_dir.glob("best_accuracy_epoch_*.pth")
    return int(best.stem.rsplit("_", 1)[1])


@pytest.mark.slow
def test_two_process_training_loss_is_finite_and_decreases(trained):
    (scalars,) = trained["two"].glob("*/vis_data/scalars.json")
    rows = [json.loads(line) for line in scalars.read_text().splitlines()]
    losses = {epoch: [r["loss"] for r in rows if "loss" in r and r["epoch"] == epoch] for epoch in (1, EPOCHS)}
    assert len(losses[1]) == 4 and len(losses[EPOCHS]) == 4  # 64 samples / (2 ranks × 8) per epoch
    assert all(math.isfinite(v) for v in losses[1] + losses[EPOCHS])
    assert np.mean(losses[EPOCHS]) < np.mean(losses[1]) - 0.05


def _by_hand(setup, checkpoint: Path) -> dict[str, float]:
    """Accuracy and mean cross-entropy of the checkpoint's student on the 13 test samples."""
    student = MODELS.build(Config.fromfile(str(REPO / "configs/digits_av/student_image.py")).model)
    load_weights(student, checkpoint)
    dataset = PairedDataset(setup["data"], split="test")
    images = torch.stack([dataset[i]["image"] for i in range(len(dataset))])
    labels = torch.tensor([int(dataset[i]["label"]) for i in range(len(dataset))])
    with torch.no_grad():
        logits = student.eval()(mode="tensor", image=images)["logits"].double()
    nll = -torch.log_softmax(logits, 1)[torch.arange(len(labels)), labels]
    return {"accuracy": float((logits.argmax(1) == labels).double().mean()), "cross_entropy": float(nll.mean())}


@pytest.mark.slow
def test_test_metrics_are_the_same_on_one_and_two_processes(trained):
    root, checkpoint = trained["root"], trained["two"] / f"epoch_{EPOCHS}.pth"
    config = str(trained["config"])
    # one process: what tools/test.py runs, in this process (saves an interpreter start)
    evaluate(config, str(checkpoint), out=str(root / "one.json"), work_dir=str(root / "test_one"))
    _run(root, str(REPO / "tools/test.py"), config, str(checkpoint), "--work-dir", "test_two", "--out", "two.json",
         "--launcher", "pytorch", nproc=2)
    one = json.loads((root / "one.json").read_text())["metrics"]
    two = json.loads((root / "two.json").read_text())["metrics"]
    assert set(one) == set(two) == {"accuracy", "macro_f1", "kappa", "cross_entropy"}
    assert all(abs(one[k] - two[k]) <= 1e-6 for k in one), (one, two)
    # 13 samples, none counted twice: the sampler's padding (the 14th sample on rank 1) is dropped
    expected = _by_hand(trained, checkpoint)
    assert two["accuracy"] == pytest.approx(expected["accuracy"], abs=1e-6)
    assert round(two["accuracy"] * 13, 6) == round(two["accuracy"] * 13)
    assert two["cross_entropy"] == pytest.approx(expected["cross_entropy"], abs=1e-5)


CACHE_SCRIPT = """
import sys, time
import numpy as np
import torch.distributed as dist
from xmodal.distill.teacher_cache import load_or_build

dist.init_process_group("gloo")
rank = dist.get_rank()
cache_dir, calls = sys.argv[1], sys.argv[2]

def compute():
    with open(calls, "a") as f:
        f.write(f"{rank}\\n")
    time.sleep(0.5)  # a rank that did not wait for the build would find no file
    for start in range(0, 10, 4):
        positions = np.arange(start, min(start + 4, 10))
        yield positions, np.stack([positions, -positions], 1).astype(np.float32)

for _ in range(2):  # the second call reads the finished entry
    array = load_or_build(cache_dir, "key", 10, compute)
    assert np.array_equal(np.asarray(array), np.stack([np.arange(10), -np.arange(10)], 1)), rank
dist.destroy_process_group()
"""


@pytest.mark.slow
def test_teacher_cache_is_built_once_by_rank_0_and_read_by_all(tmp_path):
    script = tmp_path / "cache_ranks.py"
    script.write_text(CACHE_SCRIPT)
    _run(tmp_path, str(script), str(tmp_path / "cache"), str(tmp_path / "calls.txt"), nproc=2)
    assert (tmp_path / "calls.txt").read_text() == "0\n"


def test_launcher_without_its_environment_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    with pytest.raises(ValueError, match=r"--launcher pytorch: \$RANK is not set; start the command with torchrun"):
        load_config(REPO / "configs/digits_av/student_image.py", launcher="pytorch")
