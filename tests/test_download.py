"""Downloads against a local HTTP server on 127.0.0.1: hashes, resume, Range, safe unpacking."""

from __future__ import annotations

import hashlib
import io
import tarfile
import threading
import zipfile
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image

from faceattr_lab.datasets import downloads as dl


class _Handler(BaseHTTPRequestHandler):
    """Serves ``server.files`` (name -> bytes) with Range support and scripted misbehaviour."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):  # noqa: N802 - http.server's naming
        server = self.server
        name = self.path.lstrip("/")
        range_header = self.headers.get("Range")
        with server.lock:
            server.requests.append((name, range_header))
            attempt = sum(1 for n, _ in server.requests if n == name)
        if name not in server.files:
            self.send_error(404)
            return
        body = server.files[name]
        if server.mode == "corrupt":
            body = body[:-1] + bytes([body[-1] ^ 0xFF])
        start = 0
        if range_header and server.mode != "ignore_range":
            start = int(range_header.removeprefix("bytes=").split("-")[0])
        chunk = body[start:]
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(chunk)))
        self.send_header("Accept-Ranges", "bytes")
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.end_headers()
        drop = server.mode in ("drop_once", "ignore_range", "drop_then_stall") and attempt == 1
        if drop or server.mode == "drop_then_stall":
            # Promise the whole body, send a third of it (nothing after the first time), hang up.
            self.wfile.write(chunk[: len(chunk) // 3] if attempt == 1 else b"")
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(chunk)


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.files, httpd.requests, httpd.mode = {}, [], "normal"
    httpd.lock = threading.Lock()
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}/"
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture(autouse=True)
def _no_backoff(monkeypatch):
    monkeypatch.setattr(dl, "RETRY_BACKOFF_S", 0.0)


def _jpeg(seed: int, size: int = 32) -> bytes:
    img = Image.new("RGB", (size, size), (seed * 40 % 256, 90, 200 - seed * 30 % 200))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _targz(members: dict[str, bytes], mode: str = "w:gz") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture
def archive_bytes():
    # A few hundred KB so that 64 KB chunks give several reads and a mid-way drop.
    images = {f"UTKFace/{20 + i}_0_{i % 5}_2017011712000000{i}.jpg.chip.jpg": _jpeg(i, 96)
              for i in range(4)}
    images["UTKFace/noise.bin"] = bytes(range(256)) * 800
    return _targz(images)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_clean_download_checks_hash(server, archive_bytes, tmp_path, capsys):
    server.files["UTKFace.tar.gz"] = archive_bytes
    dest = tmp_path / "UTKFace.tar.gz"
    out = dl.fetch(server.url + "UTKFace.tar.gz", dest, sha256=_sha(archive_bytes),
                   chunk_size=1 << 16)
    assert out == dest and dest.read_bytes() == archive_bytes
    assert not dest.with_name(dest.name + ".part").exists()
    assert "SHA-256 verified" in capsys.readouterr().out
    # A second call finds the verified file and makes no request.
    before = len(server.requests)
    dl.fetch(server.url + "UTKFace.tar.gz", dest, sha256=_sha(archive_bytes))
    assert len(server.requests) == before


def test_unpinned_download_prints_hash(server, archive_bytes, tmp_path, capsys):
    server.files["a.tar.gz"] = archive_bytes
    dl.fetch(server.url + "a.tar.gz", tmp_path / "a.tar.gz")
    assert _sha(archive_bytes) in capsys.readouterr().out


def test_corrupted_transfer_raises_and_leaves_nothing(server, archive_bytes, tmp_path):
    server.files["a.tar.gz"] = archive_bytes
    server.mode = "corrupt"
    dest = tmp_path / "a.tar.gz"
    with pytest.raises(ValueError, match="SHA-256 mismatch") as info:
        dl.fetch(server.url + "a.tar.gz", dest, sha256=_sha(archive_bytes))
    corrupted = archive_bytes[:-1] + bytes([archive_bytes[-1] ^ 0xFF])
    assert _sha(archive_bytes) in str(info.value) and _sha(corrupted) in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_interrupted_transfer_resumes_with_range(server, archive_bytes, tmp_path):
    server.files["a.tar.gz"] = archive_bytes
    server.mode = "drop_once"
    dest = dl.fetch(server.url + "a.tar.gz", tmp_path / "a.tar.gz",
                    sha256=_sha(archive_bytes), chunk_size=1 << 14)
    assert _sha(dest.read_bytes()) == _sha(archive_bytes)
    ranges = [r for name, r in server.requests if name == "a.tar.gz"]
    assert ranges[0] is None and len(ranges) == 2
    resumed_at = int(ranges[1].removeprefix("bytes=").rstrip("-"))
    assert 0 < resumed_at <= len(archive_bytes) // 3  # the server sent only the first third


def test_server_ignoring_range_restarts_cleanly(server, archive_bytes, tmp_path, capsys):
    server.files["a.tar.gz"] = archive_bytes
    server.mode = "ignore_range"  # drops the first transfer, then answers 200 to a Range
    dest = dl.fetch(server.url + "a.tar.gz", tmp_path / "a.tar.gz",
                    sha256=_sha(archive_bytes), chunk_size=1 << 14)
    assert dest.read_bytes() == archive_bytes
    # it asked to resume where the dropped transfer stopped, got the whole file, kept it
    ranges = [r for name, r in server.requests if name == "a.tar.gz"]
    assert len(ranges) == 2 and ranges[0] is None and ranges[1].startswith("bytes=")
    assert 0 < int(ranges[1].removeprefix("bytes=").rstrip("-")) <= len(archive_bytes) // 3
    assert "ignored the resume request" in capsys.readouterr().out


def test_transfer_that_keeps_failing_gives_up_with_resume_hint(server, archive_bytes, tmp_path):
    server.files["a.tar.gz"] = archive_bytes
    server.mode = "drop_then_stall"  # attempts that make no progress count against retries
    part = tmp_path / "a.tar.gz.part"
    with pytest.raises(ConnectionError, match="resume"):
        dl.fetch(server.url + "a.tar.gz", tmp_path / "a.tar.gz", retries=1,
                 chunk_size=1 << 14)
    assert part.stat().st_size == len(archive_bytes) // 3  # kept for the next run
    assert not (tmp_path / "a.tar.gz").exists()
    assert len(server.requests) == 3  # first try, one stalled retry, one more: gave up


def test_missing_file_is_not_retried(server, tmp_path):
    import urllib.error

    with pytest.raises(urllib.error.HTTPError):
        dl.fetch(server.url + "nope.zip", tmp_path / "nope.zip")
    assert len(server.requests) == 1


def test_extract_tar_gz_gives_readable_images(archive_bytes, tmp_path):
    archive = tmp_path / "UTKFace.tar.gz"
    archive.write_bytes(archive_bytes)
    out = dl.extract(archive, tmp_path / "out")
    images = sorted((out / "UTKFace").glob("*.jpg"))
    assert len(images) == 4
    with Image.open(images[0]) as img:
        assert img.size == (96, 96)


@pytest.mark.parametrize("evil", ["../escaped.jpg", "/tmp/faceattr_abs_escape.jpg",
                                  "UTKFace/../../escaped.jpg"])
def test_path_traversal_zip_and_tar_refused(tmp_path, evil):
    zpath = tmp_path / "evil.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("UTKFace/ok.jpg", _jpeg(1))
        zf.writestr(evil, _jpeg(2))
    tpath = tmp_path / "evil.tar.xz"
    tpath.write_bytes(_targz({"UTKFace/ok.jpg": _jpeg(1), evil: _jpeg(2)}, mode="w:xz"))
    for archive in (zpath, tpath):
        out = tmp_path / f"out_{archive.suffix}"
        with pytest.raises(ValueError, match="Refusing to unpack"):
            dl.extract(archive, out)
        assert not any(out.rglob("*.jpg"))  # nothing written, not even the good member
    assert not (tmp_path / "escaped.jpg").exists()
    assert not Path("/tmp/faceattr_abs_escape.jpg").exists()


def test_tar_symlink_escaping_refused(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        link = tarfile.TarInfo("UTKFace/link")
        link.type, link.linkname = tarfile.SYMTYPE, "../../etc/passwd"
        tf.addfile(link)
    archive = tmp_path / "link.tar.gz"
    archive.write_bytes(buf.getvalue())
    with pytest.raises(ValueError, match="link target"):
        dl.extract(archive, tmp_path / "out")


def test_truncated_archive_is_reported(tmp_path):
    archive = tmp_path / "cut.tar.xz"
    whole = _targz({"a.jpg": _jpeg(1, 64), "b.jpg": _jpeg(2, 64)}, mode="w:xz")
    archive.write_bytes(whole[: len(whole) // 2])  # as if the last parts were never joined
    with pytest.raises(ValueError, match="damaged or incomplete"):
        dl.extract(archive, tmp_path / "out")


def test_concatenate_joins_parts_in_order(tmp_path):
    data = bytes(range(256)) * 10
    parts = []
    for i, piece in enumerate((data[:1000], data[1000:2000], data[2000:])):
        p = tmp_path / f"x.tar.xz{'abc'[i]}{'a'}"
        p.write_bytes(piece)
        parts.append(p)
    out = dl.concatenate(parts, tmp_path / "x.tar.xz")
    assert out.read_bytes() == data
    with pytest.raises(ValueError, match="missing parts"):
        dl.concatenate([tmp_path / "absent"], tmp_path / "y")


def test_download_split_archive_end_to_end(server, tmp_path, monkeypatch):
    layout = {f"AFAD-Full/{age}/{g}/{100 + k}-{k}.jpg": _jpeg(k)
              for age in (15, 16) for g in (111, 112) for k in range(2)}
    whole = _targz(layout, mode="w:xz")
    cuts = [0, len(whole) // 3, 2 * len(whole) // 3, len(whole)]
    names = [f"AFAD-Full.tar.xz{s}" for s in ("aa", "ab", "ac")]
    for name, a, b in zip(names, cuts, cuts[1:]):
        server.files[name] = whole[a:b]
    info = dl.REGISTRY["afad"]
    archive = replace(info.archives[0], parts=tuple(names), base_url=server.url,
                      sha256=_sha(whole))
    monkeypatch.setitem(dl.REGISTRY, "afad", replace(info, archives=(archive,)))
    dest = dl.download("afad", tmp_path / "afad")
    assert len(list(dest.glob("AFAD-Full/*/11[12]/*.jpg"))) == len(layout)
    sums = (dest / "AFAD-Full.tar.xz.parts" / "SHA256SUMS").read_text().split("\n")
    assert sums[0] == f"{_sha(whole[cuts[0]:cuts[1]])}  {names[0]}"
    # Ready now: a second call makes no request.
    before = len(server.requests)
    assert dl.download("afad", dest) == dest and len(server.requests) == before


def test_manual_dataset_prints_steps_then_unpacks_placed_files(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FACEATTR_LAB_DATA", str(tmp_path / "data"))
    with pytest.raises(dl.ManualDownloadRequired, match="by hand"):
        dl.download("utkface")
    out = capsys.readouterr().out
    dest = tmp_path / "data" / "utkface"
    assert "drive.google.com" in out and "Too many users have viewed or downloaded" in out
    assert "UTKFace.tar.gz" in out and str(dest) in out
    # The lecturer puts the archive in place; the next call hashes and unpacks it.
    (dest / "UTKFace.tar.gz").write_bytes(_targz({"UTKFace/1_0_0_20170109150557335.jpg.chip.jpg":
                                                  _jpeg(3)}))
    assert dl.download("utkface") == dest
    assert (dest / "UTKFace" / "1_0_0_20170109150557335.jpg.chip.jpg").is_file()


def test_registry_is_complete():
    expected = {"utkface": [23_708, 23_703], "fairface": [86_744, 10_954], "afad": [165_501],
                "adience": [19_487]}
    assert set(dl.REGISTRY) == set(expected)
    for name, counts in expected.items():
        info = dl.REGISTRY[name]
        assert [e.count for e in info.expected] == counts
        assert info.homepage.startswith("https://") and info.licence and info.manual_steps
    assert [a.automatic for a in dl.REGISTRY["afad"].archives] == [True]
    assert not any(a.automatic for n in ("utkface", "fairface", "adience")
                   for a in dl.REGISTRY[n].archives)


def test_unknown_dataset_name():
    with pytest.raises(ValueError, match="synthetic_dataset"):
        dl.download("synthetic")
