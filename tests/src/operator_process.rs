//! Runs `securebuild-operator` as a child process for tests and benchmarks: with a given
//! configuration file and kubeconfig, its log appended to one file across restarts, killed with
//! SIGKILL on demand (and on drop), and its `/metrics` and peak RSS readable. Its console is on,
//! as the chart turns it on, at [`OperatorProcess::console_url`].
//!
//! It does not build the binary; the caller passes its path (`CARGO_BIN_EXE_…`).

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// Failures running the operator.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    /// The process could not be started.
    #[error("cannot start {binary}")]
    Spawn {
        /// The binary.
        binary: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// A file could not be prepared.
    #[error("cannot prepare {path}")]
    Prepare {
        /// The file.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
}

/// How to run one operator replica.
#[derive(Clone, Debug)]
pub struct OperatorSpec {
    /// The `securebuild-operator` binary.
    pub binary: PathBuf,
    /// The configuration file (`--config`).
    pub config: PathBuf,
    /// The kubeconfig it runs with.
    pub kubeconfig: PathBuf,
    /// Where its log goes (appended).
    pub log: PathBuf,
    /// Run with `--leader-election`.
    pub leader_election: bool,
    /// Its identity in the election (`POD_NAME`).
    pub identity: String,
    /// `RUST_LOG`.
    pub log_filter: String,
}

/// A running (or killed) operator replica.
#[derive(Debug)]
pub struct OperatorProcess {
    spec: OperatorSpec,
    child: Mutex<Option<Child>>,
    http: SocketAddr,
    console: SocketAddr,
    starts: AtomicUsize,
}

impl OperatorProcess {
    /// Starts the operator.
    pub fn spawn(spec: OperatorSpec) -> Result<Self, OperatorError> {
        let http = free_addr().map_err(|source| OperatorError::Prepare {
            path: spec.log.clone(),
            source,
        })?;
        let console = free_addr().map_err(|source| OperatorError::Prepare {
            path: spec.log.clone(),
            source,
        })?;
        let process = Self {
            spec,
            child: Mutex::new(None),
            http,
            console,
            starts: AtomicUsize::new(0),
        };
        process.start()?;
        Ok(process)
    }

    /// Starts it again after [`Self::kill`] (a no-op while it runs).
    pub fn start(&self) -> Result<(), OperatorError> {
        let mut slot = self.child();
        if slot
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
        {
            return Ok(());
        }
        let prepare = |source| OperatorError::Prepare {
            path: self.spec.log.clone(),
            source,
        };
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.spec.log)
            .map_err(prepare)?;
        let starts = self.starts.fetch_add(1, Ordering::SeqCst) + 1;
        writeln!(log, "--- start {starts} ---").map_err(prepare)?;
        let stderr = log.try_clone().map_err(prepare)?;
        let mut command = Command::new(&self.spec.binary);
        command
            .arg("run")
            .arg("--config")
            .arg(&self.spec.config)
            .arg("--http-addr")
            .arg(self.http.to_string())
            .arg("--console-addr")
            .arg(self.console.to_string())
            .env("KUBECONFIG", &self.spec.kubeconfig)
            .env("RUST_LOG", &self.spec.log_filter)
            .env("POD_NAME", &self.spec.identity)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr);
        if self.spec.leader_election {
            command.arg("--leader-election");
        }
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("SECUREBUILD_") {
                command.env_remove(name);
            }
        }
        let child = command.spawn().map_err(|source| OperatorError::Spawn {
            binary: self.spec.binary.clone(),
            source,
        })?;
        *slot = Some(child);
        Ok(())
    }

    fn child(&self) -> MutexGuard<'_, Option<Child>> {
        self.child.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Kills it with SIGKILL and reaps it.
    pub fn kill(&self) {
        if let Some(mut child) = self.child().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether the process is alive.
    pub fn is_running(&self) -> bool {
        self.child()
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// The base URL of its console, `http://127.0.0.1:PORT`.
    pub fn console_url(&self) -> String {
        format!("http://{}", self.console)
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child().as_ref().map(Child::id)
    }

    /// How many times it was started.
    pub fn starts(&self) -> usize {
        self.starts.load(Ordering::SeqCst)
    }

    /// Its log so far (every start).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.spec.log).unwrap_or_default()
    }

    /// Its log file.
    pub fn log_path(&self) -> &Path {
        &self.spec.log
    }

    /// The text of `/metrics`, when it answers.
    pub fn metrics(&self) -> Option<String> {
        let mut stream = TcpStream::connect_timeout(&self.http, Duration::from_secs(2)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(
            stream,
            "GET /metrics HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.http
        )
        .ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        response
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_string())
    }

    /// The peak resident set size so far (`VmHWM`), in KiB.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A free 127.0.0.1 address.
pub fn free_addr() -> std::io::Result<SocketAddr> {
    TcpListener::bind("127.0.0.1:0")?.local_addr()
}

/// The value of the counter or gauge `name` (with exactly `labels`, e.g. `{reason="x"}`, or
/// none) in a Prometheus text exposition.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (key, value) = line.rsplit_once(' ')?;
            (key == name).then(|| value.parse().ok()).flatten()
        })
}
