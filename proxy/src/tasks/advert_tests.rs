use std::sync::atomic::AtomicBool;

use serde_json::{Value, json};

use super::*;
use crate::config::{Config, UpstreamTasks};
use crate::metrics::Metrics;

fn advert(mode: UpstreamTasks, tool_support: bool) -> Advert {
    let config = Config::from_toml_with_env(
        "[[upstream]]\nname = \"u\"\nurl = \"http://127.0.0.1:1/mcp\"\n\
         [[upstream.tool]]\nname = \"slow_*\"\noffload = \"allowed\"\n\
         [[upstream.tool]]\nname = \"must\"\noffload = \"required\"\n",
        &|_| None,
    )
    .unwrap();
    let upstream = Upstream::from_config(&config.upstream[0], &Metrics::new().unwrap()).unwrap();
    Advert {
        plan: Arc::new(Plan {
            mode,
            native: AtomicBool::new(false),
        }),
        upstream: Arc::new(upstream),
        tool_support,
    }
}

fn result(result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "result": result})
}

#[test]
fn discover_gets_the_extension_and_initialize_the_core_capability() {
    let a = advert(UpstreamTasks::Auto, true);
    let mut d = result(json!({"supportedVersions": ["2026-07-28"], "capabilities": {"tools": {}}}));
    assert!(a.rewrite(&mut d));
    assert_eq!(
        d["result"]["capabilities"]["extensions"][TASKS_EXTENSION],
        json!({})
    );
    assert!(d["result"]["capabilities"].get("tasks").is_none());
    let mut i = result(json!({"protocolVersion": "2025-11-25", "capabilities": {}}));
    assert!(a.rewrite(&mut i));
    assert_eq!(
        i["result"]["capabilities"]["tasks"]["requests"]["tools"]["call"],
        json!({})
    );
    // Revisions before Tasks are left as they are.
    let mut old = result(json!({"protocolVersion": "2025-06-18", "capabilities": {}}));
    assert!(!a.rewrite(&mut old));
}

#[test]
fn tools_list_gets_task_support_for_facade_tools_only() {
    let a = advert(UpstreamTasks::Auto, true);
    let mut l = result(json!({"tools": [
        {"name": "slow_x", "inputSchema": {"type": "object"}},
        {"name": "must", "execution": {"other": 1}},
        {"name": "greet"},
    ]}));
    assert!(a.rewrite(&mut l));
    let tools = &l["result"]["tools"];
    assert_eq!(tools[0]["execution"]["taskSupport"], "optional");
    assert_eq!(tools[1]["execution"]["taskSupport"], "required");
    assert_eq!(tools[1]["execution"]["other"], 1);
    assert!(tools[2].get("execution").is_none());
    // Before 2025-11-25 a tool has no `execution`.
    let mut l = result(json!({"tools": [{"name": "slow_x"}]}));
    assert!(!advert(UpstreamTasks::Auto, false).rewrite(&mut l));
}

#[test]
fn a_backend_that_advertises_tasks_is_passed_through_and_the_facade_steps_aside() {
    let a = advert(UpstreamTasks::Auto, true);
    let mut native = result(json!({"protocolVersion": "2025-11-25",
        "capabilities": {"tasks": {"list": {}}}}));
    let before = native.clone();
    assert!(!a.rewrite(&mut native));
    assert_eq!(native, before);
    assert!(a.plan.native() && !a.plan.facade());
    let mut l = result(json!({"tools": [{"name": "slow_x"}]}));
    assert!(
        !a.rewrite(&mut l),
        "no taskSupport once the backend has its own"
    );
    // An explicit facade stays.
    let forced = advert(UpstreamTasks::Facade, true);
    let mut native = result(json!({"supportedVersions": [],
        "capabilities": {"extensions": {TASKS_EXTENSION: {}}}}));
    assert!(!forced.rewrite(&mut native));
    assert!(forced.plan.facade());
}
