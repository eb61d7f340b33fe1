"""`landsentry download loveda`: fetch the LoveDA archives with checksums, resume and safe extraction.

Downloads are the slow, flaky part of getting started, so every step can be re-run: a partial
`NAME.part` is resumed with an HTTP Range request, a finished archive is kept only after its MD5
matches the published one (URLs and MD5s are the `LoveDA` layout's metadata), and an extracted split
is recorded so a second run does nothing.
Archives come from the internet, so extraction refuses any member that would land outside the
dataset folder and any archive that would expand beyond a size limit.
"""
from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import stat
import urllib.error
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath, PureWindowsPath

from tqdm import tqdm

from landsentry.models.data.layouts import LoveDA
from landsentry.models.vocabulary.errors import InputError

CHUNK_BYTES = 1 << 20
TIMEOUT_S = 60.0
MAX_UNCOMPRESSED_BYTES = 20 * 1024**3  # LoveDA expands to about 9 GiB; far beyond that is a zip bomb


def md5sum(path: Path) -> str:
    """MD5 of a file, read in chunks so multi-GB archives need no memory."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def download_file(url: str, dest: Path | str, md5: str, progress: bool = True, timeout: float = TIMEOUT_S) -> Path:
    """Download `url` to `dest`, resuming `dest.part` if present; `dest` only ever holds verified bytes.

    A server that ignores Range (replies 200) restarts the file from zero. On an MD5 mismatch the
    bytes are deleted (resuming corrupt data would never succeed) and InputError is raised.
    """
    dest = Path(dest)
    if dest.exists():
        if md5sum(dest) == md5:
            return dest
        dest.unlink()  # a stale or corrupt archive from an earlier run: fetch it again
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "landsentry-download"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            if response.status != 206 or not response.headers.get("Content-Range", "").startswith(f"bytes {offset}-"):
                offset = 0  # Range ignored (or not asked for): the body is the whole file
            length = response.headers.get("Content-Length")
            total = offset + int(length) if length else None
            with open(part, "ab" if offset else "wb") as out, tqdm(
                total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                desc=dest.name, disable=not progress,
            ) as bar:
                while chunk := response.read(CHUNK_BYTES):
                    out.write(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as exc:
        if not (exc.code == 416 and offset):  # 416 on a resume: `.part` is already complete, verify it
            raise InputError(f"could not download {url}: HTTP {exc.code} {exc.reason}; run again to resume") from exc
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise InputError(f"could not download {url}: {reason}; run again to resume") from exc
    actual = md5sum(part)
    if actual != md5:
        part.unlink(missing_ok=True)
        raise InputError(
            f"checksum mismatch for {dest.name} from {url}: expected MD5 {md5}, got {actual}; "
            "the corrupt download was deleted, run again to fetch it afresh"
        )
    os.replace(part, dest)
    return dest


def _unsafe_reason(info: zipfile.ZipInfo, dest: Path) -> str | None:
    """Why extracting this member could write outside `dest` (None when it is safe)."""
    name = info.filename.replace("\\", "/")
    if stat.S_ISLNK(info.external_attr >> 16):
        return "is a symbolic link"
    if name.startswith("/") or PureWindowsPath(info.filename).drive:
        return "has an absolute path"
    if ".." in PurePosixPath(name).parts:
        return "has a '..' component"
    if not (dest / name).resolve().is_relative_to(dest):
        return "would be written outside the destination"
    return None


def safe_extract_zip(archive: Path | str, dest: Path | str, max_total_bytes: int = MAX_UNCOMPRESSED_BYTES) -> list[Path]:
    """Extract `archive` into `dest` after checking every member, so a hostile archive writes nothing.

    Refuses absolute paths, drive letters, `..` components and symlinks (path traversal), and
    archives whose declared uncompressed size exceeds `max_total_bytes` (zip bombs; zipfile never
    inflates a member past its declared size). Returns the extracted paths.
    """
    dest = Path(dest).resolve()
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputError(f"{archive} is not a readable zip archive: {exc}") from exc
    with zf:
        members = zf.infolist()
        for info in members:
            if reason := _unsafe_reason(info, dest):
                raise InputError(f"refusing to extract {archive}: member {info.filename!r} {reason}")
        total = sum(info.file_size for info in members)
        if total > max_total_bytes:
            raise InputError(
                f"refusing to extract {archive}: it would expand to {total / 1024**3:.1f} GiB, "
                f"over the {max_total_bytes / 1024**3:.1f} GiB limit"
            )
        dest.mkdir(parents=True, exist_ok=True)
        try:
            return [Path(zf.extract(info, dest)) for info in members]
        except (zipfile.BadZipFile, OSError) as exc:  # CRC error, truncated data, disk full
            raise InputError(f"could not extract {archive}: {exc}") from exc


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="landsentry download",
        description="Download a public dataset, verify its published MD5s and extract it. "
        "Interrupted downloads resume when run again.",
    )
    parser.add_argument("dataset", choices=["loveda"], help="dataset to fetch (LoveDA, Zenodo record 5706578)")
    parser.add_argument("--root", type=Path, default=Path("data/loveda"), help="dataset folder (default: %(default)s)")
    parser.add_argument("--splits", nargs="+", choices=list(LoveDA.files), default=["train", "val"],
                        help="splits to fetch (default: train val; test has no masks, it is for leaderboard submissions)")
    parser.add_argument("--base-url", default=LoveDA.url,
                        help="host prefix to fetch NAME.zip from, e.g. a mirror (default: %(default)s); MD5s stay the published ones")
    parser.add_argument("--keep-archives", action="store_true", help="keep the .zip files after extraction")
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    root: Path = args.root
    for split in dict.fromkeys(args.splits):  # de-duplicated, in the order given
        name, md5 = LoveDA.files[split]
        folder = root / name.removesuffix(".zip")
        marker = root / f".{name}.extracted"  # written last, so an interrupted extraction is redone
        if marker.is_file() and marker.read_text().strip() == md5 and folder.is_dir():
            print(f"{split}: already in {folder}")
            continue
        archive = download_file(f"{args.base_url.rstrip('/')}/{name}?download=1", root / name, md5)
        print(f"{split}: extracting {archive} ...")
        safe_extract_zip(archive, root)
        if not folder.is_dir():
            raise InputError(f"{archive} did not contain the expected {folder.name}/ folder")
        marker.write_text(md5 + "\n")
        if not args.keep_archives:
            archive.unlink()
        print(f"{split}: ready in {folder}")
    return 0
