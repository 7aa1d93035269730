//! The control API's requests, independent of any transport: the running
//! configuration, what rvsadm does to it, and SIGHUP's reload.
//!
//! Every change goes the same way: a complete new [`Config`], validated,
//! compiled with [`Snapshot::compile_next`] (servers that stay keep their
//! ids, so their connections survive) and stored for the workers; a change
//! that fails validation leaves everything as it was.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::addr::MacAddr;
use crate::adm::{self, Output};
use crate::config::{Config, GroupConfig};
use crate::worker::Shared;

use super::convert::{config_from_model, model_from_config};
use super::live::Live;
use crate::adm::model::{ConnectionEntry, Protocol as AdmProtocol};
use crate::adm::Model;
use crate::conn::Millis;
use crate::counters::{ConnListing, DropReason, WorkerCounters};
use crate::web::{metrics, Counters, PortCounters, CONSOLE_HTML};
use std::net::{SocketAddr, SocketAddrV4};
use std::time::Instant;

const JSON: &str = "application/json";

/// One listed connection as `rvsadm -c` shows it.
fn connection_entry(listing: &ConnListing) -> Option<ConnectionEntry> {
    let c = &listing.conn;
    let protocol = match c.protocol {
        6 => AdmProtocol::Tcp,
        17 => AdmProtocol::Udp,
        _ => return None,
    };
    let v4 = |addr, port| SocketAddr::V4(SocketAddrV4::new(addr, port));
    Some(ConnectionEntry {
        protocol,
        client: v4(c.client_addr, c.client_port),
        virtual_addr: v4(c.virtual_addr, c.virtual_port),
        destination: v4(c.real_addr, c.real_port),
        state: c.state.name().to_string(),
        expires: (listing.expires_in / 1000).min(u64::from(u32::MAX)) as u32,
    })
}

/// Largest request body accepted (a `-R` of a few thousand rules fits).
pub const MAX_BODY: usize = 4 << 20;

/// `POST /v1/ipvsadm`'s body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpvsadmRequest {
    /// rvsadm's argv without the program name.
    pub args: Vec<String>,
    /// Standard input (read by `-R` only).
    #[serde(default)]
    pub stdin: String,
}

/// `POST /v1/ipvsadm`'s reply.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct IpvsadmReply {
    pub stdout: String,
    pub stderr: String,
    pub code: i32,
}

/// An HTTP status, a body and its content type (JSON unless said).
#[derive(Debug, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    pub content_type: &'static str,
}

/// Paths anyone who reaches the TCP listener may read: the console page
/// itself carries no data (its data requests send the token).
pub fn is_public(path: &str) -> bool {
    matches!(path, "/" | "/index.html")
}

impl Reply {
    fn json<T: Serialize>(status: u16, value: &T) -> Reply {
        match serde_json::to_string(value) {
            Ok(body) => Reply {
                status,
                body,
                content_type: JSON,
            },
            Err(e) => Reply::error(500, &format!("cannot encode the reply: {e}")),
        }
    }

    fn text(body: String, content_type: &'static str) -> Reply {
        Reply {
            status: 200,
            body,
            content_type,
        }
    }

    /// `{"error": message}`.
    pub fn error(status: u16, message: &str) -> Reply {
        Reply {
            status,
            body: serde_json::json!({ "error": message }).to_string(),
            content_type: JSON,
        }
    }
}

/// The management thread's view of the director.
pub struct Control {
    running: Config,
    /// Every group a configuration file has defined (latest by mark): a
    /// firewall-mark service deleted by rvsadm can come back with them.
    known_groups: Vec<GroupConfig>,
    port_macs: Vec<MacAddr>,
    shared: Arc<Shared>,
    /// The workers' counters, summed and estimated here.
    live: Live,
    /// The ports' names and (from rvsd) a way to read their NIC counters.
    ports: Box<dyn Fn() -> Vec<PortCounters> + Send>,
    started: Instant,
}

/// Adds or replaces (by mark) `groups` in `known`.
fn remember_groups(known: &mut Vec<GroupConfig>, groups: &[GroupConfig]) {
    for g in groups {
        known.retain(|k| k.mark != g.mark);
        known.push(g.clone());
    }
}

impl Control {
    /// `running` is what `shared.snapshot` was compiled from.
    pub fn new(running: Config, port_macs: Vec<MacAddr>, shared: Arc<Shared>) -> Control {
        let mut known_groups = Vec::new();
        remember_groups(&mut known_groups, &running.groups);
        Control {
            running,
            known_groups,
            port_macs,
            shared,
            live: Live::new(Vec::new()),
            ports: Box::new(Vec::new),
            started: Instant::now(),
        }
    }

    /// Connects the live figures: the workers' counters and a reader of
    /// the ports' counters.
    pub fn attach(
        &mut self,
        workers: Vec<Arc<WorkerCounters>>,
        ports: Box<dyn Fn() -> Vec<PortCounters> + Send>,
    ) {
        self.live = Live::new(workers);
        self.ports = ports;
    }

    fn now(&self) -> Millis {
        self.started.elapsed().as_millis() as Millis
    }

    /// Rate sampling; call it often (it does the work every 2 s).
    pub fn tick(&mut self) {
        let now = self.now();
        let snapshot = self.shared.snapshot.load_full();
        self.live.tick(&snapshot, now);
    }

    /// The table with its live figures.
    pub fn live_model(&self) -> Model {
        let mut model = model_from_config(&self.running);
        self.live
            .fill(&mut model, &self.shared.snapshot.load_full());
        model
    }

    /// Every worker's connections (`rvsadm -c`) and the dest ids of its
    /// persistence templates, asked for through
    /// [`crate::counters::ConnDump`]; a worker that does not answer within
    /// half a second is left out.
    pub fn connections(&self) -> (Vec<ConnectionEntry>, Vec<u32>) {
        let workers = self.live.workers();
        let wanted: Vec<u64> = workers
            .iter()
            .map(|w| w.conn_dump.requested.fetch_add(1, Ordering::AcqRel) + 1)
            .collect();
        let deadline = Instant::now() + std::time::Duration::from_millis(500);
        let mut entries = Vec::new();
        let mut template_dests = Vec::new();
        for (w, &want) in workers.iter().zip(&wanted) {
            loop {
                if let Ok(answer) = w.conn_dump.answer.lock() {
                    if answer.request >= want {
                        entries.extend(answer.connections.iter().filter_map(connection_entry));
                        template_dests.extend_from_slice(&answer.template_dests);
                        break;
                    }
                }
                if Instant::now() >= deadline {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        }
        (entries, template_dests)
    }

    /// PersistConn: each destination's persistence templates.
    fn fill_persistent(&self, model: &mut Model, template_dests: &[u32]) {
        let snapshot = self.shared.snapshot.load_full();
        if model.services.len() != snapshot.services.len() {
            return;
        }
        for (service, plan) in model.services.iter_mut().zip(&snapshot.services) {
            for (dest, server) in service.destinations.iter_mut().zip(&plan.servers) {
                let n = template_dests
                    .iter()
                    .filter(|&&d| d == server.dest_id)
                    .count();
                dest.persistent_conns = n.min(u32::MAX as usize) as u32;
            }
        }
    }

    /// Drops, ports and connections, summed over the workers.
    pub fn counters(&self) -> Counters {
        let workers = self.live.workers();
        let sum = |f: &dyn Fn(&WorkerCounters) -> u64| workers.iter().map(|w| f(w)).sum::<u64>();
        let mut ports = (self.ports)();
        for (i, p) in ports.iter_mut().enumerate() {
            p.rx_packets = sum(&|w| w.ports.get(i).map_or(0, |c| c.rx_packets.get()));
            p.tx_packets = sum(&|w| w.ports.get(i).map_or(0, |c| c.tx_packets.get()));
        }
        Counters {
            drops: DropReason::ALL
                .iter()
                .map(|&r| (r.name().to_string(), sum(&|w| w.dropped(r))))
                .collect(),
            ports,
            conns_live: sum(&|w| w.conns_live.get()),
            uptime_seconds: self.started.elapsed().as_secs_f64(),
        }
    }

    pub fn running(&self) -> &Config {
        &self.running
    }

    /// Compiles `config` against the current snapshot and hands it to the
    /// workers.
    fn install(&mut self, config: Config) {
        let next = self
            .shared
            .snapshot
            .load()
            .compile_next(&config, &self.port_macs);
        self.shared.snapshot.store(Arc::new(next));
        self.shared.generation.fetch_add(1, Ordering::Release);
        self.running = config;
    }

    /// `rvsadm ARGS` against the running table. A command that changes the
    /// table is applied only if the whole new table is valid for rvs;
    /// otherwise the reason is added to stderr and nothing changes.
    pub fn ipvsadm(&mut self, args: &[String], stdin: &str) -> Output {
        let mut before = self.live_model();
        if let Ok(adm::Command::List(request)) = adm::args::parse(args) {
            if request.what == adm::ListWhat::Connections || request.format.persistent_conn {
                let (connections, template_dests) = self.connections();
                before.connections = connections;
                self.fill_persistent(&mut before, &template_dests);
            }
        }
        let mut model = before.clone();
        let mut output = adm::run(args, &mut model, stdin.as_bytes());
        if let Ok(adm::Command::Zero(which)) = adm::args::parse(args) {
            let snapshot = self.shared.snapshot.load_full();
            let keys: Vec<_> = before.services.iter().map(|s| s.key).collect();
            self.live.zero(&snapshot, |i| {
                which.as_ref().is_none_or(|w| keys.get(i) == Some(w))
            });
            return output;
        }
        if model == before {
            return output;
        }
        match config_from_model(&model, &self.running, &self.known_groups) {
            Ok(config) => {
                if config != self.running {
                    self.install(config);
                }
            }
            Err(refusal) => {
                output.stderr.push_str(&refusal);
                output.stderr.push('\n');
                output
                    .stderr
                    .push_str("rvsadm: the running table is unchanged\n");
                output.code = adm::error::EXIT_REFUSED;
            }
        }
        output
    }

    /// SIGHUP: `config` (freshly loaded and validated) replaces the running
    /// configuration, rvsadm's changes included. Ports, `[dpdk]` and
    /// `[control]` are set up once at start: a change there is refused.
    pub fn reload(&mut self, config: Config) -> Result<(), String> {
        let r = &self.running;
        if config.dpdk != r.dpdk {
            return Err("[dpdk] changed; that needs a restart".into());
        }
        let devices = |c: &Config| -> Vec<(String, crate::config::PortDevice)> {
            c.ports
                .iter()
                .map(|p| (p.name.clone(), p.device.clone()))
                .collect()
        };
        if devices(&config) != devices(r) {
            return Err("the ports (names or devices) changed; that needs a restart".into());
        }
        if config.control != r.control {
            return Err("[control] changed; that needs a restart".into());
        }
        remember_groups(&mut self.known_groups, &config.groups);
        if config != *r {
            self.install(config);
        }
        Ok(())
    }

    /// One request: `method`, the URL's path, the body.
    pub fn handle(&mut self, method: &str, path: &str, body: &[u8]) -> Reply {
        match (method, path) {
            ("POST", "/v1/ipvsadm") => {
                let request: IpvsadmRequest = match serde_json::from_slice(body) {
                    Ok(r) => r,
                    Err(e) => {
                        return Reply::error(
                            400,
                            &format!(
                            "body: {e} (expected {{\"args\": [\"-L\", \"-n\"], \"stdin\": \"\"}})"
                        ),
                        )
                    }
                };
                let out = self.ipvsadm(&request.args, &request.stdin);
                Reply::json(
                    200,
                    &IpvsadmReply {
                        stdout: out.stdout,
                        stderr: out.stderr,
                        code: out.code,
                    },
                )
            }
            ("GET", "/v1/model") => Reply::json(200, &self.live_model()),
            ("GET", "/v1/counters") => Reply::json(200, &self.counters()),
            ("GET", "/metrics") => Reply::text(
                metrics::render(&self.live_model(), &self.counters()),
                metrics::CONTENT_TYPE,
            ),
            ("GET", "/") | ("GET", "/index.html") => {
                Reply::text(CONSOLE_HTML.to_string(), "text/html; charset=utf-8")
            }
            (_, "/v1/ipvsadm") | (_, "/v1/model") | (_, "/v1/counters") | (_, "/metrics") => {
                Reply::error(405, &format!("method {method} not allowed on {path}"))
            }
            _ => Reply::error(404, &format!("no such endpoint: {path}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adm::Model;
    use crate::config::parse;
    use crate::snapshot::Snapshot;
    use arc_swap::ArcSwap;
    use std::sync::atomic::{AtomicBool, AtomicU64};

    const BASE: &str = r#"
[[port]]
name = "one"
vdev = "net_null0"
addresses = ["198.18.0.1/24", "198.19.0.1/24"]

[[service]]
protocol = "tcp"
address = "198.18.0.100:80"
scheduler = "rr"
[[service.server]]
address = "198.19.0.11:8080"
forward = "nat"

[[group]]
name = "web"
mark = 3
members = ["tcp:198.18.0.101:80", "tcp:198.18.0.101:443"]
scheduler = "wrr"
persistence = { timeout = 600 }
[[group.server]]
address = "198.19.0.21"
forward = "nat"
weight = 2
"#;

    fn control() -> Control {
        let config = parse(BASE, "base.toml").unwrap();
        let macs = vec![MacAddr([2, 0, 0, 0, 0, 1])];
        let shared = Arc::new(Shared {
            snapshot: ArcSwap::from_pointee(Snapshot::compile(&config, &macs, 1)),
            generation: AtomicU64::new(1),
            stop: AtomicBool::new(false),
        });
        Control::new(config, macs, shared)
    }

    fn run(c: &mut Control, line: &str) -> Output {
        let args: Vec<String> = line.split_whitespace().map(String::from).collect();
        c.ipvsadm(&args, "")
    }

    fn generation(c: &Control) -> u64 {
        c.shared.generation.load(Ordering::Acquire)
    }

    #[test]
    fn listing_shows_services_and_groups() {
        let mut c = control();
        let out = run(&mut c, "-S -n");
        assert_eq!(out.code, 0, "{out:?}");
        assert_eq!(
            out.stdout,
            "-A -t 198.18.0.100:80 -s rr\n\
             -a -t 198.18.0.100:80 -r 198.19.0.11:8080 -m -w 1\n\
             -A -f 3 -s wrr -p 600\n\
             -a -f 3 -r 198.19.0.21:0 -m -w 2\n"
        );
        assert_eq!(generation(&c), 1, "listing changes nothing");
    }

    #[test]
    fn a_change_is_compiled_and_published() {
        let mut c = control();
        let old_snapshot = c.shared.snapshot.load_full();
        let out = run(&mut c, "-a -t 198.18.0.100:80 -r 198.19.0.12:8080 -m -w 5");
        assert_eq!((out.code, out.stderr.as_str()), (0, ""));
        assert_eq!(generation(&c), 2);
        let servers = &c.running().services[0].servers;
        assert_eq!(servers.len(), 2);
        assert_eq!(servers[1].weight, 5);
        let snapshot = c.shared.snapshot.load_full();
        assert_eq!(snapshot.generation, old_snapshot.generation + 1);
        // The server that stayed keeps its id.
        let key = crate::snapshot::ServiceKey {
            protocol: 6,
            addr: "198.18.0.100".parse().unwrap(),
            port: 80,
        };
        let rs1 = "198.19.0.11".parse().unwrap();
        assert_eq!(
            snapshot.dest_id_of(key, rs1, 8080),
            old_snapshot.dest_id_of(key, rs1, 8080)
        );
        assert!(snapshot
            .dest_id_of(key, "198.19.0.12".parse().unwrap(), 8080)
            .is_some());
    }

    #[test]
    fn an_invalid_table_is_refused_naming_the_argument() {
        let mut c = control();
        let before = c.running().clone();
        // Off every port's prefix and there is no gateway.
        let out = run(&mut c, "-a -t 198.18.0.100:80 -r 198.18.5.9:80 -m");
        assert_eq!(out.code, 255);
        assert!(
            out.stderr.starts_with(
                "-t 198.18.0.100:80 -r 198.18.5.9:80: server 198.18.5.9 is unreachable"
            ),
            "{}",
            out.stderr
        );
        assert_eq!(*c.running(), before);
        assert_eq!(generation(&c), 1);

        let refused = [
            (
                "-A -t [2001:db8::1]:80",
                "-t [2001:db8::1]:80: rvs forwards IPv4 only",
            ),
            ("-A -f 9", "-f 9: rvs has no firewall marks"),
            (
                "-E -t 198.18.0.100:80 -s rr -b flag-1",
                "-t 198.18.0.100:80: -b flag-1",
            ),
            (
                "-E -f 3 -s wrr -o",
                "-f 3: one-packet scheduling is supported on UDP [[service]]s, not on groups",
            ),
            (
                "-a -f 3 -r 198.19.0.22:80 -g",
                "-f 3 -r 198.19.0.22:80: server 198.19.0.22:80: dr cannot change the port",
            ),
            (
                "-A -t 198.18.0.101:80",
                "-f 3: tcp 198.18.0.101:80 is also a [[service]]",
            ),
        ];
        for (line, want) in refused {
            let out = run(&mut c, line);
            assert_eq!(out.code, 255, "{line}: {out:?}");
            assert!(out.stderr.starts_with(want), "{line}: {}", out.stderr);
            assert_eq!(*c.running(), before, "{line}");
        }
        assert_eq!(generation(&c), 1);
    }

    #[test]
    fn an_adm_error_changes_nothing() {
        let mut c = control();
        let before = c.running().clone();
        let out = run(&mut c, "-d -t 198.18.0.100:80 -r 198.19.0.99:8080");
        assert_eq!(out.code, 255);
        assert_eq!(
            out.stderr,
            "No such destination: -t 198.18.0.100:80 -r 198.19.0.99:8080\n"
        );
        assert_eq!(*c.running(), before);
    }

    #[test]
    fn save_clear_restore_keeps_groups() {
        let mut c = control();
        let before = c.running().clone();
        let saved = run(&mut c, "-S -n").stdout;
        assert_eq!(run(&mut c, "-C").code, 0);
        assert!(c.running().services.is_empty() && c.running().groups.is_empty());
        let out = c.ipvsadm(&["-R".to_string()], &saved);
        assert_eq!((out.code, out.stderr.as_str()), (0, ""));
        assert_eq!(*c.running(), before);
        assert_eq!(run(&mut c, "-S -n").stdout, saved);
    }

    #[test]
    fn reload_replaces_services_but_not_ports() {
        let mut c = control();
        let mut next = c.running().clone();
        next.services.clear();
        c.reload(next.clone()).unwrap();
        assert_eq!(*c.running(), next);
        assert_eq!(generation(&c), 2);

        let mut other_port = next.clone();
        other_port.ports[0].device = crate::config::PortDevice::Vdev("net_null9".into());
        let err = c.reload(other_port).unwrap_err();
        assert!(err.contains("needs a restart"), "{err}");
        assert_eq!(*c.running(), next);
    }

    #[test]
    fn set_changes_the_timeouts_the_workers_use() {
        let mut c = control();
        let out = run(&mut c, "--set 60 30 20");
        assert_eq!((out.code, out.stderr.as_str()), (0, ""));
        let t = &c.running().timeouts;
        assert_eq!((t.tcp, t.tcpfin, t.udp), (60, 30, 20));
        assert_eq!(
            c.shared.snapshot.load().timeouts.ipvsadm(),
            (60, 30, 20),
            "compiled into the snapshot"
        );
        // 0 keeps a value, as in ipvsadm.
        run(&mut c, "--set 0 0 45");
        assert_eq!(
            run(&mut c, "-L --timeout").stdout,
            "Timeout (tcp tcpfin udp): 60 30 45\n"
        );
    }

    #[test]
    fn http_requests() {
        let mut c = control();
        let reply = c.handle("POST", "/v1/ipvsadm", br#"{"args": ["-D", "-f", "3"]}"#);
        assert_eq!(reply.status, 200);
        let out: IpvsadmReply = serde_json::from_str(&reply.body).unwrap();
        assert_eq!(out.code, 0, "{out:?}");
        assert!(c.running().groups.is_empty());

        let reply = c.handle("GET", "/v1/model", b"");
        assert_eq!(reply.status, 200);
        let model: Model = serde_json::from_str(&reply.body).unwrap();
        assert_eq!(model, model_from_config(c.running()));
        assert_eq!(model.services.len(), 1);

        assert_eq!(c.handle("POST", "/v1/ipvsadm", b"{").status, 400);
        assert_eq!(
            c.handle("POST", "/v1/ipvsadm", br#"{"argv": []}"#).status,
            400
        );
        assert_eq!(c.handle("GET", "/v1/ipvsadm", b"").status, 405);
        assert_eq!(c.handle("GET", "/v2/x", b"").status, 404);
    }
}
