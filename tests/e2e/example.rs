//! The example flow from README runs and leaves the expected files.

use crate::support::{Env, flow_head};
use std::fs;
use std::path::Path;
use stepback::exit;

#[test]
fn example_flow_deploys_the_release() {
    let env = Env::new();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/webapp");
    fs::copy(example.join("flow.toml"), env.path("flow.toml")).unwrap();
    env.mkdir("app");
    env.mkdir("dist");
    fs::copy(
        example.join("dist/webapp-1.4.2.tar.gz"),
        env.path("dist/webapp-1.4.2.tar.gz"),
    )
    .unwrap();

    env.stepback(&["run", "flow.toml"])
        .expect_code(exit::SUCCESS)
        .expect_stdout("3 files, 78 bytes to /app/releases/1.4.2")
        .expect_stdout("ln exited with 0, 1 change(s)")
        .expect_stdout("the inline script exited with 0")
        .expect_stdout("flow webapp succeeded");

    let app = env.path("app");
    assert_eq!(fs::read_to_string(app.join("CURRENT")).unwrap(), "1.4.2\n");
    assert_eq!(
        fs::read_link(app.join("current")).unwrap(),
        Path::new("releases/1.4.2")
    );
    assert_eq!(
        fs::read_to_string(app.join("releases/1.4.2/static/index.html")).unwrap(),
        "<h1>webapp 1.4.2</h1>\n"
    );
    assert!(app.join("releases/1.4.2/bin/webapp").is_file());
    let config = fs::read_to_string(app.join("config/webapp.toml")).unwrap();
    assert!(config.contains("release = \"1.4.2\""), "{config}");
}

#[test]
fn json_output_reports_every_event() {
    let env = Env::new();
    env.mkdir("app");
    let flow = env.flow(
        flow_head("json", &["app"], &[])
            + r#"
[[steps]]
name = "write"
uses = "builtin:write-file"
mounts = ["app"]
with = { path = "/app/a.txt", content = "a" }
"#,
    );
    let run = env.stepback(&["--output", "json", "run", flow.to_str().unwrap()]);
    run.expect_code(exit::SUCCESS);
    let events: Vec<serde_json::Value> = run
        .stdout()
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    let kinds: Vec<&str> = events.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(kinds.first(), Some(&"plugin-loaded"));
    assert!(
        kinds.contains(&"flow-started") && kinds.contains(&"step-log"),
        "{kinds:?}"
    );
    let finished = events.iter().find(|e| e["event"] == "step-finished").unwrap();
    assert_eq!(finished["status"], "succeeded");
    assert_eq!(events.last().unwrap()["status"], "succeeded");
    // Every event of the run, step logs included, names the run and says
    // when it happened, in order; loading the plugin was before the run.
    assert!(events[0]["run_id"].is_null());
    let started = events.iter().position(|e| e["event"] == "flow-started").unwrap();
    let run_id = events[started]["run_id"].as_str().unwrap();
    assert!(run_id.len() > 10, "{run_id}");
    let mut last = std::time::SystemTime::UNIX_EPOCH;
    for e in &events[started..] {
        assert_eq!(e["run_id"], run_id, "{e}");
        let time = humantime::parse_rfc3339(e["time"].as_str().unwrap()).expect("RFC 3339");
        assert!(time >= last, "events out of order: {e}");
        last = time;
    }
}

/// README's failure-model example: a good release deploys and starts;
/// a bad one is stopped, reverted, and the previous one runs again.
#[test]
fn deploy_service_example_rolls_back_to_the_previous_release() {
    let env = Env::new();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    env.mkdir("deploy-service/app");
    env.mkdir("deploy-service/services");
    env.mkdir("deploy-service/db");
    env.mkdir("webapp/dist");
    fs::copy(
        examples.join("deploy-service/flow.toml"),
        env.path("deploy-service/flow.toml"),
    )
    .unwrap();
    fs::copy(
        examples.join("webapp/dist/webapp-1.4.2.tar.gz"),
        env.path("webapp/dist/webapp-1.4.2.tar.gz"),
    )
    .unwrap();
    let service = || fs::read_to_string(env.path("deploy-service/services/webapp")).unwrap();
    env.stepback(&["run", "deploy-service/flow.toml"])
        .expect_code(exit::SUCCESS)
        .expect_stdout("flow deploy-service succeeded");
    assert_eq!(service(), "running 1.4.2\n");
    let db = || fs::read_to_string(env.path("deploy-service/db/data.db")).unwrap();
    assert_eq!(db(), "schema for 1.4.2\n");
    let app = env.path("deploy-service/app");
    let before = crate::support::snapshot(&app);

    let bad = env.stepback(&[
        "--output",
        "json",
        "run",
        "deploy-service/flow.toml",
        "--param",
        "release=1.4.3",
        "--param",
        "healthy=no",
    ]);
    bad.expect_code(exit::FLOW_FAILED);
    let order: Vec<String> = bad
        .events()
        .iter()
        .filter_map(|e| match e["event"].as_str()? {
            "action-started" => Some(e["action"].as_str()?.to_owned()),
            "rollback-started" => Some("(revert)".to_owned()),
            _ => None,
        })
        .collect();
    assert_eq!(
        order,
        [
            "stop new service",
            "restore the database",
            "(revert)",
            "start previous version"
        ]
    );
    assert_eq!(service(), "running 1.4.2\n", "the previous release runs again");
    assert_eq!(db(), "schema for 1.4.2\n", "the database is restored");
    crate::support::assert_same(
        &before,
        &crate::support::snapshot(&app),
        "the app after the rollback",
    );
    assert_eq!(
        fs::read_link(app.join("current")).unwrap(),
        Path::new("releases/1.4.2")
    );
}
