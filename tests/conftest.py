import contextlib
import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session", autouse=True)
def xmodal_data_home(tmp_path_factory):
    """digits-av is built once per test session into a private cache, never the user's."""
    home = tmp_path_factory.mktemp("xmodal_data")
    old = os.environ.get("XMODAL_DATA")
    os.environ["XMODAL_DATA"] = str(home)
    yield home
    if old is None:
        os.environ.pop("XMODAL_DATA", None)
    else:
        os.environ["XMODAL_DATA"] = old


@contextlib.contextmanager
def full_disk(match: str = ""):
    """The disk fills during every atomic write whose target name contains ``match``: ``os.write`` to
    such a temp file (``.<name>.<random>.tmp``) writes half of what it is given, then fails with ENOSPC."""
    real_write = os.write

    def write(fd, data):
        try:
            name = os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            name = ""
        if name.startswith(".") and name.endswith(".tmp") and match in name:
            real_write(fd, bytes(data[: len(data) // 2]))
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    os.write = write
    try:
        yield
    finally:
        os.write = real_write


@pytest.fixture(scope="session")
def digits_av_root(xmodal_data_home):
    from xmodal.data import build_digits_av

    return build_digits_av()


def write_dataset(root: Path, n: int = 12, num_classes: int = 3, seed: int = 0) -> Path:
    """A tiny valid dataset in xmodal's on-disk format."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    np.save(root / "image.npy", rng.normal(size=(n, 1, 4, 4)).astype(np.float32))
    np.save(root / "audio.npy", rng.normal(size=(n, 6)).astype(np.float32))
    np.save(root / "labels.npy", (np.arange(n) % num_classes).astype(np.int64))
    meta = {
        "name": "tiny",
        "version": "1",
        "task": "classification",
        "classes": [f"c{i}" for i in range(num_classes)],
        "modalities": {"image": {"shape": [1, 4, 4], "dtype": "float32"}, "audio": {"shape": [6], "dtype": "float32"}},
    }
    (root / "meta.json").write_text(json.dumps(meta))
    (root / "splits.json").write_text(json.dumps({"train": list(range(0, n, 2)), "val": [1, 3], "test": [5, 7]}))
    return root


@pytest.fixture
def tiny_dataset(tmp_path):
    return write_dataset(tmp_path / "tiny")


REPO = Path(__file__).resolve().parents[1]


def write_tiny_av(root: Path) -> Path:
    """48 image (1x12x12) + audio (1x8x8) samples of 3 classes shifted apart, split 32 / 8 / 8:
    small enough for multi-stage and kill/resume runs, separable enough to learn."""
    rng = np.random.default_rng(0)
    root.mkdir()
    n, labels = 48, np.arange(48) % 3
    image = (rng.normal(size=(n, 1, 12, 12)) + labels[:, None, None, None]).astype(np.float32)
    audio = (rng.normal(size=(n, 1, 8, 8)) - labels[:, None, None, None]).astype(np.float32)
    np.save(root / "image.npy", image)
    np.save(root / "audio.npy", audio)
    np.save(root / "labels.npy", labels.astype(np.int64))
    (root / "meta.json").write_text(json.dumps({
        "name": "tiny-av", "task": "classification", "classes": ["a", "b", "c"],
        "modalities": {"image": {"shape": [1, 12, 12], "dtype": "float32"},
                       "audio": {"shape": [1, 8, 8], "dtype": "float32"}}}))
    order = rng.permutation(n).tolist()
    (root / "splits.json").write_text(json.dumps({"train": order[:32], "val": order[32:40], "test": order[40:]}))
    return root


SMALL_SCENES = dict(num_samples=12, split_fractions=[0.5, 0.25, 0.25])


def small_bev_config(path, work_dir: Path):
    """A synthetic-scenes BEV config shrunk for tests: 12 scenes, batch 2, one epoch, quiet logs."""
    from xmodal.apis.config import load_config, set_max_epochs

    cfg = load_config(REPO / path, work_dir=str(work_dir))
    set_max_epochs(cfg, 1)
    cfg.train_cfg.val_interval = 1
    for split in ("train", "val", "test"):
        cfg[f"{split}_dataloader"].dataset.update(SMALL_SCENES)
        cfg[f"{split}_dataloader"].batch_size = 2
    cfg.log_level = "ERROR"
    cfg.visualizer = dict(type="Visualizer", vis_backends=[dict(type="LocalVisBackend")])
    return cfg
