"""landsentry: roads, earthworks and buildings in satellite and aerial imagery, new ones between two dates.

The distribution installs one import name, `landsentry`; the repository's folders become its parts:
`landsentry.models` (everything inference needs, `models/`), `landsentry.training` (`training/`) and
`landsentry.api` (the service, `api/`). `landsentry.cli` is the `landsentry` command.
"""
from __future__ import annotations

__version__ = "0.2.0"


def main(argv: list[str] | None = None) -> int:
    """The `landsentry` command (see `landsentry.cli`)."""
    from landsentry.cli import main as run

    return run(argv)
