"""The ViFi-CLIP model: open_clip CLIP towers, frame averaging, class-name prompts, deep prompts, loading."""

from .backbone import ArchitectureError, ClipArch, arch_by_name, build_clip, infer_arch
from .text import DEFAULT_TEMPLATE, ZEROSHOT_TEMPLATE, ClassListError
from .vificlip import ViFiCLIP

__all__ = [
    "DEFAULT_TEMPLATE",
    "ZEROSHOT_TEMPLATE",
    "ArchitectureError",
    "ClassListError",
    "ClipArch",
    "ViFiCLIP",
    "arch_by_name",
    "build_clip",
    "infer_arch",
]
