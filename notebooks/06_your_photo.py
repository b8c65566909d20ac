# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 06 · Your own photo: DINOv2 vs FiT3D features
#
# The quickest way to see what 3D-aware fine-tuning does, with no earlier notebook: give the notebook a photo (upload
# one in Colab, or point `image_path` at a file) and compare the features of the original DINOv2 with those of the
# released FiT3D model, as the official demo does: a PCA of both with **one shared basis** (equal colours mean equal
# features) and k-means (k = 20) with **one clustering shared by both** (a colour is the same cluster in both rows).
# Offline, or without a photo, it runs on a bundled public-domain picture (scikit-image's `coffee`, CC0) with whatever
# weights can be loaded, and says which.
#
# *Colab: this copy of the course has no public address yet (README, section Colab).*

# %% tags=["parameters"]
profile = "smoke"  # "smoke": a laptop CPU, minutes; "paper": the official recipe on one GPU
overrides = {}  # profile settings by dotted key, e.g. {"backbone.weights": "hub"} (`python -m fit3d_helpers params`)
artifacts_dir = "artifacts"
drive_folder = None  # Colab: a folder in your Google Drive to keep the results in, e.g. "fit3d"
device = "auto"
image_path = None  # a photo on disk; None: upload one in Colab, else the bundled picture
max_side: int = 518  # the longer image side fed to the models (a multiple of 14; larger is slower)
clusters: int = 20  # k-means clusters (the official demo: 20)

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
import fit3d_helpers.profiles
from fit3d_helpers import photo
from fit3d_helpers.course import viz

fit3d_helpers.profiles.check_knobs(globals(), "06_your_photo")  # before any work: max_side, clusters are ints
prof, artifacts_dir = fit3d_helpers.course.notebook.start(profile, overrides, artifacts_dir, drive_folder, device)

# %% [markdown]
# ## The photo
# In Colab with no `image_path`, a file chooser asks for a photo; in a batch run (papermill, nbmake, our runner: no
# one could answer it) or when you skip it, the bundled picture is used. The photo is turned upright by its EXIF
# orientation (as your phone shows it), 16-bit files keep their range, and it is resized so that its longer side is
# `max_side` pixels, then down to a multiple of the patch size (14), as the official demo does.

# %%
image, source = photo.load_photo(image_path, max_side=max_side, ask=viz.in_colab())
print(f"image: {source}, {image.shape[1]}×{image.shape[0]} px")

# %% [markdown]
# ## The two models
# The original backbone of the profile and its 3D-aware version: FiT3D's released checkpoint when it can be loaded
# (it needs the internet once), else the model this course fine-tuned in notebook 03 if its artifact is there and
# loads, else none (only the original is shown); the line below the cell says which, and why not the others. Only the
# released checkpoint is labelled "FiT3D": this course's own model is "this course's fine-tuned model", and with
# random weights every picture below is a pipeline check (the banner says so). The `paper` profile refuses to start
# on random weights: it names the cache folders to fill instead.

# %%
original, tuned, tuned_label, tuned_note = photo.models_for(prof, artifacts_dir, device)
viz.weights_banner(original.weights)
print(f"original: {original.name} ({original.weights})\n3D-aware: {tuned_note}")

# %% [markdown]
# ## Features side by side
# Top: the photo. Then a PCA of the patch features of both models, with one basis fitted on both (what looks alike
# is alike). With real weights, FiT3D's map is smoother inside objects and sharper at their borders, and surfaces
# that face the same way share colours; with random weights both maps mostly echo the image's colours.

# %%
feats = photo.features(image, original, tuned, tuned_label)
viz.pca_figure(feats, images=[image], title="feature PCA, one basis shared by both rows")
# %% [markdown]
# ## One shared clustering
# k-means on the tokens of both models together: each token takes the colour of its nearest centre, so the same
# colour is the same cluster in both rows. With real weights FiT3D's clusters follow object parts more closely.

# %%
viz.kmeans_figure(feats, k=clusters, seed=prof.seed, images=[image])

# %% [markdown]
# ## Takeaways
# * Nothing here needed an earlier notebook: the released checkpoint (or this course's fine-tuned model) is loaded
#   directly.
# * Compare *the same colour* across the two rows: the basis and the clustering are shared on purpose.
# * Try a photo of a room: FiT3D was fine-tuned on indoor scenes (ScanNet++), where the difference is largest.
