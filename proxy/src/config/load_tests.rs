use super::*;

fn no_env(_: &str) -> Option<String> {
    None
}

fn err(text: &str) -> ConfigError {
    parse(text, Some(Path::new("sidecar.toml")), &no_env).unwrap_err()
}

const TWO_UPSTREAMS: &str = "\
[[upstream]]
name = \"a\"
url = \"http://127.0.0.1:8000/mcp\"

[[upstream]]
name = \"b\"
url = \"http://127.0.0.1:8001/mcp\"
[upstream.breaker]
open_duration = \"5 sekunden\"
";

#[test]
fn a_bad_duration_names_file_line_column_full_path_and_the_format() {
    let e = err(TWO_UPSTREAMS);
    let text = e.to_string();
    assert!(
        text.starts_with("upstream[1].breaker.open_duration: "),
        "{text}"
    );
    assert!(text.contains("\"30s\", \"5m\""), "{text}");
    assert_eq!(
        e.location(),
        Some(&Location {
            file: Some("sidecar.toml".into()),
            line: 9,
            column: 17
        }),
        "{text}"
    );
    assert!(text.ends_with("\n  --> sidecar.toml:9:17"), "{text}");
}

#[test]
fn a_duration_written_as_a_number_shows_the_format() {
    let text = err("[shutdown]\ngrace_period = 30\n[[upstream]]\nname = \"a\"\nurl = \"http://127.0.0.1:8000/mcp\"\n")
        .to_string();
    assert!(text.starts_with("shutdown.grace_period: "), "{text}");
    assert!(text.contains("units: ns, us, ms, s, m, h, d"), "{text}");
    assert!(text.ends_with("sidecar.toml:2:16"), "{text}");
}

#[test]
fn an_unknown_key_gets_the_closest_known_one_suggested() {
    let e = err(&format!("{TWO_UPSTREAMS}\n[[upstream]]\nname = \"c\"\nurl = \"http://127.0.0.1:8002/mcp\"\nconect_timeout = \"1s\"\n")
        .replace("5 sekunden", "5s"));
    let text = e.to_string();
    assert!(
        text.starts_with("upstream[2].conect_timeout: unknown field"),
        "{text}"
    );
    assert!(text.contains("did you mean `connect_timeout`?"), "{text}");
    assert_eq!(
        e.location().map(|l| (l.line, l.column)),
        Some((14, 1)),
        "{text}"
    );
}

#[test]
fn an_unknown_key_far_from_every_known_one_gets_no_suggestion() {
    let text = err("[listen]\nzzzz = 1\n").to_string();
    assert!(text.starts_with("listen.zzzz: unknown field"), "{text}");
    assert!(!text.contains("did you mean"), "{text}");
}

#[test]
fn an_unknown_variant_gets_the_closest_one_suggested() {
    let text = err("[[upstream]]\nname = \"a\"\nurl = \"http://127.0.0.1:8000/mcp\"\n[upstream.health_check]\nkind = \"mcp-ping\"\n")
        .to_string();
    assert!(
        text.starts_with("upstream[0].health_check.kind: "),
        "{text}"
    );
    assert!(text.contains("did you mean `mcp_ping`?"), "{text}");
}

#[test]
fn a_validation_error_is_placed_at_the_value() {
    let text = TWO_UPSTREAMS
        .replace("5 sekunden", "5s")
        .replace("name = \"b\"", "name = \"a\"");
    let e = err(&text);
    assert!(e.to_string().starts_with("upstream[1].name: "), "{e}");
    assert_eq!(
        e.location().map(|l| (l.line, l.column)),
        Some((6, 8)),
        "{e}"
    );
}

#[test]
fn a_missing_env_var_is_placed_at_the_value() {
    let e = err("[[upstream]]\nname = \"a\"\nurl = \"${NOPE}\"\n");
    assert!(
        e.to_string()
            .starts_with("upstream[0].url: environment variable `NOPE`"),
        "{e}"
    );
    assert_eq!(
        e.location().map(|l| (l.line, l.column)),
        Some((3, 7)),
        "{e}"
    );
}

#[test]
fn an_inline_secret_is_placed_at_the_value() {
    let e = err("[admin]\ntoken = \"written-inline-0123456789abcdef0123\"\n");
    assert!(e.to_string().starts_with("admin.token: "), "{e}");
    assert_eq!(
        e.location().map(|l| (l.line, l.column)),
        Some((2, 9)),
        "{e}"
    );
}

#[test]
fn a_syntax_error_is_placed() {
    let e = err("[listen]\naddr = \"127.0.0.1:8080\n");
    assert_eq!(e.location().map(|l| l.line), Some(2), "{e}");
}

#[test]
fn a_key_left_at_its_default_is_placed_at_its_table() {
    // `upstream[0].tool[0].job_deadline` exists; `[[upstream.tool]]` itself is where it goes.
    let e = err(
        "[[upstream]]\nname = \"a\"\nurl = \"http://127.0.0.1:8000/mcp\"\n[[upstream.tool]]\nname = \"t\"\njob_deadline = \"0s\"\n",
    );
    assert!(
        e.to_string()
            .starts_with("upstream[0].tool[0].job_deadline: "),
        "{e}"
    );
    assert_eq!(e.location().map(|l| l.line), Some(6), "{e}");
    // Without a file, the place is still given.
    let e = parse("[listen]\nzzzz = 1\n", None, &no_env).unwrap_err();
    assert!(e.to_string().ends_with("\n  --> line 2, column 1"), "{e}");
}

#[test]
fn a_field_that_is_not_in_the_file_has_no_place() {
    let e = err("[listen]\naddr = \"127.0.0.1:8080\"\n");
    assert!(
        e.to_string().starts_with("upstream: no [[upstream]]"),
        "{e}"
    );
    assert_eq!(e.location(), None, "{e}");
}

const ONE_UPSTREAM: &str = "\
[[upstream]]
name = \"a\"
url = \"http://127.0.0.1:8000/mcp\"
";

#[test]
fn a_redis_job_store_without_a_redis_section_is_refused_naming_jobs_store() {
    let text = err(&format!("{ONE_UPSTREAM}[jobs]\nstore = \"redis\"\n")).to_string();
    assert!(text.starts_with("jobs.store: "), "{text}");
    assert!(text.contains("[redis]"), "{text}");
}

#[test]
fn a_redis_job_store_with_a_redis_section_and_a_lease_is_accepted() {
    let config = parse(
        &format!(
            "{ONE_UPSTREAM}[jobs]\nstore = \"redis\"\nlease = \"3s\"\n[redis]\nurl = \"redis://127.0.0.1:6379\"\n"
        ),
        None,
        &no_env,
    )
    .unwrap();
    assert_eq!(config.jobs.store, crate::config::StoreKind::Redis);
    assert_eq!(config.jobs.lease, std::time::Duration::from_secs(3));
}

#[test]
fn a_lease_under_a_second_is_refused_naming_jobs_lease() {
    let text = err(&format!(
        "{ONE_UPSTREAM}[jobs]\nstore = \"redis\"\nlease = \"500ms\"\n[redis]\nurl = \"redis://127.0.0.1:6379\"\n"
    ))
    .to_string();
    assert!(text.starts_with("jobs.lease: "), "{text}");
}
