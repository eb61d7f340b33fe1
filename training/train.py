"""`landsentry train`: train, evaluate, resume and fine-tune the segmentation model.

Reads top to bottom like torchvision's segmentation reference: `train_one_epoch`, `evaluate`, `main`.
Runs on CPU or CUDA (mixed precision on CUDA) and, under `torchrun --nproc_per_node=N`, as
DistributedDataParallel with a distributed sampler and checkpoints written by rank 0 only.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from landsentry.models.nn.checkpoint import Checkpoint, checkpoint_from_model, load_checkpoint, save_checkpoint
from landsentry.models.vocabulary.classes import CLASS_NAMES, IGNORE_INDEX, NUM_CLASSES, schema_dict
from landsentry.models.nn.encoder import IMAGENET_MEAN, IMAGENET_STD
from landsentry.models.nn.normalization import Normalize, band_stats
from landsentry.models.vocabulary.errors import CheckpointError, InputError
from landsentry.models.nn.network import build_model
from landsentry.models.inference.device import resolve_device
from landsentry.models.inference.runner import Predictor
from landsentry.training import distributed as dist_utils
from landsentry.training.config import TrainConfig, add_config_arguments, config_dict, config_values, make_config
from landsentry.training.curves import plot_curves
from landsentry.training.data_setup import DataSetup, build_data
from landsentry.training.losses import CEDiceLoss, balanced_class_weights
from landsentry.training.progress import NO_PROGRESS, OnStep, ProgressLog
from landsentry.models.data.metrics import ConfusionMatrix
from landsentry.models.evaluation.segmentation import held_out_metrics, score_by_source


def train_one_epoch(
    model: nn.Module,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    loader: DataLoader,
    device: torch.device,
    epoch: int,
    amp_dtype: torch.dtype | None,
    scaler: torch.amp.GradScaler | None,
    normalize: nn.Module,
    max_steps: int = 0,
    show_progress: bool = True,
    on_step: OnStep | None = None,
    frozen: list[nn.Module] | None = None,
    channels_last: bool = False,
    loss_stride: int = 1,
) -> dict[str, float]:
    """One pass over the loader; returns mean loss and throughput (samples/s).

    With `loss_stride` 2 the loss is computed on the decoder's own stride-2 logits against every
    second label pixel: the full-size upsampling and a quarter of the loss's work are skipped.
    """
    model.train()
    for module in frozen or []:
        module.eval()  # frozen layers keep ImageNet's batch-norm statistics too
    total_loss, samples, steps = 0.0, 0, 0
    started = time.perf_counter()
    # in a log file (not a terminal) a bar line every 30 s is plenty
    interval = 0.1 if sys.stderr.isatty() else 30.0
    bar = tqdm(loader, desc=f"epoch {epoch}", unit="batch", disable=not show_progress, leave=False, mininterval=interval)
    for batch in bar:
        images = normalize(batch["image"].to(device, non_blocking=True).float())
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        targets = batch["mask"].to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            if loss_stride > 1:
                logits = model(images, full_size=False)
                targets = targets[:, loss_stride // 2 :: loss_stride, loss_stride // 2 :: loss_stride]
            else:
                logits = model(images)
            loss = criterion(logits, targets)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        scheduler.step()
        total_loss += float(loss.detach()) * len(images)
        samples += len(images)
        steps += 1
        rate = samples / (time.perf_counter() - started)
        bar.set_postfix(loss=f"{total_loss / samples:.3f}", samples_s=f"{rate:.1f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
        if on_step is not None:
            on_step(steps, total_loss / samples, rate)
        if max_steps and steps >= max_steps:
            break
    bar.close()
    elapsed = time.perf_counter() - started
    return {"loss": total_loss / max(samples, 1), "samples": samples, "samples_per_s": samples / max(elapsed, 1e-9), "seconds": elapsed}


def evaluate(model: nn.Module, checkpoint: Checkpoint, val_images: list, val_sources: list[str], device: torch.device,
             tile: int, rank: int = 0, world: int = 1, zooms: list[float] | None = None) -> dict[str, ConfusionMatrix]:
    """Per-class IoU on WHOLE held-out images, tiled exactly as inference tiles them, one matrix per source.

    Each rank scores its share of the images; the confusion matrices are summed across ranks.
    """
    model.eval()
    predictor = Predictor(checkpoint, device=str(device), tile=tile, batch_size=4, model=model)  # inference's overlap
    return score_by_source(predictor, val_images, val_sources, rank, world, zooms)


def freeze_first_blocks(model: nn.Module, blocks: int) -> list[nn.Module]:
    """Keep the encoder's stem and first `blocks` blocks at their (ImageNet) weights; returns them.

    With nothing below them to train, autograd never goes back through the full-resolution layers:
    freezing the stride-2 and stride-4 stages (3 blocks) makes a CPU training step ~1.7x faster,
    and their generic edge and colour filters are what generalises anyway.
    """
    if blocks <= 0:
        return []
    encoder = model.encoder
    frozen = [encoder.stem, *encoder.blocks[:blocks]]
    for module in frozen:
        module.requires_grad_(False)
    return frozen


def make_scheduler(optimizer: torch.optim.Optimizer, warmup: int, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up, then cosine decay to 1% of the peak learning rate."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def rng_state() -> dict:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "python": random.getstate(),
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    random.setstate(tuple(tuple(x) if isinstance(x, list) else x for x in state["python"]))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="landsentry train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(p)
    return p


def resolve_config(args: argparse.Namespace) -> tuple[TrainConfig, Checkpoint | None]:
    """The run's configuration; a resumed run starts from the configuration stored in its checkpoint."""
    if not args.resume:
        values = config_values(args)
        if values.get("init_from") and not {"arch", "in_channels", "decoder_channels"} & set(values):
            # fine-tuning keeps the parent's architecture unless told otherwise
            parent = load_checkpoint(values["init_from"]).arch
            values.update(arch=parent["name"], in_channels=parent["in_channels"], decoder_channels=list(parent["decoder_channels"]))
        return make_config(values), None
    ckpt = load_checkpoint(args.resume)
    stored = dict(ckpt.metadata.get("config", {}))
    if not stored or "training_state" not in ckpt.to_dict() or not ckpt.training_state:
        raise CheckpointError(f"{args.resume} has no training state to resume from (a released model? use --init-from)")
    typed = {k: v for k, v in vars(args).items() if v is not None and k != "config"}
    stored.update(typed)
    stored["resume"] = str(args.resume)
    stored["init_from"] = None
    cfg = make_config(stored)
    arch = {"name": cfg.arch, "in_channels": cfg.in_channels, "num_classes": NUM_CLASSES, "decoder_channels": list(cfg.decoder_channels)}
    if ckpt.arch != arch:
        raise CheckpointError(f"cannot resume: {args.resume} holds architecture {ckpt.arch}, this run asks for {arch}")
    return cfg, ckpt


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    cfg, resume_ckpt = resolve_config(args)
    threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    rank, world, device = dist_utils.init_distributed(resolve_device(cfg.device))
    main_process = dist_utils.is_main(rank)
    progress = ProgressLog(cfg.progress_file if main_process else None)
    try:
        return _run(cfg, resume_ckpt, rank, world, device, main_process, progress)
    except Exception as exc:
        progress.error(exc)  # the reason, for whoever reads the progress file
        raise
    finally:
        dist_utils.cleanup()
        torch.set_num_threads(threads)  # callers in the same process (tests, the service) keep theirs


def _run(cfg: TrainConfig, resume_ckpt: Checkpoint | None, rank: int, world: int, device: torch.device, main_process: bool,
         progress: ProgressLog = NO_PROGRESS) -> int:
    seed_everything(cfg.seed + rank)
    out = Path(cfg.out)
    log = _logger(out / "train.log" if main_process else None, main_process)
    data: DataSetup = build_data(cfg)
    log(data.describe())

    # --- model: fresh (ImageNet or random encoder), from a parent checkpoint, or resumed -------------
    arch = {"name": cfg.arch, "in_channels": cfg.in_channels, "num_classes": NUM_CLASSES, "decoder_channels": list(cfg.decoder_channels)}
    parent = None
    model = build_model(**arch, pretrained=cfg.pretrained and not (cfg.init_from or resume_ckpt))
    if cfg.init_from:
        parent_ckpt = load_checkpoint(cfg.init_from)
        if parent_ckpt.arch != arch:
            raise CheckpointError(f"--init-from {cfg.init_from} holds architecture {parent_ckpt.arch}, not {arch}")
        model.load_state_dict(parent_ckpt.state_dict)
        parent = {"path": str(cfg.init_from), "version": parent_ckpt.metadata.get("version"), "metrics": parent_ckpt.metadata.get("metrics")}
    if resume_ckpt is not None:
        model.load_state_dict(resume_ckpt.state_dict)
        parent = resume_ckpt.metadata.get("parent")
    model.to(device)
    if cfg.loss_stride > 1 and model.decoder.output_stride != cfg.loss_stride:
        raise InputError(f"loss_stride {cfg.loss_stride} needs a decoder that stops at stride {cfg.loss_stride}; "
                         f"this one stops at stride {model.decoder.output_stride}")
    if cfg.freeze_blocks > len(model.encoder.blocks):
        raise InputError(f"freeze_blocks {cfg.freeze_blocks}: the {cfg.arch} encoder has {len(model.encoder.blocks)} blocks")
    frozen = freeze_first_blocks(model, cfg.freeze_blocks)
    if cfg.bn_frozen:  # eval mode each epoch: running statistics stay the parent's, the affine weights still train
        frozen += [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    elif cfg.encoder_bn_frozen:  # the encoder's statistics stay ImageNet's (or the parent's): cheaper steps
        frozen += [m for m in model.encoder.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if world > 1:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model) if device.type == "cuda" else model
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    bare = model.module if world > 1 else model

    # --- loss, optimiser, schedule -------------------------------------------------------------------
    weights = balanced_class_weights(data.class_pixels, power=cfg.class_balance_power)
    log("class weights: " + ", ".join(f"{n}={w:.2f}" for n, w in zip(CLASS_NAMES, weights.tolist())))
    criterion = CEDiceLoss(weights.to(device), dice_weight=cfg.dice_weight)
    optimizer = torch.optim.AdamW([p for p in bare.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=cfg.weight_decay)
    sampler = DistributedSampler(data.train, num_replicas=world, rank=rank, shuffle=True, seed=cfg.seed) if world > 1 else None
    loader = DataLoader(data.train, batch_size=cfg.batch_size, shuffle=sampler is None, sampler=sampler,
                        num_workers=cfg.workers, drop_last=True, pin_memory=device.type == "cuda",
                        persistent_workers=cfg.workers > 0)
    steps_per_epoch = len(loader) if not cfg.max_steps_per_epoch else min(len(loader), cfg.max_steps_per_epoch)
    scheduler = make_scheduler(optimizer, min(cfg.warmup_steps, steps_per_epoch * cfg.epochs // 4 + 1), steps_per_epoch * cfg.epochs)
    amp_dtype, scaler = None, None
    if cfg.amp and device.type == "cuda":
        amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    normalize = Normalize(IMAGENET_MEAN, IMAGENET_STD, cfg.in_channels).to(device)

    start_epoch, history, best = 1, [], -1.0
    if resume_ckpt is not None:
        state = resume_ckpt.training_state
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        start_epoch, history, best = int(state["epoch"]) + 1, list(state["history"]), float(state["best_miou"])
        set_rng_state(state["rng"][rank] if isinstance(state["rng"], list) and rank < len(state["rng"]) else state["rng"])
        log(f"resumed from {cfg.resume} at epoch {start_epoch}")

    # --- epochs --------------------------------------------------------------------------------------
    started = time.perf_counter()
    previous_seconds = float(history[-1]["elapsed_s"]) if history else 0.0
    for epoch in range(start_epoch, cfg.epochs + 1):
        if sampler is not None:
            sampler.set_epoch(epoch)
        data.set_epoch(epoch)
        stats = train_one_epoch(model, criterion, optimizer, scheduler, loader, device, epoch, amp_dtype, scaler,
                                normalize, cfg.max_steps_per_epoch, show_progress=main_process, frozen=frozen,
                                channels_last=cfg.channels_last, loss_stride=cfg.loss_stride,
                                on_step=progress.stepper(epoch, cfg.epochs, steps_per_epoch))
        snapshot = _checkpoint(bare, arch, cfg, data, parent, epoch, history, {})
        matrices = evaluate(bare, snapshot, data.val_images, data.val_sources, device, cfg.eval_tile, rank, world, data.val_zooms) if data.val_images else None
        metrics = held_out_metrics(matrices) if matrices else {}
        record = {"epoch": epoch, "loss": round(stats["loss"], 4), "samples_per_s": round(stats["samples_per_s"], 2),
                  "miou": metrics.get("miou"), "iou": metrics.get("iou"),
                  "sources": {s: m["miou"] for s, m in metrics.get("sources", {}).items()},
                  "elapsed_s": round(previous_seconds + time.perf_counter() - started, 1)}
        history.append(record)
        log(f"epoch {epoch}/{cfg.epochs}: loss {stats['loss']:.4f}, {stats['samples_per_s']:.1f} samples/s"
            + (f", val mIoU {metrics['miou']:.3f} (mean over sources: "
               + ", ".join(f"{s} {v:.3f}" for s, v in record["sources"].items()) + ")" if matrices else ""))
        for name, matrix in (matrices or {}).items():
            log(f"--- {name}\n" + matrix.report())
        if main_process:
            is_best = bool(matrices) and metrics["miou"] > best
            best = max(best, metrics.get("miou") or -1.0)
            final = _checkpoint(bare, arch, cfg, data, parent, epoch, history, metrics)
            final.training_state = {
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict() if scaler is not None else None,
                "epoch": epoch, "history": history, "best_miou": best, "rng": rng_state(),
            }
            save_checkpoint(final, out / "last.pt")
            if is_best or not data.val_images:
                final.training_state = {}
                save_checkpoint(final, out / "best.pt")
            plot_curves(out / "curves.png", {"train loss": [h["loss"] for h in history],
                                             "val mIoU": [h["miou"] if h["miou"] is not None else float("nan") for h in history]},
                        title=f"landsentry train: {out.name}")
            (out / "history.json").write_text(json.dumps(history, indent=1))
        dist_utils.barrier()
        progress.epoch(epoch, cfg.epochs, steps_per_epoch, stats["loss"], stats["samples_per_s"], metrics.get("miou"))
        if cfg.time_limit_min and (time.perf_counter() - started) / 60 > cfg.time_limit_min:
            log(f"time limit of {cfg.time_limit_min} min reached after epoch {epoch}")
            break

    checksums = dist_utils.gather_floats(dist_utils.weights_checksum(bare))
    if world > 1:
        # one write per line, so the ranks' lines do not interleave in a shared pipe
        sys.stdout.write(f"rank {rank}: weights checksum {checksums[rank]:.6f}; all ranks equal: {len(set(checksums)) == 1}\n")
        sys.stdout.flush()
    if main_process:
        log(f"done: checkpoints in {out} (last.pt, best.pt), curve {out / 'curves.png'}")
    return 0


def _checkpoint(model: nn.Module, arch: dict, cfg: TrainConfig, data: DataSetup, parent: dict | None, epoch: int, history: list, metrics: dict) -> Checkpoint:
    """The model as a self-describing checkpoint with its lineage and data."""
    n = cfg.in_channels
    mean, std = band_stats(IMAGENET_MEAN, n), band_stats(IMAGENET_STD, n)
    bands = ("red", "green", "blue") if n == 3 else (("pan",) if n == 1 else ("red", "green", "blue", "nir")[:n])
    metadata = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "epoch": epoch, "metrics": metrics, "history": list(history), "parent": parent,
        "data": data.manifest(), "config": config_dict(cfg), "gsd": cfg.working_gsd,
        "hardware": {"device": str(next(model.parameters()).device), "torch": str(torch.__version__),
                     "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
                     "world_size": int(os.environ.get("WORLD_SIZE", "1"))},
    }
    return checkpoint_from_model(model, arch, classes=schema_dict(), ignore_index=IGNORE_INDEX, mean=tuple(mean), std=tuple(std),
                                 bands=bands, metadata=metadata)


def _logger(path: Path | None, enabled: bool):
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)

    def log(message: str) -> None:
        if not enabled:
            return
        tqdm.write(message)
        if path is not None:
            with path.open("a") as fh:
                fh.write(message + "\n")

    return log
