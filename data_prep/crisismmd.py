"""CrisisMMD v2.0, humanitarian task (8 classes, image + tweet text) -> xmodal's on-disk format.

Two inputs are understood:

(a) ``--features CMMD_data.pth``: the file MST-Distill's ``get_cmmd_v2`` reads, a pickled tuple
    (image features N×2048, text features N×768, labels N). It is opened with
    ``torch.load(weights_only=True)`` allowing NumPy arrays only; ``--trust-pickle`` lifts that.
(b) ``--src CrisisMMD_v2.0`` with ``--image-model`` and ``--text-model``: features are extracted as
    MST-Distill's data_preprocess/preprocess_CrisisMMD_0/1.py do. The rows of the humanitarian task
    files (``crisismmd_datasplit_all/task_humanitarian*.tsv``, read in name order: dev, test, train)
    are concatenated and de-duplicated by ``tweet_id`` (first row kept, so a tweet with several images
    keeps its first); the tweet text is cleaned and normalised for BERTweet (``normalize_tweet``);
    the label is the ``label`` column. Image: ``data_image/...`` resized to 224×224, ImageNet
    mean/std, ResNet-50 without its classifier -> 2,048-d pooled feature (the official weights are
    torchvision's ImageNet ``resnet50(pretrained=True)``, i.e. IMAGENET1K_V1). Text: tokens of the
    normalised tweet (at most 128), BERTweet-base ``pooler_output`` -> 768-d.

Nothing is downloaded: ``--image-model`` is a local ResNet-50 state dict (torchvision or timm
naming, ``.pth``/``.bin``/``.safetensors``), ``--text-model`` a local ``save_pretrained`` directory
of vinai/bertweet-base, ``--tokenizer`` its tokenizer directory (default: the model directory).
Mode (b) also needs ``pip install ftfy emoji`` for the official text cleaning.

Written: ``image.npy`` N×2048 and ``text.npy`` N×768 float32, ``labels.npy``, ``splits.json`` (the
official MST-Distill split by default), ``meta.json``; mode (b) adds ``samples.tsv`` (tweet id,
image path, label per row). In mode (b) a truncated or unreadable image stops the conversion with its
path; ``--skip-bad`` leaves its tweet out instead and lists it in ``meta.json`` ``skipped``.

    python data_prep/crisismmd.py --features CMMD-V2/CMMD_data.pth --out data/crisismmd
    python data_prep/crisismmd.py --src CrisisMMD_v2.0 --image-model resnet50-0676ba61.pth \\
        --text-model bertweet-base/ --out data/crisismmd
"""

from __future__ import annotations

import argparse
import csv
import json
import pickle
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from xmodal.apis.errors import cli_errors  # noqa: E402
from xmodal.data.provenance import provenance  # noqa: E402
from xmodal.data.skipped import SkippedSources, add_skip_bad_argument, drop_from_splits  # noqa: E402
from xmodal.data.writer import (  # noqa: E402
    DatasetExistsError,
    add_common_arguments,
    official_splits,
    read_split_file,
    refuse_existing,
    write_dataset,
)
from xmodal.errors import DatasetFormatError  # noqa: E402

NAME = "crisismmd"
FEATURES_FILE = "CMMD_data.pth"
SPLIT_DIR = "crisismmd_datasplit_all"
TASK_PREFIX = "task_humanitarian"
# Class ids of preprocess_CrisisMMD_1.py (its comments count 16,058 tweets in all).
CLASSES = (
    "not_humanitarian",
    "affected_individuals",
    "infrastructure_and_utility_damage",
    "injured_or_dead_people",
    "missing_or_found_people",
    "rescue_volunteering_or_donation_effort",
    "vehicle_damage",
    "other_relevant_information",
)
IMAGE_SIZE = 224
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
MAX_TOKENS = 128


# -- (a) the official feature file --------------------------------------------------------------
def _numpy_globals() -> list:
    """What unpickling NumPy arrays needs, under the names NumPy 1.x and 2.x write."""
    try:
        from numpy._core import multiarray
    except ImportError:  # NumPy 1.x
        from numpy.core import multiarray

    dtype_classes = [getattr(np.dtypes, n) for n in dir(np.dtypes) if n.endswith("DType")]  # NumPy 2 pickles these
    return [np.ndarray, np.dtype, *dtype_classes,
            (multiarray._reconstruct, "numpy.core.multiarray._reconstruct"),
            (multiarray._reconstruct, "numpy._core.multiarray._reconstruct"),
            (multiarray.scalar, "numpy.core.multiarray.scalar"),
            (multiarray.scalar, "numpy._core.multiarray.scalar")]


def _as_array(value, path: Path, field: str) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu().numpy()
    try:
        return np.asarray(value)
    except (ValueError, TypeError) as err:
        raise DatasetFormatError(path, field, f"not an array ({err})") from err


def resolve_features_file(path: str | Path) -> Path:
    """The features file itself; a directory finds ``CMMD_data.pth`` in it or in its ``CMMD-V2/``."""
    path = Path(path).expanduser()
    if path.is_dir():
        path = next((p for p in (path / FEATURES_FILE, path / "CMMD-V2" / FEATURES_FILE) if p.is_file()),
                    path / FEATURES_FILE)
    return path


def read_features_file(path: str | Path, trust_pickle: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(image N×D_i float32, text N×D_t float32, labels N int64)`` from ``CMMD_data.pth``, checked."""
    import torch

    path = resolve_features_file(path)
    if not path.is_file():
        raise DatasetFormatError(path, "features", f"file not found; expected the official {FEATURES_FILE}")
    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            data = torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except pickle.UnpicklingError as err:
        raise DatasetFormatError(path, "pickle", "holds objects other than arrays and tensors; if you trust the "
                                 "file, pass --trust-pickle") from err
    except (RuntimeError, EOFError, OSError) as err:
        raise DatasetFormatError(path, "features", f"not a torch.save file ({err})") from err
    if not isinstance(data, (tuple, list)) or len(data) != 3:
        raise DatasetFormatError(path, "features", f"got {type(data).__name__}; expected a tuple "
                                 "(image features, text features, labels)")
    image, text, labels = (_as_array(v, path, f) for v, f in zip(data, ("image features", "text features", "labels")))
    for field, array in (("image features", image), ("text features", text)):
        if array.ndim != 2 or not np.issubdtype(array.dtype, np.number):
            raise DatasetFormatError(path, field, f"{array.dtype} {list(array.shape)}; expected a numeric N×D array")
        if not np.all(np.isfinite(array)):
            row = int(np.argmax(~np.isfinite(array).all(axis=1)))
            raise DatasetFormatError(path, field, f"non-finite value (NaN/Inf) in row {row}")
    labels = _check_labels(labels.reshape(-1) if labels.ndim == 2 and 1 in labels.shape else labels, path)
    if not len(image) == len(text) == len(labels):
        raise DatasetFormatError(path, "features", f"{len(image)} image rows, {len(text)} text rows and "
                                 f"{len(labels)} labels; expected the same count")
    return image.astype(np.float32), text.astype(np.float32), labels


def _check_labels(labels: np.ndarray, path: Path) -> np.ndarray:
    if labels.ndim != 1 or not len(labels):
        raise DatasetFormatError(path, "labels", f"shape {list(labels.shape)}; expected N class ids")
    if not np.issubdtype(labels.dtype, np.number) or np.any(labels != np.round(labels)):
        raise DatasetFormatError(path, "labels", f"dtype {labels.dtype}; expected integer class ids")
    bad = np.flatnonzero((labels < 0) | (labels >= len(CLASSES)))
    if bad.size:
        raise DatasetFormatError(path, "labels", f"label {labels[bad[0]]} at row {int(bad[0])} is outside "
                                 f"[0, {len(CLASSES) - 1}]")
    return labels.astype(np.int64)


# -- (b) the raw release: annotations, text cleaning ---------------------------------------------
def annotation_files(src: Path, annotations: str | Path | None = None) -> list[Path]:
    """The humanitarian task files, in name order (the order the official os.walk gives on NTFS)."""
    folder = Path(annotations).expanduser() if annotations else src / SPLIT_DIR
    if not folder.is_absolute() and annotations and not folder.exists():
        folder = src / folder
    if folder.is_file():
        return [folder]
    if not folder.is_dir():
        raise DatasetFormatError(folder, "annotations", f"directory missing; expected {SPLIT_DIR}/ with "
                                 f"{TASK_PREFIX}_text_img_{{train,dev,test}}.tsv (or pass --annotations)")
    files = sorted(folder.glob(f"{TASK_PREFIX}*.tsv")) or sorted(folder.glob("*.tsv"))
    if not files:
        raise DatasetFormatError(folder, "annotations", "no .tsv files")
    return files


def read_annotations(files: Sequence[Path], label_column: str = "label",
                     skip_unknown_labels: bool = False) -> list[dict]:
    """One record per tweet (first row of each ``tweet_id``): tweet id, raw text, image path, class id."""
    records, seen = [], set()
    for path in files:
        with open(path, encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh, delimiter="\t")
            columns = reader.fieldnames or []
            image_column = next((c for c in ("image", "image_path") if c in columns), None)
            for needed in ("tweet_id", "tweet_text", label_column):
                if needed not in columns:
                    raise DatasetFormatError(path, needed, f"column missing; the file has {columns}")
            if image_column is None:
                raise DatasetFormatError(path, "image", f"column missing (or image_path); the file has {columns}")
            for number, row in enumerate(reader, start=2):  # line 1 is the header
                tweet_id = row["tweet_id"]
                if tweet_id in seen:
                    continue
                label = (row[label_column] or "").strip()
                if label not in CLASSES:
                    if skip_unknown_labels:
                        continue
                    raise DatasetFormatError(path, f"line {number}", f"{label_column} {label!r} is not one of the "
                                             f"8 humanitarian classes {list(CLASSES)}")
                seen.add(tweet_id)
                records.append({"tweet_id": tweet_id, "text": row["tweet_text"] or "", "image": row[image_column],
                                "label": CLASSES.index(label), "file": path.name, "line": number})
    if not records:
        raise DatasetFormatError(files[0], "annotations", "no labelled rows")
    return records


def _require_text_cleaning():
    try:
        import emoji
        import ftfy
    except ImportError as err:
        raise ImportError("the official tweet cleaning needs ftfy and emoji: pip install ftfy emoji") from err
    return ftfy, emoji


def _escape_roundtrip(text: str) -> str:
    """The official cleaning's escape step: the text as Python unicode escapes (\\uXXXX widened to
    \\U000XXXXX), decoded back only if such an escape is present. Text without one keeps its other
    escapes (\\xe9, \\n) as literal characters, which the official features were computed from."""
    escaped = text.encode("unicode-escape").decode("utf-8")
    escaped = re.sub(r"\\u([0-9a-fA-F]{4,6})", lambda m: "\\U" + m.group(1).zfill(8), escaped)
    if "\\u" in escaped or "\\U" in escaped:
        try:
            return escaped.encode("utf-8").decode("unicode-escape")
        except UnicodeDecodeError:
            return escaped
    return escaped


def _normalize_token(token: str, demojize) -> str:
    lower = token.lower()
    if token.startswith("@"):
        return "@USER"
    if lower.startswith("https://t.co/"):  # the tweet's own media link: dropped
        return ""
    if lower.startswith(("http", "www")):
        return "HTTPURL"
    if len(token) == 1:
        return demojize(token)
    token = token.replace("\\'", "'")
    return {"’": "'", "…": "..."}.get(token, token)


_CONTRACTIONS = (("cannot ", "can not "), ("n't ", " n't "), ("n 't ", " n't "), ("ca n't", "can't"),
                 ("ai n't", "ain't"), ("'m ", " 'm "), ("'re ", " 're "), ("'s ", " 's "), ("'ll ", " 'll "),
                 ("'d ", " 'd "), ("'ve ", " 've "), (" p . m .", "  p.m."), (" p . m ", " p.m "),
                 (" a . m .", " a.m."), (" a . m ", " a.m "))


def normalize_tweet(text: str) -> str:
    """Tweet text as the official features saw it: ftfy repair, escape round trip, emoji names
    (:crying_face:), then BERTweet's normalisation (user mentions -> @USER, links -> HTTPURL,
    contractions split as in its pre-training data)."""
    ftfy, emoji = _require_text_cleaning()
    from transformers.models.bertweet.tokenization_bertweet import TweetTokenizer  # nltk's, vendored

    text = emoji.demojize(_escape_roundtrip(ftfy.fix_text(text)))
    text = text.replace("\\'", "'").replace("’", "'").replace("…", "...")
    tokens = TweetTokenizer().tokenize(text)
    text = " ".join(_normalize_token(t, emoji.demojize) for t in tokens)
    text = re.sub(r"\\'", "'", text)
    for old, new in _CONTRACTIONS:
        text = text.replace(old, new)
    return " ".join(text.split())


# -- (b) feature extractors ------------------------------------------------------------------------
def _read_state_dict(path: Path) -> dict:
    from xmodal.engine.checkpoint import CheckpointError, load_checkpoint_file

    try:  # xmodal's one checkpoint loader: weights_only=True with its allow-list, or safetensors
        state = load_checkpoint_file(path)
    except CheckpointError as err:
        raise DatasetFormatError(path, "image model", f"{str(err).removeprefix(f'{path}: ')}; expected a ResNet-50 "
                                 "state dict saved with torch.save(model.state_dict()) or safetensors") from None
    for key in ("state_dict", "model"):  # training checkpoints wrap the weights
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(hasattr(v, "shape") for v in state.values()):
        raise DatasetFormatError(path, "image model", "expected a dict of parameter tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_image_model(path: str | Path, arch: str = "resnet50"):
    """A timm ResNet with the classifier removed (output: the global-average-pooled feature), weights
    from ``path``. timm's ResNets use torchvision's parameter names, so either checkpoint loads."""
    import timm

    path = Path(path).expanduser()
    if not path.is_file():
        raise DatasetFormatError(path, "image model", "file not found; expected a local ResNet-50 state dict")
    state = {k: v for k, v in _read_state_dict(path).items() if not k.startswith("fc.")}
    model = timm.create_model(arch, pretrained=False, num_classes=0)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise DatasetFormatError(path, "image model", f"does not match {arch}: missing {missing[:3]}, "
                                 f"unexpected {unexpected[:3]}")
    return model.eval()


def load_text_model(path: str | Path, tokenizer_path: str | Path | None = None):
    """(tokenizer, model) from local ``save_pretrained`` directories; nothing is downloaded."""
    from transformers import AutoModel, AutoTokenizer

    path = Path(path).expanduser()
    tok_path = Path(tokenizer_path).expanduser() if tokenizer_path else path
    for field, p in (("text model", path), ("tokenizer", tok_path)):
        if not p.is_dir():
            raise DatasetFormatError(p, field, "directory not found; expected a local save_pretrained directory")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(tok_path), local_files_only=True)
    except (OSError, ValueError) as err:
        raise DatasetFormatError(tok_path, "tokenizer", f"cannot be loaded ({err})") from err
    try:
        model = AutoModel.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError) as err:
        raise DatasetFormatError(path, "text model", f"cannot be loaded ({err})") from err
    return tokenizer, model.eval()


def load_image(path: Path, record: dict):
    """The tweet's image as RGB (decoded whole, so a truncated file fails here); a missing or unreadable
    file raises ``DatasetFormatError`` naming it."""
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise DatasetFormatError(path, "image", f"file missing (tweet {record['tweet_id']}, {record['file']} "
                                 f"line {record['line']})")
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:  # PIL's errors for damaged files
        raise DatasetFormatError(path, "image", f"not a readable image ({err}; tweet {record['tweet_id']}, "
                                 f"{record['file']} line {record['line']})") from err


def extract_features(src: Path, records: Sequence[dict], image_model, tokenizer, text_model, device: str,
                     batch_size: int = 32, skipped: SkippedSources | None = None
                     ) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Image and text features for ``records`` in order, a batch at a time, and the positions of the
    records they are for: all of them, or with ``skipped`` skipping, those whose image is readable."""
    import torch
    from torchvision import transforms

    transform = transforms.Compose([
        transforms.Resize((IMAGE_SIZE, IMAGE_SIZE)),  # both sides, no crop: as the official script
        transforms.ToTensor(),
        transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])
    skipped = skipped if skipped is not None else SkippedSources(False)
    image_model, text_model = image_model.to(device), text_model.to(device)
    image_parts, text_parts, kept = [], [], []
    with torch.inference_mode():
        for start in range(0, len(records), batch_size):
            tensors, batch = [], []
            for position, record in enumerate(records[start:start + batch_size], start):
                path = src / record["image"]
                if not path.is_file():  # not skipped: a missing file means an incomplete release
                    load_image(path, record)  # raises, naming the file
                try:
                    tensors.append(transform(load_image(path, record)))
                except DatasetFormatError as err:
                    skipped.handle(err, record["tweet_id"])
                    continue
                batch.append(record)
                kept.append(position)
            if not batch:
                continue
            pixels = torch.stack(tensors).to(device)
            image_parts.append(image_model(pixels).float().cpu().numpy())
            texts = [normalize_tweet(r["text"]) for r in batch]
            # one padded batch with an attention mask gives each tweet the features it gets alone
            tokens = tokenizer(texts, max_length=MAX_TOKENS, truncation=True, padding=True, return_tensors="pt")
            output = text_model(input_ids=tokens["input_ids"].to(device),
                                attention_mask=tokens["attention_mask"].to(device))
            if getattr(output, "pooler_output", None) is None:
                raise DatasetFormatError(src, "text model", "has no pooler; the official features are BERTweet's "
                                         "pooler_output")
            text_parts.append(output.pooler_output.float().cpu().numpy())
    if not kept:
        raise DatasetFormatError(src, "skipped", f"all {len(records)} images are unreadable; nothing to write")
    return np.concatenate(image_parts), np.concatenate(text_parts), kept


# -- conversion ------------------------------------------------------------------------------------
def _splits(num: int, splits: dict[str, Sequence[int]] | None, split_group: int) -> tuple[dict, str]:
    if splits is None:
        return official_splits(num, split_group), f"official MST-Distill 60/20/20, group {split_group}"
    return {k: [int(i) for i in v] for k, v in splits.items()}, "given"


def convert_features(features: str | Path, out: str | Path, splits: dict[str, Sequence[int]] | None = None,
                     split_group: int = 0, trust_pickle: bool = False, force: bool = False,
                     split_file: str | Path | None = None) -> Path:
    """Mode (a): the official ``CMMD_data.pth`` -> ``out``. ``split_file``: where ``splits`` came from
    (recorded in ``meta.json``)."""
    refuse_existing(out, force)
    image, text, labels = read_features_file(features, trust_pickle)
    splits, protocol = _splits(len(labels), splits, split_group)
    path = resolve_features_file(features)
    return write_dataset(out, {"image": image, "text": text}, labels, CLASSES, NAME, f"{Path(features).name} "
                         "(MST-Distill preprocessed features)", splits,
                         extra_meta={"split_protocol": protocol, "features": _FEATURE_NOTE,
                                     **provenance([path, split_file], root=path.parent)}, force=force)


_FEATURE_NOTE = {"image": "ResNet-50 (ImageNet) global-average-pooled, 224x224 input",
                 "text": "BERTweet-base pooler_output of the normalised tweet, at most 128 tokens"}


def convert_raw(src: str | Path, out: str | Path, image_model: str | Path, text_model: str | Path,
                tokenizer: str | Path | None = None, image_arch: str = "resnet50",
                annotations: str | Path | None = None, label_column: str = "label", skip_unknown_labels: bool = False,
                device: str | None = None, batch_size: int = 32, splits: dict[str, Sequence[int]] | None = None,
                split_group: int = 0, force: bool = False, split_file: str | Path | None = None,
                skip_bad: bool = False) -> Path:
    """Mode (b): the CrisisMMD v2.0 release at ``src`` + local models -> ``out``. ``split_file``: where
    ``splits`` came from (recorded in ``meta.json``). ``splits`` and the official split are over all
    annotated tweets; ``skip_bad`` leaves out tweets whose image is unreadable (listed in meta.json
    ``skipped``) and renumbers the others."""
    import torch

    refuse_existing(out, force)
    src = Path(src).expanduser()
    if not src.is_dir():
        raise DatasetFormatError(src, "src", "directory not found; expected the CrisisMMD_v2.0 directory")
    _require_text_cleaning()
    files = annotation_files(src, annotations)
    records = read_annotations(files, label_column, skip_unknown_labels)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    image_net = load_image_model(image_model, image_arch)
    tok, text_net = load_text_model(text_model, tokenizer)
    skipped = SkippedSources(skip_bad, src)
    image, text, kept = extract_features(src, records, image_net, tok, text_net, device, batch_size, skipped)
    splits, protocol = _splits(len(records), splits, split_group)  # over all tweets: a skipped one moves no other
    if skipped:
        splits = drop_from_splits(splits, kept, src)
        protocol += f"; {len(skipped)} unreadable sample(s) skipped, the others renumbered"
        records = [records[i] for i in kept]
    labels = np.asarray([r["label"] for r in records], dtype=np.int64)
    table = "tweet_id\timage\tlabel\n" + "".join(f"{r['tweet_id']}\t{r['image']}\t{CLASSES[r['label']]}\n"
                                                  for r in records)
    meta = {"split_protocol": protocol, "features": _FEATURE_NOTE,
            "image_model": f"{image_arch}: {Path(image_model).name}", "text_model": Path(text_model).name,
            "annotations": [f.name for f in files], "label_column": label_column, "samples": "samples.tsv",
            **skipped.meta(), **provenance([*files, split_file], root=src)}
    return write_dataset(out, {"image": image, "text": text}, labels, CLASSES, NAME, f"{src.name} (raw release)",
                         splits, extra_meta=meta, extra_files={"samples.tsv": table}, force=force)


@cli_errors
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--features", help=f"(a) the official {FEATURES_FILE}")
    source.add_argument("--src", help="(b) the CrisisMMD_v2.0 directory (annotations + data_image/)")
    parser.add_argument("--trust-pickle", action="store_true",
                        help="(a) allow arbitrary pickled objects (only for a file you trust)")
    parser.add_argument("--image-model", help="(b) local ResNet-50 state dict (.pth/.bin/.safetensors)")
    parser.add_argument("--image-arch", default="resnet50", help="(b) timm architecture of --image-model")
    parser.add_argument("--text-model", help="(b) local BERTweet directory (save_pretrained)")
    parser.add_argument("--tokenizer", help="(b) tokenizer directory (default: --text-model)")
    parser.add_argument("--annotations", help=f"(b) folder (or one .tsv) of the task files "
                        f"(default {SPLIT_DIR}/ in --src)")
    parser.add_argument("--label-column", default="label", help="(b) column holding the humanitarian label")
    parser.add_argument("--skip-unknown-labels", action="store_true",
                        help="(b) drop rows whose label is not one of the 8 classes instead of failing")
    parser.add_argument("--device", help="(b) torch device for feature extraction (default: cuda if available)")
    parser.add_argument("--batch-size", type=int, default=32, help="(b) samples per extraction step")
    add_skip_bad_argument(parser)
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    if args.src and not (args.image_model and args.text_model):
        parser.error("--src needs --image-model and --text-model (local files; nothing is downloaded)")
    if args.skip_bad and args.features:
        parser.error("--skip-bad skips tweets of the raw release (--src); --features is one file")
    try:
        splits = None
        if args.features:
            if args.split_file:
                splits = read_split_file(args.split_file, len(read_features_file(args.features, args.trust_pickle)[2]),
                                         args.split_group)
            out = convert_features(args.features, args.out, splits, args.split_group, args.trust_pickle, args.force,
                                   split_file=args.split_file)
        else:
            if args.split_file:
                src = Path(args.src).expanduser()
                num = len(read_annotations(annotation_files(src, args.annotations), args.label_column,
                                           args.skip_unknown_labels))
                splits = read_split_file(args.split_file, num, args.split_group)
            out = convert_raw(args.src, args.out, args.image_model, args.text_model, args.tokenizer, args.image_arch,
                              args.annotations, args.label_column, args.skip_unknown_labels, args.device,
                              max(1, args.batch_size), splits, args.split_group, args.force, split_file=args.split_file,
                              skip_bad=args.skip_bad)
    except (DatasetFormatError, DatasetExistsError, ImportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    meta = json.loads((out / "meta.json").read_text())
    sizes = {k: len(v) for k, v in json.loads((out / "splits.json").read_text()).items()}
    num = len(np.load(out / "labels.npy", mmap_mode="r"))
    print(f"wrote {out}: {num} samples, image {meta['modalities']['image']['shape']}, "
          f"text {meta['modalities']['text']['shape']}, {len(meta['classes'])} classes, splits {sizes}")
    if meta.get("skipped"):
        print(f"note: skipped {len(meta['skipped'])} tweet(s) with unreadable images (listed in meta.json 'skipped')",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
