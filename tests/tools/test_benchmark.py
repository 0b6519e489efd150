"""`vificlip benchmark`: the paper's GFLOPs, why attention must be counted with the math kernel, and one CPU run."""

from __future__ import annotations

import contextlib
import json

import pytest
import torch
from testkit import TINY_ARCH
from torch.utils.flop_counter import FlopCounterMode

from vificlip.cli import main
from vificlip.model import ViFiCLIP, arch_by_name
from vificlip.tools.bench_compute import (
    analytic_vision_macs,
    count_parameters,
    counted_vision_macs,
    math_attention,
)
from vificlip.tools.benchmark import BenchmarkConfig, class_names, logits_function, path_settings


def test_vit_b16_16_frames_is_281_gflops_counted_and_analytic() -> None:
    arch = arch_by_name("ViT-B/16")
    counted, analytic = counted_vision_macs(arch, 16), analytic_vision_macs(arch, 16)
    assert abs(counted - analytic) / analytic < 0.01
    assert round(counted / 1e9) == 281  # the ViFi-CLIP README's figure (multiply-accumulates)


def test_vit_b16_parameters_match_the_spec() -> None:
    with torch.device("meta"):
        model = ViFiCLIP.from_arch(arch_by_name("ViT-B/16"))
    counts = count_parameters(model)
    assert round(counts["total"] / 1e6, 2) == 149.62  # SPEC §1.6, token embedding included
    assert round((counts["total"] - counts["token_embedding"]) / 1e6, 2) == 124.32


@pytest.mark.parametrize("math", [False, True])
def test_flop_counter_sees_attention_only_with_the_math_kernel(tiny_model: ViFiCLIP, math: bool) -> None:
    video = torch.randn(1, 2, 3, TINY_ARCH.image_size, TINY_ARCH.image_size)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), math_attention() if math else contextlib.nullcontext(), counter:
        tiny_model.eval().encode_video(video)
    s, w = 1 + TINY_ARCH.grid_size**2, TINY_ARCH.vision_width
    attention = 2 * TINY_ARCH.vision_layers * 2 * s * s * w  # MACs of Q·Kᵀ and A·V over 2 frames
    expected = analytic_vision_macs(TINY_ARCH, 2) - (0 if math else attention)
    assert counter.get_total_flops() // 2 == expected


def test_naive_and_optimised_paths_compute_the_same_logits(tiny_model: ViFiCLIP) -> None:
    cfg = BenchmarkConfig(arch="tiny", device="cpu")
    classes = class_names(12)
    video = torch.randn(2, 3, 3, TINY_ARCH.image_size, TINY_ARCH.image_size)
    naive, optimised = path_settings(cfg, torch.device("cpu"))
    with torch.no_grad():
        a = logits_function(tiny_model.eval(), naive, classes)(video)
        b = logits_function(tiny_model, optimised, classes)(video)
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_class_names_are_distinct() -> None:
    names = class_names(900)
    assert len(set(names)) == 900 and names[0] == "playing guitar"


def test_cli_measures_both_paths_and_prints_the_ratio(capsys) -> None:
    argv = ["benchmark", "--arch", "tiny", "--frames", "2", "--batch", "2", "--train-batch", "2", "--classes", "16",
            "--device", "cpu", "--steps", "2", "--warmup", "1"]  # fmt: skip
    assert main(argv + ["--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert abs(result["vision_gmacs_per_view"]["difference_pct"]) < 1
    assert result["text_gmacs_per_prompt"]["tokens"] < TINY_ARCH.context_length
    for name in ("naive", "optimised"):
        assert result[name]["inference"]["videos_per_s"] > 0 and result[name]["training"]["clips_per_s"] > 0
    assert set(result["speedup"]) == {"inference", "training"} and all(
        v > 0 for v in result["speedup"].values()
    )
    assert "mfu" not in result  # GPU only
    assert main(argv + ["--no-train"]) == 0
    text = capsys.readouterr().out
    assert "optimised / naive: inference" in text and "training" not in text.split("optimised / naive")[1]


def test_cli_data_benchmark_runs(capsys, tmp_path) -> None:
    argv = [
        "benchmark",
        "data",
        "--videos",
        "1",
        "--seconds",
        "0.5",
        "--frames",
        "2",
        "--work-dir",
        str(tmp_path),
    ]
    assert main(argv + ["--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["rows"] and result["config"]["num_frames"] == 2
