"""xmodal: cross-modal and multimodal knowledge distillation."""

from xmodal.version import __version__

__all__ = ["__version__"]
