"""Gaussian parameters: SH colours, k-NN scales, densification keeping Adam's state aligned."""

from __future__ import annotations

import math

import torch

from fit3d_helpers import gaussians as G


def test_sh_dc_roundtrip_and_degree1() -> None:
    rgb = torch.rand(5, 3)
    sh0 = G.rgb_to_sh(rgb)[:, None]
    assert torch.allclose(G.sh_to_rgb(sh0, torch.zeros(5, 0, 3), torch.randn(5, 3), 0), rgb, atol=1e-6)
    # degree 1 along +z adds C1 * coefficient 1 (the z basis), independent of the direction's length
    shN = torch.zeros(1, 3, 3)
    shN[0, 1] = torch.tensor([0.1, 0.2, 0.3])
    out = G.sh_to_rgb(G.rgb_to_sh(torch.full((1, 3), 0.5))[:, None], shN, torch.tensor([[0.0, 0.0, 5.0]]), 1)
    assert torch.allclose(out, 0.5 + G.SH_C1 * torch.tensor([[0.1, 0.2, 0.3]]), atol=1e-6)


def test_knn_matches_brute_force() -> None:
    pts = torch.randn(300, 3)
    d = torch.cdist(pts, pts) + torch.eye(300) * 1e9
    ref = d.topk(3, largest=False).values.mean(-1)
    assert torch.allclose(G.knn_mean_distance(pts, chunk=64), ref, atol=1e-5)


def test_init_shapes() -> None:
    p = G.init_gaussians(torch.randn(50, 3), torch.rand(50, 3), feature_dim=16, sh_degree=2)
    assert p["means"].shape == (50, 3) and p["features"].shape == (50, 16) and p["shN"].shape == (50, 8, 3)
    a = G.activated(p)
    assert torch.allclose(a["opacities"], torch.full((50,), 0.1), atol=1e-6)


def _params_and_adam(n: int = 40):
    params = {k: torch.nn.Parameter(v) for k, v in G.init_gaussians(torch.randn(n, 3), torch.rand(n, 3), feature_dim=4, sh_degree=0).items()}
    opt = torch.optim.Adam([{"params": [params[k]], "lr": 1e-3, "name": k} for k in G.PARAM_NAMES])
    sum(v.sum() for v in params.values()).backward()
    opt.step()
    return params, opt


def test_densify_clone_split_prune_keep_adam_state_aligned() -> None:
    params, opt = _params_and_adam()
    n = params["means"].shape[0]
    with torch.no_grad():
        params["log_scales"][:10] = math.log(5.0)  # 10 big Gaussians (split)
        params["log_scales"][10:] = math.log(0.001)  # the rest small (cloned when their gradient is high)
        params["opacity_logits"][-5:] = -20.0  # 5 transparent ones (pruned)
    grad = torch.zeros(n)
    grad[:15] = 1.0  # 10 big + 5 small above threshold
    stats = G.densify_and_prune(params, opt, grad, grad_threshold=0.5, scene_extent=1.0)
    assert stats["cloned"] == 5 and stats["split"] == 10
    # 40 - 10 split parents + 5 clones + 20 children; then the 5 transparent ones are pruned, and the 20 children
    # (1/1.6 of 5.0 = 3.1 > 0.5 × extent) as too big
    assert stats["pruned"] == 25 and stats["total"] == 30 == params["means"].shape[0]
    for group in opt.param_groups:
        p = group["params"][0]
        assert p is params[group["name"]]
        assert opt.state[p]["exp_avg"].shape == p.shape


def test_reset_opacity() -> None:
    params, opt = _params_and_adam()
    G.reset_opacity(params, opt, 0.01)
    assert torch.sigmoid(params["opacity_logits"]).max() <= 0.01 + 1e-6
