#!/usr/bin/env python3
"""Drives an MCP server with the official MCP Python SDK client (`mcp` 2.x, pinned in
requirements.txt) and prints ONE JSON line of observations for the Rust e2e tests
(tests/tests/sdk_*.rs), which run it against the backend directly and through the sidecar and
compare the two.

Usage: py_client.py <streamable|sse> <backend> <url> [--mode legacy|auto]
  backend: everything | python | python-json | python-stateless (what the server offers; for the
           sse transport `everything` and `python` name their legacy HTTP+SSE servers)
  --mode:  `legacy` (default) always initializes; `auto` first probes `server/discover` (the
           2026-07-28 revision) and falls back to initialize when the server answers with an error

Output: {"compare": {...}, "volatile": {...}}: `compare` holds every result payload, error code
and HTTP status the client saw and must be identical with and without the sidecar (session ids
are replaced by a marker); `volatile` holds session ids, paths and timings for separate checks.
TLS: the client trusts SSL_CERT_FILE (httpx2 reads it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

import httpx2
import mcp_types as types
from mcp import Client, MCPError
from mcp.client.session import ClientRequestContext
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

STARTED = time.monotonic()


def since() -> int:
    return int((time.monotonic() - STARTED) * 1000)


class Recorder:
    """Every HTTP exchange the SDK makes, through httpx2 event hooks."""

    def __init__(self) -> None:
        self.log: list[dict[str, Any]] = []

    async def on_response(self, response: httpx2.Response) -> None:
        request = response.request
        rpc = None
        if request.method == "POST":
            try:
                body = json.loads(request.content or b"null")
                rpc = body.get("method") or ("response" if "result" in body else "error" if "error" in body else None)
            except (ValueError, AttributeError):
                rpc = "unparsable"
        query = dict(request.url.params)
        self.log.append(
            {
                "method": request.method,
                "rpc": rpc,
                "path": request.url.path,
                "status": response.status_code,
                "content_type": response.headers.get("content-type", "").split(";")[0].strip(),
                "request_session": request.headers.get("mcp-session-id"),
                "request_protocol_version": request.headers.get("mcp-protocol-version"),
                "request_mcp_method": request.headers.get("mcp-method"),
                "last_event_id": request.headers.get("last-event-id"),
                "response_session": response.headers.get("mcp-session-id"),
                "query_session": query.get("sessionId") or query.get("session_id"),
                "at_ms": since(),
            }
        )

    def client(self, **kwargs: Any) -> httpx2.AsyncClient:
        timeout = kwargs.pop("timeout", None) or httpx2.Timeout(30.0, read=300.0)
        return httpx2.AsyncClient(timeout=timeout, event_hooks={"response": [self.on_response]}, **kwargs)


async def outcome(coro: Any) -> dict[str, Any]:
    """A request's outcome in a stable shape: the result, or the JSON-RPC error's code and message."""
    try:
        result = await coro
        return {"result": result.model_dump(mode="json", by_alias=True, exclude_none=True)}
    except MCPError as error:
        return {"error": {"code": error.code, "message": error.message}}


def dump(items: list[Any], key: str) -> list[dict[str, Any]]:
    return sorted(
        (item.model_dump(mode="json", by_alias=True, exclude_none=True) for item in items), key=lambda d: d[key]
    )


async def run(transport_kind: str, backend: str, url: str, mode: str) -> dict[str, Any]:
    everything = backend == "everything"
    stateless = backend == "python-stateless"
    compare: dict[str, Any] = {}
    volatile: dict[str, Any] = {}
    recorder = Recorder()
    roots_asked: list[int] = []

    async def sampling(_ctx: ClientRequestContext, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        first = params.messages[0].content if params.messages else None
        text = first.text if isinstance(first, types.TextContent) else "?"
        return types.CreateMessageResult(
            role="assistant",
            model="e2e-model",
            content=types.TextContent(type="text", text=f"sampled: {text}"),
            stop_reason="endTurn",
        )

    async def elicitation(_ctx: ClientRequestContext, params: types.ElicitRequestParams) -> types.ElicitResult:
        schema = getattr(params, "requested_schema", None) or {}
        props = schema.get("properties", {}) if isinstance(schema, dict) else {}
        content: dict[str, Any] = {}
        if "name" in props:
            content["name"] = "Ada Lovelace"
        if "age" in props:
            content["age"] = 36
        if "check" in props:
            content["check"] = True
        return types.ElicitResult(action="accept", content=content)

    async def roots(_ctx: ClientRequestContext) -> types.ListRootsResult:
        roots_asked.append(since())
        return types.ListRootsResult(roots=[types.Root(uri="file:///srv/e2e", name="e2e root")])

    def transport(log: Recorder) -> Any:
        if transport_kind == "sse":
            return sse_client(url, httpx_client_factory=lambda **kw: log.client(**kw))
        return streamable_http_client(url, http_client=log.client())

    def make_client(log: Recorder) -> Client:
        return Client(
            transport(log),
            mode=mode,
            read_timeout_seconds=30,
            sampling_callback=sampling,
            elicitation_callback=elicitation,
            list_roots_callback=roots,
            client_info=types.Implementation(name="sidecar-e2e-py", version="1.0.0"),
        )

    async with make_client(recorder) as client:
        info = client.server_info
        compare["server_info"] = info.model_dump(mode="json", by_alias=True, exclude_none=True) if info else None
        compare["server_capabilities"] = client.server_capabilities.model_dump(
            mode="json", by_alias=True, exclude_none=True
        )
        compare["protocol_version"] = client.protocol_version
        compare["instructions"] = client.instructions

        compare["tools"] = dump((await client.list_tools()).tools, "name")
        if everything:
            compare["echo"] = await outcome(client.call_tool("echo", {"message": "hello through the sidecar"}))
            compare["sum"] = await outcome(client.call_tool("get-sum", {"a": 2, "b": 40}))
            compare["bad_arguments"] = await outcome(client.call_tool("get-sum", {"a": "two"}))
        else:
            compare["echo"] = await outcome(client.call_tool("echo", {"text": "hello through the sidecar"}))
            compare["sum"] = await outcome(client.call_tool("add", {"a": 2, "b": 40}))
            compare["bad_arguments"] = await outcome(client.call_tool("add", {"a": "two"}))
            compare["tool_error"] = await outcome(client.call_tool("fail", {"reason": "on purpose"}))
        compare["unknown_tool"] = await outcome(client.call_tool("no-such-tool", {}))

        listed = await client.list_resources()
        compare["resources"] = dump(listed.resources, "uri")
        compare["resource_templates"] = dump((await client.list_resource_templates()).resource_templates, "uriTemplate")
        if everything:
            doc = next(r.uri for r in listed.resources if str(r.uri).startswith("demo://resource/static/document/"))
            compare["read"] = await outcome(client.read_resource(str(doc)))
        else:
            compare["read"] = await outcome(client.read_resource("demo://greeting"))
            compare["read_template"] = await outcome(client.read_resource("demo://items/widget"))
        compare["read_missing"] = await outcome(client.read_resource("demo://no/such/resource"))
        compare["prompts"] = dump((await client.list_prompts()).prompts, "name")
        compare["prompt"] = await outcome(
            client.get_prompt("args-prompt", {"city": "Paris", "state": "Texas"})
            if everything
            else client.get_prompt("greet", {"name": "Ada"})
        )

        # Progress while a long call runs: values compared, arrival times checked by the Rust side.
        progress: list[dict[str, Any]] = []
        call_start = time.monotonic()

        async def on_progress(value: float, total: float | None, message: str | None) -> None:
            entry: dict[str, Any] = {"progress": value, "total": total}
            if message is not None:
                entry["message"] = message
            entry["at_ms"] = int((time.monotonic() - call_start) * 1000)
            progress.append(entry)

        if everything:
            long = client.call_tool(
                "trigger-long-running-operation", {"duration": 2, "steps": 4}, progress_callback=on_progress
            )
        else:
            long = client.call_tool("progress", {"steps": 4, "interval_ms": 500}, progress_callback=on_progress)
        compare["long_running"] = await outcome(long)
        volatile["long_running_ms"] = int((time.monotonic() - call_start) * 1000)
        volatile["progress_ms"] = [p.pop("at_ms") for p in progress]
        compare["progress"] = progress

        modern = client.protocol_version == "2026-07-28"
        if not stateless and not modern:
            if everything:
                compare["sampling"] = await outcome(
                    client.call_tool("trigger-sampling-request", {"prompt": "hi", "maxTokens": 10})
                )
                compare["elicitation"] = await outcome(client.call_tool("trigger-elicitation-request", {}))
                for _ in range(100):
                    if roots_asked:
                        break
                    await asyncio.sleep(0.05)
                compare["roots_asked_on_get_stream"] = bool(roots_asked)
                compare["roots"] = await outcome(client.call_tool("get-roots-list", {}))
            else:
                for key, tool in (("sampling", "sample"), ("elicitation", "ask")):
                    value = await outcome(client.call_tool(tool, {"prompt": "hi"} if tool == "sample" else {}))
                    text = value.get("result", {}).get("content", [{}])[0].get("text")
                    if text and text.startswith("{"):
                        volatile[f"{key}_session"] = json.loads(text).get("session")
                    compare[key] = value
        if not everything:
            who = await outcome(client.call_tool("whoami", {}))
            seen = json.loads(who["result"]["content"][0]["text"])
            volatile["backend_saw_session"] = seen.get("mcp-session-id")
            compare["backend_saw_protocol_version"] = seen.get("mcp-protocol-version")
            compare["backend_saw_mcp_method"] = seen.get("mcp-method")
        if backend == "python" and transport_kind == "streamable" and not modern:
            resumed: list[dict[str, Any]] = []

            async def on_resumed(value: float, total: float | None, message: str | None) -> None:
                resumed.append({"progress": value, "total": total, "message": message})

            resumable_start = time.monotonic()
            compare["resumable"] = await outcome(client.call_tool("resumable", {}, progress_callback=on_resumed))
            volatile["resumable_ms"] = int((time.monotonic() - resumable_start) * 1000)
            compare["resumable_progress"] = resumed

    # Leaving the context sent DELETE for a session; the old id must now be refused by the backend.
    sessions = [e["response_session"] for e in recorder.log if e["response_session"]]
    volatile["session_id"] = sessions[0] if sessions else None
    if transport_kind == "streamable" and volatile["session_id"]:
        compare["delete_status"] = [e["status"] for e in recorder.log if e["method"] == "DELETE"]
        async with httpx2.AsyncClient() as raw:
            stale = await raw.post(
                url,
                headers={
                    "accept": "application/json, text/event-stream",
                    "mcp-session-id": volatile["session_id"],
                    "mcp-protocol-version": compare["protocol_version"],
                },
                json={"jsonrpc": "2.0", "id": 99, "method": "tools/list", "params": {}},
            )
        try:
            body: Any = stale.json()
        except ValueError:
            body = stale.text
        compare["ended_session"] = {"status": stale.status_code, "body": body}
        again_log = Recorder()
        async with make_client(again_log) as again:
            args = {"message": "again"} if everything else {"text": "again"}
            compare["after_reinitialize"] = await outcome(again.call_tool("echo", args))
        again_sessions = [e["response_session"] for e in again_log.log if e["response_session"]]
        volatile["reinitialized_session_id"] = again_sessions[0] if again_sessions else None
        recorder.log.extend({**e, "second_client": True} for e in again_log.log)

    # Every distinct status the client's HTTP layer saw for POST/DELETE, by JSON-RPC method.
    compare["http"] = sorted(
        {f"{e['method']} {e['rpc'] or ''} {e['status']} {e['content_type']}" for e in recorder.log if e["method"] != "GET"}
    )
    volatile["http"] = recorder.log
    volatile["total_ms"] = since()

    # Session ids differ on every run: replace each one seen by a stable marker.
    text = json.dumps(compare, sort_keys=True)
    ids = {volatile.get("session_id"), volatile.get("reinitialized_session_id")}
    for e in recorder.log:
        ids.update({e["request_session"], e["response_session"], e["query_session"]})
    for session_id in ids - {None}:
        text = text.replace(session_id, "<session>")
    return {"compare": json.loads(text), "volatile": volatile}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("transport", choices=["streamable", "sse"])
    parser.add_argument("backend", choices=["everything", "python", "python-json", "python-stateless"])
    parser.add_argument("url")
    parser.add_argument("--mode", choices=["legacy", "auto"], default="legacy")
    args = parser.parse_args()
    try:
        report = asyncio.run(asyncio.wait_for(run(args.transport, args.backend, args.url, args.mode), 60))
    except Exception as error:  # noqa: BLE001 - report whatever broke, then fail
        print(f"py_client: failed: {error!r}", file=sys.stderr)
        raise
    print(json.dumps(report, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
