"""Densification strategies: when Gaussians are cloned, split, pruned and made transparent again.

Both strategies take gsplat's ``Strategy`` call pattern, so the lift loop does not care which one runs::

    strategy = make_strategy(cfg)                      # cfg.strategy: "simple" or "gsplat"
    state = strategy.initialize_state(scene_scale=extent)
    for step in range(iterations):
        renders, alphas, info = rasterize_with_info(...)
        strategy.step_pre_backward(params, optimizers, state, step, info)
        loss.backward()
        for opt in optimizers.values(): opt.step()
        strategy.step_post_backward(params, optimizers, state, step, info)   # may replace params[...] rows

``params`` holds one ``nn.Parameter`` per name (our names: ``means, quats, log_scales, opacity_logits, sh0, shN,
features``) and ``optimizers`` one Adam per name with one param group each (gsplat's convention), so a strategy can
swap a parameter for a longer or shorter one and keep that parameter's Adam moments aligned row by row.

- :class:`SimpleStrategy` (default; CPU, no gsplat): 3DGS's rules in plain torch. Accumulate the screen-space
  gradient of each Gaussian's 2D mean (``render.means2d_grad_stats``); every ``refine_every`` steps clone the small
  high-gradient Gaussians, split the large ones in two (children sampled inside the parent, 1/1.6 the size), prune
  the transparent and the absurdly large ones; reset opacities every ``reset_every`` steps. A Gaussian budget
  (``max_gaussians``) keeps a CPU fit bounded.
- :class:`GsplatStrategy` (``strategy="gsplat"``, the paper profile): gsplat's maintained ``DefaultStrategy``, with
  our parameter names mapped to gsplat's (``log_scales`` -> ``scales``, ``opacity_logits`` -> ``opacities``: gsplat
  stores the same unactivated values under those names). gsplat 1.5.3 never resets opacities (its test
  ``step % reset_every == 0 & step > 0`` parses as a chained comparison ending in ``0 > 0``), so the wrapper does the
  reset itself on the official schedule, with gsplat's own ``reset_opa``. It needs gsplat but no CUDA: its
  bookkeeping is plain torch, so ``tests/test_strategy.py`` runs it on the CPU renderer's ``info``. gsplat has no
  Gaussian budget (``max_gaussians`` is ignored there).

Both step on gsplat's 0-based schedule: refine when ``refine_start < step < refine_stop`` and
``step % refine_every == 0``; reset opacity when ``0 < step < refine_stop`` and ``step % reset_every == 0``.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import torch
from torch import Tensor

from .render import means2d_grad_stats, quat_to_rotmat

__all__ = [
    "GSPLAT_NAMES",
    "GsplatStrategy",
    "SimpleStrategy",
    "Strategy",
    "densify_and_prune",
    "gsplat_strategy_available",
    "make_optimizers",
    "make_strategy",
    "reset_opacity",
    "state_to",
]

# our parameter names -> gsplat's names for the same (unactivated) tensors
GSPLAT_NAMES = {"log_scales": "scales", "opacity_logits": "opacities"}

Params = dict[str, torch.nn.Parameter]
Optimizers = dict[str, torch.optim.Optimizer]


class Strategy(Protocol):
    """What the lift loop calls: gsplat's Strategy methods (``check_sanity`` included)."""

    def check_sanity(self, params: Params, optimizers: Optimizers) -> None: ...
    def initialize_state(self, scene_scale: float = 1.0) -> dict[str, Any]: ...
    def step_pre_backward(
        self, params: Params, optimizers: Optimizers, state: dict[str, Any], step: int, info: dict[str, Any]
    ) -> None: ...
    def step_post_backward(
        self, params: Params, optimizers: Optimizers, state: dict[str, Any], step: int, info: dict[str, Any]
    ) -> None: ...


def make_optimizers(params: Params, lrs: dict[str, float], *, eps: float = 1e-15) -> Optimizers:
    """One Adam per parameter, one param group each (gsplat's convention; Adam is per-element, so this is the
    same optimiser as one Adam with a group per parameter)."""
    missing = set(params) - set(lrs)
    if missing:
        raise ValueError(f"no learning rate for {sorted(missing)}")
    return {k: torch.optim.Adam([{"params": [p], "lr": lrs[k], "name": k}], eps=eps) for k, p in params.items()}


def state_to(state: dict[str, Any], device: torch.device | str) -> dict[str, Any]:
    """A strategy state with its tensors moved (for checkpoints: saved on the CPU, resumed on the fit's device)."""
    return {k: v.to(device) if isinstance(v, Tensor) else v for k, v in state.items()}


def _refine_now(step: int, start: int, stop: int, every: int) -> bool:
    return start < step < stop and every > 0 and step % every == 0


def _reset_now(step: int, stop: int, every: int) -> bool:
    return 0 < step < stop and every > 0 and step % every == 0


# ----------------------------------------------------------------------------------------------------------------
# Row edits that keep each parameter's Adam state aligned
# ----------------------------------------------------------------------------------------------------------------


@torch.no_grad()
def _edit_rows(params: Params, optimizers: Optimizers, keep: Tensor, extra: dict[str, Tensor] | None) -> None:
    """Keep rows ``keep`` [N] (bool) of every parameter, append ``extra[name]`` rows (zero Adam moments for them)."""
    for name in list(params):
        old = params[name]
        data = old.data[keep]
        if extra is not None:
            data = torch.cat([data, extra[name].to(data)], 0)
        new = torch.nn.Parameter(data, requires_grad=old.requires_grad)
        params[name] = new
        opt = optimizers.get(name)
        if opt is None:
            continue
        state = opt.state.pop(old, None)
        if state:
            for key, v in state.items():
                if key == "step" or not isinstance(v, Tensor) or v.shape != old.shape:
                    continue
                v = v[keep]
                if extra is not None:
                    v = torch.cat([v, torch.zeros_like(extra[name]).to(v)], 0)
                state[key] = v
            opt.state[new] = state
        opt.param_groups[0]["params"] = [new]


@torch.no_grad()
def densify_and_prune(
    params: Params,
    optimizers: Optimizers,
    grad_mean: Tensor,
    *,
    grad_threshold: float,
    scene_extent: float,
    grow_scale3d: float = 0.01,
    prune_opacity: float = 0.005,
    prune_scale3d: float = 0.5,
    max_gaussians: int = 200_000,
    generator: torch.Generator | None = None,
) -> dict[str, int]:
    """Clone small, split large high-gradient Gaussians; prune transparent and huge ones (3DGS's rules).

    ``grad_mean [N]``: mean screen-space gradient norm of each Gaussian since the last refinement. A Gaussian is
    "high" when ``grad_mean > grad_threshold`` (as gsplat), "small" when its largest scale is at most
    ``grow_scale3d × scene_extent``. With a budget, the strongest gradients are densified first.
    """
    scales = torch.exp(params["log_scales"].data)  # [N, 3]
    n = scales.shape[0]
    small = scales.max(-1).values <= grow_scale3d * scene_extent
    high = grad_mean > grad_threshold
    room = max(0, max_gaussians - n)
    if int(high.sum()) > room // 2:  # stay inside the budget: a split adds one net Gaussian, a clone one
        top = grad_mean.topk(room // 2).indices if room >= 2 else grad_mean.new_zeros(0, dtype=torch.long)
        high = torch.zeros_like(high)
        high[top] = True
    clone, split = high & small, high & ~small
    extra: dict[str, list[Tensor]] = {k: [params[k].data[clone]] for k in params}
    if split.any():
        rot = quat_to_rotmat(params["quats"].data[split])  # [S, 3, 3]
        s = scales[split]  # [S, 3]
        for _ in range(2):  # two children per split Gaussian, sampled inside the parent, 1/1.6 the size
            offset = torch.randn(s.shape, generator=generator).to(s.device) * s  # [S, 3]
            for name in params:
                v = params[name].data[split]
                if name == "means":
                    v = v + (rot @ offset[..., None])[..., 0]
                elif name == "log_scales":
                    v = v - math.log(1.6)
                extra[name].append(v)
    _edit_rows(params, optimizers, ~split, {k: torch.cat(v, 0) for k, v in extra.items()})
    opac = torch.sigmoid(params["opacity_logits"].data)
    too_big = torch.exp(params["log_scales"].data).max(-1).values > prune_scale3d * scene_extent
    prune = (opac < prune_opacity) | too_big
    if prune.all():  # never prune everything: an empty scene cannot recover
        prune[:] = False
    _edit_rows(params, optimizers, ~prune, None)
    return {
        "cloned": int(clone.sum()),
        "split": int(split.sum()),
        "pruned": int(prune.sum()),
        "total": int(params["means"].shape[0]),
    }


@torch.no_grad()
def reset_opacity(params: Params, optimizers: Optimizers, value: float = 0.01) -> None:
    """3DGS's periodic opacity reset: clamp opacities down (and forget their Adam moments) so that floaters must earn
    their opacity back."""
    params["opacity_logits"].data.clamp_(max=math.log(value / (1 - value)))
    opt = optimizers.get("opacity_logits")
    state = opt.state.get(params["opacity_logits"]) if opt is not None else None
    if state:
        for key in ("exp_avg", "exp_avg_sq"):
            state[key].zero_()


# ----------------------------------------------------------------------------------------------------------------
# Strategies
# ----------------------------------------------------------------------------------------------------------------


class SimpleStrategy:
    """3DGS's clone / split / prune / opacity reset in plain torch, with gsplat's Strategy interface."""

    def __init__(
        self,
        *,
        refine_start_iter: int,
        refine_stop_iter: int,
        refine_every: int,
        grow_grad2d: float = 2e-4,
        grow_scale3d: float = 0.01,
        prune_opa: float = 0.005,
        prune_scale3d: float = 0.5,
        reset_every: int = 3000,
        max_gaussians: int = 200_000,
        seed: int = 0,
    ) -> None:
        self.refine_start_iter, self.refine_stop_iter, self.refine_every = (
            refine_start_iter,
            refine_stop_iter,
            refine_every,
        )
        self.grow_grad2d, self.grow_scale3d = grow_grad2d, grow_scale3d
        self.prune_opa, self.prune_scale3d = prune_opa, prune_scale3d
        self.reset_every, self.max_gaussians, self.seed = reset_every, max_gaussians, seed

    def check_sanity(self, params: Params, optimizers: Optimizers) -> None:
        """The layout this strategy edits: one optimizer with one param group per parameter, the geometry present."""
        missing = {"means", "quats", "log_scales", "opacity_logits"} - set(params)
        if missing:
            raise ValueError(f"params lack {sorted(missing)}")
        if set(params) != set(optimizers) or any(len(o.param_groups) != 1 for o in optimizers.values()):
            raise ValueError("need one optimizer per parameter, each with one param group (see make_optimizers)")

    def initialize_state(self, scene_scale: float = 1.0) -> dict[str, Any]:
        return {"grad2d": None, "count": None, "scene_scale": float(scene_scale)}

    def step_pre_backward(
        self, params: Params, optimizers: Optimizers, state: dict[str, Any], step: int, info: dict[str, Any]
    ) -> None:
        if info["means2d"].requires_grad:
            info["means2d"].retain_grad()

    @torch.no_grad()
    def step_post_backward(
        self, params: Params, optimizers: Optimizers, state: dict[str, Any], step: int, info: dict[str, Any]
    ) -> None:
        if step >= self.refine_stop_iter:
            return
        norm_sum, count = means2d_grad_stats(info)  # [N], [N]
        if state["grad2d"] is None or state["grad2d"].shape != norm_sum.shape:
            state["grad2d"], state["count"] = torch.zeros_like(norm_sum), torch.zeros_like(count)
        state["grad2d"] += norm_sum
        state["count"] += count
        if _refine_now(step, self.refine_start_iter, self.refine_stop_iter, self.refine_every):
            # a generator per step: the split samples are the same after a resume
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
            densify_and_prune(
                params, optimizers, state["grad2d"] / state["count"].clamp_min(1), grad_threshold=self.grow_grad2d,
                scene_extent=state["scene_scale"], grow_scale3d=self.grow_scale3d, prune_opacity=self.prune_opa,
                prune_scale3d=self.prune_scale3d, max_gaussians=self.max_gaussians, generator=gen)  # fmt: skip
            n = params["means"].shape[0]
            state["grad2d"] = torch.zeros(n, dtype=norm_sum.dtype, device=norm_sum.device)
            state["count"] = torch.zeros(n, dtype=norm_sum.dtype, device=norm_sum.device)
        if _reset_now(step, self.refine_stop_iter, self.reset_every):
            reset_opacity(params, optimizers, 2.0 * self.prune_opa)


def gsplat_strategy_available() -> bool:
    """True when ``gsplat.strategy`` imports (no CUDA needed: the strategy is plain torch)."""
    try:
        from gsplat.strategy import DefaultStrategy  # noqa: F401
    except Exception:  # ImportError, or a broken install
        return False
    return True


class GsplatStrategy:
    """gsplat's ``DefaultStrategy`` on our parameter names, plus the opacity reset gsplat 1.5.3 never does."""

    def __init__(
        self,
        *,
        refine_start_iter: int,
        refine_stop_iter: int,
        refine_every: int,
        grow_grad2d: float = 2e-4,
        grow_scale3d: float = 0.01,
        prune_opa: float = 0.005,
        prune_scale3d: float = 0.1,
        reset_every: int = 3000,
        verbose: bool = False,
    ) -> None:
        try:
            from gsplat.strategy import DefaultStrategy
        except Exception as e:
            raise RuntimeError(
                "strategy='gsplat' needs the gsplat package (`pip install -e '.[gpu]'` or `pip install gsplat`; "
                "it imports "
                "without CUDA). Use strategy='simple' for the course's own densification."
            ) from e
        self.inner = DefaultStrategy(
            prune_opa=prune_opa, grow_grad2d=grow_grad2d, grow_scale3d=grow_scale3d, prune_scale3d=prune_scale3d,
            refine_start_iter=refine_start_iter, refine_stop_iter=refine_stop_iter, refine_every=refine_every,
            reset_every=reset_every, absgrad=False, verbose=verbose,
        )  # fmt: skip

    @staticmethod
    def _views(params: Params, optimizers: Optimizers) -> tuple[Params, Optimizers]:
        return {GSPLAT_NAMES.get(k, k): v for k, v in params.items()}, {
            GSPLAT_NAMES.get(k, k): v for k, v in optimizers.items()
        }

    @staticmethod
    def _write_back(params: Params, view: Params) -> None:
        for k in list(params):
            params[k] = view[GSPLAT_NAMES.get(k, k)]

    def check_sanity(self, params: Params, optimizers: Optimizers) -> None:
        self.inner.check_sanity(*self._views(params, optimizers))

    def initialize_state(self, scene_scale: float = 1.0) -> dict[str, Any]:
        return self.inner.initialize_state(scene_scale=float(scene_scale))

    def step_pre_backward(
        self, params: Params, optimizers: Optimizers, state: dict[str, Any], step: int, info: dict[str, Any]
    ) -> None:
        self.inner.step_pre_backward(*self._views(params, optimizers), state, step, info)

    def step_post_backward(
        self, params: Params, optimizers: Optimizers, state: dict[str, Any], step: int, info: dict[str, Any]
    ) -> None:
        from gsplat.strategy.ops import reset_opa

        p, o = self._views(params, optimizers)
        self.inner.step_post_backward(p, o, state, step, info, packed=False)
        if _reset_now(step, self.inner.refine_stop_iter, self.inner.reset_every):
            # idempotent if a later gsplat resets here too: the same clamp, Adam moments zeroed again
            reset_opa(params=p, optimizers=o, state=state, value=2.0 * self.inner.prune_opa)
        self._write_back(params, p)


def make_strategy(cfg: Any) -> SimpleStrategy | GsplatStrategy:
    """The strategy a ``LiftConfig`` asks for (``cfg.strategy``: ``"simple"`` or ``"gsplat"``)."""
    common = dict(
        refine_start_iter=cfg.densify_from,
        refine_stop_iter=cfg.densify_until,
        refine_every=cfg.densify_every,
        grow_grad2d=cfg.densify_grad_threshold,
        prune_opa=cfg.prune_opacity,
        reset_every=cfg.opacity_reset_every,
    )
    if cfg.strategy == "simple":
        return SimpleStrategy(**common, max_gaussians=cfg.max_gaussians, seed=cfg.seed)
    if cfg.strategy == "gsplat":
        return GsplatStrategy(**common)
    raise ValueError(f"strategy must be 'simple' or 'gsplat', got {cfg.strategy!r}")
