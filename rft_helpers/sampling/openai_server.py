"""A small OpenAI-compatible chat endpoint over any sampling engine, for tests, benchmarks and trying the openai
engine without a GPU: `POST /v1/chat/completions` (messages, n, temperature, top_p, max_tokens, seed) and
`GET /v1/models`.

For robustness checks it can misbehave on purpose: `fail_rate` answers that share of requests with a 500 or a
429 before doing any work, `fail_after` fails every request after that many (a server that goes down), `fail_status` fixes the status,
and `latency_s` adds a network-like delay outside the model lock; its 429s carry `Retry-After: retry_after_s` when
set. With `reasoning_parser`, a completion's `<think>...</think>` goes into `reasoning_content`, as vLLM's server
does for reasoning models. `stats` counts what it served per prompt, and `arrivals` when each request came.
It is a test fixture, not a production server: use `vllm serve` for that.
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .base import SamplingParams


def prompt_key(messages: list[dict]) -> str:
    return hashlib.sha1(json.dumps(messages, sort_keys=True).encode()).hexdigest()[:16]


class OpenAICompatibleServer:
    def __init__(self, engine, model_name: str = "local", host: str = "127.0.0.1", port: int = 0,
                 fail_rate: float = 0.0, fail_after: int | None = None, latency_s: float = 0.0, seed: int = 0,
                 retry_after_s: float | None = None, reasoning_parser: bool = False, fail_status: int | None = None):
        self.engine, self.model_name = engine, model_name
        self.fail_rate, self.fail_after, self.latency_s = fail_rate, fail_after, latency_s
        self.retry_after_s, self.reasoning_parser, self.fail_status = retry_after_s, reasoning_parser, fail_status
        self.arrivals: list[float] = []  # time.monotonic() of each chat request
        self.served: Counter = Counter()  # prompt key -> successful answers
        self.stats = {"requests": 0, "failed": 0, "succeeded": 0}
        self._rng, self._lock, self._model_lock = random.Random(seed), threading.Lock(), threading.Lock()
        self._httpd = ThreadingHTTPServer((host, port), self._handler())
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> "OpenAICompatibleServer":
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> "OpenAICompatibleServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _should_fail(self) -> int | None:
        with self._lock:
            self.stats["requests"] += 1
            admitted = self.stats["requests"] - self.stats["failed"] - 1
            down = self.fail_after is not None and admitted >= self.fail_after
            if down or self._rng.random() < self.fail_rate:
                self.stats["failed"] += 1
                return self.fail_status or self._rng.choice([500, 429])
        return None

    def complete(self, body: dict) -> dict:
        params = SamplingParams(n=int(body.get("n") or 1), temperature=float(body.get("temperature", 1.0)),
                                top_p=float(body.get("top_p") or 1.0), top_k=int(body.get("top_k") or 0),
                                min_p=float(body.get("min_p") or 0.0), max_new_tokens=int(body.get("max_tokens") or 64),
                                seed=int(body.get("seed") or 0), stop=tuple(body.get("stop") or ()))
        with self._model_lock:  # one generate at a time: engines are not thread-safe
            completions = self.engine.generate([body["messages"]], params)[0]
        with self._lock:
            self.stats["succeeded"] += 1
            self.served[prompt_key(body["messages"])] += 1
        return {
            "id": f"chatcmpl-{self.stats['succeeded']}", "object": "chat.completion", "created": int(time.time()),
            "model": self.model_name,
            "choices": [{"index": i, "message": self._message(c.text), "finish_reason": c.finish_reason}
                        for i, c in enumerate(completions)],
            "usage": {"prompt_tokens": completions[0].prompt_tokens,
                      "completion_tokens": sum(c.completion_tokens for c in completions),
                      "total_tokens": completions[0].prompt_tokens + sum(c.completion_tokens for c in completions)},
        }

    def _message(self, text: str) -> dict:
        if self.reasoning_parser and "</think>" in text:
            thinking, answer = text.split("</think>", 1)
            return {"role": "assistant", "content": answer.lstrip(),
                    "reasoning_content": thinking.replace("<think>", "").strip()}
        return {"role": "assistant", "content": text}

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _send(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                if status == 429 and server.retry_after_s is not None:
                    self.send_header("Retry-After", f"{server.retry_after_s:g}")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up on this request
                    pass

            def do_GET(self):  # noqa: N802 (http.server's naming)
                if self.path.rstrip("/").endswith("/models"):
                    self._send(200, {"object": "list", "data": [{"id": server.model_name, "object": "model"}]})
                else:
                    self._send(404, {"error": {"message": f"no route {self.path}"}})

            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    return self._send(404, {"error": {"message": f"no route {self.path}"}})
                with server._lock:
                    server.arrivals.append(time.monotonic())
                if server.latency_s:
                    time.sleep(server.latency_s)
                status = server._should_fail()
                if status is not None:
                    return self._send(status, {"error": {"message": "injected failure", "type": "server_error"}})
                self._send(200, server.complete(body))

            def log_message(self, *args):  # quiet: tests and benchmarks print their own summary
                pass

        return Handler
