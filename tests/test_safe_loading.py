"""Every way a checkpoint enters xmodal refuses a pickle that would run code (with no side effect),
reports a truncated or random file as a CheckpointError naming it (one ``error:`` line, exit 2, from
the commands), and accepts ``.safetensors`` weights: tools/test.py, tools/train.py --resume,
load_from, a teacher's checkpoint (load_weights) and tools/export.py."""

import json
import os
import pathlib

import pytest
import torch
from mmengine.config import Config

from tests.conftest import REPO, write_dataset
from xmodal.apis import test as test_api
from xmodal.apis import train as train_api
from xmodal.distill.base import build_teacher
from xmodal.engine.checkpoint import CheckpointError, load_checkpoint_file, load_weights, save_checkpoint_file
from xmodal.registry import MODELS

CONFIG = """
_base_ = [{runtime!r}]
data_root = {root!r}
model = dict(type="ModalityClassifier", encoders=dict(audio=dict(type="FeatureMLP", in_dim=6, hidden_dims=(8,))),
             head=dict(type="ClsHead", num_classes=3))
loader = dict(batch_size=4, num_workers=0, collate_fn=dict(type="default_collate"))
train_dataloader = dict(**loader, sampler=dict(type="DefaultSampler", shuffle=True),
                        dataset=dict(type="PairedDataset", data_root=data_root, split="train", modalities=["audio"]))
val_dataloader = dict(**loader, sampler=dict(type="DefaultSampler", shuffle=False),
                      dataset=dict(type="PairedDataset", data_root=data_root, split="val", modalities=["audio"]))
test_dataloader = dict(**loader, sampler=dict(type="DefaultSampler", shuffle=False),
                       dataset=dict(type="PairedDataset", data_root=data_root, split="test", modalities=["audio"]))
val_evaluator = dict(type="ClassificationMetric", num_classes=3)
test_evaluator = val_evaluator
train_cfg = dict(by_epoch=True, max_epochs=1, val_interval=1)
val_cfg = dict()
test_cfg = dict()
optim_wrapper = dict(type="OptimWrapper", optimizer=dict(type="Adam", lr=1e-2))
visualizer = dict(type="Visualizer", vis_backends=[dict(type="LocalVisBackend")])
"""


class RunsShell:
    """Unpickling this runs a shell command (the classic malicious checkpoint)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class WritesFile:
    """Unpickling this calls a Python function that writes a file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.write_text, (pathlib.Path(self.marker), "pwned"))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("safe_loading")
    root = write_dataset(tmp / "data")
    config = tmp / "tiny.py"
    config.write_text(CONFIG.format(runtime=str(REPO / "configs/_base_/default_runtime.py"), root=str(root)))
    model = MODELS.build(Config.fromfile(str(config)).model)
    torch.manual_seed(0)
    for p in model.parameters():
        torch.nn.init.normal_(p)
    good = tmp / "good.pth"
    save_checkpoint_file({"state_dict": model.state_dict(), "meta": {"epoch": 1}}, good)
    return config, model, good


def _evil(path, marker, payload=RunsShell):
    """A real checkpoint of the model plus one object whose unpickling has a side effect."""
    state = load_checkpoint_file(path)
    torch.save({**state, "payload": payload(marker)}, path.parent / f"evil_{payload.__name__}.pth")
    return path.parent / f"evil_{payload.__name__}.pth"


def _work(tmp_path) -> list[str]:
    """A work dir and a run name of its own: mmengine reuses the logger of a run with the same name."""
    return ["--work-dir", str(tmp_path / "w"), "--cfg-options", f"experiment_name={tmp_path.name}"]


def _fails_with_one_error_line(main, argv, capsys) -> str:
    """What ``python tools/<x>.py ARGV`` prints and exits with (its main is the entry point)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        main(argv)
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert stop.value.code == 2, err[-2000:]
    assert len(errors) == 1 and "Traceback" not in err, err[-2000:]
    return errors[0]


# -- code-executing pickles are refused everywhere, with no side effect ------------------------------------
@pytest.mark.parametrize("payload", [RunsShell, WritesFile])
def test_loader_refuses_and_nothing_runs(setup, tmp_path, payload):
    _, _, good = setup
    marker = tmp_path / "MARKER"
    evil = _evil(good, marker, payload)
    with pytest.raises(CheckpointError, match="refused to load") as info:
        load_checkpoint_file(evil)
    assert str(evil) in str(info.value) and "Nothing from it was executed" in str(info.value)
    assert not marker.exists()
    # the payload is live: an unsafe load would have created the marker
    torch.load(evil, weights_only=False)
    assert marker.exists()


def test_tools_test_refuses_it(setup, tmp_path, capsys):
    config, _, good = setup
    marker = tmp_path / "MARKER"
    evil = _evil(good, marker)
    line = _fails_with_one_error_line(test_api.main, [str(config), str(evil), *_work(tmp_path)], capsys)
    assert str(evil) in line and "refused to load" in line and "posix.system" in line
    assert not marker.exists()


def test_train_resume_refuses_it(setup, tmp_path, capsys):
    config, _, good = setup
    marker = tmp_path / "MARKER"
    evil = _evil(good, marker, WritesFile)
    line = _fails_with_one_error_line(train_api.main, [str(config), "--resume", str(evil), *_work(tmp_path)], capsys)
    assert "refused to load" in line and str(evil) in line
    assert not marker.exists()


def test_load_from_refuses_it(setup, tmp_path, capsys):
    config, _, good = setup
    marker = tmp_path / "MARKER"
    evil = _evil(good, marker)
    line = _fails_with_one_error_line(train_api.main, [str(config), *_work(tmp_path), f"load_from={evil}"], capsys)
    assert "refused to load" in line and str(evil) in line
    assert not marker.exists()


def test_teacher_checkpoint_refuses_it(setup, tmp_path):
    config, _, good = setup
    marker = tmp_path / "MARKER"
    evil = _evil(good, marker, WritesFile)
    with pytest.raises(CheckpointError, match="refused to load"):
        build_teacher("t0", {"model": Config.fromfile(str(config)).model, "checkpoint": str(evil)})
    with pytest.raises(CheckpointError, match="refused to load"):
        load_weights(MODELS.build(Config.fromfile(str(config)).model), evil)
    assert not marker.exists()


def test_export_refuses_it(setup, tmp_path, capsys):
    from xmodal.apis import export as export_api

    config, _, good = setup
    marker = tmp_path / "MARKER"
    evil = _evil(good, marker)
    out = tmp_path / "student.pth"
    line = _fails_with_one_error_line(export_api.main, [str(config), str(evil), "--out", str(out)], capsys)
    assert "refused to load" in line and str(evil) in line
    assert not marker.exists() and not out.exists()


# -- damaged files: a clear error naming the file ---------------------------------------------------------
@pytest.mark.parametrize("damage", ["first_half", "random_bytes", "empty"])
def test_damaged_checkpoint_through_tools_test(setup, tmp_path, capsys, damage):
    config, _, good = setup
    data = good.read_bytes()
    bad = tmp_path / f"{damage}.pth"
    bad.write_bytes({"first_half": data[:len(data) // 2], "random_bytes": os.urandom(len(data)),
                     "empty": b""}[damage])
    line = _fails_with_one_error_line(test_api.main, [str(config), str(bad), *_work(tmp_path)], capsys)
    assert f"{bad}: not a readable PyTorch checkpoint (truncated or corrupt?)" in line


@pytest.mark.parametrize("seed", range(8))
def test_random_bytes_are_always_a_checkpoint_error(tmp_path, seed):
    import random

    rng = random.Random(seed)
    path = tmp_path / ("x.safetensors" if seed % 2 else "x.pth")
    path.write_bytes(bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 4000))))
    with pytest.raises(CheckpointError, match=f"{path.name}: not a readable"):
        load_checkpoint_file(path)


def test_truncated_safetensors_names_the_file(setup, tmp_path):
    _, model, _ = setup
    path = tmp_path / "w.safetensors"
    save_checkpoint_file({"state_dict": model.state_dict()}, path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="w.safetensors: not a readable safetensors file"):
        load_checkpoint_file(path)


# -- safetensors: weights without pickle ------------------------------------------------------------------
def test_safetensors_round_trip(setup, tmp_path):
    _, model, _ = setup
    path = tmp_path / "weights.safetensors"
    save_checkpoint_file({"state_dict": model.state_dict(), "meta": {"epoch": 3, "source": "last"}}, path)
    assert path.read_bytes()[8:9] == b"{"  # safetensors: 8-byte header length, then a JSON header
    loaded = load_checkpoint_file(path)
    assert loaded["meta"] == {"epoch": 3, "source": "last"}
    assert loaded["state_dict"].keys() == model.state_dict().keys()
    for key, value in model.state_dict().items():
        assert torch.equal(loaded["state_dict"][key], value), key
    fresh = MODELS.build(dict(type="ModalityClassifier", encoders=dict(audio=dict(type="FeatureMLP", in_dim=6,
                                                                                  hidden_dims=(8,))),
                              head=dict(type="ClsHead", num_classes=3)))
    load_weights(fresh, path)
    x = torch.randn(5, 6)
    assert torch.equal(fresh.eval()(audio=x)["logits"], model.eval()(audio=x)["logits"])


def test_safetensors_tied_weights_and_what_it_cannot_hold(tmp_path):
    shared = torch.nn.Linear(3, 3)
    model = torch.nn.Sequential(shared, shared)  # two keys, one storage
    path = tmp_path / "tied.safetensors"
    save_checkpoint_file({"state_dict": model.state_dict()}, path)
    assert torch.equal(load_checkpoint_file(path)["state_dict"]["1.weight"], shared.weight)
    with pytest.raises(CheckpointError, match="weights only; cannot store \\['optimizer'\\]"):
        save_checkpoint_file({"state_dict": model.state_dict(), "optimizer": {}}, tmp_path / "full.safetensors")
    assert not (tmp_path / "full.safetensors").exists()


def test_safetensors_with_wrong_keys_is_the_usual_mismatch_error(setup, tmp_path):
    _, model, _ = setup
    state = dict(model.state_dict())
    state["head.classifier.weight"] = state.pop("head.fc.weight")
    path = tmp_path / "renamed.safetensors"
    save_checkpoint_file({"state_dict": state}, path)
    with pytest.raises(CheckpointError) as info:
        load_weights(MODELS.build(dict(type="ModalityClassifier", encoders=dict(audio=dict(
            type="FeatureMLP", in_dim=6, hidden_dims=(8,))), head=dict(type="ClsHead", num_classes=3))), path)
    message = str(info.value)
    assert f"{path}: the checkpoint does not match the model's config" in message
    assert "missing keys (1): head.fc.weight (did the checkpoint call it 'head.classifier.weight'?)" in message


def test_safetensors_in_tools_test_gives_the_same_metrics(setup, tmp_path, capsys):
    config, model, good = setup
    st = tmp_path / "good.safetensors"
    save_checkpoint_file({"state_dict": model.state_dict()}, st)
    results = {}
    for path in (good, st):
        out = tmp_path / f"{path.suffix[1:]}.json"
        test_api.main([str(config), str(path), "--out", str(out), "--work-dir", str(tmp_path / path.suffix[1:]),
                       "--cfg-options", f"experiment_name={tmp_path.name}_{path.suffix[1:]}"])
        results[path.suffix] = json.loads(out.read_text())["metrics"]
    assert results[".pth"] == results[".safetensors"]
    assert set(results[".pth"]) >= {"accuracy", "macro_f1"}


def test_safetensors_as_teacher_checkpoint_and_load_from(setup, tmp_path):
    config, model, _ = setup
    st = tmp_path / "teacher.safetensors"
    save_checkpoint_file({"state_dict": model.state_dict()}, st)
    teacher = build_teacher("t0", {"model": Config.fromfile(str(config)).model, "checkpoint": str(st)})
    assert all(torch.equal(teacher.state_dict()[k], v) for k, v in model.state_dict().items())
    assert not any(p.requires_grad for p in teacher.parameters())

    # load_from: one epoch at lr 0 keeps the loaded weights, so the saved checkpoint holds exactly them
    work = tmp_path / "w"
    train_api.main([str(config), *_work(tmp_path), f"load_from={st}", "optim_wrapper.optimizer.lr=0.0"])
    saved = load_checkpoint_file(work / "epoch_1.pth")["state_dict"]
    for key, value in model.state_dict().items():
        assert torch.equal(saved[key], value), key


def test_resume_from_safetensors_says_what_is_missing(setup, tmp_path, capsys):
    config, model, _ = setup
    st = tmp_path / "weights.safetensors"
    save_checkpoint_file({"state_dict": model.state_dict()}, st)
    line = _fails_with_one_error_line(train_api.main, [str(config), "--resume", str(st), *_work(tmp_path)], capsys)
    assert f"{st}: not a training checkpoint" in line and f"load_from={st} without --resume" in line


def test_safetensors_converts_to_pth_and_back(setup, tmp_path):
    _, model, _ = setup
    st, pth = tmp_path / "a.safetensors", tmp_path / "b.pth"
    save_checkpoint_file({"state_dict": model.state_dict(), "meta": {"epoch": 2}}, st)
    save_checkpoint_file(load_checkpoint_file(st), pth)  # re-saved as a plain dict the trusted loader reads
    again = load_checkpoint_file(pth)
    assert type(again) is dict and again["meta"] == {"epoch": 2}
    assert all(torch.equal(again["state_dict"][k], v) for k, v in model.state_dict().items())
