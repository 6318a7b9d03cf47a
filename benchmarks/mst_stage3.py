"""MST-Distill stage 3: one training epoch with live teacher forwards vs the teacher cache.

    python benchmarks/mst_stage3.py [--config configs/mst_distill/mst_digits_image.py] [--epochs 2]

Stage 3 trains the student and the GateNet; the teachers and their masks are frozen and the inputs
are not augmented, so every expert's logits per sample are fixed. Uncached, each step runs every
teacher once per expert (4 forwards with the default mask layers); cached, they are computed once
and read back from a memory-mapped file. Weights are random: speed does not depend on them. Also
prints the MaskNet parameter counts, for this recipe and for the official AV-MNIST layers.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "configs/mst_distill/mst_digits_image.py"))
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per mode (the median is reported)")
    parser.add_argument("--batch-size", type=int, help="default: the config's")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    return parser.parse_args(argv)


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _epoch(model, loader, optimizer) -> float:
    model.train()
    start = time.perf_counter()
    for batch in loader:
        batch = model.data_preprocessor(batch, True)
        loss = sum(model(mode="loss", **batch).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def main(argv=None) -> None:
    from xmodal.apis.stages import stage_config
    from xmodal.distill.mst.hooks import build_expert_cache
    from xmodal.distill.mst.masknet import masknet_1d_num_params, masknet_2d_num_params
    from xmodal.registry import DATASETS, MODELS

    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    init_default_scope("xmodal")
    cfg = Config.fromfile(args.config)
    cfg.work_dir = tempfile.mkdtemp(prefix="mst-bench-")
    scfg = stage_config(cfg, len(cfg.stages))
    scfg.model.pop("init_from")
    torch.manual_seed(0)
    model = MODELS.build(scfg.model)
    dataset = DATASETS.build(scfg.train_dataloader.dataset)
    from mmengine.dataset import default_collate

    batch_size = args.batch_size or scfg.train_dataloader.batch_size
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, collate_fn=default_collate)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=1e-4)

    rows = []
    _epoch(model, loader, optimizer)  # warm-up (allocator, kernels)
    live = sorted(_epoch(model, loader, optimizer) for _ in range(args.epochs))
    rows.append(("live teachers", 0.0, live[len(live) // 2], _peak_rss_mib()))
    start = time.perf_counter()
    model.attach_cache(build_expert_cache(model, dataset, default_collate, Path(cfg.work_dir) / "cache"))
    build = time.perf_counter() - start
    cached = sorted(_epoch(model, loader, optimizer) for _ in range(args.epochs))
    rows.append(("teacher cache", build, cached[len(cached) // 2], _peak_rss_mib()))

    n = len(dataset)
    print(f"\nMST-Distill stage 3, {Path(args.config).name}: {n} training samples, batch {batch_size}, "
          f"{len(model.experts)} experts, {torch.get_num_threads()} threads, median of {args.epochs} epochs")
    print(f"{'mode':<15} {'cache build s':>13} {'epoch s':>9} {'samples/s':>10} {'peak RSS MiB':>13}")
    for mode, build_s, epoch_s, rss in rows:
        print(f"{mode:<15} {build_s:>13.2f} {epoch_s:>9.2f} {n / epoch_s:>10.0f} {rss:>13.0f}")
    print(f"speed-up per epoch: {rows[0][2] / rows[1][2]:.1f}x")

    print(f"\nMaskNet parameters ({Path(args.config).name})")
    for expert, mask in zip(model.experts, model.masks):
        print(f"  {expert.name:<40} {type(mask).__name__:<10} {sum(p.numel() for p in mask.parameters()):>12,}")
    print(f"  {'student (trainable)':<40} {'':<10} {sum(p.numel() for p in model.student.parameters()):>12,}")
    print("MaskNet parameters, official AV-MNIST layers, image student (factor 2, 3 heads)")
    official = (("CNN-I concat_identity (596)", 596, False), ("CNN-I fc1 (298)", 298, False),
                ("ThreeLayerCNN-A conv2 (64x56x56)", 64, True), ("ThreeLayerCNN-A conv3 (128x28x28)", 128, True))
    for name, width, is_2d in official:
        count = masknet_2d_num_params(width) if is_2d else masknet_1d_num_params(width)
        print(f"  {name:<40} {'MaskNet2d' if is_2d else 'MaskNet1d':<10} {count:>12,}")


if __name__ == "__main__":
    main()
