//! The web console's logic in headless Chromium, without rvsd: a tiny HTTP
//! server on 127.0.0.1 serves the page and fixture JSON (`/v1/model`,
//! `/v1/counters`, which require the bearer token as rvsd's TCP listener
//! does), and the tests read the DOM the page built.

#[path = "common/browser.rs"]
mod browser;

use rvs::adm::model::{
    Destination, Family, Forward, Group, GroupMember, Model, Netmask, Persistence, Protocol,
    SchedFlags, Service, ServiceKey,
};
use rvs::stats::{Counters as Traffic, Rates};
use rvs::web::{Counters, PortCounters, CONSOLE_HTML};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

const TOKEN: &str = "s3cret-t0ken";

fn dest(addr: &str, forward: Forward, weight: u32, active: u32, rates: Rates) -> Destination {
    Destination {
        addr: addr.parse().unwrap(),
        forward,
        weight,
        upper_threshold: 0,
        lower_threshold: 0,
        active_conns: active,
        inactive_conns: active * 2,
        persistent_conns: 0,
        stats: Traffic {
            conns: 100,
            inpkts: 1000,
            outpkts: 900,
            inbytes: 64_000,
            outbytes: 1_200_000,
        },
        rates,
    }
}

fn rates(cps: u64, inpps: u64, outpps: u64, inbps: u64, outbps: u64) -> Rates {
    Rates {
        cps,
        inpps,
        outpps,
        inbps,
        outbps,
    }
}

/// Two services (an address service and a service group), three servers.
fn fixture_model() -> Model {
    let web = Service {
        key: ServiceKey::Addr {
            protocol: Protocol::Tcp,
            addr: "198.18.0.100:80".parse().unwrap(),
        },
        scheduler: "wlc".into(),
        sched_flags: SchedFlags::default(),
        persistence: None,
        one_packet: false,
        group: None,
        destinations: vec![
            dest(
                "198.19.0.11:80",
                Forward::Nat,
                3,
                5,
                rates(12, 340, 310, 45_000, 1_500_000),
            ),
            dest("198.19.0.12:80", Forward::Dr, 0, 1, rates(0, 7, 0, 900, 0)),
        ],
        stats: Traffic::default(),
        rates: rates(12, 347, 310, 45_900, 1_500_000),
    };
    let group = Service {
        key: ServiceKey::Fwmark {
            mark: 1,
            family: Family::Ipv4,
        },
        scheduler: "sh".into(),
        sched_flags: SchedFlags {
            flag1: true,
            flag2: true,
            flag3: false,
        },
        persistence: Some(Persistence {
            timeout: 360,
            netmask: Netmask::Ipv4("255.255.255.0".parse().unwrap()),
        }),
        one_packet: false,
        group: Some(Group {
            name: Some("shop".into()),
            members: vec![
                GroupMember {
                    protocol: Protocol::Tcp,
                    addr: "198.18.0.101:80".parse().unwrap(),
                },
                GroupMember {
                    protocol: Protocol::Tcp,
                    addr: "198.18.0.101:443".parse().unwrap(),
                },
            ],
        }),
        destinations: vec![dest(
            "198.19.0.13:0",
            Forward::Tun,
            2,
            4,
            rates(3, 80, 0, 9_999, 0),
        )],
        stats: Traffic::default(),
        rates: rates(3, 80, 0, 9_999, 0),
    };
    Model {
        services: vec![web, group],
        ..Model::default()
    }
}

fn fixture_counters() -> Counters {
    let drops = [
        ("malformed", 0),
        ("no_service", 42),
        ("tx_full", 3),
        ("no_route", 0),
        ("conn_table_full", 7),
    ];
    Counters {
        drops: drops
            .iter()
            .map(|(reason, count)| (reason.to_string(), *count))
            .collect::<BTreeMap<_, _>>(),
        ports: vec![
            PortCounters {
                name: "wan".into(),
                rx_packets: 5000,
                tx_packets: 4000,
                nic_rx_packets: 5001,
                nic_tx_packets: 4002,
                nic_rx_missed: 9,
            },
            PortCounters {
                name: "lan".into(),
                rx_packets: 3900,
                tx_packets: 4900,
                nic_rx_packets: 3900,
                nic_tx_packets: 4900,
                nic_rx_missed: 0,
            },
        ],
        conns_live: 16,
        uptime_seconds: 3661.5,
    }
}

/// One request the fixture server answered.
#[derive(Clone, Debug)]
struct Seen {
    path: String,
    authorization: Option<String>,
}

/// The console's HTTP server in miniature, on an ephemeral 127.0.0.1 port.
struct FixtureServer {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

/// What the fixture server answers on the `/v1` paths.
#[derive(Clone)]
struct Fixture {
    model: Model,
    counters: String,
    /// Rates rise and fall from one `/v1/model` to the next (for a
    /// screenshot with something in its charts).
    wave: bool,
    /// Status of `/v1/counters` (200 serves `counters`).
    counters_status: u16,
}

impl FixtureServer {
    fn start(fixture: Fixture) -> FixtureServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let (seen, stop) = (seen.clone(), stop.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let (seen, fixture) = (seen.clone(), fixture.clone());
                    // Chromium opens speculative connections that send nothing:
                    // each connection gets its own thread.
                    std::thread::spawn(move || serve(stream, &fixture, &seen));
                }
            })
        };
        FixtureServer {
            addr,
            seen,
            stop,
            acceptor: Some(acceptor),
        }
    }

    fn url(&self, fragment: &str) -> String {
        format!("http://{}/{fragment}", self.addr)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for FixtureServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocked accept so the thread sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn serve(mut stream: TcpStream, fixture: &Fixture, seen: &Mutex<Vec<Seen>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut request = Vec::new();
    let mut buf = [0u8; 2048];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    let request = String::from_utf8_lossy(&request).into_owned();
    let mut lines = request.split("\r\n");
    let path = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .unwrap_or("")
        .to_string();
    let authorization = lines.find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("authorization")
            .then(|| value.trim().to_string())
    });
    seen.lock().unwrap().push(Seen {
        path: path.clone(),
        authorization: authorization.clone(),
    });

    let authorized = authorization.as_deref() == Some(&format!("Bearer {TOKEN}"));
    let (status, content_type, body) = match path.as_str() {
        "/" => (200, "text/html; charset=utf-8", CONSOLE_HTML.to_string()),
        "/v1/model" | "/v1/counters" if !authorized => (
            401,
            "application/json",
            r#"{"error":"token required"}"#.to_string(),
        ),
        "/v1/model" => (200, "application/json", model_json(fixture, seen)),
        "/v1/counters" if fixture.counters_status == 200 => {
            (200, "application/json", fixture.counters.clone())
        }
        "/v1/counters" => (
            fixture.counters_status,
            "application/json",
            r#"{"error":"fixture failure"}"#.to_string(),
        ),
        _ => (404, "text/plain", "not found".to_string()),
    };
    let reason = match status {
        200 => "OK",
        401 => "Unauthorized",
        404 => "Not Found",
        _ => "Internal Server Error",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body.as_bytes());
}

fn fixture() -> Fixture {
    Fixture {
        model: fixture_model(),
        counters: serde_json::to_string(&fixture_counters()).unwrap(),
        counters_status: 200,
        wave: false,
    }
}

/// The fixture model as the `n`th `/v1/model` answer serves it.
fn model_json(fixture: &Fixture, seen: &Mutex<Vec<Seen>>) -> String {
    let mut model = fixture.model.clone();
    if fixture.wave {
        let n = seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.path == "/v1/model")
            .count() as f64;
        let scale = |value: &mut u64, phase: f64| {
            *value = (*value as f64 * (1.0 + 0.6 * (n / 5.0 + phase).sin())) as u64;
        };
        for service in &mut model.services {
            scale(&mut service.rates.cps, 0.0);
            scale(&mut service.rates.inpps, 1.0);
        }
    }
    serde_json::to_string(&model).unwrap()
}

// --- reading the serialised DOM -------------------------------------------

/// The text of the first element with `id`.
fn by_id(dom: &str, id: &str) -> String {
    let at = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no element with id {id} in:\n{dom}"));
    let start = at + dom[at..].find('>').unwrap() + 1;
    text_of(&dom[start..start + dom[start..].find("</").unwrap()])
}

/// The opening tag of the element with `id`.
fn open_tag_by_id<'a>(dom: &'a str, id: &str) -> &'a str {
    let at = dom.find(&format!("id=\"{id}\"")).unwrap();
    let start = dom[..at].rfind('<').unwrap();
    &dom[start..at + dom[at..].find('>').unwrap() + 1]
}

/// Every `<tr>` (opening tag and content) whose opening tag has all
/// `attributes` (`name="value"`), in document order.
fn rows<'a>(dom: &'a str, attributes: &[&str]) -> Vec<&'a str> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = dom[from..].find("<tr") {
        let start = from + at;
        let open_end = start + dom[start..].find('>').unwrap();
        let end = start + dom[start..].find("</tr>").unwrap();
        let open = &dom[start..open_end];
        if attributes.iter().all(|attribute| open.contains(attribute)) {
            found.push(&dom[start..end]);
        }
        from = end;
    }
    found
}

/// The one row with `attributes`.
fn row<'a>(dom: &'a str, attributes: &[&str]) -> &'a str {
    let found = rows(dom, attributes);
    assert_eq!(found.len(), 1, "rows with {attributes:?} in:\n{dom}");
    found[0]
}

/// The `<td>` of `row` whose first class is `class`: its text and its
/// `data-value` (if any).
fn cell(row: &str, class: &str) -> (String, Option<String>) {
    let marker_space = format!("<td class=\"{class} ");
    let marker_quote = format!("<td class=\"{class}\"");
    let start = row
        .find(&marker_space)
        .or_else(|| row.find(&marker_quote))
        .unwrap_or_else(|| panic!("no {class} cell in {row}"));
    let open_end = start + row[start..].find('>').unwrap();
    let open = &row[start..open_end];
    let value = open
        .split_once("data-value=\"")
        .map(|(_, rest)| rest[..rest.find('"').unwrap()].to_string());
    let end = open_end + row[open_end..].find("</td>").unwrap();
    (text_of(&row[open_end + 1..end]), value)
}

fn text(row: &str, class: &str) -> String {
    cell(row, class).0
}

/// Markup removed, the entities Chromium writes decoded.
fn text_of(html: &str) -> String {
    let mut text = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&")
}

/// Asserts the numeric cell shows `shown` and carries the exact `value`.
fn assert_number(row: &str, class: &str, shown: &str, value: u64) {
    let (text, data) = cell(row, class);
    assert_eq!(text, shown, "{class} in {row}");
    assert_eq!(data, Some(value.to_string()), "{class} data-value in {row}");
}

// --- the tests ------------------------------------------------------------

#[test]
fn console_shows_the_routing_table_drops_and_ports() {
    let server = FixtureServer::start(fixture());
    let dom = browser::dump_dom(&server.url(&format!("#token={TOKEN}")));

    let status = open_tag_by_id(&dom, "status");
    assert!(status.contains("class=\"ok\""), "status: {status}");
    assert!(by_id(&dom, "status").starts_with("updated "));

    // Services, each followed by its own servers, in the model's order.
    let service_rows = rows(&dom, &["class=\"service\""]);
    let server_rows = rows(&dom, &["class=\"server"]);
    assert_eq!((service_rows.len(), server_rows.len()), (2, 3));
    let position = |row: &str| dom.find(row).unwrap();
    let web = row(
        &dom,
        &["class=\"service\"", "data-service=\"TCP 198.18.0.100:80\""],
    );
    let web_servers = rows(
        &dom,
        &["class=\"server", "data-service=\"TCP 198.18.0.100:80\""],
    );
    let shop = row(&dom, &["class=\"service\"", "data-service=\"FWM 1\""]);
    let shop_servers = rows(&dom, &["class=\"server", "data-service=\"FWM 1\""]);
    assert_eq!((web_servers.len(), shop_servers.len()), (2, 1));
    assert!(position(web) < position(web_servers[0]));
    assert!(position(web_servers[0]) < position(web_servers[1]));
    assert!(position(web_servers[1]) < position(shop));
    assert!(position(shop) < position(shop_servers[0]));

    assert_eq!(text(web, "proto"), "TCP");
    assert_eq!(text(web, "vip"), "198.18.0.100:80");
    assert_eq!(text(web, "scheduler"), "wlc");
    assert_eq!(text(web, "persistence"), "—");
    assert_number(web, "active", "6", 6);
    assert_number(web, "inactive", "12", 12);
    assert_number(web, "cps", "12", 12);
    assert_number(web, "inpps", "347", 347);
    assert_number(web, "outpps", "310", 310);
    assert_number(web, "inbps", "45.9 kB/s", 45_900);
    assert_number(web, "outbps", "1.5 MB/s", 1_500_000);

    assert_eq!(text(shop, "proto"), "FWM");
    // The mark, then the group's name and members on a line of their own.
    assert!(shop.contains(
        "<td class=\"vip\">1<span class=\"group\">shop: TCP 198.18.0.101:80, TCP 198.18.0.101:443</span></td>"
    ), "{shop}");
    assert_eq!(text(shop, "scheduler"), "sh (sh-fallback,sh-port)");
    assert_eq!(text(shop, "persistence"), "360 s /255.255.255.0");
    assert_number(shop, "inbps", "10.0 kB/s", 9_999);

    let rs1 = row(&dom, &["data-server=\"198.19.0.11:80\""]);
    assert!(rs1.starts_with("<tr class=\"server\""), "{rs1}");
    assert_eq!(text(rs1, "addr"), "198.19.0.11:80");
    assert_eq!(text(rs1, "forward"), "Masq");
    assert_number(rs1, "weight", "3", 3);
    assert_number(rs1, "active", "5", 5);
    assert_number(rs1, "inactive", "10", 10);
    assert_number(rs1, "cps", "12", 12);
    assert_number(rs1, "inpps", "340", 340);
    assert_number(rs1, "outpps", "310", 310);
    assert_number(rs1, "inbps", "45.0 kB/s", 45_000);
    assert_number(rs1, "outbps", "1.5 MB/s", 1_500_000);
    assert_eq!(text(rs1, "health"), "—");

    // Weight 0 takes no new connections: the row is marked idle.
    let rs2 = row(&dom, &["data-server=\"198.19.0.12:80\""]);
    assert!(rs2.starts_with("<tr class=\"server idle\""), "{rs2}");
    assert_eq!(text(rs2, "forward"), "Route");
    assert_number(rs2, "weight", "0", 0);
    assert_number(rs2, "inbps", "900 B/s", 900);

    let rs3 = row(&dom, &["data-server=\"198.19.0.13:0\""]);
    assert_eq!(text(rs3, "forward"), "Tunnel");
    assert_number(rs3, "active", "4", 4);
    assert_number(rs3, "cps", "3", 3);

    // A rate chart per service, fed by each refresh (8 virtual s, every 2 s).
    for service in [web, shop] {
        let samples: usize = service
            .split_once("data-samples=\"")
            .map(|(_, rest)| rest[..rest.find('"').unwrap()].parse().unwrap())
            .unwrap_or_else(|| panic!("no chart in {service}"));
        assert!((3..=60).contains(&samples), "{samples} samples");
        assert!(service.contains("<polyline class=\"cps\" points=\""));
        assert!(service.contains("<polyline class=\"inpps\" points=\""));
    }
    // Servers have no chart.
    assert!(!rs1.contains("<svg"));

    // Drops: non-zero ones first, largest first, then the zeros by name.
    let reasons: Vec<String> = rows(&dom, &["class=\"drop"])
        .iter()
        .map(|row| text(row, "reason"))
        .collect();
    assert_eq!(
        reasons,
        [
            "no_service",
            "conn_table_full",
            "tx_full",
            "malformed",
            "no_route"
        ]
    );
    assert_number(
        row(&dom, &["data-reason=\"no_service\""]),
        "count",
        "42",
        42,
    );
    assert!(row(&dom, &["data-reason=\"no_route\""]).starts_with("<tr class=\"drop zero\""));

    let wan = row(&dom, &["data-port=\"wan\""]);
    assert_number(wan, "rx_packets", "5000", 5000);
    assert_number(wan, "tx_packets", "4000", 4000);
    assert_number(wan, "nic_rx_packets", "5001", 5001);
    assert_number(wan, "nic_tx_packets", "4002", 4002);
    assert_number(wan, "nic_rx_missed", "9", 9);
    assert_number(
        row(&dom, &["data-port=\"lan\""]),
        "tx_packets",
        "4900",
        4900,
    );

    assert_eq!(by_id(&dom, "uptime"), "01:01:01");
    assert_eq!(by_id(&dom, "conns-live"), "16");
    assert_eq!(by_id(&dom, "service-count"), "2");
    assert_eq!(by_id(&dom, "server-count"), "3");

    // The page refreshed itself, and every data request carried the token.
    let seen = server.seen();
    let data: Vec<&Seen> = seen.iter().filter(|s| s.path.starts_with("/v1/")).collect();
    let model_fetches = data.iter().filter(|s| s.path == "/v1/model").count();
    assert!(model_fetches >= 3, "{model_fetches} fetches of /v1/model");
    for request in data {
        assert_eq!(
            request.authorization.as_deref(),
            Some(format!("Bearer {TOKEN}").as_str()),
            "{}",
            request.path
        );
    }
}

#[test]
fn console_says_token_required_when_the_token_is_wrong() {
    let server = FixtureServer::start(fixture());
    let dom = browser::dump_dom(&server.url("#token=wrong"));
    assert!(open_tag_by_id(&dom, "status").contains("class=\"error\""));
    let status = by_id(&dom, "status");
    assert!(status.starts_with("token required"), "status: {status}");
    assert!(status.contains("HTTP 401"), "status: {status}");
    assert!(rows(&dom, &["class=\"service\""]).is_empty());
    let seen = server.seen();
    assert!(seen
        .iter()
        .any(|s| s.path == "/v1/model" && s.authorization.as_deref() == Some("Bearer wrong")));
}

#[test]
fn console_without_a_token_says_how_to_give_one() {
    let server = FixtureServer::start(fixture());
    let dom = browser::dump_dom(&server.url(""));
    let status = by_id(&dom, "status");
    assert!(status.starts_with("token required"), "status: {status}");
    assert!(status.contains("#token=YOUR_TOKEN"), "status: {status}");
    // Without a token in the URL the page sends no Authorization header.
    let seen = server.seen();
    assert!(seen.iter().any(|s| s.path == "/v1/model"));
    assert!(seen.iter().all(|s| s.authorization.is_none()), "{seen:?}");
}

#[test]
fn console_names_the_request_that_failed() {
    let server = FixtureServer::start(Fixture {
        counters_status: 500,
        ..fixture()
    });
    let dom = browser::dump_dom(&server.url(&format!("#token={TOKEN}")));
    assert!(open_tag_by_id(&dom, "status").contains("class=\"error\""));
    assert_eq!(
        by_id(&dom, "status"),
        "/v1/counters failed: HTTP 500 Internal Server Error"
    );
}

#[test]
fn screenshot_of_the_console_is_a_png() {
    let server = FixtureServer::start(Fixture {
        wave: true,
        ..fixture()
    });
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("console.png");
    // Two minutes of the page's time: full rate charts.
    browser::screenshot_after(&server.url(&format!("#token={TOKEN}")), &path, 120_000);
    let png = std::fs::read(&path).unwrap();
    // IHDR: width and height, big-endian, right after the signature.
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
    assert_eq!((width, height), browser::SCREENSHOT_SIZE);
    assert!(
        png.len() > 10_000,
        "a {} byte screenshot is blank",
        png.len()
    );
}
