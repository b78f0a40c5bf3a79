"""Verified, resumable downloads of one registry file.

A file is written to ``<final>.part`` and renamed to its final name only after its hash
is checked (full sha256, a published prefix, or the hash recorded at its first fetch), so no
partial or unverified file ever has the final name. ``.<final>.lock`` (``fcntl.flock``) lets
two processes fetch the same file at once: the second waits and finds the verified copy.

HTTP(S) downloads resume a ``.part`` left by an interrupted run with a ``Range`` request (pooch,
used for hashing and the cache folder, downloads to a fresh temporary file and cannot resume);
Google Drive files go through gdown, Cityscapes packages through cityscapesscripts' downloader.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from bench.errors import OutputError, UnavailableError, WeightsError
from bench.runtime.fetch.registry import (
    Entry,
    FileSpec,
    data_dir,
    human,
    mirror,
    offline,
)

CHUNK = 1 << 16  # small enough that a cut connection keeps what arrived before it
TIMEOUT = (15.0, 60.0)  # connect, read (seconds)
ATTEMPTS = 4  # one request plus resumed retries after a cut connection
MIRROR_FIX = "set --mirror URL (or $BENCH_MIRROR) to a folder that holds the file, or copy it by hand and run " \
             "`bench fetch --from DIR`"


class FetchError(UnavailableError):
    """A download failed (HTTP error, timeout, wrong hash, Drive refusal) or is refused offline."""


class OfflineError(WeightsError, FetchError):
    """Offline mode (``--offline`` / ``BENCH_OFFLINE=1``) refused a download."""


# -- recorded hashes ------------------------------------------------------------------------
def _record_file() -> Path:
    return data_dir() / "hashes.json"


def recorded() -> dict[str, dict]:
    """{registry file name: {"sha256", "size", "mtime_ns"}} of every verified file."""
    try:
        return json.loads(_record_file().read_text())
    except (OSError, ValueError):
        return {}


def record(spec: FileSpec, path: Path, digest: str) -> None:
    """Remember the verified hash of ``path`` (and its size and mtime: --list trusts an unchanged file)."""
    from bench.storage.atomic import write_text

    with lock(_record_file()):
        table = recorded()
        st = path.stat()
        table[spec.file] = {"sha256": digest, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
        write_text(_record_file(), json.dumps(table, indent=1, sort_keys=True))


def expected_hash(spec: FileSpec) -> str | None:
    """The published sha256 (or prefix), else the one recorded at the first fetch, else None."""
    return spec.sha256 or recorded().get(spec.file, {}).get("sha256")


def verify(spec: FileSpec, path: Path) -> str:
    """sha256 of ``path``; raises :class:`FetchError` when it does not match the expected one."""
    from bench.runtime.hashing import sha256_file

    digest = sha256_file(path)
    want = expected_hash(spec)
    if want and not digest.startswith(want.lower()):
        raise FetchError(f"{spec.file}: sha256 {digest[:16]}… does not match the expected {want[:16]}…",
                         "the copy is corrupt, truncated or another version; it was not kept")
    if spec.size is not None and path.stat().st_size != spec.size:
        raise FetchError(f"{spec.file}: {path.stat().st_size} bytes, expected {spec.size}",
                         "the copy is truncated or another version; it was not kept")
    return digest


def is_verified(spec: FileSpec, path: Path) -> bool:
    """True when ``path`` exists and matches (an unchanged file recorded as verified is trusted)."""
    if not path.is_file():
        return False
    st, rec = path.stat(), recorded().get(spec.file)
    if rec and rec.get("size") == st.st_size and rec.get("mtime_ns") == st.st_mtime_ns:
        return not spec.sha256 or rec["sha256"].startswith(spec.sha256.lower())
    try:
        verify(spec, path)
    except FetchError:
        return False
    return True


# -- locking and the .part file ---------------------------------------------------------------
@contextlib.contextmanager
def lock(path: Path) -> Iterator[None]:
    """An exclusive lock on ``.<name>.lock`` beside ``path`` (waits for another process holding it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_path = path.with_name(f".{path.name}.lock")
    with open(lock_path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _disk_full(err: OSError, part: Path) -> OutputError:
    part.unlink(missing_ok=True)
    return OutputError(f"cannot write {part}: {err.strerror or err}",
                       "free disk space (or set $BENCH_DATA_DIR to a larger disk) and fetch again; "
                       "the partial file was removed")


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- transports ----------------------------------------------------------------------------
def http_download(url: str, part: Path, progress: bool = True, size: int | None = None) -> None:
    """Download ``url`` into ``part``, resuming what is already there (``Range``), retrying a
    connection cut mid-way; raises :class:`FetchError` (one line naming the URL) on failure."""
    import requests
    from tqdm import tqdm

    last: Exception | None = None
    for _ in range(ATTEMPTS):
        have = part.stat().st_size if part.is_file() else 0
        headers = {"Range": f"bytes={have}-"} if have else {}
        try:
            with requests.get(url, stream=True, timeout=TIMEOUT, headers=headers) as r:
                if r.status_code == 416 and have:  # the .part is complete already (or stale)
                    if size is None or have == size:
                        return
                    part.unlink()
                    continue
                if r.status_code >= 400:
                    raise FetchError(f"cannot download {url}: HTTP {r.status_code} {r.reason or ''}".rstrip(),
                                     MIRROR_FIX)
                append = r.status_code == 206 and bool(have)
                total = r.headers.get("Content-Length")
                total_n = int(total) + (have if append else 0) if total and total.isdigit() else size
                with open(part, "ab" if append else "wb") as fh, tqdm(
                        total=total_n, initial=have if append else 0, unit="B", unit_scale=True,
                        unit_divisor=1024, desc=part.name[:-5][:30], disable=None if progress else True,
                        leave=False) as bar:
                    for chunk in r.iter_content(CHUNK):
                        try:
                            fh.write(chunk)
                        except OSError as err:
                            raise _disk_full(err, part) from None
                        bar.update(len(chunk))
                if total_n is not None and part.stat().st_size < total_n:
                    raise requests.ConnectionError(f"connection closed at {part.stat().st_size} of {total_n} bytes")
                return
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as err:
            last = err  # keep the .part: the next attempt (or the next run) resumes it
            if part.is_file() and part.stat().st_size > have:
                continue  # progress was made: resume at once
            break
        except requests.Timeout as err:
            last = err
            break
        except requests.RequestException as err:
            last = err
            break
    kind = "timed out" if isinstance(last, requests.Timeout) else "connection failed"
    raise FetchError(f"cannot download {url}: {kind} ({type(last).__name__})", MIRROR_FIX)


def gdrive_download(file_id: str, part: Path, name: str, progress: bool = True) -> None:
    """A Google Drive file via gdown; its confirmation page and quota refusals are one line each."""
    try:
        import gdown
        from gdown.exceptions import FileURLRetrievalError
    except ImportError:
        raise FetchError(f"{name} is on Google Drive and the gdown package is missing",
                         "pip install gdown (the fetch extra), or " + MIRROR_FIX) from None

    url = f"https://drive.google.com/uc?id={file_id}"
    try:
        gdown.download(id=file_id, output=str(part), quiet=not progress, resume=part.is_file(), timeout=TIMEOUT)
    except FileURLRetrievalError as err:
        text = str(err)
        if "Too many users" in text or "quota" in text.lower():
            raise FetchError(f"Google Drive refused {name} ({url}): download quota exceeded for now",
                             "try again in 24 h, or download it in a browser and run `bench fetch --from DIR`, "
                             f"or {MIRROR_FIX}") from None
        raise FetchError(f"Google Drive answered {name} ({url}) with a confirmation page, not the file",
                         f"open the URL in a browser, save the file and run `bench fetch --from DIR`; or "
                         f"{MIRROR_FIX}") from None
    except OSError as err:
        if err.errno == errno.ENOSPC:
            raise _disk_full(err, part) from None
        raise FetchError(f"cannot download {name} from {url}: {err}", MIRROR_FIX) from None
    except Exception as err:  # noqa: BLE001 - gdown's DownloadError, requests errors: one line
        raise FetchError(f"cannot download {name} from {url}: {' '.join(str(err).split())[:120]}",
                         MIRROR_FIX) from None
    with open(part, "rb") as fh:
        head = fh.read(512).lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html")):
        part.unlink()
        raise FetchError(f"Google Drive answered {name} ({url}) with an HTML page, not the file",
                         f"open the URL in a browser, save the file and run `bench fetch --from DIR`; or {MIRROR_FIX}")


def cityscapes_download(package: str, part: Path, progress: bool = True) -> None:
    """A Cityscapes package through cityscapesscripts' downloader (md5-checked, resumable). The
    login comes from $CITYSCAPES_USERNAME / $CITYSCAPES_PASSWORD, else cityscapesscripts' prompt;
    the credentials are never written anywhere by bench."""
    import requests

    try:
        from cityscapesscripts.download import downloader
    except ImportError:
        raise FetchError(f"Cityscapes package {package} needs the cityscapesscripts package",
                         "pip install cityscapesscripts (the fetch extra), or " + MIRROR_FIX) from None

    user, password = os.environ.get("CITYSCAPES_USERNAME"), os.environ.get("CITYSCAPES_PASSWORD")
    try:
        if user and password:
            session = requests.Session()
            session.get("https://www.cityscapes-dataset.com/login", allow_redirects=False, timeout=TIMEOUT)
            r = session.post("https://www.cityscapes-dataset.com/login", allow_redirects=False, timeout=TIMEOUT,
                             data={"username": user, "password": password, "submit": "Login"})
            if r.status_code != 302:
                raise FetchError("Cityscapes login failed (bad CITYSCAPES_USERNAME / CITYSCAPES_PASSWORD?)",
                                 "check the account at https://www.cityscapes-dataset.com/login")
        else:
            session = downloader.login()
        staging = part.parent / (part.name + ".d")
        staging.mkdir(exist_ok=True)
        downloader.download_packages(session=session, package_names=[package], destination_path=str(staging),
                                     resume=(staging / package).is_file())
        os.replace(staging / package, part)
        staging.rmdir()
    except FetchError:
        raise
    except OSError as err:
        if err.errno == errno.ENOSPC:
            raise _disk_full(err, part) from None
        raise FetchError(f"cannot download Cityscapes package {package}: {err}", MIRROR_FIX) from None
    except Exception as err:  # noqa: BLE001 - cityscapesscripts raises bare Exception (credentials, md5)
        raise FetchError(f"cannot download Cityscapes package {package}: {' '.join(str(err).split())[:120]}",
                         MIRROR_FIX) from None


# -- one file ------------------------------------------------------------------------------
def sources(spec: FileSpec) -> list[tuple[str, Callable[[Path, bool], None]]]:
    """(description, download function) for each place the file can come from, in order:
    the mirror alone when one is set, else the registry's URLs, Drive id or Cityscapes package."""
    base = mirror()
    out: list[tuple[str, Callable[[Path, bool], None]]] = []

    def http(url: str) -> Callable[[Path, bool], None]:
        return lambda part, progress: http_download(url, part, progress, spec.size)

    if base:
        url = base.rstrip("/") + "/" + spec.file
        return [(url, http(url))]
    out += [(u, http(u)) for u in spec.urls]
    drive, package = spec.gdrive, spec.cityscapes
    if drive:
        out.append((f"Google Drive {drive}", lambda part, p: gdrive_download(drive, part, spec.file, p)))
    if package:
        out.append((f"cityscapes-dataset.com {package}", lambda part, p: cityscapes_download(package, part, p)))
    return out


def fetch_file(entry: Entry, spec: FileSpec, dest: Path, *, progress: bool = True,
               copy_from: Path | None = None) -> Path:
    """The verified file ``dest``: kept if already verified, else copied from ``copy_from`` or
    downloaded (one line on stderr), checked and renamed into place. A file with a wrong hash
    is deleted and reported; offline mode refuses before any request."""
    with lock(dest):
        if is_verified(spec, dest):
            return dest
        if dest.is_file():
            dest.unlink()
            _say(f"bench: {dest} did not match its hash: deleted")
        part = dest.with_name(dest.name + ".part")
        if copy_from is not None:
            try:
                shutil.copyfile(copy_from, part)
            except OSError as err:
                if err.errno == errno.ENOSPC:
                    raise _disk_full(err, part) from None
                raise
            return _finish(entry, spec, part, dest, str(copy_from))
        if offline():
            raise OfflineError(f"{spec.file} is missing and downloads are off (--offline / BENCH_OFFLINE=1)",
                               f"run `bench fetch {entry.name}` on a machine with network (or with --mirror), "
                               "or `bench fetch --from DIR`")
        places = sources(spec)
        if not places:
            raise FetchError(f"{spec.file}: the registry gives no download source", MIRROR_FIX)
        errors: list[FetchError] = []
        for where, download in places:
            size = f" ({human(spec.size)})" if spec.size else (f" (~{spec.approx_size})" if spec.approx_size else "")
            _say(f"bench: downloading {spec.file}{size} from {where}")
            try:
                download(part, progress)
                return _finish(entry, spec, part, dest, where)
            except FetchError as err:
                errors.append(err)
        if len(errors) == 1:
            raise errors[0]
        raise FetchError("; ".join(e.problem for e in errors), errors[-1].fix)


def _finish(entry: Entry, spec: FileSpec, part: Path, dest: Path, where: str) -> Path:
    try:
        digest = verify(spec, part)
    except FetchError as err:
        part.unlink(missing_ok=True)
        raise FetchError(f"{err.problem} (from {where}); deleted", err.fix) from None
    os.replace(part, dest)
    if not spec.sha256 and spec.file not in recorded():
        _say(f"bench: {spec.file}: no published hash; recorded sha256 {digest} (checked from now on)")
    record(spec, dest, digest)
    return dest
