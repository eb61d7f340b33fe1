"""GET /v1/examples, GET /v1/examples/files/{name}: the bundled sample tiles, so the page can try them in one click.

Only the files named below are ever served (by exact name, never a path built from the request).
They come from the checkout's `sample_tiles/`; an installation without that folder lists none.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

from landsentry.api.openapi import download, refusals
from landsentry.api.schemas import ExampleList

router = APIRouter(prefix="/v1/examples", tags=["examples"])
SAMPLE_TILES = Path(__file__).resolve().parents[2] / "sample_tiles"
EXAMPLES: dict[str, dict] = {
    "atlanta": {"title": "SpaceNet Atlanta tile (one date)", "files": {"image": "spacenet_atlanta_pan.tif"}},
    "demo-pair": {"title": "Before/after demo with permits (five new houses)",
                  "files": {"image": "demo_after.tif", "before": "demo_before.tif", "permits": "demo_permits.geojson"}},
}
MEDIA = {".tif": "image/tiff", ".geojson": "application/geo+json"}


def _available(example: dict) -> bool:
    return all((SAMPLE_TILES / name).is_file() for name in example["files"].values())


@router.get("", response_model=ExampleList)
def list_examples() -> Any:
    """The sample inputs this server can offer, with the form field each file goes into."""
    return {"examples": [{"id": key, "title": ex["title"],
                          "files": {field: f"/v1/examples/files/{name}" for field, name in ex["files"].items()}}
                         for key, ex in EXAMPLES.items() if _available(ex)]}


@router.get("/files/{name}", response_class=FileResponse,
            responses={**download(list(MEDIA.values()), "the sample file"), **refusals(404, 422)})
def example_file(name: str) -> FileResponse:
    """One sample file, by its exact name."""
    known = {n for ex in EXAMPLES.values() for n in ex["files"].values()}
    path = SAMPLE_TILES / name
    if name not in known or not path.is_file():
        raise HTTPException(404, f"no example file {name!r}")
    return FileResponse(path, media_type=MEDIA[path.suffix], filename=name)
