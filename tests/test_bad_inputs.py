"""The bad-input catalogue (docs/errors.md), case by case.

Every case runs as a user meets it: a command through its real ``main(argv)`` (two through a
subprocess), a library call through the public function. Each must fail with the documented error
type (a command: exit status 2 and one ``error: ...`` line on stderr, no traceback), with a message
naming the file / key / field at fault and what was expected, and must leave every file that existed
before exactly as it was (same bytes, same mtime; nothing deleted). A command that gets as far as
starting mmengine's Runner may add its log directory under the work dir, and nothing else.

Each case has an id (``D01``, ``C03``, ...) that docs/errors.md lists; a test keeps the two in sync.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import math
import os
import re
import socket
import subprocess
import sys
import time
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from data_prep import avmnist, flickr30k, nuscenes, ravdess
from tests.conftest import REPO, full_disk
from tests.conftest import write_dataset as write_tiny_dataset
from xmodal.apis import eval_retrieval as eval_retrieval_api
from xmodal.apis import export as export_api
from xmodal.apis import test as test_api
from xmodal.apis import train as train_api
from xmodal.cli import retrieval as retrieval_cli
from xmodal.cli import verify as verify_cli
from xmodal.data import DatasetFormatError, PairedDataset
from xmodal.data.detection import DetectionDataset, write_detection_dataset
from xmodal.data.retrieval import RetrievalDataset, write_retrieval_dataset
from xmodal.data.writer import DatasetExistsError, read_split_file, write_dataset
from xmodal.distill.distiller import Distiller
from xmodal.engine.checkpoint import save_checkpoint_file
from xmodal.errors import ConfigError, DiskFullError, RankFailedError, TeacherCacheError
from xmodal.evaluation.detection import evaluate_nuscenes
from xmodal.registry import MODELS

CLI = "exit 2"  # the expected outcome of a command: exit status 2, one "error: ..." line


@dataclasses.dataclass
class Case:
    id: str
    setup: Callable[[Path], Callable[[], object]]  # builds the inputs under the workspace, returns the action
    error: type[BaseException] | str  # the exception a library call raises, or CLI
    message: str  # regular expression searched in the message
    log_dir: str | None = None  # a command that starts a Runner may create this directory (its logs), nothing else


CASES: dict[str, Case] = {}


def case(case_id: str, error: type[BaseException] | str, message: str, log_dir: str | None = None):
    def register(setup):
        assert case_id not in CASES, case_id
        CASES[case_id] = Case(case_id, setup, error, message, log_dir)
        return setup

    return register


# -- the workspace snapshot ----------------------------------------------------------------------------------
def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under ``root``: a file's size, mtime and SHA-256, a directory, or a link's target."""
    state: dict[str, tuple] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            state[rel] = ("link", os.readlink(path))
        elif path.is_dir():
            state[rel] = ("dir",)
        else:
            stat = path.stat()
            state[rel] = ("file", stat.st_size, stat.st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest())
    return state


def check_untouched(before: dict[str, tuple], after: dict[str, tuple], log_dir: str | None = None) -> None:
    changed = sorted(p for p in before if after.get(p) != before[p])
    assert not changed, f"written or deleted: {changed}"
    new = sorted(set(after) - set(before))
    stray = [p for p in new if not (log_dir and (p == log_dir or p.startswith(log_dir + "/")))]
    assert not stray, f"created: {stray}"
    results = [p for p in new if p.endswith((".pth", ".json", "last_checkpoint"))]  # logs and the config dump only
    assert not results, f"a failed run wrote results: {results}"


def test_snapshot_sees_writes_deletions_and_new_files(tmp_path):
    (tmp_path / "a").write_text("x")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "b").write_text("y")
    before = snapshot(tmp_path)
    check_untouched(before, snapshot(tmp_path))
    os.utime(tmp_path / "a", ns=(0, 0))  # same bytes, another mtime
    with pytest.raises(AssertionError, match=r"written or deleted: \['a'\]"):
        check_untouched(before, snapshot(tmp_path))
    before = snapshot(tmp_path)
    (tmp_path / "d" / "b").write_bytes(b"z")  # same size, other bytes
    with pytest.raises(AssertionError, match=r"written or deleted: \['d/b'\]"):
        check_untouched(before, snapshot(tmp_path))
    before = snapshot(tmp_path)
    (tmp_path / "a").unlink()
    with pytest.raises(AssertionError, match=r"written or deleted: \['a'\]"):
        check_untouched(before, snapshot(tmp_path))
    before = snapshot(tmp_path)
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "run.log").write_text("")
    with pytest.raises(AssertionError, match=r"created: \['logs', 'logs/run.log'\]"):
        check_untouched(before, snapshot(tmp_path))
    check_untouched(before, snapshot(tmp_path), log_dir="logs")  # a Runner's log directory is allowed
    (tmp_path / "d" / "c").write_text("")
    with pytest.raises(AssertionError, match=r"created: \['d/c'\]"):
        check_untouched(before, snapshot(tmp_path), log_dir="logs")


# -- shared inputs -------------------------------------------------------------------------------------------
def _edit_json(path: Path, **fields) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), **fields}))


def _paired(ws: Path) -> Path:
    """conftest's tiny dataset: image 1x4x4 and audio 6 float32, 12 samples, 3 classes."""
    return write_tiny_dataset(ws / "tiny")


def _open(root: Path, split: str = "train", **kwargs) -> Callable[[], object]:
    return lambda: PairedDataset(root, split, **kwargs)


def _png_bytes(colour=(255, 0, 0), size=(12, 10)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


STUDENT = """default_scope = "xmodal"
data_root = {root!r}
student = dict(type="ModalityClassifier", encoders=dict(b=dict(type="FeatureMLP", in_dim=5, hidden_dims=[8])),
               head=dict(type="ClsHead", num_classes=3))
model = student
loader = dict(batch_size=4, num_workers=0, sampler=dict(type="DefaultSampler", shuffle=False),
              collate_fn=dict(type="default_collate"),
              dataset=dict(type="PairedDataset", data_root=data_root, split="train", modalities=["b"]))
train_dataloader = loader
val_dataloader = dict(loader, dataset=dict(loader["dataset"], split="val"))
test_dataloader = dict(loader, dataset=dict(loader["dataset"], split="test"))
val_evaluator = dict(type="ClassificationMetric", num_classes=3)
test_evaluator = val_evaluator
train_cfg = dict(by_epoch=True, max_epochs=1, val_interval=1)
val_cfg = dict()
test_cfg = dict()
optim_wrapper = dict(optimizer=dict(type="SGD", lr=0.1))
default_hooks = dict(checkpoint=dict(type="CheckpointHook", interval=1))
"""
KD = """_base_ = ["student.py"]
teacher = dict(type="ModalityClassifier",
               encoders=dict(a=dict(type="FeatureMLP", in_dim=6, hidden_dims=[8]),
                             b=dict(type="FeatureMLP", in_dim=5, hidden_dims=[8])),
               fusion=dict(type="ConcatFusion", out_dim=8), head=dict(type="ClsHead", num_classes=3))
model = dict(_delete_=True, type="Distiller", student={{{{_base_.student}}}},
             teachers=dict(t0=dict(model=teacher, checkpoint={checkpoint!r})),
             losses=[dict(type="KDLoss", student="logits", teacher="t0.logits", temperature=4.0)])
"""


def _task(ws: Path) -> Path:
    """A tiny two-modality classification task: data (a: 6 floats, b: 5 floats, 12 samples), a b-only
    student config, a KD config with an a+b fusion teacher and the teacher's checkpoint."""
    rng = np.random.default_rng(0)
    data = ws / "data"
    data.mkdir(parents=True)
    np.save(data / "a.npy", rng.normal(size=(12, 6)).astype(np.float32))
    np.save(data / "b.npy", rng.normal(size=(12, 5)).astype(np.float32))
    np.save(data / "labels.npy", (np.arange(12) % 3).astype(np.int64))
    (data / "meta.json").write_text(json.dumps({
        "name": "ab", "version": "1", "task": "classification", "classes": ["x", "y", "z"],
        "modalities": {"a": {"shape": [6], "dtype": "float32"}, "b": {"shape": [5], "dtype": "float32"}}}))
    (data / "splits.json").write_text(json.dumps({"train": [0, 2, 4, 6, 8, 10], "val": [1, 3, 9],
                                                  "test": [5, 7, 11]}))
    (ws / "student.py").write_text(STUDENT.format(root=str(data)))
    (ws / "kd.py").write_text(KD.format(checkpoint=str(ws / "teacher.pth")))
    from mmengine.config import Config

    torch.manual_seed(0)
    teacher = MODELS.build(Config.fromfile(str(ws / "kd.py")).teacher)
    torch.save({"state_dict": teacher.state_dict()}, ws / "teacher.pth")
    return ws


def _run_name(ws: Path) -> str:
    """A run name per case: mmengine keeps one logger per run name for the whole process."""
    return f"experiment_name={ws.parent.name}"


def _train(ws: Path, config: str, *options: str) -> Callable[[], object]:
    argv = [str(ws / config), "--work-dir", str(ws / "work"), "--cfg-options", _run_name(ws), *options]
    return lambda: train_api.main(argv)


def _test(ws: Path, checkpoint: Path | str, config: str = "student.py") -> Callable[[], object]:
    return lambda: test_api.main([str(ws / config), str(checkpoint), "--work-dir", str(ws / "work"),
                                  "--out", str(ws / "metrics.json"), "--cfg-options", _run_name(ws)])


# == datasets in xmodal's format: PairedDataset (docs/data_format.md) ========================================
@case("D01", DatasetFormatError, r"nowhere: data_root: directory does not exist")
def d01(ws):
    return _open(ws / "nowhere")


@case("D02", DatasetFormatError, r"tiny/meta\.json: file: missing; expected an xmodal dataset file")
def d02(ws):
    (_paired(ws) / "meta.json").unlink()
    return _open(ws / "tiny")


@case("D03", DatasetFormatError, r"tiny/meta\.json: json: not valid JSON \(Expecting")
def d03(ws):
    (_paired(ws) / "meta.json").write_text('{"name": "tiny",')
    return _open(ws / "tiny")


@case("D04", DatasetFormatError, r"tiny/meta\.json: modalities: required key missing")
def d04(ws):
    root = _paired(ws)
    meta = json.loads((root / "meta.json").read_text())
    del meta["modalities"]
    (root / "meta.json").write_text(json.dumps(meta))
    return _open(root)


@case("D05", DatasetFormatError, r"tiny/meta\.json: task: got 'regression'; expected one of "
                                 r"\('classification', 'retrieval', 'detection'\)")
def d05(ws):
    _edit_json(_paired(ws) / "meta.json", task="regression")
    return _open(ws / "tiny")


@case("D06", DatasetFormatError, r"tiny/audio\.npy: modality 'audio': file missing")
def d06(ws):
    (_paired(ws) / "audio.npy").unlink()
    return _open(ws / "tiny")


@case("D07", DatasetFormatError, r"tiny/labels\.npy: labels: file missing")
def d07(ws):
    (_paired(ws) / "labels.npy").unlink()
    return _open(ws / "tiny")


@case("D08", DatasetFormatError, r"tiny/image\.npy: shape: per-sample shape \[1, 5, 5\] but meta\.json says "
                                 r"\[1, 4, 4\]")
def d08(ws):
    np.save(_paired(ws) / "image.npy", np.zeros((12, 1, 5, 5), np.float32))
    return _open(ws / "tiny")


@case("D09", DatasetFormatError, r"tiny/audio\.npy: dtype: float64 but meta\.json says float32")
def d09(ws):
    np.save(_paired(ws) / "audio.npy", np.zeros((12, 6), np.float64))
    return _open(ws / "tiny")


@case("D10", DatasetFormatError, r"tiny/audio\.npy: length: 11 samples but labels\.npy has 12")
def d10(ws):
    np.save(_paired(ws) / "audio.npy", np.zeros((11, 6), np.float32))
    return _open(ws / "tiny")


@case("D11", DatasetFormatError, r"tiny/audio\.npy: modality 'audio': non-finite value \(NaN/Inf\) in row 9; "
                                 r"expected finite numbers")
def d11(ws):
    audio = np.load(_paired(ws) / "audio.npy")
    audio[9, 2] = np.nan
    np.save(ws / "tiny" / "audio.npy", audio)
    return _open(ws / "tiny")


@case("D12", DatasetFormatError, r"tiny/image\.npy: modality 'image': non-finite value \(NaN/Inf\) in row 3")
def d12(ws):
    image = np.load(_paired(ws) / "image.npy")
    image[3, 0, 1, 1] = -np.inf
    np.save(ws / "tiny" / "image.npy", image)
    return _open(ws / "tiny")


@case("D13", DatasetFormatError, r"tiny/labels\.npy: labels: label 7 at row 4 is outside \[0, 2\]")
def d13(ws):
    labels = np.load(_paired(ws) / "labels.npy")
    labels[4] = 7
    np.save(ws / "tiny" / "labels.npy", labels)
    return _open(ws / "tiny")


@case("D14", DatasetFormatError, r"tiny/labels\.npy: labels: expected a 1-D integer array, got float32 \(12,\)")
def d14(ws):
    np.save(_paired(ws) / "labels.npy", np.zeros(12, np.float32))
    return _open(ws / "tiny")


@case("D15", DatasetFormatError, r"tiny/splits\.json: valid: split missing; the file has \['test', 'train', "
                                 r"'val'\]; did you mean 'val'\?")
def d15(ws):
    return _open(_paired(ws), "valid")


@case("D16", DatasetFormatError, r"tiny/splits\.json: val: split is empty")
def d16(ws):
    _edit_json(_paired(ws) / "splits.json", val=[])
    return _open(ws / "tiny", "val")


@case("D17", DatasetFormatError, r"tiny/splits\.json: test: index 12 at position 1 is outside \[0, 11\]")
def d17(ws):
    _edit_json(_paired(ws) / "splits.json", test=[5, 12])
    return _open(ws / "tiny", "test")


@case("D18", DatasetFormatError, r"tiny/splits\.json: val: sample id 2 at position 1 is also in split 'train'; "
                                 r"splits must not overlap")
def d18(ws):
    _edit_json(_paired(ws) / "splits.json", val=[1, 2])
    return _open(ws / "tiny", "train")  # any split: the file as a whole is wrong


@case("D19", DatasetFormatError, r"tiny/splits\.json: test: sample id 5 at position 1 is twice in this split")
def d19(ws):
    _edit_json(_paired(ws) / "splits.json", test=[5, 5])
    return _open(ws / "tiny", "test")


@case("D20", DatasetFormatError, r"tiny/splits\.json: train: expected a list of integer sample indices")
def d20(ws):
    _edit_json(_paired(ws) / "splits.json", train=["0", "2"])
    return _open(ws / "tiny", "train")


@case("D21", DatasetFormatError, r"tiny/meta\.json: modalities: \['depth'\] not in this dataset; it has "
                                 r"\['image', 'audio'\]; \['depth\.npy'\] exist but meta\.json does not declare them")
def d21(ws):
    np.save(_paired(ws) / "depth.npy", np.zeros((12, 4), np.float32))  # an extra file meta.json does not list
    return _open(ws / "tiny", modalities=["image", "depth"])


@case("D22", DatasetFormatError, r"tiny/image\.npy: modality 'image': not a readable \.npy array")
def d22(ws):
    path = _paired(ws) / "image.npy"
    path.write_bytes(path.read_bytes()[:100])  # truncated by an interrupted copy
    return _open(ws / "tiny")


def _written(ws: Path) -> Path:
    """A dataset as the writers make it, with meta.json's SHA-256 per file (audio 6 floats, 12 samples)."""
    rng = np.random.default_rng(0)
    return write_dataset(ws / "written", {"audio": rng.normal(size=(12, 6)).astype(np.float32)}, np.arange(12) % 3,
                         ["a", "b", "c"], "written", "test", {"train": [0, 1, 2, 3], "val": [4, 5], "test": [6, 7]})


@case("D23", DatasetFormatError, r"tiny/meta\.json: modalities: modality name '\.\./\.\./\.\./\.\./etc/passwd' is "
                                 r"not a plain file name; expected no '/', '\\' or '\.\.'")
def d23(ws):
    meta = json.loads((_paired(ws) / "meta.json").read_text())
    meta["modalities"]["../../../../etc/passwd"] = {"shape": [6], "dtype": "float32"}
    (ws / "tiny" / "meta.json").write_text(json.dumps(meta))
    return _open(ws / "tiny")


@case("D24", DatasetFormatError, r"tiny/audio\.npy: modality 'audio': resolves to .*elsewhere\.npy, outside the "
                                 r"dataset root .*tiny \(a symlink or '\.\.'\?\).*allow_outside_root=True")
def d24(ws):
    root = _paired(ws)
    np.save(ws / "elsewhere.npy", np.zeros((12, 6), np.float32))  # same shape and dtype: only the place is wrong
    (root / "audio.npy").unlink()
    (root / "audio.npy").symlink_to(ws / "elsewhere.npy")
    return _open(root)


@case("D25", DatasetFormatError, r"written/audio\.npy: sha256: content does not match meta\.json \(recorded "
                                 r"[0-9a-f]{12}\.\.\., file [0-9a-f]{12}\.\.\.\): the file changed after the dataset "
                                 r"was written")
def d25(ws):
    path = _written(ws) / "audio.npy"
    audio = np.load(path)
    audio[3, 1] += 1.0  # edited in place: same shape, dtype and size
    np.save(path, audio)
    return _open(ws / "written")


@case("D26", DatasetFormatError, r"tiny/meta\.json: classes: 'a' is listed twice \(positions 0 and 1\); expected "
                                 r"distinct class names")
def d26(ws):
    _edit_json(_paired(ws) / "meta.json", classes=["a", "a", "c"])
    return _open(ws / "tiny")


@case("D27", DatasetFormatError, r"tiny/meta\.json: modalities\.audio\.shape: \[0, 6\] has a dimension of size 0; "
                                 r"expected every per-sample dimension >= 1")
def d27(ws):
    meta = json.loads((_paired(ws) / "meta.json").read_text())
    meta["modalities"]["audio"]["shape"] = [0, 6]
    (ws / "tiny" / "meta.json").write_text(json.dumps(meta))
    return _open(ws / "tiny")


@case("D28", CLI, r"error: .*written/labels\.npy: sha256: content does not match meta\.json")
def d28(ws):
    path = _written(ws) / "labels.npy"
    np.save(path, np.roll(np.load(path), 1))  # relabelled after writing: every class still valid
    return lambda: verify_cli.main([str(ws / "written")])


# == writing datasets and split files (xmodal/data/writer.py) ===============================================
def _arrays():
    return {"audio": np.zeros((12, 6), np.float32)}, np.arange(12) % 3


@case("W01", DatasetExistsError, r"tiny already exists and is not empty; pass --force to replace it")
def w01(ws):
    _paired(ws)
    arrays, labels = _arrays()
    return lambda: write_dataset(ws / "tiny", arrays, labels, ["a", "b", "c"], "tiny", "test",
                                 {"train": [0], "val": [1], "test": [2]})


@case("W02", ValueError, r"tiny: modality 'audio' has 12 samples, labels 11")
def w02(ws):
    arrays, labels = _arrays()
    return lambda: write_dataset(ws / "tiny", arrays, labels[:11], ["a", "b", "c"], "tiny", "test",
                                 {"train": [0], "val": [1], "test": [2]})


@case("W03", ValueError, r"tiny: splits: test: sample id 1 at position 0 is also in split 'val'; splits must not "
                         r"overlap")
def w03(ws):
    arrays, labels = _arrays()
    return lambda: write_dataset(ws / "tiny", arrays, labels, ["a", "b", "c"], "tiny", "test",
                                 {"train": [0], "val": [1], "test": [1, 2]})


@case("W04", DatasetFormatError, r"split\.json: val: index 40 is not in \[0, 11\]")
def w04(ws):
    (ws / "split.json").write_text(json.dumps({"train": [0, 1], "val": [40], "test": [2]}))
    return lambda: read_split_file(ws / "split.json", 12)


@case("W05", DatasetFormatError, r"split\.json: test: sample id 1 at position 0 is also in split 'train'")
def w05(ws):
    (ws / "split.json").write_text(json.dumps({"train": [0, 1], "val": [3], "test": [1]}))
    return lambda: read_split_file(ws / "split.json", 12)


@case("W06", DatasetFormatError, r"indices\.csv: group_3: column missing; the file has \['group_0', 'group_1'\]")
def w06(ws):
    (ws / "indices.csv").write_text("group_0,group_1\n0,1\n1,0\n")
    return lambda: read_split_file(ws / "indices.csv", 2, group=3)


# == image-caption retrieval datasets (RetrievalDataset) =====================================================
def _captions(ws: Path) -> Path:
    images = [(f"{i}.png", _png_bytes((60 * i, 0, 0))) for i in range(4)]
    captions = [(0, "a red square"), (1, "green"), (2, "blue"), (3, "yellow"), (3, "gold")]
    return write_retrieval_dataset(ws / "caps", images, captions, {"train": [0, 1], "val": [2], "test": [3]},
                                   "toy", "unit test")


@case("R01", DatasetFormatError, r"caps/meta\.json: task: got 'classification'; RetrievalDataset reads "
                                 r"'retrieval' datasets")
def r01(ws):
    _edit_json(_captions(ws) / "meta.json", task="classification")
    return lambda: RetrievalDataset(ws / "caps", "train")


@case("R02", DatasetFormatError, r"caps/text\.jsonl: line 2: image: image id 9 is outside \[0, 3\]")
def r02(ws):
    path = _captions(ws) / "text.jsonl"
    lines = path.read_text().splitlines()
    lines[1] = json.dumps({**json.loads(lines[1]), "image": 9})
    path.write_text("\n".join(lines) + "\n")
    return lambda: RetrievalDataset(ws / "caps", "train")


@case("R03", DatasetFormatError, r"caps/splits\.json: val: image id 0 at position 1 is also in split 'train'")
def r03(ws):
    _edit_json(_captions(ws) / "splits.json", val=[2, 0])
    return lambda: RetrievalDataset(ws / "caps", "train")


@case("R04", DatasetFormatError, r"caps/files/images/1\.png: file: image file missing \(image\.jsonl line 2, "
                                 r"image id 1, split 'train'\)")
def r04(ws):
    (_captions(ws) / "files/images/1.png").unlink()
    return lambda: RetrievalDataset(ws / "caps", "train")


@case("R05", DatasetFormatError, r"caps/files/images/1\.png: image: not a readable image")
def r05(ws):
    (_captions(ws) / "files/images/1.png").write_bytes(_png_bytes(size=(64, 64))[:60])  # truncated PNG
    dataset = RetrievalDataset(ws / "caps", "train", image_size=8)
    return lambda: dataset[1]


@case("R06", DatasetFormatError, r"caps/splits\.json: train: image id 1 at position 1 has no caption in "
                                 r"text\.jsonl")
def r06(ws):
    path = _captions(ws) / "text.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows[1]["image"] = 0  # image 1 loses its only caption
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return lambda: RetrievalDataset(ws / "caps", "train")


@case("R07", DatasetFormatError, r"caps/image\.jsonl: line 2: file: '\.\./\.\./secret\.png' must be a path relative "
                                 r"to the dataset root, without '\.\.'")
def r07(ws):
    path = _captions(ws) / "image.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows[1]["file"] = "../../secret.png"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return lambda: RetrievalDataset(ws / "caps", "train")


@case("R08", DatasetFormatError, r"caps/files/images/1\.png: image\.jsonl line 2: file: resolves to .*other\.png, "
                                 r"outside the dataset root")
def r08(ws):
    image = _captions(ws) / "files/images/1.png"
    (ws / "other.png").write_bytes(_png_bytes())
    image.unlink()
    image.symlink_to(ws / "other.png")
    return lambda: RetrievalDataset(ws / "caps", "train")


# == BEV detection datasets (DetectionDataset) and nuScenes metrics ==========================================
def _scenes(ws: Path) -> Path:
    samples = ({"token": f"tok{i}", "points": np.full((4, 5), float(i), dtype=np.float32),
                "cams": {"CAM_FRONT": {"image": _png_bytes(size=(8, 4)),
                                       "intrinsics": [[4.0, 0, 3.5], [0, 4.0, 1.5], [0, 0, 1]],
                                       "lidar2cam": np.eye(4)}},
                "boxes": [[5.0 + i, 0, 0, 4, 2, 1.5, 0, 0, 0]] * (i + 1), "labels": ["car"] * (i + 1)}
               for i in range(3))
    return write_detection_dataset(ws / "scenes", samples, {"train": [0, 2], "val": [1]}, ["car", "pedestrian"],
                                   "tiny", "test", ["CAM_FRONT"])


def _edit_sample(root: Path, line: int, edit: Callable[[dict], None]) -> None:
    path = root / "samples.jsonl"
    rows = [json.loads(row) for row in path.read_text().splitlines()]
    edit(rows[line - 1])
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@case("B01", DatasetFormatError, r"scenes/files/lidar/tok2\.bin: points: size 96 bytes is not a multiple of 20 "
                                 r"\(float32 x 5 columns .*\); wrong column count\? \(sample 2, token 'tok2'\)")
def b01(ws):
    np.zeros((4, 6), np.float32).tofile(_scenes(ws) / "files/lidar/tok2.bin")  # 6 columns instead of 5
    return lambda: DetectionDataset(ws / "scenes", "train")


@case("B02", DatasetFormatError, r"tok2\.bin: points: non-finite value nan at point 1, column 0 \(x\) "
                                 r"\(sample 2, token 'tok2'\); expected finite numbers")
def b02(ws):
    points = np.zeros((4, 5), np.float32)
    points[1, 0] = np.nan
    points.tofile(_scenes(ws) / "files/lidar/tok2.bin")
    dataset = DetectionDataset(ws / "scenes", "train")  # values are checked when a point file is loaded
    return lambda: dataset[1]


@case("B03", DatasetFormatError, r"samples\.jsonl: line 2 \(sample 1, token 'tok1'\): boxes\[0\]: size "
                                 r"\(dx, dy, dz\) = \(4\.0, 0\.0, 1\.5\); every side must be positive")
def b03(ws):
    _edit_sample(_scenes(ws), 2, lambda r: r["boxes"][0].__setitem__(4, 0.0))
    return lambda: DetectionDataset(ws / "scenes", "val")


@case("B04", DatasetFormatError, r"samples\.jsonl: line 3 \(sample 2, token 'tok2'\): boxes\[1\]: got 7 values; "
                                 r"expected 9 numbers \[x, y, z, dx, dy, dz, yaw, vx, vy\]")
def b04(ws):
    _edit_sample(_scenes(ws), 3, lambda r: r["boxes"].__setitem__(1, [1, 2, 3, 4, 5, 6, 7]))
    return lambda: DetectionDataset(ws / "scenes", "train")


@case("B05", DatasetFormatError, r"samples\.jsonl: line 1 \(sample 0, token 'tok0'\): labels\[0\]: unknown label "
                                 r"'truck'; meta\.json classes are \['car', 'pedestrian'\]")
def b05(ws):
    _edit_sample(_scenes(ws), 1, lambda r: r["labels"].__setitem__(0, "truck"))
    return lambda: DetectionDataset(ws / "scenes", "train")


@case("B06", DatasetFormatError, r"samples\.jsonl: line 2 \(sample 1, token 'tok1'\): cams\.CAM_FRONT: "
                                 r"calibration missing for camera CAM_FRONT \(listed in meta\.json cameras\)")
def b06(ws):
    _edit_sample(_scenes(ws), 2, lambda r: r["cams"].pop("CAM_FRONT"))
    return lambda: DetectionDataset(ws / "scenes", "val")


@case("B07", DatasetFormatError, r"cams\.CAM_FRONT\.lidar2cam: not invertible: the 3x3 block has determinant 0")
def b07(ws):
    singular = [[1, 0, 0, 0], [2, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]
    _edit_sample(_scenes(ws), 2, lambda r: r["cams"]["CAM_FRONT"].__setitem__("lidar2cam", singular))
    return lambda: DetectionDataset(ws / "scenes", "val")


@case("B08", DatasetFormatError, r"scenes/splits\.json: val: sample id 2 at position 0 is also in split 'train'")
def b08(ws):
    _edit_json(_scenes(ws) / "splits.json", val=[2])
    return lambda: DetectionDataset(ws / "scenes", "val")


@case("B09", DatasetFormatError, r"samples\.jsonl: line 2 \(sample 1, token 'tok1'\): lidar: got '/etc/passwd'; "
                                 r"expected a path relative to the dataset root, without '\.\.'")
def b09(ws):
    _edit_sample(_scenes(ws), 2, lambda r: r.__setitem__("lidar", "/etc/passwd"))
    return lambda: DetectionDataset(ws / "scenes", "val")


@case("B10", DatasetFormatError, r"scenes/files/.*: cams\.CAM_FRONT\.file: resolves to .*shared\.png, outside the "
                                 r"dataset root")
def b10(ws):
    root = _scenes(ws)
    row = json.loads((root / "samples.jsonl").read_text().splitlines()[1])
    image = root / row["cams"]["CAM_FRONT"]["file"]
    (ws / "shared.png").write_bytes(_png_bytes(size=(8, 4)))
    image.unlink()
    image.symlink_to(ws / "shared.png")
    return lambda: DetectionDataset(ws / "scenes", "val")


def _box(x=0.0, score=None, **fields) -> dict:
    box = {"translation": [x, 0.0, 0.0], "size": [2.0, 4.0, 1.5], "rotation": [1.0, 0.0, 0.0, 0.0],
           "velocity": [0.0, 0.0], "detection_name": "car", "attribute_name": "vehicle.parked", **fields}
    if score is not None:
        box["detection_score"] = score
    return box


def _evaluate(**bad) -> Callable[[], object]:
    gt = {"s0": [_box()], "s1": [_box(5.0)]}
    pred = {"s0": [_box(score=0.9)], "s1": [_box(5.0, score=0.8), _box(9.0, score=0.5, **bad)]}
    return lambda: evaluate_nuscenes(gt, pred)


@case("E01", ValueError, r"pred\['s1'\]\[1\]: field 'size' must be finite and > 0")
def e01(ws):
    return _evaluate(size=[2.0, 0.0, 1.5])


@case("E02", ValueError, r"pred\['s1'\]\[1\]: field 'rotation' must be a unit quaternion \[w, x, y, z\]")
def e02(ws):
    return _evaluate(rotation=[1.0, 0.0, 0.0, 0.5])


@case("E03", ValueError, r"pred\['s1'\]\[1\]: field 'translation' must be finite")
def e03(ws):
    return _evaluate(translation=[9.0, math.nan, 0.0])


@case("E04", ValueError, r"gt and pred must cover the same samples; only in gt: \['s1'\]")
def e04(ws):
    return lambda: evaluate_nuscenes({"s0": [_box()], "s1": []}, {"s0": [_box(score=0.5)]})


# == configs (tools/train.py on a tiny task) ==================================================================
@case("C01", CLI, r"student\.py: model\.head\.type: unknown model type 'ClsHeed'; did you mean 'ClsHead'\?",
      log_dir="work")
def c01(ws):
    return _train(_task(ws), "student.py", "model.head.type=ClsHeed")


@case("C02", CLI, r"kd\.py: model\.losses\[0\]\.type: unknown model type 'KDLos'; did you mean 'KDLoss'",
      log_dir="work")
def c02(ws):
    return _train(_task(ws), "kd.py", "model.losses.0.type=KDLos")


@case("C03", CLI, r"student\.py: train_dataloader\.dataset\.type: unknown dataset type 'PairedDatset'; "
                  r"did you mean 'PairedDataset'\?")
def c03(ws):
    return _train(_task(ws), "student.py", "train_dataloader.dataset.type=PairedDatset")


@case("C04", CLI, r"student\.py: optim_wrapper\.optimizer\.type: unknown optimizer type 'Adamw'; "
                  r"did you mean 'AdamW'\?")
def c04(ws):
    return _train(_task(ws), "student.py", "optim_wrapper.optimizer.type=Adamw")


@case("C05", CLI, r"kd\.py: model\.losses\[0\]\.temperatur: KDLoss has no argument 'temperatur'; did you mean "
                  r"'temperature'\?", log_dir="work")
def c05(ws):
    return _train(_task(ws), "kd.py", "model.losses.0.temperatur=2.0")


@case("C06", CLI, r"head\.py: model\.head: required argument\(s\) 'num_classes' missing for ClsHead",
      log_dir="work")
def c06(ws):
    _task(ws)
    (ws / "head.py").write_text('_base_ = ["student.py"]\nmodel = dict(head=dict(_delete_=True, type="ClsHead"))\n')
    return _train(ws, "head.py")


@case("C07", CLI, r"student\.py: train_cfg\.max_epochs: got 'ten' \(str\); expected a positive integer")
def c07(ws):
    return _train(_task(ws), "student.py", "train_cfg.max_epochs=ten")


@case("C08", CLI, r"nomodel\.py: model: required key missing; expected model=dict\(type=\.\.\., \.\.\.\)")
def c08(ws):
    _task(ws)
    (ws / "nomodel.py").write_text((ws / "student.py").read_text().replace("model = student\n", ""))
    return _train(ws, "nomodel.py")


@case("C09", CLI, r"nooptim\.py: optim_wrapper: required key missing; training needs train_dataloader, "
                  r"train_cfg, optim_wrapper")
def c09(ws):
    _task(ws)
    text = (ws / "student.py").read_text()
    (ws / "nooptim.py").write_text(text.replace('optim_wrapper = dict(optimizer=dict(type="SGD", lr=0.1))\n', ""))
    return _train(ws, "nooptim.py")


@case("C10", CLI, r"broken\.py line 3: not valid Python \('\(' was never closed\)")
def c10(ws):
    (ws / "broken.py").write_text('default_scope = "xmodal"\nmodel = dict(type="ModalityClassifier")\nx = (\n')
    return _train(ws, "broken.py")


@case("C11", CLI, r"based\.py: a file it names does not exist: .*/nothere\.py \(check _base_\)")
def c11(ws):
    (ws / "based.py").write_text('_base_ = ["nothere.py"]\n')
    return _train(ws, "based.py")


@case("C12", CLI, r"names\.py: running the config failed: NameError: name 'undefined_setting' is not defined")
def c12(ws):
    (ws / "names.py").write_text("epochs = undefined_setting\n")
    return _train(ws, "names.py")


@case("C13", CLI, r"error: model\.losses\[0\] \(KDLoss\): student: 'fc9' is neither an output key "
                  r"\['logits', 'embedding'\] nor a module path; nearest: \['head\.fc'\]", log_dir="work")
def c13(ws):
    return _train(_task(ws), "kd.py", "model.losses.0.student=fc9")


@case("C14", CLI, r"error: model\.losses\[0\] \(KDLoss\): teacher='t1\.logits' must be '<teacher name>\.<output "
                  r"key or module path>' with a teacher name from \['t0'\]", log_dir="work")
def c14(ws):
    return _train(_task(ws), "kd.py", "model.losses.0.teacher=t1.logits")


@case("C15", KeyError, r"^model\.losses\[0\] \(KDLoss\): required key 'teacher' missing")
def c15(ws):
    student = dict(type="ModalityClassifier", encoders=dict(b=dict(type="FeatureMLP", in_dim=5, hidden_dims=[8])),
                   head=dict(type="ClsHead", num_classes=3))
    teachers = dict(t0=dict(model=student, allow_random_init=True))
    return lambda: Distiller(student, teachers, losses=[dict(type="KDLoss", student="logits")])


@case("C16", CLI, r"error: model\.teachers\.t0: teacher 't0' has no 'checkpoint': train the teacher first",
      log_dir="work")
def c16(ws):
    _task(ws)
    (ws / "nockpt.py").write_text('_base_ = ["kd.py"]\nmodel = dict(teachers=dict(t0=dict(checkpoint=None)))\n')
    return _train(ws, "nockpt.py")


@case("C17", CLI, r"error: model\.teachers\.t0: teacher 't0' reads modality \['a'\], which the batch does not have "
                  r"\(batch keys: \['b', 'index', 'label'\]\); add it to train_dataloader\.dataset\.modalities "
                  r"\(the student reads \['b'\], teacher 't0' reads \['a', 'b'\]\)", log_dir="work")
def c17(ws):
    # the fusion teacher reads a and b; the train dataset loads only b (the student's modality)
    return _train(_task(ws), "kd.py")


@case("C18", CLI, r"--stage: .*student\.py has no 'stages' list")
def c18(ws):
    _task(ws)
    return lambda: train_api.main([str(ws / "student.py"), "--stage", "2", "--work-dir", str(ws / "work")])


@case("C19", CLI, r"error: .*student\.py: work_dir: .*/taken cannot be a directory: .*/taken is a file; expected a "
                  r"directory or a path where one can be created")
def c19(ws):
    _task(ws)
    (ws / "taken").write_text("notes")  # a file where the work dir should go
    return lambda: train_api.main([str(ws / "student.py"), "--work-dir", str(ws / "taken"), "--cfg-options",
                                   _run_name(ws)])


@case("C20", CLI, r"error: .*cosine\.py: param_scheduler\[0\]\.end: 10 is past train_cfg\.max_epochs=2; expected "
                  r"an end <= 2: set train_cfg\.max_epochs alone")
def c20(ws):
    _task(ws)
    (ws / "cosine.py").write_text('_base_ = ["student.py"]\ntrain_cfg = dict(max_epochs=10)\nparam_scheduler = [dict('
                                  'type="CosineAnnealingLR", by_epoch=True, begin=0, end=10, T_max=10)]\n')
    return _train(ws, "cosine.py", "train_cfg.max_epochs=2", "param_scheduler.0.eta_min=0.0")


@case("C21", CLI, r"error: .*student\.py: train_dataloader\.dataset\.modalities: 'bb' is not a modality of "
                  r".*data/meta\.json \(it has \['a', 'b'\]\); did you mean 'b'\?")
def c21(ws):
    return _train(_task(ws), "student.py", "train_dataloader.dataset.modalities=[bb]")


@case("C22", CLI, r"error: .*own\.py: model\.encoders\.b: an encoder for modality 'b', which .*own/meta\.json does "
                  r"not have \(it has \['sensor'\]\); an encoder inherited from a _base_ config stays unless the "
                  r"dict is replaced: encoders=dict\(_delete_=True, \.\.\.\)")
def c22(ws):
    # a user's own dataset (one modality, 'sensor') under a config that inherits the b-encoder student
    _task(ws)
    own = ws / "own"
    own.mkdir()
    np.save(own / "sensor.npy", np.zeros((12, 5), np.float32))
    np.save(own / "labels.npy", (np.arange(12) % 3).astype(np.int64))
    (own / "meta.json").write_text(json.dumps({"name": "own", "version": "1", "task": "classification",
                                               "classes": ["x", "y", "z"],
                                               "modalities": {"sensor": {"shape": [5], "dtype": "float32"}}}))
    (own / "splits.json").write_text(json.dumps({"train": list(range(8)), "val": [8, 9], "test": [10, 11]}))
    (ws / "own.py").write_text(f'_base_ = ["student.py"]\ndata_root = {str(own)!r}\n'
                               'model = dict(encoders=dict(sensor=dict(type="FeatureMLP", in_dim=5, '
                               'hidden_dims=[8])))\n'
                               'train_dataloader = dict(dataset=dict(data_root=data_root, modalities=["sensor"]))\n')
    return _train(ws, "own.py")


@case("C23", CLI, r"error: --resume: param_scheduler\[0\]: the checkpoint's schedule ends at step 2, this run's "
                  r"at step 4 \(train_cfg\.max_epochs=2\); a resumed run continues its checkpoint's schedule",
      log_dir="work")
def c23(ws):
    _task(ws)
    (ws / "cosine.py").write_text('_base_ = ["student.py"]\ntrain_cfg = dict(max_epochs=10)\nparam_scheduler = [dict('
                                  'type="CosineAnnealingLR", by_epoch=True, begin=0, end=10, T_max=10, '
                                  'convert_to_iter_based=True)]\n')
    train_api.main([str(ws / "cosine.py"), "--work-dir", str(ws / "first"), "--cfg-options",
                    f"experiment_name={ws.parent.name}_first", "train_cfg.max_epochs=1"])
    # the resumed run: the same work dir, two epochs this time
    (ws / "first").rename(ws / "work")
    (ws / "work" / "last_checkpoint").write_text(str(ws / "work" / "epoch_1.pth"))
    (ws / "work" / "cosine.py").unlink()  # the Runner rewrites its config dump on every start
    time.sleep(1.1)  # the resumed run's log dir is named by the second it starts: not the first run's
    return _train(ws, "cosine.py", "train_cfg.max_epochs=2", "--resume")


# == commands: config and checkpoint paths, --cfg-options ====================================================
@case("L01", CLI, r"config file not found: .*studnet\.py; did you mean '.*student\.py'\?")
def l01(ws):
    _task(ws)
    return lambda: train_api.main([str(ws / "studnet.py"), "--work-dir", str(ws / "work")])


@case("L02", CLI, r"argument --cfg-options: 'train_cfg\.max_epochs' is not KEY=VALUE")
def l02(ws):
    return _train(_task(ws), "student.py", "train_cfg.max_epochs")


@case("L03", CLI, r"argument --cfg-options: 'model\.head\.dims=\[1,2': unbalanced brackets in the value")
def l03(ws):
    return _train(_task(ws), "student.py", "model.head.dims=[1,2")


@case("L04", CLI, r"--cfg-options model\.encoders\.b\.hidden_dims\.3=5: cannot be applied to .*student\.py: "
                  r"Index 3 exceeds the length of list \[8\]")
def l04(ws):
    return _train(_task(ws), "student.py", "model.encoders.b.hidden_dims.3=5")


@case("L05", CLI, r"nothing\.pth: no such checkpoint file or work dir")
def l05(ws):
    return _test(_task(ws), ws / "nothing.pth")


@case("L06", CLI, r"empty_run: no best_\*\.pth or last_checkpoint in this work dir; train it first")
def l06(ws):
    (_task(ws) / "empty_run").mkdir()
    return _test(ws, ws / "empty_run")


@case("L07", CLI, r"teacher\.pth: the checkpoint does not match the model's config\.", log_dir="work")
def l07(ws):
    return _test(_task(ws), ws / "teacher.pth")  # the a+b teacher's weights for the b-only student


@case("L08", CLI, r"garbage\.pth: not a readable PyTorch checkpoint \(truncated or corrupt\?\)", log_dir="work")
def l08(ws):
    (_task(ws) / "garbage.pth").write_bytes(b"not a checkpoint at all" * 10)
    return _test(ws, ws / "garbage.pth")


@case("L09", CLI, r"half\.pth: not a readable PyTorch checkpoint \(truncated or corrupt\?\)", log_dir="work")
def l09(ws):
    data = (_task(ws) / "teacher.pth").read_bytes()
    (ws / "half.pth").write_bytes(data[: len(data) // 2])
    return _test(ws, ws / "half.pth")


@case("L10", CLI, r"student\.py: the model \(ModalityClassifier\) is not a retrieval model with image and text "
                  r"embeddings")
def l10(ws):
    _task(ws)
    return lambda: eval_retrieval_api.main([str(ws / "student.py"), str(ws / "teacher.pth"), "--device", "cpu"])


@case("L11", CLI, r"error: .*student_best\.pth: not a training checkpoint, its meta has no \['epoch', 'iter'\]: a "
                  r"student-only or weights-only file \(such as student_best\.pth\) cannot be resumed\. --resume "
                  r"needs a full checkpoint .*epoch_N\.pth.*; to start a new run from these weights use --cfg-options "
                  r"load_from=.*student_best\.pth without --resume", log_dir="work")
def l11(ws):
    _task(ws)
    student = MODELS.build(dict(type="ModalityClassifier", encoders=dict(b=dict(type="FeatureMLP", in_dim=5,
                                                                                 hidden_dims=[8])),
                                head=dict(type="ClsHead", num_classes=3)))
    # what StudentExportHook writes after distillation: the student's weights, no epoch, no optimizer
    torch.save({"state_dict": student.state_dict(), "meta": {"source": "best_accuracy_epoch_1.pth"}},
               ws / "student_best.pth")
    return lambda: train_api.main([str(ws / "student.py"), "--work-dir", str(ws / "work"), "--resume",
                                   str(ws / "student_best.pth"), "--cfg-options", _run_name(ws)])


# == a disk that fills while a checkpoint or an export is written ======================================


def _on_full_disk(action: Callable[[], object]) -> Callable[[], object]:
    def run():
        with full_disk():
            return action()
    return run


@case("F01", DiskFullError, r"epoch_1\.pth: cannot write .*: No space left on device \(.* free on .*\); the "
                            r"previous epoch_1\.pth is unchanged")
def f01(ws):
    save_checkpoint_file({"state_dict": {"w": torch.ones(3)}, "meta": {"epoch": 1, "iter": 3}}, ws / "epoch_1.pth")
    return _on_full_disk(lambda: save_checkpoint_file({"state_dict": {"w": torch.zeros(300)}}, ws / "epoch_1.pth"))


@case("F02", CLI, r"error: .*student_export\.pth: cannot write .*: No space left on device \(.* free on .*\); the "
                  r"previous student_export\.pth is unchanged")
def f02(ws):
    _task(ws)
    student = MODELS.build(dict(type="ModalityClassifier", encoders=dict(b=dict(type="FeatureMLP", in_dim=5,
                                                                                 hidden_dims=[8])),
                                head=dict(type="ClsHead", num_classes=3)))
    torch.save({"state_dict": student.state_dict()}, ws / "student.pth")
    argv = [str(ws / "student.py"), str(ws / "student.pth"), "--out", str(ws / "student_export.pth"), "--force"]
    export_api.main(argv)  # a previous export, replaced with --force
    return _on_full_disk(lambda: export_api.main(argv))


@case("L12", CLI, r"error: work_dir .*work: another run \(PID \d+, started 2026-01-01 10:00:00\) is training into "
                  r"it; wait for it to finish, stop it, or give this run its own --work-dir")
def l12(ws):
    _task(ws)
    (ws / "work").mkdir()
    # this test's own process stands in for a live run holding the work dir
    (ws / "work" / ".xmodal.lock").write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                                          "started": "2026-01-01 10:00:00"}))
    return _train(ws, "student.py")


@case("L13", CLI, r"error: --resume: .*work has no checkpoint to resume \(no last_checkpoint\); train without "
                  r"--resume to start a new run")
def l13(ws):
    _task(ws)
    (ws / "work").mkdir()
    return _train(ws, "student.py", "--resume")


# == data_prep scripts ========================================================================================
def _avmnist_release(ws: Path) -> Path:
    """The AV-MNIST release layout, 6 train + 4 test samples."""
    src = ws / "avmnist"
    for part, n in (("train", 6), ("test", 4)):
        for modality, shape in (("image", (784,)), ("audio", (112, 112))):
            (src / modality).mkdir(parents=True, exist_ok=True)
            np.save(src / modality / f"{part}_data.npy", np.random.default_rng(n).random((n, *shape), np.float32))
        np.save(src / f"{part}_labels.npy", np.arange(n) % 10)
    return src


@case("P01", CLI, r"no_such_dir: src: directory does not exist; expected the avmnist release layout")
def p01(ws):
    return lambda: avmnist.main(["--src", str(ws / "no_such_dir"), "--out", str(ws / "out")])


@case("P02", CLI, r"out already exists and is not empty; pass --force to replace it")
def p02(ws):
    (ws / "out").mkdir()
    (ws / "out" / "keep.txt").write_text("an earlier result")
    src = _avmnist_release(ws)
    return lambda: avmnist.main(["--src", str(src), "--out", str(ws / "out")])


@case("P03", CLI, r"audio/train_data\.npy: shape: array shape \[6, 100, 100\]; expected N × one of")
def p03(ws):
    src = _avmnist_release(ws)
    np.save(src / "audio" / "train_data.npy", np.zeros((6, 100, 100), np.float32))
    return lambda: avmnist.main(["--src", str(src), "--out", str(ws / "out")])


@case("P04", CLI, r"split\.json: val: index 10 is not in \[0, 9\]")
def p04(ws):
    (ws / "split.json").write_text(json.dumps({"train": [0, 1, 2, 3, 4, 5], "val": [10], "test": [7, 8]}))
    src = _avmnist_release(ws)
    return lambda: avmnist.main(["--src", str(src), "--out", str(ws / "out"), "--split-file", str(ws / "split.json")])


@case("P05", CLI, r"--split-group 20: expected an official split number 0-19")
def p05(ws):
    src = _avmnist_release(ws)
    return lambda: avmnist.main(["--src", str(src), "--out", str(ws / "out"), "--split-group", "20"])


@case("P06", CLI, r"dataset_flickr30k\.json: .*not found|dataset_flickr30k\.json: file: missing")
def p06(ws):
    (ws / "images").mkdir()
    return lambda: flickr30k.main(["--src", str(ws / "images"), "--karpathy", str(ws / "dataset_flickr30k.json"),
                                   "--out", str(ws / "f30k")])


@case("P07", CLI, r"nusc: root: directory does not exist; expected a nuScenes root")
def p07(ws):
    return lambda: nuscenes.main(["--root", str(ws / "nusc"), "--out", str(ws / "det")])


@case("P08", DatasetFormatError, r"03-01-01-01-01-01-01\.wav: audio: not a readable audio file \(.*\); expected a "
                                 r"RAVDESS \.wav")
def p08(ws):
    path = ws / "03-01-01-01-01-01-01.wav"
    path.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")  # a header and nothing after it
    return lambda: ravdess.load_clip_audio(path, "polyphase")


@case("P09", DatasetFormatError, r"silent\.wav: audio: no audio samples; expected a non-empty \.wav")
def p09(ws):
    with wave.open(str(ws / "silent.wav"), "wb") as out:  # a valid header with zero frames
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(48000)
    return lambda: ravdess.load_clip_audio(ws / "silent.wav", "polyphase")


def _cut(path: Path, keep: int | None = None) -> Path:
    """Cut a file short, as an interrupted download or copy does (to half its size by default)."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2 if keep is None else keep])
    return path


@case("P10", DatasetFormatError, r"01-01-01-01-01-01-01\.mp4: video: cannot be opened \(truncated: box '\w+' at byte "
                                 r"\d+ runs to byte [\d,]+, but the file ends at byte [\d,]+\); expected an \.mp4")
def p10(ws):
    import cv2

    path = ws / "01-01-01-01-01-01-01.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, (32, 32))
    for i in range(20):
        writer.write(np.full((32, 32, 3), 10 * i, np.uint8))
    writer.release()
    _cut(path)
    return lambda: ravdess.read_face_clip(path, None)


@case("P11", DatasetFormatError, r"03-01-01-01-01-01-01\.wav: audio: truncated: the 'data' chunk at byte 36 runs to "
                                 r"byte 96,044, but the file ends at byte 48,022; extract the file again")
def p11(ws):
    path = ws / "03-01-01-01-01-01-01.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(48000)
        out.writeframes(np.zeros(48000, np.int16).tobytes())
    _cut(path)  # libsndfile would read the half that is left without an error
    return lambda: ravdess.load_clip_audio(path, "polyphase")


@case("P12", DatasetFormatError, r"901_0\.jpg: image: not a readable image \(image file is truncated .*; tweet 901, "
                                 r"task_humanitarian_text_img_train\.tsv line 2\)")
def p12(ws):
    from data_prep import crisismmd

    path = ws / "901_0.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (30, 40, 3), dtype=np.uint8)).save(path)
    _cut(path)
    record = {"tweet_id": "901", "file": "task_humanitarian_text_img_train.tsv", "line": 2}
    return lambda: crisismmd.load_image(path, record)


def _nyu_mat(ws: Path, damaged: list[int], frames: int = 4) -> Path:
    """A v7.3 .mat (HDF5, one deflated chunk per frame) whose ``damaged`` frames' images cannot be read."""
    h5py = pytest.importorskip("h5py")
    path = ws / "NYU-Depth-V2_data.mat"
    rng = np.random.default_rng(0)
    with h5py.File(path, "w", userblock_size=512) as h5:
        for key, shape, dtype in (("images", (frames, 3, 40, 32), np.uint8), ("depths", (frames, 40, 32), np.float32),
                                  ("labels40", (frames, 40, 32), np.uint8)):
            h5.create_dataset(key, data=rng.integers(1, 40, shape).astype(dtype), chunks=(1, *shape[1:]),
                              compression="gzip")
    with h5py.File(path, "r") as h5:
        offsets = [h5["images"].id.get_chunk_info(i).byte_offset for i in damaged]
    data = bytearray(path.read_bytes())
    for offset in offsets:
        data[offset + 8:offset + 40] = b"\xff" * 32
    path.write_bytes(bytes(data))
    return path


@case("P13", CLI, r"NYU-Depth-V2_data\.mat: file: truncated: [\d,]+ bytes, but its HDF5 header records [\d,]+; copy "
                  r"or download the file again")
def p13(ws):
    from data_prep import nyudv2

    path = _cut(_nyu_mat(ws, []))
    return lambda: nyudv2.main(["--src", str(path), "--out", str(ws / "nyudv2"), "--skip-bad"])


@case("P14", CLI, r"NYU-Depth-V2_data\.mat: images: frame 2 cannot be read \(.*\); the file is damaged: copy or "
                  r"download it again \(--skip-bad leaves such samples out\)")
def p14(ws):
    from data_prep import nyudv2

    path = _nyu_mat(ws, [2])
    return lambda: nyudv2.main(["--src", str(path), "--out", str(ws / "nyudv2")])


@case("P15", CLI, r"a1_CAM_FRONT\.jpg: image: truncated: no JPEG end-of-image marker \(FF D9\) in the last \d+ bytes "
                  r"\(sample a1, scene scene-0061\) \(--skip-bad leaves such samples out\)")
def p15(ws):
    from tests.test_detection_data import make_nusc_root

    root = make_nusc_root(ws)
    _cut(root / "samples/CAM_FRONT/a1_CAM_FRONT.jpg")  # images are linked into the dataset, never decoded
    return lambda: nuscenes.main(["--root", str(root), "--out", str(ws / "det"), "--cameras", "CAM_FRONT"])


@case("P16", CLI, r"b2_LIDAR_TOP\.pcd\.bin: points: size 30 bytes is not a multiple of 20 \(float32 x 5: .*\); "
                  r"truncated\? \(sample b2, scene scene-0103\) \(--skip-bad leaves such samples out\)")
def p16(ws):
    from tests.test_detection_data import make_nusc_root

    root = make_nusc_root(ws)
    _cut(root / "samples/LIDAR_TOP/b2_LIDAR_TOP.pcd.bin", 30)
    return lambda: nuscenes.main(["--root", str(root), "--out", str(ws / "det"), "--cameras", "CAM_FRONT"])


@case("P17", CLI, r"NYU-Depth-V2_data\.mat: skipped: all 2 frames are unreadable; nothing to write")
def p17(ws):
    from data_prep import nyudv2

    path = _nyu_mat(ws, [0, 1], frames=2)
    return lambda: nyudv2.main(["--src", str(path), "--out", str(ws / "nyudv2"), "--skip-bad"])


@case("P18", CLI, r"skipped: split 'val': all its 1 sample\(s\) were skipped as unreadable; expected at least one "
                  r"readable sample per split")
def p18(ws):
    from data_prep import nyudv2

    path = _nyu_mat(ws, [3])
    (ws / "split.json").write_text(json.dumps({"train": [0, 1], "val": [3], "test": [2]}))
    return lambda: nyudv2.main(["--src", str(path), "--out", str(ws / "nyudv2"), "--skip-bad", "--split-file",
                                str(ws / "split.json")])


# == xmodal-retrieval on raw embeddings =====================================================================
def _embeddings(ws: Path, queries=None, gallery=None, pairs="query,gallery\n0,0\n1,1\n2,2\n") -> list[str]:
    rng = np.random.default_rng(0)
    np.save(ws / "q.npy", rng.normal(size=(3, 4)).astype(np.float32) if queries is None else queries)
    np.save(ws / "g.npy", rng.normal(size=(5, 4)).astype(np.float32) if gallery is None else gallery)
    (ws / "pairs.csv").write_text(pairs)
    return ["--queries", str(ws / "q.npy"), "--gallery", str(ws / "g.npy"), "--pairs", str(ws / "pairs.csv"),
            "--json", str(ws / "result.json")]


@case("Q01", CLI, r"q2g: .*q\.npy has dim 3 but .*g\.npy has dim 4")
def q01(ws):
    argv = _embeddings(ws, queries=np.ones((3, 3), np.float32))
    return lambda: retrieval_cli.main(argv)


@case("Q02", CLI, r"q2g: .*q\.npy row 1: NaN or Inf")
def q02(ws):
    queries = np.ones((3, 4), np.float32)
    queries[1, 2] = np.nan
    argv = _embeddings(ws, queries=queries)
    return lambda: retrieval_cli.main(argv)


@case("Q03", CLI, r"pairs\.csv line 1: expected the header 'query,gallery', got 'q,g'")
def q03(ws):
    argv = _embeddings(ws, pairs="q,g\n0,0\n")
    return lambda: retrieval_cli.main(argv)


@case("Q04", CLI, r"pairs\.csv line 3: gallery index 5 out of range \[0, 4\]")
def q04(ws):
    argv = _embeddings(ws, pairs="query,gallery\n0,0\n1,5\n")
    return lambda: retrieval_cli.main(argv)


@case("Q05", CLI, r"pairs\.csv line 2: query index '1\.5' is not an integer")
def q05(ws):
    argv = _embeddings(ws, pairs="query,gallery\n1.5,0\n")
    return lambda: retrieval_cli.main(argv)


@case("Q06", CLI, r"pairs\.csv line 2: expected 2 fields 'query,gallery', got 3")
def q06(ws):
    argv = _embeddings(ws, pairs="query,gallery\n0,1,2\n")
    return lambda: retrieval_cli.main(argv)


@case("Q07", CLI, r"q2g: .*q\.npy row 2: no positive in .*pairs\.csv")
def q07(ws):
    argv = _embeddings(ws, pairs="query,gallery\n0,0\n1,1\n")
    return lambda: retrieval_cli.main(argv)


@case("Q08", CLI, r"q\.npy: expected a 2-D array \(rows x dim\), got shape \(4,\)")
def q08(ws):
    argv = _embeddings(ws, queries=np.ones(4, np.float32))
    return lambda: retrieval_cli.main(argv)


@case("Q09", CLI, r"q2g: .*g\.npy row 3: zero-norm")
def q09(ws):
    gallery = np.ones((5, 4), np.float32)
    gallery[3] = 0
    argv = _embeddings(ws, gallery=gallery)
    return lambda: retrieval_cli.main(argv)


# == the Python API (docs/api.md) ================================================================================
@case("A01", ConfigError, r"student\.py: override 'epoch': not a key of the config; did you mean 'epochs'\?")
def a01(ws):
    from xmodal.apis import fit

    _task(ws)
    return lambda: fit(ws / "student.py", ws / "work", epoch=2)


# -- distributed runs, shared teacher caches -----------------------------------------------------------------
@case("M01", RankFailedError, r"^rank 1 of 2: train sample 5: unreadable image \(a damaged file\)$")
def m01(ws):
    """Rank 0's side of a failure on rank 1, in this process (tests/test_rank_failure.py runs it on two):
    rank 1 published its error, and the "connection closed" that its exit caused here becomes that error."""
    from unittest import mock

    from xmodal.engine import rank_failure

    store = torch.distributed.HashStore()
    store.set(rank_failure.FAILURE_KEY, json.dumps(
        {"rank": 1, "message": "rank 1 of 2: train sample 5: unreadable image (a damaged file)"}))

    def action():
        with mock.patch.object(rank_failure, "_store", return_value=store), \
                mock.patch.object(rank_failure.dist, "get_rank", return_value=0), \
                mock.patch.object(rank_failure.dist, "get_world_size", return_value=2):
            raise rank_failure.stop_together(RuntimeError("Connection closed by peer [127.0.0.1]:4242"))

    return action


@case("T01", TeacherCacheError, r"cache/key/outputs\.npy: sha256: content does not match meta\.json \(recorded "
                                r"[0-9a-f]{12}\.\.\., file [0-9a-f]{12}\.\.\.\): the teacher cache entry changed after "
                                r"it was written \(a disk error, or another program writing into it\); delete "
                                r".*cache/key and run again to rebuild it")
def t01(ws):
    from xmodal.distill.teacher_cache import load_or_build

    def compute():
        yield np.arange(4), np.ones((4, 2), np.float32)

    load_or_build(ws / "cache", "key", 4, compute)
    with open(ws / "cache" / "key" / "outputs.npy", "r+b") as fh:  # one byte changed in place
        fh.seek(-1, os.SEEK_END)
        fh.write(b"\x01")
    return lambda: load_or_build(ws / "cache", "key", 4, compute)


# -- running a case ------------------------------------------------------------------------------------------
def _message_of(error: BaseException) -> str:
    if isinstance(error, KeyError) and len(error.args) == 1:
        return str(error.args[0])
    return str(error)


def run_case(spec: Case, ws: Path, capsys) -> str:
    """Run one case in the workspace ``ws``; returns the message it produced."""
    action = spec.setup(ws)
    capsys.readouterr()  # drop what setting up printed
    before = snapshot(ws)
    if spec.error == CLI:
        try:
            code = action()
        except SystemExit as stop:
            code = stop.code
        err = capsys.readouterr().err
        assert code == 2, f"exit status {code!r}; stderr:\n{err[-2000:]}"
        assert "Traceback" not in err, err[-3000:]
        lines = [line for line in err.splitlines() if "error:" in line]
        assert len(lines) == 1, f"expected one error line, got:\n{err[-3000:]}"
        message = lines[0]
    else:
        with pytest.raises(spec.error) as info:
            action()
        message = _message_of(info.value)
    assert re.search(spec.message, message), f"{spec.message!r} not in {message!r}"
    check_untouched(before, snapshot(ws), spec.log_dir)
    return message


@pytest.fixture(autouse=True)
def _log_to_this_tests_streams():
    """mmengine's loggers outlive a test and keep the stdout pytest captured for it; once that stream is
    closed, logging prints "--- Logging error ---" and a traceback. Point them at the current stdout."""
    from mmengine.logging import MMLogger

    for logger in list(MMLogger._instance_dict.values()):
        for handler in logger.handlers:
            if type(handler) is logging.StreamHandler and getattr(handler.stream, "closed", False):
                handler.stream = sys.stdout
    yield


@pytest.mark.parametrize("case_id", sorted(CASES))
def test_bad_input(case_id, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may land in the current directory either
    ws = tmp_path / "ws"
    ws.mkdir()
    run_case(CASES[case_id], ws, capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ws"]


# -- the same, as a fresh process ---------------------------------------------------------------------------
def _process(ws: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=REPO, env=dict(os.environ), capture_output=True, text=True,
                          timeout=300)


def test_tools_train_missing_config_as_a_process(tmp_path):
    before = snapshot(tmp_path)
    result = _process(tmp_path, "tools/train.py", str(tmp_path / "configs/none.py"), "--work-dir", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == f"error: config file not found: {tmp_path / 'configs/none.py'} " \
                                                    f"(no directory {tmp_path / 'configs'})"
    assert "Traceback" not in result.stderr
    check_untouched(before, snapshot(tmp_path))


def test_xmodal_retrieval_nan_row_as_a_process(tmp_path):
    queries = np.ones((3, 4), np.float32)
    queries[2, 0] = np.inf
    argv = _embeddings(tmp_path, queries=queries)
    before = snapshot(tmp_path)
    result = _process(tmp_path, "-m", "xmodal.cli.retrieval", *argv)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert re.fullmatch(r"error: q2g: .*q\.npy row 2: NaN or Inf.*", result.stderr.strip())
    check_untouched(before, snapshot(tmp_path))


# -- docs/errors.md lists exactly these cases ---------------------------------------------------------------
def test_every_case_is_documented_and_every_documented_case_is_tested():
    doc = (REPO / "docs" / "errors.md").read_text()
    documented = re.findall(r"^\| `([A-Z]\d\d)` \|", doc, flags=re.M)
    assert len(documented) == len(set(documented)), "an id is listed twice"
    assert sorted(documented) == sorted(CASES)
    assert len(CASES) >= 40


def test_debug_mode_lets_the_exception_through(tmp_path, monkeypatch):
    """XMODAL_DEBUG=1: the exception itself leaves main(), for a debugger or the full traceback."""
    monkeypatch.setenv("XMODAL_DEBUG", "1")
    argv = _embeddings(tmp_path, pairs="q,g\n0,0\n")
    with pytest.raises(ValueError, match="line 1: expected the header 'query,gallery'"):
        retrieval_cli.main(argv)
    with pytest.raises(ConfigError, match=r"train_cfg\.max_epochs: got 'ten'"):
        train_api.main([str(_task(tmp_path / "task") / "student.py"), "--cfg-options", "train_cfg.max_epochs=ten"])


def test_registry_errors_outside_a_config_still_suggest_and_bugs_pass_through():
    from xmodal.apis.config import config_errors
    from xmodal.apis.errors import format_error

    with pytest.raises(KeyError) as info:
        MODELS.build(dict(type="KDLos"))  # mmengine's own message: "KDLos is not in the xmodal::model registry..."
    assert format_error(info.value).startswith("config: unknown model type 'KDLos'; did you mean 'KDLoss'")
    cfg = {"model": {"type": "ClsHead", "num_class": 3}}
    with pytest.raises(TypeError, match="unsupported operand"), config_errors(cfg):
        raise TypeError("unsupported operand type(s) for +: 'int' and 'str'")  # not a config mistake: unchanged
    with pytest.raises(TypeError, match="unexpected keyword argument 'bias'"), config_errors(cfg):
        raise TypeError("ClsHead.__init__() got an unexpected keyword argument 'bias'")  # no such key in cfg
    with pytest.raises(ConfigError, match=r"^config: model\.num_class: ClsHead has no argument 'num_class'; "
                                          r"did you mean 'num_classes'\?"), config_errors(cfg):
        raise TypeError("ClsHead.__init__() got an unexpected keyword argument 'num_class'")
