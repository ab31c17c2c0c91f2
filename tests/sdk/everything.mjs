#!/usr/bin/env node
// Starts the pinned @modelcontextprotocol/server-everything (unmodified, from node_modules) in
// `streamableHttp` or `sse` mode for the Rust e2e tests (tests/tests/sdk_*.rs).
//
// Usage: node everything.mjs streamableHttp|sse
//
// The package listens on PORT (default 3001) on every interface. So that tests can run in
// parallel and never listen beyond loopback, this launcher makes the package's one
// `server.listen(PORT)` call bind 127.0.0.1 on a port the OS picks, then prints
// `LISTENING {"port": N}` on stdout. Nothing else about the server is changed.
import http from "node:http";

const mode = process.argv[2];
if (mode !== "streamableHttp" && mode !== "sse") {
  console.error("usage: everything.mjs streamableHttp|sse");
  process.exit(2);
}

const listen = http.Server.prototype.listen;
http.Server.prototype.listen = function patchedListen(...args) {
  const callback = args.find((arg) => typeof arg === "function");
  this.once("listening", () => {
    process.stdout.write(`LISTENING ${JSON.stringify({ port: this.address().port })}\n`);
  });
  return listen.call(this, 0, "127.0.0.1", callback);
};

// The package's launcher reads the transport from argv[2], as `npx ... <mode>` would pass it.
process.argv = [process.argv[0], "mcp-server-everything", mode];
await import("@modelcontextprotocol/server-everything/dist/index.js");
