#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

fn config(url: &str) -> RedisConfig {
    toml::from_str(&format!(
        "url = \"{url}\"\nbreaker_failures = 3\nbreaker_open_duration = \"1h\"\ncommand_timeout = \"2s\""
    ))
    .unwrap()
}

/// A loopback port nothing listens on (bound, then closed).
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

async fn ping(conn: &RedisConn) -> Result<String, RedisError> {
    conn.run("ping", |mut c| async move {
        redis::cmd("PING").query_async::<String>(&mut c).await
    })
    .await
}

#[tokio::test]
async fn nothing_is_dialled_at_start() {
    let registry = Registry::new();
    let conn = RedisConn::new(
        &config(&format!("redis://127.0.0.1:{}", closed_port())),
        &registry,
    );
    assert!(conn.is_ok(), "a down redis must not stop the start");
    assert_eq!(conn.unwrap().state(), State::Closed);
}

#[tokio::test]
async fn consecutive_failures_open_the_breaker_and_then_fail_without_dialling() {
    let registry = Registry::new();
    let conn = RedisConn::new(
        &config(&format!("redis://127.0.0.1:{}", closed_port())),
        &registry,
    )
    .unwrap();
    for _ in 0..3 {
        let err = ping(&conn).await.unwrap_err();
        assert!(
            matches!(err, RedisError::Command { .. } | RedisError::Timeout { .. }),
            "{err}"
        );
    }
    assert_eq!(conn.state(), State::Open);
    let err = ping(&conn).await.unwrap_err();
    assert!(matches!(err, RedisError::Unavailable { .. }), "{err}");
    assert_eq!(conn.report()["state"], "down");
    assert!(conn.report()["error"].is_string());
    let families = registry.gather();
    let unavailable = families
        .iter()
        .find(|f| f.name() == "mcp_sidecar_redis_commands_total")
        .unwrap()
        .get_metric()
        .iter()
        .find(|m| m.get_label().iter().any(|l| l.value() == "unavailable"))
        .map(|m| m.get_counter().get_value());
    assert_eq!(unavailable, Some(1.0));
    assert!(matches!(
        conn.pubsub().await.err(),
        Some(RedisError::Unavailable { .. })
    ));
}

#[tokio::test]
async fn a_stalled_server_costs_a_command_its_timeout_not_more() {
    // Accepts connections and never answers: the command must end at its deadline.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let mut cfg = config(&format!("redis://127.0.0.1:{port}"));
    cfg.command_timeout = Duration::from_millis(50);
    cfg.connect_timeout = Duration::from_millis(50);
    let conn = RedisConn::new(&cfg, &Registry::new()).unwrap();
    let err = ping(&conn).await.unwrap_err();
    assert!(
        matches!(err, RedisError::Timeout { .. } | RedisError::Command { .. }),
        "{err}"
    );
    held.abort();
}

#[test]
fn keys_carry_the_prefix() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let mut cfg = config("redis://127.0.0.1:6379/2");
    cfg.key_prefix = "tenant-a:".into();
    let conn = RedisConn::new(&cfg, &Registry::new()).unwrap();
    assert_eq!(conn.key("jobs:1"), "tenant-a:jobs:1");
}

#[test]
fn validation_names_the_field() {
    let bad = |toml_text: &str| {
        let cfg: RedisConfig = toml::from_str(toml_text).unwrap();
        cfg.validate().unwrap_err().to_string()
    };
    assert!(bad("url = \"http://x\"").contains("redis.url"));
    assert!(bad("url = \"redis://x/abc\"").contains("database number"));
    assert!(bad("url = \"redis://x\"\nca_file = \"/etc/hosts\"").contains("redis.ca_file"));
    assert!(bad("url = \"redis://x\"\ncommand_timeout = \"0s\"").contains("redis.command_timeout"));
    assert!(bad("url = \"redis://x\"\nbreaker_failures = 0").contains("redis.breaker_failures"));
    assert!(bad("url = \"redis://x\"\nkey_prefix = \"\"").contains("redis.key_prefix"));
    let shown = bad("url = \"ftp://user:hunter2@x\"");
    assert!(!shown.contains("hunter2"), "{shown}");
}
