use std::time::Duration;

use super::*;
use crate::config::{Config, ConfigError};

fn load(toml: &str) -> Result<Config, ConfigError> {
    Config::from_toml_with_env(toml, &|_| None)
}

fn upstream(extra: &str) -> String {
    format!("[[upstream]]\nname = \"u\"\nurl = \"http://b:1/mcp\"\n{extra}")
}

fn tool(extra: &str) -> String {
    upstream(&format!("[[upstream.tool]]\nname = \"slow_*\"\n{extra}"))
}

#[test]
fn a_tool_that_sets_offload_is_a_facade_tool_by_default() {
    let c = load(&tool("offload = \"allowed\"\n")).unwrap();
    let up = &c.upstream[0];
    assert_eq!(upstream_tasks(up, true), UpstreamTasks::Auto);
    assert_eq!(
        tool_tasks(up, true, "slow_compute"),
        ToolTasks::Facade {
            support: TaskSupport::Optional,
            wait: Duration::ZERO
        }
    );
    assert_eq!(tool_tasks(up, true, "greet"), ToolTasks::Off);
    // The facade is the job engine: without it, nothing is a task.
    assert_eq!(tool_tasks(up, false, "slow_compute"), ToolTasks::Off);
    assert_eq!(upstream_tasks(up, false), UpstreamTasks::Off);
}

#[test]
fn an_upstream_without_tool_settings_has_no_tasks() {
    let c = load(&upstream("")).unwrap();
    assert_eq!(upstream_tasks(&c.upstream[0], true), UpstreamTasks::Off);
    assert_eq!(tool_tasks(&c.upstream[0], true, "x"), ToolTasks::Off);
}

#[test]
fn offload_required_makes_task_support_required() {
    let c = load(&tool("offload = \"required\"\ntask_wait = \"500ms\"\n")).unwrap();
    assert_eq!(
        tool_tasks(&c.upstream[0], true, "slow_x"),
        ToolTasks::Facade {
            support: TaskSupport::Required,
            wait: Duration::from_millis(500)
        }
    );
}

#[test]
fn the_tools_setting_beats_the_upstreams() {
    let c = load(&upstream(
        "tasks = \"facade\"\n[[upstream.tool]]\nname = \"greet\"\ntasks = \"off\"\n\
         [[upstream.tool]]\nname = \"never\"\noffload = \"never\"\n",
    ))
    .unwrap();
    let up = &c.upstream[0];
    assert_eq!(upstream_tasks(up, true), UpstreamTasks::Facade);
    assert_eq!(tool_tasks(up, true, "greet"), ToolTasks::Off);
    // A tool that may never be a job is never a task either.
    assert_eq!(tool_tasks(up, true, "never"), ToolTasks::Off);
    assert!(matches!(
        tool_tasks(up, true, "anything"),
        ToolTasks::Facade { .. }
    ));
}

#[test]
fn passthrough_on_the_upstream_leaves_every_tool_to_the_backend() {
    let c = load(&upstream(
        "tasks = \"passthrough\"\n[[upstream.tool]]\nname = \"t\"\noffload = \"required\"\n",
    ))
    .unwrap();
    assert_eq!(
        upstream_tasks(&c.upstream[0], true),
        UpstreamTasks::Passthrough
    );
    assert_eq!(
        tool_tasks(&c.upstream[0], true, "t"),
        ToolTasks::Passthrough
    );
}

#[test]
fn a_facade_without_jobs_or_on_a_never_offloaded_tool_is_refused_with_the_field() {
    let err = load(&format!(
        "[jobs]\nenabled = false\n{}",
        upstream("tasks = \"facade\"\n")
    ))
    .unwrap_err()
    .to_string();
    assert!(err.starts_with("upstream[0].tasks"), "{err}");
    let err = load(&tool("offload = \"never\"\ntasks = \"facade\"\n"))
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("upstream[0].tool[0].tasks"), "{err}");
    let err = load(&tool("task_wait = \"2m\"\n")).unwrap_err().to_string();
    assert!(err.starts_with("upstream[0].tool[0].task_wait"), "{err}");
    let err = load(&upstream("tasks = \"sometimes\"\n"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("sometimes"), "{err}");
}
