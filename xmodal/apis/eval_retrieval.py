"""``tools/eval_retrieval.py CONFIG CHECKPOINT``: embed a split's images and captions with a retrieval
model and report image-text Recall@K (FAISS, the same metric as ``xmodal-retrieval``).

CONFIG is the config the checkpoint was trained with: a plain dual encoder, or a RetrievalDistiller
config (only its student is built and evaluated; no teacher is loaded). CHECKPOINT is a checkpoint
file, a work dir (its best_*.pth) or a student-only ``student_best.pth``. ``--save-embeddings DIR``
writes ``images.npy``, ``captions.npy`` and ``pairs.csv`` (caption row, image row) so that
``xmodal-retrieval --queries DIR/captions.npy --gallery DIR/images.npy --pairs DIR/pairs.csv`` gives the
text→image numbers from the same files.
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import numpy as np
import torch
from mmengine.registry import init_default_scope
from mmengine.runner import Runner

import xmodal.engine  # noqa: F401  (trusted checkpoint loading)
import xmodal.models  # noqa: F401  (registers the models)
from xmodal.apis.config import CfgOptionsAction, config_errors, load_config
from xmodal.apis.errors import cli_errors
from xmodal.engine.checkpoint import atomic_write_bytes, load_weights, resolve_checkpoint
from xmodal.errors import ConfigError
from xmodal.evaluation.retrieval import INDEXES, RetrievalMetric, rerank_summary
from xmodal.registry import MODELS


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Image-text Recall@K of a trained retrieval model: builds the model from CONFIG, loads CHECKPOINT, "
                    "embeds a dataset split and scores it. For embeddings you already have (.npy files), use "
                    "xmodal-retrieval instead.")
    parser.add_argument("config", help="the config the checkpoint was trained with (student or RetrievalDistiller)")
    parser.add_argument("checkpoint", help="checkpoint file, or a work dir to use its best_*.pth")
    parser.add_argument("--split", choices=("val", "test"), default="test", help="which split (default: test)")
    parser.add_argument("--k", type=int, nargs="+", default=[1, 5, 10], help="cut-offs (default: 1 5 10)")
    parser.add_argument("--index", choices=INDEXES, default="flat",
                        help="FAISS index: flat = exact (default); chunked = exact, gallery read in chunks; rerank = "
                             "IVF 8-bit candidates re-ranked exactly in fp32 (same R@K as flat: queries it cannot "
                             "certify are searched exhaustively); ivf/hnsw approximate")
    parser.add_argument("--rerank-fallback", choices=("exact", "none"), default="exact",
                        help="rerank: uncertified queries searched exhaustively (default) or kept, with the "
                             "difference from exact search measured on a sample and printed")
    parser.add_argument("--gpu", action="store_true", help="search on GPU 0 (needs a faiss GPU build)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="where the model runs (default: cuda if available)")
    parser.add_argument("--batch-size", type=int, help="override the split's dataloader batch size")
    parser.add_argument("--json", help="also write the metrics to this JSON file (atomically)")
    parser.add_argument("--save-embeddings", metavar="DIR", help="write images.npy, captions.npy, pairs.csv here")
    parser.add_argument("--cfg-options", nargs="+", action=CfgOptionsAction,
                        help="override config keys: key=value ...")
    return parser.parse_args(argv)


def student_config(model_cfg) -> dict:
    """The model to evaluate: a distiller's student, or the model itself."""
    return model_cfg["student"] if "student" in model_cfg else model_cfg


@torch.no_grad()
def embed(model, dataloader, device: str) -> list[dict]:
    """``predict`` records (``image_embedding``, ``image_index``, ``text_embedding``, ``text_index``) of
    every sample of the dataloader."""
    model.to(device).eval()
    records = []
    for batch in dataloader:
        records += model.test_step(batch)
    return records


def _save_embeddings(metric: RetrievalMetric, out: Path) -> None:
    images, texts = {}, {}
    for image_index, image, text_index, text in metric.results:
        if image is not None:
            images.setdefault(image_index, image)
        if text is not None:
            texts.setdefault(text_index, (image_index, text))
    image_ids = sorted(images)
    row = {idx: r for r, idx in enumerate(image_ids)}
    text_ids = sorted(texts)
    out.mkdir(parents=True, exist_ok=True)
    for name, array in (("images.npy", np.stack([images[i] for i in image_ids]).astype(np.float32)),
                        ("captions.npy", np.stack([texts[t][1] for t in text_ids]).astype(np.float32))):
        buffer = io.BytesIO()
        np.save(buffer, array)
        atomic_write_bytes(buffer.getvalue(), out / name)
    lines = ["query,gallery"] + [f"{r},{row[texts[t][0]]}" for r, t in enumerate(text_ids)]
    atomic_write_bytes(("\n".join(lines) + "\n").encode(), out / "pairs.csv")
    ids = {"image_index": [int(i) for i in image_ids], "text_index": [int(t) for t in text_ids]}
    atomic_write_bytes(json.dumps(ids).encode(), out / "ids.json")


def evaluate(config: str, checkpoint: str, split: str = "test", ks=(1, 5, 10), index: str = "flat",
             gpu: bool = False, device: str = "cpu", batch_size: int | None = None, json_out: str | None = None,
             save_embeddings: str | None = None, cfg_options: dict | None = None,
             rerank_fallback: str = "exact") -> dict:
    cfg = load_config(config, cfg_options)
    init_default_scope(cfg.get("default_scope", "xmodal"))  # the dataloader is built without a Runner
    loader_cfg = cfg.get(f"{split}_dataloader")
    if loader_cfg is None:
        raise ConfigError(f"{config}: {split}_dataloader: required key missing; --split {split} reads it")
    if batch_size:
        loader_cfg.batch_size = batch_size
    with config_errors(cfg):  # a bad type or argument deep in the model: named by its config key
        model = MODELS.build(student_config(cfg.model))
    if not {"image_embedding", "text_embedding"} <= set(getattr(model, "output_keys", ())):
        raise ConfigError(f"{config}: the model ({type(model).__name__}) is not a retrieval model with image and "
                        f"text embeddings (DualEncoder or CrossEncoder)")
    path = resolve_checkpoint(checkpoint)
    load_weights(model, path, what="model")
    with config_errors(cfg):
        records = embed(model, Runner.build_dataloader(loader_cfg), device)
    options = dict(fallback=rerank_fallback) if index == "rerank" else {}
    metric = RetrievalMetric(ks=ks, index=index, gpu=gpu, **options)
    metric.process({}, records)
    metrics = metric.compute_metrics(metric.results)
    if save_embeddings:
        _save_embeddings(metric, Path(save_embeddings))
    if json_out:
        report = {"config": str(config), "checkpoint": str(path), "split": split, "index": index, "metrics": metrics}
        atomic_write_bytes((json.dumps(report, indent=2) + "\n").encode(), Path(json_out))
    return metrics


def print_table(metrics: dict, ks, title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for name in ("direction", *(f"R@{k}" for k in ks)):
        table.add_column(name, justify="left" if name == "direction" else "right")
    for prefix, label in (("text_retrieval", "image→text"), ("image_retrieval", "text→image")):
        table.add_row(label, *(f"{100 * metrics[f'{prefix}_recall@{k}']:.2f}" for k in ks))
    table.caption = f"mean recall {100 * metrics['mean_recall']:.2f}"
    Console().print(table)
    for prefix, label in (("text_retrieval", "image→text"), ("image_retrieval", "text→image")):
        info = {key[len(prefix) + 1:]: value for key, value in metrics.items() if key.startswith(prefix + "_rerank_")}
        if info and (line := rerank_summary({**info, "num_queries": info["rerank_queries"]}, ks)):
            print(f"{label}: {line}")


@cli_errors
def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    metrics = evaluate(args.config, args.checkpoint, args.split, args.k, args.index, args.gpu, args.device,
                       args.batch_size, args.json, args.save_embeddings, args.cfg_options, args.rerank_fallback)
    print_table(metrics, args.k, f"{Path(args.config).stem}: {args.split} split, Recall@K (%)")
    return metrics


if __name__ == "__main__":
    main()
