"""The settings tree: one name per setting, typed overrides, validation that names the field and the value."""

from __future__ import annotations

import dataclasses

import pytest

from fit3d_helpers import profiles as P
from fit3d_helpers.profiles import ConfigError, load_profile


def test_every_setting_has_one_dotted_name_and_a_type() -> None:
    types = P.setting_types()
    assert "lift.iterations" in types and "finetune.lr" in types and "probe.seg_steps" in types and "seed" in types
    assert (
        types["lift.iterations"] is int and types["finetune.lr"] is float and types["probe.variants"] == tuple[str, ...]
    )
    assert "name" not in types  # the profile's label is not a setting
    flat = P.settings(P.SMOKE)
    assert set(flat) == set(types) and flat["lift.iterations"] == 200 and flat["finetune.lr"] == 1e-4


def test_overrides_parse_text_to_the_settings_type() -> None:
    prof = load_profile(
        "smoke",
        {
            "lift.iterations": "2000",
            "finetune.lr": "3e-4",
            "probe.variants": "['concat']",
            "seed": 7,
            "finetune.flip": "False",
            "ablations.epochs": [1, 3],
        },
    )
    assert prof.lift.iterations == 2000 and prof.finetune.lr == 3e-4 and prof.probe.variants == ("concat",)
    assert prof.seed == 7 and prof.finetune.flip is False and prof.ablations.epochs == (1, 3)
    assert load_profile("smoke", {"finetune.lr": 1}).finetune.lr == 1.0  # an int is a fine float
    assert P.SMOKE.lift.iterations == 200  # the profiles themselves are untouched (frozen)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("lift.iterationz", 5, r"unknown setting\(s\) \['lift.iterationz'\]. Valid keys: .*lift.iterations \(int\)"),
        ("lift.iterations", "abc", r"lift.iterations: cannot parse 'abc' as int"),
        ("lift.iterations", 2.5, r"lift.iterations expects int, got 2.5"),
        ("lift.iterations", True, r"lift.iterations expects int, got True"),
        ("finetune.lr", "fast", r"finetune.lr: cannot parse 'fast' as float"),
        ("probe.variants", "['concat', 3]", r"probe.variants\[1\] expects str, got 3"),
        ("lift.iterations", 0, r"lift.iterations must be > 0, got 0"),
        ("finetune.lr", -1e-5, r"finetune.lr must be > 0, got -1e-05"),
        ("probe.variants", ["concat", "sum"], r"probe.variants must be a non-empty subset"),
        ("lift.holdout_every", 1, r"lift.holdout_every must be 0 \(no hold-out\) or >= 2, got 1"),
        ("lift.holdout_every", 60, r"lift.holdout_every=60 holds out no view of 24"),
        ("data.n_val_lift", 5, r"data.n_val_lift \(5\) cannot exceed data.n_val \(2\)"),
        ("finetune.mode", "adapter", r"finetune.mode must be one of \['full', 'lora', 'released'\], got 'adapter'"),
    ],
)
def test_bad_settings_name_the_key_and_value(key, value, message) -> None:
    with pytest.raises(ConfigError, match=message):
        load_profile("smoke", {key: value})


def test_holdout_split_rules() -> None:
    assert P.holdout_split(24, 8) == ([i for i in range(24) if i not in (4, 12, 20)], [4, 12, 20])
    assert P.holdout_split(5, 0) == ([0, 1, 2, 3, 4], [])  # the official recipe: no hold-out
    assert P.holdout_split(2, 2) == ([0], [1])
    assert P.holdout_split(1, 8) == ([0], [])  # one view: nothing can be held out, and that is fine
    with pytest.raises(ConfigError, match="holds out no view of 3"):
        P.holdout_split(3, 8)


def test_configs_validate_on_construction() -> None:
    with pytest.raises(ConfigError, match=r"data.dataset must be one of"):
        P.DataConfig(dataset="imagenet")
    with pytest.raises(ConfigError, match=r"lift.sh_degree must be 0..3, got 4"):
        P.LiftConfig(sh_degree=4)
    with pytest.raises(ConfigError, match=r"ablations.feature_dims must be positive integers"):
        P.AblationConfig(feature_dims=(16, 0))
    with pytest.raises(dataclasses.FrozenInstanceError):
        P.SMOKE.lift.iterations = 5  # type: ignore[misc]


def test_paper_profile_is_the_official_recipe() -> None:
    p = P.PAPER
    assert (p.lift.iterations, p.lift.sh_degree, p.lift.lr_features, p.lift.densify_from, p.lift.densify_until) == (
        30_000,
        3,
        6.25e-5,
        500,
        15_000,
    )
    assert (p.finetune.lr, p.finetune.weight_decay, p.finetune.batch_size, p.finetune.epochs, p.finetune.grad_clip) == (
        1e-5,
        1e-4,
        2,
        1,
        0.1,
    )
    assert (p.probe.seg_steps, p.probe.depth_steps) == (40_000, 38_400) and p.on_missing == "error"
    # the Inria learning rates (arguments/__init__.py:75-82; scene/gaussian_model.py:154-156): smoke departs from them
    lrs = ("lr_means", "lr_means_final", "lr_sh0", "lr_shN", "lr_opacity", "lr_scales", "lr_quats")
    assert [getattr(p.lift, k) for k in lrs] == [1.6e-4, 1.6e-6, 2.5e-3, 1.25e-4, 0.05, 5e-3, 1e-3]


def test_unknown_profile() -> None:
    choices = r"\['capture', 'nyu', 'paper', 'smoke'\]"
    with pytest.raises(ConfigError, match=rf"unknown profile 'fast'; choose one of {choices}"):
        load_profile("fast")


def test_settings_import_no_data_module():
    """profiles.py holds settings only: scene listing lives in fit3d_helpers.scenes (data side)."""
    import ast
    from pathlib import Path

    tree = ast.parse(Path(P.__file__).read_text(encoding="utf-8"))
    names = {
        (n.module or "") if isinstance(n, ast.ImportFrom) else a.name
        for n in ast.walk(tree)
        if isinstance(n, (ast.Import, ast.ImportFrom))
        for a in n.names
    }
    assert not {m for m in names if m.split(".")[-1] in ("synthetic", "evaldata", "scenes", "data", "probe")}, names
    from fit3d_helpers import scenes

    assert scenes.scenes_for and scenes.SceneSplit and not hasattr(P, "scenes_for")
