# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 07 · Your own scene: photos or a phone video → 3D feature Gaussians
#
# FiT3D's first stage needs posed views. Your desk filmed with a phone has no poses, so this notebook recovers them
# with structure from motion (COLMAP's own Python bindings, `pycolmap`, on the CPU): SIFT features, matching,
# incremental mapping, undistortion to a pinhole camera. Then it shows the cameras and sparse points in 3D, lifts the
# scene with the `capture` profile (a sparse start needs more densification than the smoke rooms), and compares a
# held-out photo with its render, the rendered features as a PCA, and k-means of the Gaussians' features in 3D.
# With no photos of your own it runs on a practice capture: a synthetic room's photos with the poses thrown away.
# It needs no other notebook.
#
# *Colab: this copy of the course has no public address yet (README, section Colab).*

# %% tags=["parameters"]
profile = "capture"  # "capture": the smoke settings with a lift that densifies a sparse start (a laptop, minutes)
overrides = {}  # profile settings by dotted key, e.g. {"lift.iterations": 1200} (`python -m fit3d_helpers params`)
artifacts_dir = "artifacts"
drive_folder = None  # Colab: a folder in your Google Drive to keep the results in, e.g. "fit3d"
device = "auto"
source = None  # a folder of photos or a video file; None: the practice capture (a synthetic room, poses dropped)
scene_dir = None  # where the posed scene is written; None: data/capture/<source name>_scene
max_side: int = 480  # longer image side for SfM and the lift (480: seconds per step on a laptop)
video_frames: int = 50  # frames kept from a video (the sharpest of each of this many equal windows)
matching = "auto"  # "auto" (sequential for a video, exhaustive for up to 100 photos), "exhaustive", "sequential"
clusters: int = 8  # k-means clusters of the Gaussians' features
force = False  # redo the structure from motion and the lift even if their results exist

# %%
# Colab: install the course once per runtime, keeping Colab's torch (on your machine: `bash scripts/lab.sh`).
COURSE_REPO = None  # written by scripts/sync_colab.py from pyproject.toml
import importlib.util
import subprocess
import sys

if "google.colab" in sys.modules and importlib.util.find_spec("fit3d_helpers") is None:
    if COURSE_REPO is None:
        raise RuntimeError("this copy of the course has no public address yet: see the README, section Colab")
    spec = f"fit3d-course[gpu,capture] @ git+{COURSE_REPO}"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "-q", spec], capture_output=True, text=True)
    if pip.returncode:
        print(pip.stdout[-1500:], pip.stderr[-3000:], sep="\n")
        raise RuntimeError(f"installing {spec} failed (pip's output is above): reconnect, then run this cell again")

# %%
import fit3d_helpers.course.notebook
import fit3d_helpers.profiles
from fit3d_helpers import capture, lift, pipeline
from fit3d_helpers.course import viz
from fit3d_helpers.data import load_scene

prof, artifacts_dir = fit3d_helpers.course.notebook.start(profile, overrides, artifacts_dir, drive_folder, device)

# %% [markdown]
# ## Taking a capture with a phone
# * **30-60 photos** (or a 20-60 s video) walking slowly around the object or along the room, each shot overlapping
#   the last by about two thirds. Move the camera, don't just turn it on the spot: depth comes from the baseline.
# * **No blur**: good light, slow steps, hold still for photos. A video's frames are picked as the sharpest of each
#   window, but a blurred walk stays blurred.
# * **Texture in view**: plain walls, glossy tables, windows and screens give SIFT nothing to match. Keep books,
#   plants, a rug in the frame.
# * **One camera, fixed settings**: one lens (the phone's 1x), no zooming, all landscape or all portrait; lock
#   exposure and focus if the camera app can (a long press on most phones).
# * **What to expect**: SfM of 50 photos at 480 px takes under a minute on 2 cores (14 s for a 50-view practice room;
#   about 45 s for a real 50-photo capture), the lift one to four minutes depending on the machine's load. The
#   practice room registers 24 of 24 views with about 0.45 px reprojection error, and its lift reaches about 41 dB
#   held-out PSNR (docs/capture.md). Real captures are harder: around 25 dB was measured on a real 50-view object
#   capture with a shorter lift; reflections, moving people and changing light lower it.

# %% [markdown]
# ## Structure from motion
# Why: the lift needs every photo's camera (intrinsics and pose) and starts best from points on the surfaces. SfM
# recovers both, up to an unknown scale and orientation of the world (which the lift does not need). The report says
# how many photos were placed, the mean reprojection error (below 1 px is good) and where the time went; a bad capture
# stops here with the photos named and the likely cause.

# %%
from pathlib import Path

fit3d_helpers.profiles.check_knobs(globals(), "07_your_scene")  # before any work: max_side, video_frames are ints
practice = None
if source is None:  # the practice capture: generated once (~20-45 s) and cached under data/capture/
    practice = capture.synthetic_capture("data/capture")
    source = practice / "images"
source = Path(source)
scene_dir = Path(scene_dir or f"data/capture/{source.parent.name if practice else source.stem}_scene")
if (scene_dir / "capture.json").is_file() and not force:
    report = capture.read_report(scene_dir)
    print(f"found {scene_dir} (force=True redoes it)")
else:
    report = capture.capture(source, scene_dir, max_side=max_side, n_frames=video_frames, matching=matching,
                             overwrite=True)  # fmt: skip
viz.table([{k: v for k, v in vars(report).items() if k != "unregistered"}], title=f"SfM of {source}")

# %% [markdown]
# ## The cameras and the sparse points in 3D
# Each red pyramid is a photo's camera, pointing where the photo looks; the points are the SIFT matches SfM
# triangulated, in their own colours. *What to look at:* cameras on a smooth path, points on the walls, floor and
# furniture, few strays. For the practice capture the true poses are known, so the recovered ones are compared with
# them after the best similarity (SfM's world has its own scale and orientation).

# %%
scene = load_scene(scene_dir)
viz.scene_figure(scene.views, scene.points, scene.point_colors, title=f"{scene.name}: cameras and SfM points").show()
if practice is not None:
    import numpy as np

    true = load_scene(practice)
    err = capture.pose_errors(*(np.stack([v.cam_to_world for v in s.views]) for s in (scene, true)))
    rot, centre = err["rotation_deg"].max(), 100 * err["centre_error"].max()
    print(f"against the true poses: rotation error max {rot:.2f} deg, camera centres max {centre:.1f} cm")

# %% [markdown]
# ## The lift
# Why the `capture` profile: SfM leaves a few hundred to a few thousand points, not the 15,000 depth points of the
# course's synthetic rooms, and the smoke lift (200 iterations, one densification) never grows them. The capture
# profile fits 600 iterations and densifies every 50 from iteration 50 to 400 at half the gradient threshold, up to
# 25,000 Gaussians. Every 8th photo is held out (never trained on) to measure the fit honestly. In the course's batch
# run (`bash scripts/course.sh`) every notebook gets the run's profile, so there this notebook lifts at smoke settings
# (faster, a few dB lower); opened on its own it uses `capture`. The line below says which ran.

# %%
bb = pipeline.backbone_for(prof, device)
viz.weights_banner(bb.weights)
res = lift.lift_scene(scene_dir, bb, prof.lift, root=artifacts_dir, force=force)
s = res.stats
print(f"profile {prof.name!r}: {s['n_init_points']} SfM points -> {s['n_gaussians']} Gaussians in "
      f"{s['wall_seconds']} s; held-out PSNR {s['heldout_psnr']:.1f} dB on {s['heldout_views']} photos")  # fmt: skip
viz.loss_figure({"rgb": res.losses["rgb"], "feature L1": res.losses["feature"]}, title="lift losses",
                counts=res.losses["n_gaussians"], ylabel="loss (RGB; feature L1)");  # fmt: skip

# %% [markdown]
# ## A held-out photo vs its render, and the rendered features
# Top: held-out photos and the renders from their cameras. Below: the backbone's features of each photo and the
# Gaussians' rendered, decoded features as a PCA with **one basis shared by both rows** (equal colours mean equal
# features). *What to look at:* the render matches the photo where the capture saw the surface from several sides;
# edges of the capture blur. With random weights (the banner above) the PCA follows colour and texture only.

# %%
prep = lift.prepare_scene(scene, bb, prof.lift)
ids = prep.holdout_ids[:3] or prep.train_ids[:3]
renders = lift.render_views(res, prep, ids, prof.lift)
viz.pca_figure(
    {"backbone (2D)": [prep.targets[i].cpu() for i in ids], "rendered + decoded (3D)": renders["features"]},
    images={"photo (held out)": [prep.images[i].permute(1, 2, 0).cpu().numpy() for i in ids], "render": renders["rgb"]},
    title="held-out photos, renders, and feature PCA with a shared basis",
);  # fmt: skip

# %% [markdown]
# ## k-means of the Gaussians' features, in 3D
# Each Gaussian carries a 64-d feature; clustering them (cosine k-means) groups the scene into parts by what the
# backbone saw, in 3D. *What to look at:* with pretrained weights the clusters follow objects (a chair, the table
# top, the floor); with random weights they follow colour.

# %%
import plotly.graph_objects as go

act = lift.activated(res.params)
keep = act["opacities"] > 0.2  # [N] the Gaussians that show
labels = viz.kmeans(res.params["features"][keep], k=clusters, seed=prof.seed).numpy()
xyz, pal = act["means"][keep].numpy(), viz.class_colors(clusters)
fig = go.Figure([go.Scatter3d(x=xyz[labels == c, 0], y=xyz[labels == c, 1], z=xyz[labels == c, 2], mode="markers",
                              marker=dict(size=1.6, color="rgb({},{},{})".format(*(pal[c] * 255).astype(int))),
                              name=f"cluster {c}") for c in range(clusters)])  # fmt: skip
fig.update_layout(title=f"{int(keep.sum())} Gaussians in {clusters} feature clusters", scene=dict(aspectmode="data"),
                  height=550, margin=dict(l=0, r=0, t=40, b=0))  # fmt: skip
fig.show()

# %% [markdown]
# ## DINOv2 vs FiT3D on your photos (released weights)
# With the internet once, FiT3D's released checkpoint loads and the same held-out photos go through both models, as
# in notebook 06. Offline, the released weights cannot be had and this cell says so instead of showing random-weight
# pictures.

# %%
from fit3d_helpers import photo

original, tuned, tuned_label, note = photo.models_for(prof, artifacts_dir, device)
if tuned is not None and tuned_label.startswith("FiT3D"):
    rows: dict = {}
    for i in ids:
        for name, maps in photo.features(prep.images[i].permute(1, 2, 0).cpu().numpy(), original, tuned,
                                         tuned_label).items():  # fmt: skip
            rows.setdefault(name, []).extend(maps)
    viz.pca_figure(rows, images=[prep.images[i].permute(1, 2, 0).cpu().numpy() for i in ids],
                   title="DINOv2 vs FiT3D, one basis shared by both rows");  # fmt: skip
else:
    print(f"skipped: FiT3D's released weights are not available here ({note}). Run this notebook online once.")

# %% [markdown]
# ## Takeaways
# * Photos or a video become a posed scene with `python -m fit3d_helpers capture <photos-or-video> <scene-folder>`
#   (or `capture.capture`); a bad capture stops with the photos named and the likely cause.
# * A sparse SfM start needs a lift that densifies early and often: the `capture` profile.
# * A capture with poses but no points (instant-ngp, nerfstudio) gets points triangulated from its poses instead of
#   random ones (docs/capture.md).

# %%
viz.notebook_time()
