#!/usr/bin/env bash
# overc as a dependency like any other: a fresh crate outside this checkout
# depends on it by path, once with default features (starts a Server, pushes
# with Client, reads the state back) and once with `default-features = false`
# (the core only: validation, perfdata, the plugin runner), and the core's
# dependency tree holds no storage, HTTP, async or TLS crate.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# One target directory for both crates: they share most dependencies.
export CARGO_TARGET_DIR="$work/target"

new_crate() { # name, dependency line, main.rs
    mkdir -p "$work/$1/src"
    cat >"$work/$1/Cargo.toml" <<TOML
[package]
name = "$1"
version = "0.1.0"
edition = "2021"
publish = false

[dependencies]
$2
TOML
    # The versions this checkout is tested with.
    cp "$root/Cargo.lock" "$work/$1/Cargo.lock"
    cat >"$work/$1/src/main.rs"
}

new_crate with-server "overc = { path = \"$root\" }" <<'RUST'
use overc::{Client, Server, ServerConfig, ServerId, ServiceReport, State};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("overc-e2e-library-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let server = Server::start(ServerConfig {
        listen: "127.0.0.1:0".into(),
        database: dir.join("overc.db"),
        ..ServerConfig::default()
    })?;
    let client = Client::new(&server.url(), ServerId::parse("web1:secret")?)?;
    client.report(60, vec![ServiceReport {
        name: "nginx".into(),
        state: State::Warn,
        info: "slow".into(),
        ..ServiceReport::default()
    }])?;
    let status = server
        .engine()
        .status(overc::store::StatusFilter::All)?
        .ok_or("no status")?;
    let status = serde_json::to_value(&status)?;
    let service = &status["servers"][0]["services"][0];
    assert_eq!(status["servers"][0]["name"], "web1");
    assert_eq!(service["name"], "nginx");
    assert_eq!(service["state"]["state"], "WARN");
    server.stop();
    std::fs::remove_dir_all(&dir)?;
    println!("with-server: pushed and read back {}", service["state"]["state"]);
    Ok(())
}
RUST
echo 'serde_json = "1"' >>"$work/with-server/Cargo.toml"

new_crate core-only "overc = { path = \"$root\", default-features = false }" <<'RUST'
use overc::{State, StatusReport, parse_perfdata, run_plugin};
use std::time::Duration;

fn main() -> Result<(), overc::Error> {
    let report = StatusReport::parse(
        br#"{"server": {"name": "a", "key": "k"}, "period": 60,
             "services": [{"name": "db", "state": "critical?"}]}"#,
    )?;
    assert_eq!(report.services[0].state, State::Unk);
    let err = StatusReport::parse(br#"{"server": {"name": "a", "key": 1}}"#).unwrap_err();
    assert_eq!(err.to_string(), r#"Data: "server.key" should be a string"#);
    assert_eq!(parse_perfdata("load1=0.5;4;8")[0].value, Some(0.5));
    let run = run_plugin(
        &["sh".into(), "-c".into(), "echo 'slow | t=3s'; exit 1".into()],
        std::path::Path::new("/"),
        Duration::from_secs(10),
    );
    assert_eq!(run.state, State::Warn);
    println!("core-only: validated a report, parsed perfdata, ran a plugin ({})", run.state);
    Ok(())
}
RUST

for name in with-server core-only; do
    echo "== building and running $name"
    (cd "$work/$name" && cargo run --quiet)
done

echo "== dependency tree of the core"
tree="$(cd "$work/core-only" && cargo tree -e normal --prefix none)"
echo "$tree" | sort -u | sed 's/^/  /'
forbidden='^(rusqlite|libsqlite3-sys|tiny_http|tiny-http-overc|ureq|tokio|rustls|native-tls|openssl|ring|webpki)'
if echo "$tree" | awk '{print $1}' | grep -Eq "$forbidden"; then
    echo "FAIL: the core depends on a storage, HTTP, async or TLS crate" >&2
    exit 1
fi
echo "e2e-library: ok"
