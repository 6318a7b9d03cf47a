from xmodal.models.encoders.audio import SpectrogramCNN
from xmodal.models.encoders.avmnist import FiveLayerCNNEncoder, LeNet5Encoder, ThreeLayerCNNEncoder
from xmodal.models.encoders.feature_mlp import FeatureMLP
from xmodal.models.encoders.image import LeNet5, TimmImageEncoder
from xmodal.models.encoders.ravdess import RAVDESSAudioEncoder, RAVDESSVisualEncoder
from xmodal.models.encoders.text import TinyTextEncoder
from xmodal.models.encoders.vggsound import VGGSoundAudioEncoder, VGGSoundVisualEncoder

__all__ = [
    "FeatureMLP",
    "FiveLayerCNNEncoder",
    "LeNet5",
    "LeNet5Encoder",
    "RAVDESSAudioEncoder",
    "RAVDESSVisualEncoder",
    "SpectrogramCNN",
    "ThreeLayerCNNEncoder",
    "TimmImageEncoder",
    "TinyTextEncoder",
    "VGGSoundAudioEncoder",
    "VGGSoundVisualEncoder",
]
