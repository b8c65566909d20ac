"""The artifacts a report reads: every complete ``<artifacts>/<stage>/<hash>`` version, and what its stats say.

Read only (through :func:`fit3d_helpers.cache.iter_artifacts`); a stage is never computed here.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "STAGE_ORDER",
    "in_profile",
    "is_random",
    "newest_ablations",
    "random_weights_artifacts",
    "scan_artifacts",
]

# The course's stages, in pipeline order (stages not listed follow alphabetically).
STAGE_ORDER = ("data", "lift", "lift_features", "targets", "finetune", "features", "probe", "ablations")


def scan_artifacts(artifacts_dir: str | Path) -> list[dict[str, Any]]:
    """Every complete artifact (``<artifacts>/<stage>/<hash>/CURRENT`` → its version folder), in stage order,
    newest first within a stage. One whose ``stats.json`` or ``config.json`` cannot be read is kept, with empty stats
    and ``error`` saying why (the artifacts page shows it with that note; no figure or table reads its numbers).

    Each entry: ``stage``, ``hash``, ``path`` (the version folder), ``rel`` (that folder relative to the artifacts
    root, what pages show), ``stats``, ``config`` (or {}), ``mtime``, ``error`` ("" when readable).
    """
    from ..cache import ArtifactError, iter_artifacts

    root = Path(artifacts_dir)
    found: list[dict[str, Any]] = []
    for art in iter_artifacts(artifacts_dir):
        error = ""
        try:
            stats, config, mtime = art.stats, art.config, art.mtime
        except (ArtifactError, OSError, ValueError) as e:
            stats, config, error = {}, {}, f"{type(e).__name__}: {e}"
            try:
                mtime = art.path.stat().st_mtime
            except OSError:
                mtime = 0.0
        try:
            rel = art.path.relative_to(root).as_posix()
        except ValueError:
            rel = f"{art.stage}/{art.hash}/{art.path.name}"
        found.append(
            {
                "stage": art.stage,
                "hash": art.hash,
                "path": art.path,
                "rel": rel,
                "stats": stats if isinstance(stats, dict) else {"value": stats},
                "config": config if isinstance(config, dict) else {},
                "mtime": mtime,
                "error": _without_root(error, root),
            }
        )

    def key(a: dict[str, Any]) -> tuple:
        st = a["stage"]
        rank = STAGE_ORDER.index(st) if st in STAGE_ORDER else len(STAGE_ORDER)
        return (rank, st, -a["mtime"], a["hash"])

    return sorted(found, key=key)


def _without_root(text: str, root: Path) -> str:
    """An error message with the artifacts root's absolute path shortened to ``<artifacts>``."""
    for r in {str(root), str(root.resolve())}:
        text = text.replace(r.rstrip("/") + "/", "<artifacts>/").replace(r, "<artifacts>")
    return text


def _artifact_profile(a: Mapping[str, Any]) -> str | None:
    for src in (a["stats"], a["config"]):
        p = src.get("profile") if isinstance(src, Mapping) else None
        if isinstance(p, str):
            return p
    return None


def in_profile(a: Mapping[str, Any], profile: str | None) -> bool:
    p = _artifact_profile(a)
    return profile is None or p is None or p == profile


def is_random(a: Mapping[str, Any] | None) -> bool:
    return a is not None and str(a["stats"].get("weights", "")).lower() == "random"


def random_weights_artifacts(artifacts_dir: str | Path, profile: str | None = None) -> list[dict[str, Any]]:
    """Artifacts whose stats say ``"weights": "random"`` (those of another profile are skipped when the stats
    or config name their profile)."""
    return [a for a in scan_artifacts(artifacts_dir) if in_profile(a, profile) and is_random(a)]


def newest_ablations(arts: list[dict[str, Any]]) -> dict[str, Any] | None:
    group = [a for a in arts if a["stage"] == "ablations"]
    return max(group, key=lambda a: a["mtime"]) if group else None
