"""The CPU rasterizer's two code paths give the same renders and gradients: the compiled per-pixel kernel
(``fit3d_helpers.render_kernel``, the default where a C++ compiler works) and the pure-PyTorch pair tensors
(``FIT3D_RENDER_KERNEL=torch``, and the fallback). ``tests/test_render.py`` checks the default path against the
independent per-pixel reference; these tests pin the fallback to it, case by case."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from fit3d_helpers import render_kernel
from fit3d_helpers.render import rasterize_with_info

W, H = 26, 18

needs_kernel = pytest.mark.skipif(not render_kernel.available(), reason="no C++ compiler: only the torch path")


def _cameras(C: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    viewmats = torch.eye(4, dtype=dtype).repeat(C, 1, 1)
    for c in range(C):
        a = 0.2 * c
        viewmats[c, :3, :3] = torch.tensor(
            [[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]], dtype=dtype
        )
        viewmats[c, :3, 3] = torch.tensor([0.3 * c, -0.1 * c, 0.1 * c], dtype=dtype)
    Ks = torch.tensor([[22.0, 0, W / 2 - 0.4], [0, 24.0, H / 2 + 0.3], [0, 0, 1]], dtype=dtype).repeat(C, 1, 1)
    return viewmats, Ks


def _scene(N: int, D: int, seed: int, dtype: torch.dtype, C: int = 1, per_camera: bool = False, opaque=False):
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(N, 3, generator=g, dtype=dtype) * torch.tensor([0.8, 0.6, 0.5], dtype=dtype)
    means[:, 2] += 3.0
    quats = torch.randn(N, 4, generator=g, dtype=dtype)
    scales = torch.rand(N, 3, generator=g, dtype=dtype) * 0.25 + 0.03
    opacities = torch.rand(N, generator=g, dtype=dtype) * 0.9 + 0.05
    if opaque:  # the transmittance stop and the alpha clamp are reached
        opacities = opacities.clamp_min(0.9)
        scales = scales * 2.0
    shape = (C, N, D) if per_camera else (N, D)
    colors = torch.rand(*shape, generator=g, dtype=dtype)
    return [means, quats, scales, opacities, colors]


def _render(scene, viewmats, Ks, path: str, monkeypatch: pytest.MonkeyPatch, size=(W, H), **kw):
    monkeypatch.setenv("FIT3D_RENDER_KERNEL", path)
    leaves = [t.clone().requires_grad_(True) for t in scene]
    r, a, info = rasterize_with_info(*leaves, viewmats, Ks, *size, backend="torch", **kw)
    g = torch.Generator().manual_seed(7)
    wr = torch.randn(r.shape, generator=g, dtype=r.dtype)
    wa = torch.randn(a.shape, generator=g, dtype=a.dtype)
    ((r * wr).sum() + (a * wa).sum()).backward()
    grads = [t.grad for t in leaves] + [info["means2d"].grad]
    return r.detach(), a.detach(), grads, info


def _assert_same(x, y, rel: float) -> None:
    r1, a1, g1, i1 = x
    r2, a2, g2, i2 = y
    assert i1["n_pairs"] == i2["n_pairs"] > 0
    torch.testing.assert_close(r1, r2, atol=rel, rtol=0)
    torch.testing.assert_close(a1, a2, atol=rel, rtol=0)
    for name, u, v in zip(["means", "quats", "scales", "opacities", "colors", "means2d"], g1, g2):
        scale = float(v.abs().max())
        assert scale > 0, name
        err = float((u - v).abs().max()) / scale
        assert err < rel * 10, f"{name}: relative gradient difference {err:.2e}"


@needs_kernel
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize(
    "case",
    [
        {},
        {"opaque": True},  # transmittance stop and alpha clamp
        {"max_alpha": 0.99, "near": 2.4, "opaque": True},  # the official clamp and near plane
        {"background": True},
        {"geometry_channels": 2, "background": True},
        {"per_camera": True},
        {"chunk_pairs": 60},  # several row bands
    ],
    ids=["plain", "opaque", "official-clamp", "background", "geometry-channels", "per-camera-colours", "bands"],
)
def test_kernel_equals_torch_path(dtype, case, monkeypatch):
    case = dict(case)
    C, D = 2, 5
    scene = _scene(40, D, 3, dtype, C=C, per_camera=case.pop("per_camera", False), opaque=case.pop("opaque", False))
    viewmats, Ks = _cameras(C, dtype)
    if case.pop("background", False):
        case["background"] = torch.linspace(-0.5, 1.5, D, dtype=dtype)
    kernel = _render(scene, viewmats, Ks, "auto", monkeypatch, **case)
    torch_path = _render(scene, viewmats, Ks, "torch", monkeypatch, **case)
    _assert_same(kernel, torch_path, 1e-10 if dtype == torch.float64 else 2e-5)
    if "chunk_pairs" in case:
        assert kernel[3]["n_bands"] == torch_path[3]["n_bands"] > 2


@needs_kernel
def test_kernel_handles_wide_channels_and_a_larger_scene(monkeypatch):
    """67 channels (RGB + 64 features, the lift's case) and footprints spanning many 8x8 tiles."""
    scene = _scene(300, 67, 11, torch.float32)
    viewmats, Ks = _cameras(1, torch.float32)
    _assert_same(
        _render(scene, viewmats, Ks, "auto", monkeypatch), _render(scene, viewmats, Ks, "torch", monkeypatch), 2e-5
    )


@needs_kernel
def test_gradient_only_for_colours_or_only_for_geometry(monkeypatch):
    """Either half of the backward may be skipped (frozen geometry, frozen colours)."""
    monkeypatch.setenv("FIT3D_RENDER_KERNEL", "auto")
    means, quats, scales, opacities, colors = _scene(30, 4, 5, torch.float64)
    viewmats, Ks = _cameras(1, torch.float64)
    c = colors.clone().requires_grad_(True)
    r, _, _ = rasterize_with_info(means, quats, scales, opacities, c, viewmats, Ks, W, H, backend="torch")
    r.sum().backward()
    m = means.clone().requires_grad_(True)
    r2, a2, _ = rasterize_with_info(m, quats, scales, opacities, colors, viewmats, Ks, W, H, backend="torch")
    (r2.sum() + a2.sum()).backward()
    monkeypatch.setenv("FIT3D_RENDER_KERNEL", "torch")
    c_ref, m_ref = colors.clone().requires_grad_(True), means.clone().requires_grad_(True)
    rasterize_with_info(means, quats, scales, opacities, c_ref, viewmats, Ks, W, H, backend="torch")[0].sum().backward()
    r4, a4, _ = rasterize_with_info(m_ref, quats, scales, opacities, colors, viewmats, Ks, W, H, backend="torch")
    (r4.sum() + a4.sum()).backward()
    torch.testing.assert_close(c.grad, c_ref.grad, atol=1e-10, rtol=0)
    torch.testing.assert_close(m.grad, m_ref.grad, atol=1e-9, rtol=1e-9)


def test_falls_back_to_torch_when_the_kernel_cannot_be_built(monkeypatch):
    """No compiler (or a failed build): one warning, then the pure-PyTorch path renders the same image."""
    scene = _scene(25, 3, 9, torch.float64)
    viewmats, Ks = _cameras(1, torch.float64)
    monkeypatch.setenv("FIT3D_RENDER_KERNEL", "torch")
    ref, _, _ = rasterize_with_info(*scene, viewmats, Ks, W, H, backend="torch")

    def no_compiler():
        raise RuntimeError("no C++ compiler (g++, c++, clang++) on PATH")

    monkeypatch.setattr(render_kernel, "_build", no_compiler)
    monkeypatch.setattr(render_kernel, "_lib", None)
    monkeypatch.setattr(render_kernel, "_failed", None)
    monkeypatch.setenv("FIT3D_RENDER_KERNEL", "auto")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert not render_kernel.available()
        out, _, _ = rasterize_with_info(*scene, viewmats, Ks, W, H, backend="torch")
    assert sum("could not be built" in str(w.message) for w in caught) == 1
    torch.testing.assert_close(out, ref, atol=0, rtol=0)


def test_kernel_is_cpu_only_and_can_be_switched_off(monkeypatch):
    monkeypatch.setenv("FIT3D_RENDER_KERNEL", "torch")
    assert not render_kernel.available("cpu")
    monkeypatch.setenv("FIT3D_RENDER_KERNEL", "auto")
    assert not render_kernel.available("meta")


def _many_tiles_case():
    """3000 Gaussians at 104x72: 117 tiles for the threads to share."""
    viewmats, Ks = _cameras(1, torch.float32)
    return _scene(3000, 8, 13, torch.float32), viewmats, Ks * torch.tensor([4.0, 4.0, 1.0])[:, None], (4 * W, 4 * H)


@needs_kernel
def test_kernel_gradients_are_reproducible_bit_for_bit(monkeypatch):
    """Threads sum the backward in a fixed tile order: two runs give identical gradients (resumed fits rely on it)."""
    scene, viewmats, Ks, size = _many_tiles_case()
    threads = torch.get_num_threads()
    torch.set_num_threads(max(2, threads))
    try:
        runs = [_render(scene, viewmats, Ks, "auto", monkeypatch, size=size)[2] for _ in range(6)]
    finally:
        torch.set_num_threads(threads)
    for other in runs[1:]:
        for u, v in zip(runs[0], other):
            assert torch.equal(u, v)


def _projection_case(dtype: torch.dtype, C: int = 3, N: int = 300):
    """Gaussians in front of, beside (the Jacobian's field-of-view clamp) and behind (culled) three cameras."""
    g = torch.Generator().manual_seed(21)
    means = torch.randn(N, 3, generator=g, dtype=dtype) * torch.tensor([2.0, 1.5, 1.5], dtype=dtype)
    means[:, 2] += 2.5
    quats = torch.randn(N, 4, generator=g, dtype=dtype)
    scales = torch.rand(N, 3, generator=g, dtype=dtype) * 0.3 + 0.01
    opacities = torch.rand(N, generator=g, dtype=dtype)  # some under 1/255: culled
    viewmats, Ks = _cameras(C, dtype)
    return [means, quats, scales], opacities, viewmats, Ks


@needs_kernel
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_compiled_projection_equals_project_gaussians(dtype):
    """The C++ projection and its hand-written backward against the tensor version and its autograd."""
    from fit3d_helpers import render

    leaves, opacities, viewmats, Ks = _projection_case(dtype)
    a = [t.clone().requires_grad_(True) for t in leaves]
    b = [t.clone().requires_grad_(True) for t in leaves]
    ref = render.project_gaussians(*a, opacities, viewmats, Ks, W, H)
    out = render_kernel.project(*b, opacities, viewmats, Ks, W, H, 0.01, 1e10, render.EPS2D, render.FOV_CLAMP,
                                render.ALPHA_THRESHOLD, render.MAX_EXTEND)  # fmt: skip
    valid = ref["valid"]
    assert torch.equal(out["valid"], valid) and torch.equal(out["radii"], ref["radii"])
    assert 0 < int(valid.sum()) < valid.numel()  # both visible and culled pairs are in the case
    rel = 1e-13 if dtype == torch.float64 else 2e-6
    for key in ("means2d", "conics", "depths", "extents"):
        x, y = out[key].detach(), ref[key].detach()
        assert float((x - y).abs().max()) <= rel * float(y.abs().max()), key
    g = torch.Generator().manual_seed(3)
    w2 = torch.randn(ref["means2d"].shape, generator=g, dtype=dtype)
    w3 = torch.randn(ref["conics"].shape, generator=g, dtype=dtype)
    ((ref["means2d"] * w2).sum() + (ref["conics"] * w3).sum()).backward()
    ((out["means2d"] * w2).sum() + (out["conics"] * w3).sum()).backward()
    for name, x, y in zip(("means", "quats", "scales"), b, a):
        err = float((x.grad - y.grad).abs().max()) / float(y.grad.abs().max())
        assert err < (1e-12 if dtype == torch.float64 else 1e-5), f"{name}: {err:.1e}"


@needs_kernel
def test_cameras_with_gradients_use_the_tensor_projection(monkeypatch):
    """Only the Gaussians get gradients from the compiled projection: a pose being optimised takes the tensor path."""
    monkeypatch.setenv("FIT3D_RENDER_KERNEL", "auto")
    scene = _scene(30, 3, 4, torch.float64)
    viewmats, Ks = _cameras(1, torch.float64)
    vm = viewmats.clone().requires_grad_(True)
    r, a, _ = rasterize_with_info(*scene, vm, Ks, W, H, backend="torch")
    (r.sum() + a.sum()).backward()
    assert vm.grad is not None and float(vm.grad.abs().sum()) > 0


@needs_kernel
def test_kernel_threads_are_torchs_own():
    """Built with OpenMP where torch runs on libgomp, the kernel's threads are torch's pool: one ``libgomp.so.1`` in
    the process (a second runtime's threads would compete with torch's spinning ones for the cores). Wheels that
    bundle a renamed private copy (pycolmap's ``libgomp-<hash>.so``) do not count: nothing links to those by name."""
    import platform
    from pathlib import Path

    if platform.system() != "Linux" or not render_kernel._torch_uses_libgomp():
        pytest.skip("torch does not run on GNU OpenMP here")
    render_kernel.load()
    maps = {line.split()[-1] for line in Path("/proc/self/maps").read_text().splitlines() if "libgomp" in line}
    assert len({m for m in maps if Path(m).name.startswith("libgomp.so")}) == 1, maps


@needs_kernel
def test_the_std_thread_build_equals_the_openmp_build(monkeypatch):
    """Where torch does not run on libgomp (or the compiler refuses -fopenmp) the kernel starts its own threads:
    built that way it gives the same bits, two threads each, forward and backward."""
    scene, viewmats, Ks, size = _many_tiles_case()
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        first = _render(scene, viewmats, Ks, "auto", monkeypatch, size=size)
        first_lib = render_kernel.load()
        monkeypatch.setattr(render_kernel, "_torch_uses_libgomp", lambda: False)
        monkeypatch.setattr(render_kernel, "_lib", None)
        monkeypatch.setattr(render_kernel, "_failed", None)
        plain = _render(scene, viewmats, Ks, "auto", monkeypatch, size=size)
        assert render_kernel.load() is not first_lib
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(first[0], plain[0]) and torch.equal(first[1], plain[1])
    for u, v in zip(first[2], plain[2]):
        assert torch.equal(u, v)
