//! The `[redis]` connection against a real redis-server: commands answer, a killed Redis opens
//! the connection's breaker (commands then fail at once instead of waiting), and a restarted one
//! is found again by the breaker's probe, with no restart of the sidecar.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use mcp_e2e_tests::redis_server::RedisServer;
use mcp_sidecar::redis_conn::{RedisConn, RedisError};
use mcp_sidecar::resilience::State;

async fn set_get(conn: &RedisConn, value: &str) -> Result<String, RedisError> {
    let key = conn.key("test:value");
    let value = value.to_owned();
    conn.run("test_set_get", |mut c| async move {
        redis::cmd("SET")
            .arg(&key)
            .arg(&value)
            .query_async::<()>(&mut c)
            .await?;
        redis::cmd("GET")
            .arg(&key)
            .query_async::<String>(&mut c)
            .await
    })
    .await
}

#[tokio::test]
async fn a_killed_redis_opens_the_breaker_and_a_restarted_one_is_found_again() {
    let Some(mut redis) = RedisServer::start().await else {
        return;
    };
    let config = toml::from_str(&format!(
        "url = \"{}\"\nbreaker_failures = 2\nbreaker_open_duration = \"50ms\"\nkey_prefix = \"t1:\"",
        redis.url()
    ))
    .unwrap();
    let registry = prometheus::Registry::new();
    let conn = RedisConn::new(&config, &registry).unwrap();
    assert_eq!(set_get(&conn, "one").await.unwrap(), "one");
    assert!(redis.command("GET t1:test:value").await.contains("one"));
    assert_eq!(conn.report()["state"], "up");

    redis.kill().await;
    for _ in 0..2 {
        assert!(set_get(&conn, "two").await.is_err());
    }
    assert_eq!(conn.state(), State::Open);
    assert_eq!(conn.report()["state"], "down");
    assert!(matches!(
        set_get(&conn, "two").await,
        Err(RedisError::Unavailable { .. })
    ));

    // AOF kept the acknowledged write; the probe after the open period reconnects.
    redis.restart().await;
    let mut value = None;
    for _ in 0..200 {
        match set_get(&conn, "three").await {
            Ok(v) => {
                value = Some(v);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(25)).await,
        }
    }
    assert_eq!(value.as_deref(), Some("three"), "redis was not found again");
    assert_eq!(conn.state(), State::Closed);
}
