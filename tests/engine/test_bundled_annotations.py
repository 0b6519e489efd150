"""Dataset presets default to the paper's annotation files in the package; `data.annotation_dir` still overrides.

The protocol test runs the real few-shot runner on the HMDB-51 preset with nothing but videos: every list and label
file comes from the package. The videos are one synthetic-benchmark clip linked under each listed name (the lists
name 1,632 HMDB files), on a tiny CLIP.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from testkit import TINY_ARCH

from vificlip.data.annotations import read_video_list
from vificlip.data.labelsets import bundled_annotation_dir, read_label_set
from vificlip.data.synthetic import ObjectTrack, background, draw_objects
from vificlip.data.writer import write_video
from vificlip.engine import builders
from vificlip.engine.config import ConfigError, load_config
from vificlip.engine.protocols import RESULTS_FILE, plan_base2novel, plan_fewshot, plan_zeroshot, run_fewshot
from vificlip.model import ViFiCLIP
from vificlip.model.loading import save_model


def test_presets_read_the_bundled_files_and_annotation_dir_overrides(tmp_path):
    cfg = load_config("b2n_hmdb", ["data.root=/nowhere"])
    assert cfg.data.annotation_dir is None
    draws, novel, _title = plan_base2novel(cfg)
    label_file = builders.annotation_path(draws[0].data, draws[0].data.labels, "data.labels")
    assert label_file.is_relative_to(bundled_annotation_dir())
    assert len(builders.class_names(draws[0].data)) == 26  # hmdb_51_base_labels.csv
    targets = plan_zeroshot(load_config("zeroshot_k400_vifi", ["protocol.targets=[k600]"]))
    split = next(iter(targets.values()))[0]
    assert len(builders.class_names(split.data)) == 160  # ZS_split1_K600.csv, from the package
    own = tmp_path / "mine"
    shutil.copytree(bundled_annotation_dir() / "labels", own / "labels")
    names = [f"class {i}" for i in range(26)]
    (own / "labels" / "hmdb_51_base_labels.csv").write_text(
        "id,name\n" + "".join(f"{i},{n}\n" for i, n in enumerate(names))
    )
    cfg = load_config("b2n_hmdb", [f"data.annotation_dir={own}"])
    assert builders.class_names(plan_base2novel(cfg)[0][0].data) == names


def test_config_labels_take_a_bundled_set_by_name():
    cfg = load_config("b2n_hmdb", ["data.labels=ucf101-novel", "data.num_classes=50"])
    assert (
        builders.class_names(cfg.data) == read_label_set("ucf101-novel")
        and len(read_label_set("ucf101-novel")) == 50
    )


def test_a_list_the_authors_do_not_ship_says_so():
    cfg = load_config("zeroshot_k400_vifi")
    with pytest.raises(ConfigError, match=r"data.train_list: .*k400_splits/train.txt does not exist \(not among the "
                       r"paper's annotation files bundled for k400.*data.annotation_dir"):  # fmt: skip
        builders.annotation_path(cfg.data, cfg.data.train_list, "data.train_list")


def _synthetic_clip(path: Path) -> Path:
    """A green triangle moving right on grey, drawn by the synthetic benchmark's renderer."""
    rng, n = np.random.default_rng(0), 4
    frames = np.stack([background("grey", rng, 32) for _ in range(n)])
    track = ObjectTrack(shape=np.zeros(n, dtype=int), colour=np.tile([[30.0, 200.0, 40.0]], (n, 1)),
                        x=np.linspace(8, 24, n), y=np.full(n, 16.0), radius=np.full(n, 6.0), angle=np.zeros(n),
                        alpha=np.ones(n))  # fmt: skip
    return write_video(path, draw_objects(frames, track))


@pytest.mark.slow
def test_fewshot_protocol_runs_on_the_preset_with_only_videos(tmp_path):
    ann, root = bundled_annotation_dir(), tmp_path / "videos"
    clip = _synthetic_clip(tmp_path / "clip.mp4")
    for listed in ("train1_few_shot_2.txt", "val1.txt"):
        for record in read_video_list(ann / "datasets_splits" / "hmdb_splits" / listed):
            (root / record.path).parent.mkdir(parents=True, exist_ok=True)
            (root / record.path).symlink_to(clip)
    tiny = save_model(ViFiCLIP.from_arch(TINY_ARCH), tmp_path / "tiny.safetensors")
    out = tmp_path / "run"
    cfg = load_config("fewshot_hmdb", {"model.checkpoint": str(tiny), "model.arch": None, "data.root": str(root),
                                       "data.num_frames": 1, "data.input_size": 32, "data.num_workers": 0,
                                       "train.epochs": 1, "train.batch_size": 34, "train.accumulation_steps": 1,
                                       "train.eval_freq": 100, "eval.batch_size": 128, "protocol.shots": [2],
                                       "output.dir": str(out)})  # fmt: skip
    assert cfg.data.annotation_dir is None
    runs, title = plan_fewshot(cfg)
    result = run_fewshot(runs, out, "cpu", title)
    assert list(result.cells) == ["HMDB-51 K=2"]
    written = json.loads((out / RESULTS_FILE).read_text())
    assert written["runs"][0]["num_videos"] == 1530 and written["runs"][0]["num_scored"] == 1530
    assert (out / "k2" / "config.yaml").read_text().count("annotation_dir: null") == 1
