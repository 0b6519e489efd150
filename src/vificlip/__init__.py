"""vificlip: turn an image-text CLIP model into a video recogniser (ViFi-CLIP, CVPR 2023).

import vificlip
recognizer = vificlip.load("checkpoint.safetensors")        # any supported format, or a built-in name
recognizer.predict("clip.mp4", ["dancing", "swimming"])
"""

from .model import ClipArch, ViFiCLIP

__version__ = "0.1.0"
__all__ = ["ClipArch", "ViFiCLIP", "__version__", "load"]


def load(checkpoint, base=None, **kwargs):
    """A :class:`~vificlip.tools.predict.VideoRecognizer` for ``checkpoint`` (imported lazily: decoders load here)."""
    from .tools.predict import load as load_recognizer

    return load_recognizer(checkpoint, base=base, **kwargs)
