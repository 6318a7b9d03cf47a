"""data_prep/vggsound.py on a tiny VGGS50K tree with the official file names, dtypes and shapes."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from data_prep import vggsound
from xmodal.data.paired import PairedDataset
from xmodal.data.writer import DatasetExistsError, official_splits
from xmodal.errors import DatasetFormatError

REPO = Path(__file__).resolve().parents[1]
NAMES = ["v6bPsB1h3wvE_110_120_out", "v-0BIyqJj9ZU_30_40_out", "vzzgkUs5-kbw_0_10_out", "vAb3_xyz9QRs_50_60_out",
         "vQQ1t2Cz8Lm0_10_20_out"]
LABELS = [52, 0, 140, 3, 52]


def make_vggs50k(root: Path, features: str = vggsound.NORMED_DIR, scale: float = 1.0) -> Path:
    rng = np.random.default_rng(0)
    for sub in ("visual_features", "audio_features"):
        (root / features / sub).mkdir(parents=True, exist_ok=True)
    (root / "seg_labels").mkdir(parents=True, exist_ok=True)
    for name in NAMES:
        np.save(root / features / "visual_features" / f"{name}_vFeature.npy",
                (scale * rng.random((10, 7, 7, 512))).astype(np.float32))
        np.save(root / features / "audio_features" / f"{name}_aFeature.npy",
                (scale * rng.random((10, 128))).astype(np.float32))
        np.save(root / "seg_labels" / f"{name}_sLabel.npy", np.ones((1, 10)))
    (root / vggsound.METADATA_FILE).write_text("".join(f"{n}&{y}\n" for n, y in zip(NAMES, LABELS)))
    return root


@pytest.fixture
def src(tmp_path):
    return make_vggs50k(tmp_path / "VGGS50K")


def _source(root, name, modality, features=vggsound.NORMED_DIR):
    folder, suffix = vggsound.SUFFIX[modality]
    return np.load(root / features / folder / f"{name}{suffix}")


def test_convert_gives_official_shapes_order_labels_and_split(src, tmp_path):
    out = vggsound.convert(src, tmp_path / "vggsound")
    meta = json.loads((out / "meta.json").read_text())
    assert len(meta["classes"]) == 141 and meta["classes"][52] == "dog barking"
    assert meta["modalities"]["visual"] == {"shape": [10, 7, 7, 512], "dtype": "float32",
                                            "layout": meta["modalities"]["visual"]["layout"]}
    splits = official_splits(len(NAMES))
    for split in ("train", "val", "test"):
        ds = PairedDataset(out, split=split)
        assert ds.indices.tolist() == splits[split]
        sample = ds[0]
        row = splits[split][0]
        assert sample["visual"].shape == (10, 7, 7, 512) and sample["audio"].shape == (10, 128)
        assert int(sample["label"]) == LABELS[row]
        np.testing.assert_array_equal(sample["visual"].numpy(), _source(src, NAMES[row], "visual"))
        np.testing.assert_array_equal(sample["audio"].numpy(), _source(src, NAMES[row], "audio"))
    assert (out / "sample_names.txt").read_text().split() == NAMES


def test_cli_float16_and_overwrite_protection(src, tmp_path, capsys):
    out = tmp_path / "vggsound"
    cmd = [sys.executable, "data_prep/vggsound.py", "--src", str(src), "--out", str(out), "--dtype", "float16"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "5 samples" in done.stdout
    meta = json.loads((out / "meta.json").read_text())
    assert meta["modalities"]["audio"]["dtype"] == "float16" and meta["storage_dtype"] == "float16"
    ds = PairedDataset(out, split="train")
    row = ds.indices[0]
    np.testing.assert_allclose(ds[0]["visual"].float().numpy(), _source(src, NAMES[row], "visual"), atol=1e-3)

    assert vggsound.main(cmd[2:]) == 2  # refuses to overwrite
    assert "--force" in capsys.readouterr().err
    assert vggsound.main([*cmd[2:], "--force"]) == 0
    with pytest.raises(DatasetExistsError):
        vggsound.convert(src, out)


def test_normalize_applies_the_global_min_max(tmp_path):
    root = make_vggs50k(tmp_path / "VGGS50K", features=vggsound.RAW_DIR, scale=7.0)
    with pytest.raises(DatasetFormatError, match="--normalize"):
        vggsound.convert(root, tmp_path / "out")
    out = vggsound.convert(root, tmp_path / "out", normalize=True)
    visual = np.load(out / "visual.npy", mmap_mode="r")
    assert visual.min() == 0.0 and visual.max() == pytest.approx(1.0)
    raw = _source(root, NAMES[0], "visual", vggsound.RAW_DIR)
    low, high = json.loads((out / "meta.json").read_text())["normalization"]["range"]["visual"]
    np.testing.assert_allclose(visual[0], (raw - low) / (high - low), rtol=1e-6)


def test_bad_feature_file_is_named_and_nothing_is_written(src, tmp_path):
    bad = src / vggsound.NORMED_DIR / "audio_features" / f"{NAMES[3]}_aFeature.npy"
    np.save(bad, np.zeros((10, 64), np.float32))
    message = rf"{NAMES[3]}_aFeature.npy: audio: shape \[10, 64\]; expected \[10, 128\]"
    with pytest.raises(DatasetFormatError, match=message):
        vggsound.convert(src, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out-*"))
    bad.unlink()
    with pytest.raises(DatasetFormatError, match="file missing .*line 4"):
        vggsound.convert(src, tmp_path / "out")


def test_bad_metadata_line_is_named(src, tmp_path):
    (src / vggsound.METADATA_FILE).write_text(f"{NAMES[0]}&52\n{NAMES[1]}&141\n")
    with pytest.raises(DatasetFormatError, match=r"VGGS50k_metadata.txt: line 2: class id 141 is outside \[0, 140\]"):
        vggsound.convert(src, tmp_path / "out")
