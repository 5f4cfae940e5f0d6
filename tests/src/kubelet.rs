//! A stand-in kubelet for a control plane without nodes: it watches the Pods of one namespace
//! and runs each Pod's single container as a local process, so that the real Job controller
//! completes real Jobs.
//!
//! For a Pod it sees Pending, it writes each volume to a temporary directory (ConfigMap and
//! Secret keys or `items` as files, `emptyDir` as an empty directory), runs the binary mapped to
//! the container's image with the container's args and env (paths under a mount, and the
//! termination message path, rewritten to those directories) in its working directory, marks
//! the Pod `Running` and ready through the `pods/status` subresource, and when the process
//! exits writes the exit code and the termination message (the file, or the end of the log
//! under `FallbackToLogsOnError` when it is empty and the process failed) with phase
//! `Succeeded` or `Failed`. A Pod deleted while it runs has its process killed.
//!
//! It does not schedule, pull images, enforce resources or security contexts, restart
//! containers, or run more than the first container of a Pod.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret, Volume};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher::{self, Event};
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How many bytes of log a failed container without a termination message reports.
pub const LOG_TAIL_BYTES: usize = 2048;
/// How long the kubelet waits for a Pod's ConfigMap or Secret to appear.
pub const VOLUME_WAIT: Duration = Duration::from_secs(60);

const FALLBACK_TO_LOGS: &str = "FallbackToLogsOnError";
const DEFAULT_TERMINATION_PATH: &str = "/dev/termination-log";
const RETRY: Duration = Duration::from_millis(500);

/// One container run, as the kubelet saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerRun {
    /// The Pod's name.
    pub pod: String,
    /// The Job that owns the Pod (its `batch.kubernetes.io/job-name` label), if any.
    pub job: Option<String>,
    /// The exit code, `None` while it runs or when it was killed.
    pub exit_code: Option<i32>,
}

#[derive(Default)]
struct Runs {
    started: BTreeSet<String>,
    runs: Vec<ContainerRun>,
    cancels: BTreeMap<String, CancellationToken>,
}

/// A running stand-in kubelet; stops (killing its processes) when dropped.
pub struct StandInKubelet {
    runs: Arc<Mutex<Runs>>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// What the kubelet needs to run a Pod.
#[derive(Clone, Debug)]
pub struct KubeletConfig {
    /// The namespace whose Pods it runs.
    pub namespace: String,
    /// The binary to run for each image.
    pub images: BTreeMap<String, PathBuf>,
    /// Where Pod directories are made.
    pub root: PathBuf,
    /// Extra environment for every process (for example `PATH`).
    pub env: Vec<(String, String)>,
}

impl StandInKubelet {
    /// Starts watching `config.namespace` with `client` (which may write `pods/status`).
    pub fn start(client: Client, config: KubeletConfig) -> Self {
        let runs = Arc::new(Mutex::new(Runs::default()));
        let stop = CancellationToken::new();
        let task = tokio::spawn(watch(client, config, runs.clone(), stop.clone()));
        Self { runs, stop, task }
    }

    /// Every container run so far.
    pub fn runs(&self) -> Vec<ContainerRun> {
        lock(&self.runs).runs.clone()
    }

    /// The finished runs of the Pods of `job`.
    pub fn finished_runs_of(&self, job: &str) -> usize {
        lock(&self.runs)
            .runs
            .iter()
            .filter(|r| r.job.as_deref() == Some(job) && r.exit_code.is_some())
            .count()
    }
}

impl Drop for StandInKubelet {
    fn drop(&mut self) {
        self.stop.cancel();
        for cancel in lock(&self.runs).cancels.values() {
            cancel.cancel();
        }
        self.task.abort();
    }
}

fn lock(runs: &Mutex<Runs>) -> std::sync::MutexGuard<'_, Runs> {
    runs.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn watch(
    client: Client,
    config: KubeletConfig,
    runs: Arc<Mutex<Runs>>,
    stop: CancellationToken,
) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), &config.namespace);
    let mut events = watcher::watcher(pods, watcher::Config::default())
        .default_backoff()
        .boxed();
    let config = Arc::new(config);
    loop {
        let event = tokio::select! {
            () = stop.cancelled() => return,
            event = events.next() => event,
        };
        let Some(event) = event else { return };
        let pods = match event {
            Ok(Event::Apply(pod) | Event::InitApply(pod)) => vec![(pod, false)],
            Ok(Event::Delete(pod)) => vec![(pod, true)],
            _ => continue,
        };
        for (pod, deleted) in pods {
            let uid = pod.uid().unwrap_or_default();
            let mut state = lock(&runs);
            if deleted || pod.metadata.deletion_timestamp.is_some() {
                if let Some(cancel) = state.cancels.remove(&uid) {
                    cancel.cancel();
                }
                continue;
            }
            let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
            if !matches!(phase, None | Some("Pending")) || !state.started.insert(uid.clone()) {
                continue;
            }
            let cancel = stop.child_token();
            state.cancels.insert(uid, cancel.clone());
            drop(state);
            tokio::spawn(run_pod(
                client.clone(),
                config.clone(),
                runs.clone(),
                pod,
                cancel,
            ));
        }
    }
}

/// The directory of each volume, and the container's termination message file.
struct PodDirs {
    volumes: BTreeMap<String, PathBuf>,
    termination: PathBuf,
    log: PathBuf,
}

async fn run_pod(
    client: Client,
    config: Arc<KubeletConfig>,
    runs: Arc<Mutex<Runs>>,
    pod: Pod,
    cancel: CancellationToken,
) {
    let name = pod.name_any();
    let job = pod.labels().get("batch.kubernetes.io/job-name").cloned();
    let Some(container) = pod
        .spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .cloned()
    else {
        return;
    };
    let index = {
        let mut state = lock(&runs);
        state.runs.push(ContainerRun {
            pod: name.clone(),
            job,
            exit_code: None,
        });
        state.runs.len() - 1
    };
    let api: Api<Pod> = Api::namespaced(client.clone(), &config.namespace);
    let dir = config.root.join(pod.uid().unwrap_or_else(|| name.clone()));
    let volumes = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.clone())
        .unwrap_or_default();
    let dirs = tokio::select! {
        () = cancel.cancelled() => return,
        dirs = prepare(&client, &config.namespace, &dir, &volumes) => dirs,
    };
    let Some(dirs) = dirs else { return };
    let started = Timestamp::now();
    patch_status(&api, &name, running_status(&container, started), &cancel).await;

    let exit_code = tokio::select! {
        () = cancel.cancelled() => None,
        code = execute(&config, &container, &dirs, cancel.clone()) => code,
    };
    let Some(exit_code) = exit_code else { return };
    lock(&runs).runs[index].exit_code = Some(exit_code);
    let message = termination_message(&container, &dirs, exit_code);
    let status = terminated_status(&container, started, exit_code, &message);
    patch_status(&api, &name, status, &cancel).await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Writes the Pod's volumes under `dir`; `None` when a ConfigMap or Secret never appeared.
async fn prepare(
    client: &Client,
    namespace: &str,
    dir: &Path,
    volumes: &[Volume],
) -> Option<PodDirs> {
    let mut dirs = PodDirs {
        volumes: BTreeMap::new(),
        termination: dir.join("termination-log"),
        log: dir.join("container.log"),
    };
    std::fs::create_dir_all(dir).ok()?;
    for volume in volumes {
        let path = dir.join("volumes").join(&volume.name);
        std::fs::create_dir_all(&path).ok()?;
        let mut files: Vec<(String, Vec<u8>)> = Vec::new();
        if let Some(source) = &volume.config_map {
            let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
            let config_map = wait_for(|| api.get_opt(&source.name)).await?;
            let mut data: BTreeMap<String, Vec<u8>> = config_map
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.into_bytes()))
                .collect();
            for (key, value) in config_map.binary_data.unwrap_or_default() {
                data.insert(key, value.0);
            }
            files = project(
                data,
                source.items.as_deref().map(|items| {
                    items
                        .iter()
                        .map(|i| (i.key.clone(), i.path.clone()))
                        .collect()
                }),
            );
        } else if let Some(source) = &volume.secret {
            let secret_name = source.secret_name.clone().unwrap_or_default();
            let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
            let secret = wait_for(|| api.get_opt(&secret_name)).await?;
            let data = secret
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect();
            files = project(
                data,
                source.items.as_deref().map(|items| {
                    items
                        .iter()
                        .map(|i| (i.key.clone(), i.path.clone()))
                        .collect()
                }),
            );
        }
        for (file, contents) in files {
            let target = path.join(&file);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).ok()?;
            }
            std::fs::write(&target, contents).ok()?;
        }
        dirs.volumes.insert(volume.name.clone(), path);
    }
    Some(dirs)
}

/// The files of a ConfigMap or Secret volume: every key, or only the listed items.
fn project(
    data: BTreeMap<String, Vec<u8>>,
    items: Option<Vec<(String, String)>>,
) -> Vec<(String, Vec<u8>)> {
    match items {
        None => data.into_iter().collect(),
        Some(items) => items
            .into_iter()
            .filter_map(|(key, path)| data.get(&key).map(|v| (path, v.clone())))
            .collect(),
    }
}

/// Polls `get` until it returns an object, at most [`VOLUME_WAIT`].
async fn wait_for<T, F, Fut>(get: F) -> Option<T>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = kube::Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + VOLUME_WAIT;
    while tokio::time::Instant::now() < deadline {
        if let Ok(Some(object)) = get().await {
            return Some(object);
        }
        tokio::time::sleep(RETRY).await;
    }
    None
}

/// Rewrites a path under a mount (or the termination message path) to its directory.
fn rewrite(value: &str, mounts: &[(String, PathBuf)], termination: (&str, &Path)) -> String {
    if value == termination.0 {
        return termination.1.display().to_string();
    }
    for (mount, dir) in mounts {
        if value == mount {
            return dir.display().to_string();
        }
        if let Some(rest) = value.strip_prefix(&format!("{mount}/")) {
            return dir.join(rest).display().to_string();
        }
    }
    value.to_string()
}

async fn execute(
    config: &KubeletConfig,
    container: &Container,
    dirs: &PodDirs,
    cancel: CancellationToken,
) -> Option<i32> {
    let image = container.image.clone().unwrap_or_default();
    let binary = config.images.get(&image)?;
    // Longest mount paths first, so that nested mounts win.
    let mut mounts: Vec<(String, PathBuf)> = container
        .volume_mounts
        .iter()
        .flatten()
        .filter_map(|m| Some((m.mount_path.clone(), dirs.volumes.get(&m.name)?.clone())))
        .collect();
    mounts.sort_by_key(|(path, _)| std::cmp::Reverse(path.len()));
    let termination_path = container
        .termination_message_path
        .clone()
        .unwrap_or_else(|| DEFAULT_TERMINATION_PATH.to_string());
    let termination = (termination_path.as_str(), dirs.termination.as_path());
    let args: Vec<String> = container
        .args
        .iter()
        .flatten()
        .map(|a| rewrite(a, &mounts, termination))
        .collect();
    let log = std::fs::File::create(&dirs.log).ok()?;
    let mut command = tokio::process::Command::new(binary);
    command
        .args(&args)
        .env_clear()
        .envs(config.env.iter().map(|(k, v)| (k.clone(), v.clone())))
        .stdin(Stdio::null())
        .stdout(log.try_clone().ok()?)
        .stderr(log)
        .kill_on_drop(true);
    for variable in container.env.iter().flatten() {
        let value = variable.value.clone().unwrap_or_default();
        command.env(&variable.name, rewrite(&value, &mounts, termination));
    }
    if let Some(dir) = &container.working_dir {
        command.current_dir(rewrite(dir, &mounts, termination));
    }
    let mut child = command.spawn().ok()?;
    tokio::select! {
        () = cancel.cancelled() => {
            let _ = child.kill().await;
            None
        }
        status = child.wait() => Some(status.ok()?.code().unwrap_or(137)),
    }
}

fn termination_message(container: &Container, dirs: &PodDirs, exit_code: i32) -> String {
    let message = std::fs::read_to_string(&dirs.termination).unwrap_or_default();
    let fallback = container.termination_message_policy.as_deref() == Some(FALLBACK_TO_LOGS);
    if message.trim().is_empty() && fallback && exit_code != 0 {
        let log = std::fs::read(&dirs.log).unwrap_or_default();
        let tail = &log[log.len().saturating_sub(LOG_TAIL_BYTES)..];
        return String::from_utf8_lossy(tail).into_owned();
    }
    message
}

fn time(at: Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn running_status(container: &Container, started: Timestamp) -> serde_json::Value {
    let at = time(started);
    json!({
        "phase": "Running",
        "startTime": at,
        "conditions": [
            {"type": "Initialized", "status": "True", "lastTransitionTime": at},
            {"type": "ContainersReady", "status": "True", "lastTransitionTime": at},
            {"type": "Ready", "status": "True", "lastTransitionTime": at},
        ],
        "containerStatuses": [{
            "name": container.name,
            "image": container.image,
            "imageID": "",
            "ready": true,
            "started": true,
            "restartCount": 0,
            "state": {"running": {"startedAt": at}},
        }],
    })
}

fn terminated_status(
    container: &Container,
    started: Timestamp,
    exit_code: i32,
    message: &str,
) -> serde_json::Value {
    let at = time(Timestamp::now());
    json!({
        "phase": if exit_code == 0 { "Succeeded" } else { "Failed" },
        "conditions": [
            {"type": "Initialized", "status": "True", "lastTransitionTime": time(started)},
            {"type": "ContainersReady", "status": "False", "lastTransitionTime": at, "reason": "PodCompleted"},
            {"type": "Ready", "status": "False", "lastTransitionTime": at, "reason": "PodCompleted"},
        ],
        "containerStatuses": [{
            "name": container.name,
            "image": container.image,
            "imageID": "",
            "ready": false,
            "started": false,
            "restartCount": 0,
            "state": {"terminated": {
                "exitCode": exit_code,
                "reason": if exit_code == 0 { "Completed" } else { "Error" },
                "message": message,
                "startedAt": time(started),
                "finishedAt": at,
            }},
        }],
    })
}

/// Writes the Pod's status, retrying while the API server is away, until `cancel`.
async fn patch_status(
    api: &Api<Pod>,
    name: &str,
    status: serde_json::Value,
    cancel: &CancellationToken,
) {
    let patch = json!({"status": status});
    loop {
        match api
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => return,
            Err(kube::Error::Api(response)) if response.is_not_found() => return,
            Err(_) => {}
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(RETRY) => {}
        }
    }
}
