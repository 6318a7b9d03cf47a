"""Exact resume with data loader workers (``num_workers=2``, ``persistent_workers=True``): a run killed with
SIGKILL and resumed ends with the same weights, optimizer, schedulers, RNG states and logged losses,
bit for bit, as an uninterrupted one, with random transforms running in the workers, dropout in the
training process and the ``LabelledRatioBatchSampler``. One kill here; ``benchmarks/resume_workers.py``
runs 10 kills at random iterations per sampler (docs/reliability.md).

Also: a batch's random numbers depend on the seed, rank, epoch and batch alone, not on which worker
loads it or how many there are.
"""

import importlib.util

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from tests.conftest import REPO
from xmodal.apis.config import seed_loader_workers
from xmodal.data.worker_seed import SeededBatch, WorkerSeededBatchSampler


def _benchmark():
    spec = importlib.util.spec_from_file_location("resume_workers", REPO / "benchmarks" / "resume_workers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_a_run_with_persistent_workers_killed_and_resumed_ends_identical(tmp_path):
    bench = _benchmark()
    config = bench.prepare(tmp_path)["labelled"]
    reference, work = tmp_path / "reference", tmp_path / "run"
    running = bench.start(config, reference)  # the two runs side by side: each is one process
    died = bench.kill_after(bench.start(config, work), work, 5)  # in epoch 2, after its first iteration
    bench.finish(running)
    assert died is not None and 5 <= died < bench.ITERATIONS
    assert bench.resume(config, work) == "epoch_1.pth"
    assert bench.differences(work, reference) == []


class _Noisy(Dataset):
    """Each sample: its position and one number from each of the worker's three RNGs."""

    def __len__(self) -> int:
        return 12

    def __getitem__(self, position: int) -> torch.Tensor:
        import random

        return torch.tensor([position, torch.rand(()).item(), np.random.rand(), random.random()], dtype=torch.float64)


def _draws(num_workers: int, persistent: bool, epochs: int = 2) -> list[torch.Tensor]:
    from mmengine.dataset import DefaultSampler

    dataset = _Noisy()
    sampler = WorkerSeededBatchSampler(DefaultSampler(dataset, shuffle=True, seed=3), batch_size=4)
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers, persistent_workers=persistent,
                        multiprocessing_context="fork" if num_workers else None)
    out = []
    for epoch in range(epochs):
        sampler.sampler.set_epoch(epoch)
        out += list(loader)
    return out


def test_a_batch_draws_the_same_numbers_whatever_worker_loads_it():
    one, two, fresh = _draws(1, True), _draws(2, True), _draws(2, False)
    assert len(one) == 6 and all(torch.equal(a, b) and torch.equal(a, c) for a, b, c in zip(one, two, fresh))
    assert not torch.equal(one[0][:, 1:], one[3][:, 1:])  # another epoch, other numbers
    # in the training process (num_workers=0) the batch leaves the RNGs alone: the checkpoints carry them
    state = torch.get_rng_state()
    assert list(SeededBatch([3, 1], (0, 0, 0, 0))) == [3, 1] and torch.equal(torch.get_rng_state(), state)


def test_the_batch_sampler_of_loaders_with_workers_is_wrapped_once(tmp_path):
    from mmengine.config import Config

    from xmodal.apis.stages import stage_config

    cfg = Config(dict(
        train_dataloader=dict(num_workers=2, drop_last=True, batch_sampler=dict(type="LabelledRatioBatchSampler",
                                                                                labelled_per_batch=4)),
        val_dataloader=dict(num_workers=0), test_dataloader=dict(num_workers=1)))
    seed_loader_workers(cfg)
    seed_loader_workers(cfg)  # once only
    inner = dict(type="LabelledRatioBatchSampler", labelled_per_batch=4)
    assert cfg.train_dataloader.batch_sampler == dict(type="WorkerSeededBatchSampler", batch_sampler=inner,
                                                      drop_last=True)
    assert "drop_last" not in cfg.train_dataloader
    assert "batch_sampler" not in cfg.val_dataloader
    assert cfg.test_dataloader.batch_sampler == dict(type="WorkerSeededBatchSampler", batch_sampler=None,
                                                     drop_last=False)
    # a stage that gives its own batch sampler, the workers coming from the recipe: wrapped after merging
    recipe = Config(dict(work_dir=str(tmp_path), model=dict(), train_dataloader=dict(num_workers=2),
                         stages=[dict(train_dataloader=dict(batch_sampler=inner))]))
    stage = stage_config(recipe, 1)
    assert stage.train_dataloader.batch_sampler == dict(type="WorkerSeededBatchSampler", batch_sampler=inner,
                                                        drop_last=False)
