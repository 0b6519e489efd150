"""vificlip: turn an image-text CLIP model into a video recogniser (ViFi-CLIP, CVPR 2023).

import vificlip
recognizer = vificlip.load("checkpoint.safetensors")        # any format, a run folder, or a name:
recognizer = vificlip.load("hf-hub:ORG/REPO")                # a published model (or openai/ViT-B-16, …)
recognizer.predict("clip.mp4", ["dancing", "swimming"])
"""

from .model import ClipArch, ViFiCLIP

__version__ = "0.1.0"
__all__ = ["ClipArch", "ViFiCLIP", "__version__", "load"]


def load(checkpoint, base=None, **kwargs):
    """A :class:`~vificlip.tools.predict.VideoRecognizer` for ``checkpoint``: a file, folder, run folder, built-in
    name, ``hf-hub:ORG/REPO[@REV][:FILE]``, open_clip ``TAG/MODEL`` or ``https://…#sha256=…`` (docs/checkpoints.md).
    Imported lazily: decoders load here."""
    from .tools.predict import load as load_recognizer

    return load_recognizer(checkpoint, base=base, **kwargs)
