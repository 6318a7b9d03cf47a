"""Recipes with stages (MST-Distill's three): one config, one mmengine run per stage.

A staged config has ``stages = [dict(name=..., model=..., train_cfg=..., ...), ...]``; each entry
is merged over the rest of the config (dicts key by key, ``_delete_=True`` replaces one whole).
Stage N runs in ``<work_dir>/stageN/``; from stage 2 on, ``model.init_from`` is set to the
previous stage's directory, whose checkpoint the stage model loads. A finished stage leaves
``stage_done.json``: ``--resume`` skips finished stages and resumes the interrupted one, and
``--stage N`` reruns stage N alone (the later stages' markers are then cleared, since their input
changed).
"""

from __future__ import annotations

import copy
import itertools
import json
import time
from pathlib import Path

from mmengine.config import Config
from mmengine.dist import barrier
from mmengine.runner import Runner

from xmodal.apis.config import enable_amp, seed_loader_workers
from xmodal.apis.runner import add_default_hooks
from xmodal.engine.checkpoint import atomic_write_bytes, resolve_checkpoint
from xmodal.errors import StageError

DONE_FILE = "stage_done.json"
_RUN_IDS = itertools.count()


def is_staged(cfg: Config) -> bool:
    return bool(cfg.get("stages"))


def _merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and not value.get("_delete_", False):
            out[key] = _merge(out[key], value)
        else:
            out[key] = {k: v for k, v in value.items() if k != "_delete_"} if isinstance(value, dict) else value
    return out


def stage_dir(cfg: Config, number: int) -> Path:
    return Path(cfg.work_dir) / f"stage{number}"


def stage_config(cfg: Config, number: int) -> Config:
    """The full config of stage ``number`` (1-based)."""
    stages = cfg.stages
    if not 1 <= number <= len(stages):
        raise StageError(f"--stage {number}: this recipe has stages 1..{len(stages)} "
                         f"({', '.join(s.get('name', '?') for s in stages)})")
    base = {k: copy.deepcopy(v) for k, v in cfg.to_dict().items() if k != "stages"}
    stage = copy.deepcopy(cfg.to_dict()["stages"][number - 1])
    name = stage.pop("name", f"stage{number}")
    merged = Config(_merge(base, stage))
    merged.work_dir = str(stage_dir(cfg, number))
    # mmengine appends a timestamp in seconds; the counter keeps stages started within one second apart
    merged.experiment_name = f"{Path(cfg.filename or 'recipe').stem}_stage{number}_{next(_RUN_IDS)}"
    merged.stage_name = name
    seed_loader_workers(merged)
    if number > 1:
        merged.model.init_from = str(stage_dir(cfg, number - 1))
    return merged


def test_config(cfg: Config, work_dir: str | None = None) -> Config:
    """The config that evaluates the recipe's result: the last stage's, every weight from its checkpoint."""
    last = stage_config(cfg, len(cfg.stages))
    last.work_dir = work_dir or str(Path(cfg.work_dir) / "test")
    last.model.pop("init_from", None)
    return last


def set_stage_epochs(cfg: Config, epochs: int) -> None:
    """Cap every stage at ``epochs`` (the last stage gets exactly ``epochs``), schedules included."""
    for i, stage in enumerate(cfg.stages):
        current = stage.get("train_cfg", {}).get("max_epochs", epochs)
        n = epochs if i == len(cfg.stages) - 1 else min(current, epochs)
        stage.setdefault("train_cfg", {})["max_epochs"] = n
        for scheduler in stage.get("param_scheduler") or []:
            if scheduler.get("by_epoch", True) and scheduler.get("type") != "ConstantLR":
                scheduler["end"] = n
                if "T_max" in scheduler:
                    scheduler["T_max"] = n


def is_done(cfg: Config, number: int) -> bool:
    return (stage_dir(cfg, number) / DONE_FILE).is_file()


def run_stage(cfg: Config, number: int, resume: bool = False, amp: bool = False, hooks=None,
              runner_class: type[Runner] = Runner) -> Path:
    """Train stage ``number``; returns its output checkpoint. ``hooks(number)`` may return extra
    hook objects to register on the stage's Runner (progress display, history); ``runner_class`` is
    the Runner to build (``tools/train.py``'s quiet one)."""
    if number > 1 and not is_done(cfg, number - 1):
        raise StageError(f"stage {number} ({cfg.stages[number - 1].get('name', '?')}) starts from stage "
                         f"{number - 1}'s output, but {stage_dir(cfg, number - 1) / DONE_FILE} does not exist: "
                         f"run stage {number - 1} first (tools/train.py {cfg.filename} --stage {number - 1}, "
                         f"or the whole recipe without --stage)")
    for later in range(number, len(cfg.stages) + 1):  # this stage and its successors are no longer done
        (stage_dir(cfg, later) / DONE_FILE).unlink(missing_ok=True)
    scfg = stage_config(cfg, number)
    if amp:
        enable_amp(scfg)
    scfg.load_from = None
    scfg.resume = bool(resume and (stage_dir(cfg, number) / "last_checkpoint").is_file())
    runner = runner_class.from_cfg(scfg)
    add_default_hooks(runner, scfg)  # RNG state in checkpoints, non-finite loss guard, teacher cache
    for hook in hooks(number) if hooks else []:
        runner.register_hook(hook)
    runner.train()
    output = resolve_checkpoint(scfg.work_dir)
    if runner.rank == 0:
        record = {"stage": number, "name": scfg.stage_name, "checkpoint": str(output),
                  "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
        atomic_write_bytes(json.dumps(record, indent=1).encode(), stage_dir(cfg, number) / DONE_FILE)
    barrier()  # other ranks must see this stage's done file before starting the next stage
    return output


def run_stages(cfg: Config, resume: bool = False, only: int | None = None, amp: bool = False, hooks=None,
               runner_class: type[Runner] = Runner) -> Path:
    """All stages in order (finished ones skipped with ``resume``), or stage ``only``."""
    if only is not None:
        return run_stage(cfg, only, resume=resume, amp=amp, hooks=hooks, runner_class=runner_class)
    output = None
    for number in range(1, len(cfg.stages) + 1):
        if resume and is_done(cfg, number):
            print(f"stage {number} ({cfg.stages[number - 1].get('name', '?')}) already finished: skipped")
            output = resolve_checkpoint(stage_dir(cfg, number))
            continue
        output = run_stage(cfg, number, resume=resume, amp=amp, hooks=hooks, runner_class=runner_class)
    return output
