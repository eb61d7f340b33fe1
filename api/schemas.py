"""What goes over the wire: the request and response bodies of every endpoint, as pydantic types.

The routers name these in `response_model=`, so FastAPI checks each answer against them and
`/openapi.json` describes what the API really returns. Field names are the page's contract
(api/static/app.js); records are shaped by api/public.py. Keys that only some answers carry are
TypedDict keys (absent, not null, when missing), as the page tests for their presence.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, with_config
from typing_extensions import NotRequired, TypedDict

from landsentry.api.retrain import DEFAULT_RECIPE

RGB = Annotated[list[int], Field(min_length=3, max_length=3, description="red, green, blue (0-255)")]
JobStatus = Literal["queued", "running", "done", "failed", "cancelled"]


class ErrorBody(BaseModel):
    """Every refusal (4xx): one message for people, never a traceback."""

    detail: str


# --- model versions ------------------------------------------------------------------------------
@with_config(ConfigDict(extra="allow"))
class Scores(TypedDict, total=False):
    """Whole-image scores on held-out data (other figures a checkpoint recorded are kept as they are)."""

    miou: float | None
    iou: dict[str, float | None]  # per class name
    pixel_accuracy: float | None


class Metrics(Scores, total=False):
    evaluated_on: str  # what the scores were measured on, in words
    parent: Scores | None  # the parent version on the same held-out samples (fine-tuned versions)


class ModelVersion(BaseModel):
    id: str
    name: str
    parent: str | None = Field(description="the version it was fine-tuned from")
    created: str
    active: bool = Field(description="whether it answers interpretations now")
    job: str | None = Field(description="the train job that made it")
    data: dict[str, Any] = Field(description="what it was trained on (samples, held-out ids, replay specs, epochs ...)")
    metrics: Metrics


class ModelList(BaseModel):
    models: list[ModelVersion]
    active: str | None


# --- service -------------------------------------------------------------------------------------
class Health(BaseModel):
    status: Literal["ok"]
    model: ModelVersion
    device: str
    backend: str = Field(description="the inference path in use (onnx, eager, compile, cuda ...)")
    worker: Literal["running", "stopped"]
    jobs: dict[str, int] = Field(description="number of jobs per status")


class ClassInfo(BaseModel):
    id: int
    name: str
    title: str
    color: RGB


class Classes(BaseModel):
    classes: list[ClassInfo]
    ignore_index: int = Field(description="the mask value for 'unknown' pixels")
    kinds: list[str] = Field(description="the flag kinds of one image")
    kind_colors: dict[str, RGB] = Field(description="colour per flag kind, new_* kinds of pairs included")


# --- jobs ----------------------------------------------------------------------------------------
class Grid(BaseModel):
    """The analysis grid: every raster result and preview has this size; flags are in its CRS."""

    width: int
    height: int
    transform: list[float] = Field(description="affine a, b, c, d, e, f (pixel to CRS)")
    crs: str | None = Field(description="None for images without georeferencing (pixel coordinates)")


class ResultFiles(TypedDict):
    """Links to the result files the page uses (present when the job wrote them), and to all of them."""

    overlay: NotRequired[str]
    after: NotRequired[str]
    before: NotRequired[str]
    classes_png: NotRequired[str]
    classes_tif: NotRequired[str]
    flags: NotRequired[str]
    flags_wgs84: NotRequired[str]
    summary_csv: NotRequired[str]
    all: dict[str, str]


class FeatureCollection(BaseModel):
    """GeoJSON of the flags (members beyond these, such as `crs`, are passed through)."""

    model_config = ConfigDict(extra="allow")
    type: Literal["FeatureCollection"]
    features: list[dict[str, Any]]


class InterpretResult(BaseModel):
    flags: FeatureCollection | None = Field(description="inline for one job; None in job lists (fetch the job)")
    summary: dict[str, Any] = Field(description="summary.json: class shares, flag counts and the parameters used")
    grid: Grid
    files: ResultFiles
    model: str | None = Field(description="the model version that answered")


class TrainResult(BaseModel):
    model: ModelVersion = Field(description="the new version, as it is now (active or not)")


class _Job(BaseModel):
    id: str
    type: str
    kind: str | None
    status: JobStatus
    progress: float = Field(ge=0, le=1)
    message: str
    error: str | None = Field(description="why it failed")
    created: str
    updated: str
    result: Any


class InterpretJob(_Job):
    type: Literal["interpret"]
    kind: Literal["single", "pair"]
    result: InterpretResult | None


class TrainJob(_Job):
    type: Literal["train"]
    kind: None
    result: TrainResult | None


Job = Annotated[InterpretJob | TrainJob, Field(discriminator="type")]


class JobList(BaseModel):
    jobs: list[Job]


# --- samples, training, examples -------------------------------------------------------------------
class Sample(BaseModel):
    id: str
    width: int
    height: int
    class_pixels: dict[str, int] = Field(description="pixels per class name, and 'ignore'")
    source: str = Field(description="'upload', 'job:ID' or 'vectors:FILE NAME'")
    created: str


class SampleList(BaseModel):
    samples: list[Sample]


class TrainRequest(BaseModel):
    epochs: int = Field(DEFAULT_RECIPE.epochs, ge=1, le=50, description="passes, each ending with a score on the held-out samples "
                        "(the server's cap, LANDSENTRY_MAX_TRAIN_EPOCHS, may be lower)")
    steps_per_epoch: int = Field(DEFAULT_RECIPE.steps_per_epoch, ge=1, le=2000, description="optimiser steps (batches of "
                                 f"{DEFAULT_RECIPE.batch_size} crops) per epoch (the server's cap, LANDSENTRY_MAX_TRAIN_STEPS, may be lower)")
    activate: Literal["never", "if_not_worse"] | None = Field(
        None, description="never: activate by hand after comparing; if_not_worse: activate the new version when neither "
        "its mIoU on the held-out samples nor on the parent's validation data is worse than the parent's (within "
        "LANDSENTRY_ACTIVATE_TOLERANCE); default: LANDSENTRY_TRAIN_ACTIVATE")


class Example(BaseModel):
    id: str
    title: str
    files: dict[str, str] = Field(description="form field (image, before, permits) -> URL of the file")


class ExampleList(BaseModel):
    examples: list[Example]


# --- the flag register -----------------------------------------------------------------------------
class FlagProperties(BaseModel):
    kind: str = Field(description="building, road, earthwork (one image) or new_building, new_road, new_earthwork (two dates)")
    area_m2: float | None = Field(description="None when the image has no ground size")
    confidence: float | None
    suspected_illegal: bool
    reason: str = Field(description="why it is suspected (empty when not)")
    before_class: str | None = Field(description="what the before image showed there (two dates)")
    job: str = Field(description="the interpret job that found it (GET /v1/jobs/{job})")
    after_date: str | None = Field(description="the (after) image's own date, YYYY-MM-DD, when the file carries one")
    before_date: str | None = Field(description="the before image's own date (two dates)")
    recorded: str = Field(description="when the flag entered the register (UTC)")


class FlagFeature(BaseModel):
    type: Literal["Feature"]
    id: int = Field(description="the flag's number in the register")
    geometry: dict[str, Any] | None = Field(description="GeoJSON polygon in WGS84 (lon, lat); None for images without georeferencing")
    properties: FlagProperties


class FlagCollection(BaseModel):
    """GeoJSON (RFC 7946, WGS84) of the register's flags that match the query, oldest first."""

    type: Literal["FeatureCollection"]
    features: list[FlagFeature]
    truncated: bool = Field(description="more flags matched than `limit`: narrow the query (bbox, since)")
