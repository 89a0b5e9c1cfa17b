"""The released CLRNet checkpoints (``load_from=clrnet:<name>``, src/models/clrnet/released.py):
fetched once into the weights cache with its first hash recorded (the authors publish none),
a recorded or pinned hash enforced, the zip's .pth extracted atomically and loaded, clear errors
offline and for a config the checkpoint does not fit. Every server is on 127.0.0.1, serving a
generated zip of a reference-layout file."""

from __future__ import annotations

import hashlib
import io
import logging
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from src.models.clrnet import CLRNet, load_weights
from src.models.clrnet.released import RELEASES, fetch_release
from src.models.common.download import BASE_URL_ENV, PretrainedWeightsError
from src.models.registry import resolve_load_from
from tests.data.lane_trees import write_culane_tree
from tests.launcher_helpers import compose_cfg, run_main
from tests.models.clrnet_golden import reference_state_dict
from tests.models.weights_server import WeightsServer, cache_listing, refused_url

ZIP = "clrnet_culane_r18.pth.zip"  # the cache's (and a mirror's) name of culane_r18.pth.zip


def zipped(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
        for name, data in members.items():
            bundle.writestr(name, data)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def release_zip() -> bytes:
    """What the release asset holds: a zip of culane_r18.pth in the reference's layout."""
    state = {"module." + k: v for k, v in reference_state_dict().items()}
    buffer = io.BytesIO()
    torch.save({"net": state, "optim": {}, "recorder": {"step": 1}}, buffer)
    return zipped({"culane_r18.pth": buffer.getvalue()})


def r18_config() -> object:
    return compose_cfg("experiment=clrnet_culane").model


def test_first_download_records_the_hash_and_loads(
    release_zip: bytes,
    serve: Callable[..., WeightsServer],
    hub: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = serve({ZIP: release_zip})
    monkeypatch.setenv(BASE_URL_ENV, server.url)
    with caplog.at_level(logging.INFO):
        path = fetch_release("culane_r18", r18_config(), progress=False)
    assert path == hub / "clrnet_culane_r18.pth"
    assert cache_listing(hub) == [path.name, ZIP, f"{ZIP}.sha256"]  # no temporary file left
    digest = hashlib.sha256(release_zip).hexdigest()
    assert (hub / f"{ZIP}.sha256").read_text() == f"{digest}  {ZIP}\n"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "no published sha256" in warnings[0] and digest in warnings[0]
    report = load_weights(CLRNet(), path)
    assert report.layout == "reference" and len(report.loaded) == 201
    # Later runs use the extracted file without any network access.
    server.stop()
    assert fetch_release("culane_r18", r18_config(), progress=False) == path
    assert server.requests == [f"/models/{ZIP}"]


def test_a_recorded_or_pinned_hash_is_enforced(
    release_zip: bytes,
    serve: Callable[..., WeightsServer],
    hub: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv(BASE_URL_ENV, serve({ZIP: release_zip}).url)
    hub.mkdir(parents=True)
    pin = hub / f"{ZIP}.sha256"
    pin.write_text("0" * 64 + "\n")  # recorded from another file (a changed release asset)
    with pytest.raises(PretrainedWeightsError, match="does not start with 0000") as info:
        fetch_release("culane_r18", r18_config(), progress=False)
    assert "nothing was kept" in str(info.value)
    assert cache_listing(hub) == [pin.name]
    # The right hash, pinned by hand before the first download: verified, no warning.
    pin.write_text(hashlib.sha256(release_zip).hexdigest() + "\n")
    with caplog.at_level(logging.INFO):
        path = fetch_release("culane_r18", r18_config(), progress=False)
    assert path.is_file()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_offline_error_names_the_file_and_where_to_put_it(
    hub: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = refused_url()
    monkeypatch.setenv(BASE_URL_ENV, base)
    start = time.monotonic()
    with pytest.raises(PretrainedWeightsError) as info:
        fetch_release("culane_r18", r18_config(), progress=False)
    assert time.monotonic() - start < 5
    message = str(info.value)
    for part in (f"{base}/{ZIP}", f"folder:    {hub}", "load_from=/path/to/culane_r18.pth"):
        assert part in message, (part, message)
    assert cache_listing(hub) == []


def test_the_published_url_is_the_reference_release(
    hub: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a mirror the asset's own URL is fetched; here nothing answers there in time."""
    monkeypatch.delenv(BASE_URL_ENV, raising=False)
    monkeypatch.setenv("SRLANE_WEIGHTS_TIMEOUT", "0.5")
    monkeypatch.setenv("HTTPS_PROXY", refused_url())  # never leave this machine
    with pytest.raises(PretrainedWeightsError) as info:
        fetch_release("tusimple_r18", compose_cfg("experiment=clrnet_tusimple").model)
    url = "https://github.com/Turoad/CLRNet/releases/download/models/tusimple_r18.pth.zip"
    assert f"URL:       {url}" in str(info.value)


@pytest.mark.parametrize(
    ("overrides", "release", "message"),
    [
        (["model=clrnet_r34"], "culane_r18", "use model.backbone=resnet18"),
        (
            [],
            "culane_dla34",
            "use model.backbone=dla34 (experiment=clrnet_culane model=clrnet_dla34",
        ),
        (["dataset=tusimple"], "tusimple_r18", "use model.num_seg_classes=7"),
        ([], "culane_r101", "no such CLRNet release; known: clrnet:culane_r18"),
    ],
)
def test_a_config_the_checkpoint_does_not_fit_is_refused_first(
    hub: Path, overrides: list[str], release: str, message: str
) -> None:
    cfg = compose_cfg("experiment=clrnet_culane", *overrides).model
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        fetch_release(release, cfg)
    assert cache_listing(hub) == []


def test_every_release_fits_its_recipe() -> None:
    for name, release in RELEASES.items():
        experiment, *model = release.recipe.split()
        cfg = compose_cfg(f"experiment={experiment}", *model).model
        assert cfg.backbone == release.backbone, name
        assert (cfg.num_seg_classes or cfg.max_lanes + 1) == release.num_seg_classes, name


def test_load_from_names_resolve_through_the_registry(tmp_path: Path) -> None:
    model_cfg = r18_config()
    local = tmp_path / "clrnet:culane_r18"  # a file of that name wins
    local.write_bytes(b"")
    assert resolve_load_from(str(local), model_cfg) == str(local)
    assert resolve_load_from("weights/my.pth", model_cfg) == "weights/my.pth"
    with pytest.raises(ValueError, match="'srlane' is not a model with released checkpoints"):
        resolve_load_from("srlane:culane_r18", model_cfg)
    with pytest.raises(ValueError, match="is a clrnet checkpoint, but the config's model is"):
        resolve_load_from("clrnet:culane_r18", compose_cfg().model)


def test_a_broken_zip_is_refused(
    serve: Callable[..., WeightsServer], hub: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    two = zipped({"a.pth": b"1", "b.pth": b"2"})
    monkeypatch.setenv(BASE_URL_ENV, serve({ZIP: two}).url)
    with pytest.raises(PretrainedWeightsError, match=r"expected one \.pth file inside"):
        fetch_release("culane_r18", r18_config(), progress=False)
    (hub / ZIP).write_bytes(b"not a zip")
    with pytest.raises(PretrainedWeightsError, match="cannot be read as a zip"):
        fetch_release("culane_r18", r18_config(), progress=False)
    assert not (hub / "clrnet_culane_r18.pth").exists()


@pytest.mark.slow
def test_a_released_checkpoint_scores_with_mode_test(
    release_zip: bytes,
    serve: Callable[..., WeightsServer],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``mode=test experiment=clrnet_culane load_from=clrnet:culane_r18``: fetched from the
    (local) release server, loaded key for key, scored with the CULane metric."""
    root = tmp_path / "culane"
    write_culane_tree(root, counts={"train": 2, "val": 2, "test": 3})
    monkeypatch.setenv(BASE_URL_ENV, serve({ZIP: release_zip}).url)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    run_dir = tmp_path / "run"
    run_main(
        [
            "mode=test",
            "experiment=clrnet_culane",
            "load_from=clrnet:culane_r18",
            f"dataset.root={root}",
            "trainer.accelerator=cpu",
            "dataset.eval_batch_size=3",
            "dataset.num_workers=0",
            "trainer.progress=false",
            f"hydra.run.dir={run_dir}",
        ]
    )
    log = (run_dir / "main.log").read_text()
    cached = tmp_path / "torch" / "hub" / "checkpoints" / "clrnet_culane_r18.pth"
    assert f"loaded 201 tensors from {cached} (reference layout)" in log
    assert "test: " in log and "F1=" in log
    assert len(list((run_dir / "predictions").rglob("*.lines.txt"))) == 3
