"""What one interpretation reads: the after image (and a before image, aligned on its grid) and the permits.

Opened once, by `open_inputs`, before any model runs: a bad image, a pair that does not overlap
(or only by a sliver), or a permits file that cannot be placed on the image or misses it entirely
fails here, with nothing written. The permits are loaded in this one place, in the analysis grid's
CRS; everything downstream receives `Permits`. Messages call the files by the names the user knows
(`names`: the service passes the uploaded files' names).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from shapely.geometry import Polygon

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

    def footprint(self) -> Polygon:
        """The analysis grid's outline in its CRS."""
        info = self.info
        return Polygon([info.transform @ corner for corner in ((0, 0), (info.width, 0), (info.width, info.height), (0, info.height))])

    def describe(self) -> dict:
        """For summary.json: how each image was read (type, scaling, georeferencing)."""
        sides = {"after": self.after, "before": self.before} if self.before is not None else {"image": self.after}
        return {role: _source(side).describe() for role, side in sides.items()}

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


def _source(side) -> RasterSource:
    """The file behind a date (a windowed or warped view of it, or the file itself)."""
    return getattr(side, "source", side)


def open_inputs(after: str | Path, before: str | Path | None = None, permits: str | Path | None = None, *,
                channels: int = 3, bands: list[int] | None = None, gsd: float | None = None,
                names: dict[str, str] | None = None, bands_option: str = "--bands") -> Inputs:
    """Open (and align) the images and load the permits; every problem a user can cause is an InputError.

    `names` ("after", "before", "permits"): how messages call the files; `bands_option`: how they tell
    the user to pick bands."""
    names = names or {}
    if before is not None:
        pair = open_pair(before, after, channels=channels, bands=bands, gsd=gsd, names=names, bands_option=bands_option)
        inputs = Inputs(pair.after, pair.before, pair, None, gsd, Path(after), Path(before))
    else:
        source = RasterSource(after, channels=channels, bands=bands, gsd=gsd, name=names.get("after"), bands_option=bands_option)
        inputs = Inputs(source, None, None, None, gsd, Path(after), None)
    try:
        if permits is not None:
            inputs.permits = load_permits(permits, inputs.info.crs, name=names.get("permits"))
            image = f"the after image ({_source(inputs.after).name})" if before is not None else _source(inputs.after).name
            inputs.permits.require_on_image(inputs.footprint(), image)
    except BaseException:
        inputs.close()
        raise
    return inputs
