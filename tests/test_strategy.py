"""Densification: our SimpleStrategy, gsplat's DefaultStrategy behind our names, and the two against each other.

gsplat's strategy is plain torch, so everything here runs on the CPU renderer's ``info``; the gsplat tests skip
only where gsplat is not installed (it is in the ``dev`` extra, so CI runs them).
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from fit3d_helpers import cache
from fit3d_helpers import gaussians as G
from fit3d_helpers import strategy as S
from fit3d_helpers.render import means2d_grad_stats, rasterize_with_info

needs_gsplat = pytest.mark.skipif(
    not S.gsplat_strategy_available(), reason="gsplat is not installed (pip install -e '.[dev]')"
)


def _params_and_optimizers(n: int = 40, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    raw = G.init_gaussians(torch.randn(n, 3, generator=g), torch.rand(n, 3, generator=g), feature_dim=4, sh_degree=1)
    params = {k: torch.nn.Parameter(v) for k, v in raw.items()}
    opts = S.make_optimizers(params, {k: 1e-3 for k in params})
    sum(v.sum() for v in params.values()).backward()  # one step so every Adam has moments to keep aligned
    for o in opts.values():
        o.step()
        o.zero_grad(set_to_none=True)
    return params, opts


def _set_up_growth(params) -> torch.Tensor:
    """10 large + 30 small Gaussians, the last 5 transparent; the first 15 have a high gradient."""
    with torch.no_grad():
        params["log_scales"][:10] = math.log(0.2)  # > 0.01 × extent: split
        params["log_scales"][10:] = math.log(0.001)  # small: cloned when the gradient is high
        params["opacity_logits"][-5:] = -20.0  # pruned
    grad = torch.zeros(params["means"].shape[0])
    grad[:15] = 1.0
    return grad


def _assert_aligned(params, opts) -> None:
    for name, p in params.items():
        group = opts[name].param_groups
        assert len(group) == 1 and group[0]["params"][0] is p, name
        st = opts[name].state[p]
        assert st["exp_avg"].shape == p.shape and st["exp_avg_sq"].shape == p.shape, name


def test_densify_clone_split_prune_keep_adam_state_aligned() -> None:
    params, opts = _params_and_optimizers()
    grad = _set_up_growth(params)
    with torch.no_grad():
        params["log_scales"][:10] = math.log(5.0)  # so big that the children (5 / 1.6 > 0.5 × extent) are pruned too
    kept_moment = opts["means"].state[params["means"]]["exp_avg"][10:35].clone()  # rows that stay where they are
    stats = S.densify_and_prune(params, opts, grad, grad_threshold=0.5, scene_extent=1.0)
    assert stats["cloned"] == 5 and stats["split"] == 10
    # 40 - 10 split parents + 5 clones + 20 children; then 5 transparent and the 20 huge children are pruned
    assert stats["pruned"] == 25 and stats["total"] == 30 == params["means"].shape[0]
    _assert_aligned(params, opts)
    torch.testing.assert_close(opts["means"].state[params["means"]]["exp_avg"][:25], kept_moment)
    assert torch.all(opts["means"].state[params["means"]]["exp_avg"][25:] == 0)  # the clones start with fresh moments


def test_densify_respects_the_budget() -> None:
    params, opts = _params_and_optimizers()
    grad = _set_up_growth(params)
    stats = S.densify_and_prune(params, opts, grad, grad_threshold=0.5, scene_extent=1.0, max_gaussians=46)
    assert stats["cloned"] + stats["split"] == 3  # (46 - 40) // 2 strongest, never more
    _assert_aligned(params, opts)


def test_reset_opacity_clamps_and_forgets_moments() -> None:
    params, opts = _params_and_optimizers()
    S.reset_opacity(params, opts, 0.01)
    assert torch.sigmoid(params["opacity_logits"]).max() <= 0.01 + 1e-6
    assert torch.all(opts["opacity_logits"].state[params["opacity_logits"]]["exp_avg"] == 0)


def test_make_optimizers_needs_every_rate() -> None:
    params, _ = _params_and_optimizers()
    with pytest.raises(ValueError, match="no learning rate"):
        S.make_optimizers(params, {"means": 1e-3})


# ----------------------------------------------------------------------------------------------------------------
# The schedule, on a tiny rendered scene
# ----------------------------------------------------------------------------------------------------------------
def _camera(W: int = 32, H: int = 24):
    viewmat = torch.eye(4)[None]
    viewmat[0, 2, 3] = 3.0  # the Gaussians (around the origin) sit 3 m in front of the camera
    K = torch.tensor([[[30.0, 0, W / 2], [0, 30.0, H / 2], [0, 0, 1]]])
    return viewmat, K, W, H


def _render_step(params, pre_backward):
    viewmat, K, W, H = _camera()
    g = G.activated(params)
    rgb, alpha, info = rasterize_with_info(
        g["means"], g["quats"], g["scales"], g["opacities"], params["sh0"][:, 0], viewmat, K, W, H, backend="torch"
    )
    pre_backward(info)
    (rgb.square().mean() + alpha.mean()).backward()
    return info


def _run(strategy, params, opts, steps: int, state=None) -> tuple[list[int], list[float]]:
    """``steps`` render/backward/Adam/strategy steps; the Gaussian count and the largest opacity after each."""
    state = strategy.initialize_state(scene_scale=1.0) if state is None else state
    counts, max_opacity = [], []
    for step in range(steps):
        info = _render_step(params, lambda i, step=step: strategy.step_pre_backward(params, opts, state, step, i))
        for o in opts.values():
            o.step()
            o.zero_grad(set_to_none=True)
        strategy.step_post_backward(params, opts, state, step, info)
        counts.append(params["means"].shape[0])
        max_opacity.append(float(torch.sigmoid(params["opacity_logits"].detach()).max()))
    return counts, max_opacity


def _strategies(**kw):
    kw = dict(refine_start_iter=3, refine_stop_iter=9, refine_every=3, grow_grad2d=1e-9, reset_every=4) | kw
    out = [S.SimpleStrategy(**kw, max_gaussians=10_000)]
    if S.gsplat_strategy_available():
        out.append(S.GsplatStrategy(**kw))
    return out


@pytest.mark.parametrize("strategy", _strategies(), ids=lambda s: type(s).__name__)
def test_refines_on_the_gsplat_schedule_and_resets_opacity(strategy) -> None:
    params, opts = _params_and_optimizers(60)
    with torch.no_grad():
        params["means"].mul_(0.3)
        params["log_scales"].fill_(math.log(0.05))  # split (> 0.01 × extent), not pruned as too big (< 0.1 × extent)
        params["opacity_logits"].fill_(2.0)
    counts, max_opacity = _run(strategy, params, opts, 7)
    # refinement only at step 6 (3 < 6 < 9 and 6 % 3 == 0; not at 3): every Gaussian's gradient is above 1e-9
    assert counts[:6] == [60] * 6 and counts[6] > 60
    _assert_aligned(params, opts)
    # opacity reset at step 4 (4 % 4 == 0) to 2 × prune_opa = 0.01: gsplat 1.5.3's own test never fires, ours does
    assert max_opacity[3] > 0.5 and max_opacity[4] <= 0.01 + 1e-6


# ----------------------------------------------------------------------------------------------------------------
# Ours against gsplat's DefaultStrategy
# ----------------------------------------------------------------------------------------------------------------
@needs_gsplat
def test_gradient_statistics_match_gsplat() -> None:
    """SimpleStrategy's running grad2d / count equal gsplat's, step after step, on the CPU renderer's info."""
    ours, theirs = _strategies(refine_start_iter=100, refine_stop_iter=200, refine_every=100)
    states = []
    for strat in (ours, theirs):
        params, opts = _params_and_optimizers(50)
        with torch.no_grad():
            params["means"].mul_(0.5)
        state = strat.initialize_state(1.0)
        counts, _ = _run(strat, params, opts, 3, state)
        states.append(state)
    assert counts == [50, 50, 50] and states[0]["count"].max() == 3  # accumulated over the 3 steps
    torch.testing.assert_close(states[0]["grad2d"].float(), states[1]["grad2d"])
    torch.testing.assert_close(states[0]["count"].float(), states[1]["count"])
    # and it is the screen-space gradient the renderer reports
    params, opts = _params_and_optimizers(50)
    info = _render_step(params, lambda i: None)
    norm_sum, count = means2d_grad_stats(info)
    assert count.sum() > 10 and norm_sum.sum() > 0


@needs_gsplat
def test_growth_and_pruning_match_gsplat() -> None:
    """Given the same statistics, both strategies clone, split and prune the same Gaussians."""
    ours_p, ours_o = _params_and_optimizers(40)
    theirs_p, theirs_o = _params_and_optimizers(40)  # the same seed: identical twins
    grad = _set_up_growth(ours_p)
    _set_up_growth(theirs_p)
    S.densify_and_prune(ours_p, ours_o, grad, grad_threshold=0.5, scene_extent=1.0)

    strat = S.GsplatStrategy(refine_start_iter=0, refine_stop_iter=1000, refine_every=100, grow_grad2d=0.5)
    state = strat.initialize_state(1.0)
    state["grad2d"], state["count"] = grad.clone(), torch.ones_like(grad)
    n = theirs_p["means"].shape[0]
    means2d = torch.zeros(1, n, 2, requires_grad=True)
    means2d.grad = torch.zeros(1, n, 2)
    info = {
        "width": 32,
        "height": 24,
        "n_cameras": 1,
        "radii": torch.zeros(1, n, 2, dtype=torch.int32),
        "gaussian_ids": None,
        "means2d": means2d,
    }  # nothing visible this step: only the statistics set above count
    strat.step_post_backward(theirs_p, theirs_o, state, 100, info)

    assert ours_p["means"].shape == theirs_p["means"].shape == (50, 3)  # 40 + 5 clones + 10 splits - 5 pruned
    _assert_aligned(theirs_p, theirs_o)
    for k in ("log_scales", "opacity_logits", "sh0", "features"):  # row order differs: compare as multisets
        a = torch.sort(ours_p[k].detach().flatten()).values
        b = torch.sort(theirs_p[k].detach().flatten()).values
        torch.testing.assert_close(a, b, msg=k)


@needs_gsplat
def test_lift_with_gsplat_strategy_on_the_cpu_renderer(tiny_dataset, vit_small, tiny_lift_cfg, tmp_path) -> None:
    from fit3d_helpers import lift as L

    cfg = dataclasses.replace(tiny_lift_cfg, strategy="gsplat", densify_grad_threshold=1e-7)
    res = L.lift_scene(tiny_dataset.train[0], vit_small, cfg, root=tmp_path, backend="torch")
    assert res.stats["strategy"] == "gsplat" and res.stats["render_backend"] == "torch"
    n = res.losses["n_gaussians"]
    assert n[-1] != n[0], "gsplat's DefaultStrategy should have densified the tiny scene"
    assert sum(res.losses["rgb"][-5:]) < sum(res.losses["rgb"][:5])
    # a different strategy is a different artifact
    assert res.hash != cache.config_hash(L.lift_key(tiny_dataset.train[0], vit_small, tiny_lift_cfg))


def test_unknown_strategy_is_named() -> None:
    from fit3d_helpers.profiles import PAPER, SMOKE, ConfigError, LiftConfig

    with pytest.raises(ConfigError, match=r"lift.strategy must be one of \['simple', 'gsplat'\], got 'mcmc'"):
        LiftConfig(strategy="mcmc")
    assert PAPER.lift.strategy == "gsplat" and SMOKE.lift.strategy == "simple"
