"""Write notebooks/01..05 from the cell lists below (no outputs).

Why a builder: the notebooks are reviewed as code here (one diff, one style), and `tests/test_notebooks.py` checks
that the committed .ipynb files equal what this script writes, so they cannot drift. Edit here, then run
`python scripts/build_notebooks.py`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parents[1]
COLAB_REPO = "ORG/fit3d-course"  # replace ORG with where you host the course (README "Colab")

COLAB_CELL = f'''# Colab only: install the course and keep Colab's own torch. On your machine run `bash scripts/setup.sh` once instead.
import sys
if "google.colab" in sys.modules:
    get_ipython().run_line_magic("pip", "install -q 'fit3d-course[gpu] @ git+https://github.com/{COLAB_REPO}'")'''

SETUP_CELL = '''import fit3d_helpers.viz as viz
viz.setup_notebook()  # plotly figures that render offline in the exported HTML; repo root as working directory
%matplotlib inline'''


# The pipeline settings every notebook takes (so an override reaches every stage and each stage finds the artifacts
# of the one before by hash), and the one call that turns them into a profile. Cells name them as placeholders.
PIPELINE_PARAMS = """# pipeline settings, shared by notebooks 01-05 so each finds what the previous one made (None: the profile's value)
n_train = None         # training scenes (smoke 3)
n_val = None           # held-out scenes (smoke 2)
n_views = None         # views per synthetic scene (smoke 24)
backbone = "dinov2_small"
weights = "auto"       # "auto" | "hub" | "random" | path to a .pth
iterations = None      # stage-1 iterations per scene (smoke 300, paper 30000)
feature_dim = None     # stage-1 feature dimension (64)
sh_degree = None       # stage-1 SH degree (smoke 0, paper 3)
strategy = None        # stage-1 densification: "simple" (smoke: ours, plain torch) or "gsplat" (paper: gsplat's DefaultStrategy)
mode = None            # fine-tuning: "full" (default), "lora" (rank-4 adapters, last 4 blocks' qkv) or "released" (FiT3D's checkpoint)
epochs = None          # fine-tuning epochs (1)
lr = None              # fine-tuning lr (official 1e-5; smoke 1e-4, see fit3d_helpers/profiles.py)
target_factor = None   # fine-tuning targets rendered at the token grid times this factor (1)
seg_steps = None       # segmentation probe steps (smoke 150, paper 40000)
depth_steps = None     # depth probe steps (smoke 150, paper 38400)"""

PROFILE_CALL = """prof = course_profile(profile, n_train=n_train, n_val=n_val, n_views=n_views, backbone=backbone, weights=weights,
                      iterations=iterations, feature_dim=feature_dim, sh_degree=sh_degree, mode=mode, epochs=epochs, lr=lr,
                      target_factor=target_factor, seg_steps=seg_steps, depth_steps=depth_steps, strategy=strategy)"""


def _expand(text: str) -> str:
    return text.strip("\n").replace("<<PIPELINE_PARAMS>>", PIPELINE_PARAMS).replace("<<PROFILE_CALL>>", PROFILE_CALL)


def md(text: str) -> nbformat.NotebookNode:
    return new_markdown_cell(text.strip("\n"))


def code(text: str, tags: list[str] | None = None) -> nbformat.NotebookNode:
    cell = new_code_cell(_expand(text))
    if tags:
        cell.metadata["tags"] = tags
    return cell


def params(text: str) -> nbformat.NotebookNode:
    return code(text, ["parameters"])


NOTEBOOKS: dict[str, list[nbformat.NotebookNode]] = {}

# --------------------------------------------------------------------------------------------------------------
NOTEBOOKS["01_data.ipynb"] = [
    params('''
# Parameters (papermill). None = the profile's value. "smoke" runs on a laptop CPU in minutes; "paper" needs one GPU.
profile = "smoke"
artifacts_dir = "artifacts"
seed = 0
workers = 2            # processes for scene generation
scene_index = 0        # which scene to look at
<<PIPELINE_PARAMS>>
'''),
    md('''
# 01 · Data: posed multi-view scenes

FiT3D needs **many views of the same scene with known cameras**: stage 1 lifts 2D features into a 3D
representation of each scene, which only works if every view agrees on where things are. The paper uses
ScanNet++ DSLR captures; offline we generate furnished rooms of our own, written in the *same* nerfstudio
`transforms.json` layout, so one loader serves both.

Each view has an RGB image, intrinsics `K`, a camera-to-world pose in the **OpenCV convention** (x right, y down,
z forward), planar depth in metres and a semantic class map (for the probes in notebook 04).
'''),
    code(COLAB_CELL),
    code(SETUP_CELL),
    md('''
## Generate (or reuse) the scenes
The generator ray-casts textured, pre-lit rooms (Embree through `embreex`). It is cached on disk by its
parameters, so the second run of this cell takes a second. `data_stage` also writes `artifacts/data/<hash>/stats.json`
that the report reads.
'''),
    code('''
import time
from fit3d_helpers import pipeline
from fit3d_helpers.profiles import course_profile
from fit3d_helpers.utils import seed_everything

seed_everything(seed)
<<PROFILE_CALL>>
t0 = time.time()
split, data_stats = pipeline.data_stage(prof, artifacts_dir, workers=workers)
print(f"{len(split.train)} training + {len(split.val)} held-out scenes, ready in {time.time() - t0:.1f} s "
      f"(generation took {data_stats['generate_seconds']} s when it ran)")
'''),
    md('''
## Look at one scene
RGB, depth (metres) and the semantic classes overlaid on the image. The class ids index the table below.
'''),
    code('''
from fit3d_helpers.data import load_scene
scene = load_scene((split.train + split.val)[scene_index])
print(scene.name, "-", len(scene.views), "views of", scene.views[0].width, "x", scene.views[0].height, "px")
viz.view_grid(scene.views[:: max(1, len(scene.views) // 4)], scene.classes);
'''),
    code('''
viz.class_legend(scene.classes);
'''),
    md('''
## Cameras and the fused point cloud
Every depth map unprojected into world space with its pose and fused into one cloud. If poses, intrinsics and
depth agree, the walls are thin and the furniture is not doubled. Drag to rotate.
'''),
    code('''
points, colors = scene.points_from_depth(max_points=20_000, seed=seed)
viz.scene_figure(scene.views, points, colors, title=f"{scene.name}: cameras (red) and fused depth").show()
'''),
    md('''
## Step through the views
An `ipywidgets` slider in Jupyter/Colab (a batch run draws the first view instead).
'''),
    code('''
import matplotlib.pyplot as plt

def show_view(view: int = 0) -> None:
    viz.view_grid([scene.views[view]], scene.classes)
    plt.show()

viz.interactive(show_view, view=(0, 0, len(scene.views) - 1))
'''),
    md('''
## Multi-view consistency check
For each pair of consecutive views: the fraction of view *i*'s pixels that, unprojected with their depth and
projected into view *i+1*, land within **3 cm** of the surface seen there (pixels occluded in *i+1* are left out).
This is the property stage 1 relies on.
'''),
    code('''
from fit3d_helpers.data import reprojection_consistency
fractions = [reprojection_consistency(a, b, threshold_m=0.03) for a, b in zip(scene.views[:-1], scene.views[1:])]
print(f"{scene.name}: consistent within 3 cm: mean {sum(fractions) / len(fractions):.4f}, worst pair {min(fractions):.4f}")
print("all scenes:", {k: round(v, 4) for k, v in data_stats["consistency_per_scene"].items()})
'''),
]

# --------------------------------------------------------------------------------------------------------------
NOTEBOOKS["02_lift_to_gaussians.ipynb"] = [
    params('''
# Parameters (papermill). None = the profile's value.
profile = "smoke"
artifacts_dir = "artifacts"
seed = 0
device = "auto"        # "auto": CUDA (gsplat) when present, else CPU (our PyTorch rasterizer)
shard = None           # "i/n": fit only every n-th scene starting at i (several machines at once)
scene_index = 0        # which scene to look at
force = False          # refit even if the artifact exists
<<PIPELINE_PARAMS>>
'''),
    md('''
# 02 · Lift: 2D features → 3D feature Gaussians

For every training scene we fit 3D Gaussians (position, scale, rotation, opacity, colour) **plus a 64-d feature
each**. Rendered colour must match the photos (`0.8·L1 + 0.2·(1−SSIM)`); rendered features, decoded by a 3×3
conv up to the backbone width (384 for ViT-S), must match DINOv2's patch features (L1). Because every view is
explained by *one* set of 3D features, the rendered features are multi-view consistent by construction: they
become the fine-tuning targets in notebook 03.

As in the official code, the feature loss does **not** move geometry: features are rendered with detached
positions, scales, rotations and opacities.
'''),
    code(COLAB_CELL),
    code(SETUP_CELL),
    md('''
## The backbone and the scenes
Without internet the pretrained DINOv2 cannot be downloaded, and the backbone falls back to a *seeded random
init*. Everything still runs, and every output says so: the numbers are then a pipeline check, not the paper's.
'''),
    code('''
from fit3d_helpers import pipeline
from fit3d_helpers.profiles import course_profile
from fit3d_helpers.utils import seed_everything

seed_everything(seed)
<<PROFILE_CALL>>
split, _ = pipeline.data_stage(prof, artifacts_dir)
bb = pipeline.backbone_for(prof, device)
viz.weights_banner(bb.weights)
print(f"{bb.name}: width {bb.dim}, patch {bb.patch_size}; scenes to lift: {[p.parent.name if p.name.endswith('.json') else p.name for p in pipeline.lift_scenes(prof, split)]}")
'''),
    md('''
## Fit every scene (cached)
A progress bar per scene. An artifact that exists is loaded, not refitted; an interrupted fit resumes from its
last checkpoint.
'''),
    code('''
results = pipeline.lift_stage(prof, bb, split, artifacts_dir, shard=shard, force=force)
viz.table({r.stats["scene"]: {k: r.stats[k] for k in ("heldout_psnr", "heldout_ssim", "heldout_feature_l1", "heldout_feature_cosine",
           "heldout_feature_cosine_centered", "n_gaussians", "iterations", "wall_seconds", "strategy")} for r in results}, "held-out views (never trained on):")
'''),
    md('''
## Loss curves
RGB loss and feature L1 per iteration (smoothed), and the number of Gaussians (densification adds, pruning removes).
Densification follows 3DGS: Gaussians whose 2D mean gets a large gradient from the RGB loss are cloned (small ones)
or split (large ones), transparent ones are pruned. `strategy="simple"` (smoke) is the course's own plain-torch
version, `"gsplat"` (paper) is gsplat's maintained `DefaultStrategy`; both read only the RGB pass's gradients.
'''),
    code('''
res = results[min(scene_index, len(results) - 1)]
viz.loss_figure({"rgb": res.losses["rgb"], "feature L1": res.losses["feature"]}, title=f"lift losses, {res.stats['scene']}");
'''),
    md('''
## A held-out view: photo vs render, backbone features vs rendered features
The PCA images use **one basis shared by both rows**, so equal colours mean equal features.
'''),
    code('''
from fit3d_helpers import lift as L
prep = L.prepare_scene(L.load_scene(res.config["scene"]), bb, prof.lift)  # images at training size + DINOv2 targets
renders = L.render_views(res, prep, prep.holdout_ids[:3], prof.lift)
viz.pca_figure({"DINOv2 (2D)": [prep.targets[i].cpu() for i in prep.holdout_ids[:3]], "rendered + decoded (3D)": renders["features"]},
               images=[r for r in renders["rgb"]], title="held-out views: rendered RGB (top), feature PCA with a shared basis");
'''),
    md('''
## The Gaussians in 3D, coloured by their feature PCA
Points with the same colour carry similar features: the 3D representation of the 2D feature field.
'''),
    code('''
act = L.activated(res.params)
viz.gaussians_figure(act["means"], res.params["features"], act["opacities"], title=f"{res.stats['scene']}: {res.stats['n_gaussians']} Gaussians").show()
'''),
    md('''
## Pick a view
Interactive in Jupyter (renders any view of the scene, trained or held out).
'''),
    code('''
import matplotlib.pyplot as plt

def show(view: int = 0) -> None:
    r = L.render_views(res, prep, [view], prof.lift)
    viz.pca_figure({"DINOv2": [prep.targets[view].cpu()], "rendered": r["features"]}, images=r["rgb"],
                   title=f"view {view}" + (" (held out)" if view in prep.holdout_ids else ""))
    plt.show()

viz.interactive(show, view=(prep.holdout_ids[0], 0, len(prep.train_ids) + len(prep.holdout_ids) - 1))
'''),
]

# --------------------------------------------------------------------------------------------------------------
NOTEBOOKS["03_finetune.ipynb"] = [
    params("""
# Parameters (papermill). None = the profile's value.
profile = "smoke"
artifacts_dir = "artifacts"
seed = 0
device = "auto"
use_released = False   # demo mode: skip training, load the released FiT3D checkpoint (needs the internet once)
<<PIPELINE_PARAMS>>
"""),
    md("""
# 03 · Fine-tune the 2D backbone on 3D-consistent features

Stage 2 of FiT3D. For every view of every training scene, the lifted Gaussians of notebook 02 render their
low-dim features, the scene's decoder lifts them to the backbone width, and the result is resized to the token
grid: a **multi-view-consistent target**. The backbone is fine-tuned so its own patch tokens match it (L1,
masked by the rendered alpha), for one epoch, with AdamW (lr 1e-5, wd 1e-4), batch 2, gradient clipping at
0.1 and random horizontal flips.

Targets are rendered once at the token grid and cached, so a step costs about one backbone forward+backward.
"""),
    code(COLAB_CELL),
    code(SETUP_CELL),
    md("""
## Scenes, the original backbone, and the lifted scenes
Stage 1's artifacts are found by the hash of the config that made them (scene, backbone, weights, lift settings);
a missing one raises an error naming the scene and the call that makes it.
"""),
    code("""
from fit3d_helpers import pipeline
from fit3d_helpers.profiles import course_profile
from fit3d_helpers.utils import seed_everything

seed_everything(seed)
<<PROFILE_CALL>>
split, _ = pipeline.data_stage(prof, artifacts_dir)
original = pipeline.backbone_for(prof, device)
viz.weights_banner(original.weights)
lifts = pipeline.load_lifts(prof, original, split.train, artifacts_dir)
print(f"{len(lifts)} lifted training scenes found:", [l.path.name for l in lifts])
"""),
    md("""
## Fine-tune (cached by config hash; resumes from its last checkpoint)
"""),
    code("""
from fit3d_helpers import finetune as FT
if use_released or prof.finetune.mode == "released":
    tuned, ft_id, ft_stats = FT.released(prof.backbone, device), "fit3d", None
else:
    tuned = pipeline.backbone_for(prof, device)  # a fresh copy of the original, trained in place
    result = pipeline.finetune_stage(prof, tuned, split, artifacts_dir)
    tuned, ft_id, ft_stats = result.load(device), result.path.name, result.stats
    viz.table({k: ft_stats[k] for k in ("mode", "epochs", "lr", "steps", "trainable_params", "val_l1_before", "val_l1_after",
              "seconds_per_step", "target_render_seconds_per_view", "full_size_render_seconds_per_view")}, "fine-tuning:")
    viz.loss_figure({"masked L1": result.losses["loss"]}, title="fine-tuning loss", smooth=5);
"""),
    md("""
## Original vs fine-tuned features
PCA with **one basis shared by both rows** (equal colours = equal features), then k-means clusters of each.
The images are held-out views the model was never fine-tuned on.
"""),
    code("""
import torch
from fit3d_helpers.data import load_scene
views = load_scene(split.val[0]).views[::6][:4]
imgs = torch.stack([torch.as_tensor(v.image).permute(2, 0, 1) for v in views])
f_orig, _ = original.features(imgs)
f_tuned, _ = tuned.features(imgs)
viz.pca_figure({"original": list(f_orig), "fine-tuned": list(f_tuned)}, images=[v.image for v in views]);
"""),
    code("""
viz.kmeans_figure({"original": list(f_orig), "fine-tuned": list(f_tuned)}, k=6, seed=seed);
"""),
    md("""
## Validation L1 before and after
Masked L1 between the model's tokens and the rendered targets of a **held-out** scene (lifted in notebook 02,
never fine-tuned on): lower after fine-tuning means the model learned to produce 3D-consistent features on new
scenes, not only on its training views.
"""),
    code("""
if ft_stats:
    print(f"validation L1 (held-out scenes {ft_stats['val_scenes']}): before {ft_stats['val_l1_before']:.4f} -> after {ft_stats['val_l1_after']:.4f}")
    print(f"targets at the token grid: {ft_stats['target_render_seconds_per_view'] * 1000:.1f} ms/view vs {ft_stats['full_size_render_seconds_per_view'] * 1000:.1f} ms/view at full size")
"""),
]

# --------------------------------------------------------------------------------------------------------------
NOTEBOOKS["04_probe.ipynb"] = [
    params("""
# Parameters (papermill). None = the profile's value.
profile = "smoke"
artifacts_dir = "artifacts"
seed = 0
device = "auto"
use_released = False   # probe the released FiT3D checkpoint instead of our fine-tuned model (needs the internet once)
force = False          # retrain the probes even if their artifact exists
<<PIPELINE_PARAMS>>
"""),
    md("""
# 04 · Linear probes and the 3D-awareness check

The backbone is frozen; only a linear head is trained on its features. Segmentation: BatchNorm + 1×1 conv.
Depth: patch tokens + CLS token, ×4 upsampling, 1×1 conv to 256 uniform depth bins (SigLoss + 0.5·gradient
loss). We compare five feature variants: **original**, **fine-tuned**, and three assemblies of both:
**concat** (FiT3D's default), **add**, and **linear** fusion. Heads train on the training scenes and are
evaluated on held-out scenes the backbone was never fine-tuned on.

Then a check that needs no training: do features of the *same 3D point* match across two views?
"""),
    code(COLAB_CELL),
    code(SETUP_CELL),
    code("""
from fit3d_helpers import pipeline
from fit3d_helpers.profiles import course_profile
from fit3d_helpers.utils import seed_everything

seed_everything(seed)
<<PROFILE_CALL>>
split, _ = pipeline.data_stage(prof, artifacts_dir)
original = pipeline.backbone_for(prof, device)
viz.weights_banner(original.weights)
"""),
    md("""
## The fine-tuned model of notebook 03 (found by config hash)
"""),
    code("""
from fit3d_helpers import finetune as FT
if use_released or prof.finetune.mode == "released":
    tuned, ft_id = FT.released(prof.backbone, device), "fit3d"
else:
    result = pipeline.finetune_stage(prof, pipeline.backbone_for(prof, device), split, artifacts_dir)
    tuned, ft_id = result.load(device), result.path.name
print("fine-tuned model:", ft_id)
"""),
    md("""
## Train the probes (features cached once per model)
"""),
    code("""
stats = pipeline.probe_stage(prof, split, original, tuned, ft_id, artifacts_dir, device=device, seed=seed, force=force, tag={"headline": True})
viz.table(stats["results"]["seg"], "semantic segmentation on held-out scenes (fractions):")
viz.table(stats["results"]["depth"], "depth on held-out scenes (metres):")
"""),
    md("""
## Predictions beside the ground truth
"""),
    code("""
viz.probe_examples(stats["path"], stats["classes"], max_depth=prof.max_depth);
"""),
    md("""
## 3D awareness: correspondences across views
For pairs of views of held-out scenes, the true correspondence of each token comes from depth and poses.
*Recall@px*: the nearest neighbour in feature space lands within that many pixels of the truth.
*Cosine (true)* vs *cosine (random)*: similarity of corresponding vs random token pairs.
"""),
    code("""
viz.table(stats["awareness"], "correspondence on held-out scenes:")
"""),
    md("""
## What the paper reports (not our numbers)
DINOv2 ViT-S/14 linear probes, original → FiT3D (= original ⊕ fine-tuned), as reported by the paper and the
public notes that reproduce its tables. Our smoke run uses small synthetic rooms and, offline, a randomly
initialised backbone: compare trends, not values.
"""),
    code("""
from fit3d_helpers.report import PAPER_MAIN, PAPER_SOURCE
print(PAPER_SOURCE)
viz.table({ds: {"seg mIoU DINOv2": a, "seg mIoU FiT3D": b, "depth RMSE DINOv2": c, "depth RMSE FiT3D": d}
           for ds, (a, b, c, d) in PAPER_MAIN.items()}, "reported by the paper (not ours):")
"""),
]

# --------------------------------------------------------------------------------------------------------------
NOTEBOOKS["05_ablations.ipynb"] = [
    params("""
# Parameters (papermill). None = the profile's value.
profile = "smoke"
artifacts_dir = "artifacts"
seed = 0
device = "auto"
ablate_feature_dims = [16, 32, 64, 128]   # stage-1 feature dimension
ablate_epochs = [1, 2]                    # fine-tuning epochs
ablate_modes = ["full", "lora"]           # full fine-tuning vs LoRA adapter
ablate_target_factors = [1, 2, 4]         # target render resolution: token grid x factor
refit_iterations = 100             # feature-only refits for the feature-dimension ablation (geometry is reused)
probe_steps = 100                  # probe steps per ablation point (None: the profile's)
probe_variants = ["concat"]        # feature variants probed per point (add "finetuned" for the fine-tuned-only column)
<<PIPELINE_PARAMS>>
"""),
    md("""
# 05 · Ablations

One setting changed at a time, everything else as in notebooks 02-04. Every stage is cached by the hash of the
config that made it, so the baseline point (the settings of 02-04) is read from disk, and re-running this
notebook recomputes nothing. Tables and plots below are built from the artifacts' `stats.json` files; the paper's
numbers stand beside ours where the paper has them.

* **Feature dimension** 16 / 32 / 64 / 128. The feature loss cannot move geometry (features are rendered with
  detached geometry), so instead of refitting whole scenes we refit only features and decoder on the baseline's
  frozen Gaussians: the same experiment at a fraction of the cost (`fit3d_helpers.lift.refit_features`).
* **Assembly** concat / add / linear fusion, and **fine-tuned only vs concatenated**: from notebook 04's probes.
* **Epochs** 1 vs 2, **full fine-tuning vs LoRA**, **target render resolution** ×1 / ×2 / ×4.

With random weights, read the LoRA row with care: DINOv2's blocks scale their residual branches by LayerScale,
initialised to 1e-5, so a *randomly initialised* DINOv2 is almost the identity after the patch embedding and an
adapter on `qkv` can barely change its output. With pretrained weights LayerScale is learned and LoRA acts.
"""),
    code(COLAB_CELL),
    code(SETUP_CELL),
    code("""
from fit3d_helpers import ablations, pipeline
from fit3d_helpers.profiles import course_profile
from fit3d_helpers.utils import seed_everything

seed_everything(seed)
<<PROFILE_CALL>>
split, _ = pipeline.data_stage(prof, artifacts_dir)
original = pipeline.backbone_for(prof, device)
viz.weights_banner(original.weights)
"""),
    md("""
## Assembly and fine-tuned-only vs concatenated (notebook 04's probe, read from disk)
"""),
    code("""
tuned_result = pipeline.finetune_stage(prof, pipeline.backbone_for(prof, device), split, artifacts_dir)
main = pipeline.probe_stage(prof, split, original, tuned_result.load(device), tuned_result.path.name, artifacts_dir,
                            device=device, seed=seed, tag={"headline": True})
viz.assembly_tables(main)
"""),
    md("""
## The one-setting-at-a-time grid
Each point: (lift) → fine-tune → probe with the fine-tuned-only and concatenated features.
"""),
    code("""
grid = {"feature_dim": ablate_feature_dims, "epochs": ablate_epochs, "mode": ablate_modes, "target_factor": ablate_target_factors}
abl = ablations.run_ablations(prof, split, original, artifacts_dir, grid, device=device, seed=seed, refit_iterations=refit_iterations,
                              probe_steps=probe_steps, variants=tuple(probe_variants))
for name, rows in abl["rows"].items():
    viz.table({str(r["value"]): {k: v for k, v in r.items() if k not in ("ablation", "value")} for r in rows}, f"ablation: {name} ({ablations.ABLATIONS[name]})")
"""),
    md("""
How to read the columns: `lift_*` are stage-1 quality on held-out views (identical PSNR across feature dimensions:
the geometry is shared), `feature_MB` the memory of the per-Gaussian features, `ft_*` fine-tuning cost and its
validation L1 (measured against targets rendered at the same factor, so it is not comparable across target
factors), then probe and 3D-correspondence numbers of the concatenated features on held-out scenes.
"""),
    md("""
## At a glance
Segmentation mIoU and depth RMSE of the concatenated features for every ablation point.
"""),
    code("""
viz.ablation_figure(abl["rows"]).show()
"""),
    md("""
## What the paper reports for the same questions (not our numbers)
"""),
    code("""
from fit3d_helpers.report import PAPER_ASSEMBLY_NYU_MIOU, PAPER_EPOCHS_NYU_MIOU, PAPER_SOURCE
print(PAPER_SOURCE)
viz.table({"NYUv2 seg mIoU": {f"assembly: {k}": v for k, v in PAPER_ASSEMBLY_NYU_MIOU.items()}
           | {f"epochs: {k}": v for k, v in PAPER_EPOCHS_NYU_MIOU.items()}}, "reported by the paper:")
"""),
]


def build(check: bool = False) -> list[str]:
    """Write (or, with check=True, compare) every notebook; returns the names that differ."""
    out_dir = ROOT / "notebooks"
    out_dir.mkdir(exist_ok=True)
    differ = []
    for name, cells in NOTEBOOKS.items():
        nb = new_notebook(cells=cells, metadata={
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        })
        for i, cell in enumerate(nb.cells):  # stable ids, so rebuilding gives the same file
            cell["id"] = f"{name[:2]}-{i:02d}"
        text = nbformat.writes(nb) + "\n"
        path = out_dir / name
        if check:
            if not path.is_file() or path.read_text() != text:
                differ.append(name)
        else:
            path.write_text(text)
    return differ


if __name__ == "__main__":
    stale = build(check="--check" in sys.argv)
    if stale:
        print("notebooks out of date with scripts/build_notebooks.py:", stale)
        sys.exit(1)
