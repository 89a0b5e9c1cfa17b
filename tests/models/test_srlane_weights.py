"""Checkpoint loading: the reference key map, reference / project / bare files, loud mismatches,
and ImageNet backbone weights."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
import torch

from src.models.common.imagenet import load_pretrained_backbone
from src.models.common.resnet import ResNet
from src.models.srlane import CheckpointMismatchError, SRLane, load_weights
from src.models.srlane.weights import (
    CONSTANT_KEYS,
    IGNORED_KEYS,
    reference_key_to_model_key,
)
from tests.models.srlane_golden import read_reference_keys, reference_state_dict


@pytest.fixture(scope="module")
def model() -> SRLane:
    return SRLane()


@pytest.fixture(scope="module")
def reference_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A file in the reference's release format: {"net": {"module." + key: tensor}}."""
    path = tmp_path_factory.mktemp("ckpt") / "srlane_r18_reference.pth"
    torch.save({"net": {"module." + k: v for k, v in reference_state_dict().items()}}, path)
    return path


def test_every_reference_key_is_accounted_for(model: SRLane) -> None:
    own = model.state_dict()
    mapped = {}
    for key, shape, _ in read_reference_keys():
        target = reference_key_to_model_key(key)
        if target is not None:
            assert target in own, f"{key} -> {target} is not a key of the model"
            assert tuple(own[target].shape) == shape, key
            assert target not in mapped, f"{key} and {mapped.get(target)} both map to {target}"
            mapped[target] = key
            continue
        ignored = any(re.fullmatch(p, key) for p, _ in IGNORED_KEYS)
        constant = [(m, f) for p, f in CONSTANT_KEYS if (m := re.fullmatch(p, key))]
        assert ignored or constant, f"reference key {key} is not mapped, ignored or a constant"
        if constant:
            match, expected = constant[0]
            assert tuple(expected(model, match).shape) == shape, key
    # ... and every tensor of the model comes from the reference file.
    assert set(mapped) == set(own)


def test_reference_file_loads_and_reports(reference_file: Path) -> None:
    fresh = SRLane()
    report = load_weights(fresh, reference_file)
    assert report.layout == "reference"
    assert len(report.loaded) == len(fresh.state_dict())
    assert report.ignored == {}
    assert report.renamed["module.roi_head.stage_heads.0.shuffle_fc.weight"] == (
        "refine_head.stages.0.shuffle_fc.weight"
    )
    assert len(report.verified_constants) == 5
    reference = reference_state_dict()
    torch.testing.assert_close(
        fresh.refine_head.stages[0].cls_head[2].weight,
        reference["roi_head.stage_heads.0.cls_layers.weight"],
    )
    torch.testing.assert_close(
        fresh.sketch_head.angle_convs[0].weight, reference["rpn_head.angle_conv.0.weight"]
    )
    assert fresh.backbone.layer4[1].bn2.num_batches_tracked.item() == 1000


def _save(tmp_path: Path, state: dict) -> Path:
    path = tmp_path / "bad.pth"
    torch.save({"net": state}, path)
    return path


def test_mismatching_reference_file_fails_loudly(tmp_path: Path) -> None:
    state = {"module." + k: v for k, v in reference_state_dict().items()}
    del state["module.neck.lateral_convs.1.bias"]
    state["module.roi_head.stage_heads.0.extra.weight"] = torch.zeros(3)
    state["module.roi_head.stage_heads.0.reg_layers.weight"] = torch.zeros(70, 192)
    state["module.rpn_head.prior_ys"] = torch.linspace(0, 5, 72)
    path = _save(tmp_path, state)
    fresh = SRLane()
    before = fresh.neck.convs[0].weight.clone()
    with pytest.raises(CheckpointMismatchError) as info:
        load_weights(fresh, path)
    err = info.value
    assert str(path) in str(err)
    assert err.missing == ["neck.convs.1.bias"]
    assert err.unexpected == ["module.roi_head.stage_heads.0.extra.weight"]
    assert len(err.mis_shaped) == 1 and "reg_layers.weight" in err.mis_shaped[0]
    assert "(70, 192)" in err.mis_shaped[0] and "(74, 192)" in err.mis_shaped[0]
    assert err.constants == ["module.rpn_head.prior_ys"]
    for text in ("missing", "unexpected", "mis-shaped", "neck.convs.1.bias"):
        assert text in str(err)
    # nothing was loaded
    torch.testing.assert_close(fresh.neck.convs[0].weight, before)


def test_r18_file_into_an_r34_model_fails(reference_file: Path) -> None:
    with pytest.raises(CheckpointMismatchError) as info:
        load_weights(SRLane(backbone="resnet34", img_w=320, img_h=128), reference_file)
    assert any(k.startswith("backbone.layer3.5.") for k in info.value.missing)


def test_project_checkpoint_and_bare_state_dicts_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(1)
    source = SRLane(img_w=320, img_h=128).eval()
    img = torch.rand(1, 3, 128, 320)
    with torch.no_grad():
        expected = source(img)
    state = source.state_dict()
    variants = {
        "project": {"model": state, "optimizer": {}, "train_state": {"step": 3}},
        "bare": state,
        "ddp": {"module." + k: v for k, v in state.items()},
        "compiled": {"_orig_mod." + k: v for k, v in state.items()},
    }
    for name, content in variants.items():
        path = tmp_path / f"{name}.ckpt"
        torch.save(content, path)
        target = SRLane(img_w=320, img_h=128).eval()
        report = load_weights(target, path)
        assert report.layout == "project", name
        with torch.no_grad():
            torch.testing.assert_close(target(img), expected, msg=name)
    # an in-memory state dict works too
    target = SRLane(img_w=320, img_h=128).eval()
    assert load_weights(target, state).source == "<state dict>"


def test_loading_is_weights_only(tmp_path: Path) -> None:
    path = tmp_path / "pickled.pth"
    torch.save({"net": {"x": Path("/etc")}}, path)  # an arbitrary object, not a tensor
    with pytest.raises(Exception, match="[Ww]eights only"):
        load_weights(SRLane(img_w=320, img_h=128), path)


def test_pretrained_backbone_missing_file_says_what_to_download(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as info:
        SRLane(pretrained_backbone=str(tmp_path / "resnet18.pth"))
    message = str(info.value)
    assert "download" in message and "pretrained_backbone" in message
    assert "resnet18" in message and "https://download.pytorch.org/models/" in message


def test_pretrained_backbone_loads_shape_filtered(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    torch.manual_seed(3)
    donor = ResNet("resnet18")
    state = dict(donor.state_dict())
    state["fc.weight"] = torch.zeros(1000, 512)  # torchvision's classifier: skipped
    state["fc.bias"] = torch.zeros(1000)
    path = tmp_path / "resnet18-imagenet.pth"
    torch.save(state, path)
    model = SRLane(pretrained_backbone=str(path))
    torch.testing.assert_close(model.backbone.layer3[0].conv1.weight, donor.layer3[0].conv1.weight)
    report = load_pretrained_backbone(ResNet("resnet18"), path)
    assert set(report["skipped"]) == {"fc.weight", "fc.bias"}
    assert report["not_loaded"] == []
    # The wrong depth: what fits by name and shape loads; the rest is reported and logged.
    with caplog.at_level(logging.WARNING):
        report = load_pretrained_backbone(ResNet("resnet50"), path)
    assert "conv1.weight" in report["loaded"] and "layer1.0.conv1.weight" in report["skipped"]
    assert "layer4.2.conv3.weight" in report["not_loaded"]
    assert "keep their" in caplog.text
    torch.save({"something": torch.zeros(2)}, path)
    with pytest.raises(ValueError, match="no tensor fits"):
        load_pretrained_backbone(ResNet("resnet18"), path)
