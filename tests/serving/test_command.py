"""`vramdeck serve` in a subprocess: it answers, then SIGTERM ends it with exit 0, no child left,
and no Qt imported."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import openai
import psutil

FAKE = str(Path(__file__).with_name("fake_openai.py"))
REPO = Path(__file__).resolve().parents[2]


def start(config: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    # A probe that reports whether Qt got imported, printed at exit.
    code = (
        "import atexit, sys; "
        "atexit.register(lambda: print('QT_LOADED=' + str(any(m.startswith(('PySide6', 'qasync')) "
        "for m in sys.modules)), flush=True)); "
        "from vramdeck.cli import main; sys.exit(main())"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code, "serve", str(config), "--port", "0", *args],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, **(env or {})},
    )  # fmt: skip


def test_serve_answers_then_stops_cleanly_on_sigterm(write_config, chat_models):
    server = [sys.executable, FAKE, "--port", "{port}", "--host", "{host}"]
    config = write_config(
        f"""
        models:
          chat:
            options:
              templated: {{model_id: "{chat_models["templated"]}", vram_gb: 0.001}}
          served:
            options:
              vllm: {{model_id: served-model, framework: vllm, device: cpu, vram_gb: 0.01,
                      server_command: {server!r}, startup_timeout_s: 20, stop_timeout_s: 2}}
        """
    )
    process = start(config)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("vramdeck serve: listening on http://127.0.0.1:"), line
        url = line.split()[4]
        client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0)
        reply = client.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "Hi"}], max_tokens=3
        )
        assert reply.choices[0].message.role == "assistant"
        proxied = client.chat.completions.create(
            model="served", messages=[{"role": "user", "content": "Hi"}]
        )
        assert proxied.choices[0].message.content == "model=served-model auth=none"
        children = psutil.Process(process.pid).children(recursive=True)
        assert children, "the managed server should be running"
        states = {
            m.id: (m.model_extra or {})["vramdeck"]["state"] for m in client.models.list().data
        }
        assert states == {"chat": "loaded", "served": "loaded"}
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    assert "stopping" in out and "QT_LOADED=False" in out
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]


def test_serve_refuses_a_non_loopback_host_without_the_token(write_config, chat_models):
    config = write_config(
        f"""
        models:
          chat: {{options: {{t: {{model_id: "{chat_models["templated"]}"}}}}}}
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "VRAMDECK_API_KEY"}
    process = subprocess.run(
        [sys.executable, "-m", "vramdeck", "serve", str(config), "--host", "0.0.0.0"],
        cwd=REPO, capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert process.returncode == 2
    assert "needs a token: set VRAMDECK_API_KEY" in process.stderr


def test_serve_with_a_bad_config_names_it_and_exits_2(write_config):
    config = write_config("models: {t: {options: {a: {model_id: x, vram_gb: lots}}}}\n")
    process = subprocess.run(
        [sys.executable, "-m", "vramdeck", "serve", str(config)],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert process.returncode == 2
    assert "models.t.options.a.vram_gb: expected a number" in process.stderr
    assert "Traceback" not in process.stderr
