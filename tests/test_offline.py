"""configure_offline: litellm and tiktoken work at import with the network unreachable."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from judge_arena._offline import configure_offline

REPO = Path(__file__).resolve().parents[1]
CL100K_URL = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The variables configure_offline writes, restored after the test."""
    for name in ("LITELLM_LOCAL_MODEL_COST_MAP", "LITELLM_OFFLINE_MODE", "TIKTOKEN_CACHE_DIR"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_litellm_fetches_default_to_off(env: pytest.MonkeyPatch) -> None:
    configure_offline()
    assert os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] == "True"
    assert os.environ["LITELLM_OFFLINE_MODE"] == "true"


def test_what_the_user_set_is_kept(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "False")
    env.setenv("LITELLM_OFFLINE_MODE", "false")
    env.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "mine"))
    configure_offline()
    assert os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] == "False"
    assert os.environ["LITELLM_OFFLINE_MODE"] == "false"
    assert os.environ["TIKTOKEN_CACHE_DIR"] == str(tmp_path / "mine")


def test_tiktoken_cache_is_litellms_bundled_bpe_files(env: pytest.MonkeyPatch) -> None:
    configure_offline()
    cache = Path(os.environ["TIKTOKEN_CACHE_DIR"])
    assert cache.parts[-2:] == ("litellm_core_utils", "tokenizers")
    assert "litellm" in cache.parts
    # tiktoken looks a BPE file up under the sha1 of its download URL.
    assert (cache / hashlib.sha1(CL100K_URL.encode()).hexdigest()).is_file()


def test_importing_the_package_changes_no_environment_variable() -> None:
    child = (
        "import json, os; before = dict(os.environ); import judge_arena; "
        "judge_arena.__all__; print(json.dumps(dict(os.environ) == before))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LITELLM_", "TIKTOKEN_"))}
    done = subprocess.run([sys.executable, "-c", child], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) is True


# Runs in the child before judge_arena is imported: any connection to a non-loopback address, or name lookup
# of a non-local host, is recorded and refused. The proxies point at a closed loopback port, so a client
# that honours them fails fast too; loopback connects are recorded all the same.
_CHILD = """
import ipaddress, json, socket, sys

attempts = []

def _local(host):
    if host in (None, "localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

def _guarded(original):
    def connect(self, address, *args):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            attempts.append(repr(address))
            if not _local(address[0]):
                raise OSError(f"network disabled in this test: {address}")
        return original(self, address, *args)
    return connect

socket.socket.connect = _guarded(socket.socket.connect)
socket.socket.connect_ex = _guarded(socket.socket.connect_ex)
_create_connection = socket.create_connection

def create_connection(address, *args, **kwargs):
    attempts.append(repr(address))
    if not _local(address[0]):
        raise OSError(f"network disabled in this test: {address}")
    return _create_connection(address, *args, **kwargs)

socket.create_connection = create_connection
_getaddrinfo = socket.getaddrinfo

def getaddrinfo(host, *args, **kwargs):
    name = host.decode() if isinstance(host, bytes) else host
    if not _local(name):
        attempts.append(f"lookup {name}")
        raise socket.gaierror(f"network disabled in this test: {name}")
    return _getaddrinfo(host, *args, **kwargs)

socket.getaddrinfo = getaddrinfo

from judge_arena.tokens import count_tokens
tokens = count_tokens("hello world")
litellm_loaded_by_tokens = "litellm" in sys.modules
import litellm
result = {"tokens": tokens, "litellm_loaded_by_tokens": litellm_loaded_by_tokens, "attempts": attempts}
result["has_gpt_4o_price"] = "gpt-4o" in litellm.model_cost
print(json.dumps(result))
"""


def test_tokens_and_litellm_import_without_a_network(tmp_path: Path) -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("LITELLM_", "TIKTOKEN_", "CUSTOM_TIKTOKEN_"))
        and key.lower() not in ("no_proxy", "all_proxy", "http_proxy", "https_proxy")
    }
    closed = "http://127.0.0.1:9"
    env |= {"HTTPS_PROXY": closed, "HTTP_PROXY": closed, "https_proxy": closed, "http_proxy": closed}
    # tiktoken's fallback cache lives in the temp folder: an empty one cannot hide a missing bundled file.
    env["TMPDIR"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", _CHILD], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    # The price map is litellm's bundled copy: the fetch it would make at import was never tried.
    assert result == {"tokens": 2, "litellm_loaded_by_tokens": False, "attempts": [], "has_gpt_4o_price": True}
