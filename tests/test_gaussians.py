"""Gaussian parameters: SH colours, k-NN scales, initialisation (densification: test_strategy.py)."""

from __future__ import annotations

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
    ref = d.topk(3, largest=False).values.square().mean(-1)
    assert torch.allclose(G.knn_mean_sq_distance(pts, chunk=64), ref, atol=1e-5)


def test_init_as_the_official_code() -> None:
    """Scales sqrt(mean squared 3-NN distance) (not the mean distance), opacity 0.1, features zero."""
    pts = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 2, 0], [0, 0, 3], [10, 10, 10]])
    p = G.init_gaussians(pts, torch.rand(5, 3), feature_dim=16, sh_degree=2)
    assert p["means"].shape == (5, 3) and p["features"].shape == (5, 16) and p["shN"].shape == (5, 8, 3)
    assert torch.equal(p["features"], torch.zeros(5, 16))
    a = G.activated(p)
    assert torch.allclose(a["scales"][0], torch.full((3,), ((1 + 4 + 9) / 3) ** 0.5))  # not (1 + 2 + 3) / 3 = 2
    assert torch.allclose(a["opacities"], torch.full((5,), 0.1), atol=1e-6)
