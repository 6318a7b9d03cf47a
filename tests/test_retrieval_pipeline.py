"""Retrieval end to end on a small shapes-captions build: the synthetic set itself, training a dual
encoder and a CPRD student through the configs, tools/eval_retrieval.py against the Runner's test
metric and against the xmodal-retrieval CLI on the saved embeddings."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.runner import Runner
from PIL import Image

from tests.conftest import REPO
from xmodal.apis import eval_retrieval
from xmodal.apis.config import load_config, set_max_epochs
from xmodal.cli import retrieval as retrieval_cli
from xmodal.data.shapes_captions import COLOURS, ShapesCaptionsDataset, ShapesCaptionsSpec, build_shapes_captions
from xmodal.distill.base import build_teacher
from xmodal.engine.checkpoint import load_checkpoint_file

SMALL = dict(num_images=60, split_fractions=[0.5, 0.25, 0.25])


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_build_is_deterministic_cached_and_captions_match_the_pixels(tmp_path):
    spec = ShapesCaptionsSpec(num_images=24)
    a = build_shapes_captions(tmp_path / "a", spec)
    b = build_shapes_captions(tmp_path / "b", spec)
    assert json.loads((a / "meta.json").read_text())["sha256"] == json.loads((b / "meta.json").read_text())["sha256"]
    assert build_shapes_captions(tmp_path / "a", spec) == a  # cached: same directory, not rebuilt
    meta = json.loads((a / "meta.json").read_text())
    assert meta["task"] == "retrieval" and "SYNTHETIC" in meta["source"]
    assert meta["counts"] == {"image": 24, "text": 24 * spec.captions_per_image}
    images, texts = _lines(a / "image.jsonl"), _lines(a / "text.jsonl")
    for image in images:
        captions = [t["caption"] for t in texts if t["image"] == image["id"]]
        assert len(captions) == spec.captions_per_image
        pixels = np.asarray(Image.open(a / image["file"]).convert("RGB"), dtype=float).reshape(-1, 3)
        for colour, rgb in COLOURS.items():
            named = any(colour in c.split() for c in captions)
            present = (np.abs(pixels - np.array(rgb)).max(1) < 45).mean() > 0.01
            if named:  # every colour a caption names is painted in the image
                assert present, (image["file"], colour, captions)


def test_spec_changes_the_cache_key():
    assert ShapesCaptionsSpec(seed=0).key() != ShapesCaptionsSpec(seed=1).key()


def _small_config(path, work_dir, epochs=1):
    cfg = load_config(REPO / path, work_dir=str(work_dir))
    set_max_epochs(cfg, epochs)
    for split in ("train", "val", "test"):
        cfg[f"{split}_dataloader"].dataset.update(SMALL)
        cfg[f"{split}_dataloader"].batch_size = 16
    cfg.log_level = "ERROR"
    cfg.visualizer = dict(type="Visualizer", vis_backends=[dict(type="LocalVisBackend")])
    return cfg


SMALL_OPTIONS = {f"{s}_dataloader.dataset.{k}": v for s in ("train", "val", "test") for k, v in SMALL.items()}


@pytest.mark.slow
def test_train_distil_and_evaluate(tmp_path):
    teacher_dir, student_dir = tmp_path / "teacher", tmp_path / "cprd"
    runner = Runner.from_cfg(_small_config("configs/retrieval/student_shapes.py", teacher_dir, epochs=2))
    runner.train()
    tested = runner.test()
    assert 0 <= tested["mean_recall"] <= 1 and set(tested) >= {"image_retrieval_recall@1", "text_retrieval_recall@10"}

    # tools/eval_retrieval.py on the same checkpoint and split gives the Runner's numbers
    best = next(teacher_dir.glob("best_*.pth"))
    runner.load_checkpoint(str(best))
    tested = runner.test()
    emb = tmp_path / "emb"
    metrics = eval_retrieval.evaluate("configs/retrieval/student_shapes.py", str(teacher_dir),
                                      cfg_options=SMALL_OPTIONS, save_embeddings=str(emb),
                                      json_out=str(tmp_path / "m.json"))
    assert metrics == pytest.approx(tested, abs=1e-6)
    assert json.loads((tmp_path / "m.json").read_text())["metrics"] == metrics
    # as a user runs it: a fresh process (no registry scope set up by an earlier Runner)
    result = subprocess.run([sys.executable, "tools/eval_retrieval.py", "configs/retrieval/student_shapes.py",
                             str(teacher_dir), "--json", str(tmp_path / "cli_m.json"), "--cfg-options",
                             "test_dataloader.dataset.num_images=60",
                             "test_dataloader.dataset.split_fractions=[0.5,0.25,0.25]"],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((tmp_path / "cli_m.json").read_text())["metrics"] == pytest.approx(metrics, abs=1e-6)
    # and the CLI on the saved embeddings agrees for text -> image
    retrieval_cli.main(["--queries", str(emb / "captions.npy"), "--gallery", str(emb / "images.npy"),
                        "--pairs", str(emb / "pairs.csv"), "--json", str(tmp_path / "cli.json")])
    cli = json.loads((tmp_path / "cli.json").read_text())["q2g"]
    for k in (1, 5, 10):
        assert cli[f"recall@{k}"] == pytest.approx(metrics[f"image_retrieval_recall@{k}"], abs=1e-9)

    # a CPRD student taught by that model: trains, exports a student-only checkpoint that the plain
    # student config evaluates
    cfg = _small_config("configs/retrieval/cprd_shapes.py", student_dir)
    cfg.model.teacher = dict(config=str(REPO / "configs/retrieval/student_shapes.py"), checkpoint=str(teacher_dir))
    runner = Runner.from_cfg(cfg)
    runner.train()
    logs = runner.message_hub.log_scalars
    assert {"train/loss_itc", "train/loss_i2t", "train/loss_t2i"} <= set(logs)
    assert all(np.isfinite(logs[k].current()) for k in ("train/loss_i2t", "train/loss_t2i"))
    student = load_checkpoint_file(student_dir / "student_best.pth")["state_dict"]
    assert student and not any(k.startswith("teacher.") for k in student)
    plain = eval_retrieval.evaluate("configs/retrieval/student_shapes.py", str(student_dir / "student_best.pth"),
                                    cfg_options=SMALL_OPTIONS)
    full = eval_retrieval.evaluate("configs/retrieval/cprd_shapes.py", str(student_dir), cfg_options=SMALL_OPTIONS)
    assert plain == full


def test_eval_retrieval_rejects_a_classification_model(tmp_path):
    message = r"student_image.py: the model \(ModalityClassifier\) is not a retrieval model"
    with pytest.raises(ValueError, match=message):
        eval_retrieval.evaluate("configs/digits_av/student_image.py", str(tmp_path / "missing.pth"))


def test_dataset_items_follow_the_model_contract(tmp_path):
    root = build_shapes_captions(tmp_path, ShapesCaptionsSpec(num_images=12))
    ds = ShapesCaptionsDataset(split="train", data_root=str(root), image_size=32)
    item = ds[0]
    assert item["image"].shape == (3, 32, 32) and item["image"].dtype == torch.float32
    assert 0.0 <= float(item["image"].min()) and float(item["image"].max()) <= 1.0
    assert isinstance(item["text"], str) and int(item["image_index"]) in json.loads(
        (root / "splits.json").read_text())["train"]


def test_teacher_with_its_own_pretrained_weights_needs_no_checkpoint(tmp_path):
    import open_clip

    weights = tmp_path / "tiny.pt"
    torch.save(open_clip.create_model("xmodal-tiny-clip").state_dict(), weights)
    teacher = build_teacher("t", dict(model=dict(type="DualEncoder", model_name="xmodal-tiny-clip",
                                                 pretrained=str(weights))))
    assert not any(p.requires_grad for p in teacher.parameters())
    with pytest.raises(ValueError, match="has no 'checkpoint'"):
        build_teacher("t", dict(model=dict(type="DualEncoder", model_name="xmodal-tiny-clip")))


def test_set_max_epochs_keeps_the_warmup_and_stretches_the_cosine():
    cfg = load_config(REPO / "configs/retrieval/student_shapes.py")
    set_max_epochs(cfg, 5)
    warmup, cosine = cfg.param_scheduler
    assert (warmup.begin, warmup.end) == (0, 1) and (cosine.begin, cosine.end, cosine.T_max) == (1, 5, 4)
    set_max_epochs(cfg, 1)  # the cosine would start after the end: only the warm-up is left
    assert [s.type for s in cfg.param_scheduler] == ["LinearLR"] and cfg.train_cfg.max_epochs == 1
