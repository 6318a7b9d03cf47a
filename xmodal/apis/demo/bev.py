"""The BEV demo (``python tools/demo.py --task bev``): on the embedded synthetic-scenes set, train the
LiDAR BEV detector (the teacher), the camera BEV detector alone, and the camera detector with
UniDistill from the LiDAR teacher; compare nuScenes-style mAP / NDS on the held-out test split and
draw one test scene from above with the ground truth and each model's boxes.

Each row is an ordinary run of a config in ``configs/bev/``: the best epoch is chosen on the
validation split's NDS, the reported numbers are from the test split.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np
import torch

from xmodal.apis.config import load_config, set_max_epochs
from xmodal.apis.demo.common import CONFIG_DIR, DemoRun, mean_and_std, quiet, run_suite, train_best_and_test
from xmodal.engine.checkpoint import atomic_write_bytes
from xmodal.engine.unwrap import unwrap

RUNS = [
    DemoRun("teacher_lidar", "bev/lidar_synthetic.py", ["lidar"]),
    DemoRun("student_camera", "bev/camera_synthetic.py", ["camera"]),
    DemoRun("student_camera_unidistill", "bev/unidistill_camera_from_lidar_synthetic.py", ["camera"],
            {"t_lidar": "teacher_lidar"}),
]
KEYS = ["mAP", "NDS", "mATE", "mASE", "mAOE", "mAVE", "mAAE"]


def _config(run: DemoRun, out: Path, seed: int, epochs: int, work_dirs: dict[str, Path]):
    cfg = load_config(CONFIG_DIR / run.config, work_dir=str(out / run.method))
    set_max_epochs(cfg, epochs)
    cfg.train_cfg.val_interval = 1
    quiet(cfg, seed)
    for name, method in run.teachers.items():  # the teacher is the run trained earlier in this demo
        spec = cfg.model.teachers[name]
        spec.config = str(CONFIG_DIR / next(r.config for r in RUNS if r.method == method))
        spec.checkpoint = str(work_dirs[method])
    return cfg


def train_and_test(run: DemoRun, cfg, progress, task_id, seed: int) -> dict:
    done = train_best_and_test(cfg, progress, task_id)
    metrics = done.metrics
    progress.update(task_id, status=f"test NDS {metrics['NDS']:.3f}")
    model = unwrap(done.runner.model)
    return {"method": run.method, "modalities": run.modalities, "seed": seed,
            **{k: float(metrics[k]) for k in KEYS},
            **{k: float(v) for k, v in metrics.items() if k.endswith("_AP")},
            "train_seconds": round(done.seconds, 2), "best_checkpoint": str(done.best), "history": done.history,
            "scene": _first_scene(getattr(model, "student", model), done.runner.test_dataloader)}


@torch.no_grad()
def _first_scene(model, dataloader) -> dict:
    """Boxes of the first test scene (for the picture): GT, this model's predictions, the LiDAR points."""
    model.eval()
    batch = next(iter(dataloader))
    data = model.data_preprocessor(batch, False)
    outputs = model(mode="tensor", **data)
    det = model.head.decode(outputs["heatmap"], outputs["regression"])[0]
    keep = det["scores"] >= 0.3
    return {"points": batch["points"][0][:, :2].numpy().tolist(),
            "gt_boxes": batch["gt_boxes"][0][:, :7].numpy().tolist(),
            "pred_boxes": det["boxes"][keep][:, :7].numpy().tolist(),
            "pred_scores": det["scores"][keep].numpy().tolist(), "token": str(batch["sample_token"][0])}


def _corners_xy(box) -> np.ndarray:
    x, y, _, dx, dy, _, yaw = box[:7]
    local = np.array([[dx, dy], [dx, -dy], [-dx, -dy], [-dx, dy], [dx, dy]]) / 2
    rot = np.array([[np.cos(yaw), -np.sin(yaw)], [np.sin(yaw), np.cos(yaw)]])
    return local @ rot.T + np.array([x, y])


def plot_scenes(results: list[dict], path: Path) -> None:
    """One panel per method: the first test scene from above, LiDAR points, GT (green) and predicted (red,
    score ≥ 0.3) boxes; a short stroke marks each box's heading."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 5), squeeze=False)
    for ax, r in zip(axes[0], results):
        scene = r["scene"]
        points = np.asarray(scene["points"]).reshape(-1, 2)
        ax.scatter(points[:, 1], points[:, 0], s=0.3, c="0.6")
        for boxes, colour in ((scene["gt_boxes"], "tab:green"), (scene["pred_boxes"], "tab:red")):
            for box in boxes:
                c = _corners_xy(box)
                ax.plot(c[:, 1], c[:, 0], color=colour, lw=1.2)
                ax.plot([box[1], box[1] + np.sin(box[6]) * box[3] / 2], [box[0], box[0] + np.cos(box[6]) * box[3] / 2],
                        color=colour, lw=1.2)
        ax.set(xlim=(19.2, -19.2), ylim=(0, 38.4), aspect="equal", xlabel="y (m, left +)", ylabel="x (m, forward)",
               title=f"{r['method']}\nNDS {r['NDS']:.3f}, mAP {r['mAP']:.3f}")
    fig.suptitle(f"synthetic-scenes test sample {results[0]['scene']['token']}: ground truth (green), "
                 f"predictions (red, score ≥ 0.3)")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(buffer.getvalue(), path)


def aggregate(results: list[dict]) -> list[dict]:
    return mean_and_std(results, (*KEYS, "train_seconds"))


def print_table(console, rows: list[dict]) -> None:
    from rich.table import Table

    several = len(rows[0]["seeds"]) > 1
    table = Table(title="synthetic-scenes (synthetic): test split" + (
        f" ({len(rows[0]['seeds'])} seeds, mean ± std)" if several else ""))
    table.add_column("method")
    table.add_column("modality")
    for key in [*KEYS, "train time"]:
        table.add_column(key, justify="right")

    def cell(row: dict, key: str) -> str:
        return f"{row[f'{key}_mean']:.3f} ± {row[f'{key}_std']:.3f}" if several else f"{row[f'{key}_mean']:.3f}"

    for r in rows:
        table.add_row(r["method"], "+".join(r["modalities"]), *(cell(r, k) for k in KEYS),
                      f"{r['train_seconds_mean']:.0f} s")
    console.print(table)


def run_demo(args: argparse.Namespace, console) -> dict:
    from xmodal.data.synthetic_scenes import build_synthetic_scenes

    suite = run_suite(args, console, RUNS, "synthetic-scenes (synthetic)", build_synthetic_scenes, "work_dirs/demo_bev",
                      (12, 1), _config, train_and_test)
    out, results = suite.out, suite.results
    rows = aggregate(results)
    first_seed = [r for r in results if r["seed"] == results[0]["seed"]]
    plot_scenes(first_seed, out / "bev_scene.png")
    summary = suite.write_summary(args, rows)
    print_table(console, rows)
    console.print(f"wrote {out / 'summary.json'} and {out / 'bev_scene.png'}")
    return summary
