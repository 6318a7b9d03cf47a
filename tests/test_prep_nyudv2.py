"""data_prep/nyudv2.py on tiny fixtures in the real source layout (MATLAB v7.3 = HDF5, axes reversed)."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

h5py = pytest.importorskip("h5py")

from data_prep import nyudv2  # noqa: E402
from tests.conftest import REPO  # noqa: E402
from xmodal.data.segmentation import SegmentationDataset  # noqa: E402
from xmodal.data.writer import official_splits  # noqa: E402
from xmodal.errors import DatasetFormatError  # noqa: E402

N, H, W = 10, 32, 40  # NYU: 1449, 480, 640; pooling five times needs H, W >= 32


def _frames(seed: int = 0):
    """Images, depths, labels as MATLAB holds them (H × W [× 3] × N), so the fixture's HDF5 layout
    is what MATLAB's v7.3 writer produces: the axes reversed."""
    rng = np.random.default_rng(seed)
    images = rng.integers(3, 250, size=(H, W, 3, N), dtype=np.uint8)
    depths = rng.uniform(0.7, 9.9, size=(H, W, N)).astype(np.float32)
    labels40 = rng.integers(0, 41, size=(H, W, N)).astype(np.uint8)
    return images, depths, labels40


def _write_mat(path, arrays: dict):
    # v7.3 .mat files are HDF5 with a 512-byte MATLAB header in the user block
    with h5py.File(path, "w", userblock_size=512) as h5:
        for key, array in arrays.items():
            h5.create_dataset(key, data=np.ascontiguousarray(array.T))  # MATLAB column-major -> reversed axes
    with open(path, "r+b") as fh:
        fh.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: test HDF5 schema 1.00 .".ljust(116))


@pytest.fixture
def official_mat(tmp_path):
    images, depths, labels40 = _frames()
    path = tmp_path / "NYU-Depth-V2_data.mat"
    _write_mat(path, {"images": images, "depths": depths, "labels40": labels40})
    return path, (images, depths, labels40)


def test_convert_official_file(official_mat, tmp_path):
    src, (images, depths, labels40) = official_mat
    with h5py.File(src, "r") as h5:  # the layout the official loader transposes
        assert h5["images"].shape == (N, 3, W, H) and h5["labels40"].shape == (N, W, H)
    out = nyudv2.convert(src.parent, tmp_path / "nyudv2")  # a directory finds the official file
    meta = json.loads((out / "meta.json").read_text())
    assert meta["task"] == "segmentation" and meta["ignore_index"] == 0
    assert len(meta["classes"]) == 41 and meta["classes"][0] == "void" and meta["classes"][40] == "otherprop"
    assert meta["modalities"] == {"rgb": {"shape": [3, H, W], "dtype": "uint8"},
                                  "depth": {"shape": [1, H, W], "dtype": "float32", "unit": "m"}}
    rgb, depth, labels = (np.load(out / f) for f in ("rgb.npy", "depth.npy", "labels.npy"))
    np.testing.assert_array_equal(rgb, images.transpose(3, 2, 0, 1))  # N × 3 × H × W
    np.testing.assert_array_equal(depth[:, 0], depths.transpose(2, 0, 1))
    np.testing.assert_array_equal(labels, labels40.transpose(2, 0, 1))
    assert labels.dtype == np.uint8
    assert json.loads((out / "splits.json").read_text()) == official_splits(N)

    train = SegmentationDataset(out, "train")
    sample = train[0]
    row = official_splits(N)["train"][0]
    assert sample["label"].shape == (H, W) and sample["label"].dtype == torch.long
    assert int(sample["label"].min()) >= 0 and int(sample["label"].max()) <= 40
    # official input normalisation: RGB min-max per channel over the set, depth min-max per frame
    lo = images.min(axis=(0, 1, 3)).reshape(3, 1, 1)
    hi = images.max(axis=(0, 1, 3)).reshape(3, 1, 1)
    expected_rgb = (rgb[row].astype(np.float32) - lo) / (hi - lo)
    np.testing.assert_allclose(sample["rgb"].numpy(), expected_rgb, rtol=1e-6, atol=1e-6)
    d = depth[row]
    np.testing.assert_allclose(sample["depth"].numpy(), (d - d.min()) / (d.max() - d.min()), rtol=1e-5, atol=1e-6)
    raw = SegmentationDataset(out, "train", normalize=False)[0]
    assert raw["rgb"].dtype == torch.uint8 and torch.equal(raw["rgb"], torch.from_numpy(rgb[row]))
    assert len(SegmentationDataset(out, "test", modalities=["depth"])) == len(official_splits(N)["test"])


def test_convert_raw_labels_with_class_mapping(tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    images, depths, _ = _frames(1)
    rng = np.random.default_rng(1)
    raw = rng.integers(0, 895, size=(H, W, N)).astype(np.uint16)  # 0 = unlabelled, 1..894 NYU classes
    mapping = rng.integers(1, 41, size=894)
    src = tmp_path / "nyu_depth_v2_labeled.mat"
    _write_mat(src, {"images": images, "depths": depths, "labels": raw})
    names = np.empty((1, 40), dtype=object)
    for i, name in enumerate(nyudv2.CLASSES_40):
        names[0, i] = np.array([name])
    scipy_io.savemat(tmp_path / "classMapping40.mat", {"mapClass": mapping[None, :].astype(float), "className": names})

    with pytest.raises(DatasetFormatError, match="class-mapping"):
        nyudv2.convert(src, tmp_path / "no_mapping")
    assert not (tmp_path / "no_mapping").exists()

    out = nyudv2.convert(src, tmp_path / "mapped", class_mapping=tmp_path / "classMapping40.mat")
    expected = np.concatenate([[0], mapping])[raw.transpose(2, 0, 1)]
    np.testing.assert_array_equal(np.load(out / "labels.npy"), expected)
    assert json.loads((out / "meta.json").read_text())["classes"] == list(nyudv2.CLASSES)


def test_cli_writes_and_refuses_overwrite(official_mat, tmp_path):
    src, _ = official_mat
    out = tmp_path / "cli_out"
    run = subprocess.run([sys.executable, "data_prep/nyudv2.py", "--src", str(src), "--out", str(out)],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "41 classes" in run.stdout
    before = (out / "meta.json").read_text()
    assert nyudv2.main(["--src", str(src), "--out", str(out)]) == 2  # exists, no --force
    assert (out / "meta.json").read_text() == before
    assert nyudv2.main(["--src", str(src), "--out", str(out), "--force", "--split-group", "1"]) == 0
    assert json.loads((out / "splits.json").read_text()) == official_splits(N, 1)
    split_file = tmp_path / "split.json"
    split_file.write_text(json.dumps({"train": [0, 1, 2, 3, 4, 5], "val": [6, 7], "test": [8, 9]}))
    assert nyudv2.main(["--src", str(src), "--out", str(out), "--force", "--split-file", str(split_file)]) == 0
    assert json.loads((out / "splits.json").read_text())["val"] == [6, 7]
    assert json.loads((out / "meta.json").read_text())["split_protocol"] == "given"


def test_missing_key_names_file_and_key(tmp_path):
    images, _, labels40 = _frames()
    src = tmp_path / "NYU-Depth-V2_data.mat"
    _write_mat(src, {"images": images, "labels40": labels40})
    with pytest.raises(DatasetFormatError) as err:
        nyudv2.convert(src, tmp_path / "out")
    assert str(src) in str(err.value) and "depths" in str(err.value)
    assert nyudv2.main(["--src", str(src), "--out", str(tmp_path / "out")]) == 2


def test_bad_label_leaves_nothing_behind(tmp_path):
    images, depths, labels40 = _frames()
    labels40[3, 4, 7] = 41  # outside 0..40, in frame 7
    src = tmp_path / "src" / "NYU-Depth-V2_data.mat"
    src.parent.mkdir()
    _write_mat(src, {"images": images, "depths": depths, "labels40": labels40})
    with pytest.raises(DatasetFormatError, match=r"labels40: value 41 in map 7"):
        nyudv2.convert(src, tmp_path / "out" / "nyudv2")
    assert list((tmp_path / "out").iterdir()) == []  # no dataset, no temporary directory


# -- damaged source files ------------------------------------------------------------------------------
def _compressed_mat(path, frames):
    """As MATLAB's v7.3 writer stores large arrays: chunked and deflated, here one chunk per frame."""
    images, depths, labels40 = frames
    with h5py.File(path, "w", userblock_size=512) as h5:
        for key, array in (("images", images), ("depths", depths), ("labels40", labels40)):
            data = np.ascontiguousarray(array.T)
            h5.create_dataset(key, data=data, chunks=(1, *data.shape[1:]), compression="gzip")
    return path


def test_truncated_mat_file_is_named_with_its_size_and_nothing_is_replaced(official_mat, tmp_path, capsys):
    src, _ = official_mat
    out = nyudv2.convert(src, tmp_path / "nyudv2")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    data = src.read_bytes()
    src.write_bytes(data[: len(data) // 2])  # an interrupted download
    assert nyudv2.main(["--src", str(src), "--out", str(out), "--force", "--skip-bad"]) == 2
    err = capsys.readouterr().err
    assert f"NYU-Depth-V2_data.mat: file: truncated: {len(data) // 2:,} bytes, but its HDF5 header records " \
           f"{len(data):,}; copy or download the file again" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # the earlier dataset is kept
    assert sorted(p.name for p in tmp_path.iterdir()) == ["NYU-Depth-V2_data.mat", "nyudv2"]


def test_unreadable_frame_is_named_and_skip_bad_leaves_it_out(tmp_path):
    frames = _frames()
    src = _compressed_mat(tmp_path / "NYU-Depth-V2_data.mat", frames)
    with h5py.File(src, "r") as h5:
        chunk = h5["images"].id.get_chunk_info(7)  # frame 7's image
    data = bytearray(src.read_bytes())
    data[chunk.byte_offset + 8:chunk.byte_offset + 40] = b"\xff" * 32  # damaged in the middle: inflate fails
    src.write_bytes(bytes(data))

    with pytest.raises(DatasetFormatError, match=r"NYU-Depth-V2_data\.mat: images: frame 7 cannot be read \(.*\); the "
                                                 r"file is damaged: copy or download it again \(--skip-bad"):
        nyudv2.convert(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()

    out = nyudv2.convert(src, tmp_path / "out", skip_bad=True, chunk=4)
    meta = json.loads((out / "meta.json").read_text())
    assert [(e["file"], e["sample"]) for e in meta["skipped"]] == [("NYU-Depth-V2_data.mat", "frame 7")]
    assert meta["skipped"][0]["reason"].startswith("images: frame 7 cannot be read (")
    keep = [i for i in range(N) if i != 7]
    images, depths, labels40 = frames
    np.testing.assert_array_equal(np.load(out / "rgb.npy"), images.transpose(3, 2, 0, 1)[keep])
    np.testing.assert_array_equal(np.load(out / "depth.npy")[:, 0], depths.transpose(2, 0, 1)[keep])
    np.testing.assert_array_equal(np.load(out / "labels.npy"), labels40.transpose(2, 0, 1)[keep])
    # the official split of all 10 frames without frame 7, renumbered (8 -> 7, 9 -> 8)
    full = official_splits(N)
    assert full["val"] == [5, 7]
    assert json.loads((out / "splits.json").read_text()) == \
        {k: [i - (i > 7) for i in v if i != 7] for k, v in full.items()}
    assert len(SegmentationDataset(out, "val")) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["NYU-Depth-V2_data.mat", "out"]
