"""Our renderer's projection and our SH colours against gsplat's own pure-PyTorch reference code, on the CPU.

gsplat ships a PyTorch reference (``gsplat.cuda._torch_impl``) that its tests use to check its CUDA kernels. The
projection (``_fully_fused_projection``) and SH evaluation (``_spherical_harmonics``) parts of it are plain torch, so
they run here without CUDA; its rasterization reference needs CUDA kernels (tile intersection) and nerfacc, so the
full torch-vs-gsplat render comparison stays in ``test_render.py::test_torch_backend_matches_gsplat`` (GPU only).
These are private gsplat functions: the tests skip when gsplat is missing or moved them.
"""

from __future__ import annotations

import pytest
import torch

from fit3d_helpers.gaussians import sh_to_rgb
from fit3d_helpers.render import project_gaussians

ref = pytest.importorskip("gsplat.cuda._torch_impl", reason="gsplat is not installed (pip install -e '.[dev]')")
if not all(hasattr(ref, f) for f in ("_fully_fused_projection", "_quat_scale_to_covar_preci", "_spherical_harmonics")):
    pytest.skip("this gsplat version has no pure-torch projection/SH reference", allow_module_level=True)

W, H = 40, 30


def _scene(N: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(N, 3, generator=g, dtype=torch.float64) * torch.tensor([1.5, 1.0, 1.2], dtype=torch.float64)
    means[:, 2] += 2.5  # most in front of the cameras, some behind (culled) and some beside the image
    quats = torch.randn(N, 4, generator=g, dtype=torch.float64)
    scales = torch.rand(N, 3, generator=g, dtype=torch.float64) * 0.3 + 0.01
    viewmats = torch.eye(4, dtype=torch.float64).repeat(2, 1, 1)
    c, s = torch.cos(torch.tensor(0.3, dtype=torch.float64)), torch.sin(torch.tensor(0.3, dtype=torch.float64))
    viewmats[1, :3, :3] = torch.tensor([[c, 0, s], [0, 1, 0], [-s, 0, c]], dtype=torch.float64)
    viewmats[1, :3, 3] = torch.tensor([0.4, -0.2, 0.3], dtype=torch.float64)
    Ks = torch.tensor(
        [[[35.0, 0, 19.7], [0, 33.0, 15.2], [0, 0, 1]], [[28.0, 0, 20.0], [0, 28.0, 15.0], [0, 0, 1]]],
        dtype=torch.float64,
    )
    return means, quats, scales, viewmats, Ks


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_projection_matches_gsplat_reference(seed: int) -> None:
    means, quats, scales, viewmats, Ks = _scene(400, seed)
    covars, _ = ref._quat_scale_to_covar_preci(quats, scales, compute_preci=False)  # [N, 3, 3]
    radii_ref, means2d_ref, depths_ref, conics_ref, _ = ref._fully_fused_projection(
        means, covars, viewmats, Ks, W, H, eps2d=0.3
    )
    # opacity 1: our opacity-aware footprint is then min(3.33, sqrt(2 ln 255) = 3.329) sigma, gsplat's reference 3.33
    ours = project_gaussians(means, quats, scales, torch.ones(400, dtype=torch.float64), viewmats, Ks, W, H, eps2d=0.3)
    visible = (radii_ref > 0).all(-1) & ours["valid"]  # [C, N]
    assert visible.sum() > 300, "the test scene should be mostly visible"
    assert (
        ours["valid"] != (radii_ref > 0).any(-1)
    ).float().mean() < 0.01  # the same Gaussians culled (edge cases aside)
    torch.testing.assert_close(ours["depths"], depths_ref)
    torch.testing.assert_close(ours["means2d"][visible], means2d_ref[visible])
    torch.testing.assert_close(ours["conics"][visible], conics_ref[visible])
    diff = (ours["radii"][visible] - radii_ref[visible]).abs()
    assert diff.max() <= 1 and (diff == 0).float().mean() > 0.95


def test_projection_gradients_match_gsplat_reference() -> None:
    """Both are autograd through plain torch, but through different formulas: the gradients must agree too."""
    means, quats, scales, viewmats, Ks = _scene(60, 3)
    leaves = [t.clone().requires_grad_(True) for t in (means, quats, scales)]
    ours = project_gaussians(*leaves, torch.ones(60, dtype=torch.float64), viewmats, Ks, W, H)
    visible = ours["valid"].detach()
    weight = torch.randn(2, 60, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * visible[..., None]
    (torch.cat([ours["means2d"], ours["conics"]], -1) * weight).sum().backward()
    grads_ours = [t.grad.clone() for t in leaves]

    leaves = [t.clone().requires_grad_(True) for t in (means, quats, scales)]
    covars, _ = ref._quat_scale_to_covar_preci(leaves[1], leaves[2], compute_preci=False)
    _, means2d, _, conics, _ = ref._fully_fused_projection(leaves[0], covars, viewmats, Ks, W, H)
    (torch.cat([means2d, conics], -1) * weight).sum().backward()
    for name, a, b in zip(("means", "quats", "scales"), grads_ours, (t.grad for t in leaves)):
        torch.testing.assert_close(a, b, msg=name)


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_sh_colours_match_gsplat_reference(degree: int) -> None:
    """Our sh_to_rgb is gsplat's spherical_harmonics + 0.5, clamped at 0 (what gsplat.rasterization does with SH)."""
    g = torch.Generator().manual_seed(degree)
    N, K = 200, (degree + 1) ** 2
    coeffs = torch.randn(N, 16, 3, generator=g, dtype=torch.float64) * 0.5  # room for degree 3; only K used
    dirs = torch.randn(N, 3, generator=g, dtype=torch.float64) * 3.0  # not unit: both normalise
    expected = torch.clamp_min(ref._spherical_harmonics(degree, dirs, coeffs[:, :K]) + 0.5, 0.0)
    ours = sh_to_rgb(coeffs[:, :1], coeffs[:, 1:K], dirs, degree)
    torch.testing.assert_close(ours, expected)
