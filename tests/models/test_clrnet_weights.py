"""CLRNet checkpoint loading: every key of the reference's R18 and R34 state dicts is accounted
for, reference / project / bare files load, mismatches fail loudly before anything is loaded,
and evaluation uses the stored priors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from src.models.clrnet import CheckpointMismatchError, CLRNet, load_weights
from src.models.clrnet.weights import CONSTANT_KEYS, reference_key_to_model_key
from tests.models.clrnet_golden import (
    REFERENCE_KEYS,
    REFERENCE_KEYS_DLA34,
    REFERENCE_KEYS_R34,
    reference_state_dict,
)
from tests.models.srlane_golden import read_reference_keys


def reference_format(state: dict) -> dict:
    return {"net": {"module." + k: v for k, v in state.items()}, "optim": {}, "recorder": {}}


@pytest.fixture(scope="module")
def reference_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "culane_r18.pth"
    torch.save(reference_format(reference_state_dict()), path)
    return path


@pytest.mark.parametrize(
    ("backbone", "keys"),
    [
        ("resnet18", REFERENCE_KEYS),
        ("resnet34", REFERENCE_KEYS_R34),
        ("dla34", REFERENCE_KEYS_DLA34),
    ],
)
def test_every_reference_key_is_accounted_for(backbone: str, keys: Path) -> None:
    model = CLRNet(backbone=backbone)
    own = model.state_dict()
    mapped = {}
    for key, shape, _ in read_reference_keys(keys):
        target = reference_key_to_model_key(key)
        constant = [(m, f) for p, f in CONSTANT_KEYS if (m := re.fullmatch(p, key))]
        if constant:
            match, expected = constant[0]
            assert tuple(expected(model, match).shape) == shape, key
            continue
        assert target is not None, f"reference key {key} is neither mapped nor a constant"
        assert target in own, f"{key} -> {target} is not a key of the model"
        assert tuple(own[target].shape) == shape, key
        assert target not in mapped, f"{key} and {mapped.get(target)} both map to {target}"
        mapped[target] = key
    # ... and every tensor of the model comes from the reference file.
    assert set(mapped) == set(own)
    report = load_weights(model, {"net": reference_state_dict(keys=keys)}, name=keys.name)
    assert len(report.loaded) == len(own) and len(report.verified_constants) == 4


def test_reference_file_loads_and_reports(reference_file: Path) -> None:
    model = CLRNet()
    report = load_weights(model, reference_file)
    assert report.layout == "reference"
    assert len(report.loaded) == len(model.state_dict()) == 201
    assert report.ignored == {}
    assert sorted(report.verified_constants) == [
        "module.heads.criterion.weight",
        "module.heads.prior_feat_ys",
        "module.heads.prior_ys",
        "module.heads.sample_x_indexs",
    ]
    assert report.renamed["module.neck.fpn_convs.2.conv.bias"] == "neck.fpn_convs.2.bias"
    assert report.renamed["module.backbone.model.layer4.1.bn2.weight"] == (
        "backbone.layer4.1.bn2.weight"
    )
    reference = reference_state_dict()
    torch.testing.assert_close(
        model.head.roi_gather.catconv[2].conv.weight,
        reference["heads.roi_gather.catconv.2.conv.weight"].to(memory_format=torch.channels_last),
    )
    torch.testing.assert_close(model.head.priors, reference["heads.priors"])


def test_eval_uses_the_stored_priors_and_training_rebuilds_them(reference_file: Path) -> None:
    # In a trained checkpoint the buffers lag the embeddings by one step (the golden imitates
    # that); evaluation must use the buffers, as the reference does.
    model = CLRNet(img_w=320, img_h=128)
    load_weights(model, reference_file)
    img = torch.rand(1, 3, 128, 320)
    model.eval()
    with torch.no_grad():
        before = model(img)
        model.head.priors[:, 3] += 0.05  # move every prior's start_x
        moved = model(img)
    assert (moved[..., 3] - before[..., 3]).abs().min() > 0.04
    model.train()
    with torch.no_grad():
        model.head(model.neck(model.backbone(img)))
    expected, on_featmap = model.head.priors_from_embeddings()
    torch.testing.assert_close(model.head.priors, expected.detach())
    torch.testing.assert_close(model.head.priors_on_featmap, on_featmap.detach())


def test_eval_priors_from_embeddings_ignores_the_buffers(reference_file: Path) -> None:
    img = torch.rand(1, 3, 128, 320)
    clrernet_style = CLRNet(img_w=320, img_h=128, eval_priors_from_embeddings=True).eval()
    load_weights(clrernet_style, reference_file)
    with torch.no_grad():
        got = clrernet_style(img)
        priors, on_featmap = clrernet_style.head.priors_from_embeddings()
        clrernet_style.head.priors.copy_(priors)
        clrernet_style.head.priors_on_featmap.copy_(on_featmap)
        clrernet_style.head.eval_priors_from_embeddings = False
        torch.testing.assert_close(got, clrernet_style(img))


def test_mismatching_reference_file_fails_loudly(tmp_path: Path) -> None:
    state = reference_state_dict()
    del state["neck.lateral_convs.1.conv.bias"]
    state["heads.extra.weight"] = torch.zeros(3)
    state["heads.reg_layers.weight"] = torch.zeros(70, 64)
    state["heads.criterion.weight"] = torch.ones(5)  # bg_weight 1, not 0.4
    path = tmp_path / "bad.pth"
    torch.save(reference_format(state), path)
    model = CLRNet()
    before = model.head.cls_layers.weight.clone()
    with pytest.raises(CheckpointMismatchError) as info:
        load_weights(model, path)
    err = info.value
    assert str(path) in str(err)
    assert err.missing == ["neck.lateral_convs.1.bias"]
    assert err.unexpected == ["module.heads.extra.weight"]
    assert len(err.mis_shaped) == 1 and "(70, 64)" in err.mis_shaped[0]
    assert "(76, 64)" in err.mis_shaped[0]
    assert err.constants == ["module.heads.criterion.weight"]
    torch.testing.assert_close(model.head.cls_layers.weight, before)  # nothing was loaded


def test_tusimple_checkpoints_need_their_seg_classes(tmp_path: Path) -> None:
    # The reference's TuSimple configs use 7 segmentation classes (max_lanes 5).
    state = reference_state_dict()
    state["heads.seg_decoder.conv.weight"] = torch.zeros(7, 192, 1, 1)
    state["heads.seg_decoder.conv.bias"] = torch.zeros(7)
    state["heads.criterion.weight"] = torch.tensor([0.4] + [1.0] * 6)
    path = tmp_path / "tusimple_r18.pth"
    torch.save(reference_format(state), path)
    with pytest.raises(CheckpointMismatchError) as info:
        load_weights(CLRNet(max_lanes=5), path)
    assert any("seg_decoder.conv.weight" in line for line in info.value.mis_shaped)
    report = load_weights(CLRNet(max_lanes=5, num_seg_classes=7), path)
    assert len(report.verified_constants) == 4


def test_r18_file_into_an_r34_model_fails(reference_file: Path) -> None:
    with pytest.raises(CheckpointMismatchError) as info:
        load_weights(CLRNet(backbone="resnet34"), reference_file)
    assert any(k.startswith("backbone.layer3.5.") for k in info.value.missing)


def test_project_checkpoints_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(2)
    source = CLRNet(img_w=320, img_h=128).eval()
    source.head.priors.add_(0.01)  # a buffer that differs from the embeddings' priors
    img = torch.rand(1, 3, 128, 320)
    with torch.no_grad():
        expected = source(img)
    state = source.state_dict()
    variants = {
        "project": {"model": state, "optimizer": {}},
        "bare": state,
        "ddp": {"module." + k: v for k, v in state.items()},
        "compiled": {"_orig_mod." + k: v for k, v in state.items()},
    }
    for name, content in variants.items():
        path = tmp_path / f"{name}.ckpt"
        torch.save(content, path)
        target = CLRNet(img_w=320, img_h=128).eval()
        assert load_weights(target, path).layout == "project", name
        with torch.no_grad():
            torch.testing.assert_close(target(img), expected, msg=name)
