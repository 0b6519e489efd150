"""`vificlip run PROTOCOL` (one paper table row, end to end) and `vificlip report RUN_DIR...`."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..data.presets import ALIASES
from ..engine.config import list_presets, load_raw
from ..engine.report import PROTOCOLS
from ..errors import VificlipError
from ..model.variants import DEFAULT_VARIANT, VARIANTS

RUN_VARIANTS = tuple(
    v for v in VARIANTS if v != "prompt"
)  # prompt models: --prompt (bridge-and-prompt presets)
PRESET_STEMS = {"base2novel": "b2n", "fewshot": "fewshot"}  # per-dataset presets: {stem}[_prompt]_{dataset}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "run", help="run a whole protocol of the paper (train, evaluate, aggregate, report)"
    )
    p.add_argument("protocol", choices=PROTOCOLS)
    p.add_argument("--dataset", help="base2novel / fewshot: a dataset preset (hmdb51, ucf101, ssv2, k400 …; "
                   "an unknown one lists those with presets)")  # fmt: skip
    p.add_argument("--variant", choices=RUN_VARIANTS, default=DEFAULT_VARIANT,
                   help="vifi (both towers), image / text (one tower), zeroshot (vanilla CLIP, no training)")  # fmt: skip
    p.add_argument(
        "--prompt", action="store_true", help="bridge-and-prompt on a K400 ViFi-CLIP (b2n, few-shot)"
    )
    p.add_argument(
        "--preset", help="use this preset or YAML instead of the one chosen from the options above"
    )
    p.add_argument("--shots", help="few-shot K values, e.g. 2,4,8,16 (default: the preset's)")
    p.add_argument("--checkpoint", help="zeroshot: evaluate this K400-trained model instead of training one")
    p.add_argument(
        "--wise-alpha", type=float, metavar="A", help="also report WiSE-FT weights (1-A)·start + A·tuned"
    )
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--output", help="protocol folder (default runs/<preset name>)")
    p.add_argument("--overwrite", action="store_true",
                   help="retrain sub-runs made with another config (default: refuse, naming the keys)")  # fmt: skip
    p.add_argument("--device", default="auto")
    p.set_defaults(func=run_protocol_command)

    r = subparsers.add_parser("report", help="merge protocol runs into the paper's tables (markdown)")
    r.add_argument("runs", nargs="+", help="protocol run folders (with results.json)")
    r.add_argument("--output", help="also write the tables to this file")
    r.set_defaults(func=run_report)


def choose_preset(args: argparse.Namespace) -> str:
    if args.preset:
        return args.preset
    if args.protocol == "zeroshot":
        return "zeroshot_vanilla" if args.variant == "zeroshot" else f"zeroshot_k400_{args.variant}"
    if args.protocol == "supervised":
        if args.variant == "zeroshot":
            raise VificlipError("run supervised: --variant zeroshot trains nothing; use `vificlip eval`")
        return f"supervised_k400_{args.variant}"
    if not args.dataset:
        raise VificlipError(f"run {args.protocol}: --dataset is required (e.g. --dataset hmdb)")
    stem = PRESET_STEMS[args.protocol] + ("_prompt" if args.prompt else "")
    presets = dataset_presets(stem)
    found = presets.get(ALIASES.get(args.dataset.lower(), args.dataset))
    if found is None:
        raise VificlipError(f"run {args.protocol}{' --prompt' if args.prompt else ''}: no preset for dataset "
                            f"{args.dataset!r}; expected one of {', '.join(sorted(presets))}")  # fmt: skip
    return found


def dataset_presets(stem: str) -> dict[str, str]:
    """Engine presets named ``{stem}_{x}`` (x without '_'), by the data preset (``data.dataset``) each runs."""
    out = {}
    for name in list_presets():
        rest = name.removeprefix(stem + "_")
        if rest != name and "_" not in rest:
            dataset = (load_raw(name).get("data") or {}).get("dataset")
            if dataset:
                out[ALIASES.get(dataset, dataset)] = name
    return out


def run_protocol_command(args: argparse.Namespace) -> int:
    from ..engine.config import load_config
    from ..engine.protocols import markdown_table, run_protocol

    overrides = list(args.overrides)
    if args.variant != DEFAULT_VARIANT and not args.prompt:
        overrides.insert(0, f"model.variant={args.variant}")
    if args.wise_alpha is not None:
        overrides.append(f"eval.wise_alpha={args.wise_alpha}")
    if args.output:
        overrides.append(f"output.dir={args.output}")
    cfg = load_config(choose_preset(args), overrides)
    shots = None
    if args.shots:
        try:
            shots = [int(k) for k in args.shots.split(",") if k.strip()]
        except ValueError:
            raise VificlipError(
                f"--shots {args.shots!r}: expected comma-separated integers, e.g. 2,4,8,16"
            ) from None
    result = run_protocol(args.protocol, cfg, shots=shots, checkpoint=args.checkpoint, device=args.device,
                          overwrite=args.overwrite)  # fmt: skip
    print(markdown_table([result]))
    return 0


def run_report(args: argparse.Namespace) -> int:
    from ..atomic import atomic_write_text
    from ..engine.report import merge_reports

    table = merge_reports([Path(p) for p in args.runs])
    print(table)
    if args.output:
        atomic_write_text(Path(args.output), table)
    return 0
