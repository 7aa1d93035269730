//! Helpers of the end-to-end tests in the network-namespace lab (scripts/lab):
//! bring a lab up and down, run rvsd in its director namespace, run clients.
//! Needs root (namespaces); CI runs as root.
#![allow(dead_code)] // each test binary uses its own subset

pub mod browser;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Labs and rvsd instances are heavy on a 2-core machine: one at a time.
pub static SERIAL: Mutex<()> = Mutex::new(());
static NEXT_ID: AtomicU32 = AtomicU32::new(0);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn require_root() {
    // The lab needs CAP_SYS_ADMIN and CAP_NET_ADMIN.
    let out = Command::new("id").arg("-u").output().expect("id -u");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "0",
        "the lab tests need root (network namespaces)"
    );
}

pub struct Lab {
    pub id: String,
    pub vars: HashMap<String, String>,
}

impl Lab {
    /// The two-armed lab with `servers` real servers.
    pub fn up(servers: u32) -> Lab {
        Lab::up_with(&["--servers", &servers.to_string()])
    }

    /// A lab from `scripts/lab up` with these options.
    pub fn up_with(options: &[&str]) -> Lab {
        require_root();
        let id = format!(
            "t{}x{}",
            std::process::id() % 100_000,
            NEXT_ID.fetch_add(1, Ordering::Relaxed)
        );
        let out = Command::new(repo().join("scripts/lab"))
            .args(["up", "--id", &id])
            .args(options)
            .stderr(Stdio::inherit())
            .output()
            .expect("run scripts/lab up");
        // Tear down even a half-built lab if `up` failed.
        let mut lab = Lab {
            id,
            vars: HashMap::new(),
        };
        assert!(out.status.success(), "scripts/lab up failed");
        // The variables are shell-quoted (%q): let bash unquote them.
        let unquoted = Command::new("bash")
            .args(["-c", "set -a; eval \"$1\"; set +a; env", "lab-env"])
            .arg(String::from_utf8_lossy(&out.stdout).as_ref())
            .output()
            .expect("bash");
        for line in String::from_utf8_lossy(&unquoted.stdout).lines() {
            if let Some((k, v)) = line.split_once('=') {
                if k.starts_with("LAB_") {
                    lab.vars.insert(k.to_string(), v.to_string());
                }
            }
        }
        lab
    }

    pub fn var(&self, key: &str) -> &str {
        self.vars
            .get(key)
            .unwrap_or_else(|| panic!("lab variable {key} missing"))
    }

    /// Runs `cmd` in the namespace of `role` (client, director, rs1, ...).
    pub fn exec(&self, role: &str, cmd: &[&str]) -> Output {
        let ns = format!("rvs-{}-{role}", self.id);
        Command::new("ip")
            .args(["netns", "exec", &ns])
            .args(cmd)
            .output()
            .expect("ip netns exec")
    }

    pub fn curl(&self, path: &str) -> Option<String> {
        let url = format!("http://{}{path}", self.var("LAB_VIP"));
        let out = self.exec("client", &["curl", "-s", "-f", "-m", "10", &url]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// An rvsd configuration from scripts/lab-config with these options.
    pub fn config(&self, options: &[&str]) -> String {
        let out = Command::new(repo().join("scripts/lab-config"))
            .args(options)
            .envs(&self.vars)
            .output()
            .expect("scripts/lab-config");
        assert!(
            out.status.success(),
            "lab-config: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn state_dir(&self) -> PathBuf {
        PathBuf::from(self.var("LAB_STATE_DIR"))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = Command::new(repo().join("scripts/lab"))
            .args(["down", "--id", &self.id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

pub struct Rvsd {
    child: Option<Child>,
    stderr_path: PathBuf,
}

impl Rvsd {
    /// Starts rvsd in the director namespace and waits until the VIP answers.
    pub fn start(lab: &Lab, config: &str) -> Rvsd {
        Rvsd::start_with_control(lab, config, "")
    }

    /// The control socket of the lab's rvsd.
    pub fn socket(lab: &Lab) -> PathBuf {
        lab.state_dir().join("rvsd.sock")
    }

    /// [`Rvsd::start`] with more lines for the `[control]` table.
    pub fn start_with_control(lab: &Lab, config: &str, control_extra: &str) -> Rvsd {
        let dir = lab.state_dir();
        let conf = dir.join("rvsd.toml");
        // Each lab's rvsd has its own control socket, so labs can run at once.
        let control = format!(
            "\n[control]\nsocket = \"{}\"\n{control_extra}",
            Rvsd::socket(lab).display()
        );
        std::fs::write(&conf, format!("{config}{control}")).unwrap();
        let stderr_path = dir.join("rvsd.err");
        let child = Command::new("ip")
            .args(["netns", "exec", &format!("rvs-{}-director", lab.id)])
            .arg(env!("CARGO_BIN_EXE_rvsd"))
            .arg("--config")
            .arg(&conf)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .expect("spawn rvsd");
        let mut rvsd = Rvsd {
            child: Some(child),
            stderr_path,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let probe = lab.exec(
                "client",
                &[
                    "curl",
                    "-s",
                    "-f",
                    "-m",
                    "1",
                    "-o",
                    "/dev/null",
                    &format!("http://{}/", lab.var("LAB_VIP")),
                ],
            );
            if probe.status.success() {
                break;
            }
            if let Some(status) = rvsd.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("rvsd exited early ({status}): {}", rvsd.stderr());
            }
            assert!(
                Instant::now() < deadline,
                "VIP never answered; rvsd stderr:\n{}",
                rvsd.stderr()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        rvsd
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// SIGTERM, wait, and parse the exit report.
    pub fn stop(mut self) -> HashMap<String, u64> {
        let child = self.child.take().unwrap();
        // `ip netns exec` execs rvsd, so the child pid is rvsd's.
        let killed = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "rvsd exit status {:?}: {}",
            out.status,
            self.stderr()
        );
        let report: HashMap<String, u64> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('='))
            .filter_map(|(k, v)| v.parse::<f64>().ok().map(|v| (k.to_string(), v as u64)))
            .collect();
        assert!(
            report.contains_key("forward_seconds"),
            "no exit report: {:?}",
            String::from_utf8_lossy(&out.stdout)
        );
        report
    }
}

impl Drop for Rvsd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Opens `n` new connections through the VIP and counts the answering servers.
pub fn spread(lab: &Lab, n: usize) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for i in 0..n {
        let who = lab
            .curl("/")
            .unwrap_or_else(|| panic!("request {i} failed"));
        *seen.entry(who.trim().to_string()).or_insert(0) += 1;
    }
    seen
}

/// Drops that must never happen in a clean lab run.
pub fn assert_clean(report: &HashMap<String, u64>) {
    for reason in [
        "malformed",
        "bad_ip_checksum",
        "multi_segment",
        "no_route",
        "neighbor_timeout",
        "neighbor_queue_full",
        "conn_table_full",
        "no_mbuf",
        "tx_full",
        "no_server",
    ] {
        assert_eq!(
            report.get(&format!("drop.{reason}")).copied(),
            Some(0),
            "drop.{reason} in {report:?}"
        );
    }
}

/// `curl` from `source` (an address of the client namespace).
pub fn curl_from(lab: &Lab, source: &str, port: u16) -> String {
    let url = format!("http://{}:{port}/", lab.var("LAB_VIP"));
    let out = lab.exec(
        "client",
        &["curl", "-s", "-f", "-m", "10", "--interface", source, &url],
    );
    assert!(
        out.status.success(),
        "curl from {source} to {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Gives the client namespace the extra addresses 198.18.0.3..=5.
pub fn extra_client_addresses(lab: &Lab) -> Vec<String> {
    let dev = lab.var("LAB_CLIENT_IF").to_string();
    (3..=5)
        .map(|last| {
            let addr = format!("198.18.0.{last}");
            let out = lab.exec(
                "client",
                &["ip", "addr", "add", &format!("{addr}/24"), "dev", &dev],
            );
            assert!(out.status.success(), "ip addr add {addr}");
            addr
        })
        .collect()
}
