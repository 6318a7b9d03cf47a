"""tools/export.py: the student-only checkpoint of a distiller loads into the plain student config and gives
the distiller's test metrics, the ONNX graphs match PyTorch, existing outputs and untrusted checkpoints
are refused."""

import json
import os
import subprocess
import sys

import numpy as np
import onnxruntime
import pytest
import torch
from mmengine.config import Config

from tests.conftest import REPO
from xmodal.apis.export import input_names, main, parse_input_shapes
from xmodal.apis.test import evaluate
from xmodal.data.writer import write_dataset
from xmodal.engine.checkpoint import load_checkpoint_file, load_weights, save_checkpoint_file
from xmodal.registry import MODELS

pytestmark = pytest.mark.slow

KD_CONFIG = "configs/digits_av/kd_image_from_fusion.py"
STUDENT_CONFIG = "configs/digits_av/student_image.py"
TEST_LABELS = [3, 3, 3, 0, 1, 2, 4, 5]  # the student is made to predict class 3 for every sample


@pytest.fixture(scope="module")
def distilled(tmp_path_factory):
    """A tiny digits-av-format dataset, a fusion teacher checkpoint and a KD Distiller checkpoint whose
    student is perturbed (so it differs from a fresh initialisation) and biased towards class 3."""
    root = tmp_path_factory.mktemp("export")
    rng = np.random.default_rng(0)
    labels = np.array([i % 10 for i in range(16)] + TEST_LABELS)
    arrays = {"image": rng.normal(size=(24, 1, 28, 28)).astype(np.float32),
              "audio": rng.normal(size=(24, 1, 64, 64)).astype(np.float32)}
    write_dataset(root / "data", arrays, labels, [str(i) for i in range(10)], "tiny-digits-av", "tests",
                  {"train": list(range(12)), "val": list(range(12, 16)), "test": list(range(16, 24))})
    torch.manual_seed(0)
    teacher = MODELS.build(Config.fromfile(str(REPO / "configs/digits_av/teacher_fusion.py")).model)
    save_checkpoint_file({"state_dict": teacher.state_dict()}, root / "teacher.pth")
    cfg = Config.fromfile(str(REPO / KD_CONFIG))
    cfg.model.teachers.t_fusion.checkpoint = str(root / "teacher.pth")
    distiller = MODELS.build(cfg.model)
    with torch.no_grad():
        for p in distiller.student.parameters():
            p.add_(0.05 * torch.randn_like(p))
        distiller.student.head.fc.bias[3] += 50.0
    save_checkpoint_file({"state_dict": distiller.state_dict(), "meta": {"epoch": 2, "iter": 6}},
                         root / "distiller.pth")
    return {"root": root, "data": root / "data", "teacher": root / "teacher.pth",
            "checkpoint": root / "distiller.pth", "student": distiller.student_state_dict()}


def _data_option(distilled) -> str:
    return f"test_dataloader.dataset.data_root={distilled['data']}"


def _student_from(path):
    student = MODELS.build(Config.fromfile(str(REPO / STUDENT_CONFIG)).model)
    load_weights(student, path)
    return student.eval()


def _exit_code(capsys, *argv) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in argv])
    return exc.value.code, capsys.readouterr().err


def test_distiller_student_loads_into_plain_config_with_same_metrics_and_onnx_matches(distilled, tmp_path,
                                                                                      monkeypatch):
    monkeypatch.chdir(REPO)
    out, onnx = tmp_path / "student.pth", tmp_path / "student.onnx"
    report = main([KD_CONFIG, str(distilled["checkpoint"]), "--out", str(out), "--onnx", str(onnx),
                   "--cfg-options", _data_option(distilled)])
    assert report["max_abs_diff"] <= 1e-4 and "test split" in report["parity_inputs"]

    saved = load_checkpoint_file(out)
    assert set(saved["state_dict"]) == set(distilled["student"])  # no teachers.*, no student. prefix
    assert all(torch.equal(saved["state_dict"][k], v) for k, v in distilled["student"].items())
    assert saved["meta"]["epoch"] == 2 and saved["meta"]["source"] == str(distilled["checkpoint"])

    # a fresh process loads the student-only file with the plain student config
    plain_json = tmp_path / "plain.json"
    result = subprocess.run([sys.executable, "tools/test.py", STUDENT_CONFIG, str(out), "--out", str(plain_json),
                             "--work-dir", str(tmp_path / "t1"), "--cfg-options", _data_option(distilled)],
                            cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    plain = json.loads(plain_json.read_text())["metrics"]
    full = evaluate(KD_CONFIG, str(distilled["checkpoint"]), work_dir=str(tmp_path / "t2"),
                    cfg_options={"test_dataloader.dataset.data_root": str(distilled["data"]),
                                 "model.teachers.t_fusion.checkpoint": str(distilled["teacher"])})
    assert plain == full
    # always class 3: accuracy 3/8; F1 of class 3 = 2·(3/8)/(1 + 3/8) = 6/11, averaged over the 6 classes present
    assert plain["accuracy"] == pytest.approx(3 / 8) and plain["macro_f1"] == pytest.approx(1 / 11)

    session = onnxruntime.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"]
    assert [o.name for o in session.get_outputs()] == ["logits", "embedding"]
    assert isinstance(session.get_inputs()[0].shape[0], str)  # dynamic batch axis
    images = torch.from_numpy(np.load(distilled["data"] / "image.npy")[16:])  # the 8 test images
    logits, embedding = session.run(None, {"image": images.numpy()})
    with torch.no_grad():
        expected = _student_from(out)(mode="tensor", image=images)
    assert np.abs(logits - expected["logits"].numpy()).max() < 1e-4
    assert np.abs(embedding - expected["embedding"].numpy()).max() < 1e-4
    assert (logits.argmax(1) == 3).all()


def test_existing_outputs_are_refused_without_force(distilled, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    out = tmp_path / "student.pth"
    out.write_bytes(b"keep me")
    code, err = _exit_code(capsys, KD_CONFIG, distilled["checkpoint"], "--out", out)
    assert code == 2 and str(out) in err and "--force" in err
    assert out.read_bytes() == b"keep me"

    onnx, fresh = tmp_path / "student.onnx", tmp_path / "fresh.pth"
    onnx.write_bytes(b"old graph")
    code, err = _exit_code(capsys, KD_CONFIG, distilled["checkpoint"], "--out", fresh, "--onnx", onnx,
                           "--input-shape", "image=1,28,28")
    assert code == 2 and str(onnx) in err
    assert onnx.read_bytes() == b"old graph" and not fresh.exists()

    main([KD_CONFIG, str(distilled["checkpoint"]), "--out", str(out), "--force"])
    assert set(load_checkpoint_file(out)["state_dict"]) == set(distilled["student"])


def test_failed_parity_check_writes_nothing(distilled, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    monkeypatch.setattr("xmodal.apis.export_parity.parity", lambda graph, path: 0.5)
    out, onnx = tmp_path / "student.pth", tmp_path / "student.onnx"
    code, err = _exit_code(capsys, KD_CONFIG, distilled["checkpoint"], "--out", out, "--onnx", onnx,
                           "--input-shape", "image=1,28,28")
    assert code == 1 and "parity" in err and "0.5" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == []


class _RunsCode:
    def __init__(self, marker) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_malicious_checkpoint_is_refused_and_runs_nothing(tmp_path):
    marker, bad = tmp_path / "pwned", tmp_path / "bad.pth"
    torch.save({"state_dict": {"head.fc.bias": torch.zeros(10)}, "meta": _RunsCode(marker)}, bad)
    result = subprocess.run([sys.executable, "tools/export.py", KD_CONFIG, str(bad), "--out", str(tmp_path / "s.pth")],
                            cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "refused to load" in result.stderr and "Traceback" not in result.stderr
    assert not marker.exists() and not (tmp_path / "s.pth").exists()
    torch.load(bad, weights_only=False)  # the payload is live: an unsafe loader would have run it
    assert marker.exists()


def test_mst_recipe_exports_only_the_student(distilled, tmp_path, monkeypatch):
    """A stage-3 checkpoint also holds teachers, masks and the router; only the student is kept."""
    monkeypatch.chdir(REPO)
    state = {f"student.{k}": v for k, v in distilled["student"].items()}
    state.update({"teachers.t_audio.head.fc.bias": torch.zeros(10), "masks.0.proj.weight": torch.ones(2, 2),
                  "gate.fc.weight": torch.ones(3, 10)})
    save_checkpoint_file({"state_dict": state}, tmp_path / "stage3.pth")
    out = tmp_path / "student.pth"
    main(["configs/mst_distill/mst_digits_image.py", str(tmp_path / "stage3.pth"), "--out", str(out)])
    saved = load_checkpoint_file(out)["state_dict"]
    assert set(saved) == set(distilled["student"])
    assert all(torch.equal(saved[k], v) for k, v in distilled["student"].items())


def test_retrieval_student_exports_image_and_text_graphs(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    torch.manual_seed(0)
    student = MODELS.build(dict(type="DualEncoder", model_name="xmodal-tiny-clip")).eval()
    state = {f"student.{k}": v for k, v in student.state_dict().items()}
    state["teacher.clip.logit_scale"] = torch.tensor(2.0)  # a RetrievalDistiller checkpoint also holds its teacher
    save_checkpoint_file({"state_dict": state}, tmp_path / "cprd.pth")
    out, onnx = tmp_path / "student.pth", tmp_path / "student.onnx"
    report = main(["configs/retrieval/cprd_shapes.py", str(tmp_path / "cprd.pth"), "--out", str(out), "--onnx",
                   str(onnx), "--input-shape", "image=3,64,64",
                   "--cfg-options", "model.student.model_name=xmodal-tiny-clip"])
    assert report["max_abs_diff"] <= 1e-4
    assert set(load_checkpoint_file(out)["state_dict"]) == set(student.state_dict())
    assert not onnx.exists()

    images = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    captions = ["a red circle", "two shapes: a square and a diamond", "something green", "a small blue square"]
    image_graph = onnxruntime.InferenceSession(str(tmp_path / "student.image.onnx"), providers=["CPUExecutionProvider"])
    text_graph = onnxruntime.InferenceSession(str(tmp_path / "student.text.onnx"), providers=["CPUExecutionProvider"])
    assert [o.name for o in image_graph.get_outputs()] == ["image_embedding"]
    meta = text_graph.get_modelmeta().custom_metadata_map
    assert meta["xmodal.open_clip_model"] == "xmodal-tiny-clip" and meta["xmodal.context_length"] == "16"
    with torch.no_grad():
        want_image, want_text = student.encode_image(images), student.encode_text(captions)
    (got_image,) = image_graph.run(None, {"image": images.numpy()})
    (got_text,) = text_graph.run(None, {"text": student.tokenize(captions).numpy()})
    assert np.abs(got_image - want_image.numpy()).max() < 1e-4
    assert np.abs(got_text - want_text.numpy()).max() < 1e-4


def test_bad_input_shapes_and_unsupported_students_are_named():
    assert parse_input_shapes(["image=1,28,28", "audio=64"]) == {"image": (1, 28, 28), "audio": (64,)}
    for bad in ("image", "image=1,x", "image=0,28", "=1"):
        with pytest.raises(ValueError, match="--input-shape"):
            parse_input_shapes([bad])
    with pytest.raises(ValueError, match="Linear student is not supported"):
        input_names(torch.nn.Linear(2, 2))
