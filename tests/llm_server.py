"""A scripted OpenAI-compatible server for tests (real HTTP on 127.0.0.1): Chat Completions
and the Responses API, each plain or streamed (SSE), as the request asks.

A script is a list of steps, consumed one per POST to /v1/chat/completions or /v1/responses
(whichever the client calls). A step is written once, as a chat completion; a Responses
request gets the same answer as Responses output items (`function_call` / `message`, and a
`reasoning` item with `encrypted_content` when the request includes it), a streamed request
gets it as SSE chunks/events (chat: usage only with `stream_options.include_usage`;
`stream_failed` ends a streamed Responses answer with `response.failed`):

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
Every request is kept in `server.requests` (path, body, headers; Responses requests also
`input_full`: the input with the `previous_response_id` chain resolved) for later checks.
When the script runs out the server answers 500 with "script exhausted".

Responses state: a response made without `store: false` is kept by id, and a later
request's `previous_response_id` continues it (an unknown id is a 400, as on OpenAI).
`streamed(step, seconds)` spreads a streamed answer over that many seconds; `GET
/v1/models` answers `models` (e.g. vLLM's `max_model_len`).
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
    stream_s: float = 0.0  # a streamed answer is spread over this many seconds
    cut_after: int | None = None  # a streamed answer breaks off after this many events
    fail: tuple[str, str] | None = None  # a streamed Responses answer ends response.failed


def _completion(message: dict[str, Any], usage: tuple[int, ...] | None,
                finish: str, model: str = "scripted") -> dict[str, Any]:
    """A chat completion; usage is (prompt, completion) or (prompt, completion, cached)."""
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
        if len(usage) > 2:
            body["usage"]["prompt_tokens_details"] = {"cached_tokens": usage[2]}
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


def http_error(status: int, *, retry_after: float | None = None, message: str | None = None,
               vllm: bool = False, code: str | None = None) -> Step:
    """An error answer: OpenAI's body `{"error": {"message"}}`, or vLLM's
    `{"object": "error", "message"}` with `vllm=True`."""
    headers = {"retry-after": str(retry_after)} if retry_after is not None else {}
    message = message or f"scripted {status}"
    if vllm:
        body = {"object": "error", "message": message, "type": "BadRequestError",
                "param": None, "code": status}
    else:
        body = {"error": {"message": message, "type": "server_error" if status >= 500
                          else "invalid_request_error", "code": code}}
    return Step(respond=body, status=status, headers=headers)


def slow(step: Step, delay_s: float) -> Step:
    step.delay_s = delay_s
    return step


def streamed(step: Step, seconds: float) -> Step:
    """A step whose streamed answer takes `seconds` from first to last byte."""
    step.stream_s = seconds
    return step


def cut(step: Step, after: int) -> Step:
    """A step whose streamed answer breaks off after `after` events (a lost stream)."""
    step.cut_after = after
    return step


def stream_failed(step: Step, code: str, message: str = "scripted failure") -> Step:
    """A step whose streamed Responses answer ends with `response.failed` (error `code`)
    instead of `response.completed`, as OpenAI's stream reports a failure mid-answer."""
    step.fail = (code, message)
    return step


def last_tool_result(req: dict[str, Any]) -> str:
    """The content of the newest tool result of a request, Chat Completions (`tool`
    message) or Responses (`function_call_output` item) (for checks)."""
    for m in reversed(req.get("messages") or []):
        if m.get("role") == "tool":
            return str(m.get("content", ""))
    items = req.get("input")
    for it in reversed(items if isinstance(items, list) else []):
        if isinstance(it, dict) and it.get("type") == "function_call_output":
            return str(it.get("output", ""))
    return ""


# ---- the same answer as a Responses object, and as SSE ----------------------------------

def to_response(body: dict[str, Any], req: dict[str, Any], rid: str) -> dict[str, Any]:
    """A chat completion body as a Responses API `response` object."""
    msg = body["choices"][0]["message"]
    output: list[dict[str, Any]] = []
    if "reasoning.encrypted_content" in (req.get("include") or []):
        output.append({"type": "reasoning", "id": f"rs_{rid}", "summary": [],
                       "encrypted_content": f"enc-{rid}"})
    if msg.get("content"):
        output.append({"type": "message", "id": f"msg_{rid}", "role": "assistant",
                       "status": "completed",
                       "content": [{"type": "output_text", "text": msg["content"],
                                    "annotations": []}]})
    for tc in msg.get("tool_calls") or []:
        output.append({"type": "function_call", "id": f"fc_{tc['id']}", "call_id": tc["id"],
                       "name": tc["function"]["name"],
                       "arguments": tc["function"]["arguments"], "status": "completed"})
    out: dict[str, Any] = {"id": rid, "object": "response", "created_at": int(time.time()),
                           "model": body.get("model", "scripted"), "status": "completed",
                           "output": output, "parallel_tool_calls": True, "tools": [],
                           "tool_choice": "auto"}
    u = body.get("usage")
    if u:
        out["usage"] = {
            "input_tokens": u["prompt_tokens"], "output_tokens": u["completion_tokens"],
            "total_tokens": u["total_tokens"],
            "input_tokens_details": {"cached_tokens": (u.get("prompt_tokens_details") or {})
                                     .get("cached_tokens", 0)},
            "output_tokens_details": {"reasoning_tokens": 0}}
    return out


def _pieces(text: str, n: int = 3) -> list[str]:
    size = max(1, -(-len(text) // n))
    return [text[i:i + size] for i in range(0, len(text), size)] or [""]


def chat_chunks(body: dict[str, Any], include_usage: bool) -> list[dict[str, Any]]:
    """A chat completion as the chunks of a streamed one."""
    msg, base = body["choices"][0]["message"], {k: body[k] for k in ("id", "created", "model")}
    base["object"] = "chat.completion.chunk"

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    out = [chunk({"role": "assistant", "content": ""})]
    if msg.get("content"):
        out += [chunk({"content": p}) for p in _pieces(msg["content"])]
    for i, tc in enumerate(msg.get("tool_calls") or []):
        out.append(chunk({"tool_calls": [{"index": i, "id": tc["id"], "type": "function",
                                          "function": {"name": tc["function"]["name"],
                                                       "arguments": ""}}]}))
        out += [chunk({"tool_calls": [{"index": i, "function": {"arguments": p}}]})
                for p in _pieces(tc["function"]["arguments"])]
    out.append(chunk({}, body["choices"][0]["finish_reason"]))
    if include_usage and body.get("usage"):
        out.append({**base, "choices": [], "usage": body["usage"]})
    return out


def response_events(resp: dict[str, Any]) -> list[dict[str, Any]]:
    """A Responses object as the typed events of a streamed one."""
    started = {**resp, "status": "in_progress", "output": []}
    started.pop("usage", None)
    ev: list[dict[str, Any]] = [{"type": "response.created", "response": started}]
    for i, item in enumerate(resp["output"]):
        common = {"output_index": i, "item_id": item.get("id")}
        if item["type"] == "function_call":
            ev.append({"type": "response.output_item.added", "output_index": i,
                       "item": {**item, "arguments": "", "status": "in_progress"}})
            ev += [{"type": "response.function_call_arguments.delta", **common, "delta": p}
                   for p in _pieces(item["arguments"])]
            ev.append({"type": "response.function_call_arguments.done", **common,
                       "arguments": item["arguments"], "name": item["name"]})
        elif item["type"] == "message":
            ev.append({"type": "response.output_item.added", "output_index": i,
                       "item": {**item, "content": [], "status": "in_progress"}})
            ev += [{"type": "response.output_text.delta", **common, "content_index": 0,
                    "delta": p, "logprobs": []} for p in _pieces(item["content"][0]["text"])]
        else:
            ev.append({"type": "response.output_item.added", "output_index": i, "item": item})
        ev.append({"type": "response.output_item.done", "output_index": i, "item": item})
    ev.append({"type": "response.completed", "response": resp})
    for n, e in enumerate(ev):
        e["sequence_number"] = n
    return ev


def has(*fragments: str) -> Check:
    """A check: the newest tool result the model was shown contains every fragment."""
    def check(req: dict[str, Any]) -> None:
        out = last_tool_result(req)
        for f in fragments:
            assert f in out, f"{f!r} not in {out[:800]!r}"
    return check


class ScriptedLLM:
    def __init__(self, steps: list[Step] | None = None, *, loop_last: bool = False,
                 models: list[dict[str, Any]] | None = None):
        self.steps: list[Step] = list(steps or [])
        self.loop_last = loop_last
        self.models = models if models is not None else [{"id": "scripted", "object": "model"}]
        self.stored: dict[str, list[dict[str, Any]]] = {}  # response id -> input + output
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

            def _sse(self, events: list[tuple[str | None, dict[str, Any] | str]],
                     spread_s: float, cut: int | None = None) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Connection", "close")
                self.end_headers()
                gap = spread_s / max(1, len(events) - 1)
                for i, (name, data) in enumerate(events[:cut]):
                    if i and gap:
                        time.sleep(gap)
                    text = data if isinstance(data, str) else json.dumps(data)
                    head = f"event: {name}\n" if name else ""
                    self.wfile.write(f"{head}data: {text}\n\n".encode())
                    self.wfile.flush()
                self.close_connection = True

            def do_GET(self) -> None:
                if self.path.rstrip("/").endswith("/models"):
                    self._send(200, {"object": "list", "data": owner.models}, {})
                else:
                    self._send(404, {"error": {"message": f"no route {self.path}"}}, {})

            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(n)
                try:
                    req = json.loads(raw)
                except json.JSONDecodeError:
                    owner.errors.append("request body is not JSON")
                    self._send(400, {"error": {"message": "bad json"}}, {})
                    return
                record = {"path": self.path, "body": req,
                          "headers": {k.lower(): v for k, v in self.headers.items()}}
                with owner._lock:
                    owner.requests.append(record)
                responses = self.path.endswith("/responses")
                if not (responses or self.path.endswith("/chat/completions")):
                    self._send(404, {"error": {"message": f"no route {self.path}"}}, {})
                    return
                if responses:
                    prev = req.get("previous_response_id")
                    items = req.get("input")
                    items = ([{"role": "user", "content": items}] if isinstance(items, str)
                             else list(items or []))
                    if prev is not None and prev not in owner.stored:
                        self._send(400, {"error": {
                            "message": f"Previous response with id '{prev}' not found.",
                            "type": "invalid_request_error", "param": "previous_response_id",
                            "code": "previous_response_not_found"}}, {})
                        return
                    record["input_full"] = (owner.stored[prev] if prev else []) + items
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
                    if step.status != 200 or not body or "choices" not in body:
                        self._send(step.status, body or {}, step.headers)
                    elif responses:
                        rid = f"resp_{next(_call_counter)}"
                        resp = to_response(body, req, rid)
                        if req.get("store", True):
                            owner.stored[rid] = record["input_full"] + resp["output"]
                        if req.get("stream"):
                            events = response_events(resp)
                            if step.fail is not None:
                                code, message = step.fail
                                events[-1] = {**events[-1], "type": "response.failed",
                                              "response": {**resp, "status": "failed",
                                                           "error": {"code": code,
                                                                     "message": message}}}
                            self._sse([(e["type"], e) for e in events],
                                      step.stream_s, step.cut_after)
                        else:
                            self._send(200, resp, step.headers)
                    elif req.get("stream"):
                        usage = bool((req.get("stream_options") or {}).get("include_usage"))
                        events: list = [(None, c) for c in chat_chunks(body, usage)]
                        self._sse(events + [(None, "[DONE]")], step.stream_s, step.cut_after)
                    else:
                        self._send(200, body, step.headers)
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

    def responses_requests(self) -> list[dict[str, Any]]:
        return [r["body"] for r in self.requests if r["path"].endswith("/responses")]
