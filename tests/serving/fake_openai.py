"""A stand-in for an OpenAI-compatible server (vLLM, SGLang, or an external API): a real process
with a real HTTP server on loopback, standard library only.

    python fake_openai.py --port 0 [--host 127.0.0.1] [--require-key KEY]

It prints ``listening on PORT`` once it answers. ``POST /v1/chat/completions`` (and
``/v1/completions``) answer ``model=<the model it was sent> auth=<ok|none|wrong>`` (never the key
itself); a stream sends its first chunk, then waits for ``GET /release`` before the rest, so a
test can see that chunks are passed on as they come. ``GET /health`` is 200.
"""

from __future__ import annotations

import argparse
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

RELEASE = threading.Event()


def make_handler(required_key: str | None) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def _json(self, status: int, data: dict) -> None:
            body = json.dumps(data).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path == "/release":
                RELEASE.set()
                self._json(200, {"released": True})
            elif self.path in ("/health", "/v1/models"):
                self._json(200, {"object": "list", "data": []})
            else:
                self._json(404, {"error": {"message": "no such route"}})

        def _auth(self) -> str:
            got = self.headers.get("Authorization")
            if got is None:
                return "none"
            return "ok" if required_key and got == f"Bearer {required_key}" else "wrong"

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            auth = self._auth()
            if required_key and auth != "ok":
                self._json(401, {"error": {"message": f"auth={auth}", "type": "auth"}})
                return
            text = f"model={body.get('model')} auth={auth}"
            if self.path == "/v1/embeddings":
                data = [{"object": "embedding", "index": 0, "embedding": [1.0, 0.0]}]
                self._json(200, {"object": "list", "data": data, "model": body.get("model"),
                                 "usage": {"prompt_tokens": 1, "total_tokens": 1}})  # fmt: skip
            elif body.get("stream"):
                self._stream(body, text)
            else:
                message = {"role": "assistant", "content": text}
                self._json(200, {"id": "x", "object": "chat.completion", "created": 0,
                                 "model": body.get("model"),
                                 "choices": [{"index": 0, "message": message,
                                              "finish_reason": "stop"}]})  # fmt: skip

        def _stream(self, body: dict, text: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            for i, piece in enumerate([text, " second", " third"]):
                if i == 1:
                    RELEASE.wait(10)
                chunk = {"id": "x", "object": "chat.completion.chunk", "created": 0,
                         "model": body.get("model"),
                         "choices": [{"index": 0, "delta": {"content": piece},
                                      "finish_reason": None}]}  # fmt: skip
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.flush()
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--require-key")
    args = parser.parse_args()
    server = ThreadingHTTPServer((args.host, args.port), make_handler(args.require_key))
    print(f"listening on {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
