"""A scripted OpenAI-compatible Chat Completions server for tests (real HTTP on 127.0.0.1).

A script is a list of steps, consumed one per POST /v1/chat/completions:

    server = ScriptedLLM([
        tool_call("read_kernel", {}),
        http_error(500),                       # one failure, the client retries
        tool_call("edit_kernel", {"old": "a", "new": "b"}, usage=(900, 40)),
        tool_call("submit", {"hypothesis": "..."}, check=lambda req: ...),
    ])
    with server:
        url = server.base_url            # "http://127.0.0.1:PORT/v1"

A step's `respond` may also be a callable `(request_json) -> dict` (a reply built
from the conversation so far). `check` callables run on the request body; an
assertion they raise is kept in `server.errors` (and re-raised by
`assert_clean()`), and the server answers 400 so the client side fails loudly too.
Every request is kept in `server.requests` (body and headers) for later checks.
When the script runs out the server answers 500 with "script exhausted".
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

Check = Callable[[dict[str, Any]], None]


@dataclass
class Step:
    respond: dict[str, Any] | Callable[[dict[str, Any]], dict[str, Any]] | None = None
    status: int = 200
    delay_s: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    check: Check | None = None


def _completion(message: dict[str, Any], usage: tuple[int, int] | None,
                finish: str, model: str = "scripted") -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": f"chatcmpl-{time.monotonic_ns()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
    }
    if usage is not None:
        body["usage"] = {"prompt_tokens": usage[0], "completion_tokens": usage[1],
                         "total_tokens": usage[0] + usage[1]}
    return body


_call_counter = iter(range(1, 1_000_000))


def tool_calls_message(calls: list[tuple[str, dict[str, Any] | str]], content: str | None = None,
                       usage: tuple[int, int] | None = (1000, 50)) -> dict[str, Any]:
    """A completion whose message carries tool calls; str arguments are sent verbatim."""
    tcs = []
    for name, args in calls:
        raw = args if isinstance(args, str) else json.dumps(args)
        tcs.append({"id": f"call_{next(_call_counter)}", "type": "function",
                    "function": {"name": name, "arguments": raw}})
    msg = {"role": "assistant", "content": content, "tool_calls": tcs}
    return _completion(msg, usage, "tool_calls")


def tool_call(name: str, args: dict[str, Any] | str, *, content: str | None = None,
              usage: tuple[int, int] | None = (1000, 50), check: Check | None = None) -> Step:
    return Step(respond=tool_calls_message([(name, args)], content, usage), check=check)


def multi_call(calls: list[tuple[str, dict[str, Any] | str]], *, usage=(1000, 50),
               check: Check | None = None) -> Step:
    return Step(respond=tool_calls_message(calls, None, usage), check=check)


def text(content: str, *, usage: tuple[int, int] | None = (800, 30),
         check: Check | None = None) -> Step:
    return Step(respond=_completion({"role": "assistant", "content": content}, usage, "stop"),
                check=check)


def dynamic(fn: Callable[[dict[str, Any]], dict[str, Any]], check: Check | None = None) -> Step:
    """A reply computed from the request (use tool_calls_message inside fn)."""
    return Step(respond=fn, check=check)


def http_error(status: int, *, retry_after: float | None = None) -> Step:
    headers = {"retry-after": str(retry_after)} if retry_after is not None else {}
    return Step(respond={"error": {"message": f"scripted {status}", "type": "server_error",
                                   "code": None}}, status=status, headers=headers)


def slow(step: Step, delay_s: float) -> Step:
    step.delay_s = delay_s
    return step


def last_tool_result(req: dict[str, Any]) -> str:
    """The content of the newest `tool` message of a request (for checks)."""
    for m in reversed(req.get("messages", [])):
        if m.get("role") == "tool":
            return str(m.get("content", ""))
    return ""


def has(*fragments: str) -> Check:
    """A check: the newest tool result the model was shown contains every fragment."""
    def check(req: dict[str, Any]) -> None:
        out = last_tool_result(req)
        for f in fragments:
            assert f in out, f"{f!r} not in {out[:800]!r}"
    return check


class ScriptedLLM:
    def __init__(self, steps: list[Step] | None = None, *, loop_last: bool = False):
        self.steps: list[Step] = list(steps or [])
        self.loop_last = loop_last
        self.requests: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- script management -------------------------------------------------
    def _next(self) -> Step | None:
        with self._lock:
            if not self.steps:
                return None
            if self.loop_last and len(self.steps) == 1:
                return self.steps[0]
            return self.steps.pop(0)

    @property
    def remaining(self) -> int:
        return len(self.steps)

    # ---- lifecycle ----------------------------------------------------------
    @property
    def base_url(self) -> str:
        assert self._httpd is not None, "server not started"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def start(self) -> "ScriptedLLM":
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:  # keep test output quiet
                return None

            def _send(self, status: int, body: dict[str, Any], headers: dict[str, str]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(n)
                try:
                    req = json.loads(raw)
                except json.JSONDecodeError:
                    owner.errors.append("request body is not JSON")
                    self._send(400, {"error": {"message": "bad json"}}, {})
                    return
                with owner._lock:
                    owner.requests.append({"path": self.path, "body": req,
                                           "headers": {k.lower(): v for k, v in self.headers.items()}})
                if not self.path.endswith("/chat/completions"):
                    self._send(404, {"error": {"message": f"no route {self.path}"}}, {})
                    return
                step = owner._next()
                if step is None:
                    self._send(500, {"error": {"message": "script exhausted"}}, {})
                    return
                if step.check is not None:
                    try:
                        step.check(req)
                    except AssertionError as e:  # surfaced by assert_clean()
                        owner.errors.append(f"check failed on request {len(owner.requests)}: {e}")
                        self._send(400, {"error": {"message": f"check failed: {e}"}}, {})
                        return
                if step.delay_s:
                    time.sleep(step.delay_s)
                body = step.respond(req) if callable(step.respond) else step.respond
                try:
                    self._send(step.status, body or {}, step.headers)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and went away

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> "ScriptedLLM":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def assert_clean(self) -> None:
        assert not self.errors, "; ".join(self.errors)

    def chat_requests(self) -> list[dict[str, Any]]:
        return [r["body"] for r in self.requests if r["path"].endswith("/chat/completions")]
