"""Run the course's notebooks unattended with papermill and compile the HTML report.

Conventions the notebooks follow (checked here, before anything runs):

* files ``notebooks/NN_name.ipynb`` (``NN`` = two-digit number), run in number order;
* the first code cell is tagged ``parameters`` and defines at least ``profile = "smoke"``; usually also
  ``artifacts_dir = "artifacts"``, ``device = "auto"`` and ``seed = 0``;
* the working directory of every notebook is the **repository root** (the parent of the notebooks folder),
  and paths in notebooks are relative to it (``artifacts/…``, ``data/…``). Jupyter starts a kernel in the
  notebook's own folder instead, so each notebook's setup cell calls ``fit3d_helpers.viz.setup_notebook()``,
  which moves to the repository root (a no-op under the runner) and selects plotly's ``"notebook"`` renderer
  (plotly.js embedded in the page, so figures render in the offline HTML).

The runner passes ``profile`` to every notebook, ``artifacts_dir`` to those that define it, and the
``--set`` overrides. Each executed notebook goes to ``report/NN_name.ipynb`` and its page to
``report/NN_name.html``; ``report/run.json`` records the run and ``report/index.html`` is rebuilt at the end.
"""

from __future__ import annotations

import ast
import datetime as _dt
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .utils import RANDOM_WEIGHTS_BANNER, read_json, write_json

__all__ = [
    "NotebookFailed",
    "ParameterError",
    "discover_notebooks",
    "execute_notebook",
    "notebook_number",
    "parse_overrides",
    "parse_value",
    "plan_parameters",
    "run_notebooks",
]

NOTEBOOK_RE = re.compile(r"^(?P<num>\d{2})_[^/]*\.ipynb$")
KERNEL_NAME = "python3"


class ParameterError(ValueError):
    """A ``--set`` key that no selected notebook defines, a bad ``--only``, or a notebook without parameters."""


class NotebookFailed(RuntimeError):
    """Raised by :func:`execute_notebook` when a cell fails; the executed notebook was still written."""

    def __init__(self, src: Path, dst: Path, wall_s: float, message: str):
        super().__init__(message)
        self.src, self.dst, self.wall_s = src, dst, wall_s


# ----------------------------------------------------------------------------------------------------------
# Discovery and parameters
# ----------------------------------------------------------------------------------------------------------


def notebook_number(path: str | Path) -> str:
    """``"02"`` for ``notebooks/02_lift.ipynb``."""
    m = NOTEBOOK_RE.match(Path(path).name)
    if not m:
        raise ValueError(f"{path}: not a course notebook name (expected NN_name.ipynb)")
    return m.group("num")


def discover_notebooks(notebooks_dir: str | Path = "notebooks", only: str | Iterable[str] | None = None) -> list[Path]:
    """``NN_*.ipynb`` in ``notebooks_dir``, in order; ``only`` = ``"01,03"`` or ``["1", "03"]`` picks by number."""
    notebooks_dir = Path(notebooks_dir)
    if not notebooks_dir.is_dir():
        raise ParameterError(f"notebooks folder {notebooks_dir} does not exist")
    found = sorted(p for p in notebooks_dir.iterdir() if NOTEBOOK_RE.match(p.name) and p.is_file())
    if only is None or only == "" or only == []:
        if not found:
            raise ParameterError(f"no NN_*.ipynb notebooks in {notebooks_dir}")
        return found
    wanted = [s.strip() for s in (only.split(",") if isinstance(only, str) else only) if str(s).strip()]
    picked, missing = [], []
    for w in wanted:
        if not str(w).isdigit():
            raise ParameterError(f"--only takes notebook numbers like 01,03; got {w!r}")
        num = f"{int(w):02d}"
        hits = [p for p in found if notebook_number(p) == num]
        (picked.extend(hits) if hits else missing.append(num))
    if missing:
        have = ", ".join(f"{notebook_number(p)} ({p.name})" for p in found) or "none"
        raise ParameterError(f"--only: no notebook numbered {', '.join(missing)} in {notebooks_dir}; found {have}")
    return sorted(set(picked), key=lambda p: found.index(p))


def parse_value(text: str) -> Any:
    """A ``--set`` value: a Python literal (``3``, ``1e-4``, ``True``, ``None``, ``[1, 2]``, ``'x'``) else the string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


def parse_overrides(items: Iterable[str] | Mapping[str, Any] | None) -> dict[str, Any]:
    """``["seed=1", "02.iters=300"]`` (or a dict of the same keys) → ``{"seed": 1, "02.iters": 300}``.

    A key ``NN.name`` applies only to notebook ``NN``; a plain ``name`` to every selected notebook whose
    parameters cell defines it.
    """
    if items is None:
        return {}
    if isinstance(items, Mapping):
        pairs = [(str(k), v) for k, v in items.items()]
    else:
        pairs = []
        for item in items:
            if "=" not in item:
                raise ParameterError(f"--set takes key=value or NN.key=value; got {item!r}")
            k, v = item.split("=", 1)
            pairs.append((k.strip(), parse_value(v.strip())))
    out: dict[str, Any] = {}
    for k, v in pairs:
        prefix, _, name = k.rpartition(".")
        if prefix and not prefix.isdigit():
            raise ParameterError(f"--set key {k!r}: the part before '.' must be a notebook number like 02")
        if not name.isidentifier():
            raise ParameterError(f"--set key {k!r}: {name!r} is not a Python name")
        if prefix:
            k = f"{int(prefix):02d}.{name}"
        if name == "profile":
            raise ParameterError("set the profile with --profile, not --set")
        out[k] = v
    return out


def inspect_parameters(path: str | Path) -> dict[str, Any]:
    """Names → defaults (as source text) of the notebook's ``parameters`` cell (papermill's inspector)."""
    import papermill

    info = papermill.inspect_notebook(str(path))
    return {name: spec.get("default") for name, spec in info.items()}


def _rel_to(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` when inside it (so the notebooks' default ``"artifacts"`` is kept)."""
    path = path.resolve()
    try:
        return str(path.relative_to(root.resolve()))
    except ValueError:
        return str(path)


def plan_parameters(
    notebooks: Sequence[Path],
    profile: str,
    overrides: Mapping[str, Any] | None = None,
    artifacts_dir: str | None = None,
    *,
    defined: Mapping[Path, Mapping[str, Any]] | None = None,
) -> dict[Path, dict[str, Any]]:
    """The parameters each notebook gets, validated against its parameters cell.

    Raises :class:`ParameterError` listing the valid keys per notebook when an override names a key that
    no selected notebook (or not the addressed one) defines.
    """
    overrides = dict(overrides or {})
    if defined is None:
        defined = {nb: inspect_parameters(nb) for nb in notebooks}
    problems: list[str] = []
    for nb in notebooks:
        if "profile" not in defined[nb]:
            problems.append(
                f"{nb.name}: its first code cell must be tagged 'parameters' and define profile = \"smoke\""
            )
    by_num = {notebook_number(nb): nb for nb in notebooks}
    for key in overrides:
        prefix, _, name = key.rpartition(".")
        if prefix:
            nb = by_num.get(prefix)
            if nb is None:
                problems.append(f"--set {key}: notebook {prefix} is not selected (selected: {', '.join(by_num)})")
            elif name not in defined[nb]:
                problems.append(f"--set {key}: {nb.name} has no parameter {name!r}")
        elif not any(name in defined[nb] for nb in notebooks):
            problems.append(f"--set {key}: no selected notebook has a parameter {name!r}")
    if problems:
        valid = "\n".join(
            f"  {nb.name}: {', '.join(k for k in defined[nb]) or '(no parameters cell)'}" for nb in notebooks
        )
        raise ParameterError("\n".join(problems) + "\nValid parameters per notebook:\n" + valid)
    plan: dict[Path, dict[str, Any]] = {}
    for nb in notebooks:
        params: dict[str, Any] = {"profile": profile}
        if artifacts_dir is not None and "artifacts_dir" in defined[nb]:
            params["artifacts_dir"] = artifacts_dir
        for key, value in overrides.items():
            prefix, _, name = key.rpartition(".")
            if not prefix and name in defined[nb]:
                params[name] = value
        for key, value in overrides.items():  # notebook-specific keys win over global ones
            prefix, _, name = key.rpartition(".")
            if prefix and prefix == notebook_number(nb):
                params[name] = value
        plan[nb] = params
    return plan


# ----------------------------------------------------------------------------------------------------------
# Execution
# ----------------------------------------------------------------------------------------------------------


def execute_notebook(
    src: str | Path,
    dst: str | Path,
    parameters: Mapping[str, Any] | None = None,
    cwd: str | Path | None = None,
    *,
    kernel_name: str = KERNEL_NAME,
    log_output: bool = False,
    timeout: float | None = None,
    quiet_kernel: bool = True,
) -> float:
    """Execute ``src`` with papermill into ``dst`` (parameters injected after the ``parameters`` cell).

    cwd: the kernel's working directory; default the repository root (parent of ``src``'s folder).
    quiet_kernel: hide the kernel's own log lines below ERROR (ipykernel's "running over TCP without
        encryption" warning would otherwise land in the output of a notebook that runs notebooks).
    Returns the wall seconds. On a cell error the executed notebook (with the traceback) is still written to
    ``dst`` and :class:`NotebookFailed` is raised; ``.wall_s`` tells how long it ran.
    """
    import papermill

    src, dst = Path(src), Path(dst)
    cwd = Path(cwd) if cwd is not None else src.resolve().parent.parent
    dst.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    try:
        papermill.execute_notebook(
            str(src),
            str(dst),
            parameters=dict(parameters or {}),
            kernel_name=kernel_name,
            cwd=str(cwd),
            progress_bar=False,
            log_output=log_output,
            execution_timeout=timeout,
            report_mode=False,
            extra_arguments=["--IPKernelApp.log_level=ERROR"] if quiet_kernel else [],
        )
    except papermill.PapermillExecutionError as e:
        wall = time.perf_counter() - t0
        msg = f"{e.ename}: {e.evalue} (cell {e.exec_count})"
        raise NotebookFailed(src, dst, wall, msg) from e
    except Exception as e:  # kernel died, timeout, … : make sure a page explaining it can still be written
        wall = time.perf_counter() - t0
        if not dst.exists():
            import shutil

            shutil.copyfile(src, dst)
        raise NotebookFailed(src, dst, wall, f"{type(e).__name__}: {e}") from e
    return time.perf_counter() - t0


def _git_info(root: Path) -> tuple[str, bool | None]:
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
        if commit.returncode != 0:
            return "unknown", None
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=20,
        )
        return commit.stdout.strip(), bool(dirty.stdout.strip()) if dirty.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return "unknown", None


def _device_info() -> tuple[str, str]:
    try:
        import torch
    except ImportError:
        return "cpu", "not installed"
    dev = "cpu"
    try:
        if torch.cuda.is_available():
            dev = f"cuda: {torch.cuda.get_device_name(0)}"
    except Exception:  # noqa: BLE001 - a broken driver still gets a report
        dev = "cpu (cuda query failed)"
    return dev, torch.__version__


@dataclass
class NotebookRecord:
    name: str
    number: str
    source: str
    ipynb: str
    html: str
    status: str = "pending"  # ok | failed | skipped | interrupted
    wall_s: float | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    random_weights: bool = False
    date: str | None = None


def _now() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


def run_notebooks(
    notebooks_dir: str | Path = "notebooks",
    profile: str = "smoke",
    *,
    only: str | Iterable[str] | None = None,
    overrides: Iterable[str] | Mapping[str, Any] | None = None,
    report_dir: str | Path | None = None,
    artifacts_dir: str | Path | None = None,
    kernel_name: str = KERNEL_NAME,
    log_output: bool = False,
    timeout: float | None = None,
    build_report: bool = True,
    echo: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Execute the selected notebooks in order, export each to HTML, write ``run.json`` and the index.

    Paths default to the repository root (the parent of ``notebooks_dir``): ``report/`` and ``artifacts/``.
    Stops at the first failing notebook (its page, with the traceback, is still written). Returns the
    run record (what ``run.json`` holds) with ``ok`` = all selected notebooks succeeded.
    Raises :class:`ParameterError` before running anything when the selection or an override is invalid.
    """
    from . import report as _report

    echo = echo or (lambda s: print(s, flush=True))
    notebooks_dir = Path(notebooks_dir)
    root = notebooks_dir.resolve().parent
    report_dir = Path(report_dir) if report_dir is not None else root / "report"
    artifacts_path = Path(artifacts_dir) if artifacts_dir is not None else root / "artifacts"
    artifacts_param = _rel_to(artifacts_path, root)

    notebooks = discover_notebooks(notebooks_dir, only)
    parsed = parse_overrides(overrides)
    plan = plan_parameters(notebooks, profile, parsed, artifacts_param)

    commit, dirty = _git_info(root)
    device, torch_version = _device_info()
    records = [
        NotebookRecord(
            name=nb.stem,
            number=notebook_number(nb),
            source=_rel_to(nb, root),
            ipynb=f"{nb.stem}.ipynb",
            html=f"{nb.stem}.html",
            parameters=plan[nb],
        )
        for nb in notebooks
    ]
    run: dict[str, Any] = {
        "commit": commit,
        "dirty": dirty,
        "profile": profile,
        "overrides": parsed,
        "only": [notebook_number(nb) for nb in notebooks] if only else None,
        "device": device,
        "torch": torch_version,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": _now(),
        "cwd": str(root),
        "notebooks_dir": _rel_to(notebooks_dir, root),
        "artifacts_dir": artifacts_param,
        "artifacts_dir_abs": str(artifacts_path.resolve()),
        "report_dir": str(report_dir),
        "kernel": kernel_name,
    }
    report_dir.mkdir(parents=True, exist_ok=True)
    run_json = report_dir / "run.json"
    previous = _previous_records(run_json, profile, {r.name for r in records})

    def save(ok: bool | None) -> dict[str, Any]:
        mine = {r.name: asdict(r) for r in records}
        allrec = sorted({**previous, **mine}.values(), key=lambda r: r["name"])
        out = dict(run, notebooks=allrec, ok=ok)
        out["total_wall_s"] = round(sum(r["wall_s"] or 0.0 for r in mine.values()), 2)
        write_json(run_json, out)
        return out

    # The kernel inherits our environment: make the package importable from the repo root, and tell the
    # notebooks they run unattended (FIT3D_BATCH=1: e.g. skip interactive-only widgets).
    env_backup = {k: os.environ.get(k) for k in ("PYTHONPATH", "FIT3D_BATCH")}
    pkg_parent = str(Path(__file__).resolve().parents[1])  # the fit3d_helpers this runner is part of
    paths = [str(root)] + ([pkg_parent] if pkg_parent != str(root) else []) + [env_backup["PYTHONPATH"] or ""]
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    os.environ["FIT3D_BATCH"] = "1"
    ok = True
    n = len(records)
    echo(
        f"fit3d run: profile={profile}, {n} notebook(s), cwd={root}, report={report_dir}, "
        f"artifacts={artifacts_param}, device={device}"
    )
    try:
        for i, (nb, rec) in enumerate(zip(notebooks, records), 1):
            extra = {k: v for k, v in rec.parameters.items() if k not in ("profile", "artifacts_dir")}
            echo(f"[{i}/{n}] {rec.name}: running" + (f" with {extra}" if extra else ""))
            dst = report_dir / rec.ipynb
            rec.date = _now()
            try:
                rec.wall_s = round(
                    execute_notebook(
                        nb, dst, rec.parameters, root, kernel_name=kernel_name, log_output=log_output, timeout=timeout
                    ),
                    2,
                )
                rec.status = "ok"
            except NotebookFailed as e:
                rec.wall_s, rec.status, rec.error, ok = round(e.wall_s, 2), "failed", str(e), False
            except KeyboardInterrupt:
                rec.status, rec.error, ok = "interrupted", "KeyboardInterrupt", False
                raise
            finally:
                if dst.exists():
                    try:
                        _report.export_html(dst, report_dir / rec.html, source_dir=nb.parent)
                        rec.random_weights = _page_has_banner(report_dir / rec.html)
                    except Exception as e:  # noqa: BLE001 - a broken export must not hide the run result
                        echo(f"    HTML export of {rec.name} failed: {type(e).__name__}: {e}")
                save(None)
            echo(f"[{i}/{n}] {rec.name}: {rec.status} ({rec.wall_s:.1f} s)" + (f" — {rec.error}" if rec.error else ""))
            if not ok:
                for later in records[i:]:
                    later.status = "skipped"
                echo(f"stopping: {rec.name} failed; see {report_dir / rec.html}")
                break
    finally:
        for k, v in env_backup.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        final = save(ok)
        if build_report:
            _finish_report(report_dir, artifacts_path, final, echo)
    return final


def _page_has_banner(html_path: Path) -> bool:
    from .report import BANNER_CLASS

    with open(html_path, encoding="utf-8") as f:
        return f'class="{BANNER_CLASS}"' in f.read()


def _previous_records(run_json: Path, profile: str, names: set[str]) -> dict[str, dict[str, Any]]:
    """Entries of an earlier run of the same profile for notebooks this run does not touch (``--only``)."""
    if not run_json.is_file():
        return {}
    try:
        old = read_json(run_json)
    except (OSError, ValueError):
        return {}
    if old.get("profile") != profile:
        return {}
    return {r["name"]: dict(r, from_previous_run=True) for r in old.get("notebooks", []) if r.get("name") not in names}


def _finish_report(report_dir: Path, artifacts_dir: Path, run: dict[str, Any], echo: Callable[[str], None]) -> None:
    """Random-weights banner on every page when any page or stats.json of this profile says so; index."""
    from . import report as _report

    try:
        random_arts = _report.random_weights_artifacts(artifacts_dir, run.get("profile"))
        pages = [report_dir / r["html"] for r in run.get("notebooks", []) if (report_dir / r["html"]).is_file()]
        if random_arts or any(r.get("random_weights") for r in run.get("notebooks", [])):
            for p in pages:
                _report.apply_banner(p, RANDOM_WEIGHTS_BANNER)
        index = _report.build_index(report_dir, artifacts_dir, run)
        echo(f"report: {index}")
    except Exception as e:  # noqa: BLE001
        echo(f"building the report index failed: {type(e).__name__}: {e}")


def rebuild_report(report_dir: str | Path = "report", artifacts_dir: str | Path | None = None) -> Path:
    """Re-export every executed ``report/NN_*.ipynb`` and rebuild the index (no notebook is run)."""
    from . import report as _report

    report_dir = Path(report_dir)
    run_path = report_dir / "run.json"
    run = read_json(run_path) if run_path.is_file() else {}
    root = Path(run.get("cwd") or report_dir.resolve().parent)
    nb_dir = root / run.get("notebooks_dir", "notebooks")
    if artifacts_dir is None:
        artifacts_dir = run.get("artifacts_dir_abs") or root / "artifacts"
    recs = {r["name"]: r for r in run.get("notebooks", [])}
    for ipynb in sorted(report_dir.glob("[0-9][0-9]_*.ipynb")):
        html_path = ipynb.with_suffix(".html")
        _report.export_html(ipynb, html_path, source_dir=nb_dir)
        if ipynb.stem in recs:
            recs[ipynb.stem]["random_weights"] = _page_has_banner(html_path)
    if recs:
        run["notebooks"] = list(recs.values())
        write_json(run_path, run)
    _finish_report(report_dir, Path(artifacts_dir), run, lambda s: print(s, flush=True))
    return report_dir / "index.html"


def describe_parameters(notebooks_dir: str | Path = "notebooks", only: str | None = None) -> str:
    """Human-readable list of each notebook's parameters and defaults (``python -m fit3d_helpers params``)."""
    lines = []
    for nb in discover_notebooks(notebooks_dir, only):
        lines.append(nb.name)
        params = inspect_parameters(nb)
        if not params:
            lines.append("  (no cell tagged 'parameters')")
        lines += [f"  {k} = {v}" for k, v in params.items()]
    return "\n".join(lines)


def main_run(args: Any) -> int:
    if args.log_output:  # papermill streams cell outputs through logging
        import logging

        logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        run = run_notebooks(
            args.notebooks_dir,
            args.profile,
            only=args.only,
            overrides=args.set,
            report_dir=args.report_dir,
            artifacts_dir=args.artifacts,
            log_output=args.log_output,
            timeout=args.timeout,
        )
    except ParameterError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0 if run.get("ok") else 1
