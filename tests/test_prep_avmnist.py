"""data_prep/avmnist.py on a tiny fixture in the release layout (image/, audio/, *_labels.npy)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from mmengine.config import Config
from mmengine.registry import init_default_scope

from data_prep import avmnist
from tests.conftest import REPO
from xmodal.data import PairedDataset
from xmodal.data.writer import DatasetExistsError, official_splits
from xmodal.errors import DatasetFormatError
from xmodal.registry import DATASETS

N_TRAIN, N_TEST = 12, 8
LABELS = np.concatenate([np.arange(N_TRAIN) % 10, (np.arange(N_TEST) + 3) % 10])


def _release(root, image_shape=(784,), image_dtype=np.float64, seed=0):
    """The released layout: image (N, 784) float, audio (N, 112, 112) float32, labels (N,)."""
    rng = np.random.default_rng(seed)
    (root / "image").mkdir(parents=True, exist_ok=True)
    (root / "audio").mkdir(parents=True, exist_ok=True)
    for part, rows in (("train", slice(0, N_TRAIN)), ("test", slice(N_TRAIN, None))):
        n = len(LABELS[rows])
        image = rng.uniform(0, 255, size=(n, *image_shape)).astype(image_dtype)
        np.save(root / "image" / f"{part}_data.npy", image)
        np.save(root / "audio" / f"{part}_data.npy", rng.normal(3, 2, size=(n, 112, 112)).astype(np.float32))
        np.save(root / f"{part}_labels.npy", LABELS[rows].astype(np.int64))
    return root


def _raw(src, modality):
    return np.concatenate([np.load(src / modality / f"{p}_data.npy") for p in ("train", "test")])


def _per_sample(raw):
    """The official min_max_normalize on a rank-2/3 array: each sample to [0, 1] on its own."""
    flat = raw.reshape(len(raw), -1)
    low, high = flat.min(1, keepdims=True), flat.max(1, keepdims=True)
    return (flat - low) / (high - low)


def test_convert_keeps_the_official_order_scaling_and_split(tmp_path):
    src = _release(tmp_path / "avmnist")
    out = avmnist.convert(src, tmp_path / "out", split_group=2)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["classes"] == [str(d) for d in range(10)]
    assert meta["modalities"] == {"image": {"shape": [1, 28, 28], "dtype": "float32"},
                                  "audio": {"shape": [1, 112, 112], "dtype": "float32"}}
    for modality in ("image", "audio"):
        raw, stored = _raw(src, modality), np.load(out / f"{modality}.npy")
        np.testing.assert_allclose(stored.reshape(20, -1), _per_sample(raw), rtol=1e-6, atol=1e-7)
        assert stored.reshape(20, -1).min(1) == pytest.approx(0) and stored.reshape(20, -1).max(1) == pytest.approx(1)
        record = meta["normalization"][modality]
        assert record["mode"] == "per_sample" and record["raw_max"] == pytest.approx(raw.max())
    assert meta["source_rows"] == {"train": [0, 12], "test": [12, 20]}
    np.testing.assert_array_equal(np.load(out / "labels.npy"), LABELS)  # train then test

    splits = official_splits(20, 2)
    assert json.loads((out / "splits.json").read_text()) == splits
    assert [len(splits[s]) for s in ("train", "val", "test")] == [12, 4, 4]  # 60/20/20
    for split, size in (("train", 12), ("val", 4), ("test", 4)):
        ds = PairedDataset(out, split=split)
        sample = ds[size - 1]
        assert len(ds) == size and sample["image"].shape == (1, 28, 28) and sample["audio"].shape == (1, 112, 112)
        assert int(sample["label"]) == LABELS[splits[split][size - 1]]


def test_a_four_d_integer_image_is_scaled_over_the_whole_set(tmp_path):
    src = _release(tmp_path / "release" / "avmnist", image_shape=(1, 28, 28), image_dtype=np.uint8)
    audio = np.load(src / "audio" / "test_data.npy")
    audio[5] = 7.0  # a constant sample: NaN in the official loader, zeros here
    np.save(src / "audio" / "test_data.npy", audio)
    out = avmnist.convert(tmp_path / "release", tmp_path / "out")  # the parent of avmnist/ is accepted too
    raw = _raw(src, "image").astype(np.float64)
    np.testing.assert_allclose(np.load(out / "image.npy"), (raw - raw.min()) / (raw.max() - raw.min()), rtol=1e-6)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["normalization"]["image"]["mode"] == "global"
    assert meta["normalization"]["audio"]["constant_samples_zeroed"] == 1
    assert not np.load(out / "audio.npy")[N_TRAIN + 5].any()


def test_the_dataset_config_reads_the_converted_data(tmp_path):
    out = avmnist.convert(_release(tmp_path / "avmnist"), tmp_path / "out")
    init_default_scope("xmodal")
    cfg = Config.fromfile(str(REPO / "configs/avmnist/teacher_fusion.py"))
    assert cfg.train_dataloader.batch_size == 512 and cfg.train_dataloader.dataset.data_root == "data/avmnist"
    ds = DATASETS.build({**cfg.val_dataloader.dataset, "data_root": str(out)})
    assert len(ds) == 4 and ds[0]["audio"].shape == (1, 112, 112)


def test_cli_refuses_to_overwrite_without_force(tmp_path):
    src, out = _release(tmp_path / "avmnist"), tmp_path / "out"

    def run(*extra):
        return subprocess.run([sys.executable, "data_prep/avmnist.py", "--src", str(src), "--out", str(out), *extra],
                              cwd=REPO, env=dict(os.environ), capture_output=True, text=True, timeout=120)

    assert run("--split-group", "1").returncode == 0 and (out / "meta.json").is_file()
    assert json.loads((out / "splits.json").read_text()) == official_splits(20, 1)
    refused = run()
    assert refused.returncode != 0 and "--force" in refused.stderr


def test_cli_reports_a_bad_source_and_keeps_the_old_output(tmp_path, capsys):
    src, out = _release(tmp_path / "avmnist"), tmp_path / "out"
    avmnist.main(["--src", str(src), "--out", str(out), "--split-group", "1"])
    np.save(src / "audio" / "train_data.npy", np.zeros((N_TRAIN, 100, 100), np.float32))
    with pytest.raises(SystemExit) as exit_info:  # a bad source fails before anything is replaced
        avmnist.main(["--src", str(src), "--out", str(out), "--force"])
    assert exit_info.value.code == 2 and "audio/train_data.npy: shape" in capsys.readouterr().err
    assert json.loads((out / "splits.json").read_text()) == official_splits(20, 1)


@pytest.mark.parametrize("damage, message", [
    (lambda s: (s / "audio" / "test_data.npy").unlink(), r"audio/test_data\.npy: audio: file missing"),
    (lambda s: np.save(s / "audio" / "test_data.npy", np.zeros((8, 100, 100), np.float32)),
     r"audio/test_data\.npy: shape: .*\[112, 112\]"),
    (lambda s: np.save(s / "image" / "train_data.npy", np.zeros((11, 784))), r"image/train_data\.npy: length: 11"),
    (lambda s: np.save(s / "image" / "test_data.npy", np.zeros((8, 28, 28))), r"image/test_data\.npy: shape: .*diff"),
    (lambda s: np.save(s / "train_labels.npy", np.full(12, 11)), r"train_labels\.npy: labels: value 11 at row 0"),
    (lambda s: np.save(s / "image" / "train_data.npy", np.full((12, 784), np.nan)), r"train_data\.npy: values: NaN"),
])
def test_bad_source_names_the_file_and_writes_nothing(tmp_path, damage, message):
    src = _release(tmp_path / "avmnist")
    damage(src)
    with pytest.raises(DatasetFormatError, match=message):
        avmnist.convert(src, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["avmnist"]  # no output, no temporary directory


def test_existing_output_is_kept_without_force(tmp_path):
    src = _release(tmp_path / "avmnist")
    out = avmnist.convert(src, tmp_path / "out")
    with pytest.raises(DatasetExistsError):
        avmnist.convert(src, out)
    assert avmnist.convert(src, out, split_group=5, force=True) == out
    assert json.loads((out / "splits.json").read_text()) == official_splits(20, 5)
