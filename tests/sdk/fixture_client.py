#!/usr/bin/env python3
"""Drives an mcp-fixture server with the official MCP Python SDK client (mcp 2.x).

Usage: fixture_client.py URL   (URL of a Streamable HTTP endpoint, e.g. http://127.0.0.1:8000/mcp)

Connects with `mcp.Client` (which negotiates the protocol and initializes), lists the tools, calls
`echo`, `add` and `progress` (the last with a progress callback), and checks every answer. Prints one
JSON line describing what it saw, so that the Rust test can assert on it too, and exits non-zero with
a message on stderr on any mismatch. It exists to prove that the fixture is a server a real client
accepts, not just one our own tests agree with.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from mcp import Client

EXPECTED_TOOLS = {"echo", "add", "sleep", "fail", "progress", "large"}
PROGRESS_STEPS = 3


class Mismatch(Exception):
    """The fixture answered something the official client did not expect."""


def check(condition: bool, what: str) -> None:
    if not condition:
        raise Mismatch(what)


def text_of(result: Any) -> str:
    """The text of a CallToolResult's single text content."""
    check(not result.is_error, f"tool reported an error: {result}")
    check(len(result.content) == 1, f"expected one content item: {result.content}")
    item = result.content[0]
    check(getattr(item, "type", None) == "text", f"expected text content: {item}")
    return item.text


async def run(url: str) -> dict[str, Any]:
    progress: list[dict[str, Any]] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append({"progress": value, "total": total, "message": message})

    # A read timeout so that a fixture that never answers fails the test instead of hanging it.
    async with Client(url, read_timeout_seconds=30) as client:
        server_info = client.server_info
        check(server_info is not None and server_info.name == "mcp-fixture", f"server info: {server_info}")
        check(client.server_capabilities.tools is not None, "tools capability missing")

        listed = await client.list_tools()
        names = sorted(tool.name for tool in listed.tools)
        check(set(names) == EXPECTED_TOOLS, f"tools/list: {names}")

        echo = text_of(await client.call_tool("echo", {"text": "hello from the official client"}))
        check(echo == "hello from the official client", f"echo: {echo!r}")

        added = text_of(await client.call_tool("add", {"a": 2, "b": 40}))
        check(added == "42", f"add: {added!r}")

        completed = text_of(
            await client.call_tool(
                "progress",
                {"steps": PROGRESS_STEPS, "interval_ms": 50},
                progress_callback=on_progress,
            )
        )
        check(completed == f"completed {PROGRESS_STEPS} steps", f"progress result: {completed!r}")
        check([p["progress"] for p in progress] == [1, 2, 3], f"progress notifications: {progress}")
        check(all(p["total"] == PROGRESS_STEPS for p in progress), f"progress totals: {progress}")

        return {
            "protocol_version": client.protocol_version,
            "server_name": server_info.name,
            "tools": names,
            "echo": echo,
            "add": added,
            "progress_result": completed,
            "progress": progress,
        }


def main() -> int:
    if len(sys.argv) != 2:
        print(f"usage: {sys.argv[0]} URL", file=sys.stderr)
        return 2
    try:
        report = asyncio.run(run(sys.argv[1]))
    except Mismatch as mismatch:
        print(f"fixture_client: mismatch: {mismatch}", file=sys.stderr)
        return 1
    print(json.dumps(report, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
