"""``tools/test.py CONFIG CHECKPOINT``: evaluate a checkpoint on the config's test split."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mmengine.config import DictAction
from mmengine.runner import Runner

from xmodal.apis.config import load_config
from xmodal.engine.checkpoint import atomic_write_bytes, load_weights, resolve_checkpoint
from xmodal.engine.hooks import unwrap


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Evaluate a checkpoint on the test split of a config.")
    parser.add_argument("config", help="config file the checkpoint was trained with (or the plain student config)")
    parser.add_argument("checkpoint", help="checkpoint file, or a work dir to use its best_*.pth")
    parser.add_argument("--out", help="write the metrics to this JSON file")
    parser.add_argument("--work-dir", help="where the test logs go (default: work_dirs/<config name>)")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, help="override config keys: key=value ...")
    parser.add_argument("--launcher", choices=["none", "pytorch", "slurm", "mpi"], default="none")
    parser.add_argument("--local-rank", "--local_rank", type=int, default=0)
    return parser.parse_args(argv)


def evaluate(config: str, checkpoint: str, out: str | None = None, work_dir: str | None = None,
             cfg_options: dict | None = None, launcher: str = "none") -> dict:
    """Load ``checkpoint`` strictly (a student-only or full Distiller checkpoint both load into a
    plain student config) and return the test metrics."""
    path = resolve_checkpoint(checkpoint)
    cfg = load_config(config, cfg_options, work_dir, launcher)
    cfg.load_from, cfg.resume = None, False
    runner = Runner.from_cfg(cfg)
    load_weights(unwrap(runner.model), path, what="model")
    metrics = {k: float(v) for k, v in runner.test().items()}
    if out and runner.rank == 0:
        report = {"config": str(config), "checkpoint": str(path), "metrics": metrics}
        atomic_write_bytes(json.dumps(report, indent=2).encode(), Path(out))
    return metrics


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    metrics = evaluate(args.config, args.checkpoint, args.out, args.work_dir, args.cfg_options, args.launcher)
    print(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    main()
