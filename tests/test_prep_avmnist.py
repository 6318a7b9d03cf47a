"""data_prep/avmnist.py on a tiny fixture in the release layout (image/, audio/, *_labels.npy)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from data_prep import avmnist
from tests.conftest import REPO
from xmodal.data import PairedDataset
from xmodal.data.errors import DatasetFormatError
from xmodal.data.writer import official_splits


def _release(root, n_train=12, n_test=8, seed=0):
    rng = np.random.default_rng(seed)
    for part, n in (("train", n_train), ("test", n_test)):
        (root / "image").mkdir(parents=True, exist_ok=True)
        (root / "audio").mkdir(parents=True, exist_ok=True)
        np.save(root / "image" / f"{part}_data.npy", rng.uniform(0, 255, size=(n, 784)))  # flat, as released
        np.save(root / "audio" / f"{part}_data.npy", rng.normal(3, 2, size=(n, 112, 112)).astype(np.float32))
        np.save(root / f"{part}_labels.npy", (np.arange(n) % 10).astype(np.int64))
    return root


def test_convert_keeps_the_official_order_scaling_and_split(tmp_path):
    src = _release(tmp_path / "avmnist")
    out = avmnist.convert(src, tmp_path / "out", split_group=2)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["modalities"] == {"image": {"shape": [1, 28, 28], "dtype": "float32"},
                                  "audio": {"shape": [1, 112, 112], "dtype": "float32"}}
    image, audio = np.load(out / "image.npy"), np.load(out / "audio.npy")
    raw = np.concatenate([np.load(src / "image" / f"{p}_data.npy") for p in ("train", "test")])
    expected = (raw - raw.min()) / (raw.max() - raw.min())  # global min-max, train then test
    np.testing.assert_allclose(image.reshape(20, -1), expected, rtol=1e-6)
    assert audio.min() == 0.0 and audio.max() == pytest.approx(1.0)
    assert meta["normalization"]["image"]["max"] == pytest.approx(raw.max())
    assert json.loads((out / "splits.json").read_text()) == official_splits(20, 2)
    ds = PairedDataset(out, split="train")
    assert len(ds) == 12 and ds[0]["image"].shape == (1, 28, 28) and ds[0]["audio"].shape == (1, 112, 112)
    labels = np.concatenate([np.arange(12) % 10, np.arange(8) % 10])
    assert int(ds[3]["label"]) == labels[official_splits(20, 2)["train"][3]]


def test_cli_refuses_to_overwrite_without_force(tmp_path):
    src, out = _release(tmp_path / "avmnist"), tmp_path / "out"
    run = lambda *extra: subprocess.run([sys.executable, "data_prep/avmnist.py", "--src", str(src),  # noqa: E731
                                         "--out", str(out), *extra], cwd=REPO, env=dict(os.environ),
                                        capture_output=True, text=True, timeout=120)
    assert run().returncode == 0 and (out / "meta.json").is_file()
    second = run()
    assert second.returncode != 0 and "--force" in second.stderr
    assert run("--force").returncode == 0


def test_bad_source_names_the_file(tmp_path):
    src = _release(tmp_path / "avmnist")
    np.save(src / "audio" / "test_data.npy", np.zeros((8, 100, 100), np.float32))
    with pytest.raises(DatasetFormatError, match=r"audio/test_data\.npy.*shape"):
        avmnist.convert(src, tmp_path / "out")
    (src / "audio" / "test_data.npy").unlink()
    with pytest.raises(DatasetFormatError, match=r"test_data\.npy.*missing"):
        avmnist.convert(src, tmp_path / "out")
    np.save(src / "train_labels.npy", np.full(12, 11))
    with pytest.raises(DatasetFormatError, match="digits 0-9"):
        avmnist.convert(src, tmp_path / "out")
    assert not (tmp_path / "out").exists() and [p.name for p in tmp_path.iterdir()] == ["avmnist"]
