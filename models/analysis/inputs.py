"""What one interpretation reads: the after image (and a before image, aligned on its grid) and the permits.

Opened once, by `open_inputs`, before any model runs: a bad image, a pair that does not overlap
or a permits file that cannot be placed on the image fails here, with nothing written. The permits
are loaded in this one place, in the analysis grid's CRS; everything downstream receives `Permits`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from landsentry.models.io.align import AlignedPair, open_pair
from landsentry.models.io.permits import Permits, load_permits
from landsentry.models.io.raster import RasterInfo, RasterSource


@dataclass
class Inputs:
    """The sources on one analysis grid (`info`), with their file names and the permits."""

    after: object  # RasterSource, or the after side of `pair`
    before: object | None
    pair: AlignedPair | None
    permits: Permits | None
    gsd: float | None
    after_path: Path
    before_path: Path | None

    @property
    def info(self) -> RasterInfo:
        return self.pair.info if self.pair is not None else self.after.info

    @property
    def metric(self) -> bool:
        """Whether the grid's units are metres (a CRS, or a ground sample distance given for a plain image)."""
        return self.info.crs is not None or self.gsd is not None

    def close(self) -> None:
        (self.pair or self.after).close()

    def __enter__(self) -> "Inputs":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_inputs(after: str | Path, before: str | Path | None = None, permits: str | Path | None = None, *,
                channels: int = 3, bands: list[int] | None = None, gsd: float | None = None) -> Inputs:
    """Open (and align) the images and load the permits; every problem a user can cause is an InputError."""
    if before is not None:
        pair = open_pair(before, after, channels=channels, bands=bands, gsd=gsd)
        inputs = Inputs(pair.after, pair.before, pair, None, gsd, Path(after), Path(before))
    else:
        inputs = Inputs(RasterSource(after, channels=channels, bands=bands, gsd=gsd), None, None, None, gsd, Path(after), None)
    try:
        if permits is not None:
            inputs.permits = load_permits(permits, inputs.info.crs)
    except BaseException:
        inputs.close()
        raise
    return inputs
