"""xmodal.data.writer: the official split protocol, split files, atomic dataset writing."""

import json

import numpy as np
import pytest

from xmodal.data import PairedDataset
from xmodal.data.writer import DatasetExistsError, cut_splits, official_splits, read_split_file, write_dataset
from xmodal.errors import DatasetFormatError


def test_official_splits_reproduce_the_official_index_generation():
    # MST-Distill's indices_gen.py: np.random.seed(19980427), then group_0, group_1, ... permutations
    np.random.seed(19980427)
    groups = [np.random.permutation(50) for _ in range(3)]
    for g, order in enumerate(groups):
        splits = official_splits(50, g)
        assert splits["train"] == order[:30].tolist()
        assert splits["val"] == order[30:40].tolist() and splits["test"] == order[40:].tolist()


def test_cut_is_60_20_20_and_covers_every_sample_once():
    splits = cut_splits(range(1449))
    assert [len(splits[k]) for k in ("train", "val", "test")] == [869, 290, 290]
    assert sorted(splits["train"] + splits["val"] + splits["test"]) == list(range(1449))


def test_split_files_json_and_official_csv(tmp_path):
    js = tmp_path / "split.json"
    js.write_text(json.dumps({"train": [0, 1], "val": [2], "test": [3]}))
    assert read_split_file(js, 4) == {"train": [0, 1], "val": [2], "test": [3]}
    csv = tmp_path / "X_indices.csv"
    csv.write_text("group_0,group_1\n" + "".join(f"{i},{9 - i}\n" for i in range(10)))
    assert read_split_file(csv, 10, group=1) == {"train": [9, 8, 7, 6, 5, 4], "val": [3, 2], "test": [1, 0]}
    with pytest.raises(DatasetFormatError, match="group_5"):
        read_split_file(csv, 10, group=5)
    js.write_text(json.dumps({"train": [0, 9], "val": [2], "test": [3]}))
    with pytest.raises(DatasetFormatError, match=r"train.*index 9"):
        read_split_file(js, 4)


def test_write_dataset_is_readable_and_refuses_to_overwrite(tmp_path):
    out = tmp_path / "ds"
    arrays = {"image": np.zeros((5, 1, 2, 2), np.float32), "audio": np.ones((5, 3), np.float32)}
    labels = np.array([0, 1, 0, 1, 1])
    splits = {"train": [0, 1, 2], "val": [3], "test": [4]}
    write_dataset(out, arrays, labels, ["a", "b"], "toy", "unit test", splits)
    ds = PairedDataset(out, split="train")
    assert len(ds) == 3 and ds[1]["audio"].shape == (3,)
    meta = json.loads((out / "meta.json").read_text())
    assert set(meta["sha256"]) == {"image.npy", "audio.npy", "labels.npy", "splits.json"}
    with pytest.raises(DatasetExistsError, match="--force"):
        write_dataset(out, arrays, labels, ["a", "b"], "toy", "unit test", splits)
    write_dataset(out, {"image": arrays["image"]}, labels, ["a", "b"], "toy2", "unit test", splits, force=True)
    assert json.loads((out / "meta.json").read_text())["name"] == "toy2"
    assert not (out / "audio.npy").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]  # no temporary directory left behind
