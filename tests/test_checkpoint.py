import os
import pickle
import re

import pytest
import torch
from torch import nn

from xmodal.engine.checkpoint import (
    CheckpointError,
    atomic_write_bytes,
    load_checkpoint_file,
    load_weights,
    resolve_checkpoint,
    save_checkpoint_file,
)


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned_marker",))


def test_atomic_write_leaves_no_temp_files(tmp_path):
    atomic_write_bytes(b"one", tmp_path / "f.bin")
    atomic_write_bytes(b"two", tmp_path / "f.bin")
    assert (tmp_path / "f.bin").read_bytes() == b"two"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_failed_write_keeps_previous_file(tmp_path, monkeypatch):
    target = tmp_path / "ckpt.pth"
    save_checkpoint_file({"state_dict": {"w": torch.ones(2)}}, target)

    def broken_replace(*_args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        save_checkpoint_file({"state_dict": {"w": torch.zeros(2)}}, target)
    monkeypatch.undo()
    assert torch.equal(load_checkpoint_file(target)["state_dict"]["w"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pth"]


def test_refuses_code_executing_pickle_without_side_effect(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "evil.pth"
    torch.save({"state_dict": {}, "payload": _Exploit()}, bad, pickle_module=pickle)
    with pytest.raises(CheckpointError, match="refused to load"):
        load_checkpoint_file(bad)
    assert not (tmp_path / "pwned_marker").exists()


def test_truncated_file_gives_clear_error(tmp_path):
    good = tmp_path / "good.pth"
    save_checkpoint_file({"state_dict": {"w": torch.randn(100)}}, good)
    cut = tmp_path / "cut.pth"
    cut.write_bytes(good.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="cut.pth: not a readable PyTorch checkpoint"):
        load_checkpoint_file(cut)


def test_missing_file():
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint_file("does/not/exist.pth")


def test_load_weights_names_mismatched_keys_and_shapes(tmp_path):
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    state = model.state_dict()
    state["1.weight"] = torch.zeros(5, 4)
    state["extra.bias"] = torch.zeros(1)
    del state["0.bias"]
    path = tmp_path / "m.pth"
    save_checkpoint_file({"state_dict": state}, path)
    with pytest.raises(CheckpointError) as info:
        load_weights(model, path)
    msg = str(info.value)
    assert "missing keys (1): 0.bias" in msg
    assert "unexpected keys (1): extra.bias" in msg
    assert "1.weight: checkpoint (5, 4) vs model (2, 4)" in msg


def test_distiller_checkpoint_loads_into_plain_student(tmp_path):
    student = nn.Linear(3, 2)
    full = {f"student.{k}": v for k, v in student.state_dict().items()}
    full["teachers.t0.weight"] = torch.zeros(1)
    path = tmp_path / "distiller.pth"
    save_checkpoint_file({"state_dict": full}, path)
    fresh = nn.Linear(3, 2)
    load_weights(fresh, path)
    assert torch.equal(fresh.weight, student.weight)


def test_resolve_checkpoint_from_work_dir(tmp_path):
    with pytest.raises(CheckpointError, match="no best"):
        resolve_checkpoint(tmp_path)
    (tmp_path / "best_accuracy_epoch_3.pth").write_bytes(b"x")
    assert resolve_checkpoint(tmp_path).name == "best_accuracy_epoch_3.pth"


def test_config_text_is_formatted_once_per_run(monkeypatch):
    """Checkpoints store ``cfg.pretty_text``; formatting it (yapf) per save made saving most of a
    cached MST stage-3 epoch. After format_config_text_once the same text is returned, formatted once."""
    import mmengine.config.config as mmconfig
    from mmengine.config import Config

    from xmodal.engine.config_text import format_config_text_once

    calls = []
    real = mmconfig.FormatCode
    monkeypatch.setattr(mmconfig, "FormatCode", lambda *a, **k: calls.append(1) or real(*a, **k))
    cfg = Config(dict(model=dict(type="M", width=4), seed=1))
    expected = cfg.pretty_text
    assert len(calls) == 1

    class FakeRunner:
        pass

    runner = FakeRunner()
    runner.cfg = cfg
    format_config_text_once(runner)
    assert [cfg.pretty_text for _ in range(3)] == [expected] * 3
    assert len(calls) == 2  # one more formatting, then reuse
    assert cfg.model.width == 4 and "_pretty_text_once" not in cfg  # config contents untouched


def test_full_disk_keeps_the_previous_file_and_names_the_file_and_the_free_space(tmp_path):
    from tests.conftest import full_disk
    from xmodal.errors import DiskFullError

    target = tmp_path / "epoch_1.pth"
    save_checkpoint_file({"state_dict": {"w": torch.ones(2)}}, target)
    before = target.read_bytes()
    with full_disk(), pytest.raises(DiskFullError) as info:
        save_checkpoint_file({"state_dict": {"w": torch.zeros(1000)}}, target)
    message = str(info.value)
    assert message.startswith(f"{target}: cannot write ") and "No space left on device" in message
    assert " free on " in message and "the previous epoch_1.pth is unchanged" in message
    assert info.value.errno == 28 and isinstance(info.value, OSError)
    assert target.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["epoch_1.pth"]
    with full_disk(), pytest.raises(DiskFullError, match="no new.pth was written"):
        atomic_write_bytes(b"x" * 10, tmp_path / "new.pth")
    assert [p.name for p in tmp_path.iterdir()] == ["epoch_1.pth"]


TINY = """default_scope = "xmodal"
model = dict(type="ModalityClassifier", encoders=dict(audio=dict(type="FeatureMLP", in_dim=6, hidden_dims=[8])),
             head=dict(type="ClsHead", num_classes=3))
loader = dict(batch_size=4, num_workers=0, sampler=dict(type="DefaultSampler", shuffle=False),
              collate_fn=dict(type="default_collate"),
              dataset=dict(type="PairedDataset", data_root={root!r}, split="train", modalities=["audio"]))
train_dataloader = loader
val_dataloader = dict(loader, dataset=dict(loader["dataset"], split="val"))
val_evaluator = dict(type="ClassificationMetric", num_classes=3, items=["accuracy", "cross_entropy"])
train_cfg = dict(by_epoch=True, max_epochs=2, val_interval=1)
val_cfg = dict()
optim_wrapper = dict(optimizer=dict(type="SGD", lr=0.1))
randomness = dict(seed=0)
default_hooks = dict(checkpoint=dict(type="CheckpointHook", interval=1, max_keep_ckpts=1, save_best="cross_entropy",
                                     rule="less"))
"""


def test_a_disk_that_fills_during_training_keeps_the_previous_checkpoints(tmp_path, capsys):
    from tests.conftest import full_disk, write_dataset
    from xmodal.apis import train as train_api

    (tmp_path / "cfg.py").write_text(TINY.format(root=str(write_dataset(tmp_path / "data"))))
    work = tmp_path / "work"
    argv = [str(tmp_path / "cfg.py"), "--work-dir", str(work), "--cfg-options", f"experiment_name={tmp_path.name}"]
    with full_disk(match="epoch_2"), pytest.raises(SystemExit) as stop:  # epoch 1 is written, epoch 2 fails
        train_api.main(argv)
    assert stop.value.code == 2
    error = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert len(error) == 1 and re.search(r"error: .*work/\S*epoch_2\.pth: cannot write .*: No space left on "
                                         r"device \(.* free on .*\)", error[0]), error
    assert "best_cross_entropy_epoch_2.pth" in error[0]  # epoch 2 improved: mmengine would have deleted the old best
    kept = sorted(p.name for p in work.iterdir() if p.is_file() and p.suffix != ".py")  # and the config dump
    assert kept == ["best_cross_entropy_epoch_1.pth", "epoch_1.pth", "last_checkpoint"], kept
    assert (work / "last_checkpoint").read_text().strip() == str(work / "epoch_1.pth")
    for name in ("epoch_1.pth", "best_cross_entropy_epoch_1.pth"):
        assert load_checkpoint_file(work / name)["meta"]["epoch"] == 1
    assert not list(work.glob(".*.tmp"))
