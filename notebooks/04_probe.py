# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 04 · Linear probes and the 3D-awareness check
#
# The backbone is frozen; only a linear head is trained on its features. Segmentation: BatchNorm + 1×1 conv.
# Depth: patch tokens + CLS token, ×4 upsampling, 1×1 conv to 256 uniform depth bins (SigLoss; the official config
# adds 0.5·gradient loss, but that loss is identically zero there, so the weight here is 0:
# `probe.depth_grad_weight`). We compare six feature variants: **original**, **fine-tuned**, three assemblies of
# both: **concat** (FiT3D's default), **add** and **linear** fusion, and the paper's control **dup** (original ⊕
# original). Heads train on the training scenes and are evaluated on held-out scenes the backbone was never
# fine-tuned on. Then a check that needs no training: do features of the *same 3D
# point* match across two views?
#
# *Colab: this copy of the course has no public address yet (README, section Colab).*

# %% tags=["parameters"]
profile = "smoke"  # "smoke": a laptop CPU, minutes; "paper": the official recipe on one GPU
overrides = {}  # profile settings by dotted key, e.g. {"finetune.mode": "released"} (`python -m fit3d_helpers params`)
artifacts_dir = "artifacts"
drive_folder = None  # Colab: a folder in your Google Drive to keep the results in, e.g. "fit3d"
device = "auto"
force = False  # retrain the probes even if their artifact exists

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
from pathlib import Path

import fit3d_helpers.course.notebook
from fit3d_helpers import pipeline
from fit3d_helpers.course import viz

prof, artifacts_dir = fit3d_helpers.course.notebook.start(profile, overrides, artifacts_dir, drive_folder, device)

# %% [markdown]
# ## Data and the original backbone
# The probes train on the training scenes' views and are evaluated on the held-out scenes (never fine-tuned on). With
# the `nyu` profile they read the official evaluation data instead (NYUv2, `eval_data/`; see the README).

# %%
split, _ = pipeline.data_stage(prof, artifacts_dir)
original = pipeline.backbone_for(prof, device)
viz.weights_banner(original.weights)

# %% [markdown]
# ## The fine-tuned model
# Notebook 03's artifact, found by the hash of its settings (the smoke profile fits it now if it is missing), or
# FiT3D's released checkpoint with `finetune.mode = "released"`.

# %%
tuned, ft_result = pipeline.finetuned_model(prof, split, artifacts_dir, device, needed_by="notebook 04")
print("fine-tuned model:", tuned.identity()["weights"])

# %% [markdown]
# ## The probes, the assemblies and the metrics
# **Features.** With $f_o$ the frozen original's patch tokens and $f_t$ the fine-tuned model's (each $384 \times h
# \times w$), a probe sees one of: $f_o$, $f_t$, **concat** $[f_o; f_t]$ (FiT3D's choice, 768 channels), **add**
# $f_o + f_t$, **linear** fusion $W [f_o; f_t] + b$ (a trained 1×1 convolution), or the paper's control **dup**
# $[f_o; f_o]$ (as wide as concat, no new information: arXiv 2407.20229v1, Table 13).
#
# **Segmentation head** (BNHead): per token, $\mathrm{logits} = W \, \mathrm{BN}(x) + b$, upsampled bilinearly to the
# image, cross-entropy against the labels (255 ignored).
#
# **Depth head** (DINOv2's linear depth head): the tokens, with a CLS token $c$ broadcast beside them (the original
# model's for every variant, as FiT3D's evaluation; the fine-tuned variant alone uses the fine-tuned model's own),
# give per pixel (after ×4 upsampling) logits $l_k$ over 256 depth bins $b_k$ spaced evenly between 0.001 m and
# the maximum depth. Its tokens are the last block's *before* the final LayerNorm (the official `final_norm=False`),
# not the normed tokens that stage 2 trained and the segmentation head reads:
#
# $$p_k = \frac{\mathrm{ReLU}(l_k) + 0.1}{\sum_j \big(\mathrm{ReLU}(l_j) + 0.1\big)}, \qquad \hat d = \sum_k p_k b_k .$$
#
# It is trained with the scale-invariant log loss (SigLoss) over valid pixels, $g = \log \hat d - \log d$:
#
# $$\mathcal{L}_{\text{sig}} = \sqrt{\mathrm{Var}(g) + 0.15 \, \overline{g}^2}.$$
#
# **Metrics.** Segmentation, from the confusion matrix over classes $c$: $\mathrm{IoU}_c = \frac{TP_c}{TP_c + FP_c +
# FN_c}$, mIoU its mean over classes, mAcc the mean per-class recall $\frac{TP_c}{TP_c + FN_c}$, aAcc the pixel
# accuracy. Depth, per image then averaged: $\mathrm{RMSE} = \sqrt{\overline{(\hat d - d)^2}}$ (metres),
# $\mathrm{AbsRel} = \overline{|\hat d - d| / d}$, and $\delta_1$, the share of pixels with
# $\max(\hat d / d, d / \hat d) < 1.25$ (ours only: the paper does not report it).

# %% [markdown]
# ## The key step: one probe forward
# What a training step of the segmentation probe computes, with the package's own head and loss on a few held-out
# views' features: the logits on the token grid and their cross-entropy against the labels (an untrained head scores
# about $\log(\text{classes})$).

# %%
import math

import torch

from fit3d_helpers import probe

if split.val:
    data = probe.probe_data(split.val[:1], prof.data.max_depth)
    x = data.images[:2].permute(0, 3, 1, 2)
    feats = torch.cat([original.features(x)[0], tuned.features(x)[0]], dim=1)  # concat: [2, 768, h, w]
    head = probe.SegHead(feats.shape[1], len(data.classes))
    logits = head(feats)
    loss = probe.seg_loss(logits, data.labels[:2])
    print(f"features {tuple(feats.shape)} -> logits {tuple(logits.shape)}; cross-entropy {loss.item():.3f} "
          f"(an untrained head: about log({len(data.classes)}) = {math.log(len(data.classes)):.3f})")  # fmt: skip

# %% [markdown]
# ## Train the probes
# Features are cached once per model (smoke), or computed from augmented batches at every step (the official
# protocol, `probe.protocol = "official"`). *What to look at:* concat against original is FiT3D's claim; dup against
# original is the control for the extra width; with random weights all rows are close to chance.

# %%
stats = pipeline.probe_stage(
    prof, split, original, tuned, artifacts_dir, device=device, force=force, tag={"headline": True}
)
where = "held-out scenes" if split.val else "the official evaluation data"
viz.table(viz.in_percent(stats["results"]["seg"]), f"semantic segmentation on {where}:")
viz.table(viz.in_percent(stats["results"]["depth"]), f"depth on {where} (RMSE in metres, AbsRel as a ratio):")

# %% [markdown]
# ## The presenter's figures
# Computed once for the report (stage `figures`, cached) on the first validation scene, one fine-tuning never sees:
# the paper's Figure 1 counterpart on three views that stage 1 also held out of its fit (`lift.holdout_every`; with
# the official recipe's 0 they are only held out of fine-tuning, and the title says so), k-means with one shared
# clustering, the probes' predictions, matched points across two views, and a click-a-pixel similarity viewer.
# Every figure is drawn at slide size (1180×560 px, text ≥ 16 px).

# %%
from fit3d_helpers import figure_data
from fit3d_helpers.course import figures

fig_data = (
    figure_data.figure_data(prof, split, original, tuned, artifacts_dir).torch("figures.pt") if split.val else None
)

# %% [markdown]
# **Figure 1, ours.** One PCA basis for every feature panel of every row, so equal colours mean equal features across
# views and models; "FiT3D" here is the fine-tuned model alone (the probes' FiT3D is original ⊕ fine-tuned).
# *What to look at:* the rendered column is the 3D-consistent target; the fine-tuned column should
# move from the DINOv2 column towards it. With pretrained weights the rendered and fine-tuned maps are smoother within
# objects and keep sharp borders; with random weights all maps mostly echo the image's colours.

# %%
if fig_data is not None:
    figures.draw_figure1(fig_data, random_weights=original.is_random);

# %% [markdown]
# **Predictions beside the ground truth**, for held-out views: segmentation (class colours as in notebook 01) and depth
# (colour bar in metres). *What to look at:* FiT3D (concat) against the original; with random weights both are coarse.

# %%
ex = torch.load(Path(stats["path"]) / "examples.pt", weights_only=True) if split.val else None
if ex is not None:
    figures.draw_probe_predictions(ex, stats["classes"], prof.data.max_depth);

# %% [markdown]
# ## 3D awareness: correspondences across views
# For pairs of views of held-out scenes, the true correspondence of each token comes from depth and poses (notebook
# 01's reprojection). *recall@14px*: the nearest neighbour in feature space lands within 14 pixels of the truth;
# *chance*: the same for a random token; *cos_true* vs *cos_random*: similarity of corresponding vs random token pairs.
# The paper does not measure this; it is the course's own check of "3D awareness".

# %%
if stats["awareness"]:
    viz.table(viz.in_percent(stats["awareness"]), "correspondence on held-out scenes:")

# %% [markdown]
# **Matched points across two views.** One of the covisible pairs the table above pools: points of view A joined to
# their nearest-feature match in view B, green when within 14 px of the truth (the table's rule). Beside each row: the
# drawn lines, the whole pair, and the table's recall over all pairs, so the counts and the table agree by label.
# *What to look at:* more green lines after fine-tuning with real weights.

# %%
if fig_data is not None and "uv_a" in fig_data:
    figures.draw_matches(fig_data, stats["awareness"] or None, random_weights=original.is_random);

# %% [markdown]
# **Click a pixel.** Pick a point in any view: every row colours each token of each view by the cosine similarity of
# its feature to the feature at that point, for the original, the fine-tuned and the rendered features (the report's
# `viewer.html` is the same page). *What to look at:* with real weights, 3D-aware features light up the same 3D point
# in the other views; with random weights similarity follows image colour.

# %%
if fig_data is not None:
    from fit3d_helpers.course import viewer

    display(viewer.show_viewer(fig_data, random_weights=original.is_random))

# %% [markdown]
# ## What the paper reports (not our numbers)
# DINOv2 ViT-S/14 linear probes, original → FiT3D (= original ⊕ fine-tuned). Our smoke run uses small synthetic
# rooms and, offline, a randomly initialised backbone: compare directions, not values. The report puts every table
# beside ours.

# %%
from fit3d_helpers.course import paper

viz.table(
    {
        ds: {"seg mIoU DINOv2": a, "seg mIoU FiT3D": b, "depth RMSE DINOv2": c, "depth RMSE FiT3D": d}
        for ds, (a, b, c, d) in paper.main_summary().items()
    },
    "reported by the paper (arXiv 2407.20229v1, Tables 1-3; not ours):",
)

# %% [markdown]
# ## Takeaways
# * A linear probe on frozen features measures what the features already contain; FiT3D's gain is concat over
#   original, and the dup control shows it is not the extra width.
# * Depth reads the last block *before* the final LayerNorm (`probe.depth_final_norm = False`, as the official
#   evaluation), with the original model's CLS token (the fine-tuned variant: its own). Stage 2 trained the *normed*
#   tokens, after that LayerNorm: the depth probe sees the fine-tuned features without the normalisation the loss
#   saw, so their per-token scale and offset were never a training target. Segmentation reads the normed tokens.
#   SigLoss compares log depths, so it ignores a global scale in its variance term.
# * The correspondence check asks the 3D question directly: do the features of one 3D point match across views?

# %%
viz.notebook_time()
