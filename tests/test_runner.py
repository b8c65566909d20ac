"""Batch runner and CLI: discovery, parameter validation, a real papermill run of tiny throwaway notebooks."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest

from fit3d_helpers.__main__ import main as cli_main
from fit3d_helpers.course import runner
from fit3d_helpers.course.report import BANNER_CLASS, REMOTE_PATTERNS
from fit3d_helpers.utils import RANDOM_WEIGHTS_BANNER


def _nb(params: str, *cells: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(params, metadata={"tags": ["parameters"]})]
    nb.cells += [nbformat.v4.new_code_cell(c) for c in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


WRITE_STATS = """
import os
from fit3d_helpers import cache
cache.build({stage!r}, {{"tag": tag, "overrides": overrides}}, artifacts_dir, lambda out, resume: {stats})
print("cwd", os.getcwd())
"""


def make_repo(root: Path) -> Path:
    """root/notebooks/{01_ok, 02_random, 03_fail, 04_after}.ipynb; returns the notebooks folder."""
    nbdir = root / "notebooks"
    nbdir.mkdir(parents=True)
    nbformat.write(
        _nb(
            'profile = "smoke"\noverrides = {}\nartifacts_dir = "artifacts"\ntag = 0\nsteps = 10',
            WRITE_STATS.format(stage="data", stats='{"profile": profile, "n_views": 24, "psnr": 28.5}'),
            'print(f"steps={steps!r} tag={tag!r} profile={profile} overrides={overrides}")',
        ),
        nbdir / "01_ok.ipynb",
    )
    probe = (
        '{"stage": "probe", "profile": profile, "weights": "random", "backbone": "vit_s", "results": '
        '{"seg": {"original": {"miou": 0.3, "macc": 0.4, "aacc": 0.7}, "concat": {"miou": 0.35, "macc": 0.45, '
        '"aacc": 0.75}}, "depth": {"original": {"rmse": 0.4, "absrel": 0.2, "delta1": 0.7}, "concat": '
        '{"rmse": 0.35, "absrel": 0.15, "delta1": 0.8}}}}'
    )
    nbformat.write(
        _nb(
            'profile = "smoke"\noverrides = {}\nartifacts_dir = "artifacts"\ntag = 0\nweights = "auto"',
            f"print({RANDOM_WEIGHTS_BANNER!r})  # what the course prints when the backbone is random-init",
            WRITE_STATS.format(stage="probe", stats=probe),
        ),
        nbdir / "02_random.ipynb",
    )
    nbformat.write(_nb('profile = "smoke"', 'raise ValueError("boom from 03")'), nbdir / "03_fail.ipynb")
    nbformat.write(_nb('profile = "smoke"\ntag = 0', "print('never')"), nbdir / "04_after.ipynb")
    (nbdir / "notes.ipynb").write_text("{}")  # not NN_*: ignored
    return nbdir


# ---------------------------------------------------------------------------------------------- unit level


def test_parse_value_literals_else_string():
    assert runner.parse_value("3") == 3
    assert runner.parse_value("1e-4") == 1e-4
    assert runner.parse_value("True") is True
    assert runner.parse_value("None") is None
    assert runner.parse_value("[1, 2]") == [1, 2]
    assert runner.parse_value("'0/2'") == "0/2"
    assert runner.parse_value("0/2") == "0/2"  # not a literal: kept as text
    assert runner.parse_value("dinov2_small") == "dinov2_small"


def test_parse_overrides_settings_and_knobs():
    o = runner.parse_overrides(
        ["seed=1", "2.scene_index=300", "02.backbone=clip_base", "lift.iterations=5", "finetune.lr=1e-3"]
    )
    assert o == {
        "seed": 1,
        "02.scene_index": 300,
        "02.backbone": "clip_base",
        "lift.iterations": 5,
        "finetune.lr": 1e-3,
    }
    with pytest.raises(runner.ParameterError, match="key=value"):
        runner.parse_overrides(["novalue"])
    with pytest.raises(runner.ParameterError, match="no NN. prefix"):
        runner.parse_overrides(["02.lift.iterations=5"])
    with pytest.raises(runner.ParameterError, match="--profile"):
        runner.parse_overrides(["profile=paper"])


def test_discover_and_only(tmp_path):
    nbdir = make_repo(tmp_path)
    names = [p.name for p in runner.discover_notebooks(nbdir)]
    assert names == ["01_ok.ipynb", "02_random.ipynb", "03_fail.ipynb", "04_after.ipynb"]
    assert [p.name for p in runner.discover_notebooks(nbdir, "3,01")] == ["01_ok.ipynb", "03_fail.ipynb"]
    with pytest.raises(runner.ParameterError, match="09"):
        runner.discover_notebooks(nbdir, "09")


def test_plan_parameters_validation_lists_keys(tmp_path):
    nbdir = make_repo(tmp_path)
    nbs = runner.discover_notebooks(nbdir, "01,02,03")
    plan = runner.plan_parameters(
        nbs, "paper", {"seed": 5, "lift.iterations": "7", "02.weights": "random", "tag": 2}, "artifacts"
    )
    p1, p2, p3 = (plan[n] for n in nbs)
    settings = {"seed": 5, "lift.iterations": 7}  # parsed to the settings' types, for every notebook with `overrides`
    assert p1 == {"profile": "paper", "overrides": settings, "artifacts_dir": "artifacts", "tag": 2}
    assert p2 == {
        "profile": "paper",
        "overrides": settings,
        "artifacts_dir": "artifacts",
        "tag": 2,
        "weights": "random",
    }
    assert p3 == {"profile": "paper"}  # defines none of them
    with pytest.raises(runner.ParameterError) as e:
        runner.plan_parameters(nbs, "smoke", {"bogus": 1, "01.weights": "x", "lift.iterationz": 3}, "artifacts")
    msg = str(e.value)
    assert (
        "--set bogus: neither a profile setting nor a parameter" in msg
        and "01_ok.ipynb has no parameter 'weights'" in msg
    )
    assert "--set lift.iterationz: not a profile setting" in msg
    assert "lift.iterations (int)" in msg and "01_ok.ipynb: artifacts_dir (str), tag (int), steps (int)" in msg
    with pytest.raises(runner.ParameterError, match=r"lift.iterations: cannot parse 'many' as int"):
        runner.plan_parameters(nbs, "smoke", {"lift.iterations": "many"}, "artifacts")
    with pytest.raises(runner.ParameterError, match=r"finetune.lr must be > 0"):
        runner.plan_parameters(nbs, "smoke", {"finetune.lr": 0}, "artifacts")


def test_cli_unknown_or_ill_typed_key_exits_2_before_running(tmp_path, capsys):
    nbdir = make_repo(tmp_path)
    for bad, words in (
        (["nope=3"], ["nope", "Profile settings", "Notebook parameters"]),
        (["lift.iterations=abc"], ["lift.iterations", "cannot parse 'abc' as int"]),
    ):
        rc = cli_main(["run", "--notebooks-dir", str(nbdir), "--set", *bad])
        assert rc == 2
        err = capsys.readouterr().err
        assert all(w in err for w in words), err
    assert not (tmp_path / "report").exists()  # nothing ran


def test_notebook_without_profile_is_rejected(tmp_path):
    nbdir = tmp_path / "notebooks"
    nbdir.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 1")]
    nbformat.write(nb, nbdir / "01_bad.ipynb")
    with pytest.raises(runner.ParameterError, match="tagged 'parameters'"):
        runner.plan_parameters(runner.discover_notebooks(nbdir), "smoke", {}, None)


# ---------------------------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    """One real batch: 01 ok, 02 ok (random weights), 03 fails, 04 never runs."""
    root = tmp_path_factory.mktemp("repo")
    nbdir = make_repo(root)
    lines: list[str] = []
    run = runner.run_notebooks(nbdir, "smoke", overrides=["steps=7", "02.tag=3", "seed=4"], echo=lines.append)
    return root, run, lines


def test_batch_stops_at_failure_and_records_it(batch):
    root, run, lines = batch
    report = root / "report"
    st = {n["name"]: n["status"] for n in run["notebooks"]}
    assert st == {"01_ok": "ok", "02_random": "ok", "03_fail": "failed", "04_after": "skipped"}
    assert run["ok"] is False
    fail = next(n for n in run["notebooks"] if n["name"] == "03_fail")
    assert "boom from 03" in fail["error"]
    # the failing notebook still has its page, with the traceback visible
    page = (report / "03_fail.html").read_text()
    assert "boom from 03" in page and "ValueError" in page
    assert not (report / "04_after.html").exists()
    assert any("03_fail: failed" in line for line in lines)
    assert any(re.search(r"01_ok: ok \(\d+\.\d s\)", line) for line in lines)


def test_run_json_metadata(batch):
    root, run, _ = batch
    on_disk = json.loads((root / "report" / "run.json").read_text())
    assert on_disk["notebooks"] == run["notebooks"]
    for key in ("commit", "profile", "overrides", "device", "torch", "python", "date", "total_wall_s"):
        assert key in on_disk, key
    assert on_disk["commit"]  # a sha or "unknown"
    assert on_disk["profile"] == "smoke"
    assert on_disk["overrides"] == {"steps": 7, "02.tag": 3, "seed": 4}
    assert on_disk["device"] == "cpu" or on_disk["device"].startswith("cuda")
    ok = [n for n in on_disk["notebooks"] if n["status"] == "ok"]
    assert all(n["wall_s"] > 0 for n in ok)
    p = {n["name"]: n["parameters"] for n in on_disk["notebooks"]}
    assert p["01_ok"] == {"profile": "smoke", "overrides": {"seed": 4}, "artifacts_dir": "artifacts", "steps": 7}
    assert p["02_random"] == {"profile": "smoke", "overrides": {"seed": 4}, "artifacts_dir": "artifacts", "tag": 3}


def test_parameters_reach_the_kernel_and_cwd_is_repo_root(batch):
    root, _, _ = batch
    nb = nbformat.read(root / "report" / "01_ok.ipynb", as_version=4)
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "steps=7 tag=0 profile=smoke overrides={'seed': 4}" in text
    assert f"cwd {root}" in text
    from fit3d_helpers import cache

    assert cache.lookup("data", {"tag": 0, "overrides": {"seed": 4}}, root / "artifacts") is not None
    assert (
        cache.lookup("probe", {"tag": 3, "overrides": {"seed": 4}}, root / "artifacts") is not None
    )  # 02.tag=3 went to 02 only


def test_pages_offline_with_banner_everywhere(batch):
    root, run, _ = batch
    report = root / "report"
    pages = sorted(report.glob("*.html"))
    assert {p.name for p in pages} == {
        "01_ok.html",
        "02_random.html",
        "03_fail.html",
        "index.html",
        "artifacts.html",
        "slides.html",
        "handout.html",
        "glossary.html",
        "fidelity.html",
    }
    for p in pages:
        text = p.read_text()
        for pat in REMOTE_PATTERNS:
            assert not pat.search(text), f"{p.name} loads {pat.search(text).group(0)}"
        # 02 printed the banner and wrote weights=random: every page of the run carries it
        assert f'class="{BANNER_CLASS}"' in text, p.name
        assert RANDOM_WEIGHTS_BANNER.split(".")[0] in text


def test_index_links_and_tables(batch):
    root, _, _ = batch
    index = (root / "report" / "index.html").read_text()
    for page in ("01_ok.html", "02_random.html", "03_fail.html"):
        assert f'href="{page}"' in index
    assert "Headline results" in index and "Reported by the paper" in index
    assert "35.00" in index  # concat mIoU 0.35 shown in percent, from stats.json
    assert ">28.5<" in (root / "report" / "artifacts.html").read_text()  # data stage scalar stat, on the appendix page


def test_only_merges_with_previous_run(batch, tmp_path):
    root, _, _ = batch
    lines: list[str] = []
    run = runner.run_notebooks(root / "notebooks", "smoke", only="01", echo=lines.append)
    assert run["ok"] is True
    names = {n["name"]: n for n in run["notebooks"]}
    assert names["01_ok"]["status"] == "ok" and not names["01_ok"].get("from_previous_run")
    assert names["03_fail"].get("from_previous_run") is True  # kept from the earlier batch, for the index


def test_rebuild_report_from_executed_notebooks(batch):
    root, _, _ = batch
    report = root / "report"
    (report / "index.html").unlink()
    (report / "02_random.html").unlink()
    index = runner.rebuild_report(report)
    assert index.is_file() and (report / "02_random.html").is_file()
    assert f'class="{BANNER_CLASS}"' in (report / "02_random.html").read_text()
    assert 'href="02_random.html"' in index.read_text()


# ------------------------------------------------------------------------------- bad inputs (issue 17, runner)

PAYLOAD_TUPLE = '("x\\"+str(__import__(\\"os\\").system(\\"touch M\\"))+\\"",)'  # the reviewed --set value
PAYLOAD_TEXT = 'x"+str(__import__("os").system("touch M"))+"\\'  # the same, as text, with a trailing backslash


def test_parsing_lives_with_the_settings_and_the_runner_reuses_it():
    from fit3d_helpers import profiles

    assert runner.parse_overrides is profiles.parse_overrides and runner.ParameterError is profiles.ParameterError


def test_papermill_would_write_a_tuple_as_code_so_no_tuple_reaches_it():
    from papermill.translators import PythonTranslator

    value = runner.parse_value(PAYLOAD_TUPLE)
    assert isinstance(value, tuple)
    with pytest.raises((ValueError, SyntaxError)):  # papermill's own text for it is code, not a literal
        import ast

        ast.literal_eval(PythonTranslator.translate(value))
    safe = runner.safe_parameter("06.image_path", value)
    assert safe == list(value)  # plain data, which papermill writes as an escaped literal
    with pytest.raises(runner.ParameterError, match="set values cannot be passed"):
        runner.safe_parameter("x", {1, 2})
    with pytest.raises(runner.ParameterError, match="not a finite number"):
        runner.safe_parameter("x", float("nan"))


def test_planted_code_in_a_parameter_creates_no_file(tmp_path, capsys):
    nbdir = tmp_path / "notebooks"
    nbdir.mkdir()
    nbformat.write(
        _nb('profile = "smoke"\nimage_path = None\nnames = []', "print(repr(image_path)); print(repr(names))"),
        nbdir / "06_photo.ipynb",
    )
    # a tuple for a path: refused before anything runs (the declared type is str | None)
    rc = cli_main(["run", "--notebooks-dir", str(nbdir), "--set", f"06.image_path={PAYLOAD_TUPLE}"])
    assert rc == 2 and "06.image_path" in capsys.readouterr().err
    # the same text as a string, and in a list: they reach the kernel as data, and nothing runs
    run = runner.run_notebooks(
        nbdir,
        "smoke",
        overrides={"06.image_path": PAYLOAD_TEXT, "06.names": runner.parse_value(PAYLOAD_TUPLE)},
        build_report=False,
        echo=lambda s: None,
    )
    assert run["ok"] is True
    assert not (tmp_path / "M").exists() and not (nbdir / "M").exists() and not Path("M").exists()
    nb = nbformat.read(tmp_path / "report" / "06_photo.ipynb", as_version=4)
    out = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
    assert out.splitlines() == [repr(PAYLOAD_TEXT), repr([runner.parse_value(PAYLOAD_TUPLE)[0]])]


@pytest.mark.parametrize("only", [" ", "", ",", " , "])
def test_only_that_names_no_notebook_exits_2(tmp_path, capsys, only):
    nbdir = make_repo(tmp_path)
    assert cli_main(["run", "--notebooks-dir", str(nbdir), "--only", only]) == 2
    err = capsys.readouterr().err
    assert "--only" in err and "names no notebook" in err and "01, 02, 03, 04" in err
    assert not (tmp_path / "report").exists()


def test_a_notebook_knob_of_the_wrong_type_stops_before_any_work(tmp_path, capsys):
    nbdir = make_repo(tmp_path)
    assert cli_main(["run", "--notebooks-dir", str(nbdir), "--set", "01.steps=abc"]) == 2
    err = capsys.readouterr().err
    assert "--set 01.steps: cannot parse 'abc' as int" in err  # the key and the expected type
    assert "01_ok.ipynb: artifacts_dir (str), tag (int), steps (int)" in err  # the valid keys, typed
    assert not (tmp_path / "report").exists()
    plan = runner.plan_parameters(runner.discover_notebooks(nbdir, "01"), "smoke", {"01.steps": "12"}, None)
    assert next(iter(plan.values()))["steps"] == 12  # text parsed to the declared int


def test_a_notebook_checks_its_own_annotated_parameters():
    from fit3d_helpers.profiles import ParameterError, check_knobs

    ns = {"__annotations__": {"max_side": int, "image_path": str | None}, "max_side": 518, "image_path": None}
    check_knobs(ns)  # the defaults pass
    ns["max_side"] = "abc"  # what `papermill -p max_side abc` injects
    with pytest.raises(ParameterError, match=r"06_your_photo: max_side: cannot parse 'abc' as int.*max_side \(int\)"):
        check_knobs(ns, "06_your_photo")


@pytest.mark.parametrize("bad", ['{"profile": "smo', "[1, 2]", ""])
def test_an_unusable_run_json_is_rebuilt_with_a_note(tmp_path, bad):
    report = tmp_path / "report"
    report.mkdir()
    (report / "run.json").write_text(bad)
    index = runner.rebuild_report(report, tmp_path / "artifacts")
    assert "run.json" in index.read_text() and "rebuilt without it" in index.read_text()
    run = json.loads((report / "run.json").read_text())
    assert isinstance(run, dict) and "rebuilt without it" in run["note"]


def test_run_json_and_artifacts_page_hold_no_absolute_path(batch):
    root, run, _ = batch
    for page in ("run.json", "artifacts.html", "index.html"):
        text = (root / "report" / page).read_text()
        assert str(root) not in text and str(root.resolve()) not in text, page
    assert run["root"] == ".." and run["artifacts_dir"] == "artifacts" and run["report_dir"] == "report"


def test_pages_show_one_parameters_cell(batch):
    root, _, _ = batch
    nb = nbformat.read(root / "report" / "02_random.ipynb", as_version=4)
    assert sum("parameters" in " ".join(c.metadata.get("tags", [])) for c in nb.cells) == 2  # papermill's two
    page = (root / "report" / "02_random.html").read_text()
    assert "injected-parameters" not in page and "# Parameters" not in page
    # profile, overrides, artifacts_dir and 02.tag=3, each written once in place of its default
    assert page.count("this run (default: ") == 4 and page.count("this run (default: 0)") == 1
