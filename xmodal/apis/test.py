"""``tools/test.py CONFIG CHECKPOINT``: evaluate a checkpoint on the config's test split."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from xmodal.apis.config import CfgOptionsAction, config_errors, load_config, require_keys
from xmodal.apis.errors import cli_errors
from xmodal.apis.stages import is_staged, stage_dir, test_config
from xmodal.engine.checkpoint import atomic_write_bytes, load_weights, resolve_checkpoint
from xmodal.engine.console import TestRunner
from xmodal.engine.rank_failure import fail_together
from xmodal.engine.unwrap import unwrap
from xmodal.evaluation.routing import plot_router_usage


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Evaluate a checkpoint on the test split of a config.")
    parser.add_argument("config", help="config file the checkpoint was trained with (or the plain student config)")
    parser.add_argument("checkpoint", help="checkpoint file, or a work dir to use its best_*.pth")
    parser.add_argument("--out", help="write the metrics to this JSON file")
    parser.add_argument("--router-plot", help="MST-Distill: where to write the router usage plot "
                        "(default: <work dir>/test_<timestamp>/router_usage.png)")
    parser.add_argument("--work-dir", help="the test's log, config and scalars go to <work dir>/test_<timestamp>/ "
                        "(default work dir: work_dirs/<config name>)")
    parser.add_argument("--cfg-options", nargs="+", action=CfgOptionsAction,
                        help="override config keys: key=value ...")
    parser.add_argument("--launcher", choices=["none", "pytorch", "slurm", "mpi"], default="none")
    parser.add_argument("--local-rank", "--local_rank", type=int, default=0)
    return parser.parse_args(argv)


def evaluate(config: str, checkpoint: str, out: str | None = None, work_dir: str | None = None,
             cfg_options: dict | None = None, launcher: str = "none", router_plot: str | None = None) -> dict:
    """Load ``checkpoint`` strictly (a student-only or full Distiller checkpoint both load into a
    plain student config) and return the test metrics. With a ``RouterUsageMetric`` in the test
    evaluator (MST-Distill), also plot router usage per class (``router_usage.png`` in the work dir)."""
    cfg = load_config(config, cfg_options, work_dir, launcher)
    if is_staged(cfg):  # a staged recipe is tested with its last stage's model
        last = stage_dir(cfg, len(cfg.stages))
        if Path(checkpoint).is_dir() and (Path(checkpoint) / last.name).is_dir():
            checkpoint = Path(checkpoint) / last.name
        cfg = test_config(cfg, work_dir)
    require_keys(cfg, ("test_dataloader", "test_cfg", "test_evaluator"), "testing")
    path = resolve_checkpoint(checkpoint)
    cfg.load_from, cfg.resume = None, False
    with config_errors(cfg):  # a bad type or argument deep in the model: named by its config key
        runner = TestRunner.from_cfg(cfg)
        model = unwrap(runner.model)
        load_weights(model, path, what="model")
        metrics = {k: float(v) for k, v in runner.test().items()}
    if runner.rank != 0:
        return metrics
    if out:
        report = {"config": str(config), "checkpoint": str(path), "metrics": metrics}
        atomic_write_bytes(json.dumps(report, indent=2).encode(), Path(out))
    for metric in runner.test_loop.evaluator.metrics:
        if getattr(metric, "usage_by_class", None) is not None:
            plot = Path(router_plot or Path(runner.log_dir) / "router_usage.png")
            classes = (metric.dataset_meta or {}).get("classes")
            plot_router_usage(metric.usage_by_class, metric.expert_names, classes, plot)
            print(f"router usage per class: {plot}")
    return metrics


@cli_errors
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with fail_together():  # distributed: one rank's error stops every rank with the same message
        metrics = evaluate(args.config, args.checkpoint, args.out, args.work_dir, args.cfg_options, args.launcher,
                           args.router_plot)
    print(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    main()
