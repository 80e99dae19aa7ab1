//! `johi keys create|list|revoke` against a live `johi serve`, as an operator runs them.

// Test code: helpers outside #[test] functions may unwrap and block (no runtime here).
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "cli-test-admin-token-0123456789";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn johi() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_johi"));
    cmd.env("JOHI_LOG", "warn").env_remove("JOHI_ADMIN_TOKEN");
    cmd
}

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
    let mut cmd = johi();
    cmd.arg("keys")
        .args(args)
        .arg("--admin-url")
        .arg(format!("http://127.0.0.1:{admin_port}"));
    if let Some(token) = token {
        cmd.env("JOHI_ADMIN_TOKEN", token);
    }
    cmd.output().unwrap()
}

#[test]
fn keys_create_list_revoke_drive_a_running_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let (port, admin_port, mock_port) = (free_port(), free_port(), free_port());
    let config = dir.path().join("johi.yaml");
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
    let _gateway = Gateway(
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
