"""MST-Distill on AV-MNIST: xmodal against the official code (Gray-OREO/MST-Distill) on identical tensors.

    python benchmarks/mst_vs_official.py --official-repo PATH     # both sides, and the ratio
    python benchmarks/mst_vs_official.py                          # xmodal's side only

PATH is a checkout of the official repository; its code is imported from there and patched in memory
(nothing of it is copied into this repository): the device is the CPU, ``utils.get_data`` returns the
synthetic tensors below instead of reading ``G:/Gray/Database_CMKD``, ``utils.get_dataset`` slices them
instead of reading ``metadata/*.csv``, and modules the AV-MNIST path imports but never calls
(``torchinfo``, ``tensorboardX``, ``pandas`` when absent) are stubs.

Data: ``--train`` (2,000) synthetic samples of ``get_av_mnist``'s shapes, image 1x28x28 and audio 1x112x112
in [0, 1], 10 classes, the same tensors for both sides. Weights are random: speed and memory do not
depend on them.

1. Stage 3 (routing distillation), the official loop body of ``main-MST-Distill.py`` (its models,
   ``get_MSTmodules``, ``TGroup_forward`` / ``AGroup_forward``, ``k_ways_MTGdistillation_detached``,
   ``load_balancing_loss``, Adam over student + GateNet) against stage 3 of
   ``configs/mst_distill/mst_avmnist_image.py`` (``train_step``), live teachers and with the teacher cache
   (its build timed apart), at batch 128 and 512, ``--iters`` iterations after one warm-up. Each run is a
   fresh process; one whose RSS would pass the budget is stopped and reported with its estimate (the
   official batch 512 is estimated from batches 64 and 128 and not run when it cannot fit).
2. The whole recipe at 1+1+1 epochs (stage 3 with the cache, as shipped), each side a fresh process:
   the official ``main-MST-Distill.py`` run as a script with the patches above, and ``tools/train.py`` on
   the config over the same samples written as an xmodal dataset. Both at ``--recipe-batch`` (128: the
   official code does not fit 512 in 24 GiB).
"""

from __future__ import annotations

import argparse
import importlib.machinery
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from true_shapes import GiB, mem_available_bytes, start_watchdog  # noqa: E402

CONFIG = REPO / "configs/mst_distill/mst_avmnist_image.py"
OFFICIAL_FILES = ("main-MST-Distill.py", "utils.py", "KD_methods/MST.py", "models/CNNs.py", "models/LeNet5.py")
N_VAL = 500  # validation and test samples of the synthetic set (the recipe's per-epoch validation)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official-repo", help="a checkout of Gray-OREO/MST-Distill")
    parser.add_argument("--train", type=int, default=2000, help="synthetic training samples")
    parser.add_argument("--iters", type=int, default=5, help="timed stage-3 iterations per run")
    parser.add_argument("--batches", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--recipe-batch", type=int, default=128)
    parser.add_argument("--no-recipe", action="store_true", help="stage 3 only")
    parser.add_argument("--mem-gib", type=float, default=22.0, help="RSS budget of one run")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # internal: official | xmodal | xmodal-cached
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def check_official_repo(path: str) -> Path:
    root = Path(path)
    if not root.is_dir():
        raise SystemExit(f"--official-repo {path}: not a directory")
    missing = [name for name in OFFICIAL_FILES if not (root / name).is_file()]
    if missing:
        raise SystemExit(f"--official-repo {path}: not the expected Gray-OREO/MST-Distill layout: {missing[0]} is "
                         f"missing" + (f" (and {', '.join(missing[1:])})" if missing[1:] else ""))
    return root.resolve()


def synthetic(n_train: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Image (N, 1, 28, 28), audio (N, 1, 112, 112) in [0, 1] and labels: train first, then val and test."""
    gen = torch.Generator().manual_seed(seed)
    n = n_train + 2 * N_VAL
    return (torch.rand(n, 1, 28, 28, generator=gen), torch.rand(n, 1, 112, 112, generator=gen),
            torch.randint(0, 10, (n,), generator=gen))


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# --- the official code, patched in memory -----------------------------------------------------------------


def _stub(name: str, **attrs) -> None:
    try:
        __import__(name)
    except ImportError:
        module = types.ModuleType(name)
        module.__spec__ = importlib.machinery.ModuleSpec(name, None)  # find_spec() callers expect one
        module.__dict__.update(attrs)
        sys.modules[name] = module


class _NullWriter:
    def __init__(self, *args, **kwargs) -> None:
        pass

    def add_scalar(self, *args, **kwargs) -> None:
        pass

    def close(self) -> None:
        pass


def load_official(root: Path, n_train: int):
    """The official ``utils`` and ``KD_methods.MST`` modules with the CPU/synthetic-data patches."""
    _stub("torchinfo", summary=lambda *a, **k: None)
    _stub("tensorboardX", SummaryWriter=_NullWriter)
    _stub("pandas", read_csv=lambda *a, **k: None)
    sys.path.insert(0, str(root))
    import utils  # the official utils.py

    data = synthetic(n_train)
    splits = {"train": range(0, n_train), "val": range(n_train, n_train + N_VAL),
              "test": range(n_train + N_VAL, n_train + 2 * N_VAL)}
    utils.get_data = lambda name: data
    utils.get_dataset = lambda name, d, phase, exp_id: tuple([x[i] for i in splits[phase]] for x in d)
    import Dataset  # binds get_data/get_dataset by name at import: patch there too

    Dataset.get_data, Dataset.get_dataset = utils.get_data, utils.get_dataset
    from KD_methods import MST

    return utils, MST


def official_stage3(root: Path, batch: int, iters: int, n_train: int) -> dict:
    utils, mst = load_official(root, n_train)
    from models.CNNs import IntermediateFusionNet, ThreeLayerCNN_A
    from models.LeNet5 import LeNet5

    args = types.SimpleNamespace(database="AV-MNIST", Tmodel="CNN-I", Smodel="LeNet5", AUXmodel="ThreeLayerCNN-A",
                                 mode="m1", k=1, mask_layer_num=2, hidden_dim_factor=2, mask_head_num=3, lb_mode="KL",
                                 w_task=1.0, w_kl=1.0, w_lb=1.0)
    torch.manual_seed(0)
    model_t, model_a, model_s = IntermediateFusionNet(), ThreeLayerCNN_A(cls_num=10), LeNet5(cls_num=10)
    t_names, a_names, masks_t, masks_a, gate = mst.get_MSTmodules(args)
    optimizer = torch.optim.Adam(list(model_s.parameters()) + list(gate.parameters()), lr=1e-4)
    criterion = torch.nn.CrossEntropyLoss()
    for module in (*masks_t, *masks_a, model_t, model_a):
        module.eval()
    model_s.train()
    gate.train()
    image, audio, label = synthetic(n_train)

    def step(lo: int) -> None:  # main-MST-Distill.py, stage 3, one iteration
        x, x2, y = image[lo:lo + batch], audio[lo:lo + batch], label[lo:lo + batch]
        outputs_t, hooks_t = mst.TGroup_forward(x, x2, model_t, masks_t, t_names, None)
        outputs_a, hooks_a = mst.AGroup_forward(x2, model_a, masks_a, a_names, None)
        outputs_s = model_s(x)
        probs = torch.nn.Softmax(dim=1)(gate(outputs_s))
        [criterion(o, y) for o in outputs_t + outputs_a]  # the official loop computes the experts' task losses
        task = criterion(outputs_s, y)
        lb = mst.load_balancing_loss(probs, mode=args.lb_mode)
        kd, _ = mst.k_ways_MTGdistillation_detached(args, outputs_t + outputs_a, outputs_s, probs, args.k)
        loss = args.w_task * task + args.w_kl * kd + args.w_lb * lb
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        mst.hooks_remover(hooks_t)
        mst.hooks_remover(hooks_a)

    return _timed(step, batch, iters, n_train)


# --- xmodal ----------------------------------------------------------------------------------------------


def xmodal_stage3(batch: int, iters: int, n_train: int, cached: bool) -> dict:
    from mmengine.config import Config
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import init_default_scope

    import xmodal.distill  # noqa: F401
    import xmodal.models  # noqa: F401
    from xmodal.apis.stages import stage_config
    from xmodal.registry import MODELS

    init_default_scope("xmodal")
    cfg = Config.fromfile(str(CONFIG))
    cfg.work_dir = tempfile.mkdtemp(prefix="mst-vs-official-")
    scfg = stage_config(cfg, 3)
    scfg.model.pop("init_from")
    torch.manual_seed(0)
    model = MODELS.build(scfg.model)
    wrapper = build_optim_wrapper(model, scfg.optim_wrapper.to_dict())
    image, audio, label = synthetic(n_train)
    info = {}
    if cached:  # what TeacherCacheHook computes once per run: every expert's logits on the training split
        start = time.perf_counter()
        model.eval()
        cache = np.concatenate([model.all_expert_logits({"image": image[i:i + 256], "audio": audio[i:i + 256]})
                                .numpy() for i in range(0, n_train, 256)])
        info["cache_build_s"] = time.perf_counter() - start
        model.attach_cache(cache)
    model.train()

    def step(lo: int) -> None:
        model.train_step({"image": image[lo:lo + batch], "audio": audio[lo:lo + batch],
                          "label": label[lo:lo + batch], "index": torch.arange(lo, min(lo + batch, n_train))}, wrapper)

    return {**_timed(step, batch, iters, n_train), **info}


def _timed(step, batch: int, iters: int, n_train: int) -> dict:
    starts = [(i * batch) % max(1, n_train - batch + 1) for i in range(iters + 1)]
    step(starts[0])  # warm-up
    start = time.perf_counter()
    for lo in starts[1:]:
        step(lo)
    seconds = time.perf_counter() - start
    return {"samples_per_s": iters * batch / seconds, "s_per_iter": seconds / iters, "peak_rss": _peak_rss()}


# --- the whole recipe --------------------------------------------------------------------------------------


def official_recipe(root: Path, batch: int, n_train: int) -> None:
    """main-MST-Distill.py at 1+1+1 epochs, as a script, on the synthetic tensors, on the CPU."""
    load_official(root, n_train)
    source = (root / "main-MST-Distill.py").read_text()
    device_line = 'device = torch.device(f"cuda:{args.cuda_id}")'
    if device_line not in source:
        raise SystemExit(f"{root / 'main-MST-Distill.py'}: the device line to patch ({device_line}) is not there")
    code = compile(source.replace(device_line, 'device = torch.device("cpu")'), str(root / "main-MST-Distill.py"),
                   "exec")
    sys.argv = ["main-MST-Distill.py", "--database", "AV-MNIST", "--batch_size", str(batch), "--mode", "m1",
                "--Tmodel", "CNN-I", "--Smodel", "LeNet5", "--AUXmodel", "ThreeLayerCNN-A",
                "--epochs_s1", "1", "--epochs_s2", "1", "--epochs", "1"]
    os.chdir(tempfile.mkdtemp(prefix="mst-official-"))  # it writes logs/ and checkpoints/ where it runs
    exec(code, {"__name__": "__main__", "__file__": str(root / "main-MST-Distill.py")})


def write_dataset(root: Path, n_train: int) -> Path:
    from xmodal.data.writer import write_dataset as write

    image, audio, label = synthetic(n_train)
    n = len(label)
    splits = {"train": list(range(n_train)), "val": list(range(n_train, n_train + N_VAL)),
              "test": list(range(n_train + N_VAL, n))}
    write(root, {"image": image.numpy(), "audio": audio.numpy()}, label.numpy(), [str(d) for d in range(10)],
          name="synthetic-avmnist", source="benchmarks/mst_vs_official.py", splits=splits)
    return root


def xmodal_recipe(batch: int, n_train: int) -> list[str]:
    data = write_dataset(Path(tempfile.mkdtemp(prefix="mst-data-")) / "avmnist", n_train)
    work = tempfile.mkdtemp(prefix="mst-work-")
    return [sys.executable, str(REPO / "tools/train.py"), str(CONFIG), "--work-dir", work,
            "--cfg-options", "stages.2.train_cfg.max_epochs=1", "stages.2.param_scheduler.0.end=1",
            f"train_dataloader.dataset.data_root={data}", f"val_dataloader.dataset.data_root={data}",
            f"test_dataloader.dataset.data_root={data}", f"train_dataloader.batch_size={batch}",
            f"val_dataloader.batch_size={batch}", "train_dataloader.num_workers=0", "val_dataloader.num_workers=0",
            "test_dataloader.num_workers=0", "log_level=WARNING"]


# --- the driver ---------------------------------------------------------------------------------------------


def run_worker(kind: str, batch: int, args) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = f.name
    cmd = [sys.executable, __file__, "--worker", kind, "--batch", str(batch), "--iters", str(args.iters),
           "--train", str(args.train), "--mem-gib", str(args.mem_gib), "--threads", str(args.threads), "--out", out]
    if args.official_repo:
        cmd += ["--official-repo", args.official_repo]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    text = Path(out).read_text()
    Path(out).unlink()
    if not text:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"error": f"exit {proc.returncode}: " + " | ".join(tail)}
    return json.loads(text)


def timed_process(cmd: list[str], env: dict | None = None) -> dict:
    """Wall time and peak RSS of a whole command (its largest process), the way /usr/bin/time -v counts."""
    with tempfile.TemporaryFile() as log:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own accounting, not the maximum over all children
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode:
            log.seek(0)
            tail = log.read().decode(errors="replace").strip().splitlines()[-3:]
            return {"error": f"exit {proc.returncode}: " + " | ".join(tail), "wall_s": wall}
    return {"wall_s": wall, "peak_rss": usage.ru_maxrss * 1024}


def worker(args) -> None:
    torch.set_num_threads(args.threads)
    start_watchdog(int(args.mem_gib * GiB), args.out, {"kind": args.worker, "batch": args.batch})
    if args.worker == "official":
        result = official_stage3(Path(args.official_repo), args.batch, args.iters, args.train)
    elif args.worker == "official-recipe":
        official_recipe(Path(args.official_repo), args.batch, args.train)
        result = {"peak_rss": _peak_rss()}
    else:
        result = xmodal_stage3(args.batch, args.iters, args.train, cached=args.worker == "xmodal-cached")
    Path(args.out).write_text(json.dumps({"kind": args.worker, "batch": args.batch, **result}))


def _cell(result: dict | None, key: str, fmt: str) -> str:
    if result is None:
        return "—"
    if result.get("aborted"):
        return "over budget"
    if result.get("error") or result.get("estimate"):
        return "—"
    return format(result[key], fmt)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.official_repo:
        args.official_repo = str(check_official_repo(args.official_repo))
    if args.worker:
        return worker(args)
    args.mem_gib = min(args.mem_gib, (mem_available_bytes() - GiB) / GiB)
    rows = []
    for batch in args.batches:
        row = {"batch": batch}
        if args.official_repo:
            if batch > 128:  # estimate first: the official stage 3 keeps every expert's graph (14.9 GiB at 128)
                small = [run_worker("official", b, args) for b in (64, 128)]
                if all("peak_rss" in s and not s.get("aborted") for s in small):
                    slope = (small[1]["peak_rss"] - small[0]["peak_rss"]) / 64
                    estimate = small[1]["peak_rss"] + slope * (batch - 128)
                    if estimate > args.mem_gib * GiB:
                        row["official"] = {"estimate": estimate}
            if "official" not in row:
                row["official"] = run_worker("official", batch, args)
        row["xmodal"] = run_worker("xmodal", batch, args)
        row["xmodal-cached"] = run_worker("xmodal-cached", batch, args)
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(f"\nMST-Distill stage 3 on AV-MNIST shapes, {args.train:,} synthetic training samples, {args.iters} "
          f"iterations after a warm-up, {args.threads} threads, RSS budget {args.mem_gib:.1f} GiB")
    print("| batch | side | samples/s | peak RSS GiB | xmodal / official |")
    print("|---:|---|---:|---:|---:|")
    for row in rows:
        official = row.get("official")
        for side in ("official", "xmodal", "xmodal-cached"):
            result = row.get(side)
            if result is None:
                continue
            label = {"official": "official (live teachers, graph kept)", "xmodal": "xmodal, live teachers",
                     "xmodal-cached": "xmodal, teacher cache"}[side]
            if result.get("estimate"):
                print(f"| {row['batch']} | {label} | not run | ~{result['estimate'] / GiB:.0f} (est.) | |")
                continue
            if result.get("error") or result.get("aborted"):
                print(f"| {row['batch']} | {label} | {result.get('error') or 'stopped over the RSS budget'} | | |")
                continue
            ratio = ""
            if side != "official" and official and "samples_per_s" in official:
                ratio = f"{result['samples_per_s'] / official['samples_per_s']:.0f}x"
            extra = f" (cache build {result['cache_build_s']:.1f} s once)" if "cache_build_s" in result else ""
            print(f"| {row['batch']} | {label}{extra} | {result['samples_per_s']:.1f} | "
                  f"{result['peak_rss'] / GiB:.2f} | {ratio} |")
    if args.no_recipe:
        return
    print(f"\nWhole recipe, 1+1+1 epochs, batch {args.recipe_batch}, {args.train:,} training + {N_VAL} validation "
          f"samples, one fresh process each")
    recipe = {}
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    if args.official_repo:
        recipe["official"] = timed_process([sys.executable, __file__, "--worker", "official-recipe", "--batch",
                                            str(args.recipe_batch), "--train", str(args.train), "--mem-gib",
                                            str(args.mem_gib), "--threads", str(args.threads), "--out", os.devnull,
                                            "--official-repo", args.official_repo], env)
    recipe["xmodal"] = timed_process(xmodal_recipe(args.recipe_batch, args.train), env)
    print("| side | wall s | peak RSS GiB | official / xmodal |")
    print("|---|---:|---:|---:|")
    for side, result in recipe.items():
        if result.get("error"):
            print(f"| {side} | {result['error']} | |")
            continue
        ratio = ""
        if side == "xmodal" and "official" in recipe and "error" not in recipe["official"]:
            ratio = f"{recipe['official']['wall_s'] / result['wall_s']:.1f}x"
        print(f"| {side} | {result['wall_s']:.1f} | {result['peak_rss'] / GiB:.2f} | {ratio} |")


if __name__ == "__main__":
    main()
