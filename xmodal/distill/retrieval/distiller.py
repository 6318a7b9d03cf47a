"""RetrievalDistiller: a dual-encoder student taught by a cross-encoder (or larger dual-encoder)
teacher through a candidate-ranking loss (CPRDLoss, DCDLoss), in both retrieval directions.

Each step, for every in-batch pair (image b, caption b):
1. the student embeds the batch and computes its ITC loss (the task loss);
2. for each direction (``i2t``: image queries over the batch's captions, ``t2i``: caption queries over
   its images) the student mines its ``num_negatives`` hardest in-batch negatives per query
   (``candidates="hard"``), or they are drawn at random (``"random"``, DCD's official sampling,
   which also uses ``directions=("i2t",)``);
3. the teacher scores only the query's positive and those negatives (B × (1 + K) pairs, not B × B;
   for a cross-encoder one vision pass per image and one text pass per scored pair);
4. the loss compares the student's scores (logit scale × cosine) with the teacher's on those
   candidates. Total = task_loss_weight · ITC + loss_weight · mean over directions.
"""

from __future__ import annotations

import torch
from torch import nn

from xmodal.distill.base import BaseDistiller, build_teacher
from xmodal.distill.retrieval.mining import mine_candidates, sample_candidates
from xmodal.models.dual_encoder import positives_mask
from xmodal.registry import MODELS

DIRECTIONS = ("i2t", "t2i")
CANDIDATES = ("hard", "random")


def _rename_old_teacher_keys(state_dict, prefix, *args) -> None:
    """Checkpoints written before the teacher moved under ``teachers.`` keep loading."""
    for key in [k for k in state_dict if k.startswith(prefix + "teacher.")]:
        state_dict[prefix + "teachers.teacher." + key[len(prefix + "teacher."):]] = state_dict.pop(key)


@MODELS.register_module()
class RetrievalDistiller(BaseDistiller):
    """``teacher``: one teacher spec (as in :func:`build_teacher`), kept as ``teachers['teacher']``."""

    def __init__(self, student: dict, teacher: dict, loss: dict, num_negatives: int = 15, loss_weight: float = 1.0,
                 task_loss_weight: float = 1.0, directions: tuple[str, ...] | str = DIRECTIONS,
                 candidates: str = "hard", init_from: str | None = None, data_preprocessor: dict | None = None,
                 init_cfg: dict | None = None) -> None:
        directions = (directions,) if isinstance(directions, str) else directions
        unknown = set(directions) - set(DIRECTIONS)
        if unknown or not directions:
            raise ValueError(f"RetrievalDistiller: directions must be a non-empty subset of {DIRECTIONS}, "
                             f"got {tuple(directions)}")
        if candidates not in CANDIDATES:
            raise ValueError(f"RetrievalDistiller: candidates={candidates!r}; expected one of {CANDIDATES}")
        super().__init__(student, {"teacher": teacher}, init_from=init_from, data_preprocessor=data_preprocessor,
                         init_cfg=init_cfg)
        self._register_load_state_dict_pre_hook(_rename_old_teacher_keys)
        for method in ("prepare", "pair_scores"):
            if not hasattr(self.teacher, method) and not (method == "prepare" and hasattr(self.teacher, "extract")):
                raise TypeError(f"RetrievalDistiller: the teacher ({type(self.teacher).__name__}) has no '{method}'; "
                                f"use a CrossEncoder or DualEncoder")
        self.loss = MODELS.build(loss)
        self.num_negatives, self.loss_weight = int(num_negatives), float(loss_weight)
        self.task_loss_weight, self.directions = float(task_loss_weight), tuple(directions)
        self.candidates = candidates

    def build_teacher(self, name: str, spec: dict) -> nn.Module:
        return build_teacher(name, spec, key="model.teacher")

    @property
    def teacher(self) -> nn.Module:
        return self.teachers["teacher"]

    def _teacher_inputs(self, batch: dict) -> dict:
        prepare = getattr(self.teacher, "prepare", None) or self.teacher.extract
        return prepare(batch)

    def distill_losses(self, batch: dict) -> dict[str, torch.Tensor]:
        out = self.student.extract(batch)
        image_emb, text_emb, scale = out["image_embedding"], out["text_embedding"], out["logit_scale"]
        image_index = batch.get("image_index", torch.arange(len(image_emb), device=image_emb.device))
        losses = {}
        if self.task_loss_weight:
            losses.update({k: v * self.task_loss_weight for k, v in self.student.task_loss(out, batch).items()})
        similarity = scale * image_emb @ text_emb.t()  # rows: images, columns: captions
        positives = positives_mask(image_index.to(similarity.device))
        with torch.no_grad():
            teacher_inputs = self._teacher_inputs(batch)
        values = []
        for direction in self.directions:
            sim = similarity if direction == "i2t" else similarity.t()
            candidates = (mine_candidates(sim, positives, self.num_negatives) if self.candidates == "hard"
                          else sample_candidates(positives, self.num_negatives))  # (B, 1 + K)
            queries = torch.arange(len(sim), device=sim.device).view(-1, 1).expand_as(candidates)
            student_scores = sim.gather(1, candidates)
            image_rows, text_rows = (queries, candidates) if direction == "i2t" else (candidates, queries)
            with torch.no_grad():
                teacher_scores = self.teacher.pair_scores(teacher_inputs, image_rows.reshape(-1),
                                                          text_rows.reshape(-1)).view_as(candidates)
            value = self.loss(student_scores, teacher_scores)
            losses[f"loss_{direction}"] = self.loss_weight * value / len(self.directions)
            values.append(value)
        return losses
