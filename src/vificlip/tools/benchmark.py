"""How fast the model is on this machine (``vificlip benchmark``), against a naive path in the same run.

Size and compute come from tools/bench_compute.py, the clock and memory figures from tools/bench_timing.py, the
printed report from tools/bench_report.py.

The optimised path is what vificlip does by default: fused attention, bf16 autocast on GPUs, text trimmed to the
longest class prompt and cached while frozen, fused AdamW, optionally ``torch.compile`` and activation
checkpointing. The naive path is the reference's cost model on the same weights: fp16 (GPU) or fp32 (CPU) eager,
math attention, the text tower over all classes at 77 tokens in every call (open_clip's own ``encode_text``),
per-parameter AdamW. Random weights: speed does not depend on them.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from ..errors import VificlipError
from ..model.backbone import ClipArch, arch_by_name
from ..model.text import eot_positions, tokenize
from ..model.vificlip import ViFiCLIP
from .bench_compute import (
    analytic_text_macs,
    analytic_vision_macs,
    compute_figures,
    count_parameters,
    math_attention,
)
from .bench_timing import matmul_tflops, peak_memory_gib, reset_peak_memory, time_per_call
from .predict import resolve_device

# A model that runs in milliseconds on a CPU core (tests, quick checks of the machinery).
TINY_ARCH = ClipArch(embed_dim=32, image_size=32, patch_size=8, vision_width=64, vision_layers=2, vision_heads=1,
                     text_width=64, text_layers=2, text_heads=1)  # fmt: skip
VERBS = ("playing", "riding", "cleaning", "throwing", "catching", "cutting", "washing", "climbing", "carrying",
         "painting", "folding", "kicking", "pushing", "pulling", "juggling", "spinning", "shaking", "opening",
         "tying", "balancing")  # fmt: skip
OBJECTS = ("guitar", "bicycle", "windows", "frisbee", "ball", "watermelon", "dishes", "rope", "baby", "fence",
           "paper", "soccer ball", "car", "sled", "clubs", "poi", "hands", "present", "bow tie", "on one leg")  # fmt: skip


@dataclass(frozen=True)
class BenchmarkConfig:
    """What to measure. ``arch`` is a named OpenAI architecture (``ViT-B/16``) or ``tiny``."""

    arch: str = "ViT-B/16"
    num_frames: int = 16
    batch: int = 32  # videos per inference call
    train_batch: int = 16  # clips per training step
    num_classes: int = 400
    device: str = "auto"
    steps: int = 10  # timed calls per measurement, after `warmup` untimed ones
    warmup: int = 3
    compile: bool = False
    grad_checkpointing: bool = False
    train: bool = True

    def __post_init__(self) -> None:
        small = [
            k for k in ("num_frames", "batch", "train_batch", "num_classes", "steps") if getattr(self, k) < 1
        ]
        if small or self.warmup < 0:
            raise VificlipError(f"benchmark settings must be ≥ 1 (warmup ≥ 0): {small or ['warmup']}")


def resolve_arch(name: str) -> ClipArch:
    return TINY_ARCH if name == "tiny" else arch_by_name(name)


def class_names(num_classes: int) -> list[str]:
    """Distinct action-like names ("playing guitar", "riding bicycle 2", …), Kinetics-like in token length."""
    names = [f"{v} {o}" for o in OBJECTS for v in VERBS]
    return [
        names[i % len(names)] + (f" {i // len(names) + 1}" if i >= len(names) else "")
        for i in range(num_classes)
    ]


# ---- the two paths ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PathSettings:
    """How one path runs the same model."""

    name: str
    dtype: torch.dtype | None  # autocast dtype; None = fp32
    math_attention: bool
    full_text: bool  # all classes at the full context length in every call, never cached
    fused_adamw: bool
    compile: bool = False
    grad_checkpointing: bool = False


def path_settings(cfg: BenchmarkConfig, device: torch.device) -> tuple[PathSettings, PathSettings]:
    """(naive, optimised) for this device: half precision only on GPUs (CPUs are fastest in fp32 here)."""
    gpu = device.type == "cuda"
    naive = PathSettings("naive", torch.float16 if gpu else None, math_attention=True, full_text=True,
                         fused_adamw=False)  # fmt: skip
    optimised = PathSettings("optimised", torch.bfloat16 if gpu else None, math_attention=False, full_text=False,
                             fused_adamw=True, compile=cfg.compile, grad_checkpointing=cfg.grad_checkpointing)  # fmt: skip
    return naive, optimised


def logits_function(
    model: ViFiCLIP, settings: PathSettings, classes: list[str]
) -> Callable[[torch.Tensor], torch.Tensor]:
    """video [B,T,3,S,S] → logits [B,C] the way ``settings`` says.

    ``torch.compile`` wraps the video side only (static shapes, no Python in the way); the text side's
    trimming and caching are Python decisions made outside the graph.
    """
    device = model.clip.positional_embedding.device
    tokens = tokenize(model.prompt_texts(classes), model.arch.context_length).to(device)  # [C, 77]
    encode_video = torch.compile(model.encode_video) if settings.compile else model.encode_video

    def logits(video: torch.Tensor) -> torch.Tensor:
        autocast = torch.autocast(device.type, dtype=settings.dtype, enabled=settings.dtype is not None)
        with autocast, math_attention() if settings.math_attention else contextlib.nullcontext():
            if settings.full_text:  # the reference: open_clip's text path over [C, 77] tokens, every call
                return model.logits(model.encode_video(video), model.clip.encode_text(tokens))
            return model.logits(encode_video(video), model.encode_text(classes))  # = model(video, classes)

    return logits


def measure_inference(
    model: ViFiCLIP, settings: PathSettings, classes: list[str], cfg: BenchmarkConfig
) -> dict:
    device = model.clip.positional_embedding.device
    model.eval()
    size = model.arch.image_size
    video = torch.randn(cfg.batch, cfg.num_frames, 3, size, size, device=device)  # [B,T,3,S,S]
    logits = logits_function(model, settings, classes)
    reset_peak_memory(device)
    with torch.no_grad():
        seconds = time_per_call(lambda: logits(video), device, cfg.steps, cfg.warmup)
    return {
        "videos_per_s": cfg.batch / seconds,
        "ms_per_call": seconds * 1e3,
        "peak_memory_gib": peak_memory_gib(device),
    }


def _adamw(model: ViFiCLIP, fused: bool) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if fused:
        try:
            return torch.optim.AdamW(params, lr=1e-6, fused=True)
        except RuntimeError:  # fused kernels missing on this device type
            return torch.optim.AdamW(params, lr=1e-6, foreach=True)
    return torch.optim.AdamW(params, lr=1e-6, foreach=False)


def measure_training(
    model: ViFiCLIP, settings: PathSettings, classes: list[str], cfg: BenchmarkConfig
) -> dict:
    """Clips/s of full steps: forward over both towers, cross-entropy, backward, AdamW (fp16 adds a GradScaler)."""
    device = model.clip.positional_embedding.device
    model.train()
    model.set_grad_checkpointing(settings.grad_checkpointing)
    size = model.arch.image_size
    video = torch.randn(cfg.train_batch, cfg.num_frames, 3, size, size, device=device)  # [B,T,3,S,S]
    labels = torch.randint(len(classes), (cfg.train_batch,), device=device)
    optimizer = _adamw(model, settings.fused_adamw)
    scaler = torch.amp.GradScaler(device.type) if settings.dtype == torch.float16 else None
    logits = logits_function(model, settings, classes)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(logits(video).float(), labels)
        if scaler is None:
            loss.backward()
            optimizer.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()

    reset_peak_memory(device)
    seconds = time_per_call(step, device, cfg.steps, cfg.warmup)
    model.set_grad_checkpointing(False)
    return {"clips_per_s": cfg.train_batch / seconds, "ms_per_step": seconds * 1e3,
            "peak_memory_gib": peak_memory_gib(device)}  # fmt: skip


# ---- the whole run ------------------------------------------------------------------------------------------------
def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{device.type} ({torch.get_num_threads()} threads)"


def run_benchmark(cfg: BenchmarkConfig) -> dict:
    """Parameters, compute, and naive vs optimised inference and training speed on ``cfg.device``."""
    device = resolve_device(cfg.device)
    arch = resolve_arch(cfg.arch)
    classes = class_names(cfg.num_classes)
    torch.manual_seed(0)
    base = ViFiCLIP.from_arch(arch)  # fp32 on the CPU; each path gets its own copy on the device
    trimmed = int(eot_positions(tokenize(base.prompt_texts(classes), arch.context_length)).max()) + 1
    result = {"config": asdict(cfg), "device": str(device), "device_name": _device_name(device),
              "torch": torch.__version__, "arch": asdict(arch), "parameters": count_parameters(base),
              **compute_figures(arch, cfg.num_frames, trimmed)}  # fmt: skip
    for settings in path_settings(cfg, device):
        model = copy.deepcopy(base).to(device)
        result[settings.name] = {"settings": _describe(settings),
                                 "inference": measure_inference(model, settings, classes, cfg)}  # fmt: skip
        if cfg.train:
            result[settings.name]["training"] = measure_training(model, settings, classes, cfg)
        del model
        reset_peak_memory(device)
    result["speedup"] = {kind: result["optimised"][kind][rate] / result["naive"][kind][rate]
                         for kind, rate in (("inference", "videos_per_s"), ("training", "clips_per_s"))
                         if kind in result["optimised"]}  # fmt: skip
    if device.type == "cuda":
        text_macs = analytic_text_macs(arch, trimmed) * len(classes)
        result["mfu"] = utilisation(
            result, analytic_vision_macs(arch, cfg.num_frames), text_macs, cfg, device
        )
    return result


def _describe(settings: PathSettings) -> str:
    precision = str(settings.dtype).removeprefix("torch.") if settings.dtype else "fp32"
    parts = [precision + (" autocast" if settings.dtype else ""),
             "math attention" if settings.math_attention else "fused attention",
             f"text {'77 tokens every call' if settings.full_text else 'trimmed + cached'}",
             "fused AdamW" if settings.fused_adamw else "for-loop AdamW"]  # fmt: skip
    parts += ["torch.compile"] * settings.compile + ["activation checkpointing"] * settings.grad_checkpointing
    return ", ".join(parts)


def utilisation(
    result: dict, vision_macs: int, text_macs: int, cfg: BenchmarkConfig, device: torch.device
) -> dict:
    """Model FLOPs utilisation against a matmul timed now, counting the useful work only (vision + trimmed text).

    Inference: 2 FLOPs per MAC of the vision tower (text features are cached). Training: 3× the forward (backward
    ≈ 2× forward) of the vision tower and the trimmed text of all classes. Both paths are scored on the same work,
    so the naive path's extra text compute shows up as lower utilisation.
    """
    peak, what = matmul_tflops(device)
    work = {"inference": 2 * vision_macs * cfg.batch / 1e12,
            "training": 3 * 2 * (vision_macs * cfg.train_batch + text_macs) / 1e12}  # fmt: skip
    out = {"matmul_tflops": peak, "matmul": what}
    for name in ("naive", "optimised"):
        for kind, key in (("inference", "ms_per_call"), ("training", "ms_per_step")):
            if kind in result[name]:
                out[f"{name}_{kind}"] = work[kind] / (result[name][kind][key] / 1e3) / peak
    return out
