"""ImageNet weights for the backbone: torchvision's published ResNet files, fetched once into
torch.hub's cache.

``model.pretrained_backbone=imagenet`` resolves, through ``resolve_backbone_weights``, to
``torch.hub.get_dir()/checkpoints/<file>`` (``$TORCH_HOME/hub/checkpoints``, the folder torchvision
uses, so a file it already fetched is reused). A file already there is used without any network
access; otherwise it is downloaded from ``IMAGENET_BASE_URL`` (or ``$SRLANE_WEIGHTS_URL``, a mirror)
and kept only if its sha256 starts with the prefix in its name (torchvision's naming,
``resnet18-f37072fd.pth``). Anything else given to ``pretrained_backbone`` is a local path.

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
import re
import textwrap
import threading
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import torch.hub

log = logging.getLogger(__name__)

# The value of model.pretrained_backbone that asks for torchvision's ImageNet weights.
IMAGENET = "imagenet"
IMAGENET_BASE_URL = "https://download.pytorch.org/models/"
# torchvision's ImageNet weights (IMAGENET1K_V1, what ``pretrained=True`` fetches today; the
# reference's code names older copies of them, resnet18-5c106cde.pth ..., in the legacy
# serialisation format). The name carries the first 8 hex digits of the file's sha256.
IMAGENET_FILES: dict[str, str] = {
    "resnet18": "resnet18-f37072fd.pth",
    "resnet34": "resnet34-b627a593.pth",
    "resnet50": "resnet50-0676ba61.pth",
}
# A mirror or a shared folder holding the same file names (http://, https:// or file://).
BASE_URL_ENV = "SRLANE_WEIGHTS_URL"
# Seconds allowed to connect and get the response headers, and for each read after that.
TIMEOUT_ENV = "SRLANE_WEIGHTS_TIMEOUT"
DEFAULT_TIMEOUT_S = 20.0

_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})\.")
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


def hash_prefix(file_name: str) -> str:
    """The sha256 prefix in a torchvision-style file name (``resnet18-f37072fd.pth``)."""
    match = _HASH_IN_NAME.search(file_name)
    if match is None:
        raise ValueError(f"{file_name!r} carries no sha256 prefix (<name>-<hex digits>.<ext>)")
    return match.group(1)


def base_url() -> str:
    """The folder URL the weights are fetched from: ``$SRLANE_WEIGHTS_URL`` or torchvision's."""
    return os.environ.get(BASE_URL_ENV) or IMAGENET_BASE_URL


def file_url(file_name: str) -> str:
    return base_url().rstrip("/") + "/" + file_name


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


def resolve_backbone_weights(source: str | Path, backbone: str, progress: bool = True) -> Path:
    """``imagenet`` -> the cached (downloaded if needed) torchvision file for ``backbone``;
    anything else -> that local path, unchecked (the loader reports a missing file)."""
    if str(source) == IMAGENET:
        return fetch_imagenet_weights(backbone, progress=progress)
    return Path(source).expanduser()


def fetch_imagenet_weights(
    backbone: str, progress: bool = True, timeout: float | None = None
) -> Path:
    """The local path of torchvision's ImageNet weights for ``backbone``, downloaded on first
    use. Raises PretrainedWeightsError, saying where to put the file, when that fails."""
    if backbone not in IMAGENET_FILES:
        raise PretrainedWeightsError(
            f"no ImageNet weights known for {backbone!r} (known: {sorted(IMAGENET_FILES)})"
        )
    return cached_download(
        IMAGENET_FILES[backbone],
        what=f"the ImageNet weights for {backbone} (model.pretrained_backbone={IMAGENET})",
        progress=progress,
        timeout=timeout,
    )


def cached_download(
    file_name: str,
    what: str = "the weights",
    progress: bool = True,
    timeout: float | None = None,
) -> Path:
    """``weights_cache_dir()/file_name``, downloaded from ``file_url(file_name)`` unless present.

    A cached file is used as it is, without network access; its sha256 is checked against the
    name (a fraction of a second) and a mismatch is logged as a warning, not refused: files get
    there only after this check (or torchvision's) passed, or by hand, on purpose. A download is
    kept only if complete and matching.
    """
    folder = weights_cache_dir()
    target = folder / file_name
    expected = hash_prefix(file_name)
    if target.is_file():
        digest = sha256_of(target)
        if not digest.startswith(expected):
            log.warning(
                "%s: its sha256 %s does not start with %s, the prefix in its name, so it is not "
                "the published file; using it anyway (delete it to download the published one)",
                target,
                digest,
                expected,
            )
        return target
    url = file_url(file_name)
    timeout = download_timeout() if timeout is None else timeout
    log.info("downloading %s from %s to %s", what, url, target)
    try:
        size = download_verified(url, target, expected, timeout=timeout, progress=progress)
    except _DownloadFailed as error:
        help_text = (
            "Without network access: fetch that URL elsewhere and copy the file, under this exact "
            "name, into that folder (torch.hub's cache: $TORCH_HOME/hub/checkpoints, TORCH_HOME "
            "defaults to ~/.cache/torch), or set "
            f"model.pretrained_backbone=/path/to/{file_name}, or null to train from scratch. A "
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
    log.info("saved %s (%.1f MB, sha256 %s...)", target, size / 1e6, expected)
    return target


def download_verified(
    url: str, target: Path, expected_hash: str, timeout: float, progress: bool = True
) -> int:
    """Download ``url`` to ``target`` through a temporary file beside it, renamed onto
    ``target`` only when the transfer is complete and its sha256 starts with ``expected_hash``
    (the temporary file is removed otherwise). Returns the size; raises _DownloadFailed."""
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
            if not hexdigest.startswith(expected_hash):
                raise _DownloadFailed(
                    f"the downloaded file's sha256 {hexdigest} does not start with "
                    f"{expected_hash}, the prefix in its name (a proxy or mirror serving "
                    "something else?); nothing was kept"
                )
            out.flush()
            os.fsync(out.fileno())  # the data is on disk before the name points at it
        os.replace(partial, target)
    except OSError as error:  # writing the temporary file or renaming it
        raise _DownloadFailed(f"cannot write into {target.parent} ({error})") from error
    finally:
        partial.unlink(missing_ok=True)
    return size


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
