"""Label budgets and subsets in the data layer, and the batch sampler that mixes labelled and
unlabelled samples at a fixed ratio."""

import json
from collections import Counter

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from xmodal.data import LabelledRatioBatchSampler, PairedDataset
from xmodal.data.writer import write_dataset

CLASSES = ["a", "b", "c", "d"]


@pytest.fixture
def dataset_root(tmp_path):
    """200 training samples (50 per class), 20 val, 20 test; the image value encodes the row id."""
    n = 240
    labels = np.arange(n) % 4
    image = np.arange(n, dtype=np.float32).reshape(n, 1, 1, 1) * np.ones((1, 1, 2, 2), np.float32)
    splits = {"train": list(range(200)), "val": list(range(200, 220)), "test": list(range(220, 240))}
    return write_dataset(tmp_path / "ds", {"image": image}, labels, CLASSES, "toy", "test", splits)


def _labels(ds):
    return np.array([int(ds[i]["label"]) for i in range(len(ds))])


def test_fraction_keeps_a_stratified_seeded_subset(dataset_root):
    ds = PairedDataset(dataset_root, "train", labelled=dict(fraction=0.1, seed=0))
    labels = _labels(ds)
    assert Counter(labels[labels >= 0].tolist()) == {0: 5, 1: 5, 2: 5, 3: 5}  # round(0.1 · 50) of each class
    assert (labels == -1).sum() == 180 and ds.num_labelled == 20
    again = PairedDataset(dataset_root, "train", labelled=dict(fraction=0.1, seed=0))
    assert np.array_equal(again.labelled_flags, ds.labelled_flags)
    other = PairedDataset(dataset_root, "train", labelled=dict(fraction=0.1, seed=1))
    assert not np.array_equal(other.labelled_flags, ds.labelled_flags)
    tiny = PairedDataset(dataset_root, "train", labelled=dict(fraction=0.001))
    assert tiny.num_labelled == 4  # at least one per class
    assert PairedDataset(dataset_root, "train", labelled=dict(fraction=1.0)).num_labelled == 200


def test_labels_of_the_kept_samples_are_the_true_ones_and_val_is_untouched(dataset_root):
    ds = PairedDataset(dataset_root, "train", labelled=dict(fraction=0.2, seed=3))
    for i in range(len(ds)):
        sample = ds[i]
        row = int(sample["image"][0, 0, 0])
        assert int(sample["label"]) in (-1, row % 4)
        assert (int(sample["label"]) != -1) == bool(ds.labelled_flags[i])
    assert (_labels(PairedDataset(dataset_root, "val")) >= 0).all()


def test_flags_are_the_same_in_worker_processes(dataset_root):
    ds = PairedDataset(dataset_root, "train", labelled=dict(fraction=0.1, seed=0))
    loader = DataLoader(ds, batch_size=50, num_workers=2)
    labels = torch.cat([batch["label"] for batch in loader]).numpy()
    assert np.array_equal(labels, _labels(ds))


def test_subsets_are_disjoint_stratified_and_cover_the_split(dataset_root):
    parts = [PairedDataset(dataset_root, "train", subset=dict(part=p, of=2, seed=0)) for p in range(2)]
    rows = [set(p.rows.tolist()) for p in parts]
    assert not rows[0] & rows[1] and rows[0] | rows[1] == set(range(200))
    for part in parts:
        assert Counter(_labels(part).tolist()) == {0: 25, 1: 25, 2: 25, 3: 25}
    budgeted = PairedDataset(dataset_root, "train", subset=dict(part=1, of=2), labelled=dict(fraction=0.2))
    assert budgeted.num_labelled == 20 and set(budgeted.labelled_record()["ids"]) <= rows[1]
    assert budgeted.fingerprint() != parts[1].fingerprint() != parts[0].fingerprint()


def test_ids_file_round_trip_and_its_errors(dataset_root, tmp_path):
    ds = PairedDataset(dataset_root, "train", labelled=dict(fraction=0.1, seed=0))
    record = ds.labelled_record()
    assert record["num_labelled"] == 20 and record["labelled"]["fraction"] == 0.1
    path = tmp_path / "labelled_ids.json"
    path.write_text(json.dumps(record))
    same = PairedDataset(dataset_root, "train", labelled=dict(ids_file=str(path)))
    assert np.array_equal(same.labelled_flags, ds.labelled_flags)
    for ids, match in [([0, 0, 1, 2, 3], "listed twice"), ([0, 1, 2, 3, 230], "230 .* not a sample"),
                       ([0, 1, 2], r"\['d'\] have samples in this split but none labelled")]:
        path.write_text(json.dumps(ids))
        with pytest.raises(ValueError, match=f"PairedDataset.labelled.ids_file: .*{match}"):
            PairedDataset(dataset_root, "train", labelled=dict(ids_file=str(path)))


@pytest.mark.parametrize("labelled, match", [
    (dict(fraction=0.0), r"labelled.fraction: expected a number in \(0, 1\]"),
    (dict(fraction=1.5), r"labelled.fraction: expected a number in \(0, 1\]"),
    (dict(fraction="10%"), r"labelled.fraction: expected a number"),
    (dict(fraction=0.1, ids_file="x.json"), "exactly one of 'fraction'"),
    (dict(frac=0.1), r"unknown key\(s\) \['frac'\]"),
])
def test_bad_budgets_name_the_field(dataset_root, labelled, match):
    with pytest.raises(ValueError, match=match):
        PairedDataset(dataset_root, "train", labelled=labelled)


def test_evaluation_splits_refuse_a_budget_and_subsets_check_their_fields(dataset_root):
    with pytest.raises(ValueError, match="split 'val' is an evaluation split"):
        PairedDataset(dataset_root, "val", labelled=dict(fraction=0.5))
    with pytest.raises(ValueError, match="PairedDataset.subset: expected integers"):
        PairedDataset(dataset_root, "train", subset=dict(part=2, of=2))


def test_unlabelled_samples_on_disk(tmp_path):
    labels = np.array([0, 1, -1, -1, 0, 1])
    root = write_dataset(tmp_path / "ds", {"x": np.zeros((6, 3), np.float32)}, labels, ["a", "b"], "toy", "test",
                         {"train": [0, 1, 2, 3], "val": [4], "test": [5]})
    ds = PairedDataset(root, "train")
    assert _labels(ds).tolist() == [0, 1, -1, -1] and ds.num_labelled == 2
    budget = PairedDataset(root, "train", labelled=dict(fraction=1.0))
    assert budget.labelled_flags.tolist() == [True, True, False, False]  # unlabelled rows are never chosen


class _Shard:
    """A per-rank sampler as mmengine's DefaultSampler gives it: every world_size-th position."""

    def __init__(self, dataset, rank, world_size, seed=0):
        self.dataset, self.rank, self.world_size, self.seed, self.epoch = dataset, rank, world_size, seed, 0

    def __iter__(self):
        order = torch.randperm(len(self.dataset), generator=torch.Generator().manual_seed(self.seed + self.epoch))
        return iter(order[self.rank::self.world_size].tolist())

    def set_epoch(self, epoch):
        self.epoch = epoch


def test_every_batch_holds_the_configured_number_of_labelled_samples(dataset_root):
    ds = PairedDataset(dataset_root, "train", labelled=dict(fraction=0.1, seed=0))
    sampler = LabelledRatioBatchSampler(_Shard(ds, 0, 1), batch_size=16, labelled_per_batch=4)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 15  # 180 unlabelled / 12 per batch
    for batch in batches:
        assert len(batch) == 16 and sum(ds.labelled_flags[i] for i in batch) == 4
    unlabelled = [i for b in batches for i in b if not ds.labelled_flags[i]]
    assert sorted(unlabelled) == sorted(np.flatnonzero(~ds.labelled_flags).tolist())  # one pass
    assert list(sampler) == batches  # same epoch, same batches (exact resume)
    sampler.sampler.set_epoch(1)
    assert list(sampler) != batches


def test_labelled_only_batches_and_ranks_agree_on_the_epoch_length(dataset_root):
    ds = PairedDataset(dataset_root, "train", labelled=dict(fraction=0.1, seed=0))
    only = LabelledRatioBatchSampler(_Shard(ds, 0, 1), batch_size=8, labelled_per_batch=8)
    assert len(only) == 3 and all(all(ds.labelled_flags[i] for i in b) for b in only)
    ranks = [LabelledRatioBatchSampler(_Shard(ds, r, 2), batch_size=16, labelled_per_batch=4) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == 8
    seen = [{i for b in s for i in b if not ds.labelled_flags[i]} for s in ranks]
    assert not seen[0] & seen[1]


def test_sampler_errors(dataset_root):
    ds = PairedDataset(dataset_root, "train", labelled=dict(fraction=0.1))
    with pytest.raises(ValueError, match=r"labelled_per_batch=32 is larger than the batch \(train_dataloader."):
        LabelledRatioBatchSampler(_Shard(ds, 0, 1), batch_size=16, labelled_per_batch=32)
    with pytest.raises(ValueError, match="labelled_per_batch: expected a positive integer"):
        LabelledRatioBatchSampler(_Shard(ds, 0, 1), batch_size=16, labelled_per_batch=0)
    with pytest.raises(ValueError, match="does not say which samples are labelled"):
        LabelledRatioBatchSampler(_Shard(list(range(10)), 0, 1), batch_size=4, labelled_per_batch=2)
