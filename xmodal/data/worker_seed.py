"""Random transforms in data loader workers that a resumed run repeats exactly.

A worker draws its transforms' random numbers from its own torch / numpy / Python RNGs. mmengine seeds
them once, when the worker starts, from the run's seed and the worker's id; the state then depends on
everything that worker drew before. With ``persistent_workers=True`` the workers live through the whole
run, so the numbers of epoch 3 depend on epochs 1 and 2: a run resumed at epoch 3 starts fresh workers
and draws other numbers than the uninterrupted run (without persistent workers every epoch draws the
same numbers as the one before, another flaw of the same seeding).

:class:`WorkerSeededBatchSampler` wraps a loader's batch sampler and hands each batch to its worker as a
:class:`SeededBatch`: before the worker reads the batch's first sample it seeds its three RNGs from the
run's seed, the rank, the epoch and the batch's number in the epoch. A batch's random numbers then
depend on nothing else: not on the worker that loads it, the number of workers, whether they persist,
or where the run was resumed. ``xmodal.apis.config.load_config`` (and ``stage_config`` for each stage of
a staged recipe) puts the wrapper around the batch sampler of every data loader with ``num_workers > 0``:

    train_dataloader = dict(num_workers=2, persistent_workers=True, ...,
                            batch_sampler=dict(type="WorkerSeededBatchSampler", batch_sampler=<yours or None>))

With ``num_workers=0`` the samples are read in the training process, whose RNG states the checkpoints
carry (``RNGStateHook``), and nothing is wrapped.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import numpy as np
import torch
from mmengine.dist import get_rank
from torch.utils.data import BatchSampler, Sampler, get_worker_info

from xmodal.registry import DATA_SAMPLERS


class SeededBatch(list):
    """The sample positions of one batch; iterated in a data loader worker (as torch's fetcher does before
    reading the samples), it first seeds that worker's RNGs from ``seed``. In the training process itself
    it is a plain list."""

    def __init__(self, positions, seed: tuple[int, ...]) -> None:
        super().__init__(positions)
        self.seed = seed

    def __iter__(self) -> Iterator:
        if get_worker_info() is not None:
            seed_worker(self.seed)
        return super().__iter__()


def seed_worker(key: tuple[int, ...]) -> None:
    """Seed torch's, numpy's and Python's global RNGs from ``key`` (independent streams for each)."""
    sequence = np.random.SeedSequence([int(k) % 2**64 for k in key])
    torch_seed, python_seed = (int(s) for s in sequence.generate_state(2, np.uint64))
    torch.manual_seed(torch_seed)
    random.seed(python_seed)
    np.random.seed(sequence.spawn(1)[0].generate_state(4))


@DATA_SAMPLERS.register_module()
class WorkerSeededBatchSampler(Sampler):
    """Args:
        sampler: the per-sample sampler (mmengine passes the dataloader's ``sampler``).
        batch_size: samples per batch (mmengine passes the dataloader's ``batch_size``).
        batch_sampler: the batch sampler to wrap, as a config (``LabelledRatioBatchSampler``, ...); None for
            torch's ``BatchSampler(sampler, batch_size, drop_last)``.
        drop_last: for the default batch sampler (a data loader with a batch sampler takes none itself).
    """

    def __init__(self, sampler: Sampler, batch_size: int, batch_sampler: dict | None = None,
                 drop_last: bool = False) -> None:
        if batch_sampler is None:
            self.batch_sampler = BatchSampler(sampler, batch_size, drop_last)
        else:
            self.batch_sampler = DATA_SAMPLERS.build(batch_sampler,
                                                     default_args=dict(sampler=sampler, batch_size=batch_size))
        self.rank = get_rank()

    @property
    def sampler(self) -> Sampler:
        """The per-sample sampler, where mmengine's ``DistSamplerSeedHook`` sets the epoch."""
        return self.batch_sampler.sampler

    def __len__(self) -> int:
        return len(self.batch_sampler)

    def __iter__(self) -> Iterator[SeededBatch]:
        sampler = self.sampler
        base = (int(getattr(sampler, "seed", 0) or 0), self.rank, int(getattr(sampler, "epoch", 0) or 0))
        for number, batch in enumerate(self.batch_sampler):
            yield SeededBatch(batch, (*base, number))
