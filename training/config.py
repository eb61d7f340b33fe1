"""Typed training configuration: dataclass defaults < optional TOML/JSON file < command-line options.

Every field is also a `--field-name` option, so `landsentry train --config base.toml --epochs 3`
works without a configuration framework.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path

from landsentry.models.vocabulary.errors import InputError
from landsentry.models.nn.network import DEFAULT_ARCHITECTURE


@dataclass
class TrainConfig:
    # data: "layout:path" specs; layouts in models/data/registry.py (dubai, loveda, roads_cil, deepglobe_roads, folder)
    data: list[str] = field(default_factory=list)
    data_weights: list[float] = field(default_factory=list)  # share of training crops per `data` spec; empty: by area over all
    keep_test_splits: bool = False  # layouts' fixed test groups (models/data/layouts.py) stay out of training unless set
    val_data: list[str] = field(default_factory=list)  # whole images used only for validation
    holdout: list[str] = field(default_factory=list)  # source groups of `data` held out for validation
    holdout_splits: list[str] = field(default_factory=list)  # e.g. ["val"]: every layout's fixed groups of that split join `holdout`
    replay: list[str] = field(default_factory=list)  # earlier data mixed into fine-tuning
    replay_share: float = 0.3
    replay_holdout: list[str] = field(default_factory=list)  # groups of `replay` kept out of it (the parent's validation images)
    out: str = "runs/train"
    # model
    arch: str = DEFAULT_ARCHITECTURE  # lightunet_lite0/1/2, or unet_lite0 (models/nn/network.py)
    decoder_channels: list[int] = field(default_factory=lambda: [128, 64, 32, 16])
    in_channels: int = 3
    pretrained: bool = True  # ImageNet encoder (offline); --no-pretrained starts from random weights
    init_from: str | None = None  # fine-tune: start from this checkpoint's weights
    resume: str | None = None  # continue an interrupted run (model, optimizer, scheduler, epoch, RNG)
    # optimisation
    epochs: int = 10
    samples_per_epoch: int = 2000
    crop_size: int = 256
    batch_size: int = 8
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    dice_weight: float = 0.5
    class_balance_power: float = 0.5
    rare_crop_prob: float = 0.5  # share of crops centred on a building/road/bare-soil pixel
    scale_range: list[float] = field(default_factory=lambda: [0.75, 1.5])  # crop scale jitter (ground resolutions seen)
    working_gsd: float | None = None  # m/px: crops of sources with a known ground resolution are zoomed by gsd / working_gsd (times scale_range); recorded in the checkpoint
    color_strength: float = 1.0  # colour jitter ranges (brightness, contrast, saturation, hue, gamma) times this
    grayscale_p: float = 0.1  # share of crops made panchromatic
    bn_frozen: bool = False  # every batch-norm layer keeps the parent's statistics (fine-tuning on a few images of one place)
    freeze_blocks: int = 0  # encoder stem + this many first blocks keep their ImageNet weights (Lite0 3, Lite1/2 4: strides 2 and 4; faster)
    channels_last: bool = True  # NHWC memory format: ~1.3x faster training on CPU
    encoder_bn_frozen: bool = False  # the encoder's batch-norm layers keep ImageNet's statistics (no batch statistics to compute)
    loss_stride: int = 1  # 2: the loss reads the decoder's stride-2 logits against every second label pixel (no upsampling)
    # runtime
    device: str = "auto"
    amp: bool = True  # mixed precision on CUDA (bfloat16 where supported, else float16 + scaler)
    workers: int = 0
    threads: int = 0  # torch CPU threads; 0 = torch's default
    seed: int = 0
    eval_tile: int = 512
    max_steps_per_epoch: int = 0  # 0 = samples_per_epoch / batch_size; small values for smoke tests
    time_limit_min: float = 0.0  # stop after the epoch that crosses this wall-clock budget; 0 = none
    progress_file: str | None = None  # append progress as JSON lines here (training/progress.py), e.g. for the service
    note: str = ""


def _field_types() -> dict[str, typing.Any]:
    return typing.get_type_hints(TrainConfig)


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One option per field (defaults None, so only what the user typed overrides the file)."""
    parser.add_argument("--config", type=Path, help="TOML or JSON file with any of the options below")
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        kind = _field_types()[f.name]
        origin = typing.get_origin(kind)
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None)
        elif origin is list:
            (inner,) = typing.get_args(kind)
            parser.add_argument(flag, nargs="+", type=inner, default=None)
        else:
            base = next((t for t in typing.get_args(kind) if t is not type(None)), kind)
            parser.add_argument(flag, type=base, default=None)


def config_values(args: argparse.Namespace) -> dict[str, typing.Any]:
    """The options the user gave: the config file's, overridden by those typed on the command line."""
    values: dict[str, typing.Any] = {}
    if args.config:
        values.update(read_config_file(args.config))
    for f in dataclasses.fields(TrainConfig):
        v = getattr(args, f.name, None)
        if v is not None:
            values[f.name] = v
    return values



def read_config_file(path: Path) -> dict:
    try:
        text = path.read_text()
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except FileNotFoundError:
        raise InputError(f"config file not found: {path}") from None
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"config file {path} is not valid {path.suffix.lstrip('.') or 'JSON'}: {exc}") from None
    if not isinstance(data, dict):
        raise InputError(f"config file {path} must hold a table of options")
    return data


def make_config(values: dict) -> TrainConfig:
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise InputError(f"unknown training option(s): {', '.join(unknown)}")
    cfg = TrainConfig(**values)
    if cfg.data_weights and (len(cfg.data_weights) != len(cfg.data) or min(cfg.data_weights) < 0 or sum(cfg.data_weights) <= 0):
        raise InputError("data_weights needs one non-negative share per data spec, not all zero")
    if len(cfg.scale_range) != 2 or not 0 < cfg.scale_range[0] <= cfg.scale_range[1]:
        raise InputError("scale_range takes two positive numbers, low then high")
    if cfg.working_gsd is not None and not 0.05 <= cfg.working_gsd <= 10:
        raise InputError("working_gsd must be a ground resolution in metres per pixel between 0.05 and 10")
    if not 0 <= cfg.freeze_blocks <= 21:
        raise InputError("freeze_blocks must be between 0 and the encoder's blocks (Lite0: 16, Lite1 and Lite2: 21)")
    if cfg.loss_stride not in (1, 2):
        raise InputError("loss_stride must be 1 (full-size logits) or 2 (the decoder's stride-2 logits)")
    if cfg.crop_size % 32 or cfg.crop_size < 64:
        raise InputError("crop_size must be a multiple of 32, at least 64")
    if not 0 <= cfg.replay_share < 1:
        raise InputError("replay_share must be in [0, 1)")
    if cfg.epochs < 1 or cfg.batch_size < 1 or cfg.samples_per_epoch < 1:
        raise InputError("epochs, batch_size and samples_per_epoch must be positive")
    if cfg.resume and cfg.init_from:
        raise InputError("--resume continues a run; --init-from starts a new one from weights: use one")
    if not cfg.data and not cfg.resume:
        raise InputError("no training data: pass --data LAYOUT:PATH (layouts: dubai, loveda, folder)")
    return cfg


def config_dict(cfg: TrainConfig) -> dict:
    return dataclasses.asdict(cfg)
