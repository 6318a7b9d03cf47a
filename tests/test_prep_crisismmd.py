"""data_prep/crisismmd.py: (a) the official CMMD_data.pth, (b) the raw release with tiny local models.

Mode (b) uses a randomly initialised timm ResNet-18 saved as a state dict (the official ResNet-50 has
the same parameter names; the smaller net keeps the test fast, and the image width then follows the
model: 512) and a one-layer RoBERTa (BERTweet's architecture, hidden size 768) with a
BertweetTokenizer built from a few-word vocabulary. Nothing is downloaded.
"""

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from data_prep import crisismmd
from xmodal.data.paired import PairedDataset
from xmodal.data.writer import DatasetExistsError, official_splits
from xmodal.errors import DatasetFormatError

REPO = Path(__file__).resolve().parents[1]
LABELS = np.array([0, 1, 2, 3, 4, 5, 6, 7, 7, 0])


def _official_file(path: Path, labels=LABELS) -> Path:
    rng = np.random.default_rng(0)
    data = (rng.random((len(labels), 2048)).astype(np.float32), rng.random((len(labels), 768)).astype(np.float32),
            np.asarray(labels))
    torch.save(data, path)  # as preprocess_CrisisMMD_1.py saves it: a tuple of NumPy arrays
    return path


def test_features_file_converts_with_official_split(tmp_path):
    src = _official_file(tmp_path / "CMMD_data.pth")
    out = crisismmd.convert_features(src, tmp_path / "crisismmd")
    image, text, _ = torch.load(src, weights_only=False)
    splits = official_splits(len(LABELS))
    for split in ("train", "val", "test"):
        ds = PairedDataset(out, split=split)
        assert ds.indices.tolist() == splits[split]
        row = splits[split][0]
        sample = ds[0]
        assert sample["image"].shape == (2048,) and sample["text"].shape == (768,)
        assert int(sample["label"]) == LABELS[row]
        np.testing.assert_array_equal(sample["image"].numpy(), image[row])
        np.testing.assert_array_equal(sample["text"].numpy(), text[row])
    meta = json.loads((out / "meta.json").read_text())
    assert meta["classes"] == list(crisismmd.CLASSES) and len(meta["classes"]) == 8


def test_features_cli_and_overwrite(tmp_path, capsys):
    src = _official_file(tmp_path / "CMMD_data.pth")
    cmd = [sys.executable, "data_prep/crisismmd.py", "--features", str(src), "--out", str(tmp_path / "out")]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "10 samples" in done.stdout and "image [2048]" in done.stdout
    assert crisismmd.main(cmd[2:]) == 2  # refuses to overwrite
    assert "--force" in capsys.readouterr().err
    assert crisismmd.main([*cmd[2:], "--force"]) == 0


def test_bad_features_file_is_named(tmp_path):
    bad = _official_file(tmp_path / "CMMD_data.pth", labels=[0, 1, 8])
    with pytest.raises(DatasetFormatError, match=r"CMMD_data.pth: labels: label 8 at row 2 is outside \[0, 7\]"):
        crisismmd.convert_features(bad, tmp_path / "out")
    torch.save({"x": 1}, bad)
    with pytest.raises(DatasetFormatError, match="CMMD_data.pth: features: got dict; expected a tuple"):
        crisismmd.convert_features(bad, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# -- mode (b) -----------------------------------------------------------------------------------
COLUMNS = ["event_name", "tweet_id", "image_id", "tweet_text", "image", "label", "label_text", "label_image",
           "label_text_image"]
# (file, tweet id, image suffix, text, label); tweet 902 has two images: only its first row is kept
ROWS = [
    ("train", "901", 0, "Flooding on I-45 @KHOU https://t.co/a http://ow.ly/x 😢", "infrastructure_and_utility_damage"),
    ("train", "902", 0, "Volunteers needed… we can't wait’", "rescue_volunteering_or_donation_effort"),
    ("train", "902", 1, "Volunteers needed… we can't wait’", "rescue_volunteering_or_donation_effort"),
    ("dev", "903", 0, "Two people injured in the storm", "injured_or_dead_people"),
    ("test", "904", 0, "Thoughts and prayers", "not_humanitarian"),
    ("test", "905", 0, "Cars crushed by a tree", "vehicle_damage"),
]


def make_release(root: Path) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    split_dir = root / crisismmd.SPLIT_DIR
    split_dir.mkdir(parents=True)
    by_file = {}
    for part, tweet, k, text, label in ROWS:
        image = f"data_image/hurricane_harvey/27_8_2017/{tweet}_{k}.jpg"
        (root / image).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (30 + 5 * k, 40, 3), dtype=np.uint8)).save(root / image)
        by_file.setdefault(part, []).append(["hurricane_harvey", tweet, f"{tweet}_{k}", text, image, label, label,
                                             label, "Positive"])
    for part, rows in by_file.items():
        with open(split_dir / f"task_humanitarian_text_img_{part}.tsv", "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh, delimiter="\t")
            writer.writerow(COLUMNS)
            writer.writerows(rows)
    return root


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    import timm
    from transformers import BertweetTokenizer, RobertaConfig, RobertaModel

    for package in ("ftfy", "emoji"):  # mode (b)'s official tweet cleaning
        pytest.importorskip(package)
    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    image_model = root / "resnet18.pth"
    torch.save(timm.create_model("resnet18", pretrained=False).state_dict(), image_model)
    (root / "vocab.txt").write_text("".join(f"{w} {10 - i}\n" for i, w in enumerate(
        ["@USER", "HTTPURL", "the", "in", "people", "storm", "Flooding", "on", ":", "wait"])))
    (root / "bpe.codes").write_text("t h 10\nth e 9\n")
    tokenizer = BertweetTokenizer(str(root / "vocab.txt"), str(root / "bpe.codes"))
    tokenizer.save_pretrained(root / "tokenizer")
    config = RobertaConfig(vocab_size=len(tokenizer), hidden_size=768, num_hidden_layers=1, num_attention_heads=12,
                           intermediate_size=64, max_position_embeddings=130, pad_token_id=1, bos_token_id=0,
                           eos_token_id=2, type_vocab_size=1)
    RobertaModel(config).save_pretrained(root / "bertweet")
    return image_model, root / "bertweet", root / "tokenizer"


def test_raw_release_follows_the_official_selection(tmp_path, models, capsys):
    image_model, text_model, tokenizer = models
    src = make_release(tmp_path / "CrisisMMD_v2.0")
    out = tmp_path / "crisismmd"
    argv = ["--src", str(src), "--image-model", str(image_model), "--text-model", str(text_model), "--tokenizer",
            str(tokenizer), "--image-arch", "resnet18", "--device", "cpu", "--batch-size", "3", "--out", str(out)]
    assert crisismmd.main(argv) == 0  # the CLI itself runs as a subprocess in test_features_cli_and_overwrite
    assert "5 samples, image [512], text [768], 8 classes" in capsys.readouterr().out
    rows = [line.split("\t") for line in (out / "samples.tsv").read_text().splitlines()[1:]]
    # files in name order (dev, test, train), one row per tweet
    assert [r[0] for r in rows] == ["903", "904", "905", "901", "902"]
    expected = ["injured_or_dead_people", "not_humanitarian", "vehicle_damage", "infrastructure_and_utility_damage",
                "rescue_volunteering_or_donation_effort"]
    assert [r[2] for r in rows] == expected
    splits = official_splits(5)
    for split in ("train", "val", "test"):
        ds = PairedDataset(out, split=split)
        assert ds.indices.tolist() == splits[split]
        sample = ds[0]
        assert sample["image"].shape == (512,) and sample["text"].shape == (768,)
        assert crisismmd.CLASSES[int(sample["label"])] == expected[splits[split][0]]
    assert crisismmd.main(argv) == 2 and "--force" in capsys.readouterr().err


def test_raw_release_missing_image_is_named(tmp_path, models):
    image_model, text_model, tokenizer = models
    src = make_release(tmp_path / "CrisisMMD_v2.0")
    (src / "data_image/hurricane_harvey/27_8_2017/905_0.jpg").unlink()
    with pytest.raises(DatasetFormatError, match=r"905_0.jpg: image: file missing \(tweet 905, "
                                                 r"task_humanitarian_text_img_test.tsv line 3\)"):
        crisismmd.convert_raw(src, tmp_path / "out", image_model, text_model, tokenizer, "resnet18", device="cpu")
    assert not (tmp_path / "out").exists()
    with pytest.raises(DatasetExistsError):
        (tmp_path / "full").mkdir()
        (tmp_path / "full" / "x").write_text("")
        crisismmd.convert_raw(src, tmp_path / "full", image_model, text_model, tokenizer, "resnet18",
                              device="cpu")


def test_unknown_label_is_named(tmp_path):
    src = make_release(tmp_path / "CrisisMMD_v2.0")
    path = src / crisismmd.SPLIT_DIR / "task_humanitarian_text_img_dev.tsv"
    path.write_text(path.read_text().replace("injured_or_dead_people", "dont_know"))
    files = crisismmd.annotation_files(src)
    with pytest.raises(DatasetFormatError, match="task_humanitarian_text_img_dev.tsv: line 2: label 'dont_know'"):
        crisismmd.read_annotations(files)
    assert len(crisismmd.read_annotations(files, skip_unknown_labels=True)) == 4


def test_tweet_normalisation_and_padding_invariance(models):
    text = crisismmd.normalize_tweet("RT @bob: Flood!! 😢 https://t.co/abc http://x.com can't go’ …")
    assert text == "RT @USER : Flood ! ! : crying_face : HTTPURL can't go ' ..."
    _, text_model, tokenizer = models
    tok, model = crisismmd.load_text_model(text_model, tokenizer)
    texts = ["the storm", "people in the storm on Flooding wait"]
    batch = tok(texts, max_length=128, truncation=True, padding=True, return_tensors="pt")
    with torch.no_grad():
        together = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).pooler_output
        alone = model(input_ids=tok(texts[0], return_tensors="pt")["input_ids"]).pooler_output
    torch.testing.assert_close(together[0], alone[0], atol=1e-5, rtol=1e-5)


def test_truncated_image_is_named_and_skip_bad_leaves_its_tweet_out(tmp_path, models, capsys):
    image_model, text_model, tokenizer = models
    src = make_release(tmp_path / "CrisisMMD_v2.0")
    folder = src / "data_image/hurricane_harvey/27_8_2017"
    for name in ("901_0.jpg", "902_0.jpg"):  # rows 3 and 4 of the 5 (files dev, test, train): both train
        data = (folder / name).read_bytes()
        (folder / name).write_bytes(data[: len(data) // 2])  # cut short, as by an interrupted download
    out = tmp_path / "crisismmd"
    out.mkdir()
    (out / "meta.json").write_text("an earlier dataset")
    argv = ["--src", str(src), "--image-model", str(image_model), "--text-model", str(text_model), "--tokenizer",
            str(tokenizer), "--image-arch", "resnet18", "--device", "cpu", "--out", str(out), "--force"]
    assert crisismmd.main(argv) == 2
    err = capsys.readouterr().err
    assert "901_0.jpg: image: not a readable image (image file is truncated" in err and "--skip-bad" in err
    assert [p.name for p in out.iterdir()] == ["meta.json"] and (out / "meta.json").read_text() == "an earlier dataset"

    assert crisismmd.main([*argv, "--skip-bad"]) == 0
    assert "skipped 2 tweet(s)" in capsys.readouterr().err
    meta = json.loads((out / "meta.json").read_text())
    assert [(e["file"], e["sample"]) for e in meta["skipped"]] == [
        ("data_image/hurricane_harvey/27_8_2017/901_0.jpg", "901"),
        ("data_image/hurricane_harvey/27_8_2017/902_0.jpg", "902")]
    assert all(e["reason"].startswith("image: not a readable image") for e in meta["skipped"])
    assert [line.split("\t")[0] for line in (out / "samples.tsv").read_text().splitlines()[1:]] == ["903", "904", "905"]
    # the official split of all 5 tweets ({train: [0, 3, 4], val: [2], test: [1]}) without rows 3 and 4
    assert json.loads((out / "splits.json").read_text()) == {"train": [0], "val": [2], "test": [1]}
    assert PairedDataset(out, split="train")[0]["image"].shape == (512,)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["CrisisMMD_v2.0", "crisismmd"]
