"""ImageNet initialisation (``model.pretrained_backbone=imagenet``, src/models/common/imagenet.py
and download.py):
download once with a hash check into torch.hub's cache, reuse without network, refuse wrong or
broken transfers, and a clear error in bounded time when the host is unreachable. Every server is
on 127.0.0.1: a generated torchvision-layout file stands in for torchvision's."""

from __future__ import annotations

import hashlib
import io
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from src.models.common import download
from src.models.common.download import (
    BASE_URL_ENV,
    TIMEOUT_ENV,
    PretrainedWeightsError,
)
from src.models.common.imagenet import (
    IMAGENET,
    IMAGENET_BASE_URL,
    IMAGENET_FILES,
    fetch_imagenet_weights,
    hash_prefix,
    load_pretrained_backbone,
)
from src.models.common.resnet import ResNet
from src.models.srlane import SRLane
from tests.data.lane_trees import write_culane_tree
from tests.launcher_helpers import compose_cfg, run_main
from tests.models.weights_server import WeightsServer, cache_listing, refused_url


@dataclass(frozen=True)
class Weights:
    """A torchvision-layout ResNet-18 file: its name carries its own sha256 prefix."""

    name: str
    data: bytes
    state: dict[str, torch.Tensor]


@pytest.fixture(scope="module")
def weights() -> Weights:
    torch.manual_seed(0)
    # torchvision's key names and its classifier; no num_batches_tracked counters.
    state = {
        key: value
        for key, value in ResNet("resnet18").state_dict().items()
        if not key.endswith("num_batches_tracked")
    }
    state["fc.weight"] = 0.01 * torch.randn(1000, 512)
    state["fc.bias"] = torch.zeros(1000)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue()
    return Weights(f"resnet18-{hashlib.sha256(data).hexdigest()[:8]}.pth", data, state)


def cached_download(file_name: str, progress: bool = False, timeout: float | None = None) -> Path:
    """An ImageNet-style file (the sha256 prefix in its name) through the cache."""
    url = IMAGENET_BASE_URL + file_name
    return download.cached_download(file_name, url, hash_prefix(file_name), progress=progress,
                                    timeout=timeout)  # fmt: skip


def test_download_checks_the_hash_and_caches(
    weights: Weights,
    serve: Callable[..., WeightsServer],
    hub: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = serve({weights.name: weights.data})
    monkeypatch.setenv(BASE_URL_ENV, server.url)
    path = cached_download(weights.name, progress=False, timeout=5)
    assert path == hub / weights.name == Path(torch.hub.get_dir()) / "checkpoints" / weights.name
    assert path.read_bytes() == weights.data
    assert cache_listing(hub) == [weights.name]  # no temporary file left
    assert server.requests == [f"/models/{weights.name}"]
    # Downloaded once: the second call reads the cache.
    assert cached_download(weights.name, progress=False, timeout=5) == path
    assert len(server.requests) == 1


def test_cached_file_is_used_without_network(
    weights: Weights,
    serve: Callable[..., WeightsServer],
    hub: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = serve({weights.name: weights.data})
    monkeypatch.setenv(BASE_URL_ENV, server.url)
    cached_download(weights.name, progress=False, timeout=5)
    server.stop()
    # A file torchvision (or a person) put there is used the same way.
    (hub / IMAGENET_FILES["resnet34"][2]).write_bytes(b"placed by hand")
    monkeypatch.setenv(BASE_URL_ENV, refused_url())
    with caplog.at_level(logging.INFO):
        assert cached_download(weights.name, progress=False, timeout=5) == hub / weights.name
        assert fetch_imagenet_weights("resnet34", progress=False) == hub / "resnet34-b627a593.pth"
    assert "downloading" not in caplog.text
    # The hand-placed file is not the published one: used, with a warning saying so.
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "resnet34-b627a593.pth" in warnings[0]
    assert "not the published file" in warnings[0]


def test_wrong_hash_is_refused_and_nothing_is_cached(
    weights: Weights,
    serve: Callable[..., WeightsServer],
    hub: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    wrong = "resnet18-00000000.pth"
    assert not hashlib.sha256(weights.data).hexdigest().startswith("00000000")
    monkeypatch.setenv(BASE_URL_ENV, serve({wrong: weights.data}).url)
    with pytest.raises(PretrainedWeightsError, match="does not start with 00000000") as info:
        cached_download(wrong, progress=False, timeout=5)
    assert "nothing was kept" in str(info.value)
    assert cache_listing(hub) == []


def test_interrupted_transfer_leaves_nothing_trusted(
    weights: Weights,
    serve: Callable[..., WeightsServer],
    hub: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    broken = serve({weights.name: weights.data}, truncate=True)
    monkeypatch.setenv(BASE_URL_ENV, broken.url)
    with pytest.raises(PretrainedWeightsError, match="closed after .* of .* bytes") as info:
        cached_download(weights.name, progress=False, timeout=5)
    assert f"{len(weights.data)} bytes" in str(info.value)
    assert cache_listing(hub) == []
    # A temporary file of a run killed mid-download is never read as the weights; the next
    # download (here from a working server) goes through.
    (hub / f"{weights.name}.0123abcd.partial").write_bytes(weights.data[:100])
    monkeypatch.setenv(BASE_URL_ENV, serve({weights.name: weights.data}).url)
    path = cached_download(weights.name, progress=False, timeout=5)
    assert path.read_bytes() == weights.data


def test_unreachable_host_fails_in_bounded_time(
    weights: Weights, hub: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A host that accepts connections and never answers (a blackhole, as far as the client can
    tell): the error comes after the timeout, naming the URL, the file and the folder."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel completes the handshakes; nobody ever reads or answers
        base = f"http://127.0.0.1:{silent.getsockname()[1]}/models"
        monkeypatch.setenv(BASE_URL_ENV, base)
        monkeypatch.setenv(TIMEOUT_ENV, "1")
        start = time.monotonic()
        with pytest.raises(PretrainedWeightsError) as info:
            cached_download(weights.name, progress=False)
        elapsed = time.monotonic() - start
    assert elapsed < 10, elapsed  # 1 s timeout; the requirement is < 30 s
    message = str(info.value)
    assert "no answer within 1 s" in message or "timed out" in message
    assert f"{base}/{weights.name}" in message and str(hub) in message
    for hint in (BASE_URL_ENV, TIMEOUT_ENV, "TORCH_HOME", "HTTPS_PROXY"):
        assert hint in message
    assert cache_listing(hub) == []


def test_refused_connection_fails_at_once(hub: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = refused_url()
    monkeypatch.setenv(BASE_URL_ENV, base)
    start = time.monotonic()
    with pytest.raises(PretrainedWeightsError, match="(?s)Connection refused.*URL") as info:
        fetch_imagenet_weights("resnet50", progress=False)
    assert time.monotonic() - start < 5
    assert f"{base}/resnet50-0676ba61.pth" in str(info.value)
    assert "model.pretrained_backbone=imagenet" in str(info.value)
    assert "model.pretrained_backbone=/path/to/resnet50-0676ba61.pth" in str(info.value)


def test_mirror_folder_by_file_url(
    weights: Weights, hub: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mirror = tmp_path / "shared weights"
    mirror.mkdir()
    (mirror / weights.name).write_bytes(weights.data)
    monkeypatch.setenv(BASE_URL_ENV, mirror.as_uri())
    assert cached_download(weights.name, progress=False).read_bytes() == weights.data


def test_imagenet_backbone_loads_from_the_cache(
    weights: Weights, hub: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """pretrained_backbone=imagenet: the published file name in torch.hub's cache, loaded into
    the backbone with one log line (the generated file's hash differs from the published one:
    a warning says so)."""
    hub.mkdir(parents=True)
    (hub / "resnet18-f37072fd.pth").write_bytes(weights.data)
    monkeypatch.setenv(BASE_URL_ENV, refused_url())
    with caplog.at_level(logging.INFO):
        model = SRLane(img_w=320, img_h=128, pretrained_backbone=IMAGENET)
    own = model.backbone.state_dict()
    for key, value in weights.state.items():
        if not key.startswith("fc."):
            torch.testing.assert_close(own[key], value, msg=key)
    assert (
        f"resnet18 backbone: loaded 100 tensors from {hub / 'resnet18-f37072fd.pth'} "
        "(torchvision's ImageNet weights) (2 file keys skipped: fc.weight, fc.bias)"
    ) in caplog.text
    assert "keep their init" not in caplog.text  # the missing step counters are not reported


def test_dla34_imagenet_weights_load_into_clrnet(
    hub: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """DLA-34's ImageNet file (the DLA authors' key names, with their classifier) under its
    published name in the cache: CLRNet-DLA34 starts from it; offline without it, the error names
    the file."""
    from src.models.clrnet import CLRNet
    from src.models.clrnet.dla import DLA34

    torch.manual_seed(0)
    state = {k: v + 0.5 for k, v in DLA34().state_dict().items() if v.is_floating_point()}
    state["fc.weight"], state["fc.bias"] = torch.zeros(1000, 512, 1, 1), torch.zeros(1000)
    monkeypatch.setenv(BASE_URL_ENV, refused_url())
    with pytest.raises(PretrainedWeightsError, match="dla34-ba72cf86.pth"):
        fetch_imagenet_weights("dla34", progress=False)
    hub.mkdir(parents=True, exist_ok=True)
    torch.save(state, hub / "dla34-ba72cf86.pth")
    with caplog.at_level(logging.INFO):
        model = CLRNet(backbone="dla34", img_w=320, img_h=128, pretrained_backbone=IMAGENET)
    own = model.backbone.state_dict()
    assert all(torch.equal(own[k], v) for k, v in state.items() if not k.startswith("fc."))
    assert "(the DLA authors' ImageNet weights) (2 file keys skipped: fc.weight, fc.bias)" in (
        caplog.text
    )
    assert IMAGENET_FILES["dla34"][1] == "http://dl.yf.io/dla/models/imagenet/"


def test_local_path_needs_no_network(
    weights: Weights, hub: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "my-resnet18.pth"
    path.write_bytes(weights.data)
    monkeypatch.setenv(BASE_URL_ENV, refused_url())
    report = load_pretrained_backbone(ResNet("resnet18"), path)
    assert len(report["loaded"]) == 100 and report["not_loaded"] == []
    assert cache_listing(hub) == []


def test_reference_recipes_start_from_imagenet() -> None:
    recipes = {
        name: compose_cfg(f"experiment={name}").model.pretrained_backbone
        for name in ("srlane_culane", "srlane_tusimple", "synthetic_cpu")
    }
    assert recipes == {
        "srlane_culane": IMAGENET,
        "srlane_tusimple": IMAGENET,
        "synthetic_cpu": None,
    }


@pytest.mark.slow
def test_culane_recipe_end_to_end(
    weights: Weights, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``experiment=srlane_culane debug=default``: with the file in the cache the run loads it and
    trains; with neither cache nor network it stops in seconds, before any training."""
    root = tmp_path / "culane"
    write_culane_tree(root)
    args = [
        "experiment=srlane_culane",
        f"dataset.root={root}",
        "debug=default",
        "trainer.precision=32-true",
        # A batch the 4-image tree holds; no worker processes on a 2-core machine.
        "dataset.batch_size=2",
        "dataset.eval_batch_size=2",
        "dataset.num_workers=0",
        "trainer.progress=false",
    ]
    monkeypatch.setenv(BASE_URL_ENV, refused_url())  # no network in either run
    cached = tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(weights.data)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    run_dir = tmp_path / "run"
    run_main([*args, f"hydra.run.dir={run_dir}"])
    log = (run_dir / "main.log").read_text()
    assert f"resnet18 backbone: loaded 100 tensors from {cached} (torchvision's ImageNet" in log
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()

    empty_home = tmp_path / "empty torch home"
    monkeypatch.setenv("TORCH_HOME", str(empty_home))
    offline_dir = tmp_path / "offline run"
    start = time.monotonic()
    result = run_main([*args, f"hydra.run.dir={offline_dir}"], timeout=120, check=False)
    elapsed = time.monotonic() - start
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert elapsed < 30, elapsed
    folder = empty_home / "hub" / "checkpoints"
    for part in ("resnet18-f37072fd.pth", f"folder:    {folder}", BASE_URL_ENV, "URL:"):
        assert part in output, (part, output[-3000:])
    assert not (offline_dir / "checkpoints").exists() and not (offline_dir / "metrics.csv").exists()
    assert cache_listing(folder) == []
