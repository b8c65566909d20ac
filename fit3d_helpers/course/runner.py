"""Run the course's notebooks unattended with papermill and compile the HTML report.

Conventions the notebooks follow (checked here, before anything runs):

* files ``notebooks/NN_name.ipynb`` (``NN`` = two-digit number), run in number order;
* the first code cell is tagged ``parameters`` and defines at least ``profile = "smoke"``; usually also
  ``artifacts_dir = "artifacts"``, ``device = "auto"`` and ``seed = 0``;
* the working directory of every notebook is the **repository root** (the parent of the notebooks folder),
  and paths in notebooks are relative to it (``artifacts/…``, ``data/…``). Jupyter starts a kernel in the
  notebook's own folder instead, so each notebook's setup cell calls ``fit3d_helpers.course.viz.setup_notebook()``,
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

from ..utils import RANDOM_WEIGHTS_BANNER, read_json, write_json

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
    """A ``--set`` value: a Python literal (``3``, ``1e-4``, ``True``, ``None``, ``[1, 2]``, ``'x'``), else text."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


def parse_overrides(items: Iterable[str] | Mapping[str, Any] | None) -> dict[str, Any]:
    """``["lift.iterations=300", "02.scene_index=1"]`` (or a dict of the same keys) → ``{key: value}``.

    Three kinds of key: a profile setting (``lift.iterations``, ``seed``: every notebook gets it in its ``overrides``
    dict, parsed to the setting's type), ``NN.knob`` (notebook NN's own parameter) and a plain ``knob`` (every
    selected notebook that defines it). Values are Python literals, else text. Checked by :func:`plan_parameters`.
    """
    if items is None:
        return {}
    if isinstance(items, Mapping):
        pairs = [(str(k), v) for k, v in items.items()]
    else:
        pairs = []
        for item in items:
            if "=" not in item:
                raise ParameterError(
                    f"--set takes key=value (a profile setting such as lift.iterations=2000, or NN.knob=value "
                    f"for notebook NN's own parameter); got {item!r}"
                )
            k, v = item.split("=", 1)
            pairs.append((k.strip(), parse_value(v.strip())))
    out: dict[str, Any] = {}
    for k, v in pairs:
        first, _, rest = k.partition(".")
        if first.isdigit() and rest:
            if not rest.isidentifier():
                raise ParameterError(
                    f"--set {k}: {rest!r} is not a notebook parameter name (profile settings take no NN. "
                    "prefix: they reach every notebook, so each stage finds the one before)"
                )
            k = f"{int(first):02d}.{rest}"
        elif not all(part.isidentifier() for part in k.split(".")):
            raise ParameterError(f"--set key {k!r} is neither a profile setting (section.name) nor NN.knob")
        if k.rpartition(".")[2] in ("profile", "overrides"):
            raise ParameterError("set the profile with --profile, and profile settings with --set section.name=value")
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


def _split_overrides(overrides: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(profile settings, notebook knobs) of parsed ``--set`` keys."""
    from ..profiles import setting_types

    settings_keys = setting_types()
    settings = {k: v for k, v in overrides.items() if k in settings_keys}
    knobs = {k: v for k, v in overrides.items() if k not in settings}
    return settings, knobs


def plan_parameters(
    notebooks: Sequence[Path],
    profile: str,
    overrides: Mapping[str, Any] | None = None,
    artifacts_dir: str | None = None,
    *,
    defined: Mapping[Path, Mapping[str, Any]] | None = None,
) -> dict[Path, dict[str, Any]]:
    """The parameters each notebook gets: ``profile``, ``overrides`` (the profile settings of ``--set``, type-checked
    against :mod:`fit3d_helpers.profiles`), ``artifacts_dir`` and the notebook knobs it defines.

    Raises :class:`ParameterError` before anything runs when a key is neither a profile setting nor a knob of a
    selected notebook, or when a value does not parse to its setting's type; the message lists the valid keys.
    """
    from ..profiles import ConfigError, load_profile, valid_keys_text

    overrides = dict(overrides or {})
    if defined is None:
        defined = {nb: inspect_parameters(nb) for nb in notebooks}
    settings, knobs = _split_overrides(overrides)
    problems: list[str] = []
    for nb in notebooks:
        if "profile" not in defined[nb]:
            problems.append(
                f"{nb.name}: its first code cell must be tagged 'parameters' and define profile = \"smoke\""
            )
    if settings:
        try:
            load_profile(profile, settings)
        except ConfigError as e:
            problems.append(f"--set: {e}")
    by_num = {notebook_number(nb): nb for nb in notebooks}
    for key in knobs:
        prefix, _, name = key.rpartition(".")
        if prefix.isdigit():
            nb = by_num.get(prefix)
            if nb is None:
                problems.append(f"--set {key}: notebook {prefix} is not selected (selected: {', '.join(by_num)})")
            elif name not in defined[nb] or name in ("profile", "overrides"):
                problems.append(f"--set {key}: {nb.name} has no parameter {name!r}")
        elif "." in key:
            problems.append(f"--set {key}: not a profile setting")
        elif not any(name in defined[nb] for nb in notebooks):
            problems.append(f"--set {key}: neither a profile setting nor a parameter of a selected notebook")
    if problems:
        valid_settings = valid_keys_text()
        valid = "\n".join(
            f"  {nb.name}: {', '.join(k for k in defined[nb] if k not in ('profile', 'overrides')) or '(none)'}"
            for nb in notebooks
        )
        raise ParameterError(
            "\n".join(problems)
            + f"\nProfile settings (--set key=value): {valid_settings}"
            + "\nNotebook parameters (--set NN.key=value):\n"
            + valid
        )
    typed = {k: _typed(k, v) for k, v in settings.items()}
    plan: dict[Path, dict[str, Any]] = {}
    for nb in notebooks:
        params: dict[str, Any] = {"profile": profile}
        if "overrides" in defined[nb]:
            params["overrides"] = typed
        if artifacts_dir is not None and "artifacts_dir" in defined[nb]:
            params["artifacts_dir"] = artifacts_dir
        for key, value in knobs.items():
            prefix, _, name = key.rpartition(".")
            if not prefix and name in defined[nb]:
                params[name] = value
        for key, value in knobs.items():  # notebook-specific keys win over global ones
            prefix, _, name = key.rpartition(".")
            if prefix and prefix == notebook_number(nb):
                params[name] = value
        plan[nb] = params
    return plan


def _typed(key: str, value: Any) -> Any:
    """A ``--set`` value as its setting's type, in a form papermill writes as a Python literal (tuples as lists)."""
    from ..profiles import coerce, setting_types

    v = coerce(key, value, setting_types()[key])
    return list(v) if isinstance(v, tuple) else v


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
    except Exception:
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
    pkg_parent = str(Path(__file__).resolve().parents[2])  # the fit3d_helpers this runner is part of
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
            extra = {k: v for k, v in rec.parameters.items() if k not in ("profile", "artifacts_dir") and v != {}}
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
                    except Exception as e:
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
    """Random-weights banner on every notebook page when any page or stats.json of this profile says so; then the
    figures (``report/figures/*.png``) and the report's own pages: index, slides, glossary, fidelity, artifacts
    (:func:`fit3d_helpers.course.report.build_report`). A failure is reported, never raised: the notebook pages stay."""
    from . import report as _report

    try:
        random_arts = _report.random_weights_artifacts(artifacts_dir, run.get("profile"))
        pages = [report_dir / r["html"] for r in run.get("notebooks", []) if (report_dir / r["html"]).is_file()]
        if random_arts or any(r.get("random_weights") for r in run.get("notebooks", [])):
            for p in pages:
                _report.apply_banner(p, RANDOM_WEIGHTS_BANNER)
    except Exception as e:
        echo(f"putting the random-weights banner on the pages failed: {type(e).__name__}: {e}")
    try:
        built = _report.build_report(report_dir, artifacts_dir, run)
    except Exception as e:
        echo(f"building the report failed: {type(e).__name__}: {e}")
        return
    for name, why in built["figure_errors"].items():
        echo(f"    figure {name} not drawn: {why}")
    figs = ", ".join(sorted(built["figures"])) or "none (their artifacts are missing)"
    echo(f"report: {built['index']} (slides: {built['slides'].name}; figures: {figs})")


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
    """The profile settings (type, smoke and paper values) and each notebook's own parameters
    (``python -m fit3d_helpers params``)."""
    from ..profiles import PROFILES, setting_types, settings, type_name

    smoke, paper = settings(PROFILES["smoke"]), settings(PROFILES["paper"])
    lines = [
        "Profile settings: --set KEY=VALUE (every notebook), or overrides={KEY: VALUE} in a notebook",
        "",
        f"  {'key':34s} {'type':16s} {'smoke':>22s}  paper",
    ]
    for key, t in setting_types().items():
        lines.append(f"  {key:34s} {type_name(t):16s} {str(smoke[key]):>22s}  {paper[key]}")
    lines += ["", "Notebook parameters: --set NN.KEY=VALUE", ""]
    for nb in discover_notebooks(notebooks_dir, only):
        lines.append(nb.name)
        params = {k: v for k, v in inspect_parameters(nb).items() if k not in ("profile", "overrides")}
        lines += [f"  {k} = {v}" for k, v in params.items()] or ["  (none)"]
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
