//! Management of a running director in the namespace lab: rvsadm's listings
//! with live figures, live reconfiguration under load, the web console in
//! headless Chromium and /metrics. Needs root; CI runs as root.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::browser::{dump_dom_in, screenshot_in};
use common::{assert_clean, spread, Lab, Rvsd, SERIAL};

const TOKEN: &str = "lab-console-token-7c1e";
const LISTEN: &str = "127.0.0.1:9180";

fn rvsadm(lab: &Lab, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rvsadm"))
        .arg("--socket")
        .arg(Rvsd::socket(lab))
        .args(args)
        .output()
        .expect("run rvsadm")
}

/// rvsadm ARGS must succeed; its stdout.
#[track_caller]
fn ok(lab: &Lab, args: &[&str]) -> String {
    let out = rvsadm(lab, args);
    assert!(
        out.status.success(),
        "rvsadm {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Replaces every run of digits after column `from` with `N` and trims the
/// line ends: listings whose counts vary from run to run compare as text.
/// (The padding itself is checked byte for byte by tests/adm_golden.)
fn normalise_numbers(text: &str, from: usize) -> String {
    text.lines()
        .map(|l| {
            let (head, tail) = l.split_at(from.min(l.len()));
            let mut out = head.to_string();
            let mut in_number = false;
            for c in tail.chars() {
                if c.is_ascii_digit() {
                    if !in_number {
                        out.push('N');
                    }
                    in_number = true;
                } else {
                    in_number = false;
                    out.push(c);
                }
            }
            out.trim_end().to_string() + "\n"
        })
        .collect()
}

fn start(lab: &Lab, options: &[&str]) -> Rvsd {
    let token_file = lab.state_dir().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    Rvsd::start_with_control(
        lab,
        &lab.config(options),
        &format!(
            "listen = \"{LISTEN}\"\ntoken_file = \"{}\"\n",
            token_file.display()
        ),
    )
}

/// `curl` inside the director namespace against the TCP listener.
fn director_curl(lab: &Lab, path: &str, token: Option<&str>) -> (u16, String) {
    let mut args = vec![
        "curl".to_string(),
        "-s".into(),
        "-m".into(),
        "5".into(),
        "-w".into(),
        "\n%{http_code}".into(),
    ];
    if let Some(t) = token {
        args.push("-H".into());
        args.push(format!("Authorization: Bearer {t}"));
    }
    args.push(format!("http://{LISTEN}{path}"));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = lab.exec("director", &argv);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

#[test]
fn rvsadm_lists_live_figures_and_the_console_and_metrics_show_them() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let lab = Lab::up(2);
    let rvsd = start(&lab, &["--scheduler", "rr"]);
    spread(&lab, 20);

    // -Ln: the table with its connection counts (numbers normalised).
    let listing = ok(&lab, &["-L", "-n"]);
    let expected = "IP Virtual Server version 1.2.1 (size=4096)\n\
         Prot LocalAddress:Port Scheduler Flags\n\
         \x20 -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n\
         TCP  198.18.0.100:80 rr\n\
         \x20 -> 198.19.0.11:80               Masq    1      N          N\n\
         \x20 -> 198.19.0.12:80               Masq    1      N          N\n\
         UDP  198.18.0.100:53 rr\n\
         \x20 -> 198.19.0.11:53               Masq    1      N          N\n\
         \x20 -> 198.19.0.12:53               Masq    1      N          N\n";
    // Connection counts start at column 49, after the weight.
    assert_eq!(normalise_numbers(&listing, 49), expected, "{listing}");
    // The 20 connections and the readiness probe(s) are closed or closing:
    // all inactive.
    let inactive: Vec<u64> = listing
        .lines()
        .filter(|l| l.contains(":80 ") && l.contains("Masq"))
        .map(|l| l.split_whitespace().nth(5).unwrap().parse().unwrap())
        .collect();
    let closed: u64 = inactive.iter().sum();
    assert!((21..=25).contains(&closed), "{listing}");

    // -c: the connections themselves, from every worker.
    let conns = ok(&lab, &["-L", "-n", "-c"]);
    let mut lines = conns.lines();
    assert_eq!(lines.next(), Some("IPVS connection entries"));
    assert_eq!(
        lines.next(),
        Some("pro expire state       source             virtual            destination")
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split_whitespace().collect()).collect();
    let tcp: Vec<&Vec<&str>> = rows.iter().filter(|r| r[0] == "TCP").collect();
    assert_eq!(tcp.len() as u64, closed, "{conns}");
    for r in &tcp {
        assert_eq!(r.len(), 6, "{r:?}");
        let (mm, ss) = r[1].split_once(':').expect("MM:SS");
        assert!(mm.len() == 2 && ss.len() == 2, "{r:?}");
        assert!(
            matches!(
                r[2],
                "TIME_WAIT" | "FIN_WAIT" | "CLOSE" | "CLOSE_WAIT" | "LAST_ACK" | "SYN_RECV"
            ),
            "{r:?}"
        );
        assert!(r[3].starts_with("198.18.0.2:"), "{r:?}");
        assert_eq!(r[4], "198.18.0.100:80");
        assert!(matches!(r[5], "198.19.0.11:80" | "198.19.0.12:80"), "{r:?}");
    }

    // --stats: connections and packets per server and service.
    let stats = ok(&lab, &["-L", "-n", "--stats", "--exact"]);
    let tcp_line = stats
        .lines()
        .find(|l| l.starts_with("TCP  198.18.0.100:80"))
        .unwrap();
    let fields: Vec<u64> = tcp_line
        .split_whitespace()
        .skip(2)
        .map(|f| f.parse().unwrap())
        .collect();
    assert_eq!(fields[0], closed, "connections: {stats}");
    assert!(
        fields[1] >= 20 * 5 && fields[2] >= 20 * 4,
        "packets: {stats}"
    );
    assert!(
        fields[3] > fields[1] * 40 && fields[4] > fields[2] * 40,
        "bytes: {stats}"
    );

    // --rate while a client keeps connecting (the estimator samples every 2 s).
    let vip = lab.var("LAB_VIP").to_string();
    let load = std::thread::spawn({
        let ns = format!("rvs-{}-client", lab.id);
        move || {
            Command::new("ip")
                .args(["netns", "exec", &ns, "sh", "-c"])
                .arg(format!(
                    "end=$(($(date +%s) + 7)); while [ $(date +%s) -lt $end ]; do \
                     curl -s -o /dev/null -m 2 http://{vip}/; done"
                ))
                .status()
                .unwrap()
        }
    });
    std::thread::sleep(Duration::from_secs(6));
    let rates = ok(&lab, &["-L", "-n", "--rate"]);
    load.join().unwrap();
    let cps: u64 = rates
        .lines()
        .find(|l| l.starts_with("TCP  198.18.0.100:80"))
        .and_then(|l| l.split_whitespace().nth(2))
        .unwrap()
        .parse()
        .unwrap();
    assert!(cps > 0, "CPS under load: {rates}");

    // The TCP API wants the token; the console page itself does not.
    assert_eq!(director_curl(&lab, "/v1/model", None).0, 401);
    assert_eq!(director_curl(&lab, "/v1/model", Some("wrong")).0, 401);
    assert_eq!(director_curl(&lab, "/v1/model", Some(TOKEN)).0, 200);
    assert_eq!(director_curl(&lab, "/", None).0, 200);

    // /metrics in Prometheus text format, with the live figures.
    let (code, metrics) = director_curl(&lab, "/metrics", Some(TOKEN));
    assert_eq!(code, 200);
    let series = metrics
        .lines()
        .find(|l| {
            l.starts_with(
                "rvs_server_connections_total{service=\"TCP 198.18.0.100:80\",server=\"198.19.0.11:80\"}",
            )
        })
        .unwrap_or_else(|| panic!("no server series in:\n{metrics}"));
    let value: f64 = series.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(value >= 10.0, "{series}");
    assert!(metrics.contains("rvs_drops_total{reason=\"no_connection\"}"));

    // The console in headless Chromium, in the director's namespace.
    let ns = format!("rvs-{}-director", lab.id);
    let url = format!("http://{LISTEN}/#token={TOKEN}");
    let dom = dump_dom_in(Some(&ns), &url);
    for needle in [
        "data-service=\"TCP 198.18.0.100:80\"",
        "data-service=\"UDP 198.18.0.100:53\"",
        "data-server=\"198.19.0.11:80\"",
        "data-server=\"198.19.0.12:80\"",
        "data-reason=\"no_connection\"",
        "data-port=\"wan\"",
    ] {
        assert!(dom.contains(needle), "console lacks {needle}:\n{dom}");
    }
    assert!(dom.contains("<p id=\"status\" class=\"ok\">"), "{dom}");
    screenshot_in(
        Some(&ns),
        &url,
        &lab.state_dir().join("console.png"),
        20_000,
    );
    if let Ok(keep) = std::env::var("RVS_CONSOLE_SCREENSHOT") {
        std::fs::copy(lab.state_dir().join("console.png"), Path::new(&keep)).unwrap();
    }
    let dom = dump_dom_in(Some(&ns), &format!("http://{LISTEN}/#token=wrong"));
    assert!(
        dom.contains("<p id=\"status\" class=\"error\">token required"),
        "{dom}"
    );

    let report = rvsd.stop();
    assert_clean(&report);
}

#[test]
fn live_reconfiguration_under_load_loses_no_request() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let lab = Lab::up(3);
    let rvsd = start(&lab, &["--scheduler", "wrr"]);
    let vip = lab.var("LAB_VIP").to_string();
    let rs3 = "198.19.0.13:80";
    ok(&lab, &["-d", "-t", &format!("{vip}:80"), "-r", rs3]);

    // Two client threads open and close connections as fast as they can,
    // each request must be answered; they report count and failures.
    let script = format!(
        "import socket, threading, time\n\
         stop = time.time() + 30\n\
         counts = [0, 0]\n\
         failed = []\n\
         def run(i):\n\
         \x20   while time.time() < stop:\n\
         \x20       try:\n\
         \x20           s = socket.create_connection(('{vip}', 80), timeout=3)\n\
         \x20           s.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n')\n\
         \x20           data = b''\n\
         \x20           while True:\n\
         \x20               chunk = s.recv(4096)\n\
         \x20               if not chunk: break\n\
         \x20               data += chunk\n\
         \x20           s.close()\n\
         \x20           if not data.startswith(b'HTTP/1.1 200 OK'): failed.append(repr(data[:40]))\n\
         \x20       except Exception as e:\n\
         \x20           failed.append(repr(e))\n\
         \x20       counts[i] += 1\n\
         threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]\n\
         [t.start() for t in threads]\n\
         [t.join() for t in threads]\n\
         print(sum(counts), len(failed), failed[:5])\n"
    );
    let ns = format!("rvs-{}-client", lab.id);
    let client = std::thread::spawn(move || {
        Command::new("ip")
            .args(["netns", "exec", &ns, "python3", "-c", &script])
            .output()
            .unwrap()
    });

    // 50 rounds: rs3 joins, weights change, rs3 is drained (weight 0: no
    // new flows, its own finish) and removed.
    let svc = format!("{vip}:80");
    std::thread::sleep(Duration::from_millis(500));
    for round in 0..50u32 {
        let w = (round % 5 + 1).to_string();
        ok(&lab, &["-a", "-t", &svc, "-r", rs3, "-m", "-w", "2"]);
        ok(
            &lab,
            &["-e", "-t", &svc, "-r", "198.19.0.11:80", "-m", "-w", &w],
        );
        std::thread::sleep(Duration::from_millis(150));
        ok(&lab, &["-e", "-t", &svc, "-r", rs3, "-m", "-w", "0"]);
        ok(
            &lab,
            &["-e", "-t", &svc, "-r", "198.19.0.12:80", "-m", "-w", &w],
        );
        std::thread::sleep(Duration::from_millis(150));
        ok(&lab, &["-d", "-t", &svc, "-r", rs3]);
    }
    let out = client.join().unwrap();
    let report = rvsd.stop();
    let summary = String::from_utf8_lossy(&out.stdout);
    let mut fields = summary.split_whitespace();
    let total: u64 = fields.next().unwrap_or("0").parse().unwrap_or(0);
    let failed: u64 = fields.next().unwrap_or("1").parse().unwrap_or(1);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // At least 200 connections a second over the 30 s.
    assert!(total >= 200 * 30, "only {total} requests: {summary}");
    assert_eq!(failed, 0, "failed requests: {summary}");
    assert_clean(&report);
    assert_eq!(report["drop.no_destination"], 0, "{report:?}");
}
