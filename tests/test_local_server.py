"""Local servers without llama.cpp: locating a packaged model file, the config's checks, readiness and stopping,
and a whole run routed through `local:<name>` to a server the run starts (the simulator standing in for llama.cpp).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from judge_arena import local_server
from judge_arena.arena import load_inputs, play_arena
from judge_arena.config import ConfigError, LocalServerConfig, load_config
from judge_arena.local_server import LocalServer, LocalServerError, packaged_file

ROOT = Path(__file__).resolve().parents[1]

# A stand-in for a server still loading its model: it answers 503 to its first two readiness polls, then lists a
# model, as llama.cpp's servers do while a model loads.
_LOADING_SERVER = """
import http.server, json, sys
polls = 0
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        global polls
        polls += 1
        ready = polls > 2
        body = json.dumps({"data": [{"id": "m"}]} if ready else {"error": "loading model"}).encode()
        if ready:  # logged before the reply, which ends the wait: the test reads the log at once
            print(f"served after {polls - 1} polls while loading", flush=True)
        self.send_response(200 if ready else 503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""


def _server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: str, **options: object) -> LocalServer:
    """A LocalServer whose command runs `script` (given the port) instead of llama.cpp's server."""
    path = tmp_path / "server.py"
    path.write_text(script)
    monkeypatch.setattr(LocalServer, "command", lambda self, port: [sys.executable, str(path), str(port)])
    config = LocalServerConfig.model_validate({"model_path": str(path), **options})
    return LocalServer("fake", config)


def test_a_packaged_file_is_found_by_its_path_or_name_without_importing_the_package() -> None:
    by_path = packaged_file("PyYAML", "yaml/__init__.py")
    assert by_path.is_file()
    assert by_path.parts[-2:] == ("yaml", "__init__.py")
    assert packaged_file("PyYAML", "__init__.py").name == "__init__.py"
    with pytest.raises(FileNotFoundError, match="package no-such-distribution is not installed"):
        packaged_file("no-such-distribution", "model.gguf")
    with pytest.raises(FileNotFoundError, match=r"ships no file model\.gguf"):
        packaged_file("PyYAML", "model.gguf")


def test_the_server_command_runs_llama_cpp_with_this_interpreter_on_loopback() -> None:
    config = LocalServerConfig(model_path=Path("/models/m.gguf"), n_ctx=1024, options={"chat_format": "chatml"})
    command = LocalServer("m", config).command(8123)
    assert command[:3] == [sys.executable, "-m", "llama_cpp.server"]
    assert command[3:9] == ["--model", "/models/m.gguf", "--host", "127.0.0.1", "--port", "8123"]
    assert command[9:] == ["--n_ctx=1024", "--chat_format=chatml"]


def test_entering_waits_while_the_model_loads_and_exiting_stops_the_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = _server(tmp_path, monkeypatch, _LOADING_SERVER)
    with server:
        process = server._process
        assert process is not None
        assert process.poll() is None
        assert server.url.startswith("http://127.0.0.1:")
        assert "served after 2 polls while loading" in server._log_tail()
    assert process.poll() is not None


def test_a_server_that_exits_while_starting_is_an_error_with_its_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = _server(tmp_path, monkeypatch, "import sys; print('error loading model: bad magic'); sys.exit(3)")
    with pytest.raises(LocalServerError, match=r"(?s)'fake' exited with code 3 .*bad magic"), server:
        pass


def test_a_server_not_ready_in_time_is_stopped_and_named_with_its_timeout_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = _server(
        tmp_path, monkeypatch, "import time; print('loading', flush=True); time.sleep(600)", ready_timeout_s=1
    )
    with pytest.raises(
        LocalServerError, match=r"(?s)not ready within 1 s \(local_servers.fake.ready_timeout_s\).*loading"
    ):
        server.__enter__()
    assert server._process is None


# A run that starts a server (the loading stand-in above), prints the server's pid, and waits to be killed.
_RUN_WITH_A_SERVER = """
import sys, time
from pathlib import Path
from judge_arena.config import LocalServerConfig
from judge_arena.local_server import LocalServer

class StandIn(LocalServer):
    def command(self, port):
        return [sys.executable, sys.argv[1], str(port)]

with StandIn("stand-in", LocalServerConfig(model_path=Path(sys.argv[1]))) as server:
    print(server._process.pid, flush=True)
    time.sleep(600)
"""


def _running(pid: int) -> bool:
    """Whether `pid` runs (a zombie, dead but not yet reaped by its new parent, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_killed_run_takes_its_server_with_it(tmp_path: Path) -> None:
    """SIGKILL runs no exit code in the run, so the server is stopped by the kernel (PR_SET_PDEATHSIG)."""
    (tmp_path / "server.py").write_text(_LOADING_SERVER)
    (tmp_path / "run.py").write_text(_RUN_WITH_A_SERVER)
    run = subprocess.Popen(
        [sys.executable, str(tmp_path / "run.py"), str(tmp_path / "server.py")], stdout=subprocess.PIPE, text=True
    )
    assert run.stdout is not None
    server = int(run.stdout.readline())
    try:
        assert _running(server)
        run.send_signal(signal.SIGKILL)
        run.wait()
        deadline = time.monotonic() + 60  # a deadline for a loaded machine; the kernel signals at once
        while _running(server) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _running(server)
    finally:
        if _running(server):
            os.kill(server, signal.SIGKILL)
        run.stdout.close()


def _arena(folder: Path, **overrides: object) -> Path:
    config: dict[str, object] = {
        "name": "local",
        "suites": [{"path": str(ROOT / "judge_arena/data/suites/core.jsonl"), "limit": 2}],
        "local_servers": {"stand-in": {"model_path": str(ROOT / "README.md")}},
        "candidates": [
            {"name": "plain", "model": "openai/sim-strong-plain", "api_base": "local:stand-in"},
            {"name": "markdown", "model": "openai/sim-markdown-weak", "api_base": "local:stand-in"},
        ],
        "judges": [
            {
                "name": "judge",
                "model": "openai/sim-judge",
                "api_base": "local:stand-in",
                "template": str(ROOT / "judge_arena/data/templates/pairwise.yaml"),
            }
        ],
        "normalizations": ["raw"],
        "runner": {"cache_dir": "cache", "output_dir": "runs", "max_wait_s": 0.1},
    }
    config.update(overrides)
    path = folder / "arena.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_model_naming_a_server_that_is_not_configured_is_a_config_error(tmp_path: Path) -> None:
    path = _arena(tmp_path, local_servers={})
    with pytest.raises(ConfigError, match=r"candidates.0.api_base: no local server 'stand-in' in local_servers"):
        load_config(path)


def test_a_missing_model_file_or_package_is_a_config_error_naming_the_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local_server, "server_installed", lambda: True)
    path = _arena(tmp_path, local_servers={"stand-in": {"model_path": "missing.gguf"}})
    with pytest.raises(ConfigError, match=r"field 'local_servers.stand-in.model_path': file not found: .*missing.gguf"):
        load_config(path)
    path = _arena(tmp_path, local_servers={"stand-in": {"model_package": "no-such-wheel", "model_path": "m.gguf"}})
    with pytest.raises(ConfigError, match=r"local_servers.stand-in.model_package': package no-such-wheel is not"):
        load_config(path)
    monkeypatch.setattr(local_server, "server_installed", lambda: False)
    with pytest.raises(ConfigError, match=r"local_servers.stand-in': llama-cpp-python\[server\] is not installed"):
        load_config(path)


def test_a_run_starts_its_local_server_routes_to_it_stops_it_and_reruns_from_cache_on_another_port(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The simulator stands in for llama.cpp; each run gets a new free port, yet the cache key names the server."""
    monkeypatch.setattr(local_server, "server_installed", lambda: True)
    started: list[LocalServer] = []
    simulator = [sys.executable, "-m", "judge_arena.cli", "sim", "--port"]

    def command(self: LocalServer, port: int) -> list[str]:
        started.append(self)
        return [*simulator, str(port)]

    monkeypatch.setattr(LocalServer, "command", command)
    inputs = load_inputs(load_config(_arena(tmp_path)))
    first = asyncio.run(play_arena(inputs))
    assert first.failures == ()
    assert first.stats.made > 0
    assert len(first.battles) == 2 * 2
    assert all(b.label is not None for b in first.battles)
    second = asyncio.run(play_arena(inputs))
    assert second.stats.made == 0
    assert second.stats.cached == first.stats.made
    assert [s._process for s in started] == [None, None]  # both stopped


def test_the_cache_key_names_the_servers_model_and_options_never_its_port(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local_server, "server_installed", lambda: True)

    def api_base(**server: object) -> str | None:
        model = tmp_path / "model.gguf"
        server = {"model_path": str(model), **server}
        config = load_config(_arena(tmp_path, local_servers={"stand-in": server}))
        assert {m.api_base for m in [*config.candidates, *config.judges]} == {config.judges[0].api_base}
        return config.judges[0].api_base

    (tmp_path / "model.gguf").write_bytes(b"GGUF" + bytes(60))
    pinned = api_base()
    assert pinned is not None
    assert re.fullmatch(r"local:stand-in@[0-9a-f]{12}", pinned)
    assert api_base(port=8123, ready_timeout_s=5) == pinned
    assert api_base(options={"chat_format": "gemma"}) != pinned
    assert api_base(n_ctx=512) != pinned
    (tmp_path / "model.gguf").write_bytes(b"GGUF" + bytes(61))
    assert api_base() != pinned
