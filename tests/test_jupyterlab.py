"""`bash scripts/lab.sh` opens the course in JupyterLab: the server serves the notebooks, has the widget and plotly
extensions, and a notebook's widget cell runs in a kernel started through it (over the kernel websocket, as the
browser does). Headless, on 127.0.0.1 with a free port and a token; skipped where jupyterlab is not installed."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import jupytext
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = "notebooks/01_data.ipynb"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"

pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("jupyterlab") is None, reason="no jupyterlab (the lab extra)"),
    pytest.mark.timeout(180),  # a hang fails: ~12 s of CPU in all; the server start and the kernel's imports dominate
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lab:
    def __init__(self, port: int, token: str) -> None:
        self.base, self.port, self.token = f"http://127.0.0.1:{port}", port, token

    def request(self, method: str, path: str, body: dict | None = None) -> dict | list:
        req = urllib.request.Request(
            self.base + path,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read() or b"null")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    tmp = tmp_path_factory.mktemp("lab")
    port, token = _free_port(), secrets.token_hex(16)
    env = {k: v for k, v in os.environ.items() if k != "FIT3D_BATCH"}  # an interactive session, not a batch run
    env |= {"JUPYTER_CONFIG_DIR": str(tmp / "config"), "JUPYTER_RUNTIME_DIR": str(tmp / "runtime")}
    cmd = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={ROOT}",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",
    ]
    cmd += ["--allow-root"] if os.geteuid() == 0 else []  # containers and CI run as root  # fmt: skip
    log = (tmp / "server.log").open("w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    server = Lab(port, token)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                server.request("GET", "/api/status")
                break
            except (urllib.error.URLError, ConnectionError):
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not start:\n{(tmp / 'server.log').read_text()[-3000:]}")
                time.sleep(0.3)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_it_serves_the_notebooks_and_the_extensions(lab: Lab) -> None:
    listing = lab.request("GET", "/api/contents/notebooks")
    names = {item["name"] for item in listing["content"]}
    assert {p.with_suffix(".ipynb").name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.py")} <= names
    assert lab.request("GET", f"/api/contents/{NOTEBOOK}")["content"]["cells"]  # it opens as a notebook
    extensions = {e["name"] for e in lab.request("GET", "/lab/api/extensions")}
    # widgets drawn (ipywidgets 8's lab manager) and plotly's mime bundle drawn interactively
    assert {"@jupyter-widgets/jupyterlab-manager", "jupyterlab-plotly"} <= extensions, sorted(extensions)


def _cell(predicate) -> str:
    nb = jupytext.read(ROOT / NOTEBOOK.replace(".ipynb", ".py"))
    return next(c.source for c in nb.cells if c.cell_type == "code" and predicate(c))


async def _execute(lab: Lab, kernel_id: str, code: str, timeout: float) -> list[dict]:
    """Run ``code`` over the kernel's websocket; the iopub messages it caused, and its execute_reply last."""
    from tornado.websocket import websocket_connect

    ws = await websocket_connect(f"ws://127.0.0.1:{lab.port}/api/kernels/{kernel_id}/channels?token={lab.token}")
    msg_id = uuid.uuid4().hex
    header = {"msg_id": msg_id, "msg_type": "execute_request", "username": "test", "session": uuid.uuid4().hex,
              "version": "5.3", "date": ""}  # fmt: skip
    content = {"code": code, "silent": False, "store_history": True, "user_expressions": {}, "allow_stdin": False}
    await ws.write_message(json.dumps({"header": header, "parent_header": {}, "metadata": {}, "content": content,
                                       "channel": "shell", "buffers": []}))  # fmt: skip
    got, reply, idle = [], None, False
    end = time.monotonic() + timeout
    while not (reply and idle):
        raw = await asyncio.wait_for(ws.read_message(), timeout=max(0.1, end - time.monotonic()))
        assert raw is not None, "the kernel websocket closed"
        msg = json.loads(raw)
        if msg.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        if msg["channel"] == "shell" and msg["msg_type"] == "execute_reply":
            reply = msg
        elif msg["channel"] == "iopub":
            got.append(msg)
            idle = idle or (msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle")
    ws.close()
    return [*got, reply]


def test_a_notebooks_widget_cell_runs_in_a_kernel_of_the_server(lab: Lab) -> None:
    t0 = time.monotonic()
    session = lab.request("POST", "/api/sessions", {"path": NOTEBOOK, "type": "notebook", "name": "01_data.ipynb",
                                                    "kernel": {"name": "python3"}})  # fmt: skip
    kernel_id = session["kernel"]["id"]
    # the notebook's own parameters and setup cells, a tiny stand-in for the scene notebook 01 generates (seconds,
    # not the generator's minutes), then the notebook's own slider cell
    tiny_scene = (
        "import numpy as np\nfrom pathlib import Path\nfrom fit3d_helpers.data import Scene, View\n"
        "scene = Scene('tiny', Path('.'), [View(f'v{i}', np.full((8, 12, 3), i / 3, np.float32), np.eye(3), "
        "np.eye(4), np.ones((8, 12), np.float32), np.zeros((8, 12), np.int64)) for i in range(3)], classes=['wall'])\n"
        "import plotly.io as pio\nprint('renderer', pio.renderers.default)"
    )
    code = "\n".join(
        [
            _cell(lambda c: "parameters" in c.metadata.get("tags", [])),
            _cell(lambda c: "course.notebook.start(" in c.source),
            tiny_scene,
            _cell(lambda c: "viz.interactive(" in c.source),
        ]
    )
    try:
        msgs = asyncio.run(_execute(lab, kernel_id, code, timeout=60))
    finally:
        lab.request("DELETE", f"/api/sessions/{session['id']}")
    errors = [m["content"] for m in msgs if m["msg_type"] == "error"]
    assert not errors, "\n".join("\n".join(e["traceback"]) for e in errors)
    assert msgs[-1]["content"]["status"] == "ok"
    shown = [m["content"]["data"] for m in msgs if m["msg_type"] in ("display_data", "execute_result")]
    assert any(WIDGET_MIME in d for d in shown), [sorted(d) for d in shown]  # the slider, as a widget view
    text = "".join(m["content"].get("text", "") for m in msgs if m["msg_type"] == "stream")
    assert "renderer plotly_mimetype+notebook" in text  # plotly figures come with their interactive mime bundle
    assert time.monotonic() - t0 < 60
