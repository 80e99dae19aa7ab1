"""Starts a real `johi serve` (with the bundled mock provider) for the SDK tests."""

import os
import pathlib
import signal
import socket
import subprocess
import time
import urllib.request

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]

# One model per wire protocol the mock speaks: the tool-calling tests run against each.
TOOL_MODELS = ["gpt-4o-mini", "claude-mock", "bedrock-mock"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def johi_binary() -> str:
    explicit = os.environ.get("JOHI_BIN")
    if explicit:
        return explicit
    for profile in ("debug", "release"):
        candidate = ROOT / "target" / profile / "johi"
        if candidate.exists():
            return str(candidate)
    raise RuntimeError("build johi first: cargo build -p johi (or set JOHI_BIN)")


def generate_key(*args: str) -> tuple[str, str]:
    """Runs `johi keys generate`: the key (stdout, shown once) and its config entry (stderr)."""
    out = subprocess.run(
        [johi_binary(), "keys", "generate", *args], capture_output=True, text=True, check=True
    )
    entry = out.stderr[out.stderr.index("  - id:"):]
    return out.stdout.strip(), entry


@pytest.fixture(scope="session")
def gateway(tmp_path_factory):
    port, mock_port = free_port(), free_port()
    workdir = tmp_path_factory.mktemp("johi")
    config = workdir / "johi.yaml"
    app_key, app_entry = generate_key("--id", "sdk-app", "--owner", "acme/apps/sdk", "--user", "alice")
    chat_key, chat_entry = generate_key(
        "--id", "chat-only", "--owner", "acme/apps", "--allowed-models", "gpt-4o-mini"
    )
    config.write_text(
        f"""
server: {{ listen: "127.0.0.1:{port}", drain_timeout: 5s }}
dev: {{ mock_upstream: "127.0.0.1:{mock_port}" }}
providers:
  mock: {{ base_url: "http://127.0.0.1:{mock_port}/v1", api_key: sk-mock }}
  claude: {{ protocol: anthropic, base_url: "http://127.0.0.1:{mock_port}", api_key: sk-ant-mock }}
  bedrock: {{ protocol: bedrock, base_url: "http://127.0.0.1:{mock_port}", aws: {{ region: us-east-1, access_key_id: AKIAJOHIMOCK00000000, secret_access_key: johi/mock/secret/access/key/0000000000000 }} }}
models:
  gpt-4o-mini: {{ targets: [{{ provider: mock, model: mock-small }}] }}
  text-embedding-3-small: {{ targets: [{{ provider: mock, model: mock-embed }}] }}
  claude-mock: {{ targets: [{{ provider: claude, model: claude-mock }}] }}
  bedrock-mock: {{ targets: [{{ provider: bedrock, model: "anthropic.claude-mock-v1:0" }}] }}
tenants:
  acme: {{ teams: {{ apps: {{ projects: {{ sdk: {{}} }} }} }} }}
auth:
  api_keys:
{app_entry}{chat_entry}
audit: {{ path: audit.jsonl }}
"""
    )
    proc = subprocess.Popen(
        [johi_binary(), "serve", "--config", str(config)],
        env={**os.environ, "JOHI_LOG": "warn"},
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 15
    while True:
        try:
            with urllib.request.urlopen(f"{base}/readyz", timeout=1) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            raise RuntimeError("johi did not become ready")
        time.sleep(0.05)
    yield {
        "base_url": f"{base}/v1",
        "audit": workdir / "audit.jsonl",
        "key": app_key,
        "chat_only_key": chat_key,
    }
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0, "johi exits 0 after draining"
