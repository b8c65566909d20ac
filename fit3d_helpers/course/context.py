"""What the report's pages show, gathered once: :func:`report_context` (the index, the slides and the glossary
all render from it). Reads ``report/run.json`` and the artifacts; computes no stage.
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..utils import RANDOM_WEIGHTS_BANNER, banner_html, read_json
from . import paper
from .artifacts import in_profile, is_random, newest_ablations, scan_artifacts
from .mathml import markup
from .tables import (
    NO_COUNTERPART,
    ablation_models,
    assembly_tables,
    figure_models,
    is_num,
    main_table,
    more_table,
    ours_value,
    probe_model,
)

__all__ = [
    "NAV",
    "PIPELINE",
    "load_run",
    "read_run_json",
    "rel_path",
    "report_context",
    "run_artifacts_dir",
    "run_root",
]

PIPELINE = (
    ("Scenes", "posed RGB views", "01", "#e8f1fb"),
    ("Lift", "feature Gaussians", "02", "#eaf7ea"),
    ("Render", "3D-consistent features", "02", "#eaf7ea"),
    ("Fine-tune", "2D backbone", "03", "#fdf0e3"),
    ("Probe", "seg · depth", "04", "#f3eafb"),
)
NAV = (
    ("index.html", "Report"),
    ("slides.html", "Slides"),
    ("glossary.html", "Glossary & questions"),
    ("fidelity.html", "Fidelity"),
    ("artifacts.html", "All artifacts"),
)


def _fmt_seconds(s: Any) -> str:
    if not is_num(s):
        return "—"
    if s < 120:
        return f"{s:.1f} s"
    return f"{int(s // 60)} min {s % 60:02.0f} s"


def read_run_json(path: str | Path) -> tuple[dict[str, Any], str | None]:
    """``report/run.json`` as a dict, and a note when it could not be used: missing (no note), truncated, not JSON,
    or not an object (a list …). The report is then rebuilt without the run's metadata and says so; it never
    crashes on it."""
    path = Path(path)
    if not path.is_file():
        return {}, None
    try:
        run = read_json(path)
    except (OSError, ValueError) as e:
        return {}, f"{path.name} was unreadable ({type(e).__name__}: {str(e)[:120]}); the report was rebuilt without it"
    if not isinstance(run, dict):
        return {}, f"{path.name} held a {type(run).__name__}, not the run's record; the report was rebuilt without it"
    return run, None


def load_run(report_dir: Path, run_json: Any) -> dict[str, Any]:
    """The run record: a dict, a path to ``run.json``, or None for ``report_dir/run.json``. An unusable file gives
    ``{"note": why}`` (shown on the index) instead of an error."""
    if run_json is None or isinstance(run_json, (str, os.PathLike)):
        run, note = read_run_json(report_dir / "run.json" if run_json is None else run_json)
        return dict(run, note=note) if note else run
    return dict(run_json)


def _mapping(x: Any) -> Mapping[str, Any]:
    return x if isinstance(x, Mapping) else {}


def rel_path(path: str | Path, start: str | Path) -> str:
    """``path`` relative to ``start`` (``..`` allowed), so no page or ``run.json`` carries the build machine's
    absolute paths; absolute only when no relative path exists (another drive)."""
    try:
        return Path(os.path.relpath(Path(path).resolve(), Path(start).resolve())).as_posix()
    except ValueError:
        return str(path)


def run_root(report_dir: str | Path, run: Mapping[str, Any]) -> Path:
    """The checkout a run ran in: ``run.json``'s ``root`` (relative to the report folder), an older run's ``cwd``,
    else the report folder's parent."""
    report_dir = Path(report_dir)
    if isinstance(run.get("root"), str):
        return (report_dir / run["root"]).resolve()
    if isinstance(run.get("cwd"), str):
        return Path(run["cwd"])
    return report_dir.resolve().parent


def run_artifacts_dir(report_dir: str | Path, run: Mapping[str, Any]) -> Path:
    """The run's artifacts folder (``artifacts_dir`` relative to its root; an older run's ``artifacts_dir_abs``)."""
    if isinstance(run.get("artifacts_dir_abs"), str):
        return Path(run["artifacts_dir_abs"])
    return run_root(report_dir, run) / str(run.get("artifacts_dir") or "artifacts")


def _weights_summary(arts: list[dict[str, Any]]) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for a in arts:
        s = a["stats"]
        if "backbone" in s or "weights" in s:
            p = (str(s.get("backbone", "?")), str(s.get("weights", "?")))
            if p not in pairs:
                pairs.append(p)
    return pairs


def _headline_probe(mine: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The newest probe marked ``headline``; else the newest that is not an ablation point; else any."""
    probes = [a for a in mine if a["stage"] == "probe" and isinstance(a["stats"].get("results"), Mapping)]
    main = [a for a in probes if a["stats"].get("headline") is True] or [
        a for a in probes if not a["stats"].get("ablation")
    ]
    return (main or probes or [None])[0]


def _deviation_models(run: Mapping[str, Any]) -> dict[str, Any]:
    from ..profiles import setting_types
    from .glossary import deviations

    profile = run.get("profile")
    keys = setting_types()
    try:
        rows = deviations({k: v for k, v in (run.get("overrides") or {}).items() if k in keys}, profile)
    except Exception:  # an override of an older run that no longer parses: the profiles' own values
        rows = deviations(None, profile)
    return {"rows": rows, "profile": profile if profile in ("smoke", "paper") else "smoke"}


def _differences(probe: Mapping[str, Any] | None) -> dict[str, Any]:
    """concat − original of the headline probe (seg mIoU in points, depth RMSE), for the takeaways; never a gain."""
    out: dict[str, Any] = {}
    for task, metric, digits in (("seg", "miou", 2), ("depth", "rmse", 4)):
        a, b = ours_value(probe, task, "original", metric), ours_value(probe, task, "concat", metric)
        if a is not None and b is not None:
            d = b - a
            out[task] = ("+" if d >= 0 else "−") + f"{abs(d):.{digits}f}"
    return out


def report_context(
    report_dir: str | Path = "report",
    artifacts_dir: str | Path | None = None,
    run_json: Mapping[str, Any] | str | Path | None = None,
    *,
    figure_errors: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Everything the report's pages show (index, slides, glossary), from the run metadata and the artifacts."""
    report_dir = Path(report_dir)
    run = load_run(report_dir, run_json)
    if artifacts_dir is None:
        artifacts_dir = run_artifacts_dir(report_dir, run)
    artifacts_dir = Path(artifacts_dir)
    profile = run.get("profile")
    arts = scan_artifacts(artifacts_dir)
    mine = [a for a in arts if in_profile(a, profile)]
    random_arts = [a for a in mine if is_random(a)]
    notebooks = [n for n in run.get("notebooks") or [] if isinstance(n, dict)]
    random_pages = [n.get("name") for n in notebooks if n.get("random_weights")]
    random = bool(random_arts or random_pages)

    weights_pairs = _weights_summary(mine)
    named = [(b, w) for b, w in weights_pairs if not w.startswith("file:")]
    n_files = len(weights_pairs) - len(named)  # fine-tuned checkpoints of this run (feature caches name them)
    weights = "; ".join(f"{b} — {w} weights" for b, w in named) + (
        f"{'; ' if named else ''}{n_files} fine-tuned checkpoint{'s' if n_files != 1 else ''} of this run"
        if n_files
        else ""
    )
    commit = str(run.get("commit", "unknown")) + (" (uncommitted changes)" if run.get("dirty") else "")
    meta = [
        ("commit", commit),
        ("profile", profile or "—"),
        ("backbone / weights", weights or "— (no stats.json names a backbone yet)"),
        ("device", run.get("device", "—")),
        ("torch / python", f"{run.get('torch', '—')} / {run.get('python', '—')}"),
        ("date", run.get("date", "—")),
        ("overrides", ", ".join(f"{k}={v!r}" for k, v in _mapping(run.get("overrides")).items()) or "none"),
        ("artifacts", rel_path(artifacts_dir, run_root(report_dir, run))),
        ("total wall time", _fmt_seconds(run.get("total_wall_s"))),
    ]
    if run.get("note"):
        meta.append(("note", str(run["note"])))
    nb_rows = [
        {
            "name": n.get("name", "?"),
            "href": n.get("html") if n.get("html") and (report_dir / n["html"]).is_file() else None,
            "status": n.get("status", "?"),
            "extra": (" — random weights" if n.get("random_weights") else "")
            + (" (earlier run)" if n.get("from_previous_run") else ""),
            "wall": _fmt_seconds(n.get("wall_s")),
            "date": n.get("date", run.get("date", "")),
            "error": n.get("error", ""),
        }
        for n in notebooks
    ]
    probe = _headline_probe(mine)
    headline = None
    if probe is not None:
        st = probe["stats"]
        headline = {
            "hash": probe["hash"],
            "backbone": st.get("backbone", "?"),
            "weights": st.get("weights", "?"),
            "dataset": st.get("dataset"),
            "random": is_random(probe),
            "has_dup": any("dup" in (r or {}) for r in st["results"].values() if isinstance(r, Mapping)),
            "has_delta1": any(
                isinstance(r, Mapping) and "delta1" in r for r in (st["results"].get("depth") or {}).values()
            ),
            "probe": probe_model(st["results"], st.get("awareness"), random=is_random(probe)),
            "stats": st,
        }
    assembly, control = assembly_tables(probe)
    newest_abl = newest_ablations(mine)
    budget = (newest_abl or {"stats": {}})["stats"].get("budget") or {}
    return {
        "report_dir": report_dir,
        "artifacts_dir": artifacts_dir,
        "run": run,
        "profile": profile,
        "random": random,
        "random_arts": random_arts,
        "arts": arts,
        "mine": mine,
        "probe": probe,
        "common": {
            "banner": markup(banner_html(RANDOM_WEIGHTS_BANNER) if random else ""),
            "nav_pages": NAV,
            "generated": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        },
        "arxiv": paper.ARXIV,
        "title": paper.TITLE,
        "meta": meta,
        "weights": named,
        "notebooks": nb_rows,
        "pages": [] if notebooks else sorted(p.name for p in report_dir.glob("[0-9]*.html")),
        "pipeline": PIPELINE,
        "headline": headline,
        "paper": {
            "caveat": paper.CAVEAT,
            "seg": main_table("seg", probe, profile),
            "depth": main_table("depth", probe, profile),
            "more": more_table(),
            "notes": [paper.NOTES[0]],
            "random": is_random(probe),
        },
        "ablations": {
            "assembly": assembly,
            "control": control,
            "ours": ablation_models(mine),
            "artifact": newest_abl["hash"] if newest_abl else None,
            "random": is_random(newest_abl),
            "budget": budget,
        },
        "figure_errors": dict(figure_errors or {}),
        "figures": figure_models(report_dir, random, figure_errors),
        "deviations": _deviation_models(run),
        "differences": _differences(probe),
        "no_counterpart": NO_COUNTERPART,
    }
