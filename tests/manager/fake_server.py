"""A stand-in for vLLM / SGLang: a real process with a real HTTP server on loopback, no GPU.

Run as a script (standard library only, plus torch for ``--cuda-mb``)::

    python fake_server.py --port 8000 [--hold-mb 60] [--start-delay 1] [--fail-after 0.2]
        [--crash-after 0.5] [--ignore-sigterm] [--spawn-child] [--listen-early]
        [--print-env HF_TOKEN] [--enable-sleep-mode] [--enable-memory-saver]
        [--sleep-keeps-memory] ...

It prints its progress like a real server (``Loading weights: 50%``), answers ``GET /health``
with 200 once ready (503 before, with ``--listen-early``) and ``GET /v1/models``, and holds real
host memory, so the manager's accounting measures something. Its child, like a real server's
workers, asks to die with its parent (Linux).

Sleep, as vLLM and SGLang do it: with ``--enable-sleep-mode`` and ``VLLM_SERVER_DEV_MODE=1``,
vLLM's ``POST /sleep?level=N``, ``POST /wake_up[?tags=…]``, ``GET /is_sleeping``,
``POST /collective_rpc`` and ``POST /reset_prefix_cache`` (404 without them, as in vLLM); with
``--enable-memory-saver``, SGLang's ``POST /release_memory_occupation``,
``/resume_memory_occupation`` and ``/update_weights_from_disk`` (400 without it). A sleep frees
the memory the fake holds (``--hold-mb``, ``--cuda-mb``) and a wake takes it again, so RSS and
the GPU show it; ``--sleep-keeps-memory`` answers the sleep but keeps it all, ``--wake-fails``
answers ``/wake_up`` with 500. Every sleep and
wake call is printed (``sleep: level 1``), so a test can read their order in the output.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

CHILD = r"""
import ctypes, os, signal, sys, time
if sys.platform.startswith("linux") and sys.argv[3] == "die-with-parent":
    ctypes.CDLL(None).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG: die with the server
    if os.getppid() != int(sys.argv[2]):
        sys.exit(1)
n = int(float(sys.argv[1]) * 2**20)
buf = bytearray(n)
buf[::4096] = b"\x01" * len(range(0, n, 4096))
try:
    print(f"worker pid {os.getpid()} holds {sys.argv[1]} MB", flush=True)
except OSError:  # the output's reader is gone (a killed manager): work on, as workers do
    pass
while True:
    time.sleep(3600)
"""


def say(line: str) -> None:
    print(line, flush=True)


def hold(mb: float) -> bytearray:
    """`mb` MiB of host memory, every page touched, so it counts in RSS."""
    n = int(mb * 2**20)
    buf = bytearray(n)
    if n:
        buf[::4096] = b"\x01" * len(range(0, n, 4096))
    return buf


def hold_cuda(mb: float) -> object:
    import torch

    t = torch.empty(int(mb * 2**20), dtype=torch.uint8, device="cuda")
    t.fill_(1)
    torch.cuda.synchronize()
    return t


class State:
    ready = False
    stopping = False
    model = "fake-model"
    args: argparse.Namespace
    held: ClassVar[list[object]] = []  # what sleeps: the "weights and KV cache"
    asleep = False
    memory_lock = threading.Lock()


def take_memory() -> None:
    State.held = [hold(State.args.hold_mb)]
    if State.args.cuda_mb:
        State.held.append(hold_cuda(State.args.cuda_mb))


def release_memory() -> None:
    if not State.args.sleep_keeps_memory:
        State.held = []
        if State.args.cuda_mb:
            import torch

            torch.cuda.empty_cache()


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        path, _, _ = self.path.partition("?")
        if path == "/health":
            self._reply(200 if State.ready else 503, b"")
        elif path == "/v1/models":
            body = {"object": "list", "data": [{"id": State.model, "object": "model"}]}
            self._reply(200, json.dumps(body).encode())
        elif path == "/is_sleeping" and vllm_sleep_mode():
            self._json(200, {"is_sleeping": State.asleep})
        else:
            self._reply(404, b"")

    def do_POST(self) -> None:
        path, _, query = self.path.partition("?")
        params = urllib.parse.parse_qs(query)
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"null") if length else None
        if path in VLLM_ROUTES:
            if not vllm_sleep_mode():
                return self._reply(404, b"")
            self._vllm(path, params, body)
        elif path in SGLANG_ROUTES:
            if not State.args.enable_memory_saver:
                return self._json(400, {"success": False, "message": "memory saver is off"})
            self._sglang(path)
        else:
            self._reply(404, b"")

    def _vllm(self, path: str, params: dict[str, list[str]], body: object) -> None:
        with State.memory_lock:
            if path == "/sleep":
                say(f"sleep: level {params.get('level', ['1'])[0]}")
                release_memory()
                State.asleep = True
            elif path == "/wake_up" and State.args.wake_fails:
                say("wake_up: failed")
                return self._json(500, {"error": "simulated wake failure: CUDA out of memory"})
            elif path == "/wake_up":
                tags = params.get("tags", [])
                say("wake_up" + (f": {','.join(tags)}" if tags else ""))
                if not tags or "weights" in tags:
                    take_memory()
                if not tags or "kv_cache" in tags:
                    State.asleep = False
            elif path == "/collective_rpc":
                say(f"collective_rpc: {body.get('method') if isinstance(body, dict) else None}")
            else:
                say(path.lstrip("/"))
        self._reply(200, b"")

    def _sglang(self, path: str) -> None:
        with State.memory_lock:
            say(path.lstrip("/"))
            if path == "/release_memory_occupation":
                release_memory()
                State.asleep = True
            elif path == "/resume_memory_occupation":
                take_memory()
                State.asleep = False
        self._json(200, {"success": True})

    def _json(self, status: int, body: object) -> None:
        self._reply(status, json.dumps(body).encode())

    def _reply(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


VLLM_ROUTES = frozenset({"/sleep", "/wake_up", "/collective_rpc", "/reset_prefix_cache"})
SGLANG_ROUTES = frozenset(
    {"/release_memory_occupation", "/resume_memory_occupation", "/update_weights_from_disk"}
)


def vllm_sleep_mode() -> bool:
    """vLLM's sleep routes exist with --enable-sleep-mode and VLLM_SERVER_DEV_MODE=1 only."""
    return State.args.enable_sleep_mode and os.environ.get("VLLM_SERVER_DEV_MODE") == "1"


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--model", default="fake-model")
    p.add_argument("--hold-mb", type=float, default=0, help="host memory to hold")
    p.add_argument("--cuda-mb", type=float, default=0, help="GPU memory to hold (needs torch)")
    p.add_argument("--start-delay", type=float, default=0, help="seconds of 'loading' first")
    p.add_argument("--listen-early", action="store_true", help="answer 503 while loading")
    p.add_argument("--fail-after", type=float, help="exit before ready after this many seconds")
    p.add_argument("--crash-after", type=float, help="exit this long after becoming ready")
    p.add_argument("--exit-code", type=int, default=3)
    p.add_argument("--ignore-sigterm", action="store_true")
    p.add_argument("--stop-delay", type=float, default=0, help="seconds to shut down")
    p.add_argument("--spawn-child", action="store_true", help="start a worker process")
    p.add_argument("--child-mb", type=float, default=5)
    p.add_argument(
        "--child",
        choices=("die-with-parent", "orphan"),
        default="die-with-parent",
        help="whether the worker asks to die with the server (Linux), as vLLM's workers do",
    )
    p.add_argument("--grow-mb", type=float, default=0, help="hold this much more …")
    p.add_argument("--grow-after", type=float, default=0.5, help="… this long after ready")
    p.add_argument("--term-file", help="write 'terminated' here on a graceful stop")
    p.add_argument("--enable-sleep-mode", action="store_true", help="vLLM's sleep routes")
    p.add_argument("--enable-memory-saver", action="store_true", help="SGLang's sleep routes")
    p.add_argument("--enable-weights-cpu-backup", action="store_true", help="accepted")
    p.add_argument(
        "--tensor-parallel-size", "--tp", type=int, default=1, help="accepted, as vLLM's"
    )
    p.add_argument(
        "--sleep-keeps-memory", action="store_true", help="say it sleeps but keep the memory"
    )
    p.add_argument("--wake-fails", action="store_true", help="answer vLLM's /wake_up with 500")
    p.add_argument(
        "--print-env", action="append", default=[], metavar="NAME",
        help="print NAME=value of this environment variable, as vLLM prints its settings",
    )  # fmt: skip
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse(argv)
    State.model = args.model
    State.args = args
    # The handler takes no lock (a handler that sets a threading.Event can deadlock the main
    # thread inside Event.wait); the wake-up fd ends the main thread's select.
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    if args.ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGTERM, on_sigterm)
    say(f"fake server pid {os.getpid()} starting for {args.model} on port {args.port}")
    for name in args.print_env:
        say(f"environment: {name}={os.environ.get(name, '')}")
    take_memory()
    held: list[object] = []  # what --grow-mb adds (it does not sleep)
    child = None
    if args.spawn_child:
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(args.child_mb), str(os.getpid()), args.child]
        )
        say(f"child pid {child.pid}")
    server = None
    if args.listen_early:
        server = serve(args)
    step = args.start_delay / 4
    for i in range(4):
        if args.fail_after is not None and args.fail_after <= step * i:
            return fail(args)
        if step:
            say(f"Loading weights: {i * 25}% ({i}/4)")
            time.sleep(step)
    if args.fail_after is not None:
        time.sleep(max(0.0, args.fail_after - args.start_delay))
        return fail(args)
    if server is None:
        server = serve(args)
    State.ready = True
    say(f"Application startup complete. Ready on http://{args.host}:{args.port}")
    timers = []
    if args.crash_after is not None:
        timers.append(threading.Timer(args.crash_after, crash, (args.exit_code,)))
    if args.grow_mb:
        timers.append(threading.Timer(args.grow_after, lambda: held.append(grow(args.grow_mb))))
    for timer in timers:
        timer.daemon = True
        timer.start()
    while not State.stopping:
        select.select([wake_r], [], [], 3600)
        os.read(wake_r, 512)
    say("SIGTERM: shutting down")
    time.sleep(args.stop_delay)
    server.shutdown()
    if child is not None:
        with contextlib.suppress(ProcessLookupError):
            child.terminate()
        child.wait(5)
    if args.term_file:
        with open(args.term_file, "w") as f:
            f.write("terminated\n")
    say("stopped")
    return 0


def on_sigterm(signum: int, frame: object) -> None:
    if not State.ready:  # still loading: give up at once, as real servers do
        say("SIGTERM while loading: exiting")
        raise SystemExit(0)
    State.stopping = True


def serve(args: argparse.Namespace) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True).start()
    return server


def grow(mb: float) -> bytearray:
    buf = hold(mb)
    say(f"now holding {mb:g} MB more")
    return buf


def fail(args: argparse.Namespace) -> int:
    say("Traceback (most recent call last):")
    say("RuntimeError: simulated start failure: CUDA out of memory")
    return args.exit_code


def crash(code: int) -> None:
    say(f"fatal: simulated crash, exiting with {code}")
    sys.stdout.flush()
    os._exit(code)


# ----------------------------------------------------------------- for the tests that drive it

FAKE_SERVER = os.path.abspath(__file__)


def fake_command(*flags: str) -> list[str]:
    """A ``server_command`` that runs this fake with `flags` on the manager's host and port."""
    return [sys.executable, FAKE_SERVER, "--host", "{host}", "--port", "{port}", *flags]


def gone(pid: int) -> bool:
    """Whether `pid` has exited (a zombie that nobody reaped yet counts as gone)."""
    import psutil

    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_gone(pids: list[int], timeout_s: float = 5.0) -> list[int]:
    """Wait until every pid is gone; returns those still running after `timeout_s`."""
    end = time.monotonic() + timeout_s
    while True:
        left = [pid for pid in pids if not gone(pid)]
        if not left or time.monotonic() > end:
            return left
        time.sleep(0.02)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main(sys.argv[1:]))
