//! mcp-sidecar: a reverse proxy deployed beside an MCP server.
pub mod body;
