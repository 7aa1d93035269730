//! Headless Chromium for the web console tests: the DOM a page has after
//! its scripts ran for a while (in virtual time, so no real waiting), and
//! screenshots. Chromium is a test dependency (scripts/setup installs it);
//! without it these functions fail, naming what to install.
#![allow(dead_code)] // each test binary uses its own subset

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long the page's scripts run, in virtual milliseconds: the console
/// refreshes every 2 s, so a few refreshes happen.
pub const VIRTUAL_TIME_BUDGET_MS: u32 = 8_000;
/// Wall-clock limit for one Chromium run on a busy 2-core machine.
const TIMEOUT: Duration = Duration::from_secs(120);

/// Chromium is heavy on a 2-core machine: one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
static NEXT_PROFILE: AtomicU32 = AtomicU32::new(0);

/// The page's DOM, serialised, after its scripts ran for
/// [`VIRTUAL_TIME_BUDGET_MS`].
pub fn dump_dom(url: &str) -> String {
    dump_dom_in(None, url)
}

/// [`dump_dom`] with Chromium run in network namespace `netns` (where
/// the page's server listens, e.g. a lab's director).
pub fn dump_dom_in(netns: Option<&str>, url: &str) -> String {
    let out = run_chromium(netns, url, &["--dump-dom".into()], VIRTUAL_TIME_BUDGET_MS);
    String::from_utf8(out).expect("chromium's --dump-dom output is UTF-8")
}

/// A PNG of the page ([`SCREENSHOT_SIZE`]) after its scripts ran for
/// [`VIRTUAL_TIME_BUDGET_MS`], written to `path`.
pub fn screenshot(url: &str, path: &Path) {
    screenshot_after(url, path, VIRTUAL_TIME_BUDGET_MS);
}

/// Width and height of screenshots: the console's routing table fits.
pub const SCREENSHOT_SIZE: (u32, u32) = (1400, 900);

/// [`screenshot`] after `virtual_ms` of the page's time (120 000 fills the
/// console's 2-minute rate charts).
pub fn screenshot_after(url: &str, path: &Path, virtual_ms: u32) {
    screenshot_in(None, url, path, virtual_ms)
}

/// [`screenshot_after`] with Chromium in network namespace `netns`.
pub fn screenshot_in(netns: Option<&str>, url: &str, path: &Path, virtual_ms: u32) {
    let path = std::path::absolute(path).expect("absolute screenshot path");
    let _ = std::fs::remove_file(&path);
    run_chromium(
        netns,
        url,
        &[
            format!("--screenshot={}", path.display()),
            format!("--window-size={},{}", SCREENSHOT_SIZE.0, SCREENSHOT_SIZE.1),
            "--hide-scrollbars".into(),
        ],
        virtual_ms,
    );
    let png = std::fs::read(&path)
        .unwrap_or_else(|err| panic!("chromium wrote no screenshot {}: {err}", path.display()));
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is not a PNG",
        path.display()
    );
}

fn chromium() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".into())
}

/// The host part of `http://HOST:PORT/...` (brackets kept for IPv6).
fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '#', '?']).next().unwrap_or(rest);
    match authority.rfind(':') {
        Some(colon) if !authority[colon..].contains(']') => &authority[..colon],
        _ => authority,
    }
}

/// Runs Chromium headless on `url` with `extra` arguments, letting the
/// page's timers run for `virtual_ms`, and returns its standard output. Panics, with Chromium's stderr, if it fails or hangs.
fn run_chromium(netns: Option<&str>, url: &str, extra: &[String], virtual_ms: u32) -> Vec<u8> {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let profile = profile_dir();
    let bin = chromium();
    let mut args: Vec<String> = vec![
        "--headless=new".into(),
        "--no-sandbox".into(), // tests run as root, where the sandbox refuses to start
        "--disable-gpu".into(),
        "--disable-dev-shm-usage".into(),
        format!("--virtual-time-budget={virtual_ms}"),
        format!("--user-data-dir={}", profile.display()),
        // Nothing but the page under test: no update checks, sync or DNS.
        "--no-first-run".into(),
        "--disable-background-networking".into(),
        "--disable-component-update".into(),
        "--disable-sync".into(),
        "--disable-default-apps".into(),
        "--disable-extensions".into(),
        "--disable-domain-reliability".into(),
        format!(
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE {}",
            host_of(url)
        ),
    ];
    args.extend_from_slice(extra);
    args.push(url.into());

    let mut command = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, &bin]);
            c
        }
        None => Command::new(&bin),
    };
    let mut child = match command
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => panic!(
            "`{bin}` not found: the web console tests need Chromium \
             (scripts/setup installs it: apt-get install chromium; or set CHROMIUM=/path/to/it)"
        ),
        Err(err) => panic!("cannot start `{bin}`: {err}"),
    };
    // Read both pipes while waiting, so a full pipe cannot stall Chromium.
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let stdout = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stdout.read_to_end(&mut bytes);
        bytes
    });
    let stderr = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for chromium") {
            break Some(status);
        }
        if started.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = stdout.join().unwrap();
    let stderr = stderr.join().unwrap();
    let _ = std::fs::remove_dir_all(&profile);
    match status {
        Some(status) if status.success() => stdout,
        Some(status) => panic!("`{bin}` on {url} failed ({status}):\n{stderr}"),
        None => panic!("`{bin}` on {url} did not finish within {TIMEOUT:?}:\n{stderr}"),
    }
}

/// A fresh profile per run: concurrent Chromiums must not share one.
fn profile_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "rvs-chromium-{}-{}",
        std::process::id(),
        NEXT_PROFILE.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("chromium profile directory");
    dir
}

#[cfg(test)]
mod tests {
    #[test]
    fn host_of_takes_the_host_out_of_a_url() {
        assert_eq!(
            super::host_of("http://127.0.0.1:8080/#token=x"),
            "127.0.0.1"
        );
        assert_eq!(super::host_of("http://[2001:db8::1]:80/"), "[2001:db8::1]");
        assert_eq!(super::host_of("http://198.18.0.1/v1"), "198.18.0.1");
    }
}
