"""The one table of what landsentry flags: each kind with its class, change code, colour and default minimum area.

A *kind* is what an analyst receives: `building`, `road`, `earthwork` on one image, `new_building`,
`new_road`, `new_earthwork` between two dates. Everything that needs a kind's class, its code in
change.tif, its colour or its default minimum area reads it here (flags, change detection, the
predict CLI's help, the service's /v1/classes, evaluation); nothing else spells them out.
"""
from __future__ import annotations

from dataclasses import dataclass

from landsentry.models.vocabulary.classes import CLASS_ID, CLASSES

NO_CHANGE = 0
"""change.tif: no new kind here."""
CHANGE_NODATA = 255
"""change.tif: outside the overlap of the two dates, or nodata in either."""
NEW_PREFIX = "new_"


@dataclass(frozen=True)
class Kind:
    """One flagged kind (its two-date form is `new_<name>`)."""

    name: str
    class_name: str
    """The schema class a region of this kind is made of."""
    change_code: int
    """Its value in change.tif."""
    change_colour: tuple[int, int, int]
    """Outline and tint of new regions of this kind in overlays."""
    min_area_m2: float
    """Default smallest flag kept (the analyst's minimum mapping unit)."""
    suspectable: bool
    """Whether the suspected-illegal rules apply (roads are public works more often than not)."""

    @property
    def class_id(self) -> int:
        return CLASS_ID[self.class_name]

    @property
    def new_name(self) -> str:
        return NEW_PREFIX + self.name

    @property
    def colour(self) -> tuple[int, int, int]:
        """The colour of the class it is made of (single-date flags)."""
        return CLASSES[self.class_id].color


KINDS: tuple[Kind, ...] = (
    Kind("building", "building", 1, (230, 25, 75), 20.0, True),
    Kind("road", "road", 2, (255, 225, 25), 50.0, False),
    Kind("earthwork", "bare_soil", 3, (245, 130, 48), 100.0, True),
)
"""In priority order: where the change masks of two kinds meet, the first one wins."""
KIND_NAMES: tuple[str, ...] = tuple(k.name for k in KINDS)
CHANGE_KIND_NAMES: tuple[str, ...] = tuple(k.new_name for k in KINDS)
BY_NAME: dict[str, Kind] = {k.name: k for k in KINDS}
BY_CODE: dict[int, Kind] = {k.change_code: k for k in KINDS}
BY_CLASS_ID: dict[int, Kind] = {k.class_id: k for k in KINDS}
DEFAULT_MIN_AREA_M2: dict[str, float] = {k.name: k.min_area_m2 for k in KINDS}


def kind_of(name: str) -> Kind:
    """The Kind of `building` or `new_building` alike; KeyError for anything else."""
    return BY_NAME[name[len(NEW_PREFIX):] if name.startswith(NEW_PREFIX) else name]


def kind_colours() -> dict[str, list[int]]:
    """Every kind name (single-date and new_*) -> its colour, as the service and the page use them."""
    colours = {k.name: list(k.colour) for k in KINDS}
    colours.update({k.new_name: list(k.change_colour) for k in KINDS})
    return colours
