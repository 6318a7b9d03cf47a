from xmodal.models.classifier import ModalityClassifier
from xmodal.models.encoders import LeNet5, SpectrogramCNN, TimmImageEncoder, TinyTextEncoder
from xmodal.models.fusion import AttentionFusion, ConcatFusion
from xmodal.models.heads import ClsHead

__all__ = [
    "AttentionFusion",
    "ClsHead",
    "ConcatFusion",
    "LeNet5",
    "ModalityClassifier",
    "SpectrogramCNN",
    "TimmImageEncoder",
    "TinyTextEncoder",
]
