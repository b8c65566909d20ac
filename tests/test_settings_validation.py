"""Settings that used to pass validation and fail later (or train garbage) now stop before any work (issue 17)."""

from __future__ import annotations

import math

import pytest

from fit3d_helpers import profiles as P


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("lift.lr_means", "1e999", r"lift\.lr_means must be a finite number, got inf"),
        ("lift.lr_scales", 1e999, r"lift\.lr_scales must be a finite number"),
        ("lift.feature_weight", "1e999", r"lift\.feature_weight must be a finite number"),
        ("data.max_depth", "1e999", r"data\.max_depth must be a finite number"),
        ("finetune.weight_decay", "1e999", r"finetune\.weight_decay must be a finite number"),
        ("probe.official_scale", "1e999", r"probe\.official_scale must be a finite number"),
        ("lift.lr_decoder", "0", r"lift\.lr_decoder must be > 0"),
        ("seed", "-1", r"seed must be an integer in 0\.\.4294967295 \(numpy's seed range\), got -1"),
        ("seed", str(2**32), r"seed must be an integer in 0\.\.4294967295"),
        ("lift.seed", "-3", r"lift\.seed must be an integer in 0\.\.4294967295"),
        ("finetune.seed", str(2**64), r"finetune\.seed must be an integer in 0\.\.4294967295"),
        ("data.n_views", "0", r"data\.n_views must be >= 2 for generated rooms .*got 0"),
        ("data.width", "1", r"data\.width and data\.height must be >= 28 px .*got 1×168"),
        ("data.height", "10", r"data\.width and data\.height must be >= 28 px"),
    ],
)
def test_bad_setting_stops_before_any_work(key: str, value: object, message: str) -> None:
    with pytest.raises(P.ConfigError, match=message):
        P.load_profile("smoke", {key: value})


def test_every_float_setting_is_checked_and_good_profiles_still_load() -> None:
    """Direct construction is checked too; every profile (paper: n_views 0 = all views of a real scene) loads."""
    with pytest.raises(P.ConfigError, match=r"lift\.lr_opacity must be a finite number"):
        P.LiftConfig(lr_opacity=math.inf)
    with pytest.raises(P.ConfigError, match=r"probe\.lr_seg must be > 0"):
        P.ProbeConfig(lr_seg=-1e-3)
    for name in P.PROFILES:
        assert P.load_profile(name).name == name
    assert P.load_profile("smoke", {"seed": str(2**32 - 1), "lift.lr_means": "1e38"}).seed == 2**32 - 1
