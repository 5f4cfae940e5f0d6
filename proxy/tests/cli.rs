//! The `securebuild-proxy` binary as a script or a Deployment runs it: its flags, the errors
//! for a configuration it cannot serve, `/healthz` on the address it was given, and a clean
//! exit on SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BINARY: &str = env!("CARGO_BIN_EXE_securebuild-proxy");

fn run(args: &[&str]) -> Output {
    Command::new(BINARY).args(args).output().unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn prints_its_version() {
    let output = run(&["--version"]);
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        format!("securebuild-proxy {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn refuses_what_it_cannot_serve_and_says_what_to_do() {
    let cases: [(&[&str], &str); 4] = [
        (
            &["--listen", "127.0.0.1:0"],
            "no routes: pass --route VANITY=UPSTREAM",
        ),
        (
            &["--listen", "127.0.0.1:0", "--route", "hello"],
            "expected VANITY=UPSTREAM",
        ),
        (
            &[
                "--listen",
                "127.0.0.1:0",
                "--route",
                "hello=registry.internal:5000",
            ],
            "invalid route \"hello=registry.internal:5000\"",
        ),
        (
            &["--config", "/nonexistent/securebuild/proxy.yaml"],
            "/nonexistent/securebuild/proxy.yaml",
        ),
    ];
    for (args, expected) in cases {
        let output = run(args);
        assert!(!output.status.success(), "{args:?} was accepted");
        let message = stderr(&output);
        assert!(message.contains(expected), "{args:?}: {message}");
    }
}

/// GETs `path` from `address`, returning the status line.
fn status_line(address: &str, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(address).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.lines().next().map(str::to_string)
}

#[test]
fn serves_health_on_its_address_and_exits_cleanly_on_sigterm() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let address = format!("127.0.0.1:{port}");
    let mut child = Command::new(BINARY)
        .args([
            "--listen",
            &address,
            "--route",
            "hello=127.0.0.1:9/team/hello",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut line = None;
    while Instant::now() < deadline {
        line = status_line(&address, "/healthz");
        if line.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let line = line.expect("the proxy answers /healthz");
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");
    // Nothing listens on the upstream's port: the proxy is alive but not ready.
    let ready = status_line(&address, "/readyz").unwrap();
    assert!(ready.starts_with("HTTP/1.1 503"), "{ready}");

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "still running after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut log = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert!(status.success(), "exit {status:?}: {log}");
}
