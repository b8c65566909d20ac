# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 · Data: posed multi-view scenes
#
# FiT3D needs **many views of the same scene with known cameras**: stage 1 lifts 2D features into a 3D
# representation of each scene, which only works if every view agrees on where things are. The paper uses
# ScanNet++ DSLR captures; offline we generate furnished rooms of our own, written in the *same* nerfstudio
# `transforms.json` layout, so one loader serves both. Each view has an RGB image, intrinsics `K`, a camera-to-world
# pose in the **OpenCV convention** (x right, y down, z forward), planar depth in metres and a semantic class map
# (for the probes in notebook 04).
#
# *Colab: this copy of the course has no public address yet (README, section Colab).*

# %% tags=["parameters"]
profile = "smoke"  # "smoke": a laptop CPU, minutes; "paper": the official recipe on one GPU
overrides = {}  # profile settings by dotted key, e.g. {"data.n_train": 4} (`python -m fit3d_helpers params`)
artifacts_dir = "artifacts"
drive_folder = None  # Colab: a folder in your Google Drive to keep the results in, e.g. "fit3d"
workers = 2  # processes for scene generation
scene_index = 0  # which scene to look at

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

prof, artifacts_dir = fit3d_helpers.course.notebook.start(profile, overrides, artifacts_dir, drive_folder)

# %% [markdown]
# ## Generate (or reuse) the scenes
# Why generated rooms: offline there is no ScanNet++, and a student's laptop has no GPU to render a real capture's
# Gaussians at full size. The generator ray-casts textured, pre-lit rooms (Embree through `embreex`) and writes
# exactly the layout real captures come in. It is cached by its parameters, so the second run takes a second, and
# `data_stage` records the scenes' statistics in `artifacts/data/` for the report.

# %%
import time

t0 = time.time()
split, data_stats = pipeline.data_stage(prof, artifacts_dir, workers=workers)
print(
    f"{len(split.train)} training + {len(split.val)} held-out scenes, ready in {time.time() - t0:.1f} s "
    f"(generation took {data_stats['generate_seconds']} s when it ran)"
)

# %% [markdown]
# ## Look at one scene
# Four of the scene's views: RGB, planar depth (metres) and the semantic classes overlaid on the image. The class
# ids index the legend below; the probes of notebook 04 learn to predict them (and the depth) from frozen features.
# *What to look at:* the depth is smooth on walls and jumps at object borders; the classes follow the furniture.

# %%
from fit3d_helpers.data import load_scene

scene = load_scene((split.train + split.val)[scene_index])
print(scene.name, "-", len(scene.views), "views of", scene.views[0].width, "x", scene.views[0].height, "px")
viz.view_grid(scene.views[:: max(1, len(scene.views) // 4)], scene.classes);
# %%
viz.class_legend(scene.classes);
# %% [markdown]
# ## From a pixel to a 3D point and back
# Everything in FiT3D rests on two maps. A pixel $(u, v)$ with planar depth $z$ seen by a camera with intrinsics $K$
# and camera-to-world pose $(R, t)$ lies at the world point
#
# $$X = R \, z \, K^{-1} \begin{pmatrix} u \\ v \\ 1 \end{pmatrix} + t ,$$
#
# (**unprojection**), and a world point $X$ lands in another camera $(K', R', t')$ at
#
# $$\begin{pmatrix} u' \\ v' \\ 1 \end{pmatrix} \propto K' R'^{\top} (X - t') ,
# \qquad z' = \left[ R'^{\top} (X - t') \right]_3$$
#
# (**reprojection**). Pixel centres sit at $(c + 0.5, r + 0.5)$ and cameras follow OpenCV (x right, y down,
# z forward); `data.project` is the one implementation the course uses.
#
# Below, every depth map is unprojected with its pose and the points fused into one cloud. If poses, intrinsics and
# depth agree, the walls are thin and the furniture is not doubled. *What to look at:* drag to rotate; the red
# frustums are the cameras, all inside the room looking inwards.

# %%
points, colors = scene.points_from_depth(max_points=20_000, seed=prof.seed)
viz.scene_figure(scene.views, points, colors, title=f"{scene.name}: cameras (red) and fused depth").show()

# %% [markdown]
# ## Step through the views
# An `ipywidgets` slider in Jupyter/Colab (a batch run draws the first view instead).

# %%
import matplotlib.pyplot as plt


def show_view(view: int = 0) -> None:
    viz.view_grid([scene.views[view]], scene.classes)
    plt.show()


viz.interactive(show_view, view=(0, 0, len(scene.views) - 1))

# %% [markdown]
# ## Multi-view consistency check
# Stage 1 assumes every view agrees on the geometry. We test it with the reprojection above: for each pair of
# consecutive views, the share of view $i$'s pixels that, unprojected with their depth and reprojected into view
# $i+1$, land within **3 cm** of the surface seen there (pixels hidden in view $i+1$ are left out). Real captures
# reach a few percent less (depth noise, moving people); these rooms are exact up to their pixel grid.

# %%
from fit3d_helpers.data import reprojection_consistency

shares = [reprojection_consistency(a, b, threshold_m=0.03) for a, b in zip(scene.views[:-1], scene.views[1:])]
print(
    f"{scene.name}: consistent within 3 cm: mean {100 * sum(shares) / len(shares):.2f} %, "
    f"worst pair {100 * min(shares):.2f} %"
)
print("all scenes (%):", {k: round(100 * v, 2) for k, v in data_stats["consistency_per_scene"].items()})

# %% [markdown]
# ## Takeaways
# * A scene is views + cameras (+ depth and classes for evaluation); one loader reads generated rooms, nerfstudio
#   `transforms.json` captures, COLMAP models and ScanNet++ as its toolkit leaves it.
# * Unprojection and reprojection tie pixels of different views to the same 3D point: the property the lift in
#   notebook 02 turns into multi-view-consistent features.
# * The rooms are consistent to within 3 cm almost everywhere, so differences later come from the method, not the data.

# %%
viz.notebook_time()
