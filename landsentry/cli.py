"""The `landsentry` command: dispatches `landsentry NAME ...` to the module that owns NAME.

Each subcommand module exposes `main(argv: list[str]) -> int` with its own argparse parser, and is
imported only when asked for, so `predict` never loads the training code and `--help` stays quick.
"""
from __future__ import annotations

import importlib
import sys

from landsentry.models.vocabulary.errors import LandsentryError

COMMANDS: dict[str, tuple[str, str]] = {
    "predict": ("landsentry.models.cli.predict", "interpret an image (or a before/after pair) into classes, polygons and an overlay"),
    "batch": ("landsentry.models.cli.batch", "interpret many scenes (a manifest or folders) on Dask, resumably, into one flag register"),
    "bench-batch": ("landsentry.models.cli.bench_batch", "measure landsentry batch on local Dask clusters against a plain loop over the same scenes"),
    "train": ("landsentry.training.train", "train or fine-tune a segmentation model"),
    "bench-train": ("landsentry.training.bench_train", "measure training throughput (samples/s) of a recipe on this machine"),
    "loso": ("landsentry.training.loso", "leave-one-source-out table of a training recipe (train without each source, score on it)"),
    "bench-adapt": ("landsentry.api.adapt_bench", "does retraining help on a new place? k annotated images through the service's retraining, scored on the rest"),
    "evaluate": ("landsentry.models.cli.evaluate", "evaluate a checkpoint on a labelled dataset (per-class IoU)"),
    "download": ("landsentry.training.download", "download a public dataset (LoveDA) with checksums and resume"),
    "evaluate-change": ("landsentry.models.cli.evaluate_change", "score change maps on a LEVIR-CD-layout folder"),
    "serve": ("landsentry.api.cli", "run the web service and page"),
    "samples": ("landsentry.api.samples_cli", "add a training sample: an image with a mask PNG or labelled polygons (GeoJSON, GeoPackage)"),
    "bench": ("landsentry.models.cli.bench", "measure throughput on this machine"),
    "export": ("landsentry.models.cli.export", "export a checkpoint (ONNX)"),
}


def _usage() -> str:
    lines = ["usage: landsentry COMMAND [options]", "", "commands:"]
    lines += [f"  {name:<16} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "`landsentry COMMAND --help` shows a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(_usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"landsentry: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    try:
        module = importlib.import_module(COMMANDS[name][0])
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith(COMMANDS[name][0].split(".")[0]):
            print(f"landsentry: command {name!r} is not available in this version", file=sys.stderr)
            return 2
        raise
    try:
        return int(module.main(rest) or 0)
    except LandsentryError as exc:
        print(f"landsentry {name}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"landsentry {name}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
