"""Training (SPEC §3): ``fit()`` reads top to bottom — resume → for epoch → for micro-batch → evaluate → save.

Reference behaviour kept: mixup/cutmix + label smoothing + soft-target CE in every run (§2.8), loss divided by
the accumulation steps, a step every ``accumulation_steps`` micro-batches with leftovers dropped (§3.4), the LR
curve of :mod:`.optim`, evaluation at epoch 0, every ``eval_freq`` and the last epoch (§3.9), and one more
multi-view evaluation of the final model when configured. Fixed: DDP ``no_sync`` on non-final micro-steps
(quirk 32), exact mid-epoch resume (quirk 25), atomic checkpoints, any device and precision.

Nothing is lost (docs/engine.md, "What survives what"): one writer per run folder (:class:`.runs.RunLock`);
``--resume auto`` finds the newest complete checkpoint from the folder itself; SIGTERM or Ctrl-C finishes the
optimiser step, saves, and exits with :data:`.stop.STOP_EXIT_CODES` (a second signal aborts at once).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from ..atomic import atomic_write_text
from ..data.mixing import MixupCutmix, smooth_one_hot, soft_target_cross_entropy
from ..errors import VificlipError
from ..model.vificlip import ViFiCLIP
from . import builders, runs
from . import checkpoint as ckpt
from .batch import accumulation_steps
from .config import RunConfig, save_config
from .distributed import (
    ResumableSampler,
    Topology,
    all_gather_objects,
    all_reduce_sum,
    barrier,
    init_distributed,
)
from .evaluate import EvalSpec, autocast_context, evaluate_config, wise_interpolate
from .logging import MetricsWriter, attach_file_logs, detach_file_logs, memory_mb, progress_bar
from .metrics import EvalResult
from .optim import LRSchedule, build_optimizer, clip_gradients, steps_after
from .resume import ResumeError, check_run_dir
from .stop import StopSignals, TrainingStopped, train_worker_init

log = logging.getLogger(__name__)


class NonFiniteLossError(VificlipError, FloatingPointError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclasses.dataclass
class TrainResult:
    run_dir: Path
    checkpoint: Path | None  # folder of the final `last` checkpoint
    evals: list[dict]  # per evaluated epoch: {"epoch", "top1", ...}
    final: EvalResult | None  # the last evaluation (multi-view when configured)
    model: ViFiCLIP


class Trainer:
    """Holds what one training run needs; :meth:`fit` is the whole story."""

    def __init__(self, cfg: RunConfig, topo: Topology, resume: str | None = None, init_from: str | None = None,
                 overwrite: bool = False, stop: StopSignals | None = None):  # fmt: skip
        if cfg.model.variant == "zeroshot":
            raise VificlipError(
                "model.variant: zeroshot trains nothing; use `vificlip eval` for vanilla CLIP"
            )
        self.cfg, self.topo = cfg, topo
        self.run_dir = cfg.run_dir
        self.resume_from = check_run_dir(cfg, resume, overwrite, clear=topo.is_main)
        self.stop = stop or StopSignals()
        self.class_names = builders.class_names(cfg.data)
        self.train_items = builders.records(
            cfg.data, cfg.data.train_list, len(self.class_names), "data.train_list"
        )
        if cfg.data.val_list:
            val_items = builders.records(cfg.data, cfg.data.val_list, len(self.class_names), "data.val_list")
            builders.warn_leakage(self.train_items, val_items, str(cfg.data.val_list))
        # A resumed run takes every weight from its checkpoint: never re-apply an init-from (quirk 25).
        model_cfg = dataclasses.replace(cfg.model, init_from=None) if self.resume_from else cfg.model
        self.model = builders.build_model(model_cfg, None if self.resume_from else init_from).to(topo.device)
        self._setup_model()
        self.optimizer = build_optimizer(self.model, cfg.optim)
        self.dataset = builders.train_dataset(cfg.data, self.train_items, cfg.train.seed)
        self.sampler = ResumableSampler(self.dataset, topo.world_size, topo.rank, cfg.train.seed)
        self.loader = self._loader()
        self.steps_per_epoch = len(self.loader)
        self.accumulation = accumulation_steps(cfg, topo.world_size)  # from train.global_batch, or explicit
        if self.steps_per_epoch < self.accumulation:
            raise VificlipError(f"data.train_list: {len(self.train_items)} videos give {self.steps_per_epoch} "
                                f"micro-batches per process, fewer than the {self.accumulation} accumulation "
                                f"steps of one optimiser step; no optimiser step would ever run")  # fmt: skip
        self.schedule = LRSchedule(self.optimizer, cfg.optim.lr, cfg.train.epochs, self.steps_per_epoch,
                                   cfg.optim.warmup_epochs, cfg.optim.lr_min_ratio, cfg.optim.schedule)  # fmt: skip
        self.precision = self._precision()
        self.scaler = torch.amp.GradScaler(topo.device.type, enabled=self.precision == "fp16")
        self.mixer = MixupCutmix(len(self.class_names), cfg.train.mixup_alpha, cfg.train.cutmix_alpha,
                                 cfg.train.switch_prob, cfg.train.label_smoothing)  # fmt: skip
        self.init_source = init_from or cfg.model.init_from  # identity of the base, for the prompt artefact
        self.progress = ckpt.Progress()
        self.evals: list[dict] = []
        self.last_result: EvalResult | None = None
        self.metrics_rows: int | None = None  # rows of metrics.jsonl the resumed checkpoint had seen

    def _loader(self) -> DataLoader:
        """The reference drops the last partial batch (SPEC §3.5); workers restart each epoch to see its number."""
        workers = self.cfg.data.num_workers
        return DataLoader(self.dataset, self.cfg.train.batch_size, sampler=self.sampler, num_workers=workers,
                          pin_memory=self.topo.device.type == "cuda", drop_last=True,
                          worker_init_fn=train_worker_init if workers else None,
                          generator=torch.Generator().manual_seed(self.cfg.train.seed + self.topo.rank))  # fmt: skip

    def _precision(self) -> str:
        precision = self.cfg.train.precision
        if precision == "auto":
            return "bf16" if self.topo.device.type == "cuda" else "fp32"
        if precision == "fp16" and self.topo.device.type != "cuda":
            raise VificlipError("train.precision: fp16 needs a CUDA device (use bf16 or fp32 on CPU)")
        return precision

    def _setup_model(self) -> None:
        model, cfg = self.model, self.cfg.train
        model.set_grad_checkpointing(cfg.grad_checkpointing)
        if cfg.compile:
            model.encode_frames = torch.compile(model.encode_frames)  # the frame encoder is the hot path
        self.ddp = None
        if self.topo.distributed:
            ids = [self.topo.device.index] if self.topo.device.type == "cuda" else None
            self.ddp = DistributedDataParallel(model, device_ids=ids, broadcast_buffers=False)

    # ---- the story --------------------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        cfg = self.cfg
        if self.topo.is_main:
            save_config(cfg, self.run_dir)
        log.info("%s: effective batch %d processes × %d × %d accumulation = %d per optimiser step", cfg.name,
                 self.topo.world_size, cfg.train.batch_size, self.accumulation,
                 self.topo.world_size * cfg.train.batch_size * self.accumulation)  # fmt: skip
        log.info("%s: %d training videos, %d classes, %d trainable parameters, %d micro-batches per epoch",
                 cfg.name, len(self.train_items), len(self.class_names), self.model.num_trainable_parameters(),
                 self.steps_per_epoch)  # fmt: skip
        if self.resume_from is not None:
            self._restore(self.resume_from)
        # A fresh start keeps no rows (they belong to an attempt killed before its first checkpoint).
        resumed = self.resume_from is not None
        self.metrics = MetricsWriter(self.run_dir, self.topo.is_main, cfg.output.tensorboard,
                                     self.metrics_rows if resumed else 0,
                                     self.progress.global_step + 1 if resumed else 0)  # fmt: skip
        for epoch in range(self.progress.epoch, cfg.train.epochs):
            self._train_epoch(epoch, self.progress.micro_step)
            self.progress = dataclasses.replace(self.progress, epoch=epoch + 1, micro_step=0)
            last_epoch = epoch == cfg.train.epochs - 1
            evaluate = epoch % cfg.train.eval_freq == 0 or last_epoch  # SPEC §3.9, epoch 0 included
            result = self._evaluate(epoch) if evaluate and cfg.data.val_list else None
            keep = cfg.output.keep_every
            keep = evaluate if keep is None else bool(keep) and ((epoch + 1) % keep == 0 or last_epoch)
            # One name per epoch end (never the name of a mid-epoch save); prune drops it later unless kept.
            path = self._save(f"epoch_{epoch:03d}", result, keep)
            if self._stop_agreed():
                self._stopped(path)
        final = self._final_evaluations()
        self.metrics.close()
        last = runs.latest_checkpoint(self.run_dir)
        if self.topo.is_main and self.model.variant == "prompt":
            self._save_prompt_artefact()
        if self.topo.is_main:
            atomic_write_text(self.run_dir / runs.TRAIN_RESULTS_FILE, json.dumps(
                {"evals": self.evals, "final": final.to_json() if final else None,
                 "checkpoint": str(last) if last else None}, indent=1) + "\n")  # fmt: skip
        return TrainResult(self.run_dir, last, self.evals, final, self.model)

    def _save_prompt_artefact(self) -> None:
        """Bridge-and-prompt: also write the small file (prompts + identity of the frozen base, SPEC §1.5)."""
        from ..model.prompt_io import save_prompts
        from .resolve import resolve_weights

        base = self.init_source or self.cfg.model.checkpoint
        path = save_prompts(self.model, self.run_dir / runs.PROMPTS_FILE,
                            resolve_weights(base) if base else None,
                            metadata={"run": self.cfg.name, "classes": json.dumps(self.class_names)})  # fmt: skip
        log.info("prompts (%d parameters) written to %s", self.model.num_trainable_parameters(), path)

    def _train_epoch(self, epoch: int, start: int) -> None:
        """One epoch from micro-batch ``start`` (non-zero after a mid-epoch resume)."""
        cfg, topo, model = self.cfg.train, self.topo, self.model
        net = self.ddp if self.ddp is not None else model
        acc = self.accumulation
        self.sampler.set_epoch(epoch, skip=start * cfg.batch_size)
        self.dataset.set_epoch(epoch)
        model.train()
        self.optimizer.zero_grad(set_to_none=True)  # leftover micro-batches of the last epoch are dropped
        bar = progress_bar(self.steps_per_epoch, start, f"epoch {epoch + 1}/{cfg.epochs}", topo.is_main)
        tick, clips = time.perf_counter(), 0
        stop = False
        for micro, batch in enumerate(self.loader, start=start):
            # Randomness of this micro-step is a function of (seed, rank, epoch, micro): resume is exact.
            self.mixer.rng = np.random.default_rng([cfg.seed, topo.rank, epoch, micro])
            torch.manual_seed(hash((cfg.seed, topo.rank, epoch, micro)) % 2**63)
            videos = batch["video"].to(topo.device, non_blocking=True)  # [B, T, 3, S, S]
            labels = batch["label"].to(topo.device, non_blocking=True)  # [B]
            if cfg.mixup:
                videos, targets = self.mixer(videos, labels)  # soft targets [B, C]
            else:
                targets = smooth_one_hot(labels, len(self.class_names), cfg.label_smoothing)
            final_micro = steps_after(micro, acc)
            # Gradients are all-reduced once per optimiser step, not on every micro-batch (quirk 32).
            sync = contextlib.nullcontext() if final_micro or self.ddp is None else self.ddp.no_sync()
            with sync:
                with autocast_context(topo.device, self.precision):
                    logits = net(videos, self.class_names)  # [B, C]
                loss = soft_target_cross_entropy(logits, targets)
                loss_value = loss.item()  # one sync per micro-step, as the reference logs every loss
                # One collective: the loss summed over ranks, any rank's NaN, any rank's stop signal.
                loss_sum, nonfinite, stopping = all_reduce_sum(
                    [loss_value if math.isfinite(loss_value) else 0.0, not math.isfinite(loss_value),
                     self.stop.signum is not None], topo.device)  # fmt: skip
                stop = stop or stopping > 0
                if nonfinite > 0:
                    raise NonFiniteLossError(
                        f"loss is {loss_value} at epoch {epoch + 1}, micro-batch {micro}, optimiser step "
                        f"{self.progress.global_step + 1}; stopped, the last good checkpoint is kept in "
                        f"{runs.checkpoint_root(self.run_dir)}")  # fmt: skip
                self.scaler.scale(loss / acc).backward()  # mean over the accumulated micro-batches
            clips += videos.shape[0] * topo.world_size
            bar.update(1)
            if not final_micro:
                continue
            lr = self.schedule.current_lr()
            self.scaler.unscale_(self.optimizer)
            grad_norm = clip_gradients(model, cfg.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
            self.schedule.step(epoch * self.steps_per_epoch + micro)
            step = self.progress.global_step = self.progress.global_step + 1
            self.progress.micro_step = micro + 1
            rate = clips / max(time.perf_counter() - tick, 1e-9)
            loss_value = loss_sum / topo.world_size  # the mean over ranks, not rank 0's share
            bar.set_postfix(loss=f"{loss_value:.4f}", lr=f"{lr:.3g}", clips_s=f"{rate:.1f}",
                            mem_mb=f"{memory_mb(topo.device):.0f}")  # fmt: skip
            values = {"loss": loss_value, "lr": lr, "epoch": epoch, "clips_per_sec": rate}
            if grad_norm is not None:
                values["grad_norm"] = grad_norm
            self.metrics.write("train", step, values)
            if step % cfg.print_freq == 0:
                log.info("epoch %d step %d loss %.4f lr %.3g %.1f clips/s mem %.0f MiB", epoch + 1, step,
                         loss_value, lr, rate, memory_mb(topo.device))  # fmt: skip
            mid_epoch = micro + 1 < self.steps_per_epoch  # the epoch end saves under its own name
            if mid_epoch and (stop or (cfg.save_every_steps and step % cfg.save_every_steps == 0)):
                path = self._save(f"step_{step:07d}", None, keep=False)
                if stop:
                    bar.close()
                    self._stopped(path)
        bar.close()

    # ---- evaluation ---------------------------------------------------------------------------------------
    def _evaluate(self, epoch: int) -> EvalResult:
        result = evaluate_config(self.cfg, self.model, EvalSpec(f"epoch{epoch:03d}"), self.topo.device,
                                 self.run_dir / runs.EVALS_DIR)  # fmt: skip
        self.last_result = result
        row = {"epoch": epoch, **result.to_json()}
        self.evals.append(row)
        self.metrics.write("eval", self.progress.global_step, {"top1": result.top1, "top5": result.top5,
                                                               "mean_class": result.mean_class})  # fmt: skip
        if self.progress.best_top1 is None or result.top1 > self.progress.best_top1:
            self.progress.best_top1, self.progress.best_epoch = result.top1, epoch
        return result

    def _final_evaluations(self) -> EvalResult | None:
        """Multi-view evaluation of the final model (supervised: 4 clips × 3 crops), and WiSE-FT beside it."""
        e, cfg = self.cfg.eval, self.cfg
        if not cfg.data.val_list:
            return None
        final = None
        if (e.final_num_clips, e.final_num_crops) != (1, 1) or not self.evals:
            spec = EvalSpec(f"final_{e.final_num_clips}x{e.final_num_crops}", num_clips=e.final_num_clips,
                            num_crops=e.final_num_crops)  # fmt: skip
            final = evaluate_config(cfg, self.model, spec, self.topo.device, self.run_dir / runs.EVALS_DIR)
            self.evals.append({"epoch": "final", "views": f"{e.final_num_clips}x{e.final_num_crops}",
                               **final.to_json()})  # fmt: skip
        if e.wise_alpha is not None and cfg.model.checkpoint is not None and cfg.model.variant != "prompt":
            zero_shot = builders.load_weights(cfg.model.checkpoint, cfg.model).to(self.topo.device)
            wise = wise_interpolate(zero_shot, self.model, e.wise_alpha)
            result = evaluate_config(cfg, wise, EvalSpec(f"wise{e.wise_alpha:g}"), self.topo.device,
                                     self.run_dir / runs.EVALS_DIR)  # fmt: skip
            self.evals.append({"epoch": "wise", "alpha": e.wise_alpha, **result.to_json()})
        return final or self.last_result

    # ---- checkpoints --------------------------------------------------------------------------------------
    def _stop_agreed(self) -> bool:
        """Whether any rank got a stop signal (all ranks get the same answer)."""
        return all_reduce_sum([self.stop.signum is not None], self.topo.device)[0] > 0

    def _stopped(self, path: Path | None) -> None:
        signum = self.stop.signum or signal.SIGTERM
        raise TrainingStopped(f"stopped by {signal.Signals(signum).name} at epoch {self.progress.epoch + 1}, "
                              f"optimiser step {self.progress.global_step}; saved {path or 'a snapshot (rank 0)'}; continue with "
                              "--resume auto", signum)  # fmt: skip

    def _save(self, tag: str, result: EvalResult | None, keep: bool = True) -> Path | None:
        """Every rank contributes its RNG state; rank 0 writes. A barrier keeps ranks in step.

        Every rank checks the weights first (they are equal under DDP), so a NaN update stops all ranks together
        and is never saved: the last good checkpoint stays the run's latest.
        """
        bad = ckpt.nonfinite_tensors(self.model)
        if bad:
            raise ckpt.NonFiniteWeightsError(
                f"weights became non-finite ({', '.join(bad[:3])}) by optimiser step {self.progress.global_step}; "
                f"not saved, the last good checkpoint {runs.latest_checkpoint(self.run_dir) or '(none)'} is kept")  # fmt: skip
        rng = all_gather_objects(ckpt.rng_state())
        path = None
        if self.topo.is_main:
            state = {
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.schedule.state_dict(),
                "scaler": self.scaler.state_dict(),
                "progress": dataclasses.asdict(self.progress),
                "rng": rng,
                "evals": self.evals,
                "world_size": self.topo.world_size,
                "metrics_rows": self.metrics.rows,
            }
            info = {"epoch": self.progress.epoch, "micro_step": self.progress.micro_step,
                    "step": self.progress.global_step}  # fmt: skip
            pointers: dict[str, dict[str, Any]] = {"last": info}
            if result is not None and self.progress.best_epoch == self.evals[-1]["epoch"]:
                pointers["best"] = {**info, "top1": result.top1}
            path = ckpt.save_checkpoint(self.run_dir, self.model, state, tag, pointers, keep)
        barrier()
        return path

    def _restore(self, source: Path) -> None:
        from ..model.loading import load_model

        state = ckpt.load_training_state(source)
        if state["world_size"] != self.topo.world_size:
            raise ResumeError(f"{source} was written by {state['world_size']} processes, this run has "
                              f"{self.topo.world_size}; resume with the same number")  # fmt: skip
        builders.copy_weights(self.model, load_model(source / runs.MODEL_FILE), f"resume {source}")
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.progress = ckpt.Progress(**state["progress"])
        self.evals = list(state["evals"])
        ckpt.set_rng_state(state["rng"][self.topo.rank])
        self.metrics_rows = state.get("metrics_rows")
        if self.progress.micro_step >= self.steps_per_epoch:
            self.progress = dataclasses.replace(self.progress, epoch=self.progress.epoch + 1, micro_step=0)
        log.info("resumed %s at epoch %d, micro-batch %d (optimiser step %d)", source, self.progress.epoch + 1,
                 self.progress.micro_step, self.progress.global_step)  # fmt: skip


def train(cfg: RunConfig, resume: str | None = None, init_from: str | None = None, device: str = "auto",
          overwrite: bool = False) -> TrainResult:  # fmt: skip
    """Train one run (single process, or one rank under torchrun); ``resume`` is ``auto`` or a path.

    Rank 0 holds the run folder's lock from before the first write to the end. ``overwrite``: start over in a
    folder that holds an earlier run's checkpoints. Raises :class:`TrainingStopped` after SIGTERM/SIGINT.
    """
    topo = init_distributed(device)
    lock = runs.RunLock(cfg.run_dir).acquire() if topo.is_main else None
    try:
        if lock is not None:
            runs.remove_stale_temporaries(cfg.run_dir)
        handlers = attach_file_logs(cfg.run_dir, topo.rank)
        try:
            with StopSignals() as stop:
                return Trainer(cfg, topo, resume, init_from, overwrite, stop).fit()
        finally:
            detach_file_logs(handlers)
    finally:
        if lock is not None:
            lock.release()
