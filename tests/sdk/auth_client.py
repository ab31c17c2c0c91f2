#!/usr/bin/env python3
"""The official MCP Python SDK client (mcp 2.x) through the sidecar with a bearer token.

Usage: auth_client.py URL TOKEN

Connects with `mcp.Client` over Streamable HTTP sending `Authorization: Bearer TOKEN`, lists the
tools, calls `echo` (allowed) and `sleep` (not allowed by the test's rules), and prints ONE JSON
line: {"tools": [...], "echo": "...", "forbidden": {"type", "text"}} for the Rust test
(tests/tests/auth_sdk.rs) to assert on. Exits non-zero with a message on stderr if anything else
goes wrong.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client


async def run(url: str, token: str) -> dict[str, Any]:
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30)
    async with Client(streamable_http_client(url, http_client=http), read_timeout_seconds=30) as client:
        listed = await client.list_tools()
        echo = await client.call_tool("echo", {"text": "hello with a token"})
        try:
            await client.call_tool("sleep", {"ms": 1})
            forbidden: dict[str, Any] = {"type": "none", "text": ""}
        except Exception as e:  # the SDK surfaces the 403 as an exception; which one is its business
            forbidden = {"type": type(e).__name__, "text": str(e)}
        return {
            "tools": sorted(t.name for t in listed.tools),
            "echo": echo.content[0].text,
            "forbidden": forbidden,
        }


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    print(json.dumps(asyncio.run(run(sys.argv[1], sys.argv[2]))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
