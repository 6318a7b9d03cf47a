"""Ranks fail together: ``torchrun --nproc-per-node 2 tools/train.py CONFIG --launcher pytorch`` on CPU
(gloo), with a fault on one rank (tests/rank_faults.py). Whichever rank fails, and wherever the other
one is (blocked in backward's all-reduce, waiting for rank 0's teacher-cache build), both ranks exit
within seconds, far inside the process group's timeout, with status 2 and the same one-line error.
A non-finite loss on one rank makes every rank skip (or stop at) the same step, with one message.
"""

import os
import re
import subprocess
import sys
import time

import pytest
import torch

from tests.conftest import REPO, write_tiny_av
from xmodal.engine.checkpoint import save_checkpoint_file
from xmodal.registry import MODELS

TIMEOUT_S = 300  # the process group's timeout in these runs: a rank left waiting would sit it out

CONFIG = """
custom_imports = dict(imports=["tests.rank_faults"], allow_failed_imports=False)
default_scope = "xmodal"
image = dict(type="LeNet5", input_size=12, out_dim=8)
audio = dict(type="SpectrogramCNN", channels=(4, 8), out_dim=6)
head = dict(type="ClsHead", num_classes=3)
teacher = dict(type="ModalityClassifier", encoders=dict(image=image, audio=audio),
               fusion=dict(type="ConcatFusion", out_dim=8), head=head)
model = dict(type="Distiller", student=dict(type="ModalityClassifier", encoders=dict(image=image), head=head),
             teachers=dict(t0=dict(model=teacher, checkpoint={teacher_ckpt!r})),
             losses=[dict(type="KDLoss", weight=1.0, student="logits", teacher="t0.logits", temperature=4.0)],
             teacher_cache=dict(enabled={cache}))
loader = dict(batch_size=4, num_workers=0, collate_fn=dict(type="default_collate"))
train_dataloader = dict(**loader, sampler=dict(type="DefaultSampler", shuffle=True),
                        dataset=dict(type="PairedDataset", data_root={root!r}, split="train",
                                     pipeline=[dict(type="BadSample")]))
optim_wrapper = dict(type="OptimWrapper", optimizer=dict(type="Adam", lr=1e-2))
train_cfg = dict(by_epoch=True, max_epochs=2)
default_hooks = dict(logger=dict(type="LoggerHook", interval=1), checkpoint=dict(type="CheckpointHook", interval=1),
                     sampler_seed=dict(type="DistSamplerSeedHook"))
custom_hooks = [dict(type="NaNInputHook"), dict(type="StepLogHook")]
env_cfg = dict(dist_cfg=dict(backend="gloo", timeout={timeout}))
visualizer = dict(type="Visualizer", vis_backends=[dict(type="LocalVisBackend")])
log_level = "WARNING"
randomness = dict(seed=0)
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("rank_failure")
    root = write_tiny_av(tmp / "data")
    torch.manual_seed(0)
    teacher = MODELS.build(dict(type="ModalityClassifier", encoders=dict(
        image=dict(type="LeNet5", input_size=12, out_dim=8), audio=dict(type="SpectrogramCNN", channels=(4, 8),
                                                                        out_dim=6)),
        fusion=dict(type="ConcatFusion", out_dim=8), head=dict(type="ClsHead", num_classes=3)))
    save_checkpoint_file({"state_dict": teacher.state_dict()}, tmp / "teacher.pth")
    for cache in (True, False):
        (tmp / f"cache_{cache}.py").write_text(CONFIG.format(root=str(root), teacher_ckpt=str(tmp / "teacher.pth"),
                                                             cache=cache, timeout=TIMEOUT_S))
    return {"tmp": tmp}


def _launch(setup, tmp_path, cache: bool, *extra: str, **faults: str) -> tuple[list[str], float, list[str]]:
    """Two ranks of tools/train.py; returns each rank's error line, the seconds from the first fault to the
    end of the last rank, and the fault log."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "",
           "XMODAL_TEST_FAULT_LOG": str(tmp_path / "faults.log"), "XMODAL_TEST_STEP_LOG": str(tmp_path / "steps"),
           **faults}
    logs = tmp_path / "ranks"
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
            "--log-dir", str(logs), "--redirects", "2", "--tee", "0",
            str(REPO / "tools/train.py"), str(setup["tmp"] / f"cache_{cache}.py"), "--work-dir", str(tmp_path / "work"),
            "--launcher", "pytorch", *extra]
    result = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    ended = time.time()
    faults_log = (tmp_path / "faults.log").read_text().splitlines()
    first_fault = min(float(line.split()[1]) for line in faults_log)
    errors = []
    for rank in (0, 1):
        (stderr,) = logs.rglob(f"attempt_0/{rank}/stderr.log")
        text = stderr.read_text()
        lines = [line for line in text.splitlines() if line.startswith("error: ")]
        assert len(lines) == 1, f"rank {rank}: {text[-3000:]}"
        errors.append(lines[0])
    # torchrun's summary: each rank ended by itself with status 2 (none killed by the launcher's SIGTERM)
    codes = dict(re.findall(r"rank\s*: (\d) \(local_rank: \d\)\s+exitcode\s*: (-?\d+)", result.stderr))
    assert codes == {"0": "2", "1": "2"}, result.stderr[-3000:]
    return errors, ended - first_fault, faults_log


@pytest.mark.slow
def test_a_nan_skipped_on_both_ranks_then_a_bad_batch_on_rank_1_stops_both_with_its_error(setup, tmp_path):
    # rank 1's third batch holds the bad sample: the DefaultSampler's order for seed 0, epoch 0, every 2nd position
    order = torch.randperm(32, generator=torch.Generator().manual_seed(0)).tolist()
    bad = order[1::2][9]
    errors, seconds, faults = _launch(setup, tmp_path, False, "--cfg-options", "nan_guard.action=skip",
                                      XMODAL_TEST_NAN_AT="1:2", XMODAL_TEST_BAD_SAMPLE=str(bad))
    assert [line.split()[0] for line in faults] == ["1", "1"]  # both faults on rank 1 only
    # the NaN on rank 1 at iteration 2: both ranks skipped that step, and only that one
    steps = [(tmp_path / f"steps.{rank}").read_text().split("\n") for rank in (0, 1)]
    assert steps[0] == steps[1] == ["1 stepped", "2 skipped", ""]
    # the bad sample on rank 1 at iteration 3, while rank 0 waited for it in a collective
    expected = f"error: rank 1 of 2: train sample {bad}: unreadable image (a damaged file)"
    assert errors == [expected, expected]
    assert seconds < 20, seconds  # far from the process group's 300 s


@pytest.mark.slow
def test_a_failed_teacher_cache_build_on_rank_0_stops_the_waiting_rank(setup, tmp_path):
    errors, seconds, faults = _launch(setup, tmp_path, True, XMODAL_TEST_BAD_SAMPLE="7")
    assert [line.split()[0] for line in faults] == ["0"]  # rank 0 builds the cache; rank 1 waits for it
    expected = "error: rank 0 of 2: train sample 7: unreadable image (a damaged file)"
    assert errors == [expected, expected]
    assert seconds < 20, seconds
    assert not list((tmp_path / "work" / "teacher_cache").iterdir())  # no half-built entry, no lock


def test_a_nan_stop_names_the_rank_with_the_nan_in_one_message_for_all(monkeypatch):
    """Rank 0's view of a non-finite loss on rank 1 (the collectives stand in for rank 1): rank 0 stops at
    the same step with the message naming rank 1's terms, reported without a rank prefix."""
    import json

    import torch.distributed as dist

    from xmodal.engine import rank_failure
    from xmodal.engine.nan_guard import NonFiniteLossError, NonFiniteLossGuard

    def all_reduce(tensor, op=None):
        tensor[1] += 1  # rank 1's flag: a non-finite term

    def all_gather_object(out, mine):
        out[:] = [mine, ("loss_kd=nan", "loss_ce=0.9, loss_kd=nan")]

    for name, value in dict(is_initialized=lambda: True, get_world_size=lambda: 2, get_rank=lambda: 0,
                            all_reduce=all_reduce, all_gather_object=all_gather_object).items():
        monkeypatch.setattr(dist, name, value)
    runner = type("Runner", (), {"iter": 5, "train_loop": None})()
    with pytest.raises(NonFiniteLossError) as info:
        NonFiniteLossGuard()._check(runner, {"loss_ce": torch.tensor(0.8), "loss_kd": torch.tensor(0.1)})
    expected = ("non-finite loss loss_kd=nan on rank 1 of 2 at iteration 6 (all terms on rank 1: loss_ce=0.9, "
                "loss_kd=nan): training stopped before the optimizer step")
    assert str(info.value).startswith(expected) and info.value.every_rank
    store = dist.HashStore()
    store.add(rank_failure.SEEN_KEY, 1)  # rank 1 has seen it: no waiting
    monkeypatch.setattr(rank_failure, "_store", lambda: store)
    failure = rank_failure.stop_together(info.value)
    assert str(failure) == str(info.value) and failure.here  # published as it is, no "rank 0 of 2:" before it
    assert json.loads(store.get(rank_failure.FAILURE_KEY))["message"] == str(info.value)


def test_the_failed_rank_keeps_the_traceback_of_a_bug_and_prints_the_same_line(capsys):
    from xmodal.apis.errors import cli_errors
    from xmodal.errors import RankFailedError

    @cli_errors
    def main(here: bool, cause: BaseException):
        try:
            raise cause
        except type(cause) as error:
            failure = RankFailedError(f"rank 1 of 2: {error}")
            failure.here = here
            raise failure from error

    for here, cause, traceback in [(True, ZeroDivisionError("division by zero"), True),  # a bug on this rank
                                   (True, ValueError("bad config value"), False),  # a user error: one line
                                   (False, RuntimeError("Connection closed by peer"), False)]:  # another rank's
        with pytest.raises(SystemExit) as info:
            main(here, cause)
        err = capsys.readouterr().err
        assert info.value.code == 2
        assert err.splitlines()[-1] == f"error: rank 1 of 2: {cause}"
        assert ("Traceback" in err) == traceback, err
