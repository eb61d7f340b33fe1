"""`landsentry samples add`: store a training sample (an image with a mask PNG or labelled polygons).

Without --server the sample goes straight into a data directory (the one `landsentry serve` uses),
through the same checks and writer as POST /v1/samples; while a server holds that directory, pass
--server URL and the sample is posted to it instead. Never imports training.
"""
from __future__ import annotations

import argparse
import json
import secrets
import urllib.error
import urllib.request
from pathlib import Path

from landsentry.models.vocabulary.errors import InputError

VECTOR_EXAMPLE = "landsentry samples add scene.tif --vectors parcels.gpkg --class-field landuse --map residential=building --map pond=water"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="landsentry samples", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="action", required=True)
    add = sub.add_parser("add", help="store an image and its labels as a training sample",
                         description="Store an image and its labels (a mask PNG of class ids, or labelled polygons) as a "
                         "training sample.", epilog=f"example: {VECTOR_EXAMPLE}")
    add.add_argument("image", type=Path, help="the image (GeoTIFF; PNG or JPEG with --mask)")
    labels = add.add_mutually_exclusive_group(required=True)
    labels.add_argument("--mask", type=Path, help="index PNG of class ids (255 = ignore), the image's size")
    labels.add_argument("--vectors", type=Path, help="labelled polygons (GeoJSON or GeoPackage), rasterised onto the "
                        "image; unlabelled pixels are unknown (ignored)")
    add.add_argument("--class-field", help="with --vectors: the property holding each polygon's class")
    add.add_argument("--map", action="append", default=[], metavar="VALUE=CLASS",
                     help="with --vectors: property value -> class name (or 'unknown'); repeat it. Without any, the "
                     "property must hold class names")
    add.add_argument("--layer", help="with --vectors: the layer of a file with several")
    where = add.add_mutually_exclusive_group()
    where.add_argument("--data-dir", type=Path, help="the service's data directory (default: $LANDSENTRY_DATA_DIR or ./landsentry-data)")
    where.add_argument("--server", help="post to a running server instead (e.g. http://127.0.0.1:8000)")
    add.add_argument("--token", help="with --server: the API token (default: $LANDSENTRY_TOKEN)")
    add.add_argument("--json", action="store_true", help="print the stored sample's record as JSON (as the API answers)")
    return p


def class_map(pairs: list[str]) -> dict[str, str] | None:
    """['residential=building', ...] -> {'residential': 'building', ...}."""
    out = {}
    for pair in pairs:
        value, sep, name = pair.partition("=")
        if not sep or not value or not name:
            raise InputError(f"--map {pair!r}: write VALUE=CLASS, e.g. --map residential=building")
        out[value] = name
    return out or None


def _file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise InputError(f"{what} not found: {path}")
    return path


def add_local(args: argparse.Namespace, mapping: dict[str, str] | None) -> dict:
    """Check and store the sample in the data directory, holding it the way a server would."""
    import tempfile

    from landsentry.models.data.vector_labels import parse_mapping
    from landsentry.models.nn.checkpoint import load_checkpoint

    from landsentry.api.app import hold_data_dir
    from landsentry.api.masks import read_mask
    from landsentry.api.public import public_sample
    from landsentry.api.sample_files import check_image, save_sample, vector_mask
    from landsentry.api.settings import Settings
    from landsentry.api.store import Store, new_id

    settings = Settings.from_env(**({"data_dir": args.data_dir} if args.data_dir else {}))
    store = Store(settings.data_dir)
    try:
        lock = hold_data_dir(settings.data_dir)
    except Exception:
        raise InputError(f"a landsentry server is using {settings.data_dir}: add the sample through it "
                         "(--server http://HOST:PORT) or stop it first") from None
    with lock:
        active = store.active_model_id()
        model = store.get_model(active) if active else None
        checkpoint = store.models_dir / model["file"] if model else settings.model
        channels = load_checkpoint(checkpoint).in_channels
        name = args.image.name
        width, height = check_image(args.image, settings.max_sample_pixels, "LANDSENTRY_MAX_SAMPLE_PIXELS", channels, name)
        if args.vectors:
            labels = vector_mask(args.image, args.vectors, args.class_field, parse_mapping(mapping), args.layer, args.vectors.name)
            ids, source = labels.ids, f"vectors:{args.vectors.name}"
        else:
            ids, source = read_mask(args.mask, width, height), "upload"
        with tempfile.TemporaryDirectory(prefix=".incoming-", dir=store.samples_dir):
            return public_sample(save_sample(store, new_id("s"), args.image, ids, source))


def multipart(fields: dict[str, str], files: dict[str, Path]) -> tuple[bytes, str]:
    """A multipart/form-data body and its content type."""
    boundary = "landsentry-" + secrets.token_hex(12)
    parts = []
    for key, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'.encode())
    for key, path in files.items():
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"; filename="{path.name}"\r\n' \
               "Content-Type: application/octet-stream\r\n\r\n"
        parts += [head.encode(), path.read_bytes(), b"\r\n"]
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def add_remote(args: argparse.Namespace, mapping: dict[str, str] | None) -> dict:
    """POST /v1/samples on a running server; its refusal (4xx detail) becomes this command's error."""
    import os

    files = {"image": args.image, **({"vectors": args.vectors} if args.vectors else {"mask": args.mask})}
    fields = {k: v for k, v in {"class_field": args.class_field, "layer": args.layer,
                                "class_map": json.dumps(mapping) if mapping else None}.items() if v}
    body, content_type = multipart(fields, files)
    headers = {"Content-Type": content_type}
    token = args.token or os.environ.get("LANDSENTRY_TOKEN")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(args.server.rstrip("/") + "/v1/samples", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=600) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:
        try:
            detail = json.load(exc).get("detail")
        except ValueError:
            detail = None
        raise InputError(f"the server refused the sample (HTTP {exc.code}): {detail if isinstance(detail, str) else exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise InputError(f"cannot reach {args.server}: {getattr(exc, 'reason', exc)}") from None


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    _file(args.image, "image")
    _file(args.mask or args.vectors, "mask" if args.mask else "vectors file")
    if args.mask and (args.class_field or args.map or args.layer):
        raise InputError("--class-field, --map and --layer go with --vectors; a mask PNG holds class ids already")
    if args.vectors and not args.class_field:
        raise InputError("--vectors needs --class-field: the property that holds each polygon's class")
    mapping = class_map(args.map)
    sample = add_remote(args, mapping) if args.server else add_local(args, mapping)
    if args.json:
        print(json.dumps(sample))
    else:
        pixels = ", ".join(f"{k} {v}" for k, v in sample["class_pixels"].items() if v)
        print(f"sample {sample['id']}: {sample['width']}x{sample['height']} px from {sample['source']} ({pixels})")
    return 0
