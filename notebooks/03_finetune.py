# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 03 · Fine-tune the 2D backbone on 3D-consistent features
#
# Stage 2 of FiT3D. For every view of every training scene, the lifted Gaussians of notebook 02 render their
# low-dim features, the scene's decoder lifts them to the backbone width, and the result is resized to the token
# grid: a **multi-view-consistent target**. The backbone is fine-tuned so its own patch tokens match it (L1, weighted
# by the soft anonymisation mask, as the official code; `finetune.mask="alpha"` also drops tokens the Gaussians do
# not cover), for one epoch, with AdamW, batch 2, gradient clipping at 0.1 and random horizontal flips.
# Targets are rendered once and cached, so a step costs about one backbone forward+backward.
#
# *Colab: this copy of the course has no public address yet (README, section Colab).*

# %% tags=["parameters"]
profile = "smoke"  # "smoke": a laptop CPU, minutes; "paper": the official recipe on one GPU
overrides = {}  # profile settings by dotted key, e.g. {"finetune.mode": "released"} (`python -m fit3d_helpers params`)
artifacts_dir = "artifacts"
drive_folder = None  # Colab: a folder in your Google Drive to keep the results in, e.g. "fit3d"
device = "auto"

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
# ## Scenes, the original backbone, and the lifted scenes
# Why the original first: stage 2 starts from it, and the lifts of notebook 02 are found by the hash of the settings
# that made them (scene, backbone, weights, lift settings). If one is missing, the smoke profile fits it now (and
# says so); the paper profile stops and names notebook 02.

# %%
split, _ = pipeline.data_stage(prof, artifacts_dir)
original = pipeline.backbone_for(prof, device)
viz.weights_banner(original.weights)
ft = prof.finetune
print(f"this profile: finetune.lr = {ft.lr:g} (official 1e-5), batch {ft.batch_size}, {ft.epochs} epoch(s), "
      f"gradient clip {ft.grad_clip}, mode {ft.mode!r}")

# %% [markdown]
# ## The objective
# For a training view $I$ of a lifted scene, the target is the scene's decoded rendered features resized to the
# token grid, $T = \mathrm{resize}\big(D(\hat F)\big) \in \mathbb{R}^{384 \times h \times w}$, built exactly as
# notebook 02 built what its loss compared. The backbone $f_\theta$ (all its parameters) is trained so that its normed
# patch tokens match $T$, weighted by the anonymisation mask $w$ (all ones for our rooms), resized to the grid:
#
# $$\mathcal{L}(\theta) = \frac{\sum_{p} w_p \, \lVert f_\theta(I)_p - T_p \rVert_1}{D \sum_{p} w_p},$$
#
# with AdamW, a random horizontal flip of image, target and mask together, gradient-norm clipping, one epoch. Because
# $T$ comes from one 3D representation, it agrees across views: the model learns to produce features that a single 3D
# field can explain.

# %% [markdown]
# ## The key step: one fine-tuning step
# What the loop does each step, with the package's own `train_step` on a fresh copy of the original model: the masked
# L1 of a batch before and after one AdamW step. (Skipped with `finetune.mode = "released"`.)

# %%
import dataclasses

import torch

from fit3d_helpers import finetune

if prof.finetune.mode != "released":
    (first,) = pipeline.lifts_for(prof, original, split.train[:1], artifacts_dir, needed_by="notebook 03")
    targets, _ = finetune.scene_targets(first, original, mask=prof.finetune.mask, root=artifacts_dir)
    demo = pipeline.backbone_for(prof, device)  # a copy of the original: the real run below starts from scratch
    params = [q for q in demo.model.parameters() if q.requires_grad]
    optimizer = finetune.make_optimizer(params, prof.finetune)
    runner = finetune.tokens_runner(demo)
    b = slice(0, prof.finetune.batch_size)
    batch = (targets.images[b], targets.targets[b], targets.masks[b])
    no_flip = dataclasses.replace(prof.finetune, flip=False)  # the same pixels before and after
    step_loss = finetune.train_step(demo, runner, params, optimizer, *batch, no_flip, torch.Generator().manual_seed(0))
    with torch.no_grad():
        patch, _ = demo.forward_tokens(batch[0])
        after = finetune.masked_l1(patch, batch[1].to(patch.device), batch[2].to(patch.device))
    print(f"targets of {targets.scene}: {tuple(targets.targets.shape)} (views, channels, token grid)")
    print(f"masked L1 of the batch: {step_loss.item():.4f} before the step, {after.item():.4f} after it")

# %% [markdown]
# ## Fine-tune (cached by config hash; resumes from its last checkpoint)
# The whole epoch. With `finetune.mode = "released"` nothing is trained: FiT3D's released checkpoint is loaded.
# *What to look at:* the loss falls over the epoch; the validation L1 (held-out scene, below) falls too.

# %%
tuned, result = pipeline.finetuned_model(prof, split, artifacts_dir, device, needed_by="notebook 03")
ft_stats = result.stats if result is not None else None
if result is not None:
    keys = ("mode", "epochs", "lr", "steps", "trainable_params", "val_l1_before", "val_l1_after", "seconds_per_step",
            "target_render_seconds_per_view", "feature_factor", "mask")  # fmt: skip
    viz.table({k: ft_stats[k] for k in keys}, "fine-tuning:")
    viz.loss_figure({"masked L1": result.losses["loss"]}, title="fine-tuning loss", smooth=5, ylabel="masked L1")

# %% [markdown]
# ## Original vs fine-tuned features
# Held-out views the model was never fine-tuned on. A PCA with **one basis shared by both rows** (equal colours mean
# equal features), then k-means (k = 20) with **one clustering fitted on both rows** (a colour is the same cluster in
# both). *What to look at:* with pretrained weights, FiT3D's map is smoother within objects and its clusters follow
# object parts; with random weights both rows mostly echo the image, and the difference after a smoke epoch is small.

# %%
from fit3d_helpers.data import load_scene

views = load_scene(split.val[0]).views[::6][:4]
imgs = torch.stack([torch.as_tensor(v.image).permute(2, 0, 1) for v in views])
f_orig, _ = original.features(imgs)
f_tuned, _ = tuned.features(imgs)
viz.pca_figure({"original": list(f_orig), "fine-tuned": list(f_tuned)}, images=[v.image for v in views]);

# %%
rows = {"original": list(f_orig), "fine-tuned": list(f_tuned)}
viz.kmeans_figure(rows, k=20, seed=prof.seed, images=[v.image for v in views]);

# %% [markdown]
# ## Validation L1 before and after
# Masked L1 between the model's tokens and the rendered targets of a **held-out** scene (lifted in notebook 02,
# never fine-tuned on). *What it shows:* on a new scene the model's features moved towards what that scene's own 3D
# field renders, so the fit was not to the training views only. *What it does not show:* that the features became
# 3D-consistent. The rendered target is itself a smoothed version of the backbone's features (the fit averages every
# view, the decoder and the render blur detail), so a model that only learned to smooth its output would also lower
# this number; and the L1 measures no agreement between views. Notebook 05's smoothing control (same budget, 2D-blurred
# own features as targets, validated on the same rendered targets) and notebook 04's correspondence recall are the
# checks that separate the two.

# %%
if ft_stats:
    print(
        f"validation L1 (held-out scenes {ft_stats['val_scenes']}): "
        f"before {ft_stats['val_l1_before']:.4f} -> after {ft_stats['val_l1_after']:.4f} "
        f"({100 * (ft_stats['val_l1_after'] / ft_stats['val_l1_before'] - 1):+.1f} %)"
    )

# %% [markdown]
# ## Takeaways
# * Stage 2 is ordinary supervised fine-tuning; what is special is the target: features rendered from one 3D
#   representation per scene, so they agree across views.
# * The loss is a masked L1 on the normed patch tokens; one epoch, a small learning rate and heavy clipping keep the
#   model close to the original (the paper keeps the original features too, notebook 04).
# * The validation L1 on a held-out scene says whether the model moves towards the rendered targets on scenes never
#   seen; it cannot tell 3D consistency from smoothing (notebook 05's control can).

# %%
viz.notebook_time()
