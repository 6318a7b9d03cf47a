from xmodal.distill import mst, retrieval
from xmodal.distill.connectors import ConvConnector, LinearConnector
from xmodal.distill.distiller import Distiller
from xmodal.distill.distiller_cache import DistillerCacheHook
from xmodal.distill.dual_head_combiner import DualHeadCombinerHook, search_combiner
from xmodal.distill.losses import DKDLoss, KDLoss, LoadBalanceLoss
from xmodal.distill.recorder import FeatureRecorder
from xmodal.distill.schedules import DistillWeightWarmupHook, TAIDHook
from xmodal.distill.unidistill import (
    UNIDISTILL_WEIGHTS,
    UniDistillFeatureLoss,
    UniDistillRelationLoss,
    UniDistillResponseLoss,
)

__all__ = [
    "ConvConnector",
    "DKDLoss",
    "DistillWeightWarmupHook",
    "Distiller",
    "DistillerCacheHook",
    "DualHeadCombinerHook",
    "FeatureRecorder",
    "KDLoss",
    "LinearConnector",
    "LoadBalanceLoss",
    "TAIDHook",
    "UNIDISTILL_WEIGHTS",
    "UniDistillFeatureLoss",
    "UniDistillRelationLoss",
    "UniDistillResponseLoss",
    "mst",
    "retrieval",
    "search_combiner",
]
