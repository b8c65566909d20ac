"""The scenes of a profile: generated synthetic rooms, a ScanNet++ DSLR download, or none (the NYU profile probes
the official evaluation sets). Data-side logic, kept out of :mod:`fit3d_helpers.profiles` (settings only), so the
settings never import the data generators.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .profiles import Profile

__all__ = ["SceneSplit", "scannetpp_split", "scenes_for"]


@dataclass
class SceneSplit:
    """Scene files (``transforms*.json``) of the training and validation split, and the class names if known."""

    train: list[Path]
    val: list[Path]
    classes: list[str] | None


def scenes_for(profile: Profile, *, workers: int = 2) -> SceneSplit:
    """The profile's scenes: generated (cached) synthetic rooms, or a user's ScanNet++ DSLR download."""
    d = profile.data
    if d.dataset == "nyu":  # probes only: the official evaluation sets (probe.eval_root) replace scenes
        from .evaldata import NYUV2_CLASSES

        return SceneSplit([], [], list(NYUV2_CLASSES))
    if d.dataset == "synthetic":
        from .synthetic import generate_dataset

        info = generate_dataset(
            d.root, n_train=d.n_train, n_val=d.n_val, n_views=d.n_views, width=d.width, height=d.height, workers=workers
        )
        return SceneSplit(list(info.train), list(info.val), list(info.classes))
    return scannetpp_split(Path(d.root), d.n_train, d.n_val)


def scannetpp_split(root: Path, n_train: int, n_val: int) -> SceneSplit:
    """ScanNet++ layout: ``root/splits/nvs_sem_{train,val}.txt`` and
    ``root/data/<id>/dslr/nerfstudio/transforms_undistorted.json``."""
    splits = root / "splits"
    if not (splits / "nvs_sem_train.txt").is_file():
        raise FileNotFoundError(
            f"ScanNet++ not found under {root}: download it (https://kaldir.vc.in.tum.de/scannetpp/, licence "
            "required), undistort the DSLR images with its toolkit, and put splits/ and data/ there; "
            "or use profile='smoke' (synthetic scenes)."
        )

    def read(name: str, n: int) -> list[Path]:
        ids = [s.strip() for s in (splits / name).read_text().split() if s.strip()][:n]
        return [root / "data" / i / "dslr" / "nerfstudio" / "transforms_undistorted.json" for i in ids]

    return SceneSplit(read("nvs_sem_train.txt", n_train), read("nvs_sem_val.txt", n_val), None)
