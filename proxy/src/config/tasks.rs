//! `tasks` of an upstream or a tool: whether the sidecar serves MCP Tasks itself on the job
//! engine (`facade`), leaves them to a backend that implements them (`passthrough`), or neither
//! (`off`); and which tools a facade makes task-capable, as what clients see in `tools/list`.
//!
//! Resolution for one tool, first match wins:
//! 1. the tool's `[[upstream.tool]] tasks`;
//! 2. the upstream's `tasks`;
//! 3. unset (automatic): `facade` for a tool whose `[[upstream.tool]]` entry sets `offload`
//!    (`allowed` or `required`), else `off`; and `passthrough` for all of them once the backend
//!    is seen advertising Tasks itself (decided at run time by the request path).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigError, Offload, ToolConfig, UpstreamConfig};
use crate::glob::glob_match;

/// Longest `task_wait`: a wait is a live call held open, which is what a task is for avoiding;
/// past a minute the caller is better served by the task at once.
pub const MAX_TASK_WAIT: Duration = Duration::from_secs(60);

/// `tasks = "off" | "facade" | "passthrough"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TasksMode {
    /// No Tasks from the sidecar: nothing advertised, task methods go to the backend.
    Off,
    /// The sidecar serves Tasks itself, on the job engine.
    Facade,
    /// The backend serves Tasks; the sidecar passes everything through untouched.
    Passthrough,
}

/// What a task-capable tool declares in `tools/list` (`execution.taskSupport`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskSupport {
    /// Called as a task when the client speaks Tasks, live otherwise.
    Optional,
    /// Called only as a task (the tool's `offload = "required"`).
    Required,
}

impl TaskSupport {
    /// The `execution.taskSupport` value.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskSupport::Optional => "optional",
            TaskSupport::Required => "required",
        }
    }
}

/// How one tool's calls meet Tasks, resolved from the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolTasks {
    /// Not task-capable through the sidecar.
    Off,
    /// The sidecar makes it a task: with this support, and answering at once unless the call
    /// ends within `wait`.
    Facade {
        /// What `tools/list` says.
        support: TaskSupport,
        /// How long a call waits for its answer before the sidecar answers with the task.
        wait: Duration,
    },
    /// The backend's own.
    Passthrough,
}

/// How an upstream meets Tasks as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamTasks {
    /// Nothing to do: no tool is a facade tool.
    Off,
    /// Facade tools, decided automatically: a backend that advertises Tasks itself turns the
    /// upstream into passthrough.
    Auto,
    /// The operator asked for the facade (on the upstream or a tool).
    Facade,
    /// The operator asked for passthrough on the upstream.
    Passthrough,
}

/// The resolution for one tool of `upstream` (see the module docs); `jobs_enabled` false turns
/// every facade off (the facade is the job engine).
pub fn tool_tasks(upstream: &UpstreamConfig, jobs_enabled: bool, tool: &str) -> ToolTasks {
    let entry = upstream.tool.iter().find(|t| glob_match(&t.name, tool));
    let mode = entry
        .and_then(|t| t.tasks)
        .or(upstream.tasks)
        .or_else(|| entry.and_then(|t| t.offload.map(|_| TasksMode::Facade)));
    let offload = entry.map_or(Offload::Allowed, ToolConfig::offload);
    match mode {
        Some(TasksMode::Facade) if jobs_enabled && offload != Offload::Never => ToolTasks::Facade {
            support: if offload == Offload::Required {
                TaskSupport::Required
            } else {
                TaskSupport::Optional
            },
            wait: entry.and_then(|t| t.task_wait).unwrap_or(Duration::ZERO),
        },
        Some(TasksMode::Passthrough) => ToolTasks::Passthrough,
        _ => ToolTasks::Off,
    }
}

/// The resolution for `upstream` as a whole.
pub fn upstream_tasks(upstream: &UpstreamConfig, jobs_enabled: bool) -> UpstreamTasks {
    if !jobs_enabled {
        return match upstream.tasks {
            Some(TasksMode::Passthrough) => UpstreamTasks::Passthrough,
            _ => UpstreamTasks::Off,
        };
    }
    match upstream.tasks {
        Some(TasksMode::Passthrough) => UpstreamTasks::Passthrough,
        Some(TasksMode::Facade) => UpstreamTasks::Facade,
        Some(TasksMode::Off)
            if !upstream
                .tool
                .iter()
                .any(|t| t.tasks == Some(TasksMode::Facade)) =>
        {
            UpstreamTasks::Off
        }
        Some(TasksMode::Off) => UpstreamTasks::Facade,
        None if upstream
            .tool
            .iter()
            .any(|t| t.tasks == Some(TasksMode::Facade)) =>
        {
            UpstreamTasks::Facade
        }
        None if upstream.tool.iter().any(|t| {
            t.tasks.is_none() && matches!(t.offload, Some(Offload::Allowed | Offload::Required))
        }) =>
        {
            UpstreamTasks::Auto
        }
        None => UpstreamTasks::Off,
    }
}

/// Checks the `tasks` keys of one upstream; errors name the field.
pub(crate) fn validate(
    up: &UpstreamConfig,
    jobs_enabled: bool,
    field: &dyn Fn(&str) -> String,
) -> Result<(), ConfigError> {
    let facade_asked = up.tasks == Some(TasksMode::Facade);
    if facade_asked && !jobs_enabled {
        return Err(ConfigError::invalid(
            field("tasks"),
            "`facade` runs tasks on the job engine, which `[jobs] enabled = false` turns off",
        ));
    }
    for (t, tool) in up.tool.iter().enumerate() {
        if tool.tasks == Some(TasksMode::Facade) {
            if !jobs_enabled {
                return Err(ConfigError::invalid(
                    field(&format!("tool[{t}].tasks")),
                    "`facade` runs tasks on the job engine, which `[jobs] enabled = false` turns off",
                ));
            }
            if tool.offload == Some(Offload::Never) {
                return Err(ConfigError::invalid(
                    field(&format!("tool[{t}].tasks")),
                    "`facade` makes the tool's calls jobs, which its `offload = \"never\"` forbids",
                ));
            }
        }
        if let Some(wait) = tool.task_wait
            && wait > MAX_TASK_WAIT
        {
            return Err(ConfigError::invalid(
                field(&format!("tool[{t}].task_wait")),
                format!(
                    "{} is longer than the {}s allowed: a long wait is a live call held open; answer with the task instead",
                    humantime::format_duration(wait),
                    MAX_TASK_WAIT.as_secs()
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "tasks_tests.rs"]
mod tests;
