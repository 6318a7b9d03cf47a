"""LabelledRatioBatchSampler: batches with a fixed number of labelled samples.

With 5 % of the labels, a random batch of 64 holds about 3 labelled samples, so the task loss is
noisy and most steps carry almost no supervision. This batch sampler puts ``labelled_per_batch``
labelled samples and ``batch_size − labelled_per_batch`` unlabelled ones in every batch. An epoch
is one pass over the larger of the two pools; the smaller pool is reshuffled and repeated as
often as needed (the labelled pool usually is). Configure it in place of the dataloader's sampler:

    train_dataloader = dict(batch_size=64,
                            sampler=dict(type="DefaultSampler", shuffle=True),
                            batch_sampler=dict(type="LabelledRatioBatchSampler", labelled_per_batch=16), ...)

The wrapped sampler gives the epoch's order (and, under DDP, this rank's share); the pools are
drawn from it with a generator seeded by the sampler's seed and epoch, so a resumed run sees the
same batches as an uninterrupted one.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Sampler

from xmodal.registry import DATA_SAMPLERS


@DATA_SAMPLERS.register_module()
class LabelledRatioBatchSampler(Sampler):
    """Args:
        sampler: the per-sample sampler (mmengine passes the dataloader's ``sampler``).
        batch_size: samples per batch (mmengine passes the dataloader's ``batch_size``).
        labelled_per_batch: labelled samples in each batch; the rest are unlabelled.
    Every batch is full: an epoch is ``ceil(max(n_labelled / labelled_per_batch, n_unlabelled /
    unlabelled_per_batch) / world_size)`` batches.
    """

    def __init__(self, sampler: Sampler, batch_size: int, labelled_per_batch: int) -> None:
        if isinstance(labelled_per_batch, bool) or not isinstance(labelled_per_batch, int) or labelled_per_batch < 1:
            raise ValueError(f"LabelledRatioBatchSampler.labelled_per_batch: expected a positive integer, got "
                             f"{labelled_per_batch!r}")
        if labelled_per_batch > batch_size:
            raise ValueError(f"LabelledRatioBatchSampler.labelled_per_batch={labelled_per_batch} is larger than the "
                             f"batch (train_dataloader.batch_size={batch_size})")
        dataset = getattr(sampler, "dataset", None)
        flags = getattr(dataset, "labelled_flags", None)
        if flags is None:
            raise ValueError(f"LabelledRatioBatchSampler: the dataset ({type(dataset).__name__}) does not say which "
                             f"samples are labelled (no 'labelled_flags'); use a dataset with a label budget "
                             f"(labelled=dict(fraction=...))")
        self.flags = np.asarray(flags, bool)
        if not self.flags.any():
            raise ValueError("LabelledRatioBatchSampler: the dataset has no labelled sample")
        self.sampler, self.batch_size = sampler, int(batch_size)
        self.labelled_per_batch = labelled_per_batch

    def _pools(self) -> tuple[list[int], list[int]]:
        order = list(iter(self.sampler))
        return [i for i in order if self.flags[i]], [i for i in order if not self.flags[i]]

    def _per_batch(self) -> tuple[int, int]:
        """(labelled, unlabelled) per batch; all labelled when the dataset has no unlabelled sample."""
        per_l = self.labelled_per_batch if (~self.flags).any() else self.batch_size
        return per_l, self.batch_size - per_l

    def __len__(self) -> int:
        """The same on every rank (from the whole dataset's counts), so no rank waits for another."""
        per_l, per_u = self._per_batch()
        passes = [int(self.flags.sum()) / per_l] + ([int((~self.flags).sum()) / per_u] if per_u else [])
        world = int(getattr(self.sampler, "world_size", 1) or 1)
        return max(1, math.ceil(max(passes) / world))

    def __iter__(self) -> Iterator[list[int]]:
        labelled, unlabelled = self._pools()
        per_l, per_u = self._per_batch()
        batches = len(self)
        generator = torch.Generator().manual_seed(int(getattr(self.sampler, "seed", 0) or 0) * 100003
                                                  + int(getattr(self.sampler, "epoch", 0)))
        labelled = _cycle(labelled, per_l * batches, generator)
        unlabelled = _cycle(unlabelled, per_u * batches, generator)
        for b in range(batches):
            yield labelled[b * per_l:(b + 1) * per_l] + unlabelled[b * per_u:(b + 1) * per_u]


def _cycle(pool: list[int], length: int, generator: torch.Generator) -> list[int]:
    """``pool`` in its given order, then reshuffled repeats, cut at ``length`` items."""
    if not pool or length <= 0:
        return []
    out = list(pool)
    while len(out) < length:
        out += [pool[i] for i in torch.randperm(len(pool), generator=generator).tolist()]
    return out[:length]
