#!/usr/bin/env node
// Drives an MCP server with the official TypeScript SDK client (@modelcontextprotocol/sdk, pinned in
// package.json) and prints ONE JSON line of observations for the Rust e2e tests (tests/tests/sdk_*.rs),
// which run it once against the backend directly and once through the sidecar and compare.
//
// Usage: node ts_client.mjs <streamable|sse> <backend> <url>
//   backend: everything | python | python-json | python-stateless
//     (what the server offers: the script only calls what that backend has; `everything` and
//     `python` are also the names for their legacy SSE servers when the transport is sse)
//
// Output: {"compare": {...}, "volatile": {...}}
//   compare  - every result payload, error code and HTTP status the client saw; must be identical
//              with and without the sidecar (anything that legitimately varies per run, such as
//              session ids or timestamps, is kept out of it or replaced by a stable marker);
//   volatile - session ids, endpoint paths and timings, which the Rust side checks on their own.
// Exit code 0 with the line on success; non-zero with a message on stderr if the client broke.
// TLS: trust a test CA with NODE_EXTRA_CA_CERTS (read by Node at start).

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { SSEClientTransport } from "@modelcontextprotocol/sdk/client/sse.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import {
  CreateMessageRequestSchema,
  ElicitRequestSchema,
  ListRootsRequestSchema,
} from "@modelcontextprotocol/sdk/types.js";

const [transportKind, backend, url] = process.argv.slice(2);
if (!["streamable", "sse"].includes(transportKind) || !backend || !url) {
  console.error("usage: ts_client.mjs <streamable|sse> <backend> <url>");
  process.exit(2);
}
const everything = backend === "everything";
const stateless = backend === "python-stateless";
// Only the Python backend in SSE mode with an event store closes a stream for the client to resume.
const resumable = backend === "python" && transportKind === "streamable";

const started = Date.now();
const since = () => Date.now() - started;
const compare = {};
const volatile = { http: [] };

// Every HTTP exchange the SDK makes, seen at the fetch layer. A legacy POST's 202 can arrive after
// the answer it carried came back on the SSE stream, so the summary waits for pending fetches.
const pending = new Set();
function recordingFetch(log) {
  return (input, init = {}) => {
    const exchange = record(log, input, init);
    pending.add(exchange);
    exchange.then(() => pending.delete(exchange), () => pending.delete(exchange));
    return exchange;
  };
}

async function record(log, input, init) {
  const headers = new Headers(init.headers ?? {});
  const method = init.method ?? "GET";
  let rpc = null;
  if (typeof init.body === "string") {
    try {
      const body = JSON.parse(init.body);
      rpc = body.method ?? (body.result !== undefined ? "response" : body.error !== undefined ? "error" : null);
    } catch {
      rpc = "unparsable";
    }
  }
  const response = await fetch(input, init);
  const target = new URL(typeof input === "string" || input instanceof URL ? input : input.url);
  log.push({
    method,
    rpc,
    path: target.pathname,
    query_session: target.searchParams.get("sessionId") ?? target.searchParams.get("session_id"),
    status: response.status,
    content_type: (response.headers.get("content-type") ?? "").split(";")[0].trim(),
    request_session: headers.get("mcp-session-id"),
    request_protocol_version: headers.get("mcp-protocol-version"),
    last_event_id: headers.get("last-event-id"),
    response_session: response.headers.get("mcp-session-id"),
    at_ms: since(),
  });
  return response;
}

function makeTransport(log) {
  const fetchFn = recordingFetch(log);
  if (transportKind === "sse") {
    return new SSEClientTransport(new URL(url), { fetch: fetchFn, eventSourceInit: { fetch: fetchFn } });
  }
  return new StreamableHTTPClientTransport(new URL(url), {
    fetch: fetchFn,
    reconnectionOptions: { initialReconnectionDelay: 200, maxReconnectionDelay: 1000, reconnectionDelayGrowFactor: 1.5, maxRetries: 3 },
  });
}

const rootsAsked = [];
function makeClient() {
  const client = new Client(
    { name: "sidecar-e2e-ts", version: "1.0.0" },
    { capabilities: { sampling: {}, elicitation: { form: {} }, roots: { listChanged: true } } },
  );
  client.setRequestHandler(CreateMessageRequestSchema, async (request) => {
    const first = request.params.messages[0]?.content;
    return {
      role: "assistant",
      model: "e2e-model",
      content: { type: "text", text: `sampled: ${first?.type === "text" ? first.text : "?"}` },
      stopReason: "endTurn",
    };
  });
  client.setRequestHandler(ElicitRequestSchema, async (request) => {
    const props = Object.keys(request.params.requestedSchema?.properties ?? {});
    const content = {};
    if (props.includes("name")) content.name = "Ada Lovelace";
    if (props.includes("age")) content.age = 36;
    if (props.includes("check")) content.check = true;
    return { action: "accept", content };
  });
  client.setRequestHandler(ListRootsRequestSchema, async () => {
    rootsAsked.push(since());
    return { roots: [{ uri: "file:///srv/e2e", name: "e2e root" }] };
  });
  return client;
}

// A request's outcome in a stable shape: the result, or the JSON-RPC error's code and message.
async function outcome(promise) {
  try {
    return { result: await promise };
  } catch (error) {
    if (typeof error?.code === "number") return { error: { code: error.code, message: error.message } };
    return { error: { message: String(error?.message ?? error) } };
  }
}

const sorted = (items, key) => [...items].sort((a, b) => String(a[key]).localeCompare(String(b[key])));

async function run() {
  const log = volatile.http;
  const transport = makeTransport(log);
  const client = makeClient();
  await client.connect(transport);

  compare.server_version = client.getServerVersion();
  compare.server_capabilities = client.getServerCapabilities();
  compare.instructions = client.getInstructions() ?? null;
  compare.protocol_version = transport.protocolVersion ?? null;
  volatile.session_id = transport.sessionId ?? null;

  const tools = await client.listTools();
  compare.tools = sorted(tools.tools, "name");

  if (everything) {
    compare.echo = await outcome(client.callTool({ name: "echo", arguments: { message: "hello through the sidecar" } }));
    compare.sum = await outcome(client.callTool({ name: "get-sum", arguments: { a: 2, b: 40 } }));
    compare.bad_arguments = await outcome(client.callTool({ name: "get-sum", arguments: { a: "two" } }));
    compare.structured = await outcome(client.callTool({ name: "get-structured-content", arguments: { location: "New York" } }));
  } else {
    compare.echo = await outcome(client.callTool({ name: "echo", arguments: { text: "hello through the sidecar" } }));
    compare.sum = await outcome(client.callTool({ name: "add", arguments: { a: 2, b: 40 } }));
    compare.bad_arguments = await outcome(client.callTool({ name: "add", arguments: { a: "two" } }));
    compare.tool_error = await outcome(client.callTool({ name: "fail", arguments: { reason: "on purpose" } }));
  }
  compare.unknown_tool = await outcome(client.callTool({ name: "no-such-tool", arguments: {} }));

  // Resources and prompts.
  const resources = await client.listResources();
  compare.resources = sorted(resources.resources, "uri");
  compare.resource_templates = sorted((await client.listResourceTemplates()).resourceTemplates, "uriTemplate");
  if (everything) {
    const doc = resources.resources.find((r) => r.uri.startsWith("demo://resource/static/document/"));
    compare.read = await outcome(client.readResource({ uri: doc.uri }));
  } else {
    compare.read = await outcome(client.readResource({ uri: "demo://greeting" }));
    compare.read_template = await outcome(client.readResource({ uri: "demo://items/widget" }));
  }
  compare.read_missing = await outcome(client.readResource({ uri: "demo://no/such/resource" }));
  compare.prompts = sorted((await client.listPrompts()).prompts, "name");
  compare.prompt = everything
    ? await outcome(client.getPrompt({ name: "args-prompt", arguments: { city: "Paris", state: "Texas" } }))
    : await outcome(client.getPrompt({ name: "greet", arguments: { name: "Ada" } }));

  // Progress notifications while a long call runs: values compared, arrival times checked by Rust.
  const progress = [];
  const callStart = Date.now();
  const long = everything
    ? client.callTool(
        { name: "trigger-long-running-operation", arguments: { duration: 2, steps: 4 } },
        undefined,
        { onprogress: (p) => progress.push({ ...p, at_ms: Date.now() - callStart }), timeout: 30000 },
      )
    : client.callTool(
        { name: "progress", arguments: { steps: 4, interval_ms: 500 } },
        undefined,
        { onprogress: (p) => progress.push({ ...p, at_ms: Date.now() - callStart }), timeout: 30000 },
      );
  compare.long_running = await outcome(long);
  volatile.long_running_ms = Date.now() - callStart;
  // The last notification is sent just before the result; on a legacy SSE stream the TS client
  // may handle the result first and drop it (depending on how the two were split into reads), so
  // only the notifications before it are compared. All of them are kept in `volatile`.
  compare.progress = progress.filter((p) => p.progress < p.total).map(({ at_ms, ...p }) => p);
  volatile.progress = progress;
  volatile.progress_ms = progress.map((p) => p.at_ms);

  // Server-to-client requests answered by this client, on the backend session that asked.
  if (!stateless) {
    if (everything) {
      compare.sampling = await outcome(client.callTool({ name: "trigger-sampling-request", arguments: { prompt: "hi", maxTokens: 10 } }));
      compare.elicitation = await outcome(client.callTool({ name: "trigger-elicitation-request", arguments: {} }));
      // server-everything asks for roots/list on the standalone GET stream 350 ms after initialized.
      for (let i = 0; i < 100 && rootsAsked.length === 0; i++) await new Promise((r) => setTimeout(r, 50));
      compare.roots_asked_on_get_stream = rootsAsked.length > 0;
      compare.roots = await outcome(client.callTool({ name: "get-roots-list", arguments: {} }));
    } else {
      const sampling = await outcome(client.callTool({ name: "sample", arguments: { prompt: "hi" } }));
      const elicitation = await outcome(client.callTool({ name: "ask", arguments: {} }));
      // The backend reports the session it ran the tool in (replaced by a marker at the end).
      for (const [key, value] of [["sampling", sampling], ["elicitation", elicitation]]) {
        const text = value.result?.content?.[0]?.text;
        if (text) volatile[`${key}_session`] = JSON.parse(text).session;
        compare[key] = value;
      }
    }
  }
  if (!everything) {
    const who = await outcome(client.callTool({ name: "whoami", arguments: {} }));
    const seen = JSON.parse(who.result.content[0].text);
    volatile.backend_saw_session = seen["mcp-session-id"];
    compare.backend_saw_protocol_version = seen["mcp-protocol-version"];
  }
  if (resumable) {
    // The backend closes the call's SSE stream after the first progress; the SDK resumes with
    // GET + Last-Event-ID and must still see the remaining progress and the result.
    const resumed = [];
    const resumableStart = Date.now();
    compare.resumable = await outcome(
      client.callTool({ name: "resumable", arguments: {} }, undefined, {
        onprogress: (p) => resumed.push(p),
        timeout: 15000,
      }),
    );
    volatile.resumable_ms = Date.now() - resumableStart;
    compare.resumable_progress = resumed;
  }

  // Session end: DELETE, then the old id is refused by the backend, then a fresh initialize works.
  if (transportKind === "streamable" && transport.sessionId) {
    const oldSession = transport.sessionId;
    await transport.terminateSession();
    compare.delete_status = log.filter((e) => e.method === "DELETE").map((e) => e.status);
    const stale = await fetch(url, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        accept: "application/json, text/event-stream",
        "mcp-session-id": oldSession,
        "mcp-protocol-version": transport.protocolVersion,
      },
      body: JSON.stringify({ jsonrpc: "2.0", id: 99, method: "tools/list", params: {} }),
    });
    const staleBody = await stale.text();
    compare.ended_session = { status: stale.status, body: parseJson(staleBody) };
    await client.close();

    const again = makeClient();
    const againLog = [];
    const againTransport = makeTransport(againLog);
    await again.connect(againTransport);
    volatile.reinitialized_session_id = againTransport.sessionId ?? null;
    compare.after_reinitialize = await outcome(
      again.callTool(everything
        ? { name: "echo", arguments: { message: "again" } }
        : { name: "echo", arguments: { text: "again" } }),
    );
    await againTransport.terminateSession();
    await again.close();
    volatile.http.push(...againLog.map((e) => ({ ...e, second_client: true })));
  } else {
    await client.close();
  }

  // Every distinct status the client's HTTP layer saw for POST/DELETE, by JSON-RPC method.
  await Promise.allSettled([...pending]);
  compare.http = [
    ...new Set(log.filter((e) => e.method !== "GET").map((e) => `${e.method} ${e.rpc ?? ""} ${e.status} ${e.content_type}`)),
  ].sort();
}

function parseJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

// Session ids differ on every run: replace each one the client saw by a stable marker.
function withoutSessionIds(value) {
  let text = JSON.stringify(value);
  const ids = new Set();
  for (const entry of volatile.http) {
    for (const id of [entry.request_session, entry.response_session, entry.query_session]) if (id) ids.add(id);
  }
  for (const id of [volatile.session_id, volatile.reinitialized_session_id]) if (id) ids.add(id);
  for (const id of ids) text = text.split(id).join("<session>");
  return JSON.parse(text);
}

const timer = setTimeout(() => {
  console.error("ts_client: did not finish within 60 s");
  process.exit(3);
}, 60000);
try {
  await run();
  volatile.total_ms = since();
  process.stdout.write(`${JSON.stringify({ compare: withoutSessionIds(compare), volatile })}\n`);
  clearTimeout(timer);
  process.exit(0);
} catch (error) {
  console.error("ts_client: failed:", error?.stack ?? error);
  console.error(JSON.stringify({ compare, volatile }));
  process.exit(1);
}
