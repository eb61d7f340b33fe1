"""Dataset layouts, one class each with what is known about the dataset on the class (as torchgeo does).

A layout's class attributes say what it labels, how its mask codes map onto the schema of
`landsentry.models.vocabulary.classes`, its ground resolution, where to get it (URL and published
checksums) and under which licence; its `records` (or, for change sets, `pairs`) lists the files.
Listing never decodes pixels: `samples.check_records` checks them before any work starts.
The change-pair layouts are in `change_layouts`; `registry` maps `name:PATH` specs to both.
"""
from __future__ import annotations

import re
from pathlib import Path
from types import MappingProxyType
from typing import Callable, ClassVar, Literal, Mapping, Sequence

from landsentry.models.data.masks import read_class_map
from landsentry.models.data.records import IMAGE_SUFFIXES, MASK_SUFFIXES, Code, Record, natural_key, raise_problems, visible_files
from landsentry.models.vocabulary.classes import CLASS_ID, IGNORE_INDEX, not_class
from landsentry.models.vocabulary.errors import InputError


def schema_codes(names: Mapping[int, str | None]) -> dict[int, int]:
    """Code -> schema id from code -> schema class name (None: the code means "no label", IGNORE_INDEX)."""
    return {code: IGNORE_INDEX if name is None else CLASS_ID[name] for code, name in names.items()}


class Layout:
    """A dataset's folder layout and metadata; subclasses set the class attributes."""

    name: ClassVar[str]
    """Spec key: `name:PATH` on the command line and in training configs."""
    title: ClassVar[str]
    labels: ClassVar[Literal["classes", "change"]]
    """"classes": every labelled pixel is one schema class; "change": a binary change label between two dates."""
    codes: ClassVar[Mapping[int, int] | None] = None
    """Mask code -> schema id (IGNORE_INDEX for no label); None when masks hold schema ids or change is 0/255."""
    gsd: ClassVar[float | None] = None
    """Ground sampling distance, metres per pixel; None when it varies or is not stated."""
    url: ClassVar[str | None] = None
    files: ClassVar[Mapping[str, tuple[str, str]]] = MappingProxyType({})
    """split -> (archive name under `url`, MD5), where checksums are published."""
    licence: ClassVar[str] = ""
    folders: ClassVar[str] = ""
    """The folder layout under ROOT."""
    partial: ClassVar[tuple[str, ...]] = ()
    """The classes a partial source labels (its other pixels say "not that class"); empty: every class."""
    splits: ClassVar[Mapping[str, tuple[str, ...]]] = MappingProxyType({})
    """Fixed groups per split: "test" (never trained on, reported) and "val" (model selection), where defined."""


class LoveDA(Layout):
    """LoveDA (Wang et al., NeurIPS 2021 Datasets): urban and rural 1024 px tiles of Nanjing, Changzhou and Wuhan."""

    name = "loveda"
    title = "LoveDA"
    labels = "classes"
    # LoveDA codes: 0 no-data, 1 background, 2 building, 3 road, 4 water, 5 barren, 6 forest, 7 agriculture.
    codes = schema_codes({0: None, 1: "background", 2: "building", 3: "road", 4: "water", 5: "bare_soil", 6: "vegetation", 7: "vegetation"})
    gsd = 0.3
    # Official archives: Zenodo record 5706578 (doi:10.5281/zenodo.5706578). URLs and MD5s as published in
    # torchgeo's `LoveDA.info_dict` (github.com/microsoft/torchgeo, torchgeo/datasets/loveda.py).
    url = "https://zenodo.org/records/5706578/files"
    files = {
        "train": ("Train.zip", "de2b196043ed9b4af1690b3f9a7d558f"),
        "val": ("Val.zip", "84cae2577468ff0b5386758bb386d31d"),
        "test": ("Test.zip", "a489be0090465e01fb067795d24e6b47"),
    }
    licence = "CC BY-NC-SA 4.0"
    folders = "{Train,Val,Test}/{Urban,Rural}/{images_png,masks_png}/N.png"

    @classmethod
    def records(
        cls, root: str | Path, splits: Sequence[str] = ("Train", "Val"), domains: Sequence[str] = ("Urban", "Rural")
    ) -> list[Record]:
        """LoveDA's own layout `ROOT/{Train,Val}/{Urban,Rural}/{images_png,masks_png}/N.png`, codes mapped with `codes`.

        Missing split/domain folders are skipped (a partial download still works). Each tile is its own
        group: LoveDA publishes no finer scene ids.
        """
        root = Path(root)
        records: list[Record] = []
        problems: list[str] = []
        for split in splits:
            for domain in domains:
                images_dir = root / split / domain / "images_png"
                masks_dir = root / split / domain / "masks_png"
                if not images_dir.is_dir():
                    continue
                for image in visible_files(images_dir, (".png",)):
                    mask = masks_dir / image.name
                    if not mask.is_file():
                        problems.append(f"{image}: no mask {mask}" + (" (LoveDA's Test split has no public masks)" if split.lower() == "test" else ""))
                        continue
                    source = f"loveda/{split}/{domain}/{image.stem}"
                    records.append(Record(image, mask, cls.codes, source, source, "LoveDA codes 0-7"))
        raise_problems(f"in LoveDA folder {root}", problems)
        if not records:
            raise InputError(
                f"no samples found under {root} (expected {'|'.join(splits)}/{'|'.join(domains)}/images_png/*.png and masks_png/*.png)"
            )
        return records


class DubaiAerial(Layout):
    """Satellite images of Dubai with polygon labels: desert construction, reclaimed land, graded plots, new roads."""

    name = "dubai"
    title = "Dubai aerial"
    labels = "classes"
    # Dubai aerial codes: 0 unlabeled, 1 building, 2 land (unpaved, bare), 3 road, 4 vegetation, 5 water.
    codes = schema_codes({0: None, 1: "building", 2: "bare_soil", 3: "road", 4: "vegetation", 5: "water"})
    colours: ClassVar[dict[Code, int]] = {
        (0x3C, 0x10, 0x98): CLASS_ID["building"],
        (0x84, 0x29, 0xF6): CLASS_ID["bare_soil"],  # land (unpaved area)
        (0x6E, 0xC1, 0xE4): CLASS_ID["road"],
        (0xFE, 0xDD, 0x3A): CLASS_ID["vegetation"],
        (0xE2, 0xA9, 0x29): CLASS_ID["water"],
        (0x9B, 0x9B, 0x9B): IGNORE_INDEX,  # unlabeled
    }
    """Colours of the original Kaggle release (RGB masks); the shared copy has index masks (`codes`)."""
    gsd = None  # roughly 0.6-1.5 m per pixel, differing between source tiles
    url = "https://www.kaggle.com/datasets/humansintheloop/semantic-segmentation-of-aerial-imagery"
    licence = "open access (Humans in the Loop with MBRSC)"
    splits = MappingProxyType({"test": ("dubai/t8",), "val": ("dubai/t4",)})
    folders = "images/*.jpg + masks/*.png (same stem), or the Kaggle release's 'Tile N/{images,masks}/'"

    _TILE = re.compile(r"t\s*(\d+)\s*$", re.IGNORECASE)

    @classmethod
    def tile(cls, stem: str) -> str | None:
        """Source tile number from a shared-copy file stem: 'image_part_001t3' (or 'image_part_001 t 3') -> '3'."""
        match = cls._TILE.search(stem)
        return match.group(1) if match else None

    @classmethod
    def records(cls, root: str | Path) -> list[Record]:
        """`ROOT/images/*.jpg` + `ROOT/masks/*.png` (same stem), group = source tile 'dubai/tT'.

        Also reads the original Kaggle layout `ROOT/Tile N/{images,masks}/` (group from the folder) and
        its RGB colour masks (`colours`); the shared copy has index masks 0-5 (`codes`).
        """
        root = Path(root)
        mapping: dict[Code, int] = {**cls.codes, **cls.colours}
        label_map = "Dubai codes 0-5 (or its RGB colours)"
        layouts: list[tuple[Path, str | None]] = []
        if (root / "images").is_dir():
            layouts.append((root, None))
        else:
            for tile_dir in sorted((d for d in root.glob("*") if d.is_dir() and (d / "images").is_dir()), key=natural_key):
                number = re.search(r"(\d+)\s*$", tile_dir.name)
                layouts.append((tile_dir, number.group(1) if number else tile_dir.name))
        records: list[Record] = []
        problems: list[str] = []
        for folder, tile in layouts:
            masks_dir = folder / "masks"
            for image in visible_files(folder / "images", IMAGE_SUFFIXES):
                mask = masks_dir / f"{image.stem}.png"
                if not mask.is_file():
                    problems.append(f"{image}: no mask {mask}")
                    continue
                t = tile if tile is not None else cls.tile(image.stem)
                source = f"dubai/{image.stem}" if tile is None else f"dubai/t{tile}/{image.stem}"
                group = f"dubai/t{t}" if t is not None else source
                records.append(Record(image, mask, mapping, source, group, label_map))
        raise_problems(f"in Dubai folder {root}", problems)
        if not records:
            raise InputError(f"no samples found under {root} (expected images/ and masks/, or 'Tile N/images' and 'Tile N/masks')")
        return records


class LabelledFolder(Layout):
    """A user's labelled folder, e.g. annotations exported from the service or from another tool."""

    name = "folder"
    title = "labelled folder"
    labels = "classes"
    folders = "images/*.{png,jpg,tif} + masks/*.png (same stem) + optional classes.json"
    class_maps: ClassVar[tuple[str, ...]] = ("classes.json", "classmap.json")
    mask_stem_suffixes: ClassVar[tuple[str, ...]] = ("", "_mask", "_label", "_gt")
    """A mask for `a.jpg` may be `a.png` or `a_mask.png`, `a_label.png`, `a_gt.png`."""

    @classmethod
    def records(cls, root: str | Path, group_of: Callable[[str], str] | None = None) -> list[Record]:
        """`ROOT/images/*.{png,jpg,tif}` + `ROOT/masks/*.png` (same stem) + optional `classes.json`.

        `classes.json` (or `classmap.json`) maps the folder's mask codes to schema class names; without
        it masks must already hold schema ids (0-5, 255 = ignore). `group_of(stem)` names the source
        scene of each image for splitting (default: every image is its own group).
        """
        root = Path(root)
        images_dir, masks_dir = root / "images", root / "masks"
        if not images_dir.is_dir() or not masks_dir.is_dir():
            raise InputError(f"no samples found under {root} (expected images/ and masks/)")
        images = visible_files(images_dir, IMAGE_SUFFIXES)
        if not images:
            raise InputError(f"no samples found under {root} (expected images/ and masks/)")
        masks: dict[str, Path] = {}
        for m in visible_files(masks_dir, MASK_SUFFIXES):
            masks.setdefault(m.stem, m)
        mapping: dict[Code, int] | None = None
        label_map = "schema ids 0-5 / 255 (no classes.json)"
        for name in cls.class_maps:
            if (root / name).is_file():
                mapping = read_class_map(root / name)
                label_map = str(root / name)
                break
        problems: list[str] = []
        seen: dict[str, Path] = {}
        records: list[Record] = []
        for image in images:
            if image.stem in seen:
                problems.append(f"{image}: same name as {seen[image.stem].name}; which one does the mask belong to?")
                continue
            seen[image.stem] = image
            mask = next((masks[image.stem + s] for s in cls.mask_stem_suffixes if image.stem + s in masks), None)
            if mask is None:
                problems.append(f"{image}: no mask (expected masks/{image.stem}.png)")
                continue
            group = group_of(image.stem) if group_of else f"{root.name}/{image.stem}"
            records.append(Record(image, mask, mapping, f"{root.name}/{image.stem}", group, label_map))
        raise_problems(f"in dataset folder {root}", problems)
        return records


class RoadOnlyFolder(Layout):
    """A road-only source: `images/*.jpg` + `masks/*.png` (same stem), mask 255 = road, 0 = some other class.

    Its labels are partial (`partial = ("road",)`): a 0 pixel is "not road" (`not_class`), never
    "background", so training pushes down only the road probability there. Masks with antialiased
    edges are split at 128.
    """

    labels = "classes"
    partial: ClassVar[tuple[str, ...]] = ("road",)
    codes = MappingProxyType({**{v: not_class(CLASS_ID["road"]) for v in range(128)}, **{v: CLASS_ID["road"] for v in range(128, 256)}})
    folders = "images/*.jpg + masks/*.png (same stem)"

    @classmethod
    def records(cls, root: str | Path) -> list[Record]:
        root = Path(root)
        images_dir, masks_dir = root / "images", root / "masks"
        if not images_dir.is_dir() or not masks_dir.is_dir():
            raise InputError(f"no samples found under {root} (expected images/ and masks/)")
        records: list[Record] = []
        problems: list[str] = []
        for image in visible_files(images_dir, IMAGE_SUFFIXES):
            mask = masks_dir / f"{image.stem}.png"
            if not mask.is_file():
                problems.append(f"{image}: no mask {mask}")
                continue
            source = f"{cls.name}/{image.stem}"
            records.append(Record(image, mask, cls.codes, source, source, f"{cls.title}: 255 road, 0 not road"))
        raise_problems(f"in {cls.title} folder {root}", problems)
        if not records:
            raise InputError(f"no samples found under {root} (expected images/*.jpg and masks/*.png)")
        return records


def _cil_every_fifth(rest: int) -> tuple[str, ...]:
    """CIL tiles whose number is `rest` modulo 5, in both editions (2016: 1-100, 2022: 0-143, as they number them)."""
    editions = {"16": range(1, 101), "22": range(0, 144)}
    return tuple(f"roads_cil/cil{e}_{i:03d}" for e, numbers in editions.items() for i in numbers if i % 5 == rest)


class RoadsCIL(RoadOnlyFolder):
    """ETH Zürich CIL road segmentation (2016 and 2022 editions): 400 px Google Maps satellite tiles of US cities and suburbs."""

    name = "roads_cil"
    title = "CIL roads"
    gsd = None  # roughly 0.3-0.6 m, not stated by the source
    url = "https://www.kaggle.com/competitions/cil-road-segmentation-2022"
    licence = "ETH CIL course data from Google Maps imagery; no licence stated: research and teaching only, never redistributed"
    splits = MappingProxyType({"test": _cil_every_fifth(0), "val": _cil_every_fifth(1)})
    """Every fifth tile of each edition is test, the one after it validation."""


class DeepGlobeRoads(RoadOnlyFolder):
    """DeepGlobe Road Extraction Challenge 2018 (Demir et al.): 1024 px tiles, 0.5 m, rural and peri-urban South-East Asia."""

    name = "deepglobe_roads"
    title = "DeepGlobe roads"
    gsd = 0.5
    url = "https://competitions.codalab.org/competitions/18467"
    licence = "research use (DeepGlobe 2018)"
    splits = MappingProxyType({"test": ("deepglobe_roads/388",), "val": ("deepglobe_roads/343",)})


class SpaceNetBuildings(Layout):
    """SpaceNet 4's sample tile of Atlanta (as shipped in the `solaris` wheel): panchromatic, 0.5 m, with building footprints.

    The footprints are complete for the tile, so a pixel outside every footprint is "not building"
    (a partial label: which other class it is, the file does not say). Scored, never trained on.
    """

    name = "spacenet"
    title = "SpaceNet Atlanta buildings"
    labels = "classes"
    partial = ("building",)
    codes = MappingProxyType({1: CLASS_ID["building"], 0: not_class(CLASS_ID["building"])})
    gsd = 0.5
    url = "https://spacenet.ai/off-nadir-building-detection/"
    licence = "CC BY-SA 4.0"
    folders = "sample_geotiff.tif + buildings.geojson (polygons in the image's CRS or with a crs member)"
    splits = MappingProxyType({"test": ("spacenet/atlanta",)})

    @classmethod
    def records(cls, root: str | Path) -> list[Record]:
        root = Path(root)
        image, footprints = root / "sample_geotiff.tif", root / "buildings.geojson"
        missing = [p.name for p in (image, footprints) if not p.is_file()]
        if missing:
            raise InputError(f"no samples found under {root} (missing {', '.join(missing)})")
        return [Record(image, footprints, cls.codes, "spacenet/atlanta", "spacenet/atlanta", "footprints: 1 building, 0 not building")]
