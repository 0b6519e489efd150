"""`vificlip convert`: any supported checkpoint → our single-file format (safetensors + JSON metadata)."""

from __future__ import annotations

import argparse

from ..model.variants import VARIANTS


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "convert",
        help="convert an OpenAI / open_clip / Hugging Face / authors' checkpoint to vificlip's format",
        description="Read SRC (any checkpoint name, file, folder or run folder; format detected from the file) and write DST, one .safetensors "
        "file with the full model and its architecture, variant and template. OpenAI TorchScript archives run "
        "code when loaded: convert only trusted ones.",
    )
    p.add_argument(
        "src", help="checkpoint file or folder, run folder, or name (hf-hub:ORG/REPO, openai/ViT-B-16, …)"
    )
    p.add_argument("dst", help="output file, e.g. vifi_k400.safetensors (replaced atomically)")
    p.add_argument("--base", "--base-checkpoint", dest="base",
                   help="CLIP checkpoint giving the token embedding the authors' .pth files lack")  # fmt: skip
    p.add_argument(
        "--variant", choices=VARIANTS, help="which parameters train later (default: recorded, or vifi)"
    )
    p.add_argument("--template", help='prompt template with {} (default: recorded, or "a photo of a {}.")')
    p.add_argument("--arch", help="named architecture, e.g. ViT-B/16 (default: inferred from the weights)")
    p.add_argument("--quick-gelu", action=argparse.BooleanOptionalAction, default=None,
                   help="QuickGELU (OpenAI) or GELU (most LAION open_clip) where the file does not say")  # fmt: skip
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..engine.resolve import resolve_optional, resolve_weights
    from ..model.formats import load_clip_state_dict
    from ..model.loading import build_model, save_model

    state, info = load_clip_state_dict(resolve_weights(args.src), base=resolve_optional(args.base))
    model = build_model(state, info, variant=args.variant, template=args.template, arch=args.arch,
                        quick_gelu=args.quick_gelu)  # fmt: skip
    path = save_model(model, args.dst)
    arch = model.arch
    print(f"{args.src} ({info.format}) -> {path}: ViT width {arch.vision_width}, {arch.vision_layers} layers, "
          f"patch {arch.patch_size}, {arch.image_size}px; variant {model.variant}; template {model.template!r}")  # fmt: skip
    return 0
