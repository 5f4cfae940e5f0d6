//! A small W3C WebDriver client for driving a headless Chromium from tests.
//!
//! [`ChromeDriver::start`] runs `chromedriver` on a free 127.0.0.1 port (it is started with
//! `--port=0` and announces the port it picked) and waits until `GET /status` reports ready.
//! [`ChromeDriver::session`] opens a headless browser with its own temporary profile; a
//! [`Session`] navigates, finds [`Element`]s by CSS selector, polls for elements and text,
//! runs scripts, types keys and takes screenshots. The client speaks plain HTTP/1.1 to
//! loopback only, through `hyper-util`'s client.
//!
//! Cleanup is tied to drop: a session deletes itself (which quits its browser) with a short
//! blocking request, and the driver process is killed once the [`ChromeDriver`] and every
//! session started from it are gone. [`Session::close`] deletes a session explicitly.
//!
//! The binaries come from `SECUREBUILD_CHROMEDRIVER` (default: `chromedriver` on `PATH`) and
//! `SECUREBUILD_CHROMIUM` (default: `chromium` on `PATH`, else `/usr/bin/chromium`).

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fmt;
use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Environment variable naming the `chromedriver` binary.
pub const ENV_CHROMEDRIVER: &str = "SECUREBUILD_CHROMEDRIVER";
/// Environment variable naming the browser binary.
pub const ENV_CHROMIUM: &str = "SECUREBUILD_CHROMIUM";
/// The browser used when [`ENV_CHROMIUM`] is unset and `chromium` is not on `PATH`.
pub const DEFAULT_CHROMIUM: &str = "/usr/bin/chromium";
/// How long [`ChromeDriver::start`] waits for the driver to report ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long one WebDriver command may take before it fails with
/// [`WebDriverError::CommandTimeout`]; session creation starts a browser, so this is generous.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// Arguments every browser session is started with, besides `--user-data-dir`.
pub const BROWSER_ARGS: &[&str] = &[
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--window-size=1280,900",
];

/// WebDriver special key: release all pressed modifiers (e.g. after [`KEY_SHIFT`]).
pub const KEY_NULL: &str = "\u{E000}";
/// WebDriver special key: Backspace.
pub const KEY_BACKSPACE: &str = "\u{E003}";
/// WebDriver special key: Tab.
pub const KEY_TAB: &str = "\u{E004}";
/// WebDriver special key: Enter.
pub const KEY_ENTER: &str = "\u{E007}";
/// WebDriver special key: Shift; it stays pressed until [`KEY_NULL`] or the end of the text.
pub const KEY_SHIFT: &str = "\u{E008}";
/// WebDriver special key: Escape.
pub const KEY_ESCAPE: &str = "\u{E00C}";

/// The JSON key of a web element reference (W3C WebDriver §12.1).
pub const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// How often the `wait_*` methods poll.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// How often [`ChromeDriver::start`] asks `/status`.
const STATUS_INTERVAL: Duration = Duration::from_millis(50);
/// Attempts [`ChromeDriver::start`] makes when the driver dies or stays unready.
const START_ATTEMPTS: usize = 3;
/// Lines of driver output kept for error messages.
const OUTPUT_TAIL: usize = 40;
/// How long a session's drop waits for its deletion.
const DROP_DELETE_TIMEOUT: Duration = Duration::from_secs(15);
/// How long dropping the driver waits for the killed process to be reaped.
const REAP_TIMEOUT: Duration = Duration::from_secs(2);
/// The line chromedriver prints once it listens, followed by the port.
const PORT_ANNOUNCEMENT: &str = "started successfully on port ";
const ERROR_NO_SUCH_ELEMENT: &str = "no such element";
const ERROR_STALE_ELEMENT: &str = "stale element reference";

/// Failures of the WebDriver client.
#[derive(Debug, thiserror::Error)]
pub enum WebDriverError {
    /// The driver binary could not be run.
    #[error(
        "running {program:?} (install chromium and chromium-driver, or set {ENV_CHROMEDRIVER})"
    )]
    Spawn {
        /// The program that was run.
        program: PathBuf,
        /// Underlying failure.
        #[source]
        source: std::io::Error,
    },
    /// The driver exited before it was ready.
    #[error("{program:?} exited ({status}) before it was ready; its output:\n{output}")]
    DriverExited {
        /// The driver program.
        program: PathBuf,
        /// How it exited.
        status: String,
        /// The last lines it printed.
        output: String,
    },
    /// The driver did not announce its port or report ready in time.
    #[error("{program:?} was not ready within {timeout:?}; its output:\n{output}")]
    NotReady {
        /// The driver program.
        program: PathBuf,
        /// How long it was given.
        timeout: Duration,
        /// The last lines it printed.
        output: String,
    },
    /// The browser binary does not exist.
    #[error("browser binary {path:?} not found (install chromium, or set {ENV_CHROMIUM})")]
    BrowserMissing {
        /// The path looked for.
        path: PathBuf,
    },
    /// Creating the browser's temporary profile directory failed.
    #[error("creating a temporary browser profile")]
    Profile {
        /// Underlying failure.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP exchange with the driver failed.
    #[error("HTTP request {command}")]
    Http {
        /// The command, e.g. `POST /session/…/url`.
        command: String,
        /// Underlying failure.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A command took longer than [`COMMAND_TIMEOUT`].
    #[error("{command} took longer than {timeout:?}")]
    CommandTimeout {
        /// The command.
        command: String,
        /// The limit.
        timeout: Duration,
    },
    /// The driver answered with a WebDriver error payload `{"value":{"error","message"}}`.
    #[error("{command} failed with HTTP {status}: {error}: {message}")]
    WebDriver {
        /// The command.
        command: String,
        /// HTTP status of the answer.
        status: u16,
        /// The WebDriver error code, e.g. `no such element`.
        error: String,
        /// The driver's message.
        message: String,
    },
    /// A `wait_*` method gave up.
    #[error(
        "waited {timeout:?} for `{selector}`{}{}",
        needle.as_ref().map(|needle| format!(" to contain {needle:?}")).unwrap_or_default(),
        last_seen.as_ref().map(|text| format!("; last text seen: {text:?}")).unwrap_or_default()
    )]
    Timeout {
        /// The CSS selector waited for.
        selector: String,
        /// The text waited for, if any.
        needle: Option<String>,
        /// How long it waited.
        timeout: Duration,
        /// The element's text at the last poll, if it existed.
        last_seen: Option<String>,
    },
    /// The answer was not JSON.
    #[error("decoding the answer to {command} as JSON")]
    Json {
        /// The command.
        command: String,
        /// Underlying failure.
        #[source]
        source: serde_json::Error,
    },
    /// The answer did not have the expected shape or encoding.
    #[error("decoding the answer to {command}: {detail}")]
    Decode {
        /// The command.
        command: String,
        /// What was wrong.
        detail: String,
    },
}

impl WebDriverError {
    /// The WebDriver error code when this is a [`WebDriverError::WebDriver`].
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::WebDriver { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// A running `chromedriver`; see the module docs.
pub struct ChromeDriver {
    inner: Arc<Driver>,
}

impl fmt::Debug for ChromeDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChromeDriver")
            .field("program", &self.inner.program)
            .field("port", &self.inner.http.port)
            .finish_non_exhaustive()
    }
}

impl ChromeDriver {
    /// Starts the driver named by [`ENV_CHROMEDRIVER`] (default `chromedriver`) on a free
    /// loopback port and waits up to [`READY_TIMEOUT`] for it to report ready, retrying a few
    /// times when it dies or stays unready.
    pub async fn start() -> Result<Self, WebDriverError> {
        let program = std::env::var_os(ENV_CHROMEDRIVER)
            .filter(|value| !value.is_empty())
            .map_or_else(|| PathBuf::from("chromedriver"), PathBuf::from);
        let mut attempt = 1;
        loop {
            match Driver::start(&program).await {
                Ok(driver) => {
                    return Ok(Self {
                        inner: Arc::new(driver),
                    });
                }
                Err(
                    error @ (WebDriverError::DriverExited { .. } | WebDriverError::NotReady { .. }),
                ) if attempt < START_ATTEMPTS => {
                    attempt += 1;
                    drop(error);
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// The driver's address, `http://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.inner.http.base
    }

    /// The browser binary sessions use: [`ENV_CHROMIUM`], else `chromium` on `PATH`, else
    /// [`DEFAULT_CHROMIUM`].
    pub fn browser_binary() -> PathBuf {
        std::env::var_os(ENV_CHROMIUM)
            .filter(|value| !value.is_empty())
            .map(PathBuf::from)
            .or_else(|| find_on_path("chromium"))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CHROMIUM))
    }

    /// Opens a headless browser session with [`BROWSER_ARGS`] and a fresh temporary profile.
    pub async fn session(&self) -> Result<Session, WebDriverError> {
        let binary = Self::browser_binary();
        if !binary.is_file() {
            return Err(WebDriverError::BrowserMissing { path: binary });
        }
        let profile = tempfile::Builder::new()
            .prefix("securebuild-chromium-")
            .tempdir()
            .map_err(|source| WebDriverError::Profile { source })?;
        let mut args: Vec<String> = BROWSER_ARGS.iter().map(|arg| (*arg).to_owned()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        let capabilities = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {
                        "binary": binary.to_string_lossy(),
                        "args": args,
                    },
                },
            },
        });
        let value = self
            .inner
            .http
            .call(Method::POST, "/session", Some(&capabilities))
            .await?;
        let Some(id) = value.get("sessionId").and_then(Value::as_str) else {
            return Err(WebDriverError::Decode {
                command: "POST /session".to_owned(),
                detail: format!("no sessionId in {value}"),
            });
        };
        Ok(Session {
            ctx: Arc::new(SessionContext {
                path: format!("/session/{}", encode_segment(id)),
                id: id.to_owned(),
                driver: self.inner.clone(),
            }),
            profile: Some(profile),
            closed: false,
        })
    }
}

/// A browser session; it deletes itself (quitting the browser) when dropped.
pub struct Session {
    ctx: Arc<SessionContext>,
    /// Dropped after the session is deleted, so the browser no longer uses it.
    profile: Option<tempfile::TempDir>,
    closed: bool,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.ctx.id)
            .field("driver", &self.ctx.driver.http.base)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// The WebDriver session id.
    pub fn id(&self) -> &str {
        &self.ctx.id
    }

    /// Navigates to `url` and waits for the page to load.
    pub async fn goto(&self, url: &str) -> Result<(), WebDriverError> {
        self.ctx
            .call(Method::POST, "/url", Some(&json!({ "url": url })))
            .await
            .map(drop)
    }

    /// The current page's URL.
    pub async fn current_url(&self) -> Result<String, WebDriverError> {
        let command = "/url";
        let value = self.ctx.call(Method::GET, command, None).await?;
        self.ctx.string(command, value)
    }

    /// The current page's title.
    pub async fn title(&self) -> Result<String, WebDriverError> {
        let command = "/title";
        let value = self.ctx.call(Method::GET, command, None).await?;
        self.ctx.string(command, value)
    }

    /// The first element matching the CSS selector `css`.
    pub async fn find(&self, css: &str) -> Result<Element, WebDriverError> {
        let command = "/element";
        let value = self
            .ctx
            .call(Method::POST, command, Some(&css_locator(css)))
            .await?;
        self.ctx.element(command, &value)
    }

    /// Every element matching the CSS selector `css`, in document order.
    pub async fn find_all(&self, css: &str) -> Result<Vec<Element>, WebDriverError> {
        let command = "/elements";
        let value = self
            .ctx
            .call(Method::POST, command, Some(&css_locator(css)))
            .await?;
        self.ctx.elements(command, &value)
    }

    /// Polls until an element matches `css` (displayed or not) and returns it; fails with
    /// [`WebDriverError::Timeout`] after `timeout`.
    pub async fn wait_for(&self, css: &str, timeout: Duration) -> Result<Element, WebDriverError> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.find(css).await {
                Ok(element) => return Ok(element),
                Err(error) if error.code() == Some(ERROR_NO_SUCH_ELEMENT) => {}
                Err(error) => return Err(error),
            }
            if Instant::now() >= deadline {
                return Err(WebDriverError::Timeout {
                    selector: css.to_owned(),
                    needle: None,
                    timeout,
                    last_seen: None,
                });
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Polls until an element matches `css` and its visible text contains `needle`, and
    /// returns it; fails with [`WebDriverError::Timeout`] after `timeout`.
    pub async fn wait_until_text(
        &self,
        css: &str,
        needle: &str,
        timeout: Duration,
    ) -> Result<Element, WebDriverError> {
        let deadline = Instant::now() + timeout;
        let mut last_seen = None;
        loop {
            let found = match self.find(css).await {
                Ok(element) => element.text().await.map(|text| (element, text)),
                Err(error) => Err(error),
            };
            match found {
                Ok((element, text)) if text.contains(needle) => return Ok(element),
                Ok((_, text)) => last_seen = Some(text),
                Err(error)
                    if matches!(
                        error.code(),
                        Some(ERROR_NO_SUCH_ELEMENT | ERROR_STALE_ELEMENT)
                    ) => {}
                Err(error) => return Err(error),
            }
            if Instant::now() >= deadline {
                return Err(WebDriverError::Timeout {
                    selector: css.to_owned(),
                    needle: Some(needle.to_owned()),
                    timeout,
                    last_seen,
                });
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Runs `script` as the body of a function called with `args` (use
    /// [`Element::reference`] to pass elements) and returns what it returns.
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> Result<Value, WebDriverError> {
        self.ctx
            .call(
                Method::POST,
                "/execute/sync",
                Some(&json!({ "script": script, "args": args })),
            )
            .await
    }

    /// A PNG screenshot of the viewport.
    pub async fn screenshot_png(&self) -> Result<Vec<u8>, WebDriverError> {
        let command = "/screenshot";
        let value = self.ctx.call(Method::GET, command, None).await?;
        let encoded = self.ctx.string(command, value)?;
        BASE64
            .decode(encoded.as_bytes())
            .map_err(|error| WebDriverError::Decode {
                command: self.ctx.describe(&Method::GET, command),
                detail: format!("screenshot is not base64: {error}"),
            })
    }

    /// The element that has focus (the body when nothing else has).
    pub async fn active_element(&self) -> Result<Element, WebDriverError> {
        let command = "/element/active";
        let value = self.ctx.call(Method::GET, command, None).await?;
        self.ctx.element(command, &value)
    }

    /// Types `keys` (text and `KEY_*` constants) into the focused element.
    pub async fn send_keys_to_active(&self, keys: &str) -> Result<(), WebDriverError> {
        self.active_element().await?.send_keys(keys).await
    }

    /// Resizes the browser window to `width` × `height` CSS pixels.
    pub async fn set_window_size(&self, width: u32, height: u32) -> Result<(), WebDriverError> {
        self.ctx
            .call(
                Method::POST,
                "/window/rect",
                Some(&json!({ "width": width, "height": height })),
            )
            .await
            .map(drop)
    }

    /// Deletes the session and quits its browser, reporting failure (dropping does the same
    /// but ignores failure).
    pub async fn close(mut self) -> Result<(), WebDriverError> {
        self.closed = true;
        self.ctx.call(Method::DELETE, "", None).await.map(drop)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if !self.closed {
            self.closed = true;
            // Best effort: the driver may already be gone.
            let _ = delete_blocking(self.ctx.driver.http.port, &self.ctx.path);
        }
        drop(self.profile.take());
    }
}

/// An element of a session's page.
#[derive(Clone)]
pub struct Element {
    ctx: Arc<SessionContext>,
    id: String,
    path: String,
}

impl fmt::Debug for Element {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Element")
            .field("id", &self.id)
            .field("session", &self.ctx.id)
            .finish()
    }
}

impl PartialEq for Element {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id && self.ctx.id == other.ctx.id
    }
}

impl Eq for Element {}

impl Element {
    /// The WebDriver element id (stable for the element's life in the page).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The element as a JSON web element reference, for [`Session::execute`]'s arguments.
    pub fn reference(&self) -> Value {
        json!({ ELEMENT_KEY: self.id })
    }

    /// The element's rendered text.
    pub async fn text(&self) -> Result<String, WebDriverError> {
        self.get_string("/text").await
    }

    /// The element's tag name, lower-case for HTML.
    pub async fn tag_name(&self) -> Result<String, WebDriverError> {
        self.get_string("/name").await
    }

    /// The value of the HTML attribute `name`, or `None` when it is absent.
    pub async fn attribute(&self, name: &str) -> Result<Option<String>, WebDriverError> {
        let command = format!("{}/attribute/{}", self.path, encode_segment(name));
        let value = self.ctx.call(Method::GET, &command, None).await?;
        match value {
            Value::Null => Ok(None),
            value => self.ctx.string(&command, value).map(Some),
        }
    }

    /// The value of the DOM property `name` (`null` when it is undefined).
    pub async fn property(&self, name: &str) -> Result<Value, WebDriverError> {
        let command = format!("{}/property/{}", self.path, encode_segment(name));
        self.ctx.call(Method::GET, &command, None).await
    }

    /// The computed value of the CSS property `property`.
    pub async fn css_value(&self, property: &str) -> Result<String, WebDriverError> {
        let command = format!("{}/css/{}", self.path, encode_segment(property));
        let value = self.ctx.call(Method::GET, &command, None).await?;
        self.ctx.string(&command, value)
    }

    /// Whether the element is displayed.
    pub async fn is_displayed(&self) -> Result<bool, WebDriverError> {
        let command = format!("{}/displayed", self.path);
        let value = self.ctx.call(Method::GET, &command, None).await?;
        value.as_bool().ok_or_else(|| WebDriverError::Decode {
            command: self.ctx.describe(&Method::GET, &command),
            detail: format!("expected a boolean, got {value}"),
        })
    }

    /// Clicks the element's centre (scrolling it into view first).
    pub async fn click(&self) -> Result<(), WebDriverError> {
        self.post(&format!("{}/click", self.path), &json!({})).await
    }

    /// Focuses the element and types `text`, which may contain `KEY_*` constants.
    pub async fn send_keys(&self, text: &str) -> Result<(), WebDriverError> {
        self.post(&format!("{}/value", self.path), &json!({ "text": text }))
            .await
    }

    /// Empties an editable element.
    pub async fn clear(&self) -> Result<(), WebDriverError> {
        self.post(&format!("{}/clear", self.path), &json!({})).await
    }

    /// The first element below this one matching the CSS selector `css`.
    pub async fn find(&self, css: &str) -> Result<Element, WebDriverError> {
        let command = format!("{}/element", self.path);
        let value = self
            .ctx
            .call(Method::POST, &command, Some(&css_locator(css)))
            .await?;
        self.ctx.element(&command, &value)
    }

    async fn get_string(&self, suffix: &str) -> Result<String, WebDriverError> {
        let command = format!("{}{suffix}", self.path);
        let value = self.ctx.call(Method::GET, &command, None).await?;
        self.ctx.string(&command, value)
    }

    async fn post(&self, command: &str, body: &Value) -> Result<(), WebDriverError> {
        self.ctx
            .call(Method::POST, command, Some(body))
            .await
            .map(drop)
    }
}

/// What a session and its elements share: the driver and the session's URL path.
struct SessionContext {
    driver: Arc<Driver>,
    id: String,
    /// `/session/<id>`.
    path: String,
}

impl SessionContext {
    /// Sends `method` to `/session/<id><suffix>`.
    async fn call(
        &self,
        method: Method,
        suffix: &str,
        body: Option<&Value>,
    ) -> Result<Value, WebDriverError> {
        self.driver
            .http
            .call(method, &format!("{}{suffix}", self.path), body)
            .await
    }

    fn describe(&self, method: &Method, suffix: &str) -> String {
        format!("{method} {}{suffix}", self.path)
    }

    fn string(&self, suffix: &str, value: Value) -> Result<String, WebDriverError> {
        match value {
            Value::String(text) => Ok(text),
            other => Err(WebDriverError::Decode {
                command: self.describe(&Method::GET, suffix),
                detail: format!("expected a string, got {other}"),
            }),
        }
    }

    fn element(self: &Arc<Self>, suffix: &str, value: &Value) -> Result<Element, WebDriverError> {
        let id = element_id(value).ok_or_else(|| WebDriverError::Decode {
            command: self.describe(&Method::POST, suffix),
            detail: format!("expected an element reference, got {value}"),
        })?;
        Ok(Element {
            path: format!("/element/{}", encode_segment(id)),
            id: id.to_owned(),
            ctx: self.clone(),
        })
    }

    fn elements(
        self: &Arc<Self>,
        suffix: &str,
        value: &Value,
    ) -> Result<Vec<Element>, WebDriverError> {
        let Some(items) = value.as_array() else {
            return Err(WebDriverError::Decode {
                command: self.describe(&Method::POST, suffix),
                detail: format!("expected an array of element references, got {value}"),
            });
        };
        items
            .iter()
            .map(|item| self.element(suffix, item))
            .collect()
    }
}

/// The driver process and the HTTP client that talks to it; the process is killed when the
/// last [`ChromeDriver`] or [`Session`] holding it is dropped.
struct Driver {
    program: PathBuf,
    http: Http,
    child: Child,
    drains: Vec<JoinHandle<()>>,
}

impl Drop for Driver {
    fn drop(&mut self) {
        // Best effort: it may have exited already.
        let _ = self.child.start_kill();
        for drain in &self.drains {
            drain.abort();
        }
        // Reap it now: a test binary often exits before tokio's orphan reaper runs, and the
        // init of a container may never reap the zombie.
        let deadline = std::time::Instant::now() + REAP_TIMEOUT;
        while matches!(self.child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Driver {
    async fn start(program: &Path) -> Result<Self, WebDriverError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut child = Command::new(program)
            .arg("--port=0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| WebDriverError::Spawn {
                program: program.to_owned(),
                source,
            })?;
        let output = Arc::new(Mutex::new(VecDeque::new()));
        let mut drains = Vec::new();
        if let Some(stderr) = child.stderr.take() {
            drains.push(tokio::spawn(drain(BufReader::new(stderr), output.clone())));
        }
        let mut stdout = child.stdout.take().map(BufReader::new);
        let port = match &mut stdout {
            Some(stdout) => tokio::time::timeout_at(deadline, read_port(stdout, &output))
                .await
                .ok()
                .flatten(),
            None => None,
        };
        if let Some(stdout) = stdout {
            drains.push(tokio::spawn(drain(stdout, output.clone())));
        }
        let mut driver = Self {
            program: program.to_owned(),
            http: Http::new(port.unwrap_or(0)),
            child,
            drains,
        };
        if port.is_none() {
            return Err(driver.failure(&output).await);
        }
        loop {
            if driver.http.ready().await {
                return Ok(driver);
            }
            if Instant::now() >= deadline || matches!(driver.child.try_wait(), Ok(Some(_))) {
                return Err(driver.failure(&output).await);
            }
            tokio::time::sleep(STATUS_INTERVAL).await;
        }
    }

    /// The error for a driver that did not become ready: it exited, or it hangs (then it is
    /// killed).
    async fn failure(&mut self, output: &Mutex<VecDeque<String>>) -> WebDriverError {
        let exited = match self.child.try_wait() {
            Ok(Some(status)) => Some(status),
            _ => {
                let _ = self.child.start_kill();
                None
            }
        };
        // Give the drains a moment to collect the last lines.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let output = output
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect::<Vec<_>>()
            .join("\n");
        match exited {
            Some(status) => WebDriverError::DriverExited {
                program: self.program.clone(),
                status: status.to_string(),
                output,
            },
            None => WebDriverError::NotReady {
                program: self.program.clone(),
                timeout: READY_TIMEOUT,
                output,
            },
        }
    }
}

/// Reads chromedriver's output up to its port announcement, keeping the lines in `output`.
async fn read_port<R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
    output: &Mutex<VecDeque<String>>,
) -> Option<u16> {
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line).await {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
        push_line(output, &line);
        if let Some(port) = announced_port(&line) {
            return Some(port);
        }
    }
}

/// The port in chromedriver's "ChromeDriver was started successfully on port 36357." line.
fn announced_port(line: &str) -> Option<u16> {
    let (_, rest) = line.split_once(PORT_ANNOUNCEMENT)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok().filter(|port| *port != 0)
}

/// Keeps the last [`OUTPUT_TAIL`] lines `reader` prints in `output`.
async fn drain<R: AsyncRead + Unpin>(
    mut reader: BufReader<R>,
    output: Arc<Mutex<VecDeque<String>>>,
) {
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => push_line(&output, &line),
        }
    }
}

fn push_line(output: &Mutex<VecDeque<String>>, line: &str) {
    let mut output = output.lock().unwrap_or_else(PoisonError::into_inner);
    if output.len() == OUTPUT_TAIL {
        output.pop_front();
    }
    output.push_back(line.trim_end().to_owned());
}

/// JSON over HTTP/1.1 to the driver on 127.0.0.1.
struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
    port: u16,
    /// `http://127.0.0.1:<port>`.
    base: String,
}

impl Http {
    fn new(port: u16) -> Self {
        Self {
            client: Client::builder(TokioExecutor::new()).build_http(),
            port,
            base: format!("http://{}", SocketAddr::from((Ipv4Addr::LOCALHOST, port))),
        }
    }

    /// Whether `GET /status` answers `{"value":{"ready":true}}`.
    async fn ready(&self) -> bool {
        match self.call(Method::GET, "/status", None).await {
            Ok(value) => value.get("ready").and_then(Value::as_bool) == Some(true),
            Err(_) => false,
        }
    }

    /// Sends one command and returns the `value` of its answer.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, WebDriverError> {
        let command = format!("{method} {path}");
        tokio::time::timeout(COMMAND_TIMEOUT, self.exchange(&command, method, path, body))
            .await
            .unwrap_or_else(|_| {
                Err(WebDriverError::CommandTimeout {
                    command: command.clone(),
                    timeout: COMMAND_TIMEOUT,
                })
            })
    }

    async fn exchange(
        &self,
        command: &str,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, WebDriverError> {
        let http_error = |source: Box<dyn std::error::Error + Send + Sync>| WebDriverError::Http {
            command: command.to_owned(),
            source,
        };
        let body = match body {
            Some(body) => Bytes::from(body.to_string()),
            None => Bytes::new(),
        };
        let request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header(
                http::header::CONTENT_TYPE,
                "application/json; charset=utf-8",
            )
            .body(Full::new(body))
            .map_err(|error| http_error(error.into()))?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|error| http_error(error.into()))?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|error| http_error(error.into()))?
            .to_bytes();
        decode_answer(command, status, &bytes)
    }
}

/// The `value` of a WebDriver answer, or the error it carries.
fn decode_answer(command: &str, status: StatusCode, body: &[u8]) -> Result<Value, WebDriverError> {
    let answer: Value = serde_json::from_slice(body).map_err(|source| WebDriverError::Json {
        command: command.to_owned(),
        source,
    })?;
    let Value::Object(mut answer) = answer else {
        return Err(WebDriverError::Decode {
            command: command.to_owned(),
            detail: format!("expected an object with a value, got {answer}"),
        });
    };
    let value = answer.remove("value").unwrap_or(Value::Null);
    if let Some(error) = value.get("error").and_then(Value::as_str) {
        return Err(WebDriverError::WebDriver {
            command: command.to_owned(),
            status: status.as_u16(),
            error: error.to_owned(),
            message: value
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        });
    }
    if !status.is_success() {
        return Err(WebDriverError::Decode {
            command: command.to_owned(),
            detail: format!("HTTP {status} without a WebDriver error: {value}"),
        });
    }
    Ok(value)
}

/// Deletes a session with a blocking request, for [`Session`]'s drop (which cannot await).
fn delete_blocking(port: u16, path: &str) -> std::io::Result<()> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(DROP_DELETE_TIMEOUT))?;
    stream.set_write_timeout(Some(DROP_DELETE_TIMEOUT))?;
    write!(
        stream,
        "DELETE {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    stream.flush()?;
    // The driver answers once the browser has quit; the first bytes are enough.
    let mut buf = [0_u8; 512];
    let _ = stream.read(&mut buf)?;
    Ok(())
}

fn css_locator(css: &str) -> Value {
    json!({ "using": "css selector", "value": css })
}

fn element_id(value: &Value) -> Option<&str> {
    value.get(ELEMENT_KEY).and_then(Value::as_str)
}

/// Percent-encodes everything but RFC 3986 unreserved characters, for one path segment.
fn encode_segment(segment: &str) -> String {
    let mut encoded = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// The first file named `name` in a directory on `PATH`.
fn find_on_path(name: &str) -> Option<PathBuf> {
    let path: OsString = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpListener;

    const WAIT: Duration = Duration::from_secs(10);
    const PNG_SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'];

    const FORM_PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>WebDriver fixture</title></head>
<body>
<h1 id="status">loading</h1>
<form id="form" onsubmit="return false">
  <label>Name <input id="name" name="name"></label>
  <label>Email <input id="email" name="email"></label>
</form>
<p id="hidden" style="display: none">hidden</p>
<a id="next" href="/next?from=form">next page</a>
<script>
  setTimeout(function () {
    document.getElementById("status").textContent = "ready after delay";
  }, 200);
</script>
</body></html>
"#;

    const NEXT_PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>Next</title></head>
<body><p id="done">arrived</p></body></html>
"#;

    /// Serves [`FORM_PAGE`] at `/` and [`NEXT_PAGE`] at `/next` on 127.0.0.1 until the
    /// runtime ends.
    async fn serve_pages() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0_u8; 1024];
                    while !head.windows(4).any(|window| window == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&head);
                    let target = head.split_whitespace().nth(1).unwrap_or("/");
                    let path = target.split('?').next().unwrap_or("/");
                    let (status, body) = match path {
                        "/" => ("200 OK", FORM_PAGE),
                        "/next" => ("200 OK", NEXT_PAGE),
                        _ => ("404 Not Found", "not found"),
                    };
                    let response = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(response.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn drives_a_real_headless_browser() {
        let started = std::time::Instant::now();
        let driver = ChromeDriver::start().await.unwrap_or_else(|error| {
            panic!(
                "chromedriver is required for this test (CI installs chromium and \
                 chromium-driver): {}",
                securebuild_registry::error::Chain(&error)
            )
        });
        let driver_ready = started.elapsed();
        let session = driver.session().await.unwrap_or_else(|error| {
            panic!(
                "starting a browser session: {}",
                securebuild_registry::error::Chain(&error)
            )
        });
        let session_ready = started.elapsed();
        let addr = serve_pages().await;
        let base = format!("http://{addr}");

        session.set_window_size(1024, 768).await.unwrap();
        session.goto(&format!("{base}/")).await.unwrap();
        assert_eq!(session.title().await.unwrap(), "WebDriver fixture");
        assert_eq!(session.current_url().await.unwrap(), format!("{base}/"));

        // The script changes the heading after 200 ms.
        let status = session
            .wait_until_text("#status", "ready", WAIT)
            .await
            .unwrap();
        assert_eq!(status.text().await.unwrap(), "ready after delay");
        assert_eq!(status.tag_name().await.unwrap(), "h1");
        assert_eq!(status.css_value("display").await.unwrap(), "block");

        let name = session.find("#name").await.unwrap();
        name.click().await.unwrap();
        name.send_keys("hello").await.unwrap();
        assert_eq!(name.property("value").await.unwrap(), json!("hello"));
        assert_eq!(
            session
                .active_element()
                .await
                .unwrap()
                .attribute("id")
                .await
                .unwrap(),
            Some("name".to_owned())
        );
        name.clear().await.unwrap();
        name.send_keys(&format!("a{KEY_SHIFT}bc{KEY_NULL}d"))
            .await
            .unwrap();
        assert_eq!(name.property("value").await.unwrap(), json!("aBCd"));

        session.send_keys_to_active(KEY_TAB).await.unwrap();
        let active = session.active_element().await.unwrap();
        assert_eq!(
            active.attribute("id").await.unwrap(),
            Some("email".to_owned())
        );
        assert_eq!(active, session.find("#email").await.unwrap());
        session
            .send_keys_to_active("me@example.test")
            .await
            .unwrap();
        assert_eq!(
            session
                .find("#email")
                .await
                .unwrap()
                .property("value")
                .await
                .unwrap(),
            json!("me@example.test")
        );

        let inputs = session.find_all("form input").await.unwrap();
        assert_eq!(inputs.len(), 2);
        let form = session.find("#form").await.unwrap();
        assert_eq!(form.find("input").await.unwrap(), inputs[0]);
        assert_eq!(form.attribute("data-missing").await.unwrap(), None);
        assert!(
            !session
                .find("#hidden")
                .await
                .unwrap()
                .is_displayed()
                .await
                .unwrap()
        );
        assert!(form.is_displayed().await.unwrap());

        let sum = session
            .execute(
                "return arguments[0] + arguments[1].id;",
                vec![json!(40), inputs[1].reference()],
            )
            .await
            .unwrap();
        assert_eq!(sum, json!("40email"));

        let missing = session.find("#does-not-exist").await.unwrap_err();
        assert_eq!(missing.code(), Some(ERROR_NO_SUCH_ELEMENT), "{missing}");
        let timeout = session
            .wait_until_text("#status", "never", Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(
            matches!(
                &timeout,
                WebDriverError::Timeout { selector, needle: Some(needle), last_seen: Some(seen), .. }
                    if selector == "#status" && needle == "never" && seen == "ready after delay"
            ),
            "{timeout:?}"
        );

        session.find("#next").await.unwrap().click().await.unwrap();
        session
            .wait_until_text("#done", "arrived", WAIT)
            .await
            .unwrap();
        assert_eq!(
            session.current_url().await.unwrap(),
            format!("{base}/next?from=form")
        );
        assert_eq!(session.title().await.unwrap(), "Next");

        let png = session.screenshot_png().await.unwrap();
        assert!(png.len() > PNG_SIGNATURE.len(), "{} bytes", png.len());
        assert_eq!(png[..8], PNG_SIGNATURE);

        // A second session shares the driver; dropping it deletes it.
        let second = driver.session().await.unwrap();
        let second_id = second.id().to_owned();
        drop(second);
        assert_ne!(second_id, session.id());

        session.close().await.unwrap();
        eprintln!(
            "chromedriver ready after {driver_ready:?}, first session after {session_ready:?}, \
             test done after {:?}",
            started.elapsed()
        );
    }

    #[test]
    fn port_announcement() {
        assert_eq!(
            announced_port("ChromeDriver was started successfully on port 36357.\n"),
            Some(36357)
        );
        assert_eq!(
            announced_port("Starting ChromeDriver 156.0 on port 0\n"),
            None
        );
        assert_eq!(announced_port("started successfully on port 0."), None);
    }

    #[test]
    fn answers() {
        let ok = decode_answer("GET /x", StatusCode::OK, br#"{"value":{"ready":true}}"#);
        assert_eq!(ok.unwrap(), json!({ "ready": true }));
        let null = decode_answer("POST /x", StatusCode::OK, br#"{"value":null}"#);
        assert_eq!(null.unwrap(), Value::Null);
        let error = decode_answer(
            "POST /session/1/element",
            StatusCode::NOT_FOUND,
            br#"{"value":{"error":"no such element","message":"gone","stacktrace":""}}"#,
        )
        .unwrap_err();
        assert!(
            matches!(&error, WebDriverError::WebDriver { status: 404, error, message, .. }
                if error == "no such element" && message == "gone"),
            "{error:?}"
        );
        assert_eq!(error.code(), Some("no such element"));
        assert!(matches!(
            decode_answer("GET /x", StatusCode::OK, b"<html>"),
            Err(WebDriverError::Json { .. })
        ));
        assert!(matches!(
            decode_answer(
                "GET /x",
                StatusCode::INTERNAL_SERVER_ERROR,
                br#"{"value":1}"#
            ),
            Err(WebDriverError::Decode { .. })
        ));
    }

    #[test]
    fn segments_are_encoded() {
        assert_eq!(encode_segment("data-x_1.~"), "data-x_1.~");
        assert_eq!(encode_segment("a b/c?"), "a%20b%2Fc%3F");
    }

    #[test]
    fn timeout_names_what_was_awaited() {
        let error = WebDriverError::Timeout {
            selector: "#status".to_owned(),
            needle: Some("ready".to_owned()),
            timeout: Duration::from_secs(1),
            last_seen: Some("loading".to_owned()),
        };
        assert_eq!(
            error.to_string(),
            "waited 1s for `#status` to contain \"ready\"; last text seen: \"loading\""
        );
    }
}
