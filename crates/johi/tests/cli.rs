//! The `johi` binary as an operator runs it.

// Test code: helpers outside #[test] functions may unwrap and block (no runtime here).
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn johi() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_johi"));
    // Every variable an example references, so that examples validate without real keys.
    for var in [
        "OPENAI_API_KEY",
        "GROQ_API_KEY",
        "AZURE_OPENAI_API_KEY",
        "ANTHROPIC_API_KEY",
        "GEMINI_API_KEY",
        "COHERE_API_KEY",
    ] {
        cmd.env(var, "sk-example");
    }
    cmd.env("JOHI_ADMIN_TOKEN", "example-admin-token-0123456789");
    cmd.env("JOHI_LOG", "warn");
    cmd
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn free_port() -> u16 {
    free_ports::<1>()[0]
}

/// `N` distinct free ports: all are held until all are chosen, so that two calls in a row
/// cannot hand out the same port (a gateway and its mock would then fight over it).
fn free_ports<const N: usize>() -> [u16; N] {
    let held: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    std::array::from_fn(|i| held[i].local_addr().unwrap().port())
}

#[test]
fn every_example_passes_check() {
    let mut checked = 0;
    for dir in ["examples", "bench"] {
        let Ok(entries) = std::fs::read_dir(repo_root().join(dir)) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
                continue;
            }
            let out = johi()
                .args(["check", "--config"])
                .arg(&path)
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "{}: {}{}",
                path.display(),
                stdout,
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                stdout.contains("pipeline (in order):") && stdout.contains("models:"),
                "{stdout}"
            );
            if path.ends_with("multi-provider.yaml") {
                assert!(
                    stdout.contains("admin API: http://127.0.0.1:9090/admin/v1 (token required)"),
                    "{stdout}"
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 3, "examples were found and checked ({checked})");
}

#[test]
fn check_says_where_limits_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("limits.yaml");
    let base = r#"
providers:
  p: { base_url: "http://127.0.0.1:1/v1" }
models:
  m: { targets: [{ provider: p, model: x }] }
auth: { public_routes: ["*"] }
limits:
  - { id: rpm, scope: model, window: minute, measure: requests, limit: 10 }
"#;
    let check = |extra: &str| {
        std::fs::write(&path, format!("{base}{extra}")).unwrap();
        let out = johi()
            .args(["check", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let memory = check("");
    assert!(
        memory.contains("limits: 1, counted in this process's memory"),
        "{memory}"
    );
    let redis = check(
        "limit_store: { redis: \"redis://:secret@127.0.0.1:1\", on_outage: fail_closed, prefetch: \"0.5%\" }\n",
    );
    assert!(
        redis.contains(
            "limits: 1, counted in Redis (prefix johi, fail-closed on an outage, counted ahead 0.5% of each limit per trip)"
        ),
        "{redis}"
    );
    assert!(
        !redis.contains("secret"),
        "the URL is never printed: {redis}"
    );
}

#[test]
fn check_lists_every_error_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        r#"
providers:
  openai: { base_url: "https://api.openai.com/v1", api_key: "${DEFINITELY_UNSET_VAR_FOR_TEST}" }
"#,
    )
    .unwrap();
    let out = johi()
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains(
        "providers.openai.api_key: environment variable DEFINITELY_UNSET_VAR_FOR_TEST is not set"
    ));

    std::fs::write(
        &path,
        r#"
providers:
  openai: { base_url: "https://api.openai.com/v1" }
models:
  a: { targets: [{ provider: opnai, model: x }] }
  b: { targets: [] }
pipeline: [enrich, route, validate, endpoint, credentials, translate]
"#,
    )
    .unwrap();
    let out = johi()
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("models.a.targets[0].provider: unknown provider 'opnai' (known: openai)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("models.b.targets: a model needs at least one target"),
        "{stderr}"
    );

    // The config is valid but the order is not: every violation, both processors named.
    std::fs::write(
        &path,
        r#"
auth: { public_routes: ["*"] }
providers:
  openai: { base_url: "https://api.openai.com/v1" }
models:
  a: { targets: [{ provider: openai, model: x }] }
pipeline: [enrich, route, validate, endpoint, credentials, translate]
"#,
    )
    .unwrap();
    let out = johi()
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("'route' reads 'model' but runs before 'validate', which writes it"),
        "{stderr}"
    );
    assert!(
        stderr.contains("'credentials' must be the last to change the request, but 'translate'"),
        "{stderr}"
    );
}

#[test]
fn version_and_help() {
    let out = johi().arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("johi "));
    let out = johi().arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for sub in ["serve", "check", "mock-upstream"] {
        assert!(help.contains(sub), "{help}");
    }
}

fn wait_for(url: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(body) = http_get(url) {
            return body;
        }
        assert!(Instant::now() < deadline, "{url} never answered");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A minimal HTTP/1.0 GET, so this test needs no HTTP client crate.
fn http_get(url: &str) -> std::io::Result<String> {
    use std::io::Write;
    let rest = url.strip_prefix("http://").unwrap_or(url);
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut stream = std::net::TcpStream::connect(host)?;
    write!(stream, "GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n")?;
    let mut out = String::new();
    stream.read_to_string(&mut out)?;
    Ok(out)
}

#[test]
fn serve_answers_then_drains_and_exits_0_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let [port, mock_port] = free_ports();
    let config = dir.path().join("johi.yaml");
    std::fs::write(
        &config,
        format!(
            r#"
server: {{ listen: "127.0.0.1:{port}" }}
auth: {{ public_routes: ["*"] }}
dev: {{ mock_upstream: "127.0.0.1:{mock_port}" }}
providers:
  mock: {{ base_url: "http://127.0.0.1:{mock_port}/v1" }}
models:
  m: {{ targets: [{{ provider: mock, model: mock-small }}] }}
audit: {{ path: audit.jsonl }}
"#
        ),
    )
    .unwrap();
    let mut child = johi()
        .args(["serve", "--config"])
        .arg(&config)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let models = wait_for(&format!("http://127.0.0.1:{port}/v1/models"));
    assert!(
        models.starts_with("HTTP/1.0 200") && models.contains("\"id\":\"m\""),
        "{models}"
    );
    assert_eq!(exit_after_sigterm(&mut child), Some(0));
}

/// Sends SIGTERM to `child` and waits (10 s at most) for its exit code.
fn exit_after_sigterm(child: &mut Child) -> Option<i32> {
    let pid = child.id().to_string();
    let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(sent.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(exit) = child.try_wait().unwrap() {
            return exit.code();
        }
        assert!(Instant::now() < deadline, "johi did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Writes a config on `port` with the in-process mock on `mock_port` and the `models` block
/// given. Polling is effectively off (1 h), so only SIGHUP applies a change.
fn write_reloadable(config: &Path, port: u16, mock_port: u16, models: &str) {
    std::fs::write(
        config,
        format!(
            r#"
server: {{ listen: "127.0.0.1:{port}", reload_poll_interval: 1h }}
auth: {{ public_routes: ["*"] }}
dev: {{ mock_upstream: "127.0.0.1:{mock_port}" }}
providers:
  mock: {{ base_url: "http://127.0.0.1:{mock_port}/v1" }}
models:
{models}
"#
        ),
    )
    .unwrap()
}

#[test]
fn sighup_reloads_the_config_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let [port, mock_port] = free_ports();
    let config = dir.path().join("johi.yaml");
    let write = |models: &str| write_reloadable(&config, port, mock_port, models);
    write("  before: { targets: [{ provider: mock, model: mock-small }] }");
    let mut child = johi()
        .args(["serve", "--config"])
        .arg(&config)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/v1/models");
    assert!(wait_for(&url).contains("\"id\":\"before\""));
    write("  after: { targets: [{ provider: mock, model: mock-small }] }");
    Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let body = http_get(&url).unwrap();
        if body.contains("\"id\":\"after\"") {
            break;
        }
        assert!(Instant::now() < deadline, "SIGHUP did not reload: {body}");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    let _ = child.wait();
}

/// `--worker-threads 1` runs the gateway on tokio's current-thread runtime: everything on
/// one thread (the in-process mock too). It answers, streams, reloads on SIGHUP, and on
/// SIGTERM lets a stream in flight finish before exiting 0, as the multi-thread runtime does.
#[test]
fn one_worker_serves_streams_reloads_and_drains_on_one_thread() {
    let dir = tempfile::tempdir().unwrap();
    let [port, mock_port] = free_ports();
    let config = dir.path().join("johi.yaml");
    let write = |model: &str| {
        let models = format!("  {model}: {{ targets: [{{ provider: mock, model: mock-small }}] }}");
        write_reloadable(&config, port, mock_port, &models)
    };
    write("m");
    let child = johi()
        .args(["serve", "--worker-threads", "1", "--config"])
        .arg(&config)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut gateway = Gateway(child);
    let url = format!("http://127.0.0.1:{port}/v1/models");
    assert!(wait_for(&url).contains("\"id\":\"m\""));
    assert_eq!(chat(port, "unused"), 200);

    // A slow stream (10 words, 100 ms apart) is in flight when SIGTERM arrives.
    let stream = std::thread::spawn(move || {
        let body = r#"{"model":"m","stream":true,"mock":{"chunk_delay_ms":100},
                       "messages":[{"role":"user","content":"hi"}]}"#;
        http(port, "POST", "/v1/chat/completions", "unused", body).unwrap()
    });
    std::thread::sleep(Duration::from_millis(300));
    write("renamed");
    let pid = gateway.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(5);
    while !http_get(&url).unwrap().contains("\"id\":\"renamed\"") {
        assert!(Instant::now() < deadline, "SIGHUP did not reload");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The gateway exits only after draining, so the stream has ended by then.
    assert_eq!(exit_after_sigterm(&mut gateway.0), Some(0));
    let (status, events) = stream.join().unwrap();
    assert_eq!(status, 200);
    assert!(events.trim_end().ends_with("data: [DONE]"), "{events}");
}

#[test]
fn mock_upstream_subcommand_serves_openai_models() {
    let port = free_port();
    let mut child = johi()
        .args(["mock-upstream", "--port", &port.to_string()])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let body = wait_for(&format!("http://127.0.0.1:{port}/v1/models"));
    child.kill().unwrap();
    let _ = child.wait();
    assert!(body.contains("\"object\":\"list\""), "{body}");
}

#[test]
fn usage_answers_from_the_configured_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("johi.yaml");
    std::fs::write(
        &path,
        r#"
auth: { public_routes: ["*"] }
providers:
  p: { base_url: "http://127.0.0.1:1/v1" }
models:
  m: { targets: [{ provider: p, model: x }] }
ledger: { sqlite: usage.db }
"#,
    )
    .unwrap();
    let out = with_config(&["usage", "spend", "--group-by", "team,model"], &path);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("team"), "{stdout}");
    assert!(stdout.contains("cost_usd"), "{stdout}");
    assert!(
        dir.path().join("usage.db").exists(),
        "the ledger file was created"
    );

    let out = with_config(&["usage", "chargeback", "--month", "2026-11"], &path);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("month,organization,team,project"));

    let out = with_config(&["usage", "chargeback", "--month", "November"], &path);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--month"));
}

/// Runs `johi ARGS --config CONFIG`.
fn with_config(args: &[&str], config: &Path) -> std::process::Output {
    johi()
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap()
}

// --- `johi keys create|list|revoke` against a live `johi serve` ---------------------------

/// The admin token of the `johi keys` test.
const TOKEN: &str = "cli-test-admin-token-0123456789";

/// A minimal HTTP/1.0 request, so this test needs no HTTP client crate: status and body.
fn http(
    port: u16,
    method: &str,
    path: &str,
    bearer: &str,
    body: &str,
) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {bearer}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut out = String::new();
    stream.read_to_string(&mut out)?;
    let status = out.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

fn chat(port: u16, key: &str) -> u16 {
    let body = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
    http(port, "POST", "/v1/chat/completions", key, body)
        .unwrap()
        .0
}

struct Gateway(Child);

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn keys(args: &[&str], admin_port: u16, token: Option<&str>) -> Output {
    admin_command("keys", args, admin_port, token)
}

/// `johi <command> <args…> --admin-url …` with the token in `JOHI_ADMIN_TOKEN` (or none).
fn admin_command(command: &str, args: &[&str], admin_port: u16, token: Option<&str>) -> Output {
    let mut cmd = johi();
    cmd.arg(command)
        .args(args)
        .arg("--admin-url")
        .arg(format!("http://127.0.0.1:{admin_port}"));
    match token {
        Some(token) => cmd.env("JOHI_ADMIN_TOKEN", token),
        None => cmd.env_remove("JOHI_ADMIN_TOKEN"),
    };
    cmd.output().unwrap()
}

/// A `johi serve` with the admin API on, its key store next to its config in `dir`: the
/// process and the public and admin ports, once the admin API answers.
fn serve_with_admin(dir: &std::path::Path) -> (Gateway, u16, u16) {
    let [port, admin_port, mock_port] = free_ports();
    let config = dir.join("johi.yaml");
    std::fs::write(
        &config,
        format!(
            r#"
server: {{ listen: "127.0.0.1:{port}" }}
admin: {{ listen: "127.0.0.1:{admin_port}", token: "${{JOHI_ADMIN_TOKEN}}" }}
dev: {{ mock_upstream: "127.0.0.1:{mock_port}" }}
providers:
  mock: {{ base_url: "http://127.0.0.1:{mock_port}/v1" }}
models:
  m: {{ targets: [{{ provider: mock, model: mock-small }}] }}
tenants: {{ acme: {{ teams: {{ search: {{}} }} }} }}
auth: {{ api_keys: [] }}
"#
        ),
    )
    .unwrap();
    let gateway = Gateway(
        johi()
            .env("JOHI_ADMIN_TOKEN", TOKEN)
            .args(["serve", "--config"])
            .arg(&config)
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while http(admin_port, "GET", "/admin/v1/keys", TOKEN, "")
        .map(|r| r.0)
        .ok()
        != Some(200)
    {
        assert!(Instant::now() < deadline, "the admin API never answered");
        std::thread::sleep(Duration::from_millis(50));
    }
    (gateway, port, admin_port)
}

#[test]
fn keys_create_list_revoke_drive_a_running_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let (_gateway, port, admin_port) = serve_with_admin(dir.path());
    assert!(
        dir.path().join("johi-keys.db").exists(),
        "the default key store sits next to the config"
    );

    // Without the token, or with a wrong one: refused, exit 1, the API's message on stderr.
    let out = keys(&["list"], admin_port, None);
    assert_eq!(
        out.status.code(),
        Some(2),
        "the token is a required argument"
    );
    let out = keys(&["list"], admin_port, Some("not-the-admin-token"));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("401"),
        "{out:?}"
    );

    let out = keys(
        &[
            "create",
            "--id",
            "cli-key",
            "--owner",
            "acme/search",
            "--metadata",
            "ticket=OPS-9",
        ],
        admin_port,
        Some(TOKEN),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let secret = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(
        secret.starts_with("sk-johi-") && !secret.contains('\n'),
        "{secret}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("shown once"));
    assert_eq!(chat(port, &secret), 200);

    let out = keys(&["list"], admin_port, Some(TOKEN));
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success());
    assert!(
        table.contains("cli-key") && table.contains("acme/search") && table.contains("active"),
        "{table}"
    );
    assert!(!table.contains(&secret), "{table}");
    let out = keys(&["list", "--json"], admin_port, Some(TOKEN));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list["data"][0]["metadata"]["ticket"], "OPS-9");

    let out = keys(&["create", "--owner", "initech"], admin_port, Some(TOKEN));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("400 owner: unknown organization 'initech'"),
        "{out:?}"
    );

    let out = keys(&["revoke", "cli-key"], admin_port, Some(TOKEN));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("revoked cli-key"));
    assert_eq!(chat(port, &secret), 401);
    let out = keys(&["list"], admin_port, Some(TOKEN));
    assert!(String::from_utf8_lossy(&out.stdout).contains("revoked"));
    let out = keys(&["revoke", "no-such-key"], admin_port, Some(TOKEN));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("404"));
}

#[test]
fn tenants_create_list_delete_drive_a_running_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let (_gateway, port, admin_port) = serve_with_admin(dir.path());
    let tenants = |args: &[&str]| admin_command("tenants", args, admin_port, Some(TOKEN));
    let stderr = |out: &Output| String::from_utf8_lossy(&out.stderr).into_owned();

    for path in ["initech", "initech/labs"] {
        let out = tenants(&["create", path, "--allowed-models", "m"]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            format!("created {path}")
        );
    }
    let out = tenants(&["create", "umbrella/x"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("400"), "{out:?}");

    let out = tenants(&["list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    let row = |path: &str| {
        table
            .lines()
            .find(|l| l.split_whitespace().next() == Some(path))
            .map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>())
    };
    assert_eq!(row("acme/search"), Some(vec!["config", "*"]), "{table}");
    assert_eq!(row("initech/labs"), Some(vec!["runtime", "m"]), "{table}");

    // A key for the run-time team works at once, and holds the team until revoked.
    let out = keys(
        &["create", "--id", "lab", "--owner", "initech/labs"],
        admin_port,
        Some(TOKEN),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let secret = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(chat(port, &secret), 200);
    let out = tenants(&["delete", "initech/labs"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("409"), "{out:?}");
    let out = tenants(&["delete", "acme"]);
    assert!(stderr(&out).contains("409"), "{out:?}");
    assert!(keys(&["revoke", "lab"], admin_port, Some(TOKEN))
        .status
        .success());
    let out = tenants(&["delete", "initech/labs"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "deleted initech/labs"
    );
    let out = tenants(&["list", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let initech = &list["data"][1];
    assert_eq!(
        (&initech["path"], &initech["source"], &initech["teams"]),
        (
            &json_str("initech"),
            &json_str("runtime"),
            &serde_json::json!([])
        )
    );
}

fn json_str(text: &str) -> serde_json::Value {
    serde_json::Value::String(text.to_owned())
}
