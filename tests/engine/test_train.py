"""Training end to end on the toy task, and every bad input failing before training starts."""

from __future__ import annotations

import pytest
import torch

from vificlip.data.annotations import AnnotationError
from vificlip.engine import checkpoint as ckpt
from vificlip.engine import runs
from vificlip.engine import train as train_module
from vificlip.engine.builders import build_model
from vificlip.engine.config import ConfigError
from vificlip.engine.config_schema import ModelConfig
from vificlip.engine.resume import ResumeError
from vificlip.engine.runs import read_metrics
from vificlip.engine.train import NonFiniteLossError, train
from vificlip.errors import VificlipError
from vificlip.model import ClipArch, ViFiCLIP
from vificlip.model.loading import load_model, save_model


def test_toy_task_loss_goes_down_and_accuracy_is_well_above_chance(toy_task, tmp_path):
    cfg = toy_task.config(tmp_path / "run", {"train.epochs": 5, "train.eval_freq": 2})
    result = train(cfg)
    losses = [row["loss"] for row in read_metrics(cfg.run_dir, "train")]
    assert len(losses) == 5 * 3
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.2  # mixup + smoothing keep the floor well above 0
    assert [e["epoch"] for e in result.evals] == [0, 2, 4]  # epoch 0, every eval_freq, the last (SPEC §3.9)
    assert result.final.top1 >= 80 and result.final.num_scored == 6  # chance is 33 %
    # Outputs: resolved config, logs, metrics, evaluations with confusion matrices, last/best checkpoints.
    for name in ("config.yaml", "log.txt", "log_rank0.txt", "metrics.jsonl", "train_results.json",
                 "evals/eval_epoch004.json", "evals/confusion_epoch004.csv"):  # fmt: skip
        assert (cfg.run_dir / name).is_file(), name
    last = runs.pointer_dir(cfg.run_dir)
    assert last.name == "epoch_004" and (last / "state.pt").is_file()
    assert not (
        runs.checkpoint_root(cfg.run_dir) / "epoch_000" / "state.pt"
    ).exists()  # old snapshot: weights only
    reloaded = load_model(last / "model.safetensors")
    for a, b in zip(reloaded.state_dict().values(), result.model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_nan_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(toy_task, tmp_path, monkeypatch):
    cfg = toy_task.config(
        tmp_path / "run", {"train.epochs": 2, "train.save_every_steps": 1, "data.val_list": None}
    )
    real = train_module.soft_target_cross_entropy
    calls = {"n": 0}

    def loss_that_explodes(logits, targets):
        calls["n"] += 1
        value = real(logits, targets)
        return value * float("nan") if calls["n"] == 5 else value

    monkeypatch.setattr(train_module, "soft_target_cross_entropy", loss_that_explodes)
    with pytest.raises(NonFiniteLossError, match="optimiser step 5"):
        train(cfg)
    pointer = runs.read_pointer(cfg.run_dir)
    assert (
        pointer["step"] == 4
        and ckpt.load_training_state(runs.pointer_dir(cfg.run_dir))["progress"]["global_step"] == 4
    )
    weights = load_model(runs.pointer_dir(cfg.run_dir) / "model.safetensors").state_dict()
    assert all(torch.isfinite(v).all() for v in weights.values() if v.is_floating_point())


def test_missing_annotation_file(toy_task, tmp_path):
    cfg = toy_task.config(tmp_path / "run", {"data.train_list": str(tmp_path / "nope.txt")})
    with pytest.raises(ConfigError, match="data.train_list.*nope.txt"):
        train(cfg)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_labels_out_of_range_for_the_label_file(toy_task, tmp_path):
    bad = tmp_path / "train.txt"
    bad.write_text(toy_task.train_list.read_text() + "train_red_0.mp4 7\n")
    with pytest.raises(AnnotationError, match="label field 7 is out of range for the 3 classes"):
        train(toy_task.config(tmp_path / "run", {"data.train_list": str(bad)}))


def test_num_classes_disagreeing_with_the_label_file(toy_task, tmp_path):
    with pytest.raises(ConfigError, match="num_classes is 5 but .* lists 3"):
        train(toy_task.config(tmp_path / "run", {"data.num_classes": 5}))


def test_checkpoint_from_another_architecture(toy_task, tmp_path):
    other = ClipArch(embed_dim=16, image_size=32, patch_size=8, vision_width=64, vision_layers=1, vision_heads=1,
                     text_width=64, text_layers=1, text_heads=1)  # fmt: skip
    foreign = save_model(ViFiCLIP.from_arch(other), tmp_path / "foreign.safetensors")
    with pytest.raises(VificlipError, match="architecture"):
        train(toy_task.config(tmp_path / "run", {"train.epochs": 1}), init_from=str(foreign))
    with pytest.raises(VificlipError):
        build_model(ModelConfig(checkpoint=str(toy_task.checkpoint), arch="ViT-B/16"))


def test_zeroshot_variant_refuses_to_train(toy_task, tmp_path):
    with pytest.raises(VificlipError, match="trains nothing"):
        train(toy_task.config(tmp_path / "run", {"model.variant": "zeroshot"}))


def test_fresh_start_over_a_finished_run_is_refused(toy_task, tmp_path):
    cfg = toy_task.config(tmp_path / "run", {"train.epochs": 1, "data.val_list": None})
    train(cfg)
    with pytest.raises(ResumeError, match="--resume auto"):
        train(cfg)
    with pytest.raises(ResumeError, match="different config.*optim.lr"):
        train(toy_task.config(tmp_path / "run", {"train.epochs": 1, "data.val_list": None, "optim.lr": 1e-2}),
              resume="auto")  # fmt: skip


def test_bridge_and_prompt_trains_only_prompts_from_an_init_from_model(toy_task, tmp_path):
    first = toy_task.config(tmp_path / "k400", {"train.epochs": 1, "data.val_list": None})
    base = train(first).model
    cfg = toy_task.config(tmp_path / "prompt", {
        "train.epochs": 1, "data.val_list": None, "model.variant": "prompt", "model.init_from": str(first.run_dir),
        "model.prompts": {"n_vision": 2, "n_text": 2, "depth_vision": 2, "depth_text": 2}, "optim.lr": 1e-2,
        "train.grad_checkpointing": True})  # fmt: skip
    result = train(cfg)
    model = result.model
    assert model.num_trainable_parameters() == 2 * 2 * 64 + 2 * 2 * 64  # depth × n × width, both towers
    for key, value in model.clip.state_dict().items():  # the bridged CLIP is the init-from model, untouched
        assert torch.equal(value, base.clip.state_dict()[key]), key
    reloaded = load_model(runs.pointer_dir(cfg.run_dir) / "model.safetensors")
    assert sum(p.numel() for p in reloaded.prompts.parameters()) == 512


def test_fp16_needs_cuda_and_tensorboard_gets_scalars(toy_task, tmp_path):
    if not torch.cuda.is_available():
        with pytest.raises(VificlipError, match="fp16 needs a CUDA device"):
            train(toy_task.config(tmp_path / "fp16", {"train.precision": "fp16"}))
    pytest.importorskip("tensorboard")
    cfg = toy_task.config(tmp_path / "tb", {"train.epochs": 1, "output.tensorboard": True})
    train(cfg)
    assert list((cfg.run_dir / "tensorboard").glob("events.out.tfevents.*"))


def test_weights_do_not_depend_on_the_number_of_loader_workers(toy_task, tmp_path):
    """Augmentations are seeded per (seed, epoch, video) and mixup per step, so workers change nothing."""
    runs = [
        train(toy_task.config(tmp_path / f"w{w}", {"train.epochs": 2, "data.num_workers": w})) for w in (0, 2)
    ]
    for key, value in runs[0].model.state_dict().items():
        assert torch.equal(value, runs[1].model.state_dict()[key]), key


@pytest.mark.slow
def test_compiled_frame_encoder_and_activation_checkpointing_train_like_eager(toy_task, tmp_path):
    eager = toy_task.config(tmp_path / "eager", {"train.epochs": 1, "data.val_list": None})
    fast = toy_task.config(tmp_path / "fast", {"train.epochs": 1, "data.val_list": None, "train.compile": True,
                                               "train.grad_checkpointing": True})  # fmt: skip
    train(eager), train(fast)
    want = [row["loss"] for row in read_metrics(eager.run_dir, "train")]
    assert [row["loss"] for row in read_metrics(fast.run_dir, "train")] == pytest.approx(want, rel=1e-4)
