"""Distiller overhead: its mmengine training step vs a hand-written PyTorch loop doing the same work.

    python benchmarks/distiller_overhead.py [--samples 25600] [--batch-size 128] [--repeats 7]

Both paths train the same student (an MLP classifier) against the same frozen teacher (a wider
two-modality MLP) with cross-entropy + KD (T=4) on the same pre-collated synthetic batches, with
SGD + momentum from the same initial weights. "distiller" is ``Distiller.train_step(batch,
optim_wrapper)`` (data preprocessor, loss terms, loss parsing, mmengine ``OptimWrapper``); "plain"
is the loop a user would write: teacher under ``no_grad``, student forward, the two losses,
``zero_grad`` / ``backward`` / ``step``. After a warm-up, the two alternate for ``--repeats`` passes
over the batches; the median samples/s is reported (the ratio targets ≥ 0.95). The first step's
losses of both paths are printed to show they compute the same thing.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=25_600, help="samples per timed pass")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--in-dim", type=int, default=256, help="width of each synthetic modality")
    parser.add_argument("--student-width", type=int, default=256)
    parser.add_argument("--teacher-width", type=int, default=1024)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=20, help="untimed steps per path")
    parser.add_argument("--repeats", type=int, default=7, help="timed passes per path (the median is reported)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks that the script runs")
    args = parser.parse_args(argv)
    if args.quick:
        args.samples, args.batch_size, args.in_dim, args.student_width, args.teacher_width = 256, 64, 32, 32, 64
        args.warmup, args.repeats = 2, 2
    return args


def model_configs(args) -> tuple[dict, dict]:
    head = dict(type="ClsHead", num_classes=args.classes)
    mlp = dict(type="FeatureMLP", in_dim=args.in_dim)
    student = dict(type="ModalityClassifier", head=head,
                   encoders=dict(image=dict(mlp, hidden_dims=(args.student_width,))))
    teacher = dict(type="ModalityClassifier", head=head, fusion=dict(type="ConcatFusion", out_dim=args.teacher_width),
                   encoders=dict(image=dict(mlp, hidden_dims=(args.teacher_width,) * 2),
                                 audio=dict(mlp, hidden_dims=(args.teacher_width,) * 2)))
    return student, teacher


def make_batches(args) -> list[dict]:
    generator = torch.Generator().manual_seed(0)
    batches = []
    for start in range(0, args.samples, args.batch_size):
        n = min(args.batch_size, args.samples - start)
        batches.append({"image": torch.randn(n, args.in_dim, generator=generator),
                        "audio": torch.randn(n, args.in_dim, generator=generator),
                        "label": torch.randint(args.classes, (n,), generator=generator),
                        "index": torch.arange(start, start + n)})
    return batches


class PlainLoop:
    """The hand-written reference: same modules, same losses, plain optimizer calls."""

    def __init__(self, student, teacher, temperature: float, lr: float) -> None:
        self.student, self.teacher, self.t = student.train(), teacher.eval(), temperature
        self.optimizer = torch.optim.SGD(student.parameters(), lr=lr, momentum=0.9)

    def step(self, batch: dict) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            teacher_logits = self.teacher(mode="tensor", **batch)["logits"]
        logits = self.student(mode="tensor", **batch)["logits"]
        ce = F.cross_entropy(logits, batch["label"])
        kd = F.kl_div(F.log_softmax(logits / self.t, 1), F.log_softmax(teacher_logits / self.t, 1),
                      reduction="batchmean", log_target=True) * self.t ** 2
        self.optimizer.zero_grad()
        (ce + kd).backward()
        self.optimizer.step()
        return {"loss_ce": ce.detach(), "loss_kd": kd.detach()}


def build_paths(args):
    from mmengine.optim import OptimWrapper

    from xmodal.distill import Distiller
    from xmodal.registry import MODELS

    student_cfg, teacher_cfg = model_configs(args)
    torch.manual_seed(0)
    teacher = MODELS.build(teacher_cfg).eval().requires_grad_(False)
    distiller = Distiller(student=student_cfg, teachers=dict(t0=dict(model=teacher_cfg, allow_random_init=True)),
                          losses=[dict(type="KDLoss", name="kd", student="logits", teacher="t0.logits",
                                       temperature=4.0)])
    distiller.teachers["t0"].load_state_dict(teacher.state_dict())
    plain = PlainLoop(copy.deepcopy(distiller.student), teacher, temperature=4.0, lr=0.01)
    trainable = [p for p in distiller.parameters() if p.requires_grad]  # the student's
    wrapper = OptimWrapper(torch.optim.SGD(trainable, lr=0.01, momentum=0.9))
    distiller.train()

    def distiller_step(batch):
        return distiller.train_step(batch, optim_wrapper=wrapper)

    return {"distiller": distiller_step, "plain": plain.step}


def timed_pass(step, batches) -> float:
    start = time.perf_counter()
    for batch in batches:
        step(batch)
    return time.perf_counter() - start


def main(argv=None) -> None:
    from mmengine.registry import init_default_scope

    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    init_default_scope("xmodal")
    batches = make_batches(args)
    paths = build_paths(args)
    first = {name: {k: float(v.detach()) for k, v in step(batches[0]).items() if k != "loss"}
             for name, step in paths.items()}
    for step in paths.values():
        for i in range(args.warmup):
            step(batches[i % len(batches)])
    times: dict[str, list[float]] = {name: [] for name in paths}
    for r in range(args.repeats):  # alternate so drifting machine load hits both paths alike
        for name in (list(paths) if r % 2 == 0 else list(paths)[::-1]):
            times[name].append(timed_pass(paths[name], batches))

    n = sum(len(b["label"]) for b in batches)
    print(f"\nDistiller(KD) training step vs a plain PyTorch loop: {n} samples per pass, batch {args.batch_size}, "
          f"in_dim {args.in_dim}, student {args.student_width}, teacher {args.teacher_width}x2 per modality, "
          f"{torch.get_num_threads()} threads, median of {args.repeats} passes")
    print(f"{'path':<10} {'samples/s':>10} {'min':>10} {'max':>10} {'ms/step':>8} {'vs plain':>9}")
    rate = {name: n / statistics.median(t) for name, t in times.items()}
    for name in ("plain", "distiller"):
        rates = [n / t for t in times[name]]
        step_ms = 1000 * statistics.median(times[name]) / len(batches)
        print(f"{name:<10} {rate[name]:>10.0f} {min(rates):>10.0f} {max(rates):>10.0f} {step_ms:>8.2f} "
              f"{rate[name] / rate['plain']:>8.3f}x")
    ratio = rate["distiller"] / rate["plain"]
    print(f"distiller / plain throughput: {ratio:.3f} (target >= 0.95: {'met' if ratio >= 0.95 else 'NOT met'})")
    print("first-step losses: " + "; ".join(f"{name} " + ", ".join(f"{k}={v:.6f}" for k, v in sorted(losses.items()))
                                           for name, losses in first.items()))


if __name__ == "__main__":
    main()
