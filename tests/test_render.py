"""Tests of fit3d_helpers.render against the independent, slow, per-pixel reference renderer.

The reference (``fit3d_helpers.render_reference``) shares no code with the module: it builds each Gaussian's 3x3
covariance and the 2x3 perspective Jacobian as explicit matrices, inverts the 2D covariance with
``torch.linalg.inv``, and then walks the Gaussians of each camera one by one in depth order, updating every pixel's
transmittance exactly as gsplat 1.5.3's ``rasterize_to_pixels_3dgs_fwd`` kernel does for one pixel (pixel centres at
+0.5, ``alpha = min(0.999, o·exp(-σ))``, skip ``alpha < 1/255``, stop *before* a Gaussian that would take ``T`` to
``<= 1e-4``). Its gradients come from plain autograd through that loop. Its official-rules mode (Inria's rasterizer
as FiT3D ships it) is tested at the end of this file.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from fit3d_helpers.render import (
    gsplat_available,
    means2d_grad_stats,
    project_gaussians,
    rasterize,
    rasterize_with_info,
)
from fit3d_helpers.render_reference import GSPLAT_RULES, OFFICIAL_RULES, render_reference

W, H = 24, 16


# ----------------------------------------------------------------------------------------------------------
# Scenes
# ----------------------------------------------------------------------------------------------------------
def _rot_y(a: float, dtype) -> torch.Tensor:
    return torch.tensor([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]], dtype=dtype)


def cameras(C: int, dtype=torch.float64, f: float = 20.0):
    viewmats = torch.eye(4, dtype=dtype).repeat(C, 1, 1)
    for c in range(C):
        viewmats[c, :3, :3] = _rot_y(0.15 * c, dtype)
        viewmats[c, :3, 3] = torch.tensor([0.25 * c, -0.1 * c, 0.05 * c], dtype=dtype)
    Ks = torch.tensor([[f, 0, W / 2 - 0.3], [0, f * 1.1, H / 2 + 0.2], [0, 0, 1]], dtype=dtype).repeat(C, 1, 1)
    return viewmats, Ks


def random_scene(N: int, D: int, seed: int, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(N, 3, generator=g, dtype=dtype) * torch.tensor([0.7, 0.5, 0.6], dtype=dtype)
    means = means + torch.tensor([0.0, 0.0, 3.0], dtype=dtype)
    quats = torch.randn(N, 4, generator=g, dtype=dtype)
    scales = torch.rand(N, 3, generator=g, dtype=dtype) * 0.3 + 0.02
    opacities = torch.rand(N, generator=g, dtype=dtype) * 0.95 + 0.04
    colors = torch.rand(N, D, generator=g, dtype=dtype)
    return means, quats, scales, opacities, colors


def _leaves(tensors):
    return [t.clone().requires_grad_(True) for t in tensors]


# ----------------------------------------------------------------------------------------------------------
# Against the reference
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("N,D,seed", [(5, 3, 0), (12, 5, 1), (20, 3, 2), (20, 5, 3)])
def test_matches_reference_forward_and_gradients(N, D, seed):
    viewmats, Ks = cameras(2)
    ours = _leaves(random_scene(N, D, seed))
    ref = _leaves([t.detach() for t in ours])
    r1, a1 = rasterize(*ours, viewmats, Ks, W, H, backend="torch")
    r2, a2 = render_reference(*ref, viewmats, Ks, W, H)
    assert r1.shape == (2, H, W, D) and a1.shape == (2, H, W, 1)
    assert a2.max() > 0.5, "scene should cover the image"
    torch.testing.assert_close(r1, r2, atol=1e-4, rtol=0)
    torch.testing.assert_close(a1, a2, atol=1e-4, rtol=0)
    g = torch.Generator().manual_seed(100 + seed)
    w_r = torch.randn(r1.shape, generator=g, dtype=r1.dtype)
    w_a = torch.randn(a1.shape, generator=g, dtype=a1.dtype)
    ((r1 * w_r).sum() + (a1 * w_a).sum()).backward()
    ((r2 * w_r).sum() + (a2 * w_a).sum()).backward()
    for name, x, y in zip(["means", "quats", "scales", "opacities", "colors"], ours, ref):
        scale = y.grad.abs().max().clamp_min(1e-12)
        err = ((x.grad - y.grad).abs().max() / scale).item()
        assert err < 1e-4, f"{name}: relative gradient error {err:.2e}"
        assert y.grad.abs().max() > 0, name


def test_official_alpha_clamp_and_near_plane_match_the_reference():
    """The official FiT3D rasterizer clamps alpha at 0.99 and culls z <= 0.2: both are settings here."""
    viewmats, Ks = cameras(2)
    means, quats, scales, opacities, colors = random_scene(12, 3, 5)
    opacities = opacities.clamp_min(0.995)  # every Gaussian hits the clamp at its centre
    ours = _leaves([means, quats, scales, opacities, colors])
    ref = _leaves([t.detach() for t in ours])
    r1, a1 = rasterize(*ours, viewmats, Ks, W, H, backend="torch", max_alpha=0.99, near=2.5)
    r2, a2 = render_reference(*ref, viewmats, Ks, W, H, rules=replace(GSPLAT_RULES, max_alpha=0.99, near=2.5))
    r3, _ = rasterize(*[t.detach() for t in ours], viewmats, Ks, W, H, backend="torch")
    torch.testing.assert_close(r1, r2, atol=1e-4, rtol=0)
    torch.testing.assert_close(a1, a2, atol=1e-4, rtol=0)
    assert float((r1 - r3).detach().abs().max()) > 1e-3  # the settings change the image
    (r1.sum() + a1.sum()).backward()
    (r2.sum() + a2.sum()).backward()
    for x, y in zip(ours, ref):
        assert float((x.grad - y.grad).abs().max() / y.grad.abs().max().clamp_min(1e-12)) < 1e-4


def test_matches_reference_float32_background_and_per_camera_colors():
    viewmats, Ks = cameras(2, torch.float32)
    means, quats, scales, opacities, _ = random_scene(15, 4, 7, torch.float32)
    colors = torch.rand(2, 15, 4, generator=torch.Generator().manual_seed(1))  # [C, N, D]
    bg = torch.tensor([[0.2, 0.5, 1.0, -1.0], [1.0, 0.0, 0.3, 2.0]])
    r1, a1 = rasterize(means, quats, scales, opacities, colors, viewmats, Ks, W, H, backend="torch", background=bg)
    r2, a2 = render_reference(means, quats, scales, opacities, colors, viewmats, Ks, W, H, background=bg)
    torch.testing.assert_close(r1, r2, atol=1e-4, rtol=0)
    torch.testing.assert_close(a1, a2, atol=1e-4, rtol=0)
    # a [D] background is broadcast over cameras
    r3, _ = rasterize(means, quats, scales, opacities, colors, viewmats, Ks, W, H, backend="torch", background=bg[0])
    r4, _ = render_reference(means, quats, scales, opacities, colors, viewmats, Ks, W, H, background=bg[0])
    torch.testing.assert_close(r3, r4, atol=1e-4, rtol=0)


def test_viewmat_gradient_matches_reference():
    viewmats, Ks = cameras(2)
    scene = random_scene(10, 3, 11)
    v1 = viewmats.clone().requires_grad_(True)
    v2 = viewmats.clone().requires_grad_(True)
    r1, a1 = rasterize(*scene, v1, Ks, W, H, backend="torch")
    r2, a2 = render_reference(*scene, v2, Ks, W, H)
    (r1.sum() + a1.square().sum()).backward()
    (r2.sum() + a2.square().sum()).backward()
    torch.testing.assert_close(v1.grad, v2.grad, atol=1e-8, rtol=1e-6)


# ----------------------------------------------------------------------------------------------------------
# Analytic footprint, empty views, cut-offs
# ----------------------------------------------------------------------------------------------------------
def test_isotropic_gaussian_footprint_is_the_analytic_2d_gaussian():
    f, s, z, o = 30.0, 0.05, 2.0, 0.5
    Wd, Hd = 40, 30
    Ks = torch.tensor([[[f, 0, 20.0], [0, f, 15.0], [0, 0, 1]]], dtype=torch.float64)
    viewmats = torch.eye(4, dtype=torch.float64)[None]
    mx, my = 20.3, 14.6  # projected mean: world x = (mx - cx) z / f
    means = torch.tensor([[(mx - 20.0) * z / f, (my - 15.0) * z / f, z]], dtype=torch.float64)
    quats = torch.tensor([[0.3, -0.5, 0.2, 0.7]], dtype=torch.float64)  # any rotation: the Gaussian is isotropic
    scales = torch.full((1, 3), s, dtype=torch.float64)
    colors = torch.ones(1, 1, dtype=torch.float64)
    r, a = rasterize(means, quats, scales, torch.tensor([o], dtype=torch.float64), colors, viewmats, Ks, Wd, Hd,
                     backend="torch")  # fmt: skip
    # near the optical axis the Jacobian is (f/z) I (up to the tiny off-axis term), so sigma_px^2 = (f s / z)^2
    var = (f * s / z) ** 2 + 0.3
    ys, xs = torch.meshgrid(
        torch.arange(Hd, dtype=torch.float64) + 0.5, torch.arange(Wd, dtype=torch.float64) + 0.5, indexing="ij"
    )
    d2 = (xs - mx) ** 2 + (ys - my) ** 2
    expected = o * torch.exp(-0.5 * d2 / var)
    expected = torch.where(expected >= 1 / 255, expected, torch.zeros_like(expected))
    # off-axis term: the mean is 0.3 px / 0.4 px from the principal point, so its effect is ~1e-4 relative
    torch.testing.assert_close(a[0, ..., 0], expected, atol=2e-4, rtol=0)
    torch.testing.assert_close(r[0, ..., 0], expected, atol=2e-4, rtol=0)
    # exact projection for a Gaussian centred on the principal point
    means0 = torch.tensor([[0.0, 0.0, z]], dtype=torch.float64)
    Ks0 = Ks.clone()
    Ks0[0, 0, 2], Ks0[0, 1, 2] = mx, my
    _, a0 = rasterize(means0, quats, scales, torch.tensor([o], dtype=torch.float64), colors, viewmats, Ks0, Wd, Hd,
                      backend="torch")  # fmt: skip
    torch.testing.assert_close(a0[0, ..., 0], expected, atol=1e-12, rtol=0)
    # the footprint ends where alpha drops below 1/255 (no hard 3-sigma box)
    assert int((a0[0, ..., 0] > 0).sum()) == int((expected > 0).sum())


def test_empty_views_render_background():
    _, Ks = cameras(2, torch.float32)
    viewmats = torch.eye(4).repeat(2, 1, 1)
    viewmats[1, :3, 3] = torch.tensor([0.3, -0.2, 0.0])  # second camera shifted sideways: same depths
    means, quats, scales, opacities, colors = random_scene(8, 3, 5, torch.float32)
    bg = torch.tensor([0.1, 0.7, 0.3])
    cases = {
        "behind": means * torch.tensor([1.0, 1.0, -1.0]),
        "off-screen": means + torch.tensor([40.0, 0.0, 0.0]),
        "inside the near plane": means * torch.tensor([1.0, 1.0, 0.001]),
    }
    for name, m in cases.items():
        m = m.clone().requires_grad_(True)
        c = colors.clone().requires_grad_(True)
        r, a = rasterize(m, quats, scales, opacities, c, viewmats, Ks, W, H, backend="torch", background=bg,
                         near=0.01)  # fmt: skip
        assert torch.equal(a, torch.zeros_like(a)), name
        assert torch.allclose(r, bg.expand_as(r)), name
        (r.sum() + a.sum()).backward()  # still differentiable, with zero gradients
        assert m.grad is not None and torch.all(m.grad == 0), name
        assert torch.all(c.grad == 0), name
    _, _, info = rasterize_with_info(means + torch.tensor([40.0, 0, 0]), quats, scales, opacities, colors,
                                     viewmats, Ks, W, H, backend="torch")  # fmt: skip
    assert not info["visible"].any() and torch.all(info["radii"] == 0)


def test_far_plane_culls():
    viewmats, Ks = cameras(1, torch.float32)
    scene = random_scene(6, 3, 9, torch.float32)
    _, a = rasterize(*scene, viewmats, Ks, W, H, backend="torch", far=1.0)
    assert torch.all(a == 0)


def _stack(n: int, opacity: float, dtype=torch.float64):
    """n large Gaussians stacked along the optical axis, front one first in depth (distinct colours)."""
    means = torch.zeros(n, 3, dtype=dtype)
    means[:, 2] = 2.0 + 0.1 * torch.arange(n, dtype=dtype)
    quats = torch.tensor([[1.0, 0, 0, 0]], dtype=dtype).repeat(n, 1)
    scales = torch.full((n, 3), 5.0, dtype=dtype)  # far wider than the image: alpha ~ opacity everywhere
    opacities = torch.full((n,), opacity, dtype=dtype)
    colors = torch.arange(1, n + 1, dtype=dtype)[:, None].repeat(1, 2)
    colors[:, 1] = 1.0
    return means, quats, scales, opacities, colors


def test_transmittance_cutoff_and_alpha_clamp_match_gsplat():
    viewmats = torch.eye(4, dtype=torch.float64)[None]
    # principal point on the centre of pixel (W//2, H//2): sigma is exactly 0 there
    Ks = torch.tensor([[[20.0, 0, W // 2 + 0.5], [0, 20.0, H // 2 + 0.5], [0, 0, 1]]], dtype=torch.float64)
    # opacity 1 is clamped to 0.999: T after one Gaussian is 1e-3, after the second it would be 1e-6 <= 1e-4,
    # so the second is not composited and the pixel stops (the third never counts either).
    r, a = rasterize(*_stack(3, 1.0), viewmats, Ks, W, H, backend="torch")
    centre = r[0, H // 2, W // 2]
    assert torch.allclose(centre, torch.tensor([0.999 * 1.0, 0.999], dtype=r.dtype), atol=1e-9)
    assert torch.allclose(a[0, H // 2, W // 2, 0], torch.tensor(0.999, dtype=a.dtype), atol=1e-9)
    # where alpha is clamped its gradient is zero (as in gsplat and torch.clamp); elsewhere it is not
    leaves, ref = _leaves(_stack(3, 1.0)), _leaves(_stack(3, 1.0))
    with torch.no_grad():
        for t in (leaves[2], ref[2]):
            t[0] = 0.6  # narrower front Gaussian: clamped only near the centre
    r1, a1 = rasterize(*leaves, viewmats, Ks, W, H, backend="torch")
    r2, a2 = render_reference(*ref, viewmats, Ks, W, H)
    torch.testing.assert_close(r1, r2, atol=1e-9, rtol=0)
    (r1.sum() + a1.sum()).backward()
    (r2.sum() + a2.sum()).backward()
    assert ref[3].grad[0].abs() > 0
    for x, y in zip(leaves, ref):
        torch.testing.assert_close(x.grad, y.grad, atol=1e-7 * float(y.grad.abs().max()) + 1e-12, rtol=0)
    # opacity 0.6: T = 0.4^k; 0.4^10 = 1.05e-4 > 1e-4, 0.4^11 = 4.2e-5 <= 1e-4 -> exactly 10 composited
    n, o = 20, 0.6
    _, _, _, _, colors = _stack(n, o)
    r, a = rasterize(*_stack(n, o), viewmats, Ks, W, H, backend="torch")
    k = torch.arange(n, dtype=torch.float64)
    w = o * (1 - o) ** k
    w[10:] = 0
    expected = (w[:, None] * colors).sum(0)
    got = r[0, H // 2, W // 2]
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)
    torch.testing.assert_close(a[0, H // 2, W // 2, 0], torch.tensor(1 - 0.4**10, dtype=a.dtype), atol=1e-4, rtol=0)
    # and the whole image agrees with the reference, gradients included
    leaves = _leaves(_stack(n, o))
    ref = _leaves(_stack(n, o))
    r1, a1 = rasterize(*leaves, viewmats, Ks, W, H, backend="torch")
    r2, a2 = render_reference(*ref, viewmats, Ks, W, H)
    torch.testing.assert_close(r1, r2, atol=1e-6, rtol=0)
    (r1.sum() + a1.sum()).backward()
    (r2.sum() + a2.sum()).backward()
    for x, y in zip(leaves, ref):
        torch.testing.assert_close(x.grad, y.grad, atol=1e-6 * float(y.grad.abs().max()) + 1e-12, rtol=0)


def test_alpha_threshold_skips_faint_gaussians():
    viewmats, Ks = cameras(1)
    means, quats, scales, _, colors = _stack(1, 0.5)
    faint = torch.tensor([0.9 / 255.0], dtype=torch.float64)  # below 1/255 everywhere: culled
    r, a = rasterize(means, quats, scales, faint, colors, viewmats, Ks, W, H, backend="torch")
    assert torch.all(a == 0) and torch.all(r == 0)
    ok = torch.tensor([1.5 / 255.0], dtype=torch.float64)
    _, a = rasterize(means, quats, scales, ok, colors, viewmats, Ks, W, H, backend="torch")
    assert a.max() > 1.0 / 255.0


def test_gradcheck_finite_differences():
    """The analytic backward against finite differences (float64, a scene with no pair near a threshold)."""
    viewmats, _ = cameras(2)
    Ks = torch.tensor([[8.0, 0, 6.0], [0, 8.0, 5.0], [0, 0, 1]], dtype=torch.float64).repeat(2, 1, 1)
    inputs = tuple(t.clone().requires_grad_(True) for t in random_scene(6, 2, 5))

    g = torch.Generator().manual_seed(0)
    wr, wa = torch.randn(2, 10, 12, 2, generator=g, dtype=torch.float64), torch.randn(2, 10, 12, 1, generator=g)

    def render(*args):  # a few random weighted sums of the images keep gradcheck quick
        r, a = rasterize(*args, viewmats, Ks, 12, 10, backend="torch")
        return (r * wr).sum((1, 2)).flatten(), (a * wa.double()).sum((1, 2, 3))

    assert torch.autograd.gradcheck(render, inputs, eps=1e-7, atol=1e-6, rtol=1e-4)


def test_no_gaussians_and_partial_gradients():
    viewmats, Ks = cameras(2)
    empty = [torch.zeros(0, 3), torch.zeros(0, 4), torch.zeros(0, 3), torch.zeros(0), torch.zeros(0, 5)]
    empty = [t.double().requires_grad_(True) for t in empty]
    bg = torch.full((5,), 0.25, dtype=torch.float64)
    r, a = rasterize(*empty, viewmats, Ks, W, H, backend="torch", background=bg)
    assert r.shape == (2, H, W, 5) and torch.all(r == 0.25) and torch.all(a == 0)
    (r.sum() + a.sum()).backward()
    assert empty[0].grad.shape == (0, 3)
    # features only (geometry detached, as the lift stage renders its feature channels), then geometry only
    means, quats, scales, opacities, colors = random_scene(20, 8, 3)
    col = colors.clone().requires_grad_(True)
    r, _ = rasterize(means, quats, scales, opacities, col, viewmats, Ks, W, H, backend="torch")
    r.square().sum().backward()
    ref_col = colors.clone().requires_grad_(True)
    r2, _ = render_reference(means, quats, scales, opacities, ref_col, viewmats, Ks, W, H)
    r2.square().sum().backward()
    torch.testing.assert_close(col.grad, ref_col.grad, atol=1e-10, rtol=1e-8)
    m = means.clone().requires_grad_(True)
    r, _ = rasterize(m, quats, scales, opacities, colors, viewmats, Ks, W, H, backend="torch")
    r.square().sum().backward()
    assert m.grad.abs().sum() > 0


@pytest.mark.parametrize("with_background", [False, True])
def test_geometry_channels_equals_two_renders(with_background):
    """One call with geometry_channels=k == RGB render (geometry grads) + feature render (geometry detached)."""
    viewmats, Ks = cameras(2)
    means, quats, scales, opacities, colors = random_scene(25, 7, 13)
    bg = torch.linspace(-1, 1, 7, dtype=torch.float64) if with_background else None
    k = 3
    one = _leaves([means, quats, scales, opacities, colors])
    r, a, info = rasterize_with_info(*one, viewmats, Ks, W, H, backend="torch", background=bg, geometry_channels=k)
    two = _leaves([means, quats, scales, opacities, colors])
    r_rgb, a_rgb, info2 = rasterize_with_info(*two[:4], two[4][:, :k], viewmats, Ks, W, H, backend="torch",
                                              background=None if bg is None else bg[:k])  # fmt: skip
    r_feat, _ = rasterize(*[t.detach() for t in two[:4]], two[4][:, k:], viewmats, Ks, W, H, backend="torch",
                          background=None if bg is None else bg[k:])  # fmt: skip
    torch.testing.assert_close(r, torch.cat([r_rgb, r_feat], -1), atol=1e-12, rtol=0)
    torch.testing.assert_close(a, a_rgb, atol=1e-12, rtol=0)
    g = torch.Generator().manual_seed(3)
    wr, wa = torch.randn(r.shape, generator=g, dtype=r.dtype), torch.randn(a.shape, generator=g, dtype=a.dtype)
    ((r * wr).sum() + (a * wa).sum()).backward()
    ((torch.cat([r_rgb, r_feat], -1) * wr).sum() + (a_rgb * wa).sum()).backward()
    for x, y in zip(one, two):
        torch.testing.assert_close(x.grad, y.grad, atol=1e-10, rtol=1e-8)
    torch.testing.assert_close(info["means2d"].grad, info2["means2d"].grad, atol=1e-10, rtol=1e-8)
    # and it differs from letting every channel move the geometry
    full = _leaves([means, quats, scales, opacities, colors])
    r3, a3 = rasterize(*full, viewmats, Ks, W, H, backend="torch", background=bg)
    ((r3 * wr).sum() + (a3 * wa).sum()).backward()
    assert not torch.allclose(full[0].grad, one[0].grad)


# ----------------------------------------------------------------------------------------------------------
# Chunking, info, densification statistics
# ----------------------------------------------------------------------------------------------------------
def test_chunked_render_equals_unchunked():
    viewmats, Ks = cameras(2, torch.float32)
    scene = random_scene(40, 6, 21, torch.float32)
    l1, l2 = _leaves(scene), _leaves(scene)
    r1, a1, info1 = rasterize_with_info(*l1, viewmats, Ks, W, H, backend="torch")
    r2, a2, info2 = rasterize_with_info(*l2, viewmats, Ks, W, H, backend="torch", chunk_pairs=50)
    assert info1["n_bands"] == 1 and 4 < info2["n_bands"] <= 2 * H, info2["n_bands"]
    torch.testing.assert_close(r1, r2, atol=1e-6, rtol=0)
    torch.testing.assert_close(a1, a2, atol=1e-6, rtol=0)
    g = torch.randn(r1.shape, generator=torch.Generator().manual_seed(0))
    ((r1 * g).sum() + a1.sum()).backward()
    ((r2 * g).sum() + a2.sum()).backward()
    for x, y in zip(l1, l2):
        torch.testing.assert_close(x.grad, y.grad, atol=1e-5 * float(y.grad.abs().max()), rtol=0)
    torch.testing.assert_close(info1["means2d"].grad, info2["means2d"].grad, atol=1e-5, rtol=1e-4)


def test_info_matches_projection_and_gives_densification_stats():
    viewmats, Ks = cameras(2)
    leaves = _leaves(random_scene(20, 3, 4))
    # move a few Gaussians behind both cameras so they are not visible
    with torch.no_grad():
        leaves[0][:3, 2] = -5.0
    r, a, info = rasterize_with_info(*leaves, viewmats, Ks, W, H, backend="torch")
    proj = project_gaussians(*[t.detach() for t in leaves[:4]], viewmats, Ks, W, H)
    assert torch.equal(info["radii"], proj["radii"])
    torch.testing.assert_close(info["means2d"].detach(), proj["means2d"])
    assert info["radii"].shape == (2, 20, 2) and info["radii"].dtype == torch.int32
    assert info["means2d"].shape == (2, 20, 2) and info["depths"].shape == (2, 20)
    assert not info["visible"][:, :3].any() and info["visible"].any()
    (r.sum() + a.sum()).backward()
    grad = info["means2d"].grad
    assert grad is not None and grad.shape == (2, 20, 2)
    assert torch.all(grad[~info["visible"]] == 0)
    norm_sum, count = means2d_grad_stats(info)
    assert torch.equal(count, info["visible"].sum(0).to(count.dtype))
    scaled = grad.clone()
    scaled[..., 0] *= W / 2 * 2
    scaled[..., 1] *= H / 2 * 2
    expected = (scaled.norm(dim=-1) * info["visible"]).sum(0)
    torch.testing.assert_close(norm_sum, expected)


def test_backend_selection_and_errors():
    viewmats, Ks = cameras(1, torch.float32)
    scene = random_scene(5, 3, 0, torch.float32)
    r_auto, _ = rasterize(*scene, viewmats, Ks, W, H)  # CPU tensors: always the torch renderer
    r_torch, _ = rasterize(*scene, viewmats, Ks, W, H, backend="torch")
    assert torch.equal(r_auto, r_torch)
    with pytest.raises(ValueError):
        rasterize(*scene, viewmats, Ks, W, H, backend="nope")
    if not gsplat_available():
        with pytest.raises(RuntimeError, match="gsplat"):
            rasterize(*scene, viewmats, Ks, W, H, backend="gsplat")
    with pytest.raises(ValueError):
        rasterize(scene[0][:, :2], *scene[1:], viewmats, Ks, W, H)


def test_many_gaussians_random_scene_float32_against_reference():
    """A denser scene (pairs overlapping heavily, cut-off active on many pixels) in float32."""
    viewmats, Ks = cameras(2, torch.float32)
    means, quats, scales, opacities, colors = random_scene(60, 3, 31, torch.float32)
    opacities = opacities.clamp_min(0.5)
    r1, a1 = rasterize(means, quats, scales, opacities, colors, viewmats, Ks, W, H, backend="torch")
    r2, a2 = render_reference(means, quats, scales, opacities, colors, viewmats, Ks, W, H)
    torch.testing.assert_close(r1, r2, atol=1e-4, rtol=0)
    torch.testing.assert_close(a1, a2, atol=1e-4, rtol=0)


def test_gaussians_beyond_the_field_of_view_use_the_clamped_jacobian():
    """Wide Gaussians centred outside the image (x/z beyond 1.3x the half field of view) reach into it."""
    viewmats, Ks = cameras(1)
    N = 6
    z = torch.linspace(2.0, 3.0, N, dtype=torch.float64)
    side = torch.tensor([1, -1, 1, -1, 1, -1], dtype=torch.float64)
    means = torch.stack([side * 1.05 * z, 0.3 * side * z, z], dim=1)  # x/z = 1.05 > 0.6 * 1.3 (W/2f = 0.6)
    quats = torch.randn(N, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    scales = torch.tensor([[1.2, 0.4, 0.8]], dtype=torch.float64).repeat(N, 1)
    opacities = torch.full((N,), 0.8, dtype=torch.float64)
    colors = torch.rand(N, 3, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    leaves = _leaves([means, quats, scales, opacities, colors])
    ref = _leaves([means, quats, scales, opacities, colors])
    r1, a1 = rasterize(*leaves, viewmats, Ks, W, H, backend="torch")
    r2, a2 = render_reference(*ref, viewmats, Ks, W, H)
    assert a2.max() > 0.1
    torch.testing.assert_close(r1, r2, atol=1e-6, rtol=0)
    torch.testing.assert_close(a1, a2, atol=1e-6, rtol=0)
    (r1.sum() + a1.sum()).backward()
    (r2.sum() + a2.sum()).backward()
    for x, y in zip(leaves, ref):
        torch.testing.assert_close(x.grad, y.grad, atol=1e-6 * float(y.grad.abs().max()), rtol=0)


def test_float32_render_of_a_large_scene_matches_float64():
    """~0.5 M composited pairs: the float32 path (float64 transmittance) stays within 1e-4 of float64."""
    Wd, Hd, N = 96, 72, 6000
    g = torch.Generator().manual_seed(8)
    means = torch.cat([(torch.rand(N, 2, generator=g) - 0.5) * torch.tensor([3.2, 2.4]),
                       2.0 + 2.0 * torch.rand(N, 1, generator=g)], dim=1).double()  # fmt: skip
    quats = torch.randn(N, 4, generator=g).double()
    scales = (0.03 + 0.05 * torch.rand(N, 3, generator=g)).double()
    opacities = (0.05 + 0.3 * torch.rand(N, generator=g)).double()
    colors = torch.rand(N, 4, generator=g).double()
    viewmats = torch.eye(4, dtype=torch.float64)[None]
    Ks = torch.tensor([[[60.0, 0, Wd / 2], [0, 60.0, Hd / 2], [0, 0, 1]]], dtype=torch.float64)
    args64 = [means, quats, scales, opacities, colors, viewmats, Ks]
    r64, a64, info = rasterize_with_info(*args64, Wd, Hd, backend="torch")
    r32, a32 = rasterize(*[t.float() for t in args64], Wd, Hd, backend="torch")
    assert 0.3 < float(a64.mean()) < 0.999
    for x32, x64 in ((r32, r64), (a32, a64)):
        err = (x32.double() - x64).abs()
        # a pair whose alpha is within float32 rounding of 1/255 may flip in or out (<= 0.004 T |colour|):
        # allow a handful of those, nothing systematic (a float32 transmittance sum is off by ~1e-2 here)
        assert float((err > 1e-4).double().mean()) < 1e-3, float(err.max())
        assert float(err.max()) < 4e-3 and float(err.median()) < 1e-6


# ----------------------------------------------------------------------------------------------------------
# gsplat parity (only where gsplat and CUDA exist)
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.skipif(not gsplat_available(), reason="gsplat with CUDA not available")
@pytest.mark.parametrize("D", [3, 35])
def test_torch_backend_matches_gsplat(D):
    """Same inputs through gsplat (CUDA kernels) and our renderer (on CUDA tensors), forward and backward.

    gsplat evaluates exp/log with fast-math intrinsics, so a pair whose alpha is within rounding of 1/255 can
    flip (a change of at most ~0.004·T·|colour| in one pixel) and a ceil'd radius can differ by one: the checks
    allow a few such pixels and compare gradients by relative norm.
    """
    dev = torch.device("cuda")
    viewmats, Ks = cameras(2, torch.float32)
    viewmats, Ks = viewmats.to(dev), Ks.to(dev)
    scene = [t.to(dev) for t in random_scene(60, D, 41, torch.float32)]
    l1, l2 = _leaves(scene), _leaves(scene)
    bg = torch.rand(D, device=dev)
    r1, a1, i1 = rasterize_with_info(*l1, viewmats, Ks, W, H, backend="torch", background=bg)
    r2, a2, i2 = rasterize_with_info(*l2, viewmats, Ks, W, H, backend="gsplat", background=bg)
    assert i1["backend"] == "torch" and i2["backend"] == "gsplat"
    for x, y in ((r1, r2), (a1, a2)):
        err = (x - y).abs()
        assert float((err > 2e-4).float().mean()) < 0.01, float(err.max())
        assert float(err.max()) < 5e-3
    assert float((i1["radii"] - i2["radii"]).abs().max()) <= 1
    assert float((i1["visible"] != i2["visible"]).float().mean()) < 0.02
    g = torch.randn_like(r1)
    ((r1 * g).sum() + a1.sum()).backward()
    ((r2 * g).sum() + a2.sum()).backward()
    for name, x, y in zip(["means", "quats", "scales", "opacities", "colors"], l1, l2):
        rel = float((x.grad - y.grad).norm() / y.grad.norm().clamp_min(1e-12))
        assert rel < 1e-2, f"{name}: relative gradient difference {rel:.2e}"
    m1, m2 = i1["means2d"].grad, i2["means2d"].grad
    assert float((m1 - m2).norm() / m2.norm()) < 1e-2


def test_frozen_geometry_weights_render_the_same_features():
    """composite_weights + Compositor (a feature refit's fast path) == rasterize, values and gradients."""
    from fit3d_helpers.render import Compositor, composite_weights

    viewmats, Ks = cameras(2, torch.float32)
    means, quats, scales, opacities, _ = random_scene(40, 3, 3, torch.float32)
    feats = torch.randn(40, 7, generator=torch.Generator().manual_seed(2), requires_grad=True)
    for c in range(2):
        ref, _ = rasterize(
            means,
            quats,
            scales,
            opacities,
            feats,
            viewmats[c : c + 1],
            Ks[c : c + 1],
            W,
            H,
            backend="torch",
            near=0.2,
            max_alpha=0.99,
        )
        w = composite_weights(means, quats, scales, opacities, viewmats[c], Ks[c], W, H, near=0.2, max_alpha=0.99)
        ours = Compositor(w, 40, W, H)(feats)
        torch.testing.assert_close(ours, ref[0], atol=1e-5, rtol=1e-5)
        g_ref = torch.autograd.grad((ref[0] * torch.arange(7.0)).sum(), feats)[0]
        g_ours = torch.autograd.grad((ours * torch.arange(7.0)).sum(), feats)[0]
        torch.testing.assert_close(g_ours, g_ref, atol=1e-5, rtol=1e-5)
    assert int(w[0].numel()) > 0 and bool((w[2] > 0).all())


def test_frozen_weights_are_remembered_by_content(monkeypatch: pytest.MonkeyPatch):
    """frozen_weights computes a view's weights once per geometry; moved Gaussians or another camera recompute."""
    from fit3d_helpers import render as R

    calls = []
    real = R.composite_weights
    monkeypatch.setattr(R, "composite_weights", lambda *a, **k: calls.append(1) or real(*a, **k))
    monkeypatch.setattr(R, "_WEIGHTS_CACHE", type(R._WEIGHTS_CACHE)())
    viewmats, Ks = cameras(2, torch.float32)
    means, quats, scales, opacities, _ = random_scene(40, 3, 3, torch.float32)
    args = dict(near=0.2, max_alpha=0.99)
    a = R.frozen_weights(means, quats, scales, opacities, viewmats[0], Ks[0], W, H, **args)
    b = R.frozen_weights(means.clone(), quats, scales, opacities, viewmats[0].clone(), Ks[0], W, H, **args)
    assert len(calls) == 1 and a is b
    R.frozen_weights(means, quats, scales, opacities, viewmats[1], Ks[1], W, H, **args)
    moved = means.clone()
    moved[0, 0] += 1e-3
    R.frozen_weights(moved, quats, scales, opacities, viewmats[0], Ks[0], W, H, **args)
    R.frozen_weights(means, quats, scales, opacities, viewmats[0], Ks[0], W, H, near=0.2, max_alpha=0.999)
    assert len(calls) == 4
    # over budget: other geometries go first, and a view that does not fit is not kept
    one = a.nbytes
    monkeypatch.setattr(R, "WEIGHTS_CACHE_BYTES", 2 * one)
    assert len(R._WEIGHTS_CACHE) == 4
    R.frozen_weights(means, quats, scales, opacities, viewmats[1], Ks[1], W, H, near=0.3, max_alpha=0.99)
    kept = {k[0] for k in R._WEIGHTS_CACHE}
    assert kept == {R.geometry_digest(means, quats, scales, opacities)}  # the moved geometry's view went first
    assert len(R._WEIGHTS_CACHE) == 3  # this geometry's three views stay; the new one did not fit and is not kept


def test_remembered_feature_render_equals_the_full_render():
    """lift.render_features(remember=True), the fine-tuning targets' path on a CPU, == the full rasterizer."""
    from fit3d_helpers.lift import render_features

    viewmats, Ks = cameras(2, torch.float32)
    means, quats, scales, opacities, _ = random_scene(40, 3, 3, torch.float32)
    params = {
        "means": means,
        "quats": quats,
        "log_scales": torch.log(scales),
        "opacity_logits": torch.logit(opacities),
        "features": torch.randn(40, 5, generator=torch.Generator().manual_seed(3)),
    }
    ref = render_features(params, viewmats, Ks, W, H, backend="torch", near=0.2, max_alpha=0.99)
    ours = render_features(params, viewmats, Ks, W, H, backend="torch", near=0.2, max_alpha=0.99, remember=True)
    for x, y in zip(ours, ref):
        assert x.shape == y.shape
        torch.testing.assert_close(x, y, atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------------------------------------
# The reference's official rules (Inria's rasterizer as FiT3D ships it)
# ----------------------------------------------------------------------------------------------------------
def _wide_gaussian(x_px: float, y_px: float, sigma_px: float, z: float = 2.0, f: float = 20.0):
    """One isotropic Gaussian on the optical axis, the principal point at pixel-centre coordinate (x_px, y_px) (so
    J = f/z I exactly): std sigma_px before the 0.3 px² low-pass, opacity 1, colour 1."""
    Ks = torch.tensor([[[f, 0, x_px], [0, f, y_px], [0, 0, 1]]], dtype=torch.float64)
    s = sigma_px * z / f
    scene = (torch.tensor([[0.0, 0.0, z]], dtype=torch.float64), torch.tensor([[1.0, 0, 0, 0]], dtype=torch.float64),
             torch.full((1, 3), s, dtype=torch.float64), torch.ones(1, dtype=torch.float64),
             torch.ones(1, 1, dtype=torch.float64))  # fmt: skip
    return scene, torch.eye(4, dtype=torch.float64)[None], Ks


def test_official_footprint_is_the_3_sigma_square_on_whole_16px_tiles():
    """forward.cu:237 radius ceil(3 sqrt(lambda_max)), auxiliary.h getRect: whole 16x16 tiles, or nothing."""
    Wd, Hd = 64, 48
    # sigma 10 px: radius ceil(3 sqrt(100.3 + 0.316)) = 31; alpha >= 1/255 reaches 33.3 px. Mean at integer pixel
    # coordinate 1 (centre 1.5): tiles [0, (1 + 31 + 15) // 16) = [0, 2), so pixels >= 32 are never evaluated.
    scene, vm, Ks = _wide_gaussian(1.5, 1.5, 10.0)
    official, a_off = render_reference(*scene, vm, Ks, Wd, Hd, rules=OFFICIAL_RULES)
    same_else = replace(GSPLAT_RULES, near=0.2, max_alpha=0.99)
    ours, a_ours = render_reference(*scene, vm, Ks, Wd, Hd, rules=same_else)
    fast, _ = rasterize(*scene, vm, Ks, Wd, Hd, backend="torch", near=0.2, max_alpha=0.99)
    torch.testing.assert_close(fast, ours, atol=1e-9, rtol=0)
    inside = torch.zeros(Hd, Wd, dtype=torch.bool)
    inside[:32, :32] = True
    assert torch.all(official[0, ~inside] == 0) and torch.all(a_off[0, ~inside] == 0)
    torch.testing.assert_close(official[0][inside], ours[0][inside], atol=1e-12, rtol=0)
    assert float(ours[0, 1, 32, 0]) > 1 / 255  # our rule renders the pixel the official tiles leave out
    # a mean at 15 (centre 15.5): tiles [0, 3) -> pixel 47, 32 px from the mean (beyond the 31 px square), counts
    scene, vm, Ks = _wide_gaussian(15.5, 1.5, 10.0)
    official, _ = render_reference(*scene, vm, Ks, Wd, Hd, rules=OFFICIAL_RULES)
    assert float(official[0, 1, 47, 0]) > 1 / 255 and float(official[0, 1, 48, 0]) == 0
    # a mean at 9 (centre 9.5): 16-px tiles [0, 3) reach pixel 40 (31 px away); 8-px tiles would stop at 40
    scene, vm, Ks = _wide_gaussian(9.5, 1.5, 10.0)
    official, _ = render_reference(*scene, vm, Ks, Wd, Hd, rules=OFFICIAL_RULES)
    assert float(official[0, 1, 40, 0]) > 1 / 255
    # a Gaussian whose square touches no tile is not rendered at all (its faint tail would reach the image)
    scene, vm, Ks = _wide_gaussian(-32.0, 1.5, 10.0)
    official, _ = render_reference(*scene, vm, Ks, Wd, Hd, rules=OFFICIAL_RULES)
    ours, _ = render_reference(*scene, vm, Ks, Wd, Hd, rules=same_else)
    assert float(official.abs().max()) == 0 and float(ours[0, 1, 0, 0]) > 1 / 255


def test_official_alpha_clamp_stop_and_near_plane():
    """forward.cu:353-360: alpha <= 0.99, stop before T < 1e-4; auxiliary.h:154: z <= 0.2 culled."""
    viewmats = torch.eye(4, dtype=torch.float64)[None]
    Ks = torch.tensor([[[20.0, 0, W // 2 + 0.5], [0, 20.0, H // 2 + 0.5], [0, 0, 1]]], dtype=torch.float64)
    # opacity 1 -> alpha 0.99: T = 0.01, then 1e-4 (not < 1e-4: composited), then 1e-6 < 1e-4: stop
    r, a = render_reference(*_stack(3, 1.0), viewmats, Ks, W, H, rules=OFFICIAL_RULES)
    torch.testing.assert_close(r[0, H // 2, W // 2], torch.tensor([0.99 + 0.01 * 0.99 * 2, 0.9999], dtype=r.dtype))
    torch.testing.assert_close(a[0, H // 2, W // 2, 0], torch.tensor(0.9999, dtype=a.dtype))
    r, a = render_reference(*_stack(3, 1.0), viewmats, Ks, W, H)  # gsplat: 0.999, then T = 1e-6 <= 1e-4: stop
    torch.testing.assert_close(a[0, H // 2, W // 2, 0], torch.tensor(0.999, dtype=a.dtype))
    # float32 opacities whose T lands exactly on float32(1e-4) after the third: the official "<" composites it
    stack = [t.float() for t in _stack(3, 0.5)]
    stack[3] = torch.tensor([0.75, 0.98728645, 0.9685375], dtype=torch.float32)
    _, a = render_reference(*stack, viewmats.float(), Ks.float(), W, H, rules=OFFICIAL_RULES)
    assert float(a[0, H // 2, W // 2, 0]) == float(1 - torch.tensor(1e-4, dtype=torch.float32))
    inclusive = replace(OFFICIAL_RULES, t_stop_inclusive=True)
    _, a = render_reference(*stack, viewmats.float(), Ks.float(), W, H, rules=inclusive)
    assert float(a[0, H // 2, W // 2, 0]) < 0.9996  # "<=" stops before it
    means, quats, scales, opacities, colors = _stack(2, 0.6)
    means[0, 2] = 0.2  # exactly on the official near plane: culled there, kept by z < near
    r_off, _ = render_reference(means, quats, scales, opacities, colors, viewmats, Ks, W, H, rules=OFFICIAL_RULES)
    r_ours, _ = render_reference(means, quats, scales, opacities, colors, viewmats, Ks, W, H,
                                 rules=replace(GSPLAT_RULES, near=0.2))  # fmt: skip
    assert float(r_off[0, H // 2, W // 2, 0]) == pytest.approx(0.6 * 2.0)  # only the second Gaussian
    assert float(r_ours[0, H // 2, W // 2, 0]) == pytest.approx(0.6 * 1.0 + 0.4 * 0.6 * 2.0)


def test_official_rules_differ_from_ours_by_little_on_a_random_scene():
    """Same Gaussians, centred principal point: the official rules against the fast renderer at near 0.2,
    alpha clamp 0.99 (the course's stage-1 settings); the rest (footprint, stop) is a small difference."""
    viewmats, _ = cameras(2)
    Ks = torch.tensor([[20.0, 0, W / 2], [0, 22.0, H / 2], [0, 0, 1]], dtype=torch.float64).repeat(2, 1, 1)
    scene = random_scene(20, 3, 4)
    fast, a_fast = rasterize(*scene, viewmats, Ks, W, H, backend="torch", near=0.2, max_alpha=0.99)
    off, a_off = render_reference(*scene, viewmats, Ks, W, H, rules=OFFICIAL_RULES)
    diff = float((fast - off).abs().max())  # 0.0059 measured
    assert 1e-3 < diff < 0.02, diff
    assert float((a_fast - a_off).abs().mean()) < 1e-3
