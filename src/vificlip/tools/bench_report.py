"""``vificlip benchmark``'s result (tools/benchmark.py ``run_benchmark``) as a short human-readable report."""

from __future__ import annotations


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
