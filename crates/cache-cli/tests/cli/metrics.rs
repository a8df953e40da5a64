//! `metrics`: list, show by id or unique prefix (ambiguous and unknown prefixes), dump to stdout
//! and to a file, clean with and without --dry-run; and that reading creates no tag.

use std::time::{Duration, SystemTime};

use cache_core::{Coordinator, Environment, UserCacheConfig};
use cache_metrics::{MetricsCache, SessionId, SessionMetrics};
use serde_json::Value;

use crate::support::{DAY, Sandbox, exists};

const OLD: &str = "aaaa1111-0000-4000-8000-000000000001";
const RECENT: &str = "aaaa2222-0000-4000-8000-000000000002";
const OTHER: &str = "bbbb3333-0000-4000-8000-000000000003";

/// Records three sessions through cache-metrics, as a program would: OLD started 10 days ago,
/// RECENT 2 hours ago, OTHER 1 hour ago.
fn sandbox_with_sessions() -> Sandbox {
    let sandbox = Sandbox::new();
    let config = UserCacheConfig {
        cache_path: Some(sandbox.root()),
        ..UserCacheConfig::default()
    };
    let coordinator = Coordinator::with_environment(Environment::from_pairs::<&str, &str>([]));
    let metrics = MetricsCache::open(&coordinator, &config).expect("open the metrics tag");
    let now = SystemTime::now();
    for (id, command, age, status) in [
        (OLD, "layout compile", 10 * DAY, 0),
        (RECENT, "firmware build", Duration::from_secs(7200), 1),
        (OTHER, "layout show", Duration::from_secs(3600), 0),
    ] {
        let started = now - age;
        let mut session =
            SessionMetrics::new(SessionId::parse(id).expect("an id"), command, started);
        session.increment("layers", 3);
        session.finish(started + Duration::from_millis(1500), status);
        metrics.record(&session).expect("record a session");
    }
    coordinator.reset().expect("flush the sessions");
    sandbox
}

fn ids(rows: &Value) -> Vec<String> {
    rows.as_array()
        .expect("an array of sessions")
        .iter()
        .map(|row| row["session_id"].as_str().expect("an id").to_owned())
        .collect()
}

#[test]
fn metrics_list_is_newest_first_and_limited() {
    let sandbox = sandbox_with_sessions();
    let all = sandbox.json(&["metrics", "list", "--json"]);
    assert_eq!(ids(&all["sessions"]), [OTHER, RECENT, OLD]);
    assert_eq!(all["total"], 3);
    assert_eq!(all["sessions"][1]["exit_status"], 1);
    assert_eq!(all["sessions"][1]["duration_ms"], 1500);

    let limited = sandbox.run(&["metrics", "list", "--limit", "2", "--json"]);
    limited
        .expect_code(0)
        .expect_stderr(&["showing 2 of 3 sessions"]);
    assert_eq!(ids(&limited.json()["sessions"]), [OTHER, RECENT]);

    let text = sandbox.run(&["metrics", "list"]);
    text.expect_code(0);
    assert!(
        text.stdout().contains("firmware build"),
        "{}",
        text.stdout()
    );
}

#[test]
fn metrics_show_finds_a_session_by_a_unique_prefix() {
    let sandbox = sandbox_with_sessions();
    let session = sandbox.json(&["metrics", "show", "aaaa2", "--json"]);
    assert_eq!(session["session_id"], RECENT);
    assert_eq!(session["command"], "firmware build");
    assert_eq!(session["counters"]["layers"], 3);
    // The full id, in upper case, works too.
    let session = sandbox.json(&["metrics", "show", &OTHER.to_uppercase(), "--json"]);
    assert_eq!(session["session_id"], OTHER);
}

#[test]
fn metrics_show_of_an_ambiguous_prefix_lists_the_candidates() {
    let sandbox = sandbox_with_sessions();
    let run = sandbox.run(&["metrics", "show", "aaaa", "--json"]);
    run.expect_code(2)
        .expect_stderr(&["ambiguous", OLD, RECENT]);
    let error = &run.json()["error"];
    assert_eq!(error["kind"], "usage");
    let message = error["message"].as_str().expect("a message");
    assert!(
        message.contains(OLD) && message.contains(RECENT),
        "{message}"
    );
    assert!(!message.contains(OTHER), "{message}");
}

#[test]
fn metrics_show_of_an_unknown_id_exits_1() {
    let sandbox = sandbox_with_sessions();
    let run = sandbox.run(&["metrics", "show", "cccc", "--json"]);
    run.expect_code(1);
    assert_eq!(run.json()["error"]["kind"], "not_found");
}

#[test]
fn metrics_dump_writes_every_session_to_stdout_or_a_file() {
    let sandbox = sandbox_with_sessions();
    let stdout = sandbox.json(&["metrics", "dump"]);
    assert_eq!(ids(&stdout), [OTHER, RECENT, OLD]);

    let file = sandbox.path("dump.json");
    let file_text = file.to_str().expect("a UTF-8 temp path");
    let report = sandbox.json(&["metrics", "dump", "-o", file_text, "--json"]);
    assert_eq!(report["sessions"], 3);
    assert_eq!(report["file"], file_text);
    let written: Value =
        serde_json::from_slice(&std::fs::read(&file).expect("the dump file")).expect("JSON");
    assert_eq!(written, stdout);
}

#[test]
fn metrics_clean_removes_old_sessions_and_dry_run_only_says_which() {
    let sandbox = sandbox_with_sessions();
    let dry = sandbox.json(&[
        "metrics",
        "clean",
        "--older-than",
        "90m",
        "--dry-run",
        "--json",
    ]);
    assert_eq!(dry["dry_run"], true);
    assert_eq!(ids(&dry["removed"]), [RECENT, OLD]);
    assert_eq!(sandbox.json(&["metrics", "list", "--json"])["total"], 3);

    let done = sandbox.json(&["metrics", "clean", "--older-than", "7d", "--json"]);
    assert_eq!(ids(&done["removed"]), [OLD]);
    assert_eq!(
        ids(&sandbox.json(&["metrics", "list", "--json"])["sessions"]),
        [OTHER, RECENT]
    );
}

#[test]
fn metrics_commands_on_a_root_without_sessions_create_nothing() {
    let sandbox = Sandbox::new();
    let list = sandbox.json(&["metrics", "list", "--json"]);
    assert_eq!(list["total"], 0);
    assert_eq!(sandbox.json(&["metrics", "dump"]), Value::Array(Vec::new()));
    let clean = sandbox.json(&["metrics", "clean", "--older-than", "1d", "--json"]);
    assert_eq!(clean["removed"], Value::Array(Vec::new()));
    sandbox.run(&["metrics", "show", "aaaa"]).expect_code(1);
    assert!(
        !exists(&sandbox.root()),
        "a reading command created the root"
    );
}
