import json

import numpy as np
import pytest
import torch

from xmodal.data import DatasetFormatError, PairedDataset


def test_reads_a_valid_dataset(tiny_dataset):
    ds = PairedDataset(tiny_dataset, "train")
    assert len(ds) == 6 and ds.num_classes == 3
    sample = ds[1]
    assert sample["image"].shape == (1, 4, 4) and sample["audio"].shape == (6,)
    assert sample["label"].dtype == torch.long and int(sample["index"]) == 1
    raw = np.load(tiny_dataset / "image.npy")
    assert torch.equal(sample["image"], torch.from_numpy(raw[2]))  # split position 1 = row 2
    assert isinstance(ds.arrays["image"], np.memmap)


def test_selects_modalities(tiny_dataset):
    assert set(PairedDataset(tiny_dataset, "val", modalities=["audio"])[0]) == {"audio", "label", "index"}


def _expect(root, split="train", file=None, field=None, **kwargs):
    with pytest.raises(DatasetFormatError) as info:
        PairedDataset(root, split, **kwargs)
    message = str(info.value)
    if file:
        assert file in message, message
    if field:
        assert field in message, message
    return message


def test_missing_file(tiny_dataset):
    (tiny_dataset / "labels.npy").unlink()
    _expect(tiny_dataset, file="labels.npy", field="labels")


def test_missing_meta(tiny_dataset):
    (tiny_dataset / "meta.json").unlink()
    _expect(tiny_dataset, file="meta.json")


def test_missing_directory(tmp_path):
    _expect(tmp_path / "nope", field="data_root")


def test_shape_mismatch_with_meta(tiny_dataset):
    np.save(tiny_dataset / "image.npy", np.zeros((12, 1, 5, 5), np.float32))
    msg = _expect(tiny_dataset, file="image.npy", field="shape")
    assert "[1, 5, 5]" in msg and "[1, 4, 4]" in msg


def test_dtype_mismatch_with_meta(tiny_dataset):
    np.save(tiny_dataset / "audio.npy", np.zeros((12, 6), np.float64))
    _expect(tiny_dataset, file="audio.npy", field="dtype")


def test_label_out_of_range(tiny_dataset):
    labels = np.load(tiny_dataset / "labels.npy")
    labels[4] = 7
    np.save(tiny_dataset / "labels.npy", labels)
    msg = _expect(tiny_dataset, file="labels.npy", field="labels")
    assert "row 4" in msg and "[0, 2]" in msg


def test_nan_value(tiny_dataset):
    audio = np.load(tiny_dataset / "audio.npy")
    audio[9, 2] = np.nan
    np.save(tiny_dataset / "audio.npy", audio)
    msg = _expect(tiny_dataset, file="audio.npy", field="audio")
    assert "row 9" in msg


def test_empty_split(tiny_dataset):
    splits = json.loads((tiny_dataset / "splits.json").read_text())
    splits["val"] = []
    (tiny_dataset / "splits.json").write_text(json.dumps(splits))
    _expect(tiny_dataset, "val", file="splits.json", field="val")


def test_split_index_out_of_range(tiny_dataset):
    splits = json.loads((tiny_dataset / "splits.json").read_text())
    splits["test"] = [0, 12]
    (tiny_dataset / "splits.json").write_text(json.dumps(splits))
    msg = _expect(tiny_dataset, "test", file="splits.json", field="test")
    assert "index 12" in msg


def test_unknown_split(tiny_dataset):
    _expect(tiny_dataset, "holdout", file="splits.json", field="holdout")


def test_length_mismatch_between_modality_and_labels(tiny_dataset):
    np.save(tiny_dataset / "audio.npy", np.zeros((11, 6), np.float32))
    _expect(tiny_dataset, file="audio.npy", field="length")


def test_meta_missing_key(tiny_dataset):
    meta = json.loads((tiny_dataset / "meta.json").read_text())
    del meta["modalities"]
    (tiny_dataset / "meta.json").write_text(json.dumps(meta))
    _expect(tiny_dataset, file="meta.json", field="modalities")


def test_unknown_modality_requested(tiny_dataset):
    _expect(tiny_dataset, file="meta.json", field="modalities", modalities=["depth"])


def test_fingerprint_sees_transform_arguments_held_inside_torch_modules(tiny_dataset):
    from xmodal.data.transforms import LogMelSpectrogram

    def fingerprint(*pipeline):
        return PairedDataset(tiny_dataset, "train", pipeline=list(pipeline)).fingerprint()

    mel64 = fingerprint(dict(type="LogMelSpectrogram", n_mels=64))
    assert mel64 == fingerprint(dict(type="LogMelSpectrogram", n_mels=64))  # stable: the cache is found again
    assert mel64 != fingerprint(dict(type="LogMelSpectrogram", n_mels=32))
    assert mel64 != fingerprint(dict(type="LogMelSpectrogram", n_mels=64, hop_length=140))
    assert mel64 != fingerprint()
    # built objects (no config): n_mels lives only in torchaudio's MelScale (an attribute and the filterbank)
    assert fingerprint(LogMelSpectrogram(n_mels=64)) == fingerprint(LogMelSpectrogram(n_mels=64))
    assert fingerprint(LogMelSpectrogram(n_mels=64)) != fingerprint(LogMelSpectrogram(n_mels=32))

    # a plain callable: its closure counts, its memory address does not
    def scale(factor):
        return lambda sample: {**sample, "audio": sample["audio"] * factor}

    assert fingerprint(scale(2.0)) == fingerprint(scale(2.0))
    assert fingerprint(scale(2.0)) != fingerprint(scale(3.0))


# -- data stays what meta.json says it is ------------------------------------------------------------------
def _written(root):
    from xmodal.data.writer import write_dataset

    rng = np.random.default_rng(0)
    return write_dataset(root, {"audio": rng.normal(size=(12, 6)).astype(np.float32)}, np.arange(12) % 3,
                         ["a", "b", "c"], "w", "test", {"train": [0, 1, 2, 3], "val": [4, 5], "test": [6, 7]})


def _edit_in_place(path):
    audio = np.load(path)
    audio[0, 0] += 1.0
    np.save(path, audio)


def test_checksums_are_verified_on_open_by_default_and_the_fingerprint_sees_them(tmp_path):
    root = _written(tmp_path / "w")
    ds = PairedDataset(root, "train")
    assert set(ds.checksums) == {"audio.npy", "labels.npy", "splits.json"}  # "auto": a small dataset is verified
    before = ds.fingerprint()
    _edit_in_place(root / "audio.npy")
    with pytest.raises(DatasetFormatError, match=r"audio\.npy: sha256: content does not match meta\.json"):
        PairedDataset(root, "train")
    unverified = PairedDataset(root, "train", verify=False)  # the user's choice: read it as it is
    assert unverified.checksums == {} and unverified.fingerprint() != before  # size + mtime still change


def test_verify_auto_skips_large_datasets_and_verify_true_always_checks(tmp_path, monkeypatch):
    from xmodal.data import manifest

    root = _written(tmp_path / "w")
    _edit_in_place(root / "audio.npy")
    monkeypatch.setattr(manifest, "VERIFY_AUTO_BYTES", 10)  # the dataset is now "large"
    assert PairedDataset(root, "train").checksums == {}
    with pytest.raises(DatasetFormatError, match=r"audio\.npy: sha256"):
        PairedDataset(root, "train", verify=True)
    with pytest.raises(ValueError, match=r"PairedDataset\.verify: got 'yes'; expected True, False or 'auto'"):
        PairedDataset(root, "train", verify="yes")


def test_verify_true_needs_checksums_auto_does_not(tiny_dataset):
    assert PairedDataset(tiny_dataset, "train").checksums == {}  # hand-made, no sha256: nothing to compare
    with pytest.raises(DatasetFormatError, match=r"meta\.json: sha256: missing"):
        PairedDataset(tiny_dataset, "train", verify=True)


def test_fingerprint_changes_when_an_array_is_edited_without_verification(tiny_dataset):
    before = PairedDataset(tiny_dataset, "train").fingerprint()
    audio = np.load(tiny_dataset / "audio.npy")
    audio[0, 0] += 1.0
    np.save(tiny_dataset / "audio.npy", audio)
    assert PairedDataset(tiny_dataset, "train").fingerprint() != before


def test_a_symlink_leaving_the_root_is_read_only_when_allowed(tiny_dataset, tmp_path):
    outside = tmp_path / "shared.npy"
    np.save(outside, np.ones((12, 6), np.float32))
    (tiny_dataset / "audio.npy").unlink()
    (tiny_dataset / "audio.npy").symlink_to(outside)
    with pytest.raises(DatasetFormatError, match="outside the dataset root"):
        PairedDataset(tiny_dataset, "train")
    ds = PairedDataset(tiny_dataset, "train", allow_outside_root=True)
    assert ds[0]["audio"].tolist() == [1.0] * 6
    inside = tiny_dataset / "copy.npy"  # a link that stays inside is fine
    np.save(inside, np.ones((12, 6), np.float32))
    (tiny_dataset / "audio.npy").unlink()
    (tiny_dataset / "audio.npy").symlink_to(inside)
    assert len(PairedDataset(tiny_dataset, "train")) == 6


def test_xmodal_verify_accepts_an_intact_dataset(tmp_path, capsys):
    from xmodal.cli import verify

    root = _written(tmp_path / "w")
    assert verify.main([str(root)]) == 0
    assert capsys.readouterr().out.strip() == f"{root}: 3 files match meta.json"  # audio, labels, splits
