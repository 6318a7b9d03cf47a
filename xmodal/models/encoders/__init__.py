from xmodal.models.encoders.audio import SpectrogramCNN
from xmodal.models.encoders.feature_mlp import FeatureMLP
from xmodal.models.encoders.image import LeNet5, TimmImageEncoder
from xmodal.models.encoders.ravdess import RAVDESSAudioEncoder, RAVDESSVisualEncoder
from xmodal.models.encoders.text import TinyTextEncoder
from xmodal.models.encoders.vggsound import VGGSoundAudioEncoder, VGGSoundVisualEncoder

__all__ = [
    "FeatureMLP",
    "LeNet5",
    "RAVDESSAudioEncoder",
    "RAVDESSVisualEncoder",
    "SpectrogramCNN",
    "TimmImageEncoder",
    "TinyTextEncoder",
    "VGGSoundAudioEncoder",
    "VGGSoundVisualEncoder",
]
