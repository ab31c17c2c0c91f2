#!/usr/bin/env python3
"""A real MCP backend built with the official MCP Python SDK (`mcp` 2.x `MCPServer`).

Usage: py_server.py (streamable [--json-response] [--stateless] [--event-store] | sse)

Serves on 127.0.0.1 on a port the OS picks and prints `LISTENING {"port": N}` on stdout once it
accepts connections, so the Rust tests (tests/tests/sdk_*.rs) need no port guessing. Every server
this script makes is an ordinary MCPServer app from the SDK: nothing in the HTTP layer is ours.

- `streamable`: Streamable HTTP at /mcp; SSE responses unless --json-response; sessions unless
  --stateless; with --event-store, events get ids (a priming event first, `retry: 200`) and a
  client can resume a stream with GET + Last-Event-ID.
- `sse`: the legacy HTTP+SSE transport (GET /sse, POST /messages/?session_id=...).

Tools: echo, add, progress (progress notifications spread over time), resumable (closes its own
SSE stream half way so the client must resume with Last-Event-ID), sample (sampling/createMessage
to the client), ask (elicitation/create to the client), whoami (the session id and MCP headers the
backend received), fail (a tool error). One static resource, one resource template, one prompt.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
from dataclasses import dataclass, field

import mcp_types as types
import uvicorn
from pydantic import BaseModel

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.streamable_http import EventCallback, EventId, EventMessage, EventStore, StreamId


@dataclass
class MemoryEventStore(EventStore):
    """Keeps every event in order; replays the ones after an id on the same stream."""

    events: list[tuple[EventId, StreamId, types.JSONRPCMessage | None]] = field(default_factory=list)
    counter: int = 0

    async def store_event(self, stream_id: StreamId, message: types.JSONRPCMessage | None) -> EventId:
        self.counter += 1
        event_id = f"{stream_id}_{self.counter}"
        self.events.append((event_id, stream_id, message))
        return event_id

    async def replay_events_after(self, last_event_id: EventId, send_callback: EventCallback) -> StreamId | None:
        index = next((i for i, (eid, _, _) in enumerate(self.events) if eid == last_event_id), None)
        if index is None:
            return None
        stream_id = self.events[index][1]
        for event_id, sid, message in self.events[index + 1 :]:
            if sid == stream_id and message is not None:
                await send_callback(EventMessage(message, event_id))
        return stream_id


class Person(BaseModel):
    name: str
    age: int


def build() -> MCPServer:
    server = MCPServer("py-backend", version="1.0.0", instructions="A backend for the sidecar's e2e tests.")

    @server.tool()
    def echo(text: str) -> str:
        """Echoes the text back."""
        return text

    @server.tool()
    def add(a: int, b: int) -> int:
        """Adds two integers."""
        return a + b

    @server.tool()
    async def progress(steps: int, interval_ms: int, ctx: Context) -> str:
        """Reports progress once per step, one step every interval_ms."""
        for step in range(1, steps + 1):
            await asyncio.sleep(interval_ms / 1000)
            await ctx.report_progress(step, steps, f"step {step}")
        return f"completed {steps} steps"

    @server.tool()
    async def resumable(ctx: Context) -> str:
        """Progress 1, then closes its SSE stream; progress 2 and 3 and the result are only seen by
        a client that resumes with Last-Event-ID (replayed from the event store)."""
        await ctx.report_progress(1, 3, "before the stream closed")
        await ctx.close_sse_stream()
        await asyncio.sleep(0.3)
        await ctx.report_progress(2, 3, "while the client was away")
        await asyncio.sleep(0.1)
        await ctx.report_progress(3, 3, "after")
        return "resumed"

    @server.tool()
    async def sample(prompt: str, ctx: Context) -> str:
        """Asks the client's model (sampling/createMessage) and returns its text and the session."""
        result = await ctx.session.create_message(
            [types.SamplingMessage(role="user", content=types.TextContent(type="text", text=prompt))],
            max_tokens=50,
            related_request_id=ctx.request_id,
        )
        text = result.content.text if isinstance(result.content, types.TextContent) else repr(result.content)
        return json.dumps({"model": result.model, "text": text, "session": (ctx.headers or {}).get("mcp-session-id")})

    @server.tool()
    async def ask(ctx: Context) -> str:
        """Elicits a Person from the client and returns what came back, and the session."""
        answer = await ctx.elicit("Who are you?", Person)
        data = answer.data.model_dump() if answer.action == "accept" else None
        return json.dumps({"action": answer.action, "data": data, "session": (ctx.headers or {}).get("mcp-session-id")})

    @server.tool()
    def whoami(ctx: Context) -> str:
        """The session id and MCP headers this backend received with the call."""
        headers = ctx.headers or {}
        seen = {name: headers.get(name) for name in ("mcp-session-id", "mcp-protocol-version", "mcp-method", "mcp-name")}
        return json.dumps(seen, sort_keys=True)

    @server.tool()
    def fail(reason: str) -> str:
        """Always fails with a tool error."""
        raise ToolError(f"failed: {reason}")

    @server.resource("demo://greeting", mime_type="text/plain")
    def greeting() -> str:
        """A static greeting."""
        return "hello, resource"

    @server.resource("demo://items/{item}", mime_type="application/json")
    def item(item: str) -> str:
        """One item by name."""
        return json.dumps({"item": item})

    @server.prompt()
    def greet(name: str) -> str:
        """A greeting prompt."""
        return f"Say hello to {name}."

    return server


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("transport", choices=["streamable", "sse"])
    parser.add_argument("--json-response", action="store_true")
    parser.add_argument("--stateless", action="store_true")
    parser.add_argument("--event-store", action="store_true")
    args = parser.parse_args()

    server = build()
    if args.transport == "sse":
        app = server.sse_app()
    else:
        app = server.streamable_http_app(
            json_response=args.json_response,
            stateless_http=args.stateless,
            event_store=MemoryEventStore() if args.event_store else None,
            retry_interval=200 if args.event_store else None,
        )

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    uv = uvicorn.Server(config)

    async def serve() -> None:
        task = asyncio.create_task(uv.serve(sockets=[sock]))
        while not uv.started:
            if task.done():
                await task
                return
            await asyncio.sleep(0.01)
        print(f"LISTENING {json.dumps({'port': port})}", flush=True)
        await task

    asyncio.run(serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
