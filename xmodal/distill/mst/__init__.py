"""MST-Distill (arXiv 2507.07015): a mixture of specialised teachers, in three stages.

Stage 1 ``MSTCoTrainer`` → stage 2 ``MSTMaskTrainer`` (+ ``BestMaskHook``) → stage 3
``MSTRouterDistiller`` (+ ``RouterHook``, ``TeacherCacheHook``); ``xmodal.apis.stages`` runs them.
"""

from xmodal.distill.mst.cotrain import MSTCoTrainer
from xmodal.distill.mst.gate import GateNet, GateNetDense
from xmodal.distill.mst.hooks import BestMaskHook, RouterHook, TeacherCacheHook
from xmodal.distill.mst.mask_trainer import MSTMaskTrainer
from xmodal.distill.mst.masknet import MaskNet1d, MaskNet2d
from xmodal.distill.mst.router_distiller import MSTRouterDistiller

__all__ = [
    "BestMaskHook",
    "GateNet",
    "GateNetDense",
    "MSTCoTrainer",
    "MSTMaskTrainer",
    "MSTRouterDistiller",
    "MaskNet1d",
    "MaskNet2d",
    "RouterHook",
    "TeacherCacheHook",
]
