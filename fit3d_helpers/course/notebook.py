"""The opening of every notebook in one call, so that a notebook's first lines are about its stage, not its plumbing.

    prof, artifacts_dir = fit3d_helpers.course.notebook.start(profile, overrides, artifacts_dir, drive_folder, device)

It sits in the presentation layer (``course/``) because it only prepares the notebook's surroundings; the stages
themselves never call it.
"""

from __future__ import annotations

from typing import Any

from ..profiles import Profile, load_profile
from ..utils import resolve_device, seed_everything
from . import viz


def start(
    profile: str | Profile = "smoke",
    overrides: dict[str, Any] | None = None,
    artifacts_dir: str = "artifacts",
    drive_folder: str | None = None,
    device: str = "auto",
) -> tuple[Profile, str]:
    """Prepare a notebook; returns ``(profile, artifacts folder)``.

    * the settings: ``load_profile(profile, overrides)`` first, so a typo stops the notebook before anything else;
    * working directory (the repository root), plotly renderer and Google Drive: :func:`viz.setup_notebook`;
    * seeds: ``seed_everything(prof.seed)``, so the notebook's own demonstrations repeat (every stage seeds itself);
    * one line saying what runs where: version, profile, device, artifacts folder;
    * the backbone loader's random-weights *warning* silenced: the notebook's banner says it once, in red.

    The random-weights banner is shown by the cell that loads the backbone (``viz.weights_banner``): only loading the
    weights tells whether the pretrained ones could be had.
    """
    import warnings

    import fit3d_helpers

    # the loader's random-weights warning is for scripts; a notebook shows the banner once (``viz.weights_banner``)
    warnings.filterwarnings("ignore", message="RANDOM WEIGHTS", category=UserWarning)
    prof = load_profile(profile, overrides)
    artifacts_dir = viz.setup_notebook(artifacts_dir, drive_folder)
    seed_everything(prof.seed)
    dev = resolve_device(device)
    name = profile if isinstance(profile, str) else "custom"
    changed = f" with {len(overrides)} override(s) {sorted(overrides)}" if overrides else ""
    print(
        f"fit3d_helpers {fit3d_helpers.__version__}: profile {name!r}{changed}, device {dev}, "
        f"artifacts in {artifacts_dir!r}"
    )
    return prof, artifacts_dir
