//! End-to-end tests in the network-namespace lab (scripts/lab): a real client
//! (curl, python) talks to the VIP, rvsd forwards through DPDK's af_packet PMD,
//! real HTTP/UDP servers answer. Needs root (namespaces); CI runs as root.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Labs and rvsd instances are heavy on a 2-core machine: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());
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

struct Lab {
    id: String,
    vars: HashMap<String, String>,
}

impl Lab {
    fn up(servers: u32) -> Lab {
        require_root();
        let id = format!(
            "t{}x{}",
            std::process::id() % 100_000,
            NEXT_ID.fetch_add(1, Ordering::Relaxed)
        );
        let out = Command::new(repo().join("scripts/lab"))
            .args(["up", "--id", &id, "--servers", &servers.to_string()])
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

    fn var(&self, key: &str) -> &str {
        self.vars
            .get(key)
            .unwrap_or_else(|| panic!("lab variable {key} missing"))
    }

    /// Runs `cmd` in the namespace of `role` (client, director, rs1, ...).
    fn exec(&self, role: &str, cmd: &[&str]) -> Output {
        let ns = format!("rvs-{}-{role}", self.id);
        Command::new("ip")
            .args(["netns", "exec", &ns])
            .args(cmd)
            .output()
            .expect("ip netns exec")
    }

    fn curl(&self, path: &str) -> Option<String> {
        let url = format!("http://{}{path}", self.var("LAB_VIP"));
        let out = self.exec("client", &["curl", "-s", "-f", "-m", "10", &url]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// An rvsd configuration from scripts/lab-config with these options.
    fn config(&self, options: &[&str]) -> String {
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

    fn state_dir(&self) -> PathBuf {
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

struct Rvsd {
    child: Option<Child>,
    stderr_path: PathBuf,
}

impl Rvsd {
    /// Starts rvsd in the director namespace and waits until the VIP answers.
    fn start(lab: &Lab, config: &str) -> Rvsd {
        let dir = lab.state_dir();
        let conf = dir.join("rvsd.toml");
        std::fs::write(&conf, config).unwrap();
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

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// SIGTERM, wait, and parse the exit report.
    fn stop(mut self) -> HashMap<String, u64> {
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
fn spread(lab: &Lab, n: usize) -> HashMap<String, usize> {
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
fn assert_clean(report: &HashMap<String, u64>) {
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

#[test]
fn rr_splits_forty_connections_evenly() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let lab = Lab::up(2);
    let rvsd = Rvsd::start(&lab, &lab.config(&["--scheduler", "rr"]));
    let seen = spread(&lab, 40);
    let report = rvsd.stop();
    assert_eq!(seen.get("rs1"), Some(&20), "{seen:?}");
    assert_eq!(seen.get("rs2"), Some(&20), "{seen:?}");
    assert_clean(&report);
    assert!(report["conns_created"] >= 40);
    assert!(report["port.wan.rx_packets"] > 0 && report["port.lan.tx_packets"] > 0);
}

#[test]
fn wrr_three_to_one_gives_thirty_and_ten() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let lab = Lab::up(2);
    let rvsd = Rvsd::start(
        &lab,
        &lab.config(&["--scheduler", "wrr", "--weights", "3,1"]),
    );
    // Any 40 consecutive picks cover ten whole wrr cycles of A A A B.
    let seen = spread(&lab, 40);
    let report = rvsd.stop();
    assert_eq!(seen.get("rs1"), Some(&30), "{seen:?}");
    assert_eq!(seen.get("rs2"), Some(&10), "{seen:?}");
    assert_clean(&report);
}

#[test]
fn sixteen_megabyte_download_arrives_intact() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let lab = Lab::up(2);
    let rvsd = Rvsd::start(&lab, &lab.config(&["--scheduler", "wlc"]));
    let url = format!("http://{}/blob", lab.var("LAB_VIP"));
    let out = lab.exec(
        "client",
        &["sh", "-c", &format!("curl -s -f -m 60 '{url}' | sha256sum")],
    );
    let report = rvsd.stop();
    let digest = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        digest.split_whitespace().next(),
        Some(lab.var("LAB_BLOB_SHA256")),
        "sha256 of the download"
    );
    assert_clean(&report);
    // 16 MiB of 1500-byte frames passed from the LAN port to the WAN port.
    assert!(
        report["port.lan.rx_packets"] > 16 * 1024 * 1024 / 1500,
        "{report:?}"
    );
}

#[test]
fn udp_request_is_answered_from_the_vip() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let lab = Lab::up(2);
    let rvsd = Rvsd::start(
        &lab,
        &lab.config(&["--scheduler", "rr", "--udp-scheduler", "rr"]),
    );
    let vip = lab.var("LAB_VIP").to_string();
    let script = format!(
        "import socket\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         s.settimeout(5)\n\
         s.sendto(b'hello', ('{vip}', 53))\n\
         data, peer = s.recvfrom(2048)\n\
         print(peer[0], peer[1], data.decode())\n"
    );
    let out = lab.exec("client", &["python3", "-c", &script]);
    let report = rvsd.stop();
    assert!(
        out.status.success(),
        "UDP exchange failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer = String::from_utf8_lossy(&out.stdout);
    let fields: Vec<&str> = answer.split_whitespace().collect();
    assert_eq!(
        fields.first().copied(),
        Some(vip.as_str()),
        "reply source address: {answer}"
    );
    assert_eq!(
        fields.get(1).copied(),
        Some("53"),
        "reply source port: {answer}"
    );
    assert!(
        matches!(fields.get(2).copied(), Some("rs1" | "rs2")),
        "reply names a real server: {answer}"
    );
    assert_eq!(fields.get(3).copied(), Some("hello"), "{answer}");
    assert_clean(&report);
}
