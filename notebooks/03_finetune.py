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
# grid: a **multi-view-consistent target**. The backbone is fine-tuned so its own patch tokens match it (L1, masked by
# the rendered alpha), for one epoch, with AdamW, batch 2, gradient clipping at 0.1 and random horizontal flips.
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
# Colab: install the course once per runtime (Colab's own torch, ipykernel and ipywidgets are kept), then check that
# it imports. On your own machine run `bash scripts/setup.sh` once instead; here this cell only checks the import.
COURSE_REPO = None  # written by scripts/sync_colab.py from pyproject.toml
import importlib.util
import subprocess
import sys

if "google.colab" in sys.modules and importlib.util.find_spec("fit3d_helpers") is None:
    if COURSE_REPO is None:
        raise RuntimeError(
            "this copy of the course has no public address yet, so Colab cannot install it: see the "
            "README, section Colab"
        )
    spec = f"fit3d-course[gpu] @ git+{COURSE_REPO}"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "-q", spec], capture_output=True, text=True)
    if pip.returncode:
        print(pip.stdout[-1500:], pip.stderr[-3000:], sep="\n")
        raise RuntimeError(
            f"installing {spec} failed (pip's last lines are above): check that the runtime is "
            "connected, then run this cell again"
        )
import fit3d_helpers  # fails here, naming the module, if the course is not installed

print(f"fit3d_helpers {fit3d_helpers.__version__} from {fit3d_helpers.__path__[0]}")

# %%
import fit3d_helpers.course.viz as viz
from fit3d_helpers import pipeline
from fit3d_helpers.profiles import load_profile

artifacts_dir = viz.setup_notebook(artifacts_dir, drive_folder)  # plotly renderer, working directory, Drive
prof = load_profile(profile, overrides)

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

from fit3d_helpers import finetune as FT

if prof.finetune.mode != "released":
    (first,) = pipeline.lifts_for(prof, original, split.train[:1], artifacts_dir, needed_by="notebook 03")
    targets, _ = FT.scene_targets(first, original, mask=prof.finetune.mask, root=artifacts_dir)
    demo = pipeline.backbone_for(prof, device)  # a copy of the original: the real run below starts from scratch
    params = [q for q in demo.model.parameters() if q.requires_grad]
    optimizer = FT.make_optimizer(params, prof.finetune)
    runner = FT.tokens_runner(demo)
    b = slice(0, prof.finetune.batch_size)
    batch = (targets.images[b], targets.targets[b], targets.masks[b])
    no_flip = dataclasses.replace(prof.finetune, flip=False)  # the same pixels before and after
    step_loss = FT.train_step(demo, runner, params, optimizer, *batch, no_flip, torch.Generator().manual_seed(0))
    with torch.no_grad():
        patch, _ = demo.forward_tokens(batch[0])
        after = FT.masked_l1(patch, batch[1].to(patch.device), batch[2].to(patch.device))
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
    viz.loss_figure({"masked L1": result.losses["loss"]}, title="fine-tuning loss", smooth=5)

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
# never fine-tuned on): lower after fine-tuning means the model learned to produce 3D-consistent features on new
# scenes, not only on its training views.

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
# * The validation L1 on a held-out scene says whether the 3D-consistency carries over to scenes never seen.

# %%
viz.notebook_time()
