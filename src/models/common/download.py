"""Weights fetched once into torch.hub's cache, verified by sha256, written atomically: the
ImageNet backbones (``imagenet.py``) and a model's released checkpoints (``released.py`` in its
package).

``cached_download`` returns ``torch.hub.get_dir()/checkpoints/<file>`` (``$TORCH_HOME/hub/
checkpoints``, the folder torchvision uses, so a file it already fetched is reused). A file
already there is used without any network access; otherwise it is downloaded (from its URL, or
from ``$SRLANE_WEIGHTS_URL``, a mirror holding the same file names) and kept only if complete and
its sha256 is the expected one. Where the publisher gives no hash, the first download's sha256 is
recorded beside the file (``<file>.sha256``, trust on first use) and later downloads must match
it; a ``<file>.sha256`` written by hand before the first download pins it.

Why not ``torch.hub.download_url_to_file``: it has no timeout (``urlopen`` without one blocks for
ever on a host that drops packets; the only knob is the process-wide
``socket.setdefaulttimeout``, which would also change every other thread's new sockets), and a
connection closed mid-body ends its read loop like a normal end of file, so a broken transfer
shows only as a hash mismatch. ``download_verified`` keeps its scheme (a temporary file beside
the target, hash checked, then renamed; never a partial file under the real name) and adds: a
bounded time for each read and, overall, for name lookup, connecting (to all of the host's
addresses) and the response headers; a Content-Length check; an fsync before the rename.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import textwrap
import threading
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import torch.hub

from src.run_dir import write_atomic

log = logging.getLogger(__name__)

# A mirror or a shared folder holding the same file names (http://, https:// or file://).
BASE_URL_ENV = "SRLANE_WEIGHTS_URL"
# Seconds allowed to connect and get the response headers, and for each read after that.
TIMEOUT_ENV = "SRLANE_WEIGHTS_TIMEOUT"
DEFAULT_TIMEOUT_S = 20.0

_CHUNK = 1 << 16


class PretrainedWeightsError(RuntimeError):
    """The weights could not be fetched or verified; the message says how to provide them."""

    def __repr__(self) -> str:
        # Hydra's instantiate reports a failed constructor with repr(error): keep the message's
        # lines readable there instead of one line of escaped newlines.
        return f"{type(self).__name__}: {self}"


class _DownloadFailed(Exception):
    """A failed download; the message is the reason (the caller adds the help)."""


def weights_cache_dir() -> Path:
    """torch.hub's checkpoint folder, ``$TORCH_HOME/hub/checkpoints`` (torchvision's too)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def mirror_url(file_name: str, url: str) -> str:
    """Where ``file_name`` is fetched from: ``$SRLANE_WEIGHTS_URL/<file_name>`` where that mirror
    is set, else its published ``url``."""
    base = os.environ.get(BASE_URL_ENV)
    return base.rstrip("/") + "/" + file_name if base else url


def download_timeout() -> float:
    """``$SRLANE_WEIGHTS_TIMEOUT`` seconds, else ``DEFAULT_TIMEOUT_S``."""
    raw = os.environ.get(TIMEOUT_ENV)
    if not raw:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise PretrainedWeightsError(f"{TIMEOUT_ENV}={raw!r}: expected a positive number")
    return value


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def recorded_hash_path(target: Path) -> Path:
    """``<file>.sha256`` beside a cached file without a published hash: its first download's
    sha256 (trust on first use), or the pin a person wrote there before."""
    return target.with_name(target.name + ".sha256")


def _recorded_hash(target: Path) -> str | None:
    path = recorded_hash_path(target)
    if not path.is_file():
        return None
    words = path.read_text().split()  # "<hex digest>  <file name>", as sha256sum writes it
    value = words[0].lower() if words else ""
    if not value or any(c not in "0123456789abcdef" for c in value):
        raise PretrainedWeightsError(
            f"{path}: expected the sha256 of {target.name} (hex digits), found {value!r}"
        )
    return value


def _record_hash(target: Path, digest: str) -> None:
    write_atomic(recorded_hash_path(target), f"{digest}  {target.name}\n")


def _check_cached(target: Path, published: str | None) -> None:
    """A cached file is used as it is (files get there only after a check, or by hand, on
    purpose); one that differs from its published or recorded hash is used with a warning. One
    without either gets its hash recorded."""
    digest = sha256_of(target)
    expected, source = published, "its published sha256"
    if expected is None:
        expected, source = _recorded_hash(target), f"the sha256 in {recorded_hash_path(target)}"
    if expected is None:
        _record_hash(target, digest)
        log.info("%s: no published sha256; recorded %s (trust on first use)", target, digest)
    elif not digest.startswith(expected):
        log.warning(
            "%s: its sha256 %s does not start with %s, %s, so it is not the published file; "
            "using it anyway (delete it to download the published one)",
            target,
            digest,
            expected,
            source,
        )


def cached_download(
    file_name: str,
    url: str,
    sha256: str | None,
    what: str = "the weights",
    alternatives: str = "",
    progress: bool = True,
    timeout: float | None = None,
) -> Path:
    """``weights_cache_dir()/file_name``, downloaded from ``mirror_url(file_name, url)`` unless
    present (see the module docstring).

    ``sha256``: the published digest or a prefix of it; None when the publisher gives none
    (trust on first use, ``recorded_hash_path``). ``what`` and ``alternatives`` (other ways to
    provide the file, a sentence) go into the error, which also names the URL, the file, the
    folder, the mirror, proxy and timeout settings.
    """
    folder = weights_cache_dir()
    target = folder / file_name
    if target.is_file():
        _check_cached(target, sha256)
        return target
    expected = sha256 if sha256 is not None else _recorded_hash(target)
    url = mirror_url(file_name, url)
    timeout = download_timeout() if timeout is None else timeout
    log.info("downloading %s from %s to %s", what, url, target)
    try:
        size, digest = download_verified(url, target, expected, timeout=timeout, progress=progress)
    except _DownloadFailed as error:
        help_text = (
            "Without network access: fetch that URL elsewhere and copy the file, under this exact "
            "name, into that folder (torch.hub's cache: $TORCH_HOME/hub/checkpoints, TORCH_HOME "
            f"defaults to ~/.cache/torch){', ' + alternatives if alternatives else ''}. A "
            f"mirror or a shared folder holding the file: {BASE_URL_ENV}=<base URL> (http://, "
            "https:// or file://; the file name is appended). A proxy: HTTPS_PROXY / HTTP_PROXY. "
            f"Timeout to connect and per read: {TIMEOUT_ENV}=<seconds> (now {timeout:g})."
        )
        raise PretrainedWeightsError(
            f"could not get {what}: {error}\n"
            f"  URL:       {url}\n"
            f"  file name: {file_name}\n"
            f"  folder:    {folder}\n"
            + textwrap.fill(help_text, 100, break_long_words=False, break_on_hyphens=False)
        ) from error
    if expected is None:
        _record_hash(target, digest)
        log.warning(
            "%s has no published sha256: recorded this download's, %s, in %s (trust on first "
            "use: later downloads must match it; compare it with a copy you trust)",
            file_name,
            digest,
            recorded_hash_path(target),
        )
    log.info("saved %s (%.1f MB, sha256 %s)", target, size / 1e6, digest)
    return target


def download_verified(
    url: str, target: Path, expected_hash: str | None, timeout: float, progress: bool = True
) -> tuple[int, str]:
    """Download ``url`` to ``target`` through a temporary file beside it, renamed onto
    ``target`` only when the transfer is complete and its sha256 starts with ``expected_hash``
    (any sha256 if None; the temporary file is removed otherwise). Returns (size, sha256);
    raises _DownloadFailed."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise _DownloadFailed(f"cannot create the cache folder ({error})") from error
    response = _open(url, timeout)
    # Unique per process and try, so concurrent downloads (DDP ranks) never share one; not
    # NamedTemporaryFile, whose 0600 mode would carry over to the cached file.
    partial = target.with_name(f"{target.name}.{uuid.uuid4().hex}.partial")
    try:
        with response, open(partial, "xb") as out, _progress_bar(progress) as bar:
            total = _content_length(response)
            task = bar.add_task(f"downloading {target.name}", total=total)
            digest = hashlib.sha256()
            size = 0
            while True:
                try:
                    chunk = response.read(_CHUNK)
                except (OSError, http.client.HTTPException) as error:
                    raise _DownloadFailed(
                        f"the transfer broke off after {size} bytes ({_describe(error)})"
                    ) from error
                if not chunk:
                    break
                out.write(chunk)
                digest.update(chunk)
                size += len(chunk)
                bar.update(task, advance=len(chunk))
            if total is not None and size != total:
                raise _DownloadFailed(
                    f"the connection closed after {size} of {total} bytes; nothing was kept"
                )
            hexdigest = digest.hexdigest()
            if expected_hash is not None and not hexdigest.startswith(expected_hash):
                raise _DownloadFailed(
                    f"the downloaded file's sha256 {hexdigest} does not start with "
                    f"{expected_hash}, the expected one (a proxy or mirror serving "
                    "something else, or a changed release?); nothing was kept"
                )
            out.flush()
            os.fsync(out.fileno())  # the data is on disk before the name points at it
        os.replace(partial, target)
    except OSError as error:  # writing the temporary file or renaming it
        raise _DownloadFailed(f"cannot write into {target.parent} ({error})") from error
    finally:
        partial.unlink(missing_ok=True)
    return size, hexdigest


def _open(url: str, timeout: float) -> Any:
    """``urlopen(url)`` with ``timeout`` for each socket operation and, overall, for name
    resolution, connecting (to each of the host's addresses in turn) and the response headers:
    those run in a helper thread that is abandoned when it takes longer."""
    request = urllib.request.Request(url, headers={"User-Agent": "srlane-launcher"})
    outcome: dict[str, Any] = {}
    lock = threading.Lock()

    def connect() -> None:
        try:
            response = urllib.request.urlopen(request, timeout=timeout)
        except Exception as error:
            with lock:
                outcome["error"] = error
            return
        with lock:
            if outcome.get("abandoned"):
                response.close()
            else:
                outcome["response"] = response

    thread = threading.Thread(target=connect, name="srlane-weights-connect", daemon=True)
    thread.start()
    thread.join(timeout)
    with lock:
        if "response" in outcome:
            return outcome["response"]
        if "error" in outcome:
            raise _DownloadFailed(_describe(outcome["error"])) from outcome["error"]
        outcome["abandoned"] = True
    raise _DownloadFailed(f"no answer within {timeout:g} s")


def _describe(error: BaseException) -> str:
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    if isinstance(error, urllib.error.URLError):
        error = error.reason if isinstance(error.reason, BaseException) else error
    if isinstance(error, TimeoutError):
        return "timed out"
    return f"{type(error).__name__}: {error}"


def _content_length(response: Any) -> int | None:
    value = response.headers.get("Content-Length")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _progress_bar(enabled: bool) -> Any:
    """A rich download bar on stderr (one final line when stderr is not a terminal)."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not enabled,
    )
