#!/usr/bin/env node
// Drives the sidecar's MCP Tasks facade (revision 2025-11-25) with the official TypeScript SDK client
// (@modelcontextprotocol/sdk, pinned in package.json: `client.experimental.tasks`) and prints ONE
// JSON line of what the client saw, for tests/tests/tasks_sdk.rs.
//
// Usage: node tasks_client.mjs <scenario> <url> [args...]
//   advert               - the server's `tasks` capability and each tool's `execution`
//   lifecycle <tool> <arguments-json>
//                        - callToolStream (the SDK creates the task, polls tasks/get, fetches
//                          tasks/result), then tasks/get, tasks/result and tasks/list again
//   cancel <tool> <arguments-json>
//                        - creates a task (request with `task`), tasks/get, tasks/cancel,
//                          tasks/get, tasks/cancel again, tasks/result
//   create <tool> <arguments-json>
//                        - creates a task and prints it (the task goes on running), or the error
//   probe <taskId>       - tasks/get, tasks/result, tasks/cancel of that task, and tasks/list
//   get <taskId>         - tasks/get
//   list [cursor]        - tasks/list
//   fetch <tool> <arguments-json>
//                        - creates a task and at once asks tasks/result (which waits for the
//                          end), then tasks/get
//   call <tool> <arguments-json>
//                        - a plain callTool (no task), after listTools
//   required <tool> <arguments-json>
//                        - callTool (the SDK's own guard), then a plain tools/call without `task`
//                          through the SDK's request()
// Env: MCP_API_KEY, when set, is sent as `X-API-Key` on every request.
// Output: one JSON object; a request that failed is {"error": {"code", "message"}} (code null when
// the SDK itself refused the answer).
// Exit code 0 with the line on success; non-zero with a message on stderr if the client broke.

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { CallToolResultSchema, CreateTaskResultSchema } from "@modelcontextprotocol/sdk/types.js";

const [scenario, url, ...args] = process.argv.slice(2);
if (!scenario || !url) {
  console.error("usage: tasks_client.mjs <scenario> <url> [args...]");
  process.exit(2);
}

// A request's outcome in a stable shape: the result, or the JSON-RPC error's code and message.
async function outcome(promise) {
  try {
    return { result: await promise };
  } catch (error) {
    if (typeof error?.code === "number") return { error: { code: error.code, message: error.message } };
    // Not a JSON-RPC error: the SDK refused the answer itself (e.g. its schema did not match).
    return { error: { code: null, message: String(error?.message ?? error) } };
  }
}

function toolArgs() {
  const [name, json] = args;
  if (!name) throw new Error(`${scenario} needs <tool> <arguments-json>`);
  return { name, arguments: JSON.parse(json ?? "{}") };
}

async function connect() {
  const headers = process.env.MCP_API_KEY ? { "x-api-key": process.env.MCP_API_KEY } : {};
  const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } });
  const client = new Client({ name: "sidecar-e2e-tasks", version: "1.0.0" }, { capabilities: {} });
  await client.connect(transport);
  return { client, transport };
}

const { client, transport } = await connect();
const tasks = client.experimental.tasks;
const report = { protocolVersion: transport.protocolVersion ?? null };

switch (scenario) {
  case "advert": {
    report.tasks = client.getServerCapabilities()?.tasks ?? null;
    const { tools } = await client.listTools();
    report.execution = Object.fromEntries(tools.map((t) => [t.name, t.execution ?? null]));
    break;
  }
  case "lifecycle": {
    // listTools teaches the SDK which tools are task-capable: callToolStream then adds `task`.
    await client.listTools();
    const messages = [];
    let taskId = null;
    for await (const message of tasks.callToolStream(toolArgs())) {
      switch (message.type) {
        case "taskCreated":
          taskId = message.task.taskId;
          messages.push({ type: message.type, status: message.task.status, ttl: message.task.ttl ?? null });
          break;
        case "taskStatus":
          messages.push({ type: message.type, status: message.task.status });
          break;
        case "result":
          messages.push({ type: message.type, result: message.result });
          break;
        case "error":
          messages.push({ type: message.type, error: { code: message.error.code, message: message.error.message } });
          break;
      }
    }
    report.taskId = taskId;
    report.messages = messages;
    if (taskId) {
      report.get = await outcome(tasks.getTask(taskId));
      report.result = await outcome(tasks.getTaskResult(taskId, CallToolResultSchema));
      report.list = await outcome(tasks.listTasks());
    }
    break;
  }
  case "cancel": {
    const created = await client.request(
      { method: "tools/call", params: toolArgs() },
      CreateTaskResultSchema,
      { task: { ttl: 60_000 } },
    );
    const taskId = created.task.taskId;
    report.taskId = taskId;
    report.created = created.task.status;
    report.before = await outcome(tasks.getTask(taskId));
    report.cancel = await outcome(tasks.cancelTask(taskId));
    report.after = await outcome(tasks.getTask(taskId));
    report.cancelAgain = await outcome(tasks.cancelTask(taskId));
    report.result = await outcome(tasks.getTaskResult(taskId, CallToolResultSchema));
    break;
  }
  case "create": {
    const created = await outcome(
      client.request({ method: "tools/call", params: toolArgs() }, CreateTaskResultSchema, { task: { ttl: 60_000 } }),
    );
    report.task = created.result?.task ?? null;
    report.error = created.error ?? null;
    break;
  }
  case "fetch": {
    const created = await client.request(
      { method: "tools/call", params: toolArgs() },
      CreateTaskResultSchema,
      { task: { ttl: 60_000 } },
    );
    const taskId = created.task.taskId;
    report.taskId = taskId;
    const started = Date.now();
    report.result = await outcome(tasks.getTaskResult(taskId, CallToolResultSchema));
    report.waitedMs = Date.now() - started;
    report.get = await outcome(tasks.getTask(taskId));
    break;
  }
  case "call": {
    await client.listTools();
    report.call = await outcome(client.callTool(toolArgs()));
    break;
  }
  case "probe": {
    const [taskId] = args;
    report.get = await outcome(tasks.getTask(taskId));
    report.result = await outcome(tasks.getTaskResult(taskId, CallToolResultSchema));
    report.cancel = await outcome(tasks.cancelTask(taskId));
    report.list = await outcome(tasks.listTasks());
    break;
  }
  case "get": {
    report.get = await outcome(tasks.getTask(args[0]));
    break;
  }
  case "list": {
    report.list = await outcome(tasks.listTasks(args[0]));
    break;
  }
  case "required": {
    await client.listTools();
    const params = toolArgs();
    report.callTool = await outcome(client.callTool(params));
    report.request = await outcome(client.request({ method: "tools/call", params }, CallToolResultSchema));
    break;
  }
  default:
    console.error(`unknown scenario ${scenario}`);
    process.exit(2);
}

await client.close();
console.log(JSON.stringify(report));
