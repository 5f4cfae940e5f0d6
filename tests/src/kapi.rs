//! A handle on a running kapi control plane (etcd, kube-apiserver, kube-controller-manager as
//! local processes; see `docs/e2e.md`): its admin kubeconfig, and stopping and starting its
//! API server while etcd keeps the data, for fault tests.
//!
//! It does not start the kit (`.ci/e2e` does, with the kit's `start.sh`), and it only signals
//! the API server process whose PID the kit recorded under `$KAPI_HOME/run`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kube::config::{KubeConfigOptions, Kubeconfig};

/// The variable naming the kit's directory (`start.sh`, `stop.sh`).
pub const KIT_ENV: &str = "SECUREBUILD_KAPI_KIT";
/// The variable naming the kit home (`bin/`, `run/`, `kubeconfig`).
pub const HOME_ENV: &str = "KAPI_HOME";
/// The API server's PID file under the kit home.
pub const APISERVER_PID: &str = "run/kube-apiserver.pid";
/// How long the API server may take to stop after SIGTERM before it is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(5);
/// How long a stop or start may take.
pub const RESTART_TIMEOUT: Duration = Duration::from_secs(120);

const POLL: Duration = Duration::from_millis(100);

/// Failures driving the control plane.
#[derive(Debug, thiserror::Error)]
pub enum KapiError {
    /// A required variable is not set.
    #[error("{name} is not set: run the e2e tests through .ci/e2e, which starts the kit")]
    MissingEnv {
        /// The variable.
        name: &'static str,
    },
    /// The kubeconfig cannot be read.
    #[error("cannot read the kubeconfig {path}")]
    Kubeconfig {
        /// The file.
        path: PathBuf,
        /// The reader's error.
        #[source]
        source: kube::config::KubeconfigError,
    },
    /// A client cannot be made from the kubeconfig.
    #[error("cannot make a client from the kubeconfig {path}")]
    Client {
        /// The file.
        path: PathBuf,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// The PID file is missing or holds no PID.
    #[error("no running API server recorded in {path}")]
    NoPid {
        /// The PID file.
        path: PathBuf,
    },
    /// A command could not run or failed.
    #[error("`{command}` failed: {detail}")]
    Command {
        /// The command.
        command: String,
        /// Its exit status and output.
        detail: String,
    },
    /// The API server did not stop in time.
    #[error("the API server (pid {pid}) did not stop within {timeout:?}")]
    StopTimeout {
        /// The process.
        pid: u32,
        /// How long it was given.
        timeout: Duration,
    },
}

/// The control plane the tests run against.
#[derive(Clone, Debug)]
pub struct ControlPlane {
    kit: PathBuf,
    home: PathBuf,
    kubeconfig: PathBuf,
}

impl ControlPlane {
    /// The control plane named by `KUBECONFIG`, [`KIT_ENV`] and [`HOME_ENV`].
    pub fn from_env() -> Result<Self, KapiError> {
        let var = |name: &'static str| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .ok_or(KapiError::MissingEnv { name })
        };
        Ok(Self {
            kit: var(KIT_ENV)?,
            home: var(HOME_ENV)?,
            kubeconfig: var("KUBECONFIG")?,
        })
    }

    /// The admin kubeconfig (`system:masters`).
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The kit home.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// The parsed admin kubeconfig.
    pub fn read_kubeconfig(&self) -> Result<Kubeconfig, KapiError> {
        Kubeconfig::read_from(&self.kubeconfig).map_err(|source| KapiError::Kubeconfig {
            path: self.kubeconfig.clone(),
            source,
        })
    }

    /// A cluster-admin client.
    pub async fn admin_client(&self) -> Result<kube::Client, KapiError> {
        let kubeconfig = self.read_kubeconfig()?;
        let client_error = |source| KapiError::Client {
            path: self.kubeconfig.clone(),
            source,
        };
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .map_err(|source| KapiError::Kubeconfig {
                    path: self.kubeconfig.clone(),
                    source,
                })?;
        kube::Client::try_from(config).map_err(client_error)
    }

    /// The API server's PID, when it runs.
    pub fn apiserver_pid(&self) -> Option<u32> {
        let text = std::fs::read_to_string(self.home.join(APISERVER_PID)).ok()?;
        let pid: u32 = text.trim().parse().ok()?;
        Path::new(&format!("/proc/{pid}")).exists().then_some(pid)
    }

    /// Stops the API server as a supervisor would: SIGTERM, and SIGKILL when it is still
    /// there after [`STOP_GRACE`] (its graceful termination waits for open requests, a minute
    /// for watches). etcd and the controller manager keep running.
    pub fn stop_apiserver(&self) -> Result<(), KapiError> {
        let pid = self.apiserver_pid().ok_or_else(|| KapiError::NoPid {
            path: self.home.join(APISERVER_PID),
        })?;
        signal(pid, "TERM")?;
        let gone = || !Path::new(&format!("/proc/{pid}")).exists();
        let grace = Instant::now() + STOP_GRACE;
        while !gone() && Instant::now() < grace {
            std::thread::sleep(POLL);
        }
        if !gone() {
            signal(pid, "KILL")?;
        }
        let deadline = Instant::now() + RESTART_TIMEOUT;
        while !gone() {
            if Instant::now() >= deadline {
                return Err(KapiError::StopTimeout {
                    pid,
                    timeout: RESTART_TIMEOUT,
                });
            }
            std::thread::sleep(POLL);
        }
        Ok(())
    }

    /// Starts the API server again with the kit's `start.sh` (which leaves running components
    /// alone) and returns once it is ready.
    pub fn start_apiserver(&self) -> Result<(), KapiError> {
        let script = self.kit.join("start.sh");
        let output = Command::new("bash")
            .arg(&script)
            .env(HOME_ENV, &self.home)
            .stdin(Stdio::null())
            .output()
            .map_err(|error| KapiError::Command {
                command: script.display().to_string(),
                detail: error.to_string(),
            })?;
        if !output.status.success() {
            return Err(KapiError::Command {
                command: script.display().to_string(),
                detail: format!(
                    "{}: {}",
                    output.status,
                    String::from_utf8_lossy(&output.stderr)
                ),
            });
        }
        Ok(())
    }
}

/// Sends `SIGNAL` (a name such as `TERM`) to `pid` with `kill`.
pub fn signal(pid: u32, name: &str) -> Result<(), KapiError> {
    let command = format!("kill -{name} {pid}");
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .map_err(|error| KapiError::Command {
            command: command.clone(),
            detail: error.to_string(),
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(KapiError::Command {
            command,
            detail: status.to_string(),
        })
    }
}
