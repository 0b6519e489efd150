"""``vificlip export``: a run or checkpoint → a folder ready for the Hugging Face Hub (and the upload, when asked).

The folder holds ``model.safetensors`` (our format: weights + architecture, variant, template, prompts in its
metadata), ``config.json`` (the same facts plus frames and normalisation, for people and Hub tooling) and a
``README.md`` model card built from the run: what it is, how it was trained, the results tables the run wrote, how
to load it, the citation and the licence. The loader reads the folder by the weights' own metadata, so the
``config.json`` beside them is never mistaken for a Hugging Face ``CLIPModel`` config.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..atomic import atomic_dir
from ..data.transforms import NORMALIZATIONS
from ..engine.config import CONFIG_FILE, RunConfig, read_run_config, to_yaml
from ..engine.runs import MODEL_FILE, TABLE_FILE, read_train_results
from ..errors import VificlipError
from ..model.formats import FORMAT_VERSION
from ..model.loading import save_model
from ..model.variants import title as variant_title
from ..model.vificlip import ViFiCLIP
from .predict import DEFAULT_FRAMES, EXPORT_CONFIG, load

WEIGHTS_FILE = MODEL_FILE  # the weights of an export folder carry the name a run's checkpoints use
CARD_FILE = "README.md"

CITATION = """@inproceedings{rasheed2023fine,
  title={Fine-tuned CLIP Models are Efficient Video Learners},
  author={Rasheed, Hanoona and Khattak, Muhammad Uzair and Maaz, Muhammad and Khan, Salman and Khan, Fahad Shahbaz},
  booktitle={Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition},
  year={2023}
}"""


class ExportError(VificlipError):
    """The export folder cannot be written, or the upload failed."""


@dataclass(frozen=True)
class RunFacts:
    """What a run folder says about how its weights were made (all optional: a bare checkpoint has none)."""

    config: RunConfig | None
    results_md: str | None
    train_results: dict | None


def run_facts(source: str) -> RunFacts:
    """The run folder's config and results, when ``source`` is one (its results table may sit one level up)."""
    folder = Path(os.path.expanduser(source))
    if not (folder / CONFIG_FILE).is_file():
        return RunFacts(None, None, None)
    table = next((d / TABLE_FILE for d in (folder, folder.parent) if (d / TABLE_FILE).is_file()), None)
    return RunFacts(read_run_config(folder), table.read_text(encoding="utf-8") if table else None,
                    read_train_results(folder))  # fmt: skip


def model_config(model: ViFiCLIP, frames: int, normalization: str) -> dict:
    """``config.json``: everything needed to use the weights, in one readable place."""
    mean, std = NORMALIZATIONS[normalization]
    prompts = {} if not any(True for _ in model.prompts.parameters()) else model.prompts.config()
    return {
        "library_name": "vificlip",
        "format": "vificlip",
        "format_version": FORMAT_VERSION,
        "weights": WEIGHTS_FILE,
        "arch": json.loads(model.arch.to_json()),
        "variant": model.variant,
        "template": model.template,
        "replace_underscores": model.replace_underscores,
        "prompts": prompts,
        "num_frames": frames,
        "input_size": model.arch.image_size,
        "normalization": normalization,
        "mean": [round(v, 6) for v in mean],
        "std": [round(v, 6) for v in std],
    }


def _results_section(facts: RunFacts) -> str:
    parts = []
    if facts.results_md:
        parts.append(facts.results_md.strip())
    final = (facts.train_results or {}).get("final")
    if final:
        parts.append("| evaluation | top-1 | top-5 | mean-class | videos scored |\n|---|---|---|---|---|\n"
                     f"| final | {final['top1']:.2f} | {final['top5']:.2f} | {final['mean_class']:.2f} | "
                     f"{final['num_scored']} of {final['num_videos']} |")  # fmt: skip
    return "\n\n".join(parts) if parts else "No evaluation results were recorded with this checkpoint."


def model_card(model: ViFiCLIP, config: dict, facts: RunFacts, source: str, repo: str | None) -> str:
    """The Hub README: front matter, what it is, training, results tables, how to load, citation, licence."""
    name = repo or "ORG/REPO"
    arch = model.arch
    method = variant_title(model.variant)
    cfg = facts.config
    front = {"library_name": "vificlip", "license": "mit", "pipeline_tag": "video-classification",
             "tags": ["video-classification", "clip", "vificlip", "zero-shot"]}  # fmt: skip
    if cfg is not None:
        trained = (f"Trained with vificlip's config `{cfg.name}`"
                   + (f" ({cfg.description.strip()})" if cfg.description.strip() else "")
                   + f", dataset `{cfg.data.dataset or 'custom'}`, {cfg.train.epochs} epochs, learning rate "
                   f"{cfg.optim.lr:g}, {cfg.data.num_frames} frames. The resolved configuration (preset with its "
                   "`base:` chain and every override applied) is below.\n\n<details><summary>config.yaml</summary>"
                   f"\n\n```yaml\n{to_yaml(cfg).strip()}\n```\n\n</details>")  # fmt: skip
    else:
        trained = f"Exported from the checkpoint `{source}`; no training run folder, so no training record."
    labels = "k400" if cfg is None or not cfg.data.dataset else cfg.data.dataset
    return f"""---
{yaml.safe_dump(front, sort_keys=False).strip()}
---

# {name}

A **{method}** video recogniser (variant `{model.variant}`) for vificlip, which implements *Fine-tuned CLIP Models
are Efficient Video Learners* (ViFi-CLIP, CVPR 2023; [paper](https://arxiv.org/abs/2212.03640), [the authors'
code](https://github.com/muzairkhattak/ViFi-CLIP)): every frame goes through the CLIP image encoder, frame embeddings are averaged
over time, class names go through the text encoder inside the prompt `{model.template}`, and the logits are the
scaled cosine similarity.

| | |
|---|---|
| architecture | ViT, width {arch.vision_width}, {arch.vision_layers} layers, patch {arch.patch_size}, {arch.image_size} px; text width {arch.text_width}, {arch.text_layers} layers; embedding {arch.embed_dim} |
| frames | {config["num_frames"]} (centres of equal segments) |
| normalisation | `{config["normalization"]}` (mean {config["mean"]}, std {config["std"]}, 0-255 scale) |
| prompts | {json.dumps(config["prompts"]) if config["prompts"] else "none (hand-written template)"} |

## Training

{trained}

## Results

{_results_section(facts)}

## How to load

```sh
vificlip predict my_clip.mp4 --checkpoint hf-hub:{name} --labels {labels} --frames {config["num_frames"]}
```

```python
import vificlip

recognizer = vificlip.load("hf-hub:{name}", num_frames={config["num_frames"]})
recognizer.predict("my_clip.mp4", ["dancing", "swimming", "climbing stairs"])
```

The folder itself (`{WEIGHTS_FILE}`, `{EXPORT_CONFIG}`) loads the same way from a local path.

## Citation

```bibtex
{CITATION}
```

## Licence

MIT, as the ViFi-CLIP authors' code and OpenAI's CLIP weights it starts from. The training videos keep their own
terms (Kinetics, HMDB-51, UCF-101 and Something-Something v2 each have theirs).
"""


def export(source: str, out_dir: str | os.PathLike, base: str | None = None, frames: int | None = None,
           normalization: str | None = None, repo: str | None = None) -> Path:  # fmt: skip
    """Write the Hub folder for ``source`` (any checkpoint, run folder or name) into the new folder ``out_dir``."""
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ExportError(f"{out}: exists and is not an empty folder; choose a new folder to export into")
    facts = run_facts(source)
    model = load(source, base=base, device="cpu").model
    cfg = facts.config
    frames = frames or (cfg.data.num_frames if cfg else DEFAULT_FRAMES)
    normalization = normalization or (cfg.data.normalization if cfg else "authors")
    config = model_config(model, frames, normalization)
    with atomic_dir(out) as tmp:  # readers never see a half-written export; an empty `out` is replaced
        save_model(model, tmp / WEIGHTS_FILE)
        (tmp / EXPORT_CONFIG).write_text(json.dumps(config, indent=1) + "\n", encoding="utf-8")
        (tmp / CARD_FILE).write_text(model_card(model, config, facts, source, repo), encoding="utf-8")
    return out


def push(folder: str | os.PathLike, repo: str, private: bool = False) -> str:
    """Upload the export folder with huggingface_hub (``HF_TOKEN`` or ``hf auth login`` for the credentials)."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi()
    try:
        api.create_repo(repo, private=private, exist_ok=True)
        commit = api.upload_folder(
            repo_id=repo, folder_path=str(folder), commit_message="Upload vificlip export"
        )
    except HfHubHTTPError as exc:
        first = " ".join(str(exc).split())[:300]
        raise ExportError(
            f"push to {repo} failed: {first}; check HF_TOKEN (write access) and the repo name"
        ) from None
    return str(getattr(commit, "commit_url", repo))
