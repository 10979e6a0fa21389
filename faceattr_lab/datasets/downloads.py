"""Getting the four real datasets onto disk, with checks at every step. Lab 01.

Only AFAD-Full has a plain HTTP download (a tar.xz split into parts on GitHub); the kit fetches
it resumably, records each part's SHA-256, joins the parts and unpacks them. UTKFace and
FairFace live on Google Drive and Adience behind a registration form: the kit never scrapes
those pages. ``download(name)`` prints the steps to fetch them by hand; once the files lie in
the dataset's folder, running it again checks them, unpacks them and reports where they are.

``REGISTRY`` holds what the kit knows about each dataset: homepage, files and hosting, licence,
the counts a complete copy must show (``verify``) and the manual steps. SHA-256 values are
``None`` where the kit could not read them offline; the download then prints the computed hash
so a lecturer can pin it in ``REGISTRY`` for the class.

Everything here uses the standard library (urllib, hashlib, tarfile, zipfile) so that importing
it is instant; pandas is imported only by ``verify``.
"""

from __future__ import annotations

import hashlib
import http.client
import lzma
import os
import shutil
import socket
import tarfile
import time
import urllib.error
import urllib.request
import warnings
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from faceattr_lab import __version__, config

# Seconds to wait before the first retry; doubles each retry (tests set it to 0).
RETRY_BACKOFF_S = 1.0

_ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz", ".tar.xz", ".tar")


class ManualDownloadRequired(RuntimeError):
    """Raised by ``download`` when files must first be fetched by hand (steps were printed)."""


@dataclass(frozen=True)
class Archive:
    """One file of a dataset as its authors publish it.

    ``url`` is a direct HTTP URL, ``None`` where the file sits behind Google Drive or a form
    (``page`` is then where a person clicks). A split archive lists its ``parts`` (file names
    under ``base_url``); they are concatenated in order into ``filename``.
    """

    filename: str
    url: str | None = None
    sha256: str | None = None
    page: str | None = None
    size: str | None = None
    parts: tuple[str, ...] = ()
    base_url: str | None = None
    optional: bool = False

    @property
    def is_archive(self) -> bool:
        return self.filename.lower().endswith(_ARCHIVE_SUFFIXES)

    @property
    def automatic(self) -> bool:
        return bool(self.url or (self.parts and self.base_url))


@dataclass(frozen=True)
class Expected:
    """A count a complete copy must show: table rows (optionally plus excluded entries)."""

    label: str
    count: int
    split: str | None = None
    include_excluded: bool = False


@dataclass(frozen=True)
class DatasetInfo:
    """What the kit knows about one real dataset (see ``REGISTRY``)."""

    name: str
    title: str
    homepage: str
    hosting: str
    archives: tuple[Archive, ...]
    licence: str
    citation: str
    expected: tuple[Expected, ...]
    manual_steps: tuple[str, ...]
    # Each entry must match at least one path under the dataset folder once it is unpacked;
    # "a|b" accepts either pattern.
    ready: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)


def _split_suffixes(count: int) -> tuple[str, ...]:
    """The suffixes GNU ``split`` gives ``count`` parts: aa, ab, ..., az, ba, ..."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    return tuple(letters[i // 26] + letters[i % 26] for i in range(count))


_DRIVE_QUOTA = (
    'Google Drive often refuses popular files for a while with "Too many users have viewed or '
    'downloaded this file recently" (download quota exceeded). Wait a few hours (the quota '
    "resets within about 24 h) and try again, or, signed in to a Google account, use "
    '"Add shortcut to Drive"/"Make a copy" on the file and download your own copy.'
)

REGISTRY: dict[str, DatasetInfo] = {
    "utkface": DatasetInfo(
        name="utkface",
        title="UTKFace (Aligned & Cropped Faces)",
        homepage="https://susanqq.github.io/UTKFace/",
        hosting="google-drive",
        archives=(
            Archive(
                filename="UTKFace.tar.gz",
                page="https://drive.google.com/drive/folders/0BxYys69jI14kU0I1YUQyY1ZDRUE",
                size="about 107 MB",
            ),
        ),
        licence="Non-commercial research use only, as stated on the homepage; the copyright "
                "of the images stays with their original owners.",
        citation="Zhang, Song & Qi, Age Progression/Regression by Conditional Adversarial "
                 "Autoencoder, CVPR 2017.",
        expected=(
            Expected("files (usable + excluded)", 23_708, include_excluded=True),
            # 5 names are excluded (3 lack a race field, 2 are misnamed): the often-quoted
            # 23,705 counts the 2 misnamed files as usable (datasets.md)
            Expected("usable images", 23_703),
        ),
        manual_steps=(
            "Open the homepage https://susanqq.github.io/UTKFace/ and follow its Datasets link "
            "to the Google Drive folder (the kit lists it under 'page' below).",
            'In the Drive folder open "Aligned&Cropped Faces" and download UTKFace.tar.gz '
            "(about 107 MB, 23,708 JPEGs of 200x200 named like 36_0_1_20170117163203851.jpg"
            ".chip.jpg). Not the in-the-wild part1/2/3 archives.",
            "Put UTKFace.tar.gz (do not unpack it yourself) in {dest}",
            "Run `faceattr-lab data download utkface` again: it hashes, unpacks to "
            "{dest}/UTKFace/ and tells you how to verify.",
        ),
        ready=("UTKFace/*.jpg",),
        notes=("Kaggle mirrors (e.g. jangedoo/utkface-new) repackage the same images under "
               "other folder names; the kit's counts refer to the authors' UTKFace.tar.gz.",),
    ),
    "fairface": DatasetInfo(
        name="fairface",
        title="FairFace (padding 0.25)",
        homepage="https://github.com/joojs/fairface",
        hosting="google-drive",
        archives=(
            Archive(
                filename="fairface-img-margin025-trainval.zip",
                page="https://drive.google.com/file/d/1Z1RqRo0_JiavaZw2yzZG6WETdZQ8qX86/view",
                size="about 550 MB",
            ),
            Archive(
                filename="fairface_label_train.csv",
                page="https://drive.google.com/file/d/1i1L3Yqwaio7YSOCj7ftgk8ZZchPG7dmH/view",
            ),
            Archive(
                filename="fairface_label_val.csv",
                page="https://drive.google.com/file/d/1wOdja-ezstMEp81tX1a-EYkFebev4h7D/view",
            ),
        ),
        licence="CC BY 4.0 (as stated in the joojs/fairface README).",
        citation="Karkkainen & Joo, FairFace: Face Attribute Dataset for Balanced Race, Gender, "
                 "and Age for Bias Measurement and Mitigation, WACV 2021.",
        expected=(
            Expected("train images", 86_744, split="train"),
            Expected("val images", 10_954, split="val"),
        ),
        manual_steps=(
            "Open https://github.com/joojs/fairface; under 'Data' it links three Google Drive "
            "files (the kit lists them under 'page' below).",
            "Images: the [Padding=0.25] link gives fairface-img-margin025-trainval.zip (about "
            "550 MB; the 1.25 padding zip is a different image set, not used by the labs).",
            "Labels: the [Train] and [Validation] links give fairface_label_train.csv and "
            "fairface_label_val.csv.",
            "Put the zip and both CSV files in {dest}",
            "Run `faceattr-lab data download fairface` again: it hashes the files and unpacks "
            "the zip so that {dest} holds train/, val/ and the two CSV files.",
        ),
        ready=("fairface_label_train.csv", "fairface_label_val.csv", "train/*.jpg",
               "val/*.jpg"),
        notes=("The test part of the 108,501 images was never released.",),
    ),
    "afad": DatasetInfo(
        name="afad",
        title="AFAD-Full (Asian Face Age Dataset)",
        homepage="https://afad-dataset.github.io/",
        hosting="github-split-archive",
        archives=(
            Archive(
                filename="AFAD-Full.tar.xz",
                parts=tuple(f"AFAD-Full.tar.xz{s}" for s in _split_suffixes(46)),
                base_url="https://github.com/afad-dataset/tarball/raw/master/",
                size="46 parts",
            ),
        ),
        licence="Research use; see https://afad-dataset.github.io/ for the authors' terms and "
                "cite their paper.",
        citation="Niu, Zhou, Wang, Gao & Hua, Ordinal Regression with Multiple Output CNN for "
                 "Age Estimation, CVPR 2016.",
        # the whole archive, ages 15-72 (AFAD-Full.txt: 165,515 lines less 14 Thumbs.db); the
        # authors' 164,432 for ages 15-40 counts those Thumbs.db files (164,418 real images)
        expected=(Expected("images, ages 15-72", 165_501),),
        manual_steps=(
            "`faceattr-lab data download afad` fetches everything; by hand: download the parts "
            "AFAD-Full.tar.xzaa ... AFAD-Full.tar.xzbt from "
            "https://github.com/afad-dataset/tarball (the repository's restore.sh joins them).",
            "Join them in order: cat AFAD-Full.tar.xz?? > AFAD-Full.tar.xz",
            "Unpack into {dest}: tar -xJf AFAD-Full.tar.xz -C {dest}  (gives {dest}/AFAD-Full/)",
        ),
        ready=("AFAD-Full/*/11[12]/*.jpg",),
        notes=("The part list (aa..bt, 46 parts) comes from a public download script for "
               "afad-dataset/tarball; if joining gives a truncated archive, compare it with the "
               "repository's file list.",),
    ),
    "adience": DatasetInfo(
        name="adience",
        title="Adience (Levi & Hassner folds)",
        homepage="https://talhassner.github.io/home/projects/Adience/Adience-data.html",
        hosting="registration-form",
        archives=(
            Archive(filename="faces.tar.gz",
                    page="https://talhassner.github.io/home/projects/Adience/Adience-data.html"),
            *(Archive(filename=f"fold_{k}_data.txt",
                      page="https://talhassner.github.io/home/projects/Adience/Adience-data.html")
              for k in range(5)),
            Archive(filename="aligned.tar.gz", optional=True,
                    page="https://talhassner.github.io/home/projects/Adience/Adience-data.html"),
        ),
        licence="Research use under the terms you accept in the authors' registration form.",
        citation="Eidinger, Enbar & Hassner, Age and Gender Estimation of Unfiltered Faces, "
                 "IEEE TIFS 2014; Levi & Hassner, Age and Gender Classification using "
                 "Convolutional Neural Networks, CVPR Workshops 2015.",
        expected=(Expected("fold rows (usable + excluded)", 19_487, include_excluded=True),),
        manual_steps=(
            "Open the Adience page and fill in the authors' form; they send the download link "
            "and credentials (do not share them or put them in a notebook).",
            "Download faces.tar.gz (coarse tilt-aligned faces; aligned.tar.gz is the optional "
            "landmark-aligned set) and the five fold files fold_0_data.txt ... "
            "fold_4_data.txt.",
            "Put them in {dest}",
            "Run `faceattr-lab data download adience` again: it hashes and unpacks so that "
            "{dest} holds faces/<user_id>/... next to the fold files.",
        ),
        ready=tuple(f"fold_{k}_data.txt" for k in range(5)) + ("faces/*/*.jpg|aligned/*/*.jpg",),
    ),
}


def _say(message: str) -> None:
    print(message, flush=True)


def _info(name: str) -> DatasetInfo:
    if name in REGISTRY:
        return REGISTRY[name]
    hint = (" The synthetic set needs no download: use fl.datasets.synthetic_dataset(...)."
            if name == "synthetic" else "")
    raise ValueError(f"Unknown dataset {name!r}; choose one of {sorted(REGISTRY)}.{hint}")


def sha256_file(path: str | Path, chunk_size: int = 1 << 20) -> str:
    """The SHA-256 hex digest of a file, read in chunks. Lab 01."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


# Errors after which a download is worth resuming: the connection broke, not the request.
_TRANSIENT = (ConnectionError, http.client.IncompleteRead, http.client.BadStatusLine,
              socket.timeout, TimeoutError)


def _is_transient(error: BaseException) -> bool:
    if isinstance(error, urllib.error.HTTPError):
        return error.code >= 500 or error.code == 429
    if isinstance(error, urllib.error.URLError):
        return isinstance(error.reason, (*_TRANSIENT, OSError))
    return isinstance(error, _TRANSIENT)


def _content_range(header: str | None) -> tuple[int | None, int | None]:
    """(first byte, total size) from ``Content-Range: bytes a-b/total`` (or ``bytes */total``)."""
    if not header or not header.startswith("bytes "):
        return None, None
    span, _, total = header[len("bytes "):].partition("/")
    first = int(span.split("-")[0]) if span and span != "*" else None
    return first, (int(total) if total.strip().isdigit() else None)


def _transfer(url: str, part: Path, chunk_size: int, timeout: float) -> None:
    """One HTTP request that appends to ``part`` from the bytes already there.

    Returns when the file is complete; raises a transient error when the connection breaks
    (the bytes received so far stay in ``part`` for the next attempt).
    """
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": f"faceattr-lab/{__version__} (python urllib)"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:
            _, total = _content_range(error.headers.get("Content-Range"))
            error.close()
            if total == offset:
                return  # the previous attempt already received every byte
            _say(f"  {part.name}: the server refused to resume at byte {offset}; restarting")
            part.unlink()
            raise http.client.IncompleteRead(b"") from None
        raise
    with response:
        status = response.status
        length = response.headers.get("Content-Length")
        length = int(length) if length and length.isdigit() else None
        if status == 206:
            first, total = _content_range(response.headers.get("Content-Range"))
            if first != offset:
                raise ValueError(f"{url} answered a resume at byte {offset} with bytes from "
                                 f"{first}; delete {part} and download again.")
            mode = "ab"
        else:
            if offset:
                _say(f"  {part.name}: the server ignored the resume request (HTTP {status}); "
                     "restarting from byte 0")
            offset, total, mode = 0, length, "wb"
        received = 0
        next_report = 0.25
        with open(part, mode) as fh:
            for chunk in iter(lambda: response.read(chunk_size), b""):
                fh.write(chunk)
                received += len(chunk)
                if total and (offset + received) / total >= next_report:
                    done = (offset + received) / total
                    _say(f"  {part.name}: {_human(offset + received)} of {_human(total)} "
                         f"({done:.0%})")
                    while next_report <= done:
                        next_report += 0.25
    if length is not None and received < length:
        # urllib returns a short body silently when the peer closes early; say so here.
        raise http.client.IncompleteRead(b"", length - received)


def fetch(url: str, dest: str | Path, sha256: str | None = None, chunk_size: int = 1 << 20,
          retries: int = 3, timeout: float = 30) -> Path:
    """Download ``url`` to ``dest`` resumably and check its SHA-256; return ``dest``. Lab 01.

    Bytes go to ``dest.part``; an interrupted transfer (connection reset, incomplete read,
    timeout, HTTP 5xx) is retried up to ``retries`` times in a row, resuming from the bytes on
    disk with an HTTP Range request (a server that ignores Range is restarted cleanly). The
    finished file is hashed: a mismatch with ``sha256`` deletes it and raises ``ValueError``;
    with ``sha256=None`` the computed hash is printed so it can be pinned. On success the
    ``.part`` file is renamed to ``dest`` atomically; an existing ``dest`` with the right hash
    is not downloaded again.
    """
    dest = Path(dest)
    if retries < 0 or chunk_size <= 0 or timeout <= 0:
        raise ValueError("fetch needs retries >= 0, chunk_size > 0 and timeout > 0, e.g. "
                         "retries=3, chunk_size=1 << 20, timeout=30.")
    expected = sha256.lower() if sha256 else None
    if dest.exists():
        if expected is None or sha256_file(dest) == expected:
            _say(f"{dest.name}: already downloaded ({dest})")
            return dest
        _say(f"{dest.name}: the file on disk has the wrong SHA-256; downloading it again")
        dest.unlink()
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    _say(f"{dest.name}: downloading {url}"
         + (f" (resuming at {_human(part.stat().st_size)})" if part.exists() else ""))

    failures = 0
    while True:
        before = part.stat().st_size if part.exists() else 0
        try:
            _transfer(url, part, chunk_size, timeout)
            break
        except Exception as error:  # noqa: BLE001 - sorted into transient or not below
            if not _is_transient(error):
                raise
            after = part.stat().st_size if part.exists() else 0
            failures = 0 if after > before else failures + 1  # progress resets the count
            if failures > retries:
                raise ConnectionError(
                    f"{url}: the transfer kept failing ({error!r}) after {retries} retries; "
                    f"{_human(after)} are kept in {part}: run the same command again to resume."
                ) from error
            wait = RETRY_BACKOFF_S * 2 ** max(failures - 1, 0)
            _say(f"  {dest.name}: connection broken ({type(error).__name__}) at "
                 f"{_human(after)}; resuming in {wait:.0f} s")
            time.sleep(wait)

    got = sha256_file(part)
    if expected is not None and got != expected:
        part.unlink()
        raise ValueError(
            f"{dest.name}: SHA-256 mismatch: expected {expected}, got {got}. The download was "
            "corrupted or the file changed upstream; the bad copy was deleted. Run the download "
            "again; if it keeps failing, check the dataset's homepage for a new version before "
            "changing the pinned hash."
        )
    os.replace(part, dest)
    if expected is None:
        _say(f"{dest.name}: SHA-256 {got} (the kit has no pinned hash for this file; pin this "
             "value in faceattr_lab.datasets.downloads.REGISTRY so later downloads are checked)")
    else:
        _say(f"{dest.name}: SHA-256 verified")
    return dest


def concatenate(parts, dest: str | Path) -> Path:
    """Join the parts of a split archive, in the order given, into ``dest``. Lab 01."""
    parts = [Path(p) for p in parts]
    missing = [str(p) for p in parts if not p.is_file()]
    if not parts or missing:
        raise ValueError(f"Cannot join split archive {Path(dest).name}: missing parts "
                         f"{missing or '(none given)'}; download them first.")
    dest = Path(dest)
    tmp = dest.with_name(dest.name + ".part")
    with open(tmp, "wb") as out:
        for p in parts:
            with open(p, "rb") as src:
                shutil.copyfileobj(src, out, 1 << 20)
    os.replace(tmp, dest)
    return dest


def _unsafe_reason(name: str) -> str | None:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or (len(name) > 1 and name[1] == ":"):
        return "absolute path"
    if ".." in path.parts:
        return "'..' in path"
    return None


def extract(archive: str | Path, dest: str | Path) -> Path:
    """Unpack a .zip, .tar.gz/.tgz, .tar.xz or .tar into ``dest`` safely; return ``dest``. Lab 01.

    Every member is checked first: an absolute path, a ``..`` component or a link pointing
    outside ``dest`` raises ``ValueError`` before anything is written.
    """
    archive, dest = Path(archive), Path(dest)
    name = archive.name.lower()
    if not archive.is_file():
        raise ValueError(f"No archive at {archive}; download it first.")
    dest.mkdir(parents=True, exist_ok=True)
    _say(f"{archive.name}: unpacking into {dest}")
    if name.endswith(".zip"):
        if not zipfile.is_zipfile(archive):
            raise ValueError(f"{archive.name} is not a valid zip (damaged or incomplete); "
                             "delete it and download it again.")
        with zipfile.ZipFile(archive) as zf:
            for member in zf.namelist():
                reason = _unsafe_reason(member)
                if reason:
                    raise ValueError(f"Refusing to unpack {archive.name}: member {member!r} has "
                                     f"an {reason}; the archive is not what the kit expects.")
            zf.extractall(dest)
        return dest
    modes = {".tar.gz": "r:gz", ".tgz": "r:gz", ".tar.xz": "r:xz", ".tar": "r:"}
    mode = next((m for suffix, m in modes.items() if name.endswith(suffix)), None)
    if mode is None:
        raise ValueError(f"Cannot unpack {archive.name}: the kit handles "
                         f"{', '.join(_ARCHIVE_SUFFIXES)}.")
    try:
        with tarfile.open(archive, mode) as tf:
            members = tf.getmembers()
            for member in members:
                reason = _unsafe_reason(member.name)
                if reason is None and (member.issym() or member.islnk()):
                    reason = _unsafe_reason(member.linkname)
                    reason = f"link target with an {reason}" if reason else None
                if reason:
                    raise ValueError(f"Refusing to unpack {archive.name}: member "
                                     f"{member.name!r} has an {reason}; the archive is not "
                                     "what the kit expects.")
            if hasattr(tarfile, "data_filter"):  # Python >= 3.10.12 / 3.11.4: defence in depth
                tf.extractall(dest, members=members, filter="data")
            else:  # pragma: no cover - older Pythons; members were checked above
                tf.extractall(dest, members=members)
    except (tarfile.TarError, EOFError, OSError, lzma.LZMAError, zlib.error) as error:
        raise ValueError(f"{archive.name} is damaged or incomplete ({error}); delete it and "
                         "download it again.") from error
    return dest


def _is_ready(info: DatasetInfo, folder: Path) -> bool:
    if not folder.is_dir():
        return False
    for entry in info.ready:
        if not any(next(folder.glob(pattern), None) is not None for pattern in entry.split("|")):
            return False
    return True


def manual_steps(name: str, dest: str | Path | None = None) -> str:
    """The numbered steps to fetch a dataset by hand, with its files and terms. Lab 01."""
    info = _info(name)
    dest = Path(dest) if dest else config.data_dir() / info.name
    lines = [f"{info.title}: {info.homepage}", f"Terms: {info.licence}", ""]
    lines += [f"{i}. {step.format(dest=dest)}" for i, step in enumerate(info.manual_steps, 1)]
    lines.append("")
    lines.append("Files:")
    for a in info.archives:
        where = a.url or a.page or (a.base_url and f"{a.base_url} (parts)") or info.homepage
        extra = ", optional" if a.optional else ""
        size = f" ({a.size}{extra})" if a.size else (f" ({extra[2:]})" if extra else "")
        lines.append(f"  - {a.filename}{size}: {where}")
    if info.hosting == "google-drive":
        lines += ["", _DRIVE_QUOTA]
    lines += [f"Note: {note}" for note in info.notes]
    lines.append(f"Cite: {info.citation}")
    return "\n".join(lines)


def _check_hash(archive: Archive, path: Path) -> None:
    got = sha256_file(path)
    if archive.sha256 and got != archive.sha256.lower():
        raise ValueError(f"{path.name}: SHA-256 mismatch: expected {archive.sha256}, got {got}. "
                         "The file is damaged or a different version: download it again from "
                         f"{archive.page or archive.url}.")
    if archive.sha256:
        _say(f"{path.name}: SHA-256 verified")
    else:
        _say(f"{path.name}: SHA-256 {got} (no pinned hash in the kit; pin it in REGISTRY)")


def download(name: str, dest: str | Path | None = None) -> Path:
    """Put dataset ``name`` into ``dest`` (default ``data_dir()/name``) and return it. Lab 01.

    Files with a direct URL are fetched (resumable, hash-checked, split parts joined); files
    behind Google Drive or a registration form must be placed in ``dest`` by hand: when one is
    missing, the manual steps are printed and ``ManualDownloadRequired`` is raised. Archives
    are unpacked in ``dest`` and kept, so a second call finds the data ready and returns.
    """
    info = _info(name)
    dest = Path(dest).expanduser() if dest else config.data_dir() / info.name
    dest.mkdir(parents=True, exist_ok=True)
    if _is_ready(info, dest):
        _say(f"{info.title} is already in place at {dest}")
        return dest

    local: list[tuple[Archive, Path]] = []
    missing: list[Archive] = []
    for archive in info.archives:
        path = dest / archive.filename
        if archive.parts and archive.base_url:
            if not path.exists():
                parts_dir = dest / f"{archive.filename}.parts"
                files = [fetch(archive.base_url + p, parts_dir / p) for p in archive.parts]
                sums = parts_dir / "SHA256SUMS"
                sums.write_text("".join(f"{sha256_file(f)}  {f.name}\n" for f in files))
                _say(f"SHA-256 of each part written to {sums}")
                concatenate(files, path)
                _check_hash(archive, path)
        elif archive.url:
            fetch(archive.url, path, sha256=archive.sha256)
        elif path.exists():
            _check_hash(archive, path)
        elif not archive.optional:
            missing.append(archive)
            continue
        else:
            continue
        local.append((archive, path))

    if missing:
        _say(manual_steps(name, dest))
        _say("")
        _say("Still missing in " + str(dest) + ": " + ", ".join(a.filename for a in missing))
        raise ManualDownloadRequired(
            f"{info.title} must be downloaded by hand ({info.hosting}); follow the steps above, "
            f"put the files in {dest} and run `faceattr-lab data download {name}` again."
        )

    for archive, path in local:
        if archive.is_archive:
            extract(path, dest)
    if not _is_ready(info, dest):
        raise ValueError(
            f"Unpacked {info.title} into {dest} but did not find the expected layout "
            f"({', '.join(info.ready)}); check the archive is the one named in the steps "
            f"(`faceattr-lab data download {name}` prints them)."
        )
    _say(f"{info.title} is ready at {dest} (the archives can be deleted). Check it with "
         f"`faceattr-lab data verify {name} --root {dest}`.")
    return dest


def verify(name: str, root: str | Path):
    """Load a dataset with image checks and compare its counts with ``REGISTRY``. Lab 01.

    Every image is opened (``verify=True``), so a full dataset takes minutes. Returns
    ``(counts, excluded)``: ``counts`` has columns ``check``, ``expected``, ``found``, ``ok``;
    ``excluded`` counts the loader's exclusions by ``reason`` (and ``split`` for FairFace).
    """
    import pandas as pd

    from faceattr_lab import datasets
    from faceattr_lab.datasets.common import DatasetWarning, excluded_count

    info = _info(name)
    loader = getattr(datasets, f"load_{name}")
    splits = sorted({e.split for e in info.expected if e.split})
    with warnings.catch_warnings():
        # The loaders warn with an exclusion summary; it is returned here as a table instead.
        warnings.simplefilter("ignore", DatasetWarning)
        tables = ({s: loader(root, s, verify=True) for s in splits} if splits
                  else {None: loader(root, verify=True)})
    rows = []
    for e in info.expected:
        table = tables[e.split]
        # rows not loaded, each once (a row lacking two labels is listed under both reasons)
        found = len(table) + (excluded_count(table) if e.include_excluded else 0)
        rows.append({"check": e.label, "expected": e.count, "found": found,
                     "ok": found == e.count})
    counts = pd.DataFrame(rows, columns=["check", "expected", "found", "ok"])
    frames = []
    for split, table in tables.items():
        excluded = table.attrs.get("excluded")
        if excluded is not None and len(excluded):
            frame = excluded.groupby("reason").size().rename("count").reset_index()
            if split:
                frame.insert(0, "split", split)
            frames.append(frame)
    columns = (["split"] if splits else []) + ["reason", "count"]
    excluded = (pd.concat(frames, ignore_index=True) if frames
                else pd.DataFrame(columns=columns))
    return counts, excluded


__all__ = ["REGISTRY", "Archive", "DatasetInfo", "Expected", "ManualDownloadRequired",
           "fetch", "extract", "concatenate", "download", "manual_steps", "sha256_file",
           "verify", "RETRY_BACKOFF_S"]
