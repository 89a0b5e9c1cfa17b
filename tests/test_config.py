"""Config composition with Hydra's compose API: every group option composes and validates, and
every kind of config mistake is refused before anything is built."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hydra.core.config_store import ConfigStore
from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf import OmegaConf

from src.config import GROUP_SCHEMAS, Config, ConfigError
from src.engine.preflight import check_config
from tests.launcher_helpers import compose_cfg

CONF = Path(__file__).resolve().parents[1] / "conf"
GROUPS = [
    "model",
    "dataset",
    "optimizer",
    "scheduler",
    "trainer",
    "logger",
    "experiment",
    "hparams_search",
    "callbacks",
    "debug",
]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


# Options whose values only the user knows: what they set with them.
CUSTOM_DATA = ["dataset.ori_w=1920", "dataset.ori_h=1080", "dataset.cut_height=400"]
USER_SETS = {"dataset=custom": [*CUSTOM_DATA, "dataset.root=/data/mine", "dataset.max_lanes=6"]}


def test_custom_data_says_what_the_user_must_set() -> None:
    with pytest.raises(ConfigError, match="not set: dataset.root, dataset.ori_w"):
        check_config(compose_cfg("dataset=custom"))


# An experiment that sets nothing: what a recipe starts from (conf/config.yaml's defaults list
# interpolates the experiment's name, so it cannot simply be left out with ~experiment).
BLANK_EXPERIMENT = "_blank_for_tests"
ConfigStore.instance().store(group="experiment", name=BLANK_EXPERIMENT, node={}, package="_global_")


def experiment_and_model(option: str) -> tuple[str, str]:
    """The (experiment, model) an experiment_model option is named after, e.g.
    synthetic_cpu_clrnet_r34 -> (synthetic_cpu, clrnet_r34)."""
    for experiment in options("experiment"):
        model = option.removeprefix(f"{experiment}_")
        if model != option and model in options("model"):
            return experiment, model
    raise AssertionError(f"experiment_model/{option}.yaml names no <experiment>_<model> pair")


@pytest.mark.parametrize(
    "override", [f"{g}={o}" for g in GROUPS for o in options(g)], ids=lambda s: s
)
def test_every_group_option_composes_and_validates(override: str) -> None:
    cfg = compose_cfg(override, *USER_SETS.get(override, ()))
    check_config(cfg)
    OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves
    group, option = override.split("=")
    if group in ("experiment", "hparams_search", "debug"):  # global: no node of their own
        return
    assert OmegaConf.select(cfg, group) is not None


def test_default_is_the_synthetic_cpu_recipe() -> None:
    cfg = compose_cfg()
    assert cfg.dataset.name == "synthetic"
    assert cfg.model.backbone == "resnet18"
    assert (cfg.model.img_w, cfg.model.img_h) == (cfg.dataset.img_w, cfg.dataset.img_h)
    assert cfg.scheduler.total_iters == cfg.trainer.total_iter
    assert cfg.mode == "train" and cfg.resume == "auto"
    # the CPU recipe trains from scratch with the two switches that make that work
    assert cfg.model.assign_on_priors and cfg.model.iou_loss_target_width


@pytest.mark.parametrize("option", options("experiment_model"))
def test_every_model_specialisation_composes(option: str) -> None:
    """conf/experiment_model/<experiment>_<model>.yaml applies with that pair and validates."""
    experiment, model = experiment_and_model(option)
    cfg = compose_cfg(f"experiment={experiment}", f"model={model}", hydra_config=True)
    assert cfg.hydra.runtime.choices.experiment_model == option
    del cfg.hydra
    check_config(cfg)
    OmegaConf.to_container(cfg, resolve=True)


def test_the_synthetic_recipe_has_settings_for_every_model() -> None:
    """The specialisation is optional in conf/config.yaml (real recipes need none), so a model
    without its synthetic settings would silently train with the reference's 800-px ones."""
    missing = [
        m for m in options("model") if f"synthetic_cpu_{m}" not in options("experiment_model")
    ]
    assert not missing, f"add conf/experiment_model/synthetic_cpu_<model>.yaml for {missing}"


def test_culane_experiment_is_the_reference_recipe() -> None:
    cfg = compose_cfg("experiment=srlane_culane")
    assert cfg.dataset.name == "culane" and cfg.dataset.cut_height == 270
    assert (cfg.model.img_w, cfg.model.img_h, cfg.model.max_lanes) == (800, 320, 4)
    assert cfg.optimizer._target_ == "torch.optim.AdamW"
    assert (cfg.optimizer.lr, cfg.optimizer.weight_decay) == (6e-4, 0.01)
    assert (cfg.scheduler.warmup_iters, cfg.scheduler.total_iters) == (800, 44440)
    assert cfg.dataset.batch_size == 40 and cfg.trainer.precision == "16-mixed"
    assert cfg.trainer.eval_every_epochs == 3 and cfg.seed == 0
    assert cfg.dataset.val_split == "val"  # the reference selected models on test
    weights = [cfg.model[f"{k}_loss_weight"] for k in ("angle", "cls", "l1", "iou")]
    assert weights == [5.0, 2.0, 0.2, 2.0]
    # the reference's training: none of the non-reference switches
    assert cfg.model.angle_loss_reference_quirk
    assert not cfg.model.assign_on_priors and not cfg.model.iou_loss_target_width


def test_the_synthetic_recipe_trains_clrnet_with_the_references_training() -> None:
    cfg = compose_cfg("model=clrnet")
    assert cfg.model._target_ == "src.models.clrnet.CLRNet" and cfg.model.nms_thres == 20
    assert (cfg.model.img_w, cfg.model.img_h, cfg.model.max_lanes) == (320, 128, 5)
    switches = (
        "lane_iou_cost",
        "lane_iou_loss",
        "unique_assignment",
        "eval_priors_from_embeddings",
    )
    assert not any(cfg.model[name] for name in switches)
    assert cfg.trainer.total_iter == 1000 and cfg.optimizer.lr == 1e-3


@pytest.mark.parametrize(
    ("experiment", "expected"),
    [
        # (batch, lr, iterations, cut, max_lanes, seg classes, weights cls/xyt/iou/seg, conf, nms)
        ("clrnet_culane", (24, 6e-4, 55545, 270, 4, None, [2.0, 0.2, 2.0, 1.0], 0.4, 50.0)),
        ("clrnet_tusimple", (40, 1e-3, 6370, 160, 5, 7, [6.0, 0.5, 2.0, 1.0], 0.4, 50.0)),
        ("clrnet_llamas", (24, 6e-4, 48560, 300, 4, None, [2.0, 0.5, 8.0, 1.0], 0.45, 60.0)),
    ],
)
def test_clrnet_experiments_are_the_reference_configs(experiment: str, expected: tuple) -> None:
    cfg = compose_cfg(f"experiment={experiment}")
    model, data = cfg.model, cfg.dataset
    weights = [model[f"{k}_loss_weight"] for k in ("cls", "xyt", "iou", "seg")]
    got = (data.batch_size, cfg.optimizer.lr, cfg.trainer.total_iter, data.cut_height,
           model.max_lanes, model.num_seg_classes, weights, model.conf_threshold,
           model.nms_thres)  # fmt: skip
    assert got == expected
    assert cfg.scheduler.warmup_iters == 0 and cfg.trainer.precision == "32-true"
    assert model.backbone == "resnet18" and model.pretrained_backbone == "imagenet"
    assert (data.augment.third_op, data.augment.shear_x) == ("none", 0.0)


def test_trainer_options_keep_the_recipe_schedule() -> None:
    cfg = compose_cfg("experiment=srlane_culane", "trainer=ddp")
    assert cfg.trainer.strategy == "ddp" and cfg.trainer.devices == 2
    assert cfg.trainer.total_iter == 44440 and cfg.trainer.precision == "16-mixed"
    debug = compose_cfg("experiment=srlane_culane", "debug=default")
    assert debug.trainer.total_iter == 4 and debug.trainer.accelerator == "cpu"


@pytest.mark.parametrize(
    ("overrides", "error", "message"),
    [
        (["trainer.total_iter=abc"], ConfigCompositionException, "trainer.total_iter"),
        (["dataset.batch_size=1.5"], ConfigCompositionException, "dataset.batch_size"),
        (["trainer.nonexistent=1"], ConfigCompositionException, "trainer.nonexistent"),
        (["optimizer.momentum=0.9"], ConfigCompositionException, "optimizer.momentum"),
        (["optimizer=adam"], MissingConfigException, "optimizer/adam"),
        (["dataset=kitti"], MissingConfigException, "dataset/kitti"),
        (["experiment=nope"], MissingConfigException, "experiment/nope"),
    ],
)
def test_composition_errors(overrides: list[str], error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        compose_cfg(*overrides)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["+trainer.max_epochs=3"], "unknown key trainer.max_epochs"),
        (["+optimizer.momentum=0.9"], "unknown key optimizer.momentum"),
        (["+typo=1"], "unknown key typo"),
        (["+dataset.augment.blur=1"], "unknown key dataset.augment.blur"),
        (["trainer.precision=16"], "trainer.precision='16' is not one of"),
        (["trainer.accelerator=tpu"], "trainer.accelerator='tpu'"),
        (["model.backbone=resnet101"], "model.backbone='resnet101'"),
        (["mode=fit"], "mode='fit'"),
        (["logger=wandb", "logger.wandb_mode=maybe"], "logger.wandb_mode='maybe'"),
        (["dataset.img_w=810"], "model.img_w=810 (dataset.img_w) must be a multiple of 32"),
        (["trainer.devices=0"], "trainer.devices=0 must be >= 1"),
        (["trainer.checkpoint_every_iters=0"], "trainer.checkpoint_every_iters=0 must be >= 1"),
        (["trainer.log_every_iters=0"], "trainer.log_every_iters=0 must be >= 1"),
        (["trainer.limit_val_batches=-1"], "trainer.limit_val_batches=-1 must be >= 0"),
        (["trainer.eval_every_iters=-1"], "trainer.eval_every_iters=-1 must be >= 0"),
        (["mode=predict"], "mode=predict needs predict.input"),
        (["evaluation.int8=true"], "evaluation.int8=true applies to mode=validate/test/predict"),
        (
            ["mode=validate", "evaluation.int8=true", "trainer.precision=bf16-mixed"],
            "evaluation.int8=true with trainer.precision=bf16-mixed",
        ),
        (
            ["mode=predict", "predict.input=x", "predict.backend=onnx", "evaluation.int8=true"],
            "evaluation.int8=true runs the torch model: use predict.backend=torch",
        ),
        (
            ["mode=validate", "evaluation.int8=true", "evaluation.int8_calibration_images=0"],
            "evaluation.int8_calibration_images=0 must be >= 1",
        ),
    ],
)
def test_value_errors_name_the_key(overrides: list[str], message: str) -> None:
    cfg = compose_cfg(*overrides)
    with pytest.raises(ConfigError, match=re.escape(message)):
        check_config(cfg)


# ------------------------------------------------------------------ one source per value
def flat(node: object, prefix: str = "") -> dict[str, object]:
    """Leaf values of a YAML mapping by dotted key (a group's defaults list left out)."""
    if not isinstance(node, dict):
        return {prefix: node}
    out: dict[str, object] = {}
    for key, value in node.items():
        if key == "defaults" and not prefix:
            continue
        out.update(flat(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def own_defaults_list(path: Path) -> list[str]:
    """The defaults list of a YAML: plain entries and ``override /group: option`` as strings."""
    out = []
    for entry in OmegaConf.to_container(OmegaConf.load(path)).get("defaults", []):
        if isinstance(entry, dict):
            ((key, value),) = entry.items()
            out.append(f"{key.removeprefix('override /')}={value}")
        elif entry != "_self_":
            out.append(entry)
    return out


def base_of_group_option(group: str, path: Path) -> dict[str, object]:
    """What the group's node holds without this option's own values: its schema's defaults, or
    the option it extends."""
    entries = own_defaults_list(path)
    if entries and entries[0].endswith("_schema"):
        schema = GROUP_SCHEMAS[group][entries[0].removesuffix("_schema")]
        return flat(OmegaConf.to_container(OmegaConf.structured(schema)))
    if entries:  # another option of the same group, e.g. srlane_r34 -> srlane
        return flat(OmegaConf.to_container(compose_cfg(f"{group}={entries[0]}")[group]))
    return flat(OmegaConf.to_container(OmegaConf.structured(Config))[group])


def base_of_experiment(path: Path) -> dict[str, object]:
    """The config the experiment starts from: its groups and the experiment it extends."""
    entries = own_defaults_list(path)
    groups = [e for e in entries if "=" in e]
    parents = [f"experiment={e}" for e in entries if "=" not in e]
    return flat(
        OmegaConf.to_container(compose_cfg(*parents or [f"experiment={BLANK_EXPERIMENT}"], *groups))
    )


def base_of_experiment_model(path: Path) -> dict[str, object]:
    """What the experiment gives the model without this specialisation (or with the one it
    extends)."""
    experiment, model = experiment_and_model(path.stem)
    parents = own_defaults_list(path)
    without = f"experiment_model={parents[0]}" if parents else "~experiment_model"
    return flat(
        OmegaConf.to_container(compose_cfg(f"experiment={experiment}", f"model={model}", without))
    )


SCHEMA_GROUPS = ["model", "dataset", "optimizer", "scheduler", "trainer", "logger"]


@pytest.mark.parametrize(
    "path",
    [CONF / g / f"{o}.yaml" for g in SCHEMA_GROUPS for o in options(g)]
    + [CONF / "experiment" / f"{o}.yaml" for o in options("experiment")]
    + [CONF / "experiment_model" / f"{o}.yaml" for o in options("experiment_model")]
    + [CONF / "debug" / f"{o}.yaml" for o in options("debug")]
    + [CONF / "config.yaml"],
    ids=lambda p: str(p.relative_to(CONF)),
)
def test_no_yaml_restates_what_it_would_get_anyway(path: Path) -> None:
    """Recipe values live in exactly one YAML and structural defaults in the schemas: a YAML
    value equal to the schema default (groups), or to what the experiment's own groups and parent
    already give (experiments), is a second source of the same value."""
    group = path.parent.name
    if group == "experiment":
        base = base_of_experiment(path)
    elif group == "experiment_model":
        base = base_of_experiment_model(path)
    elif group in ("debug", "conf"):  # global: on top of the schemas, for any recipe
        base = flat(OmegaConf.to_container(OmegaConf.structured(Config)))
    else:
        base = base_of_group_option(group, path)
    own = flat(OmegaConf.to_container(OmegaConf.load(path)))  # its YAML reads 6e-4 as a float
    restated = {k: v for k, v in own.items() if k in base and base[k] == v and k != "hydra"}
    assert not restated, f"{path.relative_to(CONF)} restates {restated}"
