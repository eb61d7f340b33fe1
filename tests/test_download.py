"""`landsentry download`: resume, checksums, safe extraction and clean errors, against a local HTTP server."""
from __future__ import annotations

import hashlib
import http.server
import io
import random
import socket
import stat
import sys
import threading
import zipfile
from pathlib import Path
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the repo is used in place, not installed into the venv
    sys.path.insert(0, str(ROOT))

import landsentry  # noqa: E402
from landsentry.models.vocabulary.errors import InputError  # noqa: E402
from landsentry.models.data.layouts import LoveDA  # noqa: E402
from landsentry.training import download  # noqa: E402


class RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves files from `server.root`, honouring `Range: bytes=N-` unless `server.ignore_range` is set."""

    def do_GET(self) -> None:
        srv = self.server
        path = srv.root / urlsplit(self.path).path.lstrip("/")
        srv.log.append({"path": self.path, "range": self.headers.get("Range")})
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        rng = self.headers.get("Range")
        if rng and not srv.ignore_range:
            start = int(rng.removeprefix("bytes=").split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = data[start:]
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            body = data
            self.send_response(200)
        srv.log[-1]["sent"] = len(body)  # recorded before writing, so the client never sees it missing
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:  # keep test output quiet
        pass


@pytest.fixture
def server(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    srv.root, srv.log, srv.ignore_range = served, [], False
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(5)


def make_val_zip() -> bytes:
    """A generated fixture mimicking LoveDA's Val.zip layout (not real data): PNG-named random bytes."""
    rng = random.Random(0)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:  # stored, so the archive is ~200 KB to resume
        for scene, idx in (("Rural", 0), ("Urban", 1)):
            for kind in ("images_png", "masks_png"):
                zf.writestr(f"Val/{scene}/{kind}/{idx}.png", b"\x89PNG\r\n\x1a\n" + rng.randbytes(50_000))
    return buf.getvalue()


@pytest.fixture
def val_zip(server):
    data = make_val_zip()
    (server.root / "Val.zip").write_bytes(data)
    return data, hashlib.md5(data).hexdigest()


def test_published_table_is_complete():
    assert set(LoveDA.files) == {"train", "val", "test"}
    assert all(len(md5) == 32 for _, md5 in LoveDA.files.values())


def test_main_downloads_verifies_and_extracts_loveda_layout(server, val_zip, tmp_path, monkeypatch):
    data, md5 = val_zip
    monkeypatch.setitem(LoveDA.files, "val", ("Val.zip", md5))
    root = tmp_path / "loveda"
    argv = ["loveda", "--base-url", server.url, "--root", str(root), "--splits", "val"]
    assert download.main(argv) == 0
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        for name in ("Val/Rural/images_png/0.png", "Val/Rural/masks_png/0.png", "Val/Urban/images_png/1.png"):
            assert (root / name).read_bytes() == zf.read(name)
    assert not (root / "Val.zip").exists() and not (root / "Val.zip.part").exists()  # archive removed by default
    assert [r["range"] for r in server.log] == [None]

    assert download.main(argv) == 0  # second run: already extracted, nothing fetched
    assert len(server.log) == 1

    root2 = tmp_path / "kept"
    assert download.main(["loveda", "--base-url", server.url, "--root", str(root2), "--splits", "val", "--keep-archives"]) == 0
    assert (root2 / "Val.zip").read_bytes() == data
    assert (root2 / "Val/Urban/masks_png/1.png").is_file()


def test_resume_sends_range_and_appends(server, val_zip, tmp_path):
    data, md5 = val_zip
    dest = tmp_path / "dl" / "Val.zip"
    dest.parent.mkdir()
    n = 70_000
    (tmp_path / "dl" / "Val.zip.part").write_bytes(data[:n])
    assert download.download_file(f"{server.url}/Val.zip", dest, md5, progress=False) == dest
    assert server.log[-1]["range"] == f"bytes={n}-"
    assert server.log[-1]["sent"] == len(data) - n  # only the missing tail crossed the wire
    assert dest.read_bytes() == data
    assert not dest.with_name("Val.zip.part").exists()


def test_resume_against_server_ignoring_range_restarts_from_zero(server, val_zip, tmp_path):
    data, md5 = val_zip
    server.ignore_range = True
    dest = tmp_path / "Val.zip"
    (tmp_path / "Val.zip.part").write_bytes(data[:70_000])  # appending a full 200 reply would corrupt this
    download.download_file(f"{server.url}/Val.zip", dest, md5, progress=False)
    assert server.log[-1]["range"] == "bytes=70000-" and server.log[-1]["sent"] == len(data)
    assert dest.read_bytes() == data


def test_complete_part_file_is_verified_after_416(server, val_zip, tmp_path):
    data, md5 = val_zip
    dest = tmp_path / "Val.zip"
    (tmp_path / "Val.zip.part").write_bytes(data)
    download.download_file(f"{server.url}/Val.zip", dest, md5, progress=False)
    assert dest.read_bytes() == data and not (tmp_path / "Val.zip.part").exists()


def test_existing_verified_file_is_not_downloaded_again(server, val_zip, tmp_path):
    data, md5 = val_zip
    dest = tmp_path / "Val.zip"
    dest.write_bytes(data)
    download.download_file(f"{server.url}/Val.zip", dest, md5, progress=False)
    assert server.log == []


def test_checksum_mismatch_deletes_file_and_names_both_checksums(server, val_zip, tmp_path):
    data, md5 = val_zip
    dest = tmp_path / "Val.zip"
    wrong = "0" * 32
    with pytest.raises(InputError, match="checksum") as excinfo:
        download.download_file(f"{server.url}/Val.zip", dest, wrong, progress=False)
    assert wrong in str(excinfo.value) and md5 in str(excinfo.value)
    assert not dest.exists() and not (tmp_path / "Val.zip.part").exists()


def test_checksum_mismatch_via_cli_exits_nonzero_without_traceback(server, val_zip, tmp_path, capsys):
    # The table keeps the published MD5 of the real Val.zip, which the generated fixture cannot match.
    root = tmp_path / "loveda"
    rc = landsentry.main(["download", "loveda", "--base-url", server.url, "--root", str(root), "--splits", "val"])
    err = capsys.readouterr().err
    assert rc != 0
    assert "landsentry download: error: checksum mismatch" in err
    assert LoveDA.files["val"][1] in err
    assert "Traceback" not in err
    assert not (root / "Val.zip").exists() and not (root / "Val.zip.part").exists() and not (root / "Val").exists()


def _zip_with(tmp_path: Path, bad: zipfile.ZipInfo | str) -> Path:
    """A zip with a harmless member first, then the hostile one: a safe extractor must write neither."""
    path = tmp_path / "bad.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("Val/Rural/images_png/0.png", b"fine")
        zf.writestr(bad, b"target.txt" if isinstance(bad, zipfile.ZipInfo) else b"evil")
    return path


def _symlink_member() -> zipfile.ZipInfo:
    info = zipfile.ZipInfo("Val/link")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


@pytest.mark.parametrize(
    ("member", "reason"),
    [("../evil.txt", "'..'"), ("/abs.txt", "absolute"), ("C:/evil.txt", "absolute"), (_symlink_member(), "symbolic link")],
    ids=["dotdot", "absolute", "drive", "symlink"],
)
def test_safe_extract_refuses_escaping_members(tmp_path, member, reason):
    archive = _zip_with(tmp_path, member)
    name = member.filename if isinstance(member, zipfile.ZipInfo) else member
    with zipfile.ZipFile(archive) as zf:
        assert name in zf.namelist()  # stored as written, not sanitised by zipfile
    dest = tmp_path / "out" / "dest"
    with pytest.raises(InputError, match=reason) as excinfo:
        download.safe_extract_zip(archive, dest)
    assert repr(name) in str(excinfo.value)
    assert not dest.exists()  # nothing at all, not even the harmless member
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["bad.zip"]


def test_safe_extract_refuses_zip_bomb(tmp_path):
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("Val/zeros.bin", bytes(1_000_000))  # compresses to ~1 KB
    with pytest.raises(InputError, match="limit"):
        download.safe_extract_zip(archive, tmp_path / "dest", max_total_bytes=100_000)
    assert not (tmp_path / "dest").exists()


def test_safe_extract_returns_paths_inside_dest(tmp_path):
    archive = tmp_path / "ok.zip"
    archive.write_bytes(make_val_zip())
    paths = download.safe_extract_zip(archive, tmp_path / "dest")
    dest = (tmp_path / "dest").resolve()
    assert len(paths) == 4 and all(p.is_file() and p.is_relative_to(dest) for p in paths)


def test_unreachable_url_is_a_clean_input_error(tmp_path):
    with socket.socket() as s:  # a port nobody listens on: connection refused at once
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/Val.zip"
    with pytest.raises(InputError, match=r"could not download .*run again to resume"):
        download.download_file(url, tmp_path / "Val.zip", "0" * 32, progress=False)


def test_http_error_is_a_clean_input_error(server, tmp_path):
    with pytest.raises(InputError, match="HTTP 404"):
        download.download_file(f"{server.url}/Missing.zip", tmp_path / "Missing.zip", "0" * 32, progress=False)
