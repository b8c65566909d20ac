"""Run the course's notebooks unattended with papermill and compile the HTML report.

Conventions the notebooks follow (checked here, before anything runs):

* files ``notebooks/NN_name.ipynb`` (``NN`` = two-digit number), run in number order;
* the first code cell is tagged ``parameters`` and defines at least ``profile = "smoke"``; usually also
  ``artifacts_dir = "artifacts"``, ``device = "auto"`` and ``seed = 0``;
* the working directory of every notebook is the **repository root** (the parent of the notebooks folder),
  and paths in notebooks are relative to it (``artifacts/…``, ``data/…``). Jupyter starts a kernel in the
  notebook's own folder instead, so each notebook's setup cell calls ``fit3d_helpers.course.notebook.start()``
  (through ``viz.setup_notebook``), which moves to the repository root (a no-op under the runner) and selects
  plotly's ``"notebook"`` renderer in batch runs (plotly.js embedded in the page, so figures render offline).

The runner passes ``profile`` to every notebook, ``artifacts_dir`` to those that define it, and the
``--set`` overrides. Each executed notebook goes to ``report/NN_name.ipynb`` and its page to
``report/NN_name.html``; ``report/run.json`` records the run and ``report/index.html`` is rebuilt at the end.
"""

from __future__ import annotations

import ast
import datetime as _dt
import math
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

from ..profiles import ParameterError, check_knob, knob_type, parse_overrides, parse_value, type_name
from ..utils import RANDOM_WEIGHTS_BANNER, write_json
from .context import read_run_json, rel_path, run_artifacts_dir, run_root

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
    if only is None:
        if not found:
            raise ParameterError(f"no NN_*.ipynb notebooks in {notebooks_dir}")
        return found
    wanted = [str(s).strip() for s in (only.split(",") if isinstance(only, str) else only) if str(s).strip()]
    if not wanted:
        have = ", ".join(notebook_number(p) for p in found) or "none"
        raise ParameterError(
            f"--only {only!r} names no notebook: give numbers like 01,03 (found in {notebooks_dir}: {have}), "
            "or leave --only out to run them all"
        )
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


def inspect_parameters(path: str | Path) -> dict[str, Any]:
    """Names → defaults (as source text) of the notebook's ``parameters`` cell (papermill's inspector)."""
    return {name: spec.get("default") for name, spec in _inspect(path).items()}


def _inspect(path: str | Path) -> dict[str, Any]:
    import papermill

    return dict(papermill.inspect_notebook(str(path)))


def declared_types(defaults: Mapping[str, Any], annotations: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Each notebook parameter's type: its annotation, else the type of its default (source text, read with
    ``ast.literal_eval``: never run). See :func:`fit3d_helpers.profiles.knob_type`."""
    out: dict[str, Any] = {}
    for name, text in defaults.items():
        try:
            default = ast.literal_eval(text) if isinstance(text, str) else text
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            default = object()  # not a literal (e.g. a call): any literal value is accepted
        out[name] = knob_type(default, (annotations or {}).get(name))
    return out


_PLAIN = (type(None), bool, int, float, str)


def safe_parameter(key: str, value: Any) -> Any:
    """``value`` as plain data papermill writes as a Python literal: None, bool, int, finite float, str, lists and
    dicts (str keys) of them; tuples become lists. Anything else raises :class:`ParameterError`.

    papermill writes a value it does not know (a tuple, a set, bytes) as ``"<str(value)>"`` without escaping, which
    lets text in a value end the string and run as code in the injected cell. So only plain data reaches it, and what
    it writes is read back with ``ast.literal_eval`` (which runs nothing) and must give the value again."""
    from papermill.translators import PythonTranslator

    def plain(v: Any, where: str) -> Any:
        if type(v) in _PLAIN:
            if isinstance(v, float) and not math.isfinite(v):
                raise ParameterError(f"{where}: {v!r} is not a finite number")
            return v
        if type(v) in (list, tuple):
            return [plain(x, f"{where}[{i}]") for i, x in enumerate(v)]
        if type(v) is dict:
            if not all(type(k) is str for k in v):
                raise ParameterError(f"{where}: dict keys must be text, got {list(v)!r}")
            return {k: plain(x, f"{where}[{k!r}]") for k, x in v.items()}
        raise ParameterError(
            f"{where}: {type(v).__name__} values cannot be passed to a notebook (use None, True/False, a number, "
            "text, or a list or dict of them)"
        )

    out = plain(value, key)
    code = PythonTranslator.translate(out)
    try:
        back = ast.literal_eval(code)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        back = _NOT_A_LITERAL
    if back != out:  # never hand papermill a value it would write as anything but that literal
        raise ParameterError(f"{key}: papermill would not write {value!r} as a plain literal; refusing to inject it")
    return out


_NOT_A_LITERAL = object()


def _rel_to(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` (``..`` when outside it; the kernels run in ``root``), so the notebooks' default
    ``"artifacts"`` is kept and ``run.json`` holds no absolute path of the build machine."""
    return rel_path(path, root)


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
    annotations: dict[Path, dict[str, str]] = {}
    if defined is None:
        specs = {nb: _inspect(nb) for nb in notebooks}
        defined = {nb: {k: v.get("default") for k, v in sp.items()} for nb, sp in specs.items()}
        annotations = {
            nb: {k: v["inferred_type_name"] for k, v in sp.items() if v.get("inferred_type_name") not in (None, "None")}
            for nb, sp in specs.items()
        }
    types_of = {nb: declared_types(defined[nb], annotations.get(nb)) for nb in notebooks}
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
            else:
                problems += _knob_problems(key, knobs[key], [nb], types_of)
        elif "." in key:
            problems.append(f"--set {key}: not a profile setting")
        elif not any(name in defined[nb] for nb in notebooks):
            problems.append(f"--set {key}: neither a profile setting nor a parameter of a selected notebook")
        else:
            problems += _knob_problems(key, knobs[key], [nb for nb in notebooks if name in defined[nb]], types_of)
    if problems:
        valid_settings = valid_keys_text()
        valid = "\n".join(
            f"  {nb.name}: "
            + (
                ", ".join(
                    f"{k} ({type_name(types_of[nb][k]) if types_of[nb][k] is not None else 'any'})"
                    for k in defined[nb]
                    if k not in ("profile", "overrides")
                )
                or "(none)"
            )
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
    knob_values = {k: v for k, v in knobs.items()}
    for nb in notebooks:
        params: dict[str, Any] = {"profile": profile}
        if "overrides" in defined[nb]:
            params["overrides"] = typed
        if artifacts_dir is not None and "artifacts_dir" in defined[nb]:
            params["artifacts_dir"] = artifacts_dir
        for key, value in knob_values.items():
            prefix, _, name = key.rpartition(".")
            if not prefix and name in defined[nb]:
                params[name] = check_knob(key, value, types_of[nb][name])
        for key, value in knob_values.items():  # notebook-specific keys win over global ones
            prefix, _, name = key.rpartition(".")
            if prefix and prefix == notebook_number(nb):
                params[name] = check_knob(key, value, types_of[nb][name])
        plan[nb] = {k: safe_parameter(k, v) for k, v in params.items()}
    return plan


def _knob_problems(key: str, value: Any, notebooks: Sequence[Path], types_of: Mapping[Path, Any]) -> list[str]:
    """Why ``value`` does not fit the declared type of ``key`` in each notebook that defines it (empty when it fits)."""
    name = key.rpartition(".")[2]
    out = []
    for nb in notebooks:
        t = types_of[nb][name]
        try:
            safe_parameter(key, check_knob(key, value, t))
        except ParameterError as e:
            out.append(f"--set {e} ({nb.name} declares {name}: {type_name(t) if t is not None else 'any'})")
    return out


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
    title: Mapping[str, str] | None = None,
    extras: bool = False,
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
        # paths relative to the checkout (``root``: relative to the report folder), never the machine's absolute ones
        "root": rel_path(root, report_dir),
        "notebooks_dir": _rel_to(notebooks_dir, root),
        "artifacts_dir": artifacts_param,
        "report_dir": _rel_to(report_dir, root),
        "kernel": kernel_name,
    }
    report_dir.mkdir(parents=True, exist_ok=True)
    run_json = report_dir / "run.json"
    previous = _previous_records(run_json, profile, {r.name for r in records})
    run["title"] = _title(run_json, title)

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
            _finish_report(report_dir, artifacts_path, final, echo, extras=extras)
    return final


def _title(run_json: Path, title: Mapping[str, str] | None) -> dict[str, str]:
    """The deck's title fields (presenter, course, date): the previous ``run.json``'s, updated by ``title``."""
    old, _ = read_run_json(run_json)
    kept = old.get("title") if isinstance(old.get("title"), dict) else {}
    return {k: str(v) for k, v in {**kept, **(title or {})}.items() if k in ("presenter", "course", "date")}


def _page_has_banner(html_path: Path) -> bool:
    from ..utils import BANNER_CLASS

    with open(html_path, encoding="utf-8") as f:
        return f'class="{BANNER_CLASS}"' in f.read()


def _previous_records(run_json: Path, profile: str, names: set[str]) -> dict[str, dict[str, Any]]:
    """Entries of an earlier run of the same profile for notebooks this run does not touch (``--only``)."""
    old, _ = read_run_json(run_json)  # unreadable or not a record: nothing to keep
    if old.get("profile") != profile or not isinstance(old.get("notebooks"), list):
        return {}
    return {
        r["name"]: dict(r, from_previous_run=True)
        for r in old["notebooks"]
        if isinstance(r, dict) and isinstance(r.get("name"), str) and r["name"] not in names
    }


def _finish_report(
    report_dir: Path, artifacts_dir: Path, run: dict[str, Any], echo: Callable[[str], None], *, extras: bool = False
) -> None:
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
    if extras:  # the command line's runs: the deck's inference-cost slide (measured once, then cached)
        try:
            from ..inference_cost import measure_inference_cost

            echo("inference cost: measuring one vs two ViT-S/14 on this CPU (once; cached in artifacts/)")
            measure_inference_cost(artifacts_dir)
        except Exception as e:
            echo(f"measuring the inference cost failed: {type(e).__name__}: {e}")
    try:
        built = _report.build_report(report_dir, artifacts_dir, run)
    except Exception as e:
        echo(f"building the report failed: {type(e).__name__}: {e}")
        return
    for name, why in built["figure_errors"].items():
        echo(f"    figure {name} not drawn: {why}")
    figs = ", ".join(sorted(built["figures"])) or "none (their artifacts are missing)"
    echo(f"report: {built['index']} (slides: {built['slides'].name}; figures: {figs})")
    if extras:  # slides.pdf and handout.pdf, printed by headless Chromium when it is present
        from .handout import print_pdfs

        print_pdfs(report_dir, echo)


def rebuild_report(
    report_dir: str | Path = "report",
    artifacts_dir: str | Path | None = None,
    *,
    title: Mapping[str, str] | None = None,
    pdf: bool = False,
) -> Path:
    """Re-export every executed ``report/NN_*.ipynb`` and rebuild the index (no notebook is run). ``title``: the
    deck's presenter / course / date, kept in ``run.json``; ``pdf``: measure the inference cost (once) and print
    ``slides.pdf`` and ``handout.pdf``."""
    from . import report as _report

    report_dir = Path(report_dir)
    run_path = report_dir / "run.json"
    run, note = read_run_json(run_path)
    if note:  # truncated, not JSON, or a list: rebuild from the executed notebooks, and say so on the index
        print(f"note: {note}", flush=True)
        run = {"note": note}
    root = run_root(report_dir, run)
    nb_dir = root / str(run.get("notebooks_dir") or "notebooks")
    if artifacts_dir is None:
        artifacts_dir = run_artifacts_dir(report_dir, run)
    listed = run.get("notebooks") if isinstance(run.get("notebooks"), list) else []
    recs = {r["name"]: r for r in listed if isinstance(r, dict) and isinstance(r.get("name"), str)}
    for ipynb in sorted(report_dir.glob("[0-9][0-9]_*.ipynb")):
        html_path = ipynb.with_suffix(".html")
        _report.export_html(ipynb, html_path, source_dir=nb_dir)
        if ipynb.stem not in recs and note:
            recs[ipynb.stem] = {"name": ipynb.stem, "html": html_path.name, "status": "unknown (run.json was lost)"}
        if ipynb.stem in recs:
            recs[ipynb.stem]["random_weights"] = _page_has_banner(html_path)
    if title:
        run["title"] = _title(run_path, title)
    if recs or note or title:
        if recs or note:
            run["notebooks"] = sorted(recs.values(), key=lambda r: r["name"])
        write_json(run_path, run)
    _finish_report(report_dir, Path(artifacts_dir), run, lambda s: print(s, flush=True), extras=pdf)
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
            title={k: getattr(args, k) for k in ("presenter", "course", "date") if getattr(args, k, None) is not None},
            extras=not getattr(args, "no_pdf", False),
        )
    except ParameterError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0 if run.get("ok") else 1
