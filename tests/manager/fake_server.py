"""A stand-in for vLLM / SGLang: a real process with a real HTTP server on loopback, no GPU.

Run as a script (standard library only, plus torch for ``--cuda-mb``)::

    python fake_server.py --port 8000 [--hold-mb 60] [--start-delay 1] [--fail-after 0.2]
        [--crash-after 0.5] [--ignore-sigterm] [--spawn-child] [--listen-early]
        [--print-env HF_TOKEN] ...

It prints its progress like a real server (``Loading weights: 50%``), answers ``GET /health``
with 200 once ready (503 before, with ``--listen-early``) and ``GET /v1/models``, and holds real
host memory, so the manager's accounting measures something. Its child, like a real server's
workers, asks to die with its parent (Linux).
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
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

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


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/health":
            self._reply(200 if State.ready else 503, b"")
        elif self.path == "/v1/models":
            body = {"object": "list", "data": [{"id": State.model, "object": "model"}]}
            self._reply(200, json.dumps(body).encode())
        else:
            self._reply(404, b"")

    def _reply(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


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
    p.add_argument(
        "--print-env", action="append", default=[], metavar="NAME",
        help="print NAME=value of this environment variable, as vLLM prints its settings",
    )  # fmt: skip
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse(argv)
    State.model = args.model
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
    held: list[object] = [hold(args.hold_mb)]
    if args.cuda_mb:
        held.append(hold_cuda(args.cuda_mb))
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
