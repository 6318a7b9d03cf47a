"""Image-caption retrieval data: data_prep/flickr30k.py and coco_captions.py on tiny fixtures in the
real layouts (image folder + Karpathy split JSON), the writer, and RetrievalDataset's checks."""

import io
import json

import numpy as np
import pytest
import torch
from mmengine.dataset import default_collate, pseudo_collate
from mmengine.registry import FUNCTIONS
from PIL import Image
from torch.utils.data import DataLoader

from data_prep import coco_captions, flickr30k, karpathy
from xmodal.data.retrieval import RetrievalDataset, load_image, write_retrieval_dataset
from xmodal.data.writer import DatasetExistsError, sha256_of
from xmodal.errors import DatasetFormatError
from xmodal.registry import DATASETS

COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (255, 0, 255)]


def _png(path, colour, size=(40, 24)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


def _png_bytes(colour, size=(12, 10)):
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


def _entry(i, filename, split, n_sentences, filepath=None):
    entry = {"filename": filename, "imgid": i, "split": split, "sentids": list(range(n_sentences)),
             "sentences": [{"raw": f"image {i} caption {k} ", "tokens": ["image", str(i)], "imgid": i, "sentid": k}
                           for k in range(n_sentences)]}
    if filepath:
        entry["filepath"] = filepath
    return entry


@pytest.fixture
def flickr(tmp_path):
    """Five images (flickr30k-images/<id>.png) and a Karpathy dataset_flickr30k.json."""
    src = tmp_path / "flickr30k-images"
    splits = ["train", "test", "train", "val", "test"]
    entries = []
    for i, split in enumerate(splits):
        name = f"{1000 + i}.png"
        _png(src / name, COLOURS[i])
        entries.append(_entry(i, name, split, 5))
    entries[0]["sentences"][0]["raw"] = "  A dog\n"  # outer whitespace is stripped
    js = tmp_path / "caption_datasets" / "dataset_flickr30k.json"
    js.parent.mkdir()
    js.write_text(json.dumps({"dataset": "flickr30k", "images": entries}))
    return src, js


@pytest.fixture
def coco(tmp_path):
    """Six images in train2014/ and val2014/ (restval among them) and a Karpathy dataset_coco.json."""
    src = tmp_path / "coco2014"
    layout = [("train2014", "train", 5), ("val2014", "restval", 6), ("val2014", "val", 5), ("val2014", "test", 7),
              ("train2014", "train", 5), ("val2014", "test", 5)]
    entries = []
    for i, (folder, split, n) in enumerate(layout):
        name = f"COCO_{folder}_{i:012d}.png"
        _png(src / folder / name, COLOURS[i], size=(24, 40))
        entries.append({**_entry(i, name, split, n, folder), "cocoid": i})
    js = tmp_path / "dataset_coco.json"
    js.write_text(json.dumps({"dataset": "coco", "images": entries}))
    return src, js


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _leftovers(parent, keep):
    return sorted(p.name for p in parent.iterdir() if p.name not in keep)


# -- data_prep ----------------------------------------------------------------------------------------
def test_flickr30k_prep_writes_the_format(flickr, tmp_path, capsys):
    src, js = flickr
    out = tmp_path / "out" / "flickr30k"
    assert flickr30k.main(["--src", str(src), "--karpathy", str(js.parent), "--out", str(out)]) == 0
    assert "5 images, 25 captions" in capsys.readouterr().out
    meta = json.loads((out / "meta.json").read_text())
    assert meta["name"] == "flickr30k" and meta["task"] == "retrieval" and meta["version"] == "1"
    assert meta["classes"] == [] and meta["counts"] == {"image": 5, "text": 25}
    assert meta["sha256"] == {f: sha256_of(out / f) for f in ("image.jsonl", "text.jsonl", "splits.json")}
    assert meta["karpathy"] == {"file": "dataset_flickr30k.json", "size": js.stat().st_size, "sha256": sha256_of(js)}
    assert json.loads((out / "splits.json").read_text()) == {"train": [0, 2], "val": [3], "test": [1, 4]}
    images = _lines(out / "image.jsonl")
    assert images == [{"id": i, "file": f"files/images/{1000 + i}.png"} for i in range(5)]
    assert all((out / r["file"]).read_bytes() == (src / f"{1000 + r['id']}.png").read_bytes() for r in images)
    texts = _lines(out / "text.jsonl")
    assert [t["id"] for t in texts] == list(range(25)) and [t["image"] for t in texts] == [i for i in range(5)
                                                                                           for _ in range(5)]
    assert texts[0]["caption"] == "A dog" and texts[7]["caption"] == "image 1 caption 2"
    assert _leftovers(out.parent, {"flickr30k"}) == []


def test_coco_prep_restval_subfolders_and_options(coco, tmp_path):
    src, js = coco
    out = tmp_path / "coco"
    assert coco_captions.main(["--src", str(src), "--karpathy", str(js), "--out", str(out), "--copy"]) == 0
    assert json.loads((out / "splits.json").read_text()) == {"train": [0, 1, 4], "val": [2], "test": [3, 5]}
    assert json.loads((out / "meta.json").read_text())["counts"] == {"image": 6, "text": 33}
    assert _lines(out / "image.jsonl")[1]["file"] == "files/images/COCO_val2014_000000000001.png"
    assert (out / "files/images/COCO_val2014_000000000001.png").stat().st_ino != \
        (src / "val2014/COCO_val2014_000000000001.png").stat().st_ino  # --copy: not a hard link

    test_only = tmp_path / "coco_test"
    assert coco_captions.main(["--src", str(src), "--karpathy", str(js), "--out", str(test_only), "--splits", "test",
                               "--max-captions", "5"]) == 0
    assert json.loads((test_only / "splits.json").read_text()) == {"test": [0, 1]}  # ids renumbered
    texts = _lines(test_only / "text.jsonl")
    assert len(texts) == 10 and texts[5] == {"id": 5, "image": 1, "caption": "image 5 caption 0"}
    ds = RetrievalDataset(test_only, "test", mode="images", image_size=8)
    assert ds[1]["image"][:, 4, 4].tolist() == pytest.approx([c / 255 for c in COLOURS[5]])


def test_reader_modes_on_a_prepared_dataset(flickr, tmp_path):
    src, js = flickr
    out = tmp_path / "f30k"
    flickr30k.main(["--src", str(src), "--karpathy", str(js), "--out", str(out)])
    pairs = RetrievalDataset(out, "test", image_size=16)
    assert len(pairs) == 10 and pairs.num_images == 2 and pairs.num_captions == 10
    item = pairs[6]
    assert set(item) == {"image", "text", "index", "image_index"}
    assert item["text"] == "image 4 caption 1" and int(item["index"]) == 21 and int(item["image_index"]) == 4
    assert item["image"].shape == (3, 16, 16) and item["image"].dtype == torch.float32
    assert item["image"][:, 8, 8].tolist() == pytest.approx([c / 255 for c in COLOURS[4]])
    images = RetrievalDataset(out, "train", mode="images", image_size=16)
    assert len(images) == 2 and set(images[1]) == {"image", "image_index"} and int(images[1]["image_index"]) == 2
    captions = RetrievalDataset(out, "train", mode="captions")
    assert [int(captions[k]["index"]) for k in range(len(captions))] == [*range(5), *range(10, 15)]
    assert set(captions[0]) == {"text", "index", "image_index"} and captions[0]["text"] == "A dog"
    assert pairs.metainfo == {"name": "flickr30k", "classes": [], "version": "1", "task": "retrieval"}
    assert pairs.fingerprint() == RetrievalDataset(out, "test", image_size=16).fingerprint()
    assert len({pairs.fingerprint(), captions.fingerprint(), RetrievalDataset(out, "test").fingerprint()}) == 3
    built = DATASETS.build(dict(type="RetrievalDataset", data_root=str(out), split="val", mode="captions"))
    assert isinstance(built, RetrievalDataset) and len(built) == 5 and pairs.stochastic_transforms == []


def test_dataloader_batches_keep_captions_as_strings(flickr, tmp_path):
    src, js = flickr
    out = tmp_path / "f30k"
    flickr30k.main(["--src", str(src), "--karpathy", str(js), "--out", str(out)])
    pairs = RetrievalDataset(out, "train", image_size=32)
    collate = FUNCTIONS.get("default_collate")  # what configs name in collate_fn
    assert collate is default_collate
    batch = next(iter(DataLoader(pairs, batch_size=4, collate_fn=collate)))
    assert batch["text"] == ["A dog", "image 0 caption 1", "image 0 caption 2", "image 0 caption 3"]
    assert batch["image"].shape == (4, 3, 32, 32) and batch["index"].tolist() == [0, 1, 2, 3]
    assert batch["image_index"].dtype == torch.long
    one = next(iter(DataLoader(pairs, batch_size=1, collate_fn=collate)))
    assert one["text"] == ["A dog"]
    assert pseudo_collate([pairs[0], pairs[1]])["text"] == ["A dog", "image 0 caption 1"]

    from xmodal.evaluation.retrieval import RetrievalMetric
    from xmodal.models import DualEncoder

    model = DualEncoder("xmodal-tiny-clip").eval()
    assert torch.isfinite(model(mode="loss", **batch)["loss_itc"])
    metric = RetrievalMetric(ks=(1,))
    for mode in ("images", "captions"):
        for part in DataLoader(RetrievalDataset(out, "test", mode=mode, image_size=32), batch_size=3,
                               collate_fn=collate):
            with torch.no_grad():
                metric.process(part, model(mode="predict", **part))
    assert set(metric.evaluate(len(metric.results))) >= {"image_retrieval_recall@1", "text_retrieval_recall@1"}


def test_image_preprocessing_resizes_the_shorter_side_and_centre_crops(tmp_path):
    # 64 x 32, left half red, right half blue: resized to 32 x 16, the centre 16 x 16 is half and half
    image = Image.new("RGB", (64, 32), (255, 0, 0))
    image.paste((0, 0, 255), (32, 0, 64, 32))
    image.convert("P").save(tmp_path / "p.png")  # palette mode: converted to RGB when read
    x = load_image(tmp_path / "p.png", 16)
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32 and 0 <= float(x.min()) and float(x.max()) <= 1
    assert x[:, 8, 3].tolist() == pytest.approx([1, 0, 0]) and x[:, 8, 12].tolist() == pytest.approx([0, 0, 1])
    Image.new("L", (20, 30), 128).save(tmp_path / "grey.png")
    assert load_image(tmp_path / "grey.png", 8).shape == (3, 8, 8)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (30, 50, 3), dtype=np.uint8)).save(tmp_path / "noise.png")
    transforms = pytest.importorskip("torchvision.transforms")
    reference = transforms.Compose([transforms.Resize(20, interpolation=transforms.InterpolationMode.BICUBIC),
                                    transforms.CenterCrop(20), transforms.ToTensor()])  # CLIP's eval transform
    torch.testing.assert_close(load_image(tmp_path / "noise.png", 20),
                               reference(Image.open(tmp_path / "noise.png").convert("RGB")))


# -- data_prep errors -----------------------------------------------------------------------------------
def _bad_json(js, edit):
    data = json.loads(js.read_text())
    edit(data)
    js.write_text(json.dumps(data))


@pytest.mark.parametrize("case, match", [
    ("no_json", r"dataset_flickr30k.json: karpathy: file not found; expected Karpathy's dataset_flickr30k.json"),
    ("coco_json", r"dataset: is 'coco'; this script converts 'flickr30k'"),
    ("missing_image", r"1003.png: image: file missing: 1003.png \(dataset_flickr30k.json images\[3\], split val\); "
                      r"1 of 5 image files missing"),
    ("no_sentences", r"images\[2\].sentences: no sentences for 1002.png"),
    ("empty_raw", r"images\[1\].sentences\[4\].raw: got ' ' for 1001.png"),
    ("bad_split", r"images\[4\].split: 'dev' for 1004.png"),
    ("duplicate", r"images\[1\].filename: 1000.png is also images\[0\]"),
    ("not_json", r"json: not valid JSON"),
    ("no_val", r"images: no image in split 'val'; choose the splits to write with --splits \(the file has \['test', "
               r"'train'\]\)"),
])
def test_prep_errors_name_the_problem_and_leave_nothing(flickr, tmp_path, capsys, case, match):
    src, js = flickr
    if case == "no_json":
        js.unlink()
    elif case == "coco_json":
        _bad_json(js, lambda d: d.update(dataset="coco"))
    elif case == "missing_image":
        (src / "1003.png").unlink()
    elif case == "no_sentences":
        _bad_json(js, lambda d: d["images"][2].update(sentences=[]))
    elif case == "empty_raw":
        _bad_json(js, lambda d: d["images"][1]["sentences"][4].update(raw=" "))
    elif case == "bad_split":
        _bad_json(js, lambda d: d["images"][4].update(split="dev"))
    elif case == "duplicate":
        _bad_json(js, lambda d: d["images"][1].update(filename="1000.png"))
    elif case == "not_json":
        js.write_text("{not json")
    elif case == "no_val":
        _bad_json(js, lambda d: d["images"][3].update(split="test"))
    out = tmp_path / "out"
    with pytest.raises(DatasetFormatError, match=match):
        karpathy.convert(src, js, out, karpathy.FLICKR30K)
    assert flickr30k.main(["--src", str(src), "--karpathy", str(js), "--out", str(out)]) == 2
    assert "error:" in capsys.readouterr().err
    assert not out.exists() and _leftovers(tmp_path, {"flickr30k-images", "caption_datasets"}) == []


def test_prep_refuses_to_overwrite_without_force(flickr, tmp_path, capsys):
    src, js = flickr
    out = tmp_path / "f30k"
    args = ["--src", str(src), "--karpathy", str(js), "--out", str(out)]
    assert flickr30k.main(args) == 0
    before = (out / "meta.json").read_text()
    assert flickr30k.main(args) == 2
    assert "--force" in capsys.readouterr().err and (out / "meta.json").read_text() == before
    with pytest.raises(DatasetExistsError):
        karpathy.convert(src, js, out, karpathy.FLICKR30K)
    assert flickr30k.main([*args, "--force", "--max-captions", "2"]) == 0
    assert json.loads((out / "meta.json").read_text())["counts"]["text"] == 10
    assert _leftovers(tmp_path, {"flickr30k-images", "caption_datasets", "f30k"}) == []


# -- writer ----------------------------------------------------------------------------------------------
def _write(out, **overrides):
    args = dict(images=[(f"{i}.png", _png_bytes(COLOURS[i])) for i in range(4)],
                captions=[(0, "a red square"), (0, "red"), (1, "green"), (2, "blue"), (3, "yellow"), (3, "gold")],
                splits={"train": [0, 1], "val": [2], "test": [3]}, name="toy", source="unit test")
    args.update(overrides)
    return write_retrieval_dataset(out, **args)


def test_writer_links_or_copies_and_refuses_bad_tables(tmp_path):
    _png(tmp_path / "src" / "a.png", COLOURS[0])
    out = write_retrieval_dataset(tmp_path / "linked", [("sub/a.png", tmp_path / "src" / "a.png")], [(0, "x")],
                                  {"test": np.array([0])}, "toy", "unit test", extra_meta={"note": 1})
    assert (out / "files/images/sub/a.png").stat().st_ino == (tmp_path / "src" / "a.png").stat().st_ino
    assert json.loads((out / "meta.json").read_text())["note"] == 1
    assert len(RetrievalDataset(out, "test")) == 1
    copied = write_retrieval_dataset(tmp_path / "copied", [("a.png", tmp_path / "src" / "a.png")], [(0, "x")],
                                     {"test": [0]}, "toy", "unit test", link=False)
    assert (copied / "files/images/a.png").stat().st_nlink == 1

    for overrides, match in [
        (dict(captions=[(0, "a"), (4, "b")]), r"caption 1: image id 4 is outside \[0, 3\]"),
        (dict(captions=[(0, "")] + [(i, "x") for i in range(4)]), r"caption 0 \(image 0\): expected a non-empty"),
        (dict(splits={"train": [0, 1], "test": [1]}), r"splits: test: image id 1 at position 0 is also in split"),
        (dict(splits={"train": [], "test": [1]}), "splits: train: split is empty"),
        (dict(captions=[(0, "a")]), "image id 1 at position 1 has no caption"),
        (dict(images=[("../x.png", b"")]), "must be a relative path"),
        (dict(images=[("x.png", b""), ("x.png", b"")]), "used twice"),
    ]:
        with pytest.raises(ValueError, match=match):
            _write(tmp_path / "bad", **overrides)
    with pytest.raises(DatasetFormatError, match="nowhere.png: image: file missing"):
        _write(tmp_path / "bad", images=[("a.png", tmp_path / "nowhere.png")], captions=[(0, "a")],
               splits={"test": [0]})
    assert _leftovers(tmp_path, {"src", "linked", "copied"}) == []
    _write(tmp_path / "ds")
    with pytest.raises(DatasetExistsError, match="--force"):
        _write(tmp_path / "ds", name="other")
    _write(tmp_path / "ds", name="other", force=True)
    assert json.loads((tmp_path / "ds" / "meta.json").read_text())["name"] == "other"


# -- reader checks ----------------------------------------------------------------------------------------
def _edit_lines(path, number, edit):
    lines = path.read_text().splitlines()
    lines[number - 1] = edit(lines[number - 1])
    path.write_text("\n".join(lines) + "\n")


def _set_json(path, **fields):
    path.write_text(json.dumps({**json.loads(path.read_text()), **fields}))


CORRUPTIONS = {
    "task": (lambda d: _set_json(d / "meta.json", task="classification"), "meta.json: task: got 'classification'"),
    "counts": (lambda d: _set_json(d / "meta.json", counts={"image": 4, "text": 7}),
               "text.jsonl: lines: 6 lines but meta.json counts.text is 7"),
    "image_id": (lambda d: _edit_lines(d / "image.jsonl", 3, lambda s: s.replace('"id": 2', '"id": 5')),
                 r"image.jsonl: line 3: id: got 5; expected 2"),
    "text_id": (lambda d: _edit_lines(d / "text.jsonl", 2, lambda s: s.replace('"id": 1,', '"id": "1",')),
                r"text.jsonl: line 2: id: got '1'; expected 1"),
    "caption_image": (lambda d: _edit_lines(d / "text.jsonl", 4, lambda s: s.replace('"image": 2', '"image": 9')),
                      r"text.jsonl: line 4: image: image id 9 is outside \[0, 3\]"),
    "caption_type": (lambda d: _edit_lines(d / "text.jsonl", 5, lambda s: s.replace('"yellow"', '7')),
                     r"text.jsonl: line 5: caption: got 7; expected a str"),
    "bad_line": (lambda d: _edit_lines(d / "text.jsonl", 6, lambda s: s[:-3]), r"text.jsonl: line 6: not valid JSON"),
    "two_values": (lambda d: _edit_lines(d / "text.jsonl", 2, lambda s: s + ", {}"), r"text.jsonl: line 2: not valid"),
    "empty_line": (lambda d: _edit_lines(d / "image.jsonl", 2, lambda s: s + "\n"), r"image.jsonl: line 3: empty line"),
    "not_object": (lambda d: _edit_lines(d / "image.jsonl", 4, lambda s: "[3]"),
                   r"image.jsonl: line 4: expected a JSON object, got list"),
    "file_escape": (lambda d: _edit_lines(d / "image.jsonl", 2, lambda s: s.replace("files/images", "../files")),
                    r"image.jsonl: line 2: file: '../files/1.png' must be a path relative"),
    "overlap": (lambda d: _set_json(d / "splits.json", val=[2, 0]),
                r"splits.json: val: image id 0 at position 1 is also in split 'train'"),
    "range": (lambda d: _set_json(d / "splits.json", test=[7]),
              r"splits.json: test: image id 7 at position 0 is outside \[0, 3\]"),
    "empty": (lambda d: _set_json(d / "splits.json", val=[]), r"splits.json: val: split is empty"),
    "uncaptioned": (lambda d: (d / "text.jsonl").write_text("".join(
        json.dumps({"id": j, "image": 0, "caption": "c"}) + "\n" for j in range(6))),
        r"splits.json: train: image id 1 at position 1 has no caption"),
    "no_split": (lambda d: (d / "splits.json").write_text(json.dumps({"val": [2]})),
                 r"splits.json: train: split missing; the file has \['val'\]"),
    "missing_file": (lambda d: (d / "files/images/1.png").unlink(),
                     r"files/images/1.png: file: image file missing \(image.jsonl line 2, image id 1"),
    "missing_table": (lambda d: (d / "image.jsonl").unlink(), r"image.jsonl: file: missing"),
}


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_reader_refuses_a_bad_dataset_with_file_line_and_field(tmp_path, case):
    root = _write(tmp_path / "ds")
    corrupt, match = CORRUPTIONS[case]
    corrupt(root)
    with pytest.raises(DatasetFormatError, match=match):
        RetrievalDataset(root, "train")


def test_reader_options_and_corrupt_images(tmp_path):
    root = _write(tmp_path / "ds")
    (root / "files/images/1.png").unlink()
    assert len(RetrievalDataset(root, "train", mode="captions")) == 3  # captions never open an image file
    ds = RetrievalDataset(root, "train", check_files=False, image_size=8)
    assert ds[0]["image"].shape == (3, 8, 8)
    (root / "files/images/1.png").write_bytes(b"not an image")
    with pytest.raises(DatasetFormatError, match=r"files/images/1.png: image: not a readable image"):
        ds[2]
    (root / "files/images/1.png").write_bytes(_png_bytes(COLOURS[1], (64, 64))[:60])  # truncated
    with pytest.raises(DatasetFormatError, match=r"files/images/1.png: image: not a readable image"):
        ds[2]
    with pytest.raises(ValueError, match="mode 'triplets'"):
        RetrievalDataset(root, mode="triplets")
    with pytest.raises(DatasetFormatError, match="data_root: directory does not exist"):
        RetrievalDataset(tmp_path / "nowhere")
