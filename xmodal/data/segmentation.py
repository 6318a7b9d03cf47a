"""SegmentationDataset: xmodal's on-disk format with a per-pixel label map per sample.

Differences from :class:`PairedDataset` (whose labels are one class id per sample):

* ``meta.json`` has ``"task": "segmentation"`` and may name an ``ignore_index`` (a label value
  that marks unlabelled pixels, e.g. NYU-Depth-V2's void class 0);
* ``labels.npy`` is N × H × W integers (uint8 keeps NYU's 1,449 maps at 0.45 GB instead of 3.6 GB),
  each map the same H × W as the modalities' last two axes;
* an optional ``normalization`` entry per modality in ``meta.json`` is applied when a sample is read,
  so images can be stored compactly (uint8) and depth in metres while the model sees the inputs
  of the reference recipe:

  - ``{"mode": "global_per_channel", "min": [...], "max": [...]}``: ``(x - min_c) / (max_c - min_c)``
    with per-channel extremes taken over the whole dataset;
  - ``{"mode": "per_sample"}``: ``(x - x.min()) / (x.max() - x.min())`` over the sample.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from xmodal.data.labelled import UNLABELLED
from xmodal.data.paired import PairedDataset, check_meta, read_json
from xmodal.errors import DatasetFormatError
from xmodal.registry import DATASETS

_LABEL_CHUNK = 1 << 24  # label values range-checked per step, keeps the scan memory-flat
_NORM_MODES = ("global_per_channel", "per_sample")


def normalize_sample(x: torch.Tensor, spec: dict) -> torch.Tensor:
    """Apply one ``meta.json`` normalization spec to a (C, H, W) sample; returns float32."""
    x = x.float()
    if spec["mode"] == "per_sample":
        low, high = x.min(), x.max()
        # a constant map (never seen in NYU's in-painted depth) would divide by zero
        return (x - low) / (high - low) if high > low else torch.zeros_like(x)
    low = torch.as_tensor(spec["min"], dtype=torch.float32).view(-1, *([1] * (x.dim() - 1)))
    high = torch.as_tensor(spec["max"], dtype=torch.float32).view(-1, *([1] * (x.dim() - 1)))
    return (x - low) / (high - low).clamp_min(1e-12)


@DATASETS.register_module()
class SegmentationDataset(PairedDataset):
    """Samples ``{modality: Tensor, "label": LongTensor (H, W), "index": LongTensor}``.

    Args: those of :class:`PairedDataset`, and
        check_labels: range-check every label value when opening (one chunked pass over labels.npy).
        normalize: apply ``meta.json``'s ``normalization`` specs when reading (False: raw stored values).
        subset, labelled: as :class:`PairedDataset` (parts and budgets are drawn uniformly, not per class;
            an unlabelled sample's map reads as −1 everywhere).
    """

    def __init__(self, data_root: str | Path, split: str = "train", modalities: Sequence[str] | None = None,
                 pipeline: Sequence[dict | Callable] = (), check_finite: bool = True, check_labels: bool = True,
                 normalize: bool = True, subset: dict | None = None, labelled: dict | None = None,
                 verify: bool | str = "auto", allow_outside_root: bool = False) -> None:
        self.check_labels = check_labels
        self.normalize = normalize
        super().__init__(data_root, split, modalities, pipeline, check_finite, subset, labelled, verify,
                         allow_outside_root)

    # -- validation ---------------------------------------------------------------------------
    def _read_meta(self) -> dict:
        path = self.data_root / "meta.json"
        meta = check_meta(read_json(path), path, ("segmentation",),
                          "'segmentation': SegmentationDataset reads those (use PairedDataset for the others)",
                          required=("classes",))
        if not isinstance(meta["classes"], list) or not meta["classes"]:
            raise DatasetFormatError(path, "classes", "a segmentation dataset needs a non-empty class list")
        for name, spec in meta["modalities"].items():
            if len(spec["shape"]) != 3:
                raise DatasetFormatError(path, f"modalities.{name}.shape",
                                         f"{spec['shape']}; expected [channels, height, width]")
        ignore = meta.get("ignore_index")
        if ignore is not None and (not isinstance(ignore, int) or isinstance(ignore, bool)):
            raise DatasetFormatError(path, "ignore_index", f"{ignore!r}; expected an integer or null")
        for name, spec in (meta.get("normalization") or {}).items():
            field = f"normalization.{name}"
            if name not in meta["modalities"]:
                raise DatasetFormatError(path, field, f"names no modality; the dataset has {list(meta['modalities'])}")
            if not isinstance(spec, dict) or spec.get("mode") not in _NORM_MODES:
                raise DatasetFormatError(path, field, f"expected {{'mode': one of {_NORM_MODES}, ...}}")
            if spec["mode"] == "global_per_channel":
                channels = meta["modalities"][name]["shape"][0]
                for key in ("min", "max"):
                    if not isinstance(spec.get(key), list) or len(spec[key]) != channels:
                        raise DatasetFormatError(path, f"{field}.{key}", f"expected a list of {channels} numbers")
        return meta

    def _open_labels(self) -> np.ndarray:
        path = self._file("labels.npy", "labels")
        labels = np.load(path, mmap_mode="r", allow_pickle=False) if path.is_file() else None
        if labels is None:
            raise DatasetFormatError(path, "labels", "file missing")
        if labels.ndim != 3 or not np.issubdtype(labels.dtype, np.integer):
            raise DatasetFormatError(path, "labels", f"expected N x H x W integers (one label map per sample), got "
                                     f"{labels.dtype} {list(labels.shape)}")
        for name, array in self.arrays.items():
            if len(array) != len(labels):
                raise DatasetFormatError(self.data_root / f"{name}.npy", "length",
                                         f"{len(array)} samples but labels.npy has {len(labels)}")
            if list(array.shape[-2:]) != list(labels.shape[1:]):
                raise DatasetFormatError(self.data_root / f"{name}.npy", "shape",
                                         f"H x W {list(array.shape[-2:])} but labels.npy maps are "
                                         f"{list(labels.shape[1:])}")
        if self.check_labels:
            self._check_label_range(labels, path)
        return labels

    def _check_label_range(self, labels: np.ndarray, path: Path) -> None:
        num_classes = len(self.meta["classes"])
        ignore = self.meta.get("ignore_index")
        flat = labels.reshape(-1)
        for start in range(0, flat.size, _LABEL_CHUNK):
            chunk = np.asarray(flat[start : start + _LABEL_CHUNK])
            bad = (chunk < UNLABELLED) | (chunk >= num_classes)
            if ignore is not None:
                bad &= chunk != ignore
            if bad.any():
                pos = start + int(np.argmax(bad))
                row = pos // int(np.prod(labels.shape[1:]))
                allowed = f"[0, {num_classes - 1}]" + (f" or {ignore} (ignore_index)" if ignore is not None else "") \
                    + f" or {UNLABELLED} (unlabelled)"
                raise DatasetFormatError(path, "labels", f"label {int(flat[pos])} in map {row} is outside {allowed}")

    # -- dataset protocol ---------------------------------------------------------------------
    @property
    def metainfo(self) -> dict:
        return {**super().metainfo, "ignore_index": self.meta.get("ignore_index")}

    @property
    def ignore_index(self) -> int | None:
        return self.meta.get("ignore_index")

    def _split_classes(self) -> None:
        return None  # a label map has no single class to stratify by

    def fingerprint(self) -> str:
        """As PairedDataset's, plus whether the stored values are normalised when read."""
        return f"{super().fingerprint()}-normalize={int(self.normalize)}"

    def __getitem__(self, position: int) -> dict:
        row = int(self.indices[position])
        norms = (self.meta.get("normalization") or {}) if self.normalize else {}
        sample: dict = {}
        for m in self.modalities:
            x = torch.from_numpy(np.array(self.arrays[m][row]))
            sample[m] = normalize_sample(x, norms[m]) if m in norms else x
        sample["label"] = torch.from_numpy(np.array(self.labels[row], dtype=np.int64))
        if not self.labelled_flags[position]:
            sample["label"].fill_(UNLABELLED)
        sample["index"] = torch.tensor(position, dtype=torch.long)
        for transform in self.pipeline:
            sample = transform(sample)
        return sample
