"""Every shipped real-data config at its true input shapes: s/iter, samples/s, peak RSS, projected epoch.

    python benchmarks/true_shapes.py                                   # every case
    python benchmarks/true_shapes.py --cases mst_avmnist_image lidar_nuscenes
    python benchmarks/true_shapes.py --list                            # the cases and their real sizes

Models are built from the shipped configs with random weights (nothing is downloaded): a teacher
checkpoint is dropped, an open_clip student gets no pretrained file, and the BLIP ITM teacher is built
from ``BlipConfig()`` (the base size: ViT-B/16 at 384, 12-layer BERT) with open_clip's tokenizer (its
vocabulary is the one change: 49,408 tokens instead of BERT's 30,524). Batches are synthetic tensors of
the datasets' true shapes (data_prep/*.py); speed and memory do not depend on the values.

Per case (a config, or one stage of a staged recipe) the script

1. probes one training iteration at two small batches (B/16 and B/8) in fresh processes and fits peak
   RSS and time linearly in the batch size: the estimate at the config's batch B;
2. if that estimate exceeds ``--mem-gib``, trains at the largest micro-batch that fits, with gradient
   accumulation to B (mmengine's ``accumulative_counts``), and says so;
3. runs ``--iters`` training iterations (one iteration = one optimizer step over B samples) and one
   evaluation batch at the val loader's batch size in a fresh process, under a watchdog that stops it,
   with the estimate, before its RSS passes ``--mem-gib`` (the OS is never left to kill it).

Reported: s/iter (median of the timed iterations), samples/s, eval s/batch, the process's peak RSS and
the projected time of one epoch of the real dataset (training iterations + one validation pass) and of
the config's whole schedule. A case whose projected run exceeds ``--max-case-s`` is reported from its
probes ("projected") instead of being run: on a 2-core CPU that is the GPU-scale retrieval recipes.
Mixed precision (``AmpOptimWrapper``) needs CUDA; on CPU the step runs in fp32.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

GiB = 1 << 30


@dataclass
class Case:
    """One measurement: a config (and stage) and the real dataset's split sizes."""

    config: str
    data: str  # which synthetic batch: a key of SHAPES, "segmentation", "retrieval" or "bev"
    n_train: int
    n_val: int
    stage: int | None = None  # 1-based stage of a staged recipe
    cached: bool = False  # MST stage 3 with the teacher cache (expert logits read by index)
    needs: str | None = None  # an optional package the model needs
    note: str = ""
    extra: dict = field(default_factory=dict)


# True per-sample shapes (data_prep/<dataset>.py SHAPES / meta.json) and class counts
SHAPES = {
    "avmnist": ({"image": (1, 28, 28), "audio": (1, 112, 112)}, 10),
    "ravdess": ({"video": (15, 3, 224, 224), "audio": (15, 156)}, 8),
    "vggsound": ({"visual": (10, 7, 7, 512), "audio": (10, 128)}, 141),
    "crisismmd": ({"image": (2048,), "text": (768,)}, 8),
}
NYU = dict(size=(480, 640), classes=41)
NUSCENES = dict(cams=6, image=(256, 704), points=250_000, boxes=40)  # 10 sweeps (--sweeps 9): ~250k points
FLICKR = (145_000, 5_070)  # Karpathy train captions (29,000 images x 5), val pairs (1,014 images)
COCO = (566_747, 25_010)  # Karpathy train (113,287 images, 5-7 captions), val pairs (5,000 images)


def _mst(name: str, data: str, n_train: int, n_val: int) -> dict[str, Case]:
    config = f"configs/mst_distill/{name}.py"
    cases = {f"{name}/s{s}": Case(config, data, n_train, n_val, stage=s) for s in (1, 2, 3)}
    if data != "segmentation":  # the NYU recipe runs its teachers live (dense logits are too big to cache)
        cases[f"{name}/s3-cached"] = Case(config, data, n_train, n_val, stage=3, cached=True)
    return cases


CASES: dict[str, Case] = {
    "student_flickr30k": Case("configs/retrieval/student_flickr30k.py", "retrieval", *FLICKR),
    "cprd_flickr30k": Case("configs/retrieval/cprd_flickr30k.py", "retrieval", *FLICKR),
    "dcd_flickr30k": Case("configs/retrieval/dcd_flickr30k.py", "retrieval", *FLICKR),
    "cprd_coco": Case("configs/retrieval/cprd_coco.py", "retrieval", *COCO),
    "lidar_nuscenes": Case("configs/bev/lidar_nuscenes.py", "bev", 28_130, 6_019),
    "camera_nuscenes": Case("configs/bev/camera_nuscenes.py", "bev", 28_130, 6_019),
    "fusion_nuscenes": Case("configs/bev/fusion_nuscenes.py", "bev", 28_130, 6_019),
    "unidistill_camera_from_lidar_nuscenes": Case("configs/bev/unidistill_camera_from_lidar_nuscenes.py", "bev",
                                                  28_130, 6_019),
    "mmdet3d_centerpoint_pillar": Case("configs/bev/mmdet3d_centerpoint_pillar_synthetic.py", "bev", 28_130, 6_019,
                                       needs="mmdet3d", note="the nuScenes grid needs the mmdet3d bridge"),
    **_mst("mst_avmnist_image", "avmnist", 42_000, 14_000),
    **_mst("mst_ravdess_video", "ravdess", 864, 288),
    **_mst("mst_vggsound_visual", "vggsound", 30_000, 10_000),
    **_mst("mst_crisismmd_image", "crisismmd", 9_634, 3_212),
    **_mst("mst_nyudv2_rgb", "segmentation", 869, 290),
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", help="case names (default: all; --list shows them)")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    parser.add_argument("--iters", type=int, default=3, help="timed training iterations per case")
    parser.add_argument("--mem-gib", type=float, default=22.0,
                        help="RSS budget: batches are sized under it and the watchdog stops a run above it")
    parser.add_argument("--max-case-s", type=float, default=1800.0,
                        help="a case projected to take longer is reported from its probes, not run (0: run all)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--json", help="also write the rows to this JSON file")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # internal: one measurement in this process
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--accum", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--eval", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# --- models ------------------------------------------------------------------------------------------------


def offline(value):
    """A model config with the weights it cannot have here replaced by random ones of the same size."""
    if isinstance(value, dict):
        value = {k: offline(v) for k, v in value.items()}
        if value.get("type") == "CrossEncoder" and value.get("pretrained"):
            value.pop("pretrained")
            value["config"] = dict(text_config=dict(vocab_size=49408))  # BlipConfig() is the base size
            value["tokenizer"] = dict(type="clip", context_length=value.get("tokenizer", {}).get("context_length", 35))
        elif value.get("type") == "DualEncoder" and value.get("pretrained"):
            value["pretrained"] = None
        if "type" not in value and ("model" in value or "config" in value):  # a teacher spec
            value.pop("checkpoint", None)
            value["allow_random_init"] = True
        value.pop("init_from", None)
        return value
    if isinstance(value, (list, tuple)):
        return type(value)(offline(v) for v in value)
    return value


def case_config(case: Case):
    """The (stage's) full config of a case, read from the repository root."""
    from xmodal.apis.config import load_config
    from xmodal.apis.stages import stage_config

    cwd = os.getcwd()
    os.chdir(REPO)  # teacher specs name their configs relative to the repository root
    try:
        cfg = load_config(REPO / case.config)
        if case.stage is not None:
            cfg.work_dir = tempfile.mkdtemp(prefix="true-shapes-")
            cfg = stage_config(cfg, case.stage)
    finally:
        os.chdir(cwd)
    return cfg


def build_model(cfg):
    import xmodal.distill  # noqa: F401  (registers the distillers)
    import xmodal.models  # noqa: F401
    from xmodal.registry import MODELS

    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        return MODELS.build(offline(cfg.model.to_dict()))
    finally:
        os.chdir(cwd)


# --- synthetic batches of the true shapes ---------------------------------------------------------------------


WORDS = ("a man dog woman child street red blue two sitting running on the in with near of playing "
         "ball grass water building bike car white black young group people standing front").split()


def _camera_rig(cams: int, image: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """nuScenes-like intrinsics (f ~ 1266 px scaled to the 704-wide input) and six cameras around the car."""
    h, w = image
    f = 1266.0 * w / 1600
    k = torch.tensor([[f, 0.0, w / 2 - 0.5], [0.0, f, h / 2 - 0.5], [0.0, 0.0, 1.0]])
    poses = []
    for i in range(cams):
        yaw = 2 * math.pi * i / cams
        forward = torch.tensor([math.cos(yaw), math.sin(yaw), 0.0])
        right = torch.tensor([math.sin(yaw), -math.cos(yaw), 0.0])
        rot = torch.stack([right, torch.tensor([0.0, 0.0, -1.0]), forward])  # rows: camera x, y, z in lidar
        pose = torch.eye(4)
        pose[:3, :3] = rot
        pose[:3, 3] = -rot @ torch.tensor([1.0, 0.0, 1.6])
        poses.append(pose)
    return k.expand(cams, 3, 3), torch.stack(poses)


def make_batch(case: Case, b: int, seed: int = 0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    if case.data in SHAPES:
        shapes, classes = SHAPES[case.data]
        batch = {m: torch.randn(b, *shape, generator=gen) for m, shape in shapes.items()}
        return {**batch, "label": torch.randint(0, classes, (b,), generator=gen), "index": torch.arange(b)}
    if case.data == "segmentation":
        h, w = NYU["size"]
        return {"rgb": torch.randn(b, 3, h, w, generator=gen), "depth": torch.randn(b, 1, h, w, generator=gen),
                "label": torch.randint(0, NYU["classes"], (b, h, w), generator=gen), "index": torch.arange(b)}
    if case.data == "retrieval":
        rng = np.random.default_rng(seed)
        texts = [" ".join(rng.choice(WORDS, size=12)) for _ in range(b)]
        return {"image": torch.rand(b, 3, 224, 224, generator=gen), "text": texts, "index": torch.arange(b),
                "image_index": torch.arange(b)}
    if case.data == "bev":
        lo = torch.tensor([-54.0, -54.0, -5.0])
        span = torch.tensor([108.0, 108.0, 8.0])
        points = [torch.cat([torch.rand(NUSCENES["points"], 3, generator=gen) * span + lo,
                             torch.rand(NUSCENES["points"], 2, generator=gen)], 1) for _ in range(b)]
        k, poses = _camera_rig(NUSCENES["cams"], NUSCENES["image"])
        boxes = []
        for _ in range(b):
            n = NUSCENES["boxes"]
            centre = torch.rand(n, 3, generator=gen) * torch.tensor([80.0, 80.0, 2.0]) - torch.tensor([40.0, 40.0, 1.0])
            size = torch.rand(n, 3, generator=gen) * 3 + 0.5
            boxes.append(torch.cat([centre, size, torch.rand(n, 1, generator=gen) * 6.28,
                                    torch.randn(n, 2, generator=gen)], 1))
        return {"points": points, "images": torch.rand(b, NUSCENES["cams"], 3, *NUSCENES["image"], generator=gen),
                "intrinsics": k.expand(b, -1, 3, 3).clone(), "lidar2cam": poses.expand(b, -1, 4, 4).clone(),
                "gt_boxes": boxes, "gt_labels": [torch.randint(0, 10, (len(x),), generator=gen) for x in boxes],
                "sample_token": [f"sample{i}" for i in range(b)], "index": torch.arange(b)}
    raise ValueError(f"unknown data kind {case.data!r}")


# --- one measurement (worker process) ----------------------------------------------------------------------


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def mem_available_bytes() -> int:
    with open("/proc/meminfo") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))


def start_watchdog(limit_bytes: int, out: str, info: dict) -> None:
    """Stop this process, leaving a record, before its RSS passes ``limit_bytes`` or the machine runs
    out of memory (other processes share it: the OS would kill the largest, this one)."""

    def watch():
        while True:
            rss = _rss_bytes()
            if rss > limit_bytes or mem_available_bytes() < GiB // 2:
                record = {**info, "aborted": True, "rss_at_stop": rss, "peak_rss": max(rss, _peak_rss_bytes())}
                Path(out).write_text(json.dumps(record))
                os._exit(3)
            time.sleep(0.01)

    threading.Thread(target=watch, daemon=True).start()


def _optim_wrapper(cfg, model, accum: int, steps: int):
    from mmengine.optim import build_optim_wrapper

    import xmodal.engine  # noqa: F401  (registers xmodal's optimizer wrappers)

    wrapper_cfg = cfg.optim_wrapper.to_dict()
    if wrapper_cfg.get("type") == "AmpOptimWrapper" and not torch.cuda.is_available():
        wrapper_cfg["type"] = "OptimWrapper"  # mmengine's AMP is CUDA-only: fp32 here
        for key in ("loss_scale", "dtype", "use_fsdp"):
            wrapper_cfg.pop(key, None)
    wrapper_cfg["accumulative_counts"] = accum
    wrapper = build_optim_wrapper(model, wrapper_cfg)
    wrapper.initialize_count_status(model, 0, steps * accum)
    return wrapper


def worker(args: argparse.Namespace) -> None:
    case = CASES[args.worker]
    torch.set_num_threads(args.threads)
    info = {"case": args.worker, "batch": args.batch, "accum": args.accum}
    start_watchdog(int(args.mem_gib * GiB), args.out, info)
    from mmengine.registry import init_default_scope

    init_default_scope("xmodal")
    cfg = case_config(case)
    torch.manual_seed(0)
    model = build_model(cfg)
    micro = args.batch // args.accum
    batches = [make_batch(case, micro, seed=i) for i in range(args.accum)]
    if case.cached:  # the expert logits of every training sample, read by the batch's index
        ways, classes = len(model.experts), SHAPES[case.data][1]
        model.attach_cache(np.random.default_rng(0).standard_normal((micro, ways, classes), dtype=np.float32))
    wrapper = _optim_wrapper(cfg, model, args.accum, args.iters)
    model.train()
    times = []
    for _ in range(args.iters):
        start = time.perf_counter()
        for batch in batches:
            model.train_step(batch, wrapper)
        times.append(time.perf_counter() - start)
    info.update(iter_s=times, train_peak_rss=_peak_rss_bytes())
    if args.eval:
        val_batch = cfg.val_dataloader.batch_size
        batch = make_batch(case, val_batch, seed=99)
        model.eval()
        start = time.perf_counter()
        with torch.no_grad():
            model.val_step(batch)
        info.update(eval_s=time.perf_counter() - start, val_batch=val_batch)
        if case.cached:  # building the cache: every expert's logits, batch by batch, once per run
            cache_batch = (getattr(model, "teacher_cache", None) or {}).get("batch_size") or 256
            batch = model.data_preprocessor(make_batch(case, cache_batch, seed=98), False)
            start = time.perf_counter()
            model.all_expert_logits(batch)
            info.update(cache_batch_s=time.perf_counter() - start, cache_batch=cache_batch)
    info.update(peak_rss=_peak_rss_bytes(), max_epochs=cfg.train_cfg.get("max_epochs"),
                config_batch=cfg.train_dataloader.batch_size)
    Path(args.out).write_text(json.dumps(info))


# --- the driver ---------------------------------------------------------------------------------------------


def run_worker(name: str, batch: int, accum: int, iters: int, evaluate: bool, args) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = f.name
    cmd = [sys.executable, __file__, "--worker", name, "--batch", str(batch), "--accum", str(accum),
           "--iters", str(iters), "--mem-gib", str(args.mem_gib), "--threads", str(args.threads), "--out", out]
    if evaluate:
        cmd.append("--eval")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    text = Path(out).read_text() if Path(out).stat().st_size else ""
    Path(out).unlink()
    if not text:
        if proc.returncode == -9:
            return {"error": f"killed by the OS at batch {batch} (out of memory)"}
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"error": f"exit {proc.returncode}: " + " | ".join(tail)}
    return json.loads(text)


def config_batch(case: Case) -> int:
    return case_config(case).train_dataloader.batch_size


def fit(b1: int, y1: float, b2: int, y2: float, b: int) -> float:
    """The line through (b1, y1), (b2, y2) at b (never below y2 for b > b2)."""
    slope = max(0.0, (y2 - y1) / (b2 - b1))
    return y2 + slope * (b - b2)


def measure(name: str, args) -> dict:
    case = CASES[name]
    row = {"case": name, "config": case.config, "stage": case.stage, "cached": case.cached, "n_train": case.n_train}
    if case.needs:
        try:
            __import__(case.needs)
        except ImportError:
            row["skipped"] = f"{case.needs} is not installed ({case.note}; tools/install_det3d.sh)"
            return row
    big = config_batch(case)
    row["config_batch"] = big
    b1 = max(1, big // 16)
    b2 = min(big, 2 * b1)
    probes = [run_worker(name, b, 1, 1, False, args) for b in dict.fromkeys((b1, b2))]
    for probe in probes:
        if probe.get("error") or probe.get("aborted"):
            row["error"] = f"probe at batch {probe.get('batch')}: " + (probe.get("error") or "over the RSS budget")
            return row
    p1, p2 = probes[0], probes[-1]
    if b1 == b2:
        est_rss = p1["train_peak_rss"] * big / b1
        est_iter = p1["iter_s"][0] * big / b1
    else:
        est_rss = fit(b1, p1["train_peak_rss"], b2, p2["train_peak_rss"], big)
        est_iter = fit(b1, p1["iter_s"][0], b2, p2["iter_s"][0], big)
    row.update(est_rss=est_rss, est_iter_s=est_iter, probe=[(b, p["train_peak_rss"], p["iter_s"][0])
                                                            for b, p in zip((b1, b2), probes)])
    accum = 1
    budget = args.mem_gib * GiB * 0.9  # the fit is rough: keep a tenth spare
    row["budget"] = budget
    while accum < big and (big % accum or fit(b1, p1["train_peak_rss"], b2, p2["train_peak_rss"], big // accum)
                           > budget):
        accum += 1
    if accum == big and p1["train_peak_rss"] > budget:
        row["error"] = f"does not fit even at batch 1 (estimated {est_rss / GiB:.1f} GiB at batch {big})"
        return row
    row["accum"] = accum
    projected = est_iter * (args.iters + 2) + 60  # the run, its eval batch and start-up
    if args.max_case_s and projected > args.max_case_s:
        row.update(projected_only=True, iter_s=est_iter)
        return row
    result = run_worker(name, big, accum, args.iters, True, args)
    if result.get("error"):
        row["error"] = result["error"]
        return row
    if result.get("aborted"):
        row["error"] = (f"stopped at {result['rss_at_stop'] / GiB:.1f} GiB RSS (budget {args.mem_gib} GiB; "
                        f"estimated {est_rss / GiB:.1f} GiB at batch {big})")
        return row
    row.update(result)
    row["iter_s"] = statistics.median(result["iter_s"])
    return row


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def describe(row: dict) -> list[str]:
    """The printed cells of one row."""
    case = CASES[row["case"]]
    name = row["case"]
    if row.get("skipped") or row.get("error"):
        return [name, "", "", "", "", "", "", "", row.get("skipped") or row["error"]]
    big, accum = row["config_batch"], row["accum"]
    batch = f"{big}" if accum == 1 else f"{big // accum} x {accum}"
    steps = math.ceil(case.n_train / big)
    epoch = steps * row["iter_s"]
    notes = []
    if row.get("projected_only"):
        notes.append(f"projected from probes at batch {row['probe'][0][0]}/{row['probe'][-1][0]}")
        (b1, r1, _), (b2, r2, _) = row["probe"][0], row["probe"][-1]
        micro = big // accum
        rss = f"~{(fit(b1, r1, b2, r2, micro) if b1 != b2 else r1 * micro / b1) / GiB:.1f}"
        eval_cell = ""
    else:
        rss = f"{row['peak_rss'] / GiB:.1f}"
        n_val_batches = math.ceil(case.n_val / row["val_batch"])
        epoch += n_val_batches * row["eval_s"]
        eval_cell = f"{row['eval_s']:.2f} ({row['val_batch']})"
    if row.get("cached") and row.get("cache_batch_s"):
        build = math.ceil(case.n_train / row["cache_batch"]) * row["cache_batch_s"]
        notes.append(f"cache build {_duration(build)} once")
    if accum > 1:
        notes.append(f"accumulation: est. {row['est_rss'] / GiB:.1f} GiB at batch {big}")
    max_epochs = row.get("max_epochs") or case_config(case).train_cfg.get("max_epochs")
    rate = big / row["iter_s"]
    return [name, batch, f"{row['iter_s']:.2f}", f"{rate:.1f}" if rate >= 10 else f"{rate:.2g}", eval_cell, rss,
            _duration(epoch), f"{_duration(epoch * max_epochs)} ({max_epochs} ep)", "; ".join(notes)]


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.worker:
        return worker(args)
    # other processes may hold part of the machine: size batches under what is free now
    args.mem_gib = min(args.mem_gib, (mem_available_bytes() - GiB) / GiB)
    if args.list:
        for name, case in CASES.items():
            stage = f" stage {case.stage}" + (" (cached)" if case.cached else "") if case.stage else ""
            print(f"{name:<42} {case.config}{stage}: {case.n_train:,} train / {case.n_val:,} val")
        return
    names = args.cases or list(CASES)
    unknown = [n for n in names if n not in CASES]
    if unknown:
        raise SystemExit(f"unknown case(s) {unknown}; --list shows them")
    rows = []
    for name in names:
        start = time.perf_counter()
        row = measure(name, args)
        row["wall_s"] = time.perf_counter() - start
        rows.append(row)
        print(f"[{name}] {' | '.join(c for c in describe(row) if c)}  ({row['wall_s']:.0f} s)", flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=1))
    head = ["case", "batch", "s/iter", "samples/s", "eval s (batch)", "peak RSS GiB", "epoch", "schedule", "notes"]
    print(f"\nTrue shapes, random weights, {args.threads} threads, RSS budget {args.mem_gib:.1f} GiB, "
          f"median of {args.iters} iterations")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for row in rows:
        print("| " + " | ".join(describe(row)) + " |")


if __name__ == "__main__":
    main()
