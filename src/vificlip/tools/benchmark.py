"""How big and how fast the model is on this machine (``vificlip benchmark``), against a naive path in the same run.

Compute is given per view in the papers' convention: multiply-accumulates ("GFLOPs" in the ViFi-CLIP README, 281
for ViT-B/16 × 16 frames), vision tower only, attention included. torch's FlopCounterMode does not see fused
attention kernels, so we count on the meta device with the math kernel forced (no forward at full size), and print
the analytic count beside it.

The optimised path is what vificlip does by default: fused attention, bf16 autocast on GPUs, text trimmed to the
longest class prompt and cached while frozen, fused AdamW, optionally ``torch.compile`` and activation
checkpointing. The naive path is the reference's cost model on the same weights: fp16 (GPU) or fp32 (CPU) eager,
math attention, the text tower over all classes at 77 tokens in every call (open_clip's own ``encode_text``),
per-parameter AdamW. Random weights: speed does not depend on them.
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from ..errors import VificlipError
from ..model.backbone import ClipArch, arch_by_name
from ..model.text import eot_positions, tokenize
from ..model.variants import part_of
from ..model.vificlip import ViFiCLIP
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


# ---- size and compute -------------------------------------------------------------------------------------------
def count_parameters(model: ViFiCLIP) -> dict[str, int]:
    """Parameters by part; ``total`` includes the token-embedding table (SPEC §1.6: 149.62 M for ViT-B/16)."""
    counts = {"vision": 0, "text": 0, "token_embedding": 0, "other": 0}
    for name, param in model.clip.named_parameters():
        part = {"image": "vision", "text": "text", "token_embedding": "token_embedding"}.get(
            part_of(name), "other"
        )
        counts[part] += param.numel()
    counts["prompts"] = sum(p.numel() for p in model.prompts.parameters())
    counts["total"] = sum(counts.values())
    counts["trainable"] = model.num_trainable_parameters()
    return counts


def analytic_vision_macs(arch: ClipArch, num_frames: int) -> int:
    """Multiply-accumulates of one view: per frame, patch embedding + per block 12·S·W² + 2·S²·W + projection."""
    s, w, g = 1 + arch.grid_size**2, arch.vision_width, arch.grid_size
    patch = g * g * 3 * arch.patch_size**2 * w
    blocks = arch.vision_layers * (12 * s * w * w + 2 * s * s * w)
    return num_frames * (patch + blocks + w * arch.embed_dim)


def analytic_text_macs(arch: ClipArch, length: int) -> int:
    """Multiply-accumulates of one prompt at ``length`` tokens (attention computed densely, mask applied)."""
    w = arch.text_width
    return arch.text_layers * (12 * length * w * w + 2 * length * length * w) + w * arch.embed_dim


@contextlib.contextmanager
def math_attention() -> Iterator[None]:
    """Force the math kernel (explicit matmuls), also inside nn.MultiheadAttention's fast path."""
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with sdpa_kernel(SDPBackend.MATH):
            yield
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)


def counted_vision_macs(arch: ClipArch, num_frames: int) -> int:
    """FlopCounterMode's count for one view, halved to MACs; on the meta device, so free at any size."""
    with torch.device("meta"):
        model = ViFiCLIP.from_arch(arch).eval()
    video = torch.empty(1, num_frames, 3, arch.image_size, arch.image_size, device="meta")
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), math_attention(), counter:
        model.encode_video(video)
    return counter.get_total_flops() // 2


# ---- timing -----------------------------------------------------------------------------------------------------
def synchronize(device: torch.device) -> None:
    if device.type != "cpu" and hasattr(torch, "accelerator"):
        torch.accelerator.synchronize(device)


def time_per_call(fn: Callable[[], object], device: torch.device, steps: int, warmup: int) -> float:
    """Seconds per call of ``fn``: CUDA events on CUDA (no host-side gaps counted), a wall clock elsewhere."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(steps):
            fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1000 / steps
    begin = time.perf_counter()
    for _ in range(steps):
        fn()
    synchronize(device)
    return (time.perf_counter() - begin) / steps


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_gib(device: torch.device) -> float | None:
    """Peak allocated accelerator memory since the last reset; None on the CPU (no allocator statistics)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return None


def matmul_tflops(device: torch.device, steps: int = 10) -> tuple[float, str]:
    """Achieved TFLOP/s of a large square matmul: bf16 8192³ on GPUs (the MFU denominator), fp32 1024³ on CPUs."""
    n, dtype = (8192, torch.bfloat16) if device.type == "cuda" else (1024, torch.float32)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    seconds = time_per_call(lambda: a @ b, device, steps, warmup=3)
    return 2 * n**3 / seconds / 1e12, f"{str(dtype).removeprefix('torch.')} {n}³ matmul"


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


def compute_figures(arch: ClipArch, num_frames: int, text_tokens: int) -> dict:
    """GMACs per view of the vision tower (counted and analytic) and per prompt of the text tower."""
    counted, analytic = counted_vision_macs(arch, num_frames), analytic_vision_macs(arch, num_frames)
    return {
        "vision_gmacs_per_view": {"counted": counted / 1e9, "analytic": analytic / 1e9,
                                  "difference_pct": 100 * (counted - analytic) / analytic},
        "text_gmacs_per_prompt": {"tokens": text_tokens, "trimmed": analytic_text_macs(arch, text_tokens) / 1e9,
                                  "full": analytic_text_macs(arch, arch.context_length) / 1e9},
    }  # fmt: skip


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


def format_benchmark(result: dict) -> str:
    """The result as a short human-readable report."""
    cfg, params = result["config"], result["parameters"]
    vision, text = result["vision_gmacs_per_view"], result["text_gmacs_per_prompt"]
    lines = [
        f"model {cfg['arch']}, {cfg['num_frames']} frames × {result['arch']['image_size']}², {cfg['num_classes']} "
        f"classes on {result['device_name']} (torch {result['torch']})",
        f"parameters: {params['total'] / 1e6:.2f} M (vision {params['vision'] / 1e6:.2f} M, text "
        f"{params['text'] / 1e6:.2f} M, token embedding {params['token_embedding'] / 1e6:.2f} M)",
        f"GFLOPs per view (multiply-accumulates, vision tower, the papers' convention): {vision['counted']:.4g} "
        f"counted (FlopCounterMode, math attention) vs {vision['analytic']:.4g} analytic "
        f"({vision['difference_pct']:+.3f}%)",
        f"text GMACs per prompt: {text['trimmed']:.3f} at {text['tokens']} tokens (trimmed) vs {text['full']:.3f} at "
        f"{result['arch']['context_length']}",
    ]
    for name in ("naive", "optimised"):
        part = result[name]
        lines.append(f"{name}: {part['settings']}")
        inference = part["inference"]
        lines.append(f"  inference  batch {cfg['batch']:3d}: {inference['videos_per_s']:9.2f} videos/s "
                     f"({inference['ms_per_call']:.1f} ms/call){_memory(inference)}")  # fmt: skip
        if "training" in part:
            training = part["training"]
            lines.append(f"  training   batch {cfg['train_batch']:3d}: {training['clips_per_s']:9.2f} clips/s "
                         f"({training['ms_per_step']:.1f} ms/step){_memory(training)}")  # fmt: skip
    ratios = ", ".join(f"{kind} {ratio:.2f}×" for kind, ratio in result["speedup"].items())
    lines.append(f"optimised / naive: {ratios}")
    if "mfu" in result:
        mfu = result["mfu"]
        shares = ", ".join(
            f"{k.replace('_', ' ')} {v:.1%}" for k, v in mfu.items() if k.startswith(("naive", "opt"))
        )
        lines.append(f"utilisation vs {mfu['matmul']} at {mfu['matmul_tflops']:.1f} TFLOP/s: {shares}")
    return "\n".join(lines)


def _memory(measurement: dict) -> str:
    peak = measurement.get("peak_memory_gib")
    return f", peak {peak:.2f} GiB" if peak is not None else ""
