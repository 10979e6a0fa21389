"""The faceattr-lab command: parsing, exit codes, and each command against real or mocked parts."""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import threading
import types
from dataclasses import replace
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from importlib import metadata

import pandas as pd
import pytest
from PIL import Image

import faceattr_lab
from faceattr_lab import cli
from faceattr_lab.datasets import downloads as dl


@pytest.fixture(autouse=True)
def _folders(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEATTR_LAB_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("FACEATTR_LAB_OUTPUT", str(tmp_path / "outputs"))


@pytest.fixture
def file_server(tmp_path):
    """A loopback HTTP server serving tmp_path/served; shut down after the test."""
    root = tmp_path / "served"
    root.mkdir()

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=root))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def _afad_tar_gz() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for age, folder in ((15, 111), (16, 112)):
            img = io.BytesIO()
            Image.new("RGB", (32, 32), (age * 5, 80, 120)).save(img, format="JPEG")
            info = tarfile.TarInfo(f"AFAD-Full/{age}/{folder}/{600000 + age}-1.jpg")
            info.size = len(img.getvalue())
            tf.addfile(info, io.BytesIO(img.getvalue()))
    return buf.getvalue()


def _serve_afad(monkeypatch, served, url, sha256=None):
    data = _afad_tar_gz()
    (served / "AFAD-Full.tar.gz").write_bytes(data)
    archive = dl.Archive(filename="AFAD-Full.tar.gz", url=url + "AFAD-Full.tar.gz",
                         sha256=sha256(data) if callable(sha256) else sha256)
    monkeypatch.setitem(dl.REGISTRY, "afad", replace(dl.REGISTRY["afad"], archives=(archive,)))


# ---- parsing ------------------------------------------------------------------------------

def test_help_lists_the_commands(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("data", "labs", "bench", "info"):
        assert command in out


def test_help_does_not_import_heavy_modules():
    code = ("import sys; from faceattr_lab.cli import main; main(['data', 'verify', '--help']);"
            "print(sorted(m for m in ('tensorflow', 'keras', 'pandas', 'papermill') "
            "if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize("argv, message", [
    ([], "required"),
    (["data"], "required"),
    (["data", "download", "imagenet"], "invalid choice"),
    (["data", "verify", "utkface"], "--root"),
    (["data", "synth", "--layout", "utkface", "--n", "0"], "above 0"),
    (["bench", "pipeline", "--n", "many"], "whole number"),
    (["labs", "run", "-p", "EPOCHS"], "expected 2 arguments"),
    (["labs", "grade", "00"], "SUBMISSIONS"),
    (["labs", "grade", "00", "/no/such/folder"], "not a folder"),
])
def test_parse_errors_exit_2(argv, message, capsys):
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err


# ---- info ---------------------------------------------------------------------------------

def test_info_reports_versions_and_folders(tmp_path, monkeypatch, capsys):
    from faceattr_lab import config

    monkeypatch.setattr(config, "gpu_available", lambda: False)  # skip importing TensorFlow
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    assert faceattr_lab.__version__ in out
    assert f"{sys.version_info.major}.{sys.version_info.minor}" in out
    assert metadata.version("tensorflow") in out and metadata.version("keras") in out
    assert "no (CPU only)" in out
    assert str(tmp_path / "data") in out and str(tmp_path / "outputs") in out


# ---- data download ------------------------------------------------------------------------

def test_download_from_local_server(file_server, tmp_path, monkeypatch, capsys):
    served, url = file_server
    _serve_afad(monkeypatch, served, url, sha256=lambda b: hashlib.sha256(b).hexdigest())
    dest = tmp_path / "afad"
    assert cli.main(["data", "download", "afad", "--dest", str(dest)]) == 0
    out = capsys.readouterr().out
    assert "SHA-256 verified" in out and str(dest) in out
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*.jpg")) == [
        "AFAD-Full/15/111/600015-1.jpg", "AFAD-Full/16/112/600016-1.jpg"]


def test_download_to_the_data_folder_by_default(file_server, tmp_path, monkeypatch):
    served, url = file_server
    _serve_afad(monkeypatch, served, url)
    assert cli.main(["data", "download", "afad"]) == 0
    assert (tmp_path / "data" / "afad" / "AFAD-Full" / "15" / "111" / "600015-1.jpg").is_file()


def test_download_hash_mismatch_is_one_line_exit_2(file_server, tmp_path, monkeypatch, capsys):
    served, url = file_server
    _serve_afad(monkeypatch, served, url, sha256="0" * 64)
    assert cli.main(["data", "download", "afad", "--dest", str(tmp_path / "afad")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "SHA-256 mismatch" in err and "Traceback" not in err
    assert not list((tmp_path / "afad").glob("AFAD-Full.tar.gz*"))


def test_download_missing_file_is_one_line_exit_1(file_server, tmp_path, monkeypatch, capsys):
    served, url = file_server
    archive = dl.Archive(filename="AFAD-Full.tar.gz", url=url + "gone.tar.gz")
    monkeypatch.setitem(dl.REGISTRY, "afad", replace(dl.REGISTRY["afad"], archives=(archive,)))
    assert cli.main(["data", "download", "afad", "--dest", str(tmp_path / "afad")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "HTTP 404" in err and "afad-dataset.github.io" in err


def test_download_of_drive_dataset_prints_manual_steps(tmp_path, capsys):
    assert cli.main(["data", "download", "fairface", "--dest", str(tmp_path / "ff")]) == 1
    captured = capsys.readouterr()
    assert "fairface-img-margin025-trainval.zip" in captured.out
    assert "fairface_label_train.csv" in captured.out and "drive.google.com" in captured.out
    assert "Too many users have viewed or downloaded this file recently" in captured.out
    assert "by hand" in captured.err and captured.err.count("\n") == 1


# ---- data verify and synth ------------------------------------------------------------------

@pytest.fixture
def synthetic_utk(tmp_path):
    from faceattr_lab.datasets.synthetic import make_synthetic

    root = make_synthetic(tmp_path / "utk", "utkface", 30, seed=3, image_size=32)
    manifest = json.loads((root / "synthetic_manifest.json").read_text())
    return root, manifest


def test_verify_against_published_counts_fails_on_a_small_copy(synthetic_utk, capsys):
    root, manifest = synthetic_utk
    assert cli.main(["data", "verify", "utkface", "--root", str(root)]) == 1
    out = capsys.readouterr().out
    assert "23708" in out and "23703" in out and "DIFFER" in out
    assert "malformed file name" in out  # the exclusions, by reason


def test_verify_passes_when_counts_match(synthetic_utk, monkeypatch, capsys):
    root, manifest = synthetic_utk
    files = len(os.listdir(root / "UTKFace"))
    expected = (dl.Expected("files (usable + excluded)", files, include_excluded=True),
                dl.Expected("usable images", manifest["n_usable"]))
    monkeypatch.setitem(dl.REGISTRY, "utkface",
                        replace(dl.REGISTRY["utkface"], expected=expected))
    assert cli.main(["data", "verify", "utkface", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "counts match" in out
    excluded_total = files - manifest["n_usable"]
    assert f"excluded ({excluded_total})" in out


def test_verify_missing_root_exit_2(tmp_path, capsys):
    assert cli.main(["data", "verify", "afad", "--root", str(tmp_path / "nowhere")]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_synth_writes_to_out(tmp_path, capsys):
    out_dir = tmp_path / "synth"
    argv = ["data", "synth", "--layout", "afad", "--n", "30", "--seed", "1",
            "--image-size", "32", "--out", str(out_dir)]
    assert cli.main(argv) == 0
    assert str(out_dir) in capsys.readouterr().out
    jpgs = sorted(out_dir.glob("AFAD-Full/*/11[12]/*.jpg"))
    assert len(jpgs) == 30  # --n 30: one image per face (Thumbs.db defects are not .jpg)
    with Image.open(jpgs[0]) as image:
        assert image.size == (32, 32)  # --image-size 32
    # Writing again into the now non-empty folder is refused with one line.
    assert cli.main(argv) == 2
    assert "not empty" in capsys.readouterr().err


def test_synth_without_out_uses_the_cache(tmp_path, monkeypatch, capsys):
    from faceattr_lab.datasets import synthetic

    calls = []

    def fake(**kwargs):
        calls.append(kwargs)
        return tmp_path / "cache" / "UTKFace"

    monkeypatch.setattr(synthetic, "synthetic_dataset", fake)
    assert cli.main(["data", "synth", "--layout", "utkface", "--n", "50"]) == 0
    assert calls == [dict(layout="utkface", n=50, seed=42, image_size=64)]
    assert str(tmp_path / "cache" / "UTKFace") in capsys.readouterr().out


# ---- labs and bench (other modules mocked) ---------------------------------------------------

def _fake_summary(statuses):
    return pd.DataFrame({"lab": [f"0{i}_lab" for i in range(len(statuses))],
                         "status": statuses, "seconds": [1.0] * len(statuses),
                         "load": [0.5] * len(statuses), "key results": [""] * len(statuses)})


def test_labs_run_passes_labs_and_typed_parameters(monkeypatch, tmp_path):
    from faceattr_lab.course import runner

    calls = []

    def fake_run_labs(labs=None, parameters=None, output=None):
        calls.append((labs, parameters, output))
        return _fake_summary(["ok", "ok"])

    monkeypatch.setattr(runner, "run_labs", fake_run_labs)
    argv = ["labs", "run", "00", "03", "-p", "EPOCHS", "1", "-p", "LR", "1e-3",
            "-p", "DATASET", "utkface", "-p", "WEIGHTS", "None", "--output", str(tmp_path)]
    assert cli.main(argv) == 0
    assert calls == [(["00", "03"], {"EPOCHS": 1, "LR": 0.001, "DATASET": "utkface",
                                      "WEIGHTS": None}, str(tmp_path))]
    assert cli.main(["labs", "run"]) == 0
    assert calls[-1] == (None, {}, None)


def test_labs_run_exit_1_when_a_lab_failed(monkeypatch, capsys):
    from faceattr_lab.course import runner

    monkeypatch.setattr(runner, "run_labs", lambda **kw: _fake_summary(["ok", "failed"]))
    assert cli.main(["labs", "run"]) == 1
    assert "1 of 2 labs failed: 01_lab" in capsys.readouterr().err


def test_labs_student(monkeypatch, tmp_path, capsys):
    from faceattr_lab.course import release

    written = [tmp_path / "00_quickstart.ipynb"]
    seen = []
    monkeypatch.setattr(release, "build_student",
                        lambda output=None: seen.append(output) or written)
    assert cli.main(["labs", "student", "--output", str(tmp_path)]) == 0
    assert seen == [str(tmp_path)] and str(written[0]) in capsys.readouterr().out


def test_bench_pipeline(monkeypatch):
    seen = []
    fake = types.ModuleType("faceattr_lab.benchmarks")
    fake.print_pipeline_benchmark = lambda n: seen.append(n)
    fake.print_model_benchmark = lambda n, image_size: seen.append((n, image_size))
    monkeypatch.setitem(sys.modules, "faceattr_lab.benchmarks", fake)
    monkeypatch.setattr(faceattr_lab, "benchmarks", fake, raising=False)
    assert cli.main(["bench", "pipeline", "--n", "64"]) == 0
    assert cli.main(["bench", "pipeline"]) == 0
    assert cli.main(["bench", "models", "--n", "32", "--image-size", "48"]) == 0
    assert cli.main(["bench", "models"]) == 0
    assert seen == [64, 2000, (32, 48), (1000, 64)]


def test_value_error_from_a_command_is_one_line(monkeypatch, capsys):
    from faceattr_lab.course import runner

    def bad(**kwargs):
        raise ValueError("PROFILE must be one of ('quick', 'full'), got 'fast'.")

    monkeypatch.setattr(runner, "run_labs", bad)
    assert cli.main(["labs", "run", "-p", "PROFILE", "fast"]) == 2
    err = capsys.readouterr().err
    assert err == "faceattr-lab: error: PROFILE must be one of ('quick', 'full'), got 'fast'.\n"
