from xmodal.models.encoders.audio import SpectrogramCNN
from xmodal.models.encoders.image import LeNet5, TimmImageEncoder
from xmodal.models.encoders.text import TinyTextEncoder

__all__ = ["LeNet5", "SpectrogramCNN", "TimmImageEncoder", "TinyTextEncoder"]
