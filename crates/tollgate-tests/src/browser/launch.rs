//! Starting and stopping one headless Chromium: ChromeDriver on a port it picks itself, a
//! session with a profile of its own, and a teardown that leaves no process or directory
//! behind, whether the test closed the browser or failed half-way.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

use super::COMMAND_TIMEOUT_MS;
use crate::clients::clients_dir;

/// A phone's viewport (an iPhone 12–15's CSS pixels) for [`super::Browser::start_phone`].
const PHONE: (u32, u32) = (390, 844);
const PHONE_UA: &str = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 \
                        (KHTML, like Gecko) Chrome/156.0.0.0 Mobile Safari/537.36";

/// Desktop (a 1280x900 window) or phone (ChromeDriver's mobile emulation).
pub(super) enum Device {
    Desktop,
    Phone,
}

/// ChromeDriver and the Chromium it started, for one [`super::Browser`].
pub(super) struct Driver {
    child: Option<tokio::process::Child>,
    /// The port ChromeDriver listens on, on 127.0.0.1.
    pub(super) port: u16,
    /// What ChromeDriver printed, for the message when something fails.
    log: Arc<Mutex<String>>,
    /// Chromium's `--user-data-dir`, unique to this browser: every Chromium process started
    /// for it carries the path, which is how they are found; removed once they are gone.
    profile: PathBuf,
    /// Chromium's processes, noted before the session ended (see [`Driver::note_chromium`]).
    chromium: Option<Vec<Proc>>,
    torn_down: bool,
}

/// Starts ChromeDriver and one Chromium session in it, with a fresh profile.
pub(super) async fn start(device: Device) -> (Client, Driver) {
    let (chromium, chromedriver) = programs().await;
    let profile = tempfile::Builder::new()
        .prefix("tollgate-chromium-")
        .tempdir()
        .expect("a temporary Chromium profile directory")
        .keep();
    let (child, port, log) = spawn_driver(&chromedriver).await;
    // From here on, a failure tears down whatever was started.
    let driver = Driver {
        child: Some(child),
        port,
        log,
        profile,
        chromium: None,
        torn_down: false,
    };
    let client = ClientBuilder::new(HttpConnector::new())
        .capabilities(capabilities(&chromium, &driver.profile, &device))
        .connect(&format!("http://127.0.0.1:{port}/"))
        .await
        .unwrap_or_else(|e| {
            panic!(
                "ChromeDriver ({}) could not start Chromium ({}): {e}\n{}",
                chromedriver.display(),
                chromium.display(),
                driver.log()
            )
        });
    (client, driver)
}

impl Driver {
    pub(super) fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Notes Chromium's processes; call it before ending the session, because a process
    /// that is exiting loses its command line (by which they are found) before its threads
    /// stop writing to the profile.
    pub(super) fn note_chromium(&mut self) {
        self.chromium = Some(chromium_processes(&self.profile));
    }

    /// Stops ChromeDriver and waits for it to exit.
    pub(super) async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
        }
    }

    /// Kills ChromeDriver and Chromium (by id: Chromium outlives a killed ChromeDriver, and
    /// after a clean close its helpers are still exiting), waits until every thread of them
    /// has exited, and removes the profile directory. Runs once; blocking, as `Drop` is.
    pub(super) fn tear_down(&mut self) {
        if std::mem::replace(&mut self.torn_down, true) {
            return;
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
        }
        let chromium = self
            .chromium
            .take()
            .unwrap_or_else(|| chromium_processes(&self.profile));
        let running: Vec<String> = chromium
            .iter()
            .filter(|p| p.running())
            .map(|p| p.pid.to_string())
            .collect();
        if !running.is_empty() {
            let _ = std::process::Command::new("kill")
                .arg("-KILL")
                .args(&running)
                .stderr(Stdio::null())
                .status();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while chromium.iter().any(Proc::running) {
            if Instant::now() >= deadline {
                eprintln!("Chromium {chromium:?} still running 10 s after SIGKILL");
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.tear_down();
    }
}

/// A process by id and start time, so that an id the kernel has reused is not mistaken for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Proc {
    pid: u32,
    start: u64,
}

impl Proc {
    /// Whether any of its threads is still running. A process whose main thread has exited
    /// is a zombie with an empty command line while its other threads (the disk cache's
    /// writer, say) go on.
    fn running(&self) -> bool {
        if proc_stat(&format!("/proc/{}/stat", self.pid)).map(|(_, start)| start)
            != Some(self.start)
        {
            return false;
        }
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{}/task", self.pid)) else {
            return false;
        };
        tasks.filter_map(Result::ok).any(|task| {
            proc_stat(&task.path().join("stat").to_string_lossy())
                .is_some_and(|(state, _)| !matches!(state, 'Z' | 'X'))
        })
    }
}

/// Every process started with `profile` as its `--user-data-dir`: the Chromium browser,
/// its renderers and helpers (the crash handler has no profile, and exits with the browser).
fn chromium_processes(profile: &Path) -> Vec<Proc> {
    let flag = format!("--user-data-dir={}", profile.display());
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmdline| cmdline.split(|&b| b == 0).any(|arg| arg == flag.as_bytes()))
        })
        .filter_map(|pid| {
            let (_, start) = proc_stat(&format!("/proc/{pid}/stat"))?;
            Some(Proc { pid, start })
        })
        .collect()
}

/// The state letter and start time (fields 3 and 22) of a `/proc/.../stat` file.
fn proc_stat(path: &str) -> Option<(char, u64)> {
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces or parentheses.
    let mut fields = stat.get(stat.rfind(')')? + 1..)?.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

/// ChromeDriver on a port of its choosing (`--port=0`), its output drained into a log.
/// `--port=0` picks a free IPv6 port and then binds IPv4 on the same number, which another
/// process may hold ("IPv4 port not available. Exiting..."): then it is started again.
async fn spawn_driver(chromedriver: &Path) -> (tokio::process::Child, u16, Arc<Mutex<String>>) {
    let driver_log = Arc::new(Mutex::new(String::new()));
    for _attempt in 0..5 {
        let mut driver = tokio::process::Command::new(chromedriver)
            .arg("--port=0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", chromedriver.display()));
        let (port_tx, port_rx) = tokio::sync::oneshot::channel();
        let mut port_tx = Some(port_tx);
        let stdout = driver.stdout.take().expect("piped stdout");
        let stderr = driver.stderr.take().expect("piped stderr");
        // Drain both pipes for the driver's whole life (a full pipe would stall it), keeping
        // the text for failure messages; stdout names the port it chose, and its end (the
        // sender dropped unsent) means the driver exited.
        let log = driver_log.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(port) = started_on(&line)
                    && let Some(tx) = port_tx.take()
                {
                    let _ = tx.send(port);
                }
                append(&log, &line);
            }
        });
        let log = driver_log.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                append(&log, &line);
            }
        });
        match tokio::time::timeout(Duration::from_secs(30), port_rx).await {
            Ok(Ok(port)) => return (driver, port, driver_log),
            Ok(Err(_exited)) => {
                let _ = driver.wait().await;
            }
            Err(_) => panic!(
                "{} did not say which port it listens on within 30 s:\n{}",
                chromedriver.display(),
                driver_log.lock().map(|l| l.clone()).unwrap_or_default()
            ),
        }
    }
    panic!(
        "{} exited before listening, five times:\n{}",
        chromedriver.display(),
        driver_log.lock().map(|l| l.clone()).unwrap_or_default()
    )
}

/// The session's capabilities: Chromium's binary and flags, its own profile, and timeouts.
fn capabilities(
    chromium: &Path,
    profile: &Path,
    device: &Device,
) -> serde_json::Map<String, Value> {
    let mut options = json!({
        "binary": chromium,
        "args": [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-dev-shm-usage",
            "--window-size=1280,900",
            "--lang=en-US",
            format!("--user-data-dir={}", profile.display()),
        ],
    });
    if let Device::Phone = device {
        options["mobileEmulation"] = json!({
            "deviceMetrics": {"width": PHONE.0, "height": PHONE.1, "pixelRatio": 3.0,
                              "touch": true, "mobile": true},
            "userAgent": PHONE_UA,
            "clientHints": {"platform": "Android", "mobile": true},
        });
    }
    let capabilities = json!({
        "browserName": "chrome",
        "goog:chromeOptions": options,
        "timeouts": {"implicit": 0, "pageLoad": COMMAND_TIMEOUT_MS, "script": COMMAND_TIMEOUT_MS},
    });
    capabilities.as_object().cloned().unwrap_or_default()
}

/// Chromium and ChromeDriver on PATH, after setup.sh has had the chance to install them (and
/// axe-core) on a clean machine.
async fn programs() -> (PathBuf, PathBuf) {
    static FOUND: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    if let Some(found) = FOUND.get() {
        return found.clone();
    }
    let found = tokio::task::spawn_blocking(|| {
        clients_dir("Chromium, ChromeDriver and axe-core");
        let chromium = ["chromium", "chromium-browser", "google-chrome"]
            .iter()
            .find_map(|name| on_path(name));
        let chromedriver = on_path("chromedriver");
        match (chromium, chromedriver) {
            (Some(chromium), Some(chromedriver)) => (chromium, chromedriver),
            (chromium, chromedriver) => panic!(
                "the browser tests need Chromium and ChromeDriver of the same version on PATH \
                 (missing: {}{}); tests/clients/setup.sh installs them with \
                 `apt-get install -y chromium chromium-driver` (Debian/Ubuntu) and could not",
                if chromium.is_none() { "chromium " } else { "" },
                if chromedriver.is_none() {
                    "chromedriver"
                } else {
                    ""
                },
            ),
        }
    })
    .await
    .expect("join");
    FOUND.get_or_init(|| found).clone()
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}

/// The port in ChromeDriver's "ChromeDriver was started successfully on port 41234." line.
fn started_on(line: &str) -> Option<u16> {
    line.split_once("started successfully on port ")?
        .1
        .trim_end_matches(|c: char| !c.is_ascii_digit())
        .parse()
        .ok()
}

fn append(log: &Mutex<String>, line: &str) {
    if let Ok(mut log) = log.lock()
        && log.len() < 64 * 1024
    {
        log.push_str(line);
        log.push('\n');
    }
}
