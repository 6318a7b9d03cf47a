"""Image-caption datasets with Karpathy's splits (Flickr30K, COCO) -> xmodal's retrieval format.

Shared by ``data_prep/flickr30k.py`` and ``data_prep/coco_captions.py``. Inputs:

* ``--src``: the original image folder (Flickr30K: the folder of ``<id>.jpg``; COCO: the folder that
  holds ``train2014/`` and ``val2014/``);
* ``--karpathy``: Karpathy's split file from ``caption_datasets.zip`` (Karpathy & Fei-Fei, CVPR 2015),
  ``dataset_flickr30k.json`` or ``dataset_coco.json``: ``{"dataset", "images": [{"filename",
  "filepath" (COCO only), "split", "sentences": [{"raw", "tokens", ...}], "imgid", ...}]}``.

Images get ids 0..N-1 in the order of the split file and keep their file names; captions are the
``raw`` sentences (outer whitespace stripped), ids 0..M-1 image by image. ``restval`` images (COCO's
30,504 extra val2014 images) go to train, as in the standard protocol (113,287 train images).
Image files are hard-linked when the output is on the same filesystem, otherwise copied
(``--copy`` always copies). ``meta.json`` records size and SHA-256 of the split file.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from xmodal.apis.errors import cli_errors  # noqa: E402
from xmodal.data.provenance import provenance  # noqa: E402
from xmodal.data.writer import DatasetExistsError, refuse_existing, sha256_of  # noqa: E402
from xmodal.errors import DatasetFormatError  # noqa: E402

SPLITS = ("train", "val", "test")
SPLIT_OF = {"train": "train", "restval": "train", "val": "val", "test": "test"}  # Karpathy's -> ours


@dataclasses.dataclass(frozen=True)
class Source:
    """What differs between the Karpathy-split datasets."""

    name: str  # dataset name in meta.json
    karpathy_file: str  # the split file's name in caption_datasets.zip
    dataset_key: str  # its "dataset" value
    layout: str  # what --src holds, for messages


FLICKR30K = Source("flickr30k", "dataset_flickr30k.json", "flickr30k",
                   "the Flickr30K image folder (flickr30k-images/ with <id>.jpg)")
COCO = Source("coco_captions", "dataset_coco.json", "coco",
              "the COCO 2014 folder holding train2014/ and val2014/")


def resolve_karpathy(path: str | Path, source: Source) -> Path:
    """The split file; a directory (the unzipped caption_datasets/) finds it by name."""
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / source.karpathy_file
    if not path.is_file():
        raise DatasetFormatError(path, "karpathy", f"file not found; expected Karpathy's {source.karpathy_file} "
                                 "(from caption_datasets.zip)")
    return path


def read_karpathy(path: Path, source: Source, splits: Sequence[str] = SPLITS,
                  max_captions: int | None = None) -> list[dict]:
    """The images of ``splits`` in file order, each ``{"file", "subdir", "split", "captions", "entry"}``,
    checked: a file name, a known split and at least one non-empty ``raw`` sentence per image."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DatasetFormatError(path, "json", f"not valid JSON ({err})") from err
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DatasetFormatError(path, "images", "expected an object with an 'images' list (Karpathy's format)")
    dataset = data.get("dataset")
    if dataset is not None and dataset != source.dataset_key:
        raise DatasetFormatError(path, "dataset", f"is {dataset!r}; this script converts {source.dataset_key!r} "
                                 f"({source.karpathy_file})")
    records, seen = [], {}
    for i, entry in enumerate(data["images"]):
        field = f"images[{i}]"
        if not isinstance(entry, dict):
            raise DatasetFormatError(path, field, f"expected an object, got {type(entry).__name__}")
        file, subdir = entry.get("filename"), entry.get("filepath") or ""
        if not isinstance(file, str) or not file or "/" in file or file in (".", ".."):
            raise DatasetFormatError(path, f"{field}.filename", f"got {file!r}; expected an image file name")
        if not isinstance(subdir, str) or ".." in subdir.split("/") or subdir.startswith("/"):
            raise DatasetFormatError(path, f"{field}.filepath", f"got {subdir!r}; expected a sub-folder name")
        split = SPLIT_OF.get(entry.get("split"))
        if split is None:
            raise DatasetFormatError(path, f"{field}.split", f"{entry.get('split')!r} for {file}; expected one of "
                                     f"{sorted(SPLIT_OF)}")
        if split not in splits:
            continue
        captions = _captions(path, field, file, entry.get("sentences"))
        if file in seen:
            raise DatasetFormatError(path, f"{field}.filename", f"{file} is also images[{seen[file]}]; file names "
                                     "must be unique")
        seen[file] = i
        records.append({"file": file, "subdir": subdir, "split": split, "entry": i,
                        "captions": captions[:max_captions] if max_captions else captions})
    empty = [s for s in splits if not any(r["split"] == s for r in records)]
    if empty:
        raise DatasetFormatError(path, "images", f"no image in split {empty[0]!r}; choose the splits to write with "
                                 f"--splits (the file has {sorted({r['split'] for r in records}) or 'none of them'})")
    return records


def _captions(path: Path, field: str, file: str, sentences: object) -> list[str]:
    if not isinstance(sentences, list) or not sentences:
        raise DatasetFormatError(path, f"{field}.sentences", f"no sentences for {file}; every image needs at least "
                                 "one caption")
    captions = []
    for k, sentence in enumerate(sentences):
        raw = sentence.get("raw") if isinstance(sentence, dict) else None
        if not isinstance(raw, str) or not raw.strip():
            raise DatasetFormatError(path, f"{field}.sentences[{k}].raw", f"got {raw!r} for {file}; expected the "
                                     "caption text")
        captions.append(raw.strip())
    return captions


def image_paths(src: Path, records: Sequence[dict], karpathy: Path, source: Source) -> list[Path]:
    """Each record's image file under ``src``; all are checked before anything is written."""
    if not src.is_dir():
        raise DatasetFormatError(src, "src", f"directory does not exist; expected {source.layout}")
    paths = [src / r["subdir"] / r["file"] for r in records]
    missing = [k for k, p in enumerate(paths) if not p.is_file()]
    if missing:
        r = records[missing[0]]
        raise DatasetFormatError(paths[missing[0]], "image", f"file missing: {r['file']} ({karpathy.name} "
                                 f"images[{r['entry']}], split {r['split']}); {len(missing)} of {len(paths)} image "
                                 f"files missing; expected --src to be {source.layout}")
    return paths


def convert(src: str | Path, karpathy: str | Path, out: str | Path, source: Source,
            splits: Sequence[str] = SPLITS, max_captions: int | None = None, link: bool = True,
            force: bool = False) -> Path:
    """Images of ``src`` + Karpathy's split file -> a retrieval dataset at ``out``."""
    from xmodal.data.retrieval import write_retrieval_dataset

    out = refuse_existing(out, force)  # before reading a 150 MB json
    karpathy = resolve_karpathy(karpathy, source)
    records = read_karpathy(karpathy, source, splits, max_captions)
    paths = image_paths(Path(src).expanduser(), records, karpathy, source)
    captions = [(i, text) for i, r in enumerate(records) for text in r["captions"]]
    split_ids = {s: [i for i, r in enumerate(records) if r["split"] == s] for s in splits}
    meta = {
        "karpathy": {"file": karpathy.name, "size": karpathy.stat().st_size, "sha256": sha256_of(karpathy)},
        "split_protocol": "Karpathy & Fei-Fei (CVPR 2015) split file; restval -> train",
        "captions": "sentences[].raw, outer whitespace stripped"
                    + (f", at most {max_captions} per image" if max_captions else ", all of them"),
        **provenance([karpathy], root=karpathy.parent),
    }
    return write_retrieval_dataset(out, [(r["file"], p) for r, p in zip(records, paths, strict=True)], captions,
                                   split_ids, source.name, f"{src} + {karpathy.name}", force=force,
                                   extra_meta=meta, link=link)


@cli_errors
def main(argv: Sequence[str] | None, source: Source, description: str = __doc__) -> int:
    parser = argparse.ArgumentParser(description=description.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", required=True, help=f"image folder: {source.layout}")
    parser.add_argument("--karpathy", required=True, help=f"Karpathy's {source.karpathy_file} (or the folder "
                        "holding it)")
    parser.add_argument("--out", required=True, help="output dataset directory (xmodal retrieval format)")
    parser.add_argument("--splits", nargs="+", choices=SPLITS, default=list(SPLITS),
                        help="splits to write (default all; e.g. --splits test for an evaluation-only copy)")
    parser.add_argument("--max-captions", type=int, default=None,
                        help="keep at most this many captions per image (default all; 5 gives the 25,000-caption "
                        "COCO 5k test some papers use)")
    parser.add_argument("--copy", action="store_true", help="copy image files instead of hard-linking them")
    parser.add_argument("--force", action="store_true", help="replace an existing dataset at --out")
    args = parser.parse_args(argv)
    if args.max_captions is not None and args.max_captions < 1:
        parser.error("--max-captions must be at least 1")
    try:
        out = convert(args.src, args.karpathy, args.out, source, list(dict.fromkeys(args.splits)),
                      args.max_captions, link=not args.copy, force=args.force)
    except (DatasetFormatError, DatasetExistsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    meta = json.loads((out / "meta.json").read_text())
    sizes = {k: len(v) for k, v in json.loads((out / "splits.json").read_text()).items()}
    print(f"wrote {out}: {meta['counts']['image']} images, {meta['counts']['text']} captions, "
          f"splits (images) {sizes}")
    return 0
