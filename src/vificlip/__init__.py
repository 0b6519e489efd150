"""vificlip: turn an image-text CLIP model into a video recogniser (ViFi-CLIP, CVPR 2023)."""

from .model import ClipArch, ViFiCLIP

__version__ = "0.1.0"
__all__ = ["ClipArch", "ViFiCLIP", "__version__"]
