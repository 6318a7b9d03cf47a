"""Distillation losses, one file each, registered in ``xmodal.registry.MODELS`` by class name."""

from xmodal.distill.losses.c2kd import C2KDLoss
from xmodal.distill.losses.crd import CRDLoss
from xmodal.distill.losses.dho import DHOLoss
from xmodal.distill.losses.dist import DISTLoss
from xmodal.distill.losses.dkd import DKDLoss
from xmodal.distill.losses.dual_head_kd import DualHeadKDLoss
from xmodal.distill.losses.fitnet import FitNetLoss
from xmodal.distill.losses.kd import KDLoss
from xmodal.distill.losses.load_balance import LoadBalanceLoss
from xmodal.distill.losses.mad import MADLoss
from xmodal.distill.losses.pld import PLDLoss
from xmodal.distill.losses.rkd import RKDLoss
from xmodal.distill.losses.sinkd import SinKDLoss
from xmodal.distill.losses.taid import TAIDLoss, TAIDSchedule

__all__ = [
    "C2KDLoss",
    "CRDLoss",
    "DHOLoss",
    "DISTLoss",
    "DKDLoss",
    "DualHeadKDLoss",
    "FitNetLoss",
    "KDLoss",
    "LoadBalanceLoss",
    "MADLoss",
    "PLDLoss",
    "RKDLoss",
    "SinKDLoss",
    "TAIDLoss",
    "TAIDSchedule",
]
