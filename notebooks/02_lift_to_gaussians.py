# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 02 · Lift: 2D features → 3D feature Gaussians
#
# For every training scene, and the first `data.n_val_lift` held-out scenes (smoke: `val_000`, whose rendered
# features give stage 2 its validation targets, never trained on), we fit 3D Gaussians (position, scale, rotation,
# opacity, colour) **plus a 64-d feature each**. Rendered colour must match the photos (`0.8·L1 + 0.2·(1−SSIM)`);
# rendered features, decoded by a 3×3 conv up to the backbone width (384 for ViT-S), must match DINOv2's patch
# features (L1). Because every view is
# explained by *one* set of 3D features, the rendered features are multi-view consistent by construction: they
# become the fine-tuning targets in notebook 03. As in the official code, the feature loss does **not** move
# geometry: features are rendered with detached positions, scales, rotations and opacities.
#
# *Colab: this copy of the course has no public address yet (README, section Colab).*

# %% tags=["parameters"]
profile = "smoke"  # "smoke": a laptop CPU, minutes; "paper": the official recipe on one GPU
overrides = {}  # profile settings by dotted key, e.g. {"lift.iterations": 2000} (`python -m fit3d_helpers params`)
artifacts_dir = "artifacts"
drive_folder = None  # Colab: a folder in your Google Drive to keep the results in, e.g. "fit3d"
device = "auto"  # "auto": CUDA (gsplat) when present, else CPU (our PyTorch rasterizer)
shard = None  # "i/n": fit only every n-th scene starting at i (several machines at once)
scene_index = 0  # which scene to look at
force = False  # refit even if the artifact exists

# %%
# Colab: install the course once per runtime, keeping Colab's torch (on your machine: `bash scripts/lab.sh`).
COURSE_REPO = None  # written by scripts/sync_colab.py from pyproject.toml
import importlib.util
import subprocess
import sys

if "google.colab" in sys.modules and importlib.util.find_spec("fit3d_helpers") is None:
    if COURSE_REPO is None:
        raise RuntimeError("this copy of the course has no public address yet: see the README, section Colab")
    spec = f"fit3d-course[gpu] @ git+{COURSE_REPO}"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "-q", spec], capture_output=True, text=True)
    if pip.returncode:
        print(pip.stdout[-1500:], pip.stderr[-3000:], sep="\n")
        raise RuntimeError(f"installing {spec} failed (pip's output is above): reconnect, then run this cell again")

# %%
import fit3d_helpers.course.notebook
from fit3d_helpers import pipeline
from fit3d_helpers.course import viz

prof, artifacts_dir = fit3d_helpers.course.notebook.start(profile, overrides, artifacts_dir, drive_folder, device)

# %% [markdown]
# ## The backbone and the scenes
# Why the backbone first: stage 1 fits the Gaussians' features to *its* patch features, so the lift is tied to one
# model and one set of weights (both are part of the artifact's key). Without internet the pretrained DINOv2 cannot be
# downloaded and the backbone falls back to a *seeded random init*: everything still runs and every output says so.

# %%
split, _ = pipeline.data_stage(prof, artifacts_dir)
bb = pipeline.backbone_for(prof, device)
viz.weights_banner(bb.weights)
print(
    f"{bb.name}: width {bb.dim}, patch {bb.patch_size}; "
    f"scenes to lift: {[p.name for p in pipeline.lift_scenes(prof, split)]}"
)

# %% [markdown]
# ## The model: Gaussians that carry features
# Each Gaussian $i$ has a mean $\mu_i$, a rotation $q_i$ and scales $s_i$ (covariance $\Sigma_i = R_i S_i S_i^\top
# R_i^\top$), an opacity $o_i$, a colour from spherical harmonics, and a **64-d feature** $f_i$. To render a pixel,
# each Gaussian is projected to the image (EWA splatting: $\Sigma'_i = J W \Sigma_i W^\top J^\top$, with $W$ the
# camera rotation and $J$ the Jacobian of the perspective projection at $\mu_i$) and the Gaussians covering the pixel
# $p$ are composited front to back:
#
# $$\alpha_i(p) = \min\!\big(0.99,\; o_i \, e^{-\frac12 (p - \mu'_i)^\top \Sigma_i'^{-1} (p - \mu'_i)}\big), \qquad
# \hat C(p) = \sum_i c_i \, \alpha_i(p) \prod_{j<i} \big(1 - \alpha_j(p)\big), \qquad
# \hat F(p) = \sum_i f_i \, \alpha_i(p) \prod_{j<i} \big(1 - \alpha_j(p)\big).$$
#
# The rendered low-dimensional features $\hat F$ are area-pooled by $P_k$ and go through a 3×3 convolution $D$ (the
# *decoder*, 64 → 384 channels for ViT-S) to the backbone's width. The losses of one training view $I$ with backbone
# features $F_{2D}$:
#
# $$\mathcal{L}_{\text{rgb}} = 0.8\,\lVert \hat C - I \rVert_1 + 0.2\,\big(1 - \mathrm{SSIM}(\hat C, I)\big), \qquad
# \mathcal{L}_{\text{feat}} = \big\lVert D(P_k \hat F) - \mathrm{up}(F_{2D}) \big\rVert_1, \qquad
# \mathcal{L} = \mathcal{L}_{\text{rgb}} + \mathcal{L}_{\text{feat}},$$
#
# where $P_k$ area-pools the render to $k \times$ the token grid with $k$ = `lift.feature_factor` (smoke: $k = 2$, so
# the decoder runs near the token grid and costs little on a CPU; the official $k = 0$ makes $P_k$ the identity: the
# decoder runs on the full-size render), and $\mathrm{up}$ upsamples the token grid bilinearly to the size of
# $D(P_k \hat F)$. **Gradient routing:** the feature
# loss reaches only $f_i$ and $D$, never the geometry: $\partial \mathcal{L}_{\text{feat}} / \partial(\mu, q, s, o) =
# 0$. Geometry comes from the photos alone (the official CUDA code blocks these gradients; we render the features
# with detached geometry). Anonymised pixels (ScanNet++ masks) take the prediction itself as target, so they add no
# loss in either term.

# %% [markdown]
# ## What the rasterizer computes, pixel by pixel
# The renderer the fit uses is fast because it is vectorised over (pixel, Gaussian) pairs with a custom backward
# pass, which makes it hard to read. `render_reference` computes the same formulas above the slow, obvious way:
# project every Gaussian (EWA), evaluate **every pixel against every Gaussian**, sort by depth, composite front to
# back. The tests check the fast renderer against it (values and gradients, in float64). It also knows the official
# CUDA rasterizer's rules (a 3σ footprint on whole 16-pixel tiles, stop when $T < 10^{-4}$), which differ from ours
# on a few pixels. *What to look at:* the same rules give the same image to rounding; the official rules change only
# a few faint pixels, where a Gaussian's 3σ square ends on a tile edge.

# %%
import dataclasses

import matplotlib.pyplot as plt
import torch

from fit3d_helpers import render, render_reference

g = torch.Generator().manual_seed(0)
n, width, height = 8, 48, 32  # eight Gaussians, a 48×32 image, float64 on the CPU
f64 = dict(dtype=torch.float64)
means = torch.cat([torch.rand(n, 2, generator=g, **f64) * 1.6 - 0.8, 2 + torch.rand(n, 1, generator=g, **f64)], 1)
quats = torch.randn(n, 4, generator=g, **f64)
scales = 0.04 + 0.2 * torch.rand(n, 3, generator=g, **f64)
opacities = 0.4 + 0.6 * torch.rand(n, generator=g, **f64)
colors = torch.rand(n, 3, generator=g, **f64)
viewmats = torch.eye(4, **f64)[None]
Ks = torch.tensor([[[40.0, 0, width / 2], [0, 40.0, height / 2], [0, 0, 1]]], **f64)
scene = (means, quats, scales, opacities, colors, viewmats, Ks, width, height)

ours_rules = dataclasses.replace(render_reference.GSPLAT_RULES, near=0.2, max_alpha=0.99)  # stage 1's settings
slow, _ = render_reference.render_reference(*scene, rules=ours_rules)
fast, _ = render.rasterize(*scene, backend="torch", near=0.2, max_alpha=0.99)
official, _ = render_reference.render_reference(*scene, rules=render_reference.OFFICIAL_RULES)
print(f"max |fast renderer - reference, same rules|     = {float((fast - slow).abs().max()):.1e}")
print(f"max |fast renderer - reference, official rules| = {float((fast - official).abs().max()):.1e}")
fig, axes = plt.subplots(1, 3, figsize=(9, 2.4))
axes[0].imshow(slow[0].clamp(0, 1).numpy())
axes[1].imshow(fast[0].clamp(0, 1).numpy())
axes[2].imshow((fast - official)[0].abs().amax(-1).numpy(), cmap="magma")  # its own scale: the pixels that differ
for ax, name in zip(axes, ["reference (every pixel × every Gaussian)", "fast renderer", "|fast − official rules|"]):
    ax.set_title(name, fontsize=9)
    ax.axis("off")
plt.show()

# %% [markdown]
# ## Fit every scene (cached)
# A progress bar per scene. An artifact that exists is loaded, not refitted; an interrupted fit resumes from its last
# checkpoint and ends exactly where an uninterrupted one would.

# %%
results = pipeline.lift_stage(prof, bb, split, artifacts_dir, shard=shard, force=force)
viz.table(
    {
        r.stats["scene"]: {
            k: r.stats[k]
            for k in ("heldout_psnr", "heldout_ssim", "heldout_feature_l1", "heldout_feature_cosine",
                      "heldout_feature_cosine_centered", "n_gaussians", "iterations", "wall_seconds", "strategy")
        }
        for r in results
    },
    "held-out views (never trained on):",
)  # fmt: skip

# %% [markdown]
# *What to look at:* held-out PSNR (dB) says how well the Gaussians reproduce photos they were not fitted to (31-33
# dB here); the feature cosine says how well the decoded renders reproduce the backbone's features on those views.
# With random weights the backbone is almost the identity after its patch embedding, so its "features" are mostly
# colour and the cosine plateaus near 0.9; with pretrained DINOv2 they are semantic and the render smooths them.

# %% [markdown]
# ## The key step: one render and its losses
# What one iteration of the fit does, with the package's own functions on the fitted scene: render colour and
# features in one pass, decode the features, compute both losses, and check the gradient routing by back-propagating
# the feature loss alone.

# %%
import torch

from fit3d_helpers import lift

res = results[min(scene_index, len(results) - 1)]
prep = lift.prepare_scene(lift.load_scene(res.scene_path), bb, prof.lift)  # images at training size + DINOv2 targets
params = {
    k: torch.nn.Parameter(v.clone().to(prep.images.device)) for k, v in res.params.items() if v.is_floating_point()
}
i = prep.train_ids[0]
H, W = prep.images.shape[-2:]
rgb, feats, _ = lift.render_rgb_and_features(params, prep.viewmats[i : i + 1], prep.Ks[i : i + 1], W, H, 0,
                                          near=prof.lift.near_plane, max_alpha=prof.lift.max_alpha)  # fmt: skip
loss_rgb = lift.masked_rgb_loss(rgb.permute(0, 3, 1, 2), prep.images[i : i + 1], prep.masks[i : i + 1])
decoded = lift.decode(res.decoder, feats, tuple(prep.targets.shape[-2:]), prof.lift.feature_factor)
loss_feat = lift.feature_loss(decoded, prep.targets[i : i + 1])
print(
    f"view {i}: L_rgb = {loss_rgb.item():.4f}, L_feat = {loss_feat.item():.4f}; decoded features {tuple(decoded.shape)}"
)
loss_feat.backward()
largest = {k: float(params[k].grad.abs().max()) if params[k].grad is not None else 0.0 for k in params}
geometry = max(largest[k] for k in ("means", "quats", "log_scales", "opacity_logits"))
print(
    f"after L_feat.backward(): largest gradient of the features {largest['features']:.2e}, of the geometry "
    f"{geometry:.1e}" + (" (zero: the feature loss does not move the geometry)" if geometry == 0 else "")
)

# %% [markdown]
# ## Loss curves and the number of Gaussians
# RGB loss and feature L1 per iteration (faint: raw; solid: moving average) and the number of Gaussians (dashed).
# Densification follows 3DGS: Gaussians whose 2D mean gets a large gradient from the RGB loss are cloned (small ones)
# or split (large ones), transparent ones are pruned. `lift.strategy="simple"` (smoke) is the course's plain-torch
# version, `"gsplat"` (paper) gsplat's maintained `DefaultStrategy`. *What to look at:* both losses fall; the count
# jumps at each densification step and then stays.

# %%
viz.loss_figure(
    {"rgb": res.losses["rgb"], "feature L1": res.losses["feature"]},
    title=f"lift losses, {res.stats['scene']}",
    counts=res.losses["n_gaussians"],
    ylabel="loss (RGB; feature L1)",
);  # fmt: skip
# %% [markdown]
# ## A held-out view: photo vs render, backbone features vs rendered features
# Top rows: the photo and the render of the fitted Gaussians from the same (held-out) camera. Bottom rows: the
# backbone's features of the photo and the decoded rendered features, as a PCA with **one basis shared by both rows**
# (equal colours mean equal features). *What to look at:* the render matches the photo; the rendered features follow
# the backbone's but are smoother and consistent from view to view, because one set of 3D features explains every view.
# With real weights the PCA colours follow objects; with random weights they follow colour and texture.

# %%
ids = prep.holdout_ids[:3] or prep.train_ids[:3]
renders = lift.render_views(res, prep, ids, prof.lift)
viz.pca_figure(
    {"DINOv2 (2D)": [prep.targets[i].cpu() for i in ids], "rendered + decoded (3D)": renders["features"]},
    images={"photo": [prep.images[i].permute(1, 2, 0).cpu().numpy() for i in ids], "render": renders["rgb"]},
    title="held-out views: photo, render, and feature PCA with a shared basis",
);  # fmt: skip
# %% [markdown]
# ## The Gaussians in 3D, coloured by their feature PCA
# Points with the same colour carry similar features: the 3D representation of the 2D feature field.

# %%
act = lift.activated(res.params)
viz.gaussians_figure(
    act["means"],
    res.params["features"],
    act["opacities"],
    title=f"{res.stats['scene']}: {res.stats['n_gaussians']} Gaussians",
).show()

# %% [markdown]
# ## Pick a view
# Interactive in Jupyter (renders any view of the scene, trained or held out).

# %%
import matplotlib.pyplot as plt


def show(view: int = 0) -> None:
    r = lift.render_views(res, prep, [view], prof.lift)
    viz.pca_figure(
        {"DINOv2": [prep.targets[view].cpu()], "rendered": r["features"]},
        images={"render": r["rgb"]},
        title=f"view {view}" + (" (held out)" if view in prep.holdout_ids else ""),
    )
    plt.show()


viz.interactive(show, view=(ids[0], 0, len(prep.train_ids) + len(prep.holdout_ids) - 1))

# %% [markdown]
# ## Takeaways
# * One set of 3D Gaussians per scene explains every view: colour from the photos, a 64-d feature decoded to the
#   backbone's width from its patch features.
# * The feature loss never moves the geometry; the photos alone decide where the Gaussians are.
# * Rendered features are multi-view consistent by construction: they are the targets of notebook 03.

# %%
viz.notebook_time()
