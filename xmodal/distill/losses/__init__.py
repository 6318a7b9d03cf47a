"""Distillation losses, one file each, registered in ``xmodal.registry.MODELS`` by class name."""

from xmodal.distill.losses.kd import KDLoss

__all__ = ["KDLoss"]
