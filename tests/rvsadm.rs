//! rvsadm against a running rvsd: rvsd on a `net_ring` vdev (no traffic,
//! no namespaces), its control socket in a scratch directory, and the real
//! rvsadm binary driving it.

use std::fs;
use std::io::Write;
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rvs::control::client;

const RVSD: &str = env!("CARGO_BIN_EXE_rvsd");
const RVSADM: &str = env!("CARGO_BIN_EXE_rvsadm");
const TOKEN: &str = "rvs-test-token-3f9a";

/// A scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("rvsadm-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The configuration file; `services` follows the port, `listen` is the
/// TCP listener's address.
fn config(dir: &Path, name: &str, listen: &str, services: &str) -> String {
    format!(
        r#"[dpdk]
lcores = "0-1"
memory_mb = 256
mbufs = 2047
args = ["--no-shconf", "--file-prefix=rvsadm-{name}-{pid}", "--log-level=warning"]

[[port]]
name = "one"
vdev = "net_ring0"
addresses = ["198.18.0.1/24", "198.19.0.1/24"]

[control]
socket = "{socket}"
listen = "{listen}"
token_file = "{token}"
{services}"#,
        pid = std::process::id(),
        socket = dir.join("run/rvsd.sock").display(),
        token = dir.join("token").display(),
    )
}

/// rvsd running with its control socket up; stopped (SIGTERM) on drop.
struct Daemon {
    child: Child,
    socket: PathBuf,
    stderr: PathBuf,
}

fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success(), "kill -{name} {pid}");
}

/// Polls `ready` every 20 ms for up to 30 s.
fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let started = Instant::now();
    while !ready() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Daemon {
    fn start(dir: &Path, config_file: &Path) -> Daemon {
        let stderr = dir.join("rvsd.stderr");
        let child = Command::new(RVSD)
            .arg("--config")
            .arg(config_file)
            .stdout(Stdio::null())
            .stderr(fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("spawn rvsd");
        let mut daemon = Daemon {
            child,
            socket: dir.join("run/rvsd.sock"),
            stderr,
        };
        let socket = daemon.socket.clone();
        wait_for("rvsd's control socket", || {
            if let Ok(Some(status)) = daemon.child.try_wait() {
                panic!("rvsd exited: {status}\n{}", daemon.log());
            }
            UnixStream::connect(&socket).is_ok()
        });
        daemon
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// rvsadm ARGS, with `stdin` as its standard input.
    fn rvsadm_in(&self, args: &str, stdin: &str) -> Output {
        rvsadm(&self.socket, args, stdin)
    }

    fn rvsadm(&self, args: &str) -> Output {
        self.rvsadm_in(args, "")
    }

    /// rvsadm ARGS must succeed quietly; its stdout.
    fn ok(&self, args: &str) -> String {
        let out = self.rvsadm(args);
        assert_eq!(
            (out.status.code(), text(&out.stderr).as_str()),
            (Some(0), ""),
            "rvsadm {args}"
        );
        text(&out.stdout)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        signal(self.child.id(), "TERM");
        let _ = self.child.wait();
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn rvsadm(socket: &Path, args: &str, stdin: &str) -> Output {
    let mut child = Command::new(RVSADM)
        .arg("--socket")
        .arg(socket)
        .args(args.split_whitespace())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn rvsadm");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// A TCP port that was free a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

const HEADER: &str = "IP Virtual Server version 1.2.1 (size=4096)\n\
                      Prot LocalAddress:Port Scheduler Flags\n  \
                      -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n";

const FILE_SERVICE: &str = r#"
[[service]]
protocol = "udp"
address = "198.18.0.100:53"
scheduler = "rr"
[[service.server]]
address = "198.19.0.31:53"
forward = "nat"
"#;

#[test]
fn rvsadm_drives_rvsd() {
    let scratch = Scratch::new("drive");
    let dir = &scratch.0;
    fs::write(dir.join("token"), format!("{TOKEN}\n")).unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let file = dir.join("rvsd.toml");
    fs::write(&file, config(dir, "drive", &listen, FILE_SERVICE)).unwrap();
    let d = Daemon::start(dir, &file);

    // The socket is root's only.
    let mode = fs::metadata(&d.socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "socket mode {mode:o}");

    // The file's service, then rvsadm's.
    assert_eq!(
        d.ok("-Ln"),
        format!(
            "{HEADER}UDP  198.18.0.100:53 rr\n  \
             -> 198.19.0.31:53               Masq    1      0          0         \n"
        )
    );
    d.ok("-A -t 198.18.0.100:80 -s wlc -p 600");
    d.ok("-a -t 198.18.0.100:80 -r 198.19.0.11:8080 -m -w 2");
    d.ok("-a -t 198.18.0.100:80 -r 198.19.0.12 -g");
    d.ok("-a -t 198.18.0.100:80 -r 198.19.0.13:8080 -m -w 0");
    d.ok("-e -t 198.18.0.100:80 -r 198.19.0.11:8080 -m -w 5");
    d.ok("-d -t 198.18.0.100:80 -r 198.19.0.13:8080");
    let listing = format!(
        "{HEADER}TCP  198.18.0.100:80 wlc persistent 600\n  \
         -> 198.19.0.11:8080             Masq    5      0          0         \n  \
         -> 198.19.0.12:80               Route   1      0          0         \n\
         UDP  198.18.0.100:53 rr\n  \
         -> 198.19.0.31:53               Masq    1      0          0         \n"
    );
    assert_eq!(d.ok("-Ln"), listing);
    let saved = d.ok("-S -n");
    assert_eq!(
        saved,
        "-A -t 198.18.0.100:80 -s wlc -p 600\n\
         -a -t 198.18.0.100:80 -r 198.19.0.11:8080 -m -w 5\n\
         -a -t 198.18.0.100:80 -r 198.19.0.12:80 -g -w 1\n\
         -A -u 198.18.0.100:53 -s rr\n\
         -a -u 198.18.0.100:53 -r 198.19.0.31:53 -m -w 1\n"
    );

    // A change rvs cannot run is refused, naming the argument; nothing moves.
    let out = d.rvsadm("-a -t 198.18.0.100:80 -r 198.18.5.9:80 -m");
    assert_eq!(out.status.code(), Some(255));
    assert!(
        text(&out.stderr)
            .starts_with("-t 198.18.0.100:80 -r 198.18.5.9:80: server 198.18.5.9 is unreachable"),
        "{}",
        text(&out.stderr)
    );
    let out = d.rvsadm("-e -t 198.18.0.100:80 -r 198.19.0.99:80 -m");
    assert_eq!(out.status.code(), Some(255));
    assert_eq!(
        text(&out.stderr),
        "No such destination: -t 198.18.0.100:80 -r 198.19.0.99:80\n"
    );
    // A usage error never reaches rvsd: ipvsadm's message and code.
    let out = d.rvsadm("-a -t 198.18.0.100:80 -w 3");
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(d.ok("-S -n"), saved);

    // Save, clear, restore: the same table.
    d.ok("-C");
    assert_eq!(d.ok("-Ln"), HEADER);
    let out = d.rvsadm_in("-R", &saved);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(d.ok("-S -n"), saved);
    assert_eq!(d.ok("-Ln"), listing);
    d.ok("-D -t 198.18.0.100:80");
    assert_eq!(
        d.ok("-S -n"),
        "-A -u 198.18.0.100:53 -s rr\n-a -u 198.18.0.100:53 -r 198.19.0.31:53 -m -w 1\n"
    );
    let out = d.rvsadm_in("-R", &saved);
    assert_eq!(
        out.status.code(),
        Some(255),
        "the UDP service is there already"
    );
    assert_eq!(
        text(&out.stderr),
        "line 4: Service already exists: -u 198.18.0.100:53\n\
         line 5: Destination already exists: -u 198.18.0.100:53 -r 198.19.0.31:53\n"
    );
    // The lines the table accepted were applied, as ipvsadm's are.
    assert_eq!(d.ok("-S -n"), saved);

    // The model as JSON over the socket.
    let stream = UnixStream::connect(&d.socket).unwrap();
    let reply = client::request(stream, "GET", "/v1/model", &[], b"").unwrap();
    assert_eq!(reply.status, 200);
    let model: rvs::adm::Model = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(model.services.len(), 2);

    // TCP: the token or nothing.
    let tcp = |headers: &[(&str, &str)]| {
        let stream = TcpStream::connect(&listen).unwrap();
        client::request(stream, "GET", "/v1/model", headers, b"").unwrap()
    };
    assert_eq!(tcp(&[]).status, 401);
    assert_eq!(tcp(&[("Authorization", "Bearer wrong")]).status, 401);
    let bearer = format!("Bearer {TOKEN}");
    let reply = tcp(&[("Authorization", &bearer)]);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body, serde_json::to_string(&model).unwrap());
    let stream = TcpStream::connect(&listen).unwrap();
    let body = br#"{"args": ["-S", "-n"]}"#;
    let reply = client::request(
        stream,
        "POST",
        "/v1/ipvsadm",
        &[("Authorization", &bearer)],
        body,
    )
    .unwrap();
    let out: rvs::control::api::IpvsadmReply = serde_json::from_str(&reply.body).unwrap();
    assert_eq!((out.code, out.stdout.as_str()), (0, saved.as_str()));

    // SIGHUP with a broken file: logged, the running table kept.
    let broken = config(dir, "drive", &listen, FILE_SERVICE).replace("\"rr\"", "\"fifo\"");
    fs::write(&file, &broken).unwrap();
    let line = 1 + broken.lines().position(|l| l.contains("fifo")).unwrap();
    let want = format!(
        "{}:{line}: service[0].scheduler: unknown scheduler \"fifo\"",
        file.display()
    );
    signal(d.child.id(), "HUP");
    wait_for("the reload error in rvsd's log", || d.log().contains(&want));
    assert!(d.log().contains("keeping the running configuration"));
    assert_eq!(d.ok("-S -n"), saved);

    // A good file replaces rvsadm's changes.
    fs::write(&file, config(dir, "drive", &listen, FILE_SERVICE)).unwrap();
    signal(d.child.id(), "HUP");
    wait_for("the reload", || d.log().contains("rvsd: reloaded"));
    assert_eq!(
        d.ok("-S -n"),
        "-A -u 198.18.0.100:53 -s rr\n-a -u 198.18.0.100:53 -r 198.19.0.31:53 -m -w 1\n"
    );

    // The socket goes with rvsd.
    let socket = d.socket.clone();
    drop(d);
    assert!(!socket.exists(), "stale socket left behind");
}

#[test]
fn rvsadm_without_rvsd() {
    let scratch = Scratch::new("none");
    let socket = scratch.0.join("rvsd.sock");

    let out = rvsadm(&socket, "-Ln", "");
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with(&format!(
            "rvsadm: Can't connect to rvsd at {}: ",
            socket.display()
        )),
        "{stderr}"
    );

    // Help, version and usage errors are rvsadm's own, as ipvsadm's.
    let mut model = rvs::adm::Model::default();
    for args in [
        "-h",
        "-v",
        "-A -t 198.18.0.100:80 -w 1",
        "-X",
        "-a -t 198.18.0.100:80",
    ] {
        let argv: Vec<String> = args.split_whitespace().map(String::from).collect();
        let want = rvs::adm::run(&argv, &mut model, std::io::empty());
        let out = rvsadm(&socket, args, "");
        assert_eq!(
            (out.status.code(), text(&out.stdout), text(&out.stderr)),
            (Some(want.code & 0xff), want.stdout, want.stderr),
            "rvsadm {args}"
        );
    }
    assert_eq!(
        rvsadm(&socket, "-L --socket", "").status.code(),
        Some(2),
        "--socket without a path"
    );
}

/// Every scheduler by name, and the hashing schedulers' `-b` flags, through
/// rvsadm into the running configuration and back out of `-Ln` and `-S`.
#[test]
fn every_scheduler_and_the_sched_flags() {
    let scratch = Scratch::new("sched");
    let dir = &scratch.0;
    fs::write(dir.join("token"), format!("{TOKEN}\n")).unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let file = dir.join("rvsd.toml");
    fs::write(&file, config(dir, "sched", &listen, "")).unwrap();
    let d = Daemon::start(dir, &file);
    for name in rvs::sched::SchedulerKind::ALL.iter().map(|k| k.name()) {
        d.ok(&format!("-A -t 198.18.0.100:80 -s {name}"));
        d.ok("-a -t 198.18.0.100:80 -r 198.19.0.11:80 -m");
        assert_eq!(
            d.ok("-Ln"),
            format!(
                "{HEADER}TCP  198.18.0.100:80 {name}\n  \
                 -> 198.19.0.11:80               Masq    1      0          0         \n"
            ),
            "{name}"
        );
        d.ok("-D -t 198.18.0.100:80");
    }
    d.ok("-A -t 198.18.0.100:80 -s mh -b mh-port,mh-fallback");
    d.ok("-A -t 198.18.0.100:443 -s sh -b sh-fallback");
    let listing = d.ok("-Ln");
    assert!(
        listing.contains("TCP  198.18.0.100:80 mh (mh-fallback,mh-port)\n"),
        "{listing}"
    );
    assert!(
        listing.contains("TCP  198.18.0.100:443 sh (sh-fallback)\n"),
        "{listing}"
    );
    let saved = d.ok("-S -n");
    assert!(
        saved.contains("-A -t 198.18.0.100:80 -s mh -b mh-fallback,mh-port\n"),
        "{saved}"
    );
    // Flags of another scheduler are refused, naming the argument.
    let out = d.rvsadm("-E -t 198.18.0.100:443 -s wlc -b sh-port");
    assert_ne!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).contains("incompatible scheduler flag `sh-port'"),
        "{}",
        text(&out.stderr)
    );
    assert!(d
        .ok("-Ln")
        .contains("TCP  198.18.0.100:443 sh (sh-fallback)\n"));
}

/// `-x` / `-y` reach the running configuration and `--thresholds` shows them.
#[test]
fn connection_thresholds() {
    let scratch = Scratch::new("thresholds");
    let dir = &scratch.0;
    fs::write(dir.join("token"), format!("{TOKEN}\n")).unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let file = dir.join("rvsd.toml");
    fs::write(&file, config(dir, "thresholds", &listen, "")).unwrap();
    let d = Daemon::start(dir, &file);
    d.ok("-A -t 198.18.0.100:80 -s wlc");
    d.ok("-a -t 198.18.0.100:80 -r 198.19.0.11:80 -m -x 100 -y 50");
    assert_eq!(
        d.ok("-L -n --thresholds"),
        format!(
            "{HEADER_THRESHOLDS}TCP  198.18.0.100:80 wlc\n  \
             -> 198.19.0.11:80               100        50         0          0         \n"
        )
    );
    // A lower threshold above the upper one is refused, table unchanged.
    let out = d.rvsadm("-e -t 198.18.0.100:80 -r 198.19.0.11:80 -m -x 10 -y 50");
    assert_ne!(out.status.code(), Some(0));
    assert!(d.ok("-L -n --thresholds").contains("100        50"));
}

const HEADER_THRESHOLDS: &str = "IP Virtual Server version 1.2.1 (size=4096)\n\
    Prot LocalAddress:Port            Uthreshold Lthreshold ActiveConn InActConn \n  \
    -> RemoteAddress:Port\n";
