from xmodal.models.bev import (
    BEVDetector,
    CenterPointHead,
    ConvBEVFuser,
    LiftSplatCamera,
    PillarFeatureNet,
    SECONDFPNBackbone,
)
from xmodal.models.classifier import ModalityClassifier
from xmodal.models.cross_encoder import CrossEncoder
from xmodal.models.dual_encoder import DualEncoder
from xmodal.models.dual_head import DualHeadClassifier
from xmodal.models.encoders import LeNet5, SpectrogramCNN, TimmImageEncoder, TinyTextEncoder
from xmodal.models.fusenet import FuseNetSegmenter
from xmodal.models.fusion import AttentionFusion, ConcatFusion
from xmodal.models.heads import ClsHead
from xmodal.models.mlp_fusion import MLPFusion

__all__ = [
    "AttentionFusion",
    "BEVDetector",
    "CenterPointHead",
    "ClsHead",
    "ConcatFusion",
    "ConvBEVFuser",
    "CrossEncoder",
    "DualEncoder",
    "DualHeadClassifier",
    "FuseNetSegmenter",
    "LeNet5",
    "LiftSplatCamera",
    "MLPFusion",
    "ModalityClassifier",
    "PillarFeatureNet",
    "SECONDFPNBackbone",
    "SpectrogramCNN",
    "TimmImageEncoder",
    "TinyTextEncoder",
]
