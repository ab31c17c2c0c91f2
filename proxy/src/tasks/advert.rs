//! What the facade adds to the backend's answers so clients know Tasks are there:
//! - `initialize` (2025-11-25): `capabilities.tasks` with `list`, `cancel` and
//!   `requests.tools.call`;
//! - `server/discover` (2026-07-28): `capabilities.extensions["io.modelcontextprotocol/tasks"]`;
//! - `tools/list` (2025-11-25 and later): `execution.taskSupport` on the facade's tools.
//!
//! A backend whose `initialize` or `server/discover` answer already advertises Tasks implements
//! them itself: its answers are left alone, and an automatic facade steps aside for good.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::Plan;
use super::wire::CORE_TASKS_REVISION;
use crate::body::rewrite::MessageRewrite;
use crate::config::{ToolTasks, tasks::tool_tasks};
use crate::error::TASKS_EXTENSION;
use crate::upstream::Upstream;

/// The methods whose answers the facade adds to.
pub const ADVERTISED: [&str; 3] = ["initialize", "server/discover", "tools/list"];

/// The facade's additions to one upstream's answers.
#[derive(Debug)]
pub struct Advert {
    pub(super) plan: Arc<Plan>,
    pub(super) upstream: Arc<Upstream>,
    /// `tools/list` answers get `execution.taskSupport` (the request's protocol revision is
    /// 2025-11-25 or later: earlier tool definitions have no `execution`).
    pub(super) tool_support: bool,
}

impl MessageRewrite for Advert {
    fn rewrite(&self, message: &mut Value) -> bool {
        let Some(result) = message.get_mut("result").and_then(Value::as_object_mut) else {
            return false;
        };
        if result.contains_key("capabilities") {
            return self.capabilities(result);
        }
        if self.tool_support
            && self.plan.facade()
            && let Some(tools) = result.get_mut("tools").and_then(Value::as_array_mut)
        {
            let mut changed = false;
            for tool in tools.iter_mut().filter_map(Value::as_object_mut) {
                changed |= self.support(tool);
            }
            return changed;
        }
        false
    }
}

impl Advert {
    /// An `initialize` or `server/discover` result.
    fn capabilities(&self, result: &mut Map<String, Value>) -> bool {
        let discover = result.contains_key("supportedVersions");
        let version = result
            .get("protocolVersion")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let Some(caps) = result
            .get_mut("capabilities")
            .and_then(Value::as_object_mut)
        else {
            return false;
        };
        let native = caps.contains_key("tasks")
            || caps
                .get("extensions")
                .and_then(|e| e.get(TASKS_EXTENSION))
                .is_some();
        if native {
            self.plan.saw_native();
            return false;
        }
        if !self.plan.facade() {
            return false;
        }
        if discover || version.as_str() > CORE_TASKS_REVISION {
            let extensions = caps.entry("extensions").or_insert_with(|| json!({}));
            return match extensions.as_object_mut() {
                Some(e) => {
                    e.insert(TASKS_EXTENSION.to_owned(), json!({}));
                    true
                }
                None => false,
            };
        }
        if version.as_str() == CORE_TASKS_REVISION {
            caps.insert(
                "tasks".to_owned(),
                json!({"list": {}, "cancel": {}, "requests": {"tools": {"call": {}}}}),
            );
            return true;
        }
        // Revisions before 2025-11-25 have no Tasks.
        false
    }

    /// A tool definition of `tools/list`: the facade's `taskSupport` for facade tools.
    fn support(&self, tool: &mut Map<String, Value>) -> bool {
        let Some(name) = tool.get("name").and_then(Value::as_str) else {
            return false;
        };
        let ToolTasks::Facade { support, .. } = tool_tasks(&self.upstream.config, true, name)
        else {
            return false;
        };
        let execution = tool.entry("execution").or_insert_with(|| json!({}));
        match execution.as_object_mut() {
            Some(e) => {
                e.insert("taskSupport".to_owned(), support.as_str().into());
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
#[path = "advert_tests.rs"]
mod tests;
