"""Retrieval distillation: dual-encoder students taught by cross-encoder or dual-encoder teachers."""

from xmodal.distill.retrieval.cprd import CPRDLoss
from xmodal.distill.retrieval.dcd import DCDLoss
from xmodal.distill.retrieval.distiller import RetrievalDistiller
from xmodal.distill.retrieval.mining import mine_candidates, sample_candidates

__all__ = ["CPRDLoss", "DCDLoss", "RetrievalDistiller", "mine_candidates", "sample_candidates"]
