from xmodal.distill import mst
from xmodal.distill.connectors import ConvConnector, LinearConnector
from xmodal.distill.distiller import Distiller
from xmodal.distill.losses import KDLoss, LoadBalanceLoss
from xmodal.distill.recorder import FeatureRecorder

__all__ = ["ConvConnector", "Distiller", "FeatureRecorder", "KDLoss", "LinearConnector", "LoadBalanceLoss", "mst"]
