//! rvsd's command line: `--check`, configuration errors (`FILE:LINE: key:
//! message`, exit 2, also for a normal start, before DPDK is touched),
//! usage and `--help`. Nothing here needs root, hugepages or a NIC.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const RVSD: &str = env!("CARGO_BIN_EXE_rvsd");

/// How long rvsd may take to reject a configuration.
const DEADLINE: Duration = Duration::from_secs(20);

struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Runs rvsd from the repository root; kills it (and fails) if it does not
/// exit within [`DEADLINE`], e.g. because it went on to start DPDK.
fn rvsd(args: &[&str]) -> Run {
    let mut child = Command::new(RVSD)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn rvsd");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for rvsd") {
            break status;
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("rvsd {args:?} did not exit within {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    Run {
        status,
        stdout,
        stderr,
    }
}

/// A directory unique to this process and test, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("rvs-cli-{}-{test}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        fs::write(&path, text).expect("write config");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A valid configuration; the bad ones are edits of it.
const GOOD: &str = r#"# rvs cli test
[dpdk]
lcores = "0-1"
args = ["--no-shconf"]

[[port]]
name = "wan"
vdev = "net_null0"
addresses = ["198.18.0.1/24"]

[[port]]
name = "lan"
vdev = "net_null1"
addresses = ["198.19.0.1/24"]

[[service]]
protocol = "tcp"
address = "198.18.0.100:80"
scheduler = "rr"

[[service.server]]
address = "198.19.0.11:80"
forward = "nat"
weight = 1

[[service.server]]
address = "198.19.0.12:80"
forward = "nat"
"#;

/// `GOOD` with the first `from` replaced by `to`; panics if `from` is absent.
fn edit(from: &str, to: &str) -> String {
    assert!(GOOD.contains(from), "{from:?} not in the base config");
    GOOD.replacen(from, to, 1)
}

/// 1-based number of the line of `text` that contains `marker` (the last
/// such line if `last`).
fn line_of(text: &str, marker: &str, last: bool) -> usize {
    let mut hits = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains(marker))
        .map(|(i, _)| i + 1);
    let hit = if last { hits.last() } else { hits.next() };
    hit.unwrap_or_else(|| panic!("{marker:?} not in config"))
}

/// Runs rvsd on `text` with and without `--check`; both must exit 2 with a
/// single `rvsd: FILE:LINE: KEY: ...` line on stderr and nothing on stdout.
fn assert_rejected(test: &str, text: &str, line: usize, key: &str, message: &str) {
    let dir = TempDir::new(test);
    let path = dir.write("bad.toml", text);
    let path_str = path.to_str().unwrap();
    let located = format!("{path_str}:{line}: {key}: ");
    for args in [
        &["--check", "--config", path_str][..],
        &["--config", path_str][..],
    ] {
        let run = rvsd(args);
        assert_eq!(
            run.status.code(),
            Some(2),
            "{args:?}: exit status; stderr:\n{}",
            run.stderr
        );
        assert!(
            run.stderr.contains(&located),
            "{args:?}: stderr should contain {located:?}, got:\n{}",
            run.stderr
        );
        assert!(
            run.stderr.contains(message),
            "{args:?}: stderr should contain {message:?}, got:\n{}",
            run.stderr
        );
        assert_eq!(
            run.stderr.lines().count(),
            1,
            "{args:?}: one error line, no DPDK output:\n{}",
            run.stderr
        );
        assert!(run.stderr.starts_with("rvsd: "), "{}", run.stderr);
        assert!(!run.stderr.contains("EAL"), "{}", run.stderr);
        assert_eq!(run.stdout, "", "{args:?}: no report on stdout");
    }
}

// ---------------------------------------------------------------------------
// Valid configurations
// ---------------------------------------------------------------------------

#[test]
fn check_accepts_the_lab_configuration() {
    let run = rvsd(&["--check", "--config", "dpdk-config/lab.toml"]);
    assert!(run.status.success(), "stderr:\n{}", run.stderr);
    assert!(
        run.stderr
            .contains("dpdk-config/lab.toml: configuration OK (2 ports, 2 services)"),
        "{}",
        run.stderr
    );
    assert_eq!(run.stdout, "");
}

#[test]
fn check_accepts_the_base_configuration_and_short_options() {
    let dir = TempDir::new("good");
    let path = dir.write("good.toml", GOOD);
    let path = path.to_str().unwrap();
    for args in [
        &["--check", "--config", path][..],
        &["-c", path, "--check"][..],
    ] {
        let run = rvsd(args);
        assert_eq!(run.status.code(), Some(0), "{args:?}: {}", run.stderr);
        assert!(
            run.stderr
                .contains(&format!("{path}: configuration OK (2 ports, 1 services)")),
            "{}",
            run.stderr
        );
    }
}

// ---------------------------------------------------------------------------
// Invalid configurations
// ---------------------------------------------------------------------------

#[test]
fn unknown_key_is_located() {
    let text = edit(
        "scheduler = \"rr\"\n",
        "scheduler = \"rr\"\npersistent = 300\n",
    );
    assert_rejected(
        "unknown-key",
        &text,
        line_of(&text, "persistent", false),
        "service[0].persistent",
        "unknown field `persistent`",
    );
}

#[test]
fn unknown_key_in_a_server_is_located() {
    let text = edit("weight = 1\n", "weight = 1\nmode = \"nat\"\n");
    assert_rejected(
        "unknown-server-key",
        &text,
        line_of(&text, "mode =", false),
        "service[0].server[0].mode",
        "unknown field `mode`",
    );
}

#[test]
fn bad_service_address_is_located() {
    let text = edit("\"198.18.0.100:80\"", "\"198.18.0.300:80\"");
    assert_rejected(
        "bad-address",
        &text,
        line_of(&text, "198.18.0.300", false),
        "service[0].address",
        "invalid address \"198.18.0.300:80\"",
    );
}

#[test]
fn bad_port_address_is_located() {
    let text = edit("\"198.19.0.1/24\"", "\"198.19.0.1/33\"");
    assert_rejected(
        "bad-prefix",
        &text,
        line_of(&text, "198.19.0.1/33", false),
        "port[1].addresses[0]",
        "198.19.0.1/33",
    );
}

#[test]
fn unknown_scheduler_is_located() {
    let text = edit("scheduler = \"rr\"", "scheduler = \"fifo\"");
    assert_rejected(
        "unknown-scheduler",
        &text,
        line_of(&text, "fifo", false),
        "service[0].scheduler",
        "unknown scheduler \"fifo\" (expected one of: rr, wrr, lc, wlc, ",
    );
}

#[test]
fn duplicate_service_is_located() {
    let text = format!(
        "{GOOD}\n[[service]]\nprotocol = \"udp\"\naddress = \"198.18.0.100:80\"\n\n\
         [[service]]\nprotocol = \"tcp\"\naddress = \"198.18.0.100:80\"\n"
    );
    let first = line_of(&text, "address = \"198.18.0.100:80\"", false);
    assert_rejected(
        "duplicate-service",
        &text,
        line_of(&text, "address = \"198.18.0.100:80\"", true),
        "service[2].address",
        &format!("duplicate service tcp 198.18.0.100:80 (also defined at line {first})"),
    );
}

#[test]
fn unknown_forwarding_method_is_rejected() {
    let text = edit("forward = \"nat\"", "forward = \"gatewaying\"");
    assert_rejected(
        "forward-unknown",
        &text,
        line_of(&text, "\"gatewaying\"", false),
        "service[0].server[0].forward",
        "unknown forwarding method \"gatewaying\" (expected one of: nat, dr, tun)",
    );
}

#[test]
fn toml_syntax_error_is_located() {
    let text = edit("[[service]]\n", "[[service]\n");
    let line = line_of(&text, "[[service]", false);
    let dir = TempDir::new("syntax");
    let path = dir.write("bad.toml", &text);
    let path = path.to_str().unwrap();
    for args in [&["--check", "--config", path][..], &["--config", path][..]] {
        let run = rvsd(args);
        assert_eq!(run.status.code(), Some(2), "{args:?}: {}", run.stderr);
        assert!(
            run.stderr.contains(&format!("{path}:{line}: ")),
            "{args:?}: {}",
            run.stderr
        );
    }
}

#[test]
fn missing_file_is_reported() {
    let dir = TempDir::new("missing");
    let path = dir.0.join("does-not-exist.toml");
    let path = path.to_str().unwrap();
    for args in [&["--check", "--config", path][..], &["--config", path][..]] {
        let run = rvsd(args);
        assert_eq!(run.status.code(), Some(2), "{args:?}: {}", run.stderr);
        // No line and no key for an I/O error: `FILE: message`.
        assert!(
            run.stderr
                .contains(&format!("rvsd: {path}: cannot read configuration: ")),
            "{args:?}: {}",
            run.stderr
        );
        assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
        assert_eq!(run.stdout, "");
    }
}

#[test]
fn config_without_ports_or_unreadable_is_rejected() {
    let dir = TempDir::new("no-ports");
    let empty = dir.write("empty.toml", "# nothing\n");
    let empty = empty.to_str().unwrap();
    let directory = dir.0.to_str().unwrap();
    for (path, expected) in [
        (empty, format!("rvsd: {empty}: port: no [[port]] defined")),
        (
            directory,
            format!("rvsd: {directory}: cannot read configuration: "),
        ),
    ] {
        for args in [&["--check", "--config", path][..], &["--config", path][..]] {
            let run = rvsd(args);
            assert_eq!(run.status.code(), Some(2), "{args:?}: {}", run.stderr);
            assert!(
                run.stderr.starts_with(&expected),
                "{args:?}: {}",
                run.stderr
            );
            assert_eq!(run.stdout, "");
        }
    }
}

#[test]
fn relative_paths_are_reported_as_given() {
    // The fixture is addressed relative to the repository root (rvsd's cwd).
    let rel = "tests/fixtures/config/bad-scheduler.toml";
    let text = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)).unwrap();
    let line = line_of(&text, "scheduler = \"fifo\"", false);
    let run = rvsd(&["--check", "--config", rel]);
    assert_eq!(run.status.code(), Some(2));
    assert!(
        run.stderr
            .starts_with(&format!("rvsd: {rel}:{line}: service[0].scheduler: ")),
        "{}",
        run.stderr
    );
}

// ---------------------------------------------------------------------------
// Usage
// ---------------------------------------------------------------------------

#[test]
fn no_arguments_print_usage_and_fail() {
    let run = rvsd(&[]);
    assert!(!run.status.success());
    assert_ne!(run.status.code(), Some(0));
    assert!(run.stderr.contains("Usage:"), "{}", run.stderr);
    assert!(run.stderr.contains("--config"), "{}", run.stderr);
    assert_eq!(run.stdout, "");
}

#[test]
fn check_without_config_fails_with_usage() {
    let run = rvsd(&["--check"]);
    assert!(!run.status.success());
    assert!(run.stderr.contains("--config"), "{}", run.stderr);
    assert!(run.stderr.contains("Usage:"), "{}", run.stderr);
}

#[test]
fn unknown_option_fails_with_usage() {
    let run = rvsd(&["--config", "dpdk-config/lab.toml", "--frobnicate"]);
    assert!(!run.status.success());
    assert!(run.stderr.contains("--frobnicate"), "{}", run.stderr);
    assert!(run.stderr.contains("Usage:"), "{}", run.stderr);
}

#[test]
fn help_succeeds() {
    for flag in ["--help", "-h"] {
        let run = rvsd(&[flag]);
        assert_eq!(run.status.code(), Some(0), "{flag}: {}", run.stderr);
        assert!(run.stdout.contains("Usage:"), "{}", run.stdout);
        assert!(run.stdout.contains("--config"), "{}", run.stdout);
        assert!(run.stdout.contains("--check"), "{}", run.stdout);
    }
}

#[test]
fn version_succeeds() {
    let run = rvsd(&["--version"]);
    assert_eq!(run.status.code(), Some(0), "{}", run.stderr);
    assert!(
        run.stdout.contains(env!("CARGO_PKG_VERSION")),
        "{}",
        run.stdout
    );
}
