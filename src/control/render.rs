//! A [`Config`] written back as the configuration file's TOML, so that a
//! table changed by rvsadm is validated by the very code that validates
//! the file ([`crate::config::parse`]): `parse(render(c)) == c`.

use std::fmt::Write;

use crate::config::{Config, PortDevice, ServerConfig};
use crate::sched::{HashFlags, SchedulerKind};

/// A TOML string literal (quoted and escaped by the toml crate).
fn quoted(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

fn string_list<I: IntoIterator<Item = String>>(items: I) -> String {
    let quoted: Vec<String> = items.into_iter().map(|s| quoted(&s)).collect();
    format!("[{}]", quoted.join(", "))
}

/// The whole configuration as TOML that [`crate::config::parse`] accepts
/// back unchanged.
pub fn render(config: &Config) -> String {
    let mut out = String::new();
    let d = &config.dpdk;
    // Writing to a String cannot fail.
    let _ = writeln!(out, "[dpdk]");
    let _ = writeln!(out, "lcores = {}", quoted(&d.lcores));
    let _ = writeln!(out, "memory_mb = {}", d.memory_mb);
    let _ = writeln!(out, "hugepages = {}", d.hugepages);
    let _ = writeln!(out, "mbufs = {}", d.mbufs);
    let _ = writeln!(out, "args = {}", string_list(d.args.iter().cloned()));

    for p in &config.ports {
        let _ = writeln!(out, "\n[[port]]");
        let _ = writeln!(out, "name = {}", quoted(&p.name));
        match &p.device {
            PortDevice::Vdev(spec) => {
                let _ = writeln!(out, "vdev = {}", quoted(spec));
            }
            PortDevice::Pci(addr) => {
                let _ = writeln!(out, "pci = {}", quoted(addr));
            }
        }
        let _ = writeln!(
            out,
            "addresses = {}",
            string_list(p.addresses.iter().map(|a| a.to_string()))
        );
        if let Some(gateway) = p.gateway {
            let _ = writeln!(out, "gateway = {}", quoted(&gateway.to_string()));
        }
        let neighbors: Vec<String> = p
            .static_neighbors
            .iter()
            .map(|(ip, mac)| format!("{{ address = \"{ip}\", mac = \"{mac}\" }}"))
            .collect();
        let _ = writeln!(out, "static_neighbors = [{}]", neighbors.join(", "));
        if let Some(mac) = p.mac {
            let _ = writeln!(out, "mac = \"{mac}\"");
        }
        let _ = writeln!(out, "mtu = {}", p.mtu);
    }

    for s in &config.services {
        let _ = writeln!(out, "\n[[service]]");
        let _ = writeln!(out, "protocol = \"{}\"", s.protocol);
        let _ = writeln!(out, "address = \"{}\"", s.address);
        body(
            &mut out,
            "service",
            s.scheduler,
            s.sched_flags,
            s.persistence,
            s.one_packet,
            s.mh_table_size,
            &s.servers,
        );
    }

    for g in &config.groups {
        let _ = writeln!(out, "\n[[group]]");
        let _ = writeln!(out, "name = {}", quoted(&g.name));
        let _ = writeln!(out, "mark = {}", g.mark);
        let _ = writeln!(
            out,
            "members = {}",
            string_list(g.members.iter().map(|(p, a)| format!("{p}:{a}")))
        );
        body(
            &mut out,
            "group",
            g.scheduler,
            g.sched_flags,
            g.persistence,
            g.one_packet,
            g.mh_table_size,
            &g.servers,
        );
    }

    let t = &config.timeouts;
    let _ = writeln!(out, "\n[timeouts]");
    let _ = writeln!(out, "tcp = {}", t.tcp);
    let _ = writeln!(out, "tcpfin = {}", t.tcpfin);
    let _ = writeln!(out, "udp = {}", t.udp);

    let _ = writeln!(out, "\n[bench]");
    let _ = writeln!(out, "pace_pps = {}", config.bench.pace_pps);

    let c = &config.control;
    let _ = writeln!(out, "\n[control]");
    let _ = writeln!(out, "socket = {}", quoted(&c.socket.to_string_lossy()));
    if let Some(listen) = c.listen {
        let _ = writeln!(out, "listen = \"{listen}\"");
    }
    if let Some(token_file) = &c.token_file {
        let _ = writeln!(
            out,
            "token_file = {}",
            quoted(&token_file.to_string_lossy())
        );
    }
    out
}

/// What services and groups share. Keys must come before the servers'
/// array of tables.
#[allow(clippy::too_many_arguments)]
fn body(
    out: &mut String,
    table: &str,
    scheduler: SchedulerKind,
    flags: HashFlags,
    persistence: Option<crate::config::Persistence>,
    one_packet: bool,
    mh_table_size: usize,
    servers: &[ServerConfig],
) {
    let _ = writeln!(out, "scheduler = \"{}\"", scheduler.name());
    let mut names = Vec::new();
    if flags.fallback {
        names.push(format!("{}-fallback", scheduler.name()));
    }
    if flags.port {
        names.push(format!("{}-port", scheduler.name()));
    }
    let _ = writeln!(out, "sched_flags = {}", string_list(names));
    if let Some(p) = persistence {
        let _ = writeln!(
            out,
            "persistence = {{ timeout = {}, netmask = \"{}\" }}",
            p.timeout_secs, p.netmask
        );
    }
    if one_packet {
        let _ = writeln!(out, "one_packet = true");
    }
    if scheduler == SchedulerKind::Mh {
        let _ = writeln!(out, "mh_table_size = {mh_table_size}");
    }
    for server in servers {
        let _ = writeln!(out, "[[{table}.server]]");
        let _ = writeln!(out, "address = \"{}\"", server.address);
        let _ = writeln!(out, "forward = \"{}\"", server.forward);
        let _ = writeln!(out, "weight = {}", server.weight);
        if server.upper_threshold != 0 {
            let _ = writeln!(out, "upper_threshold = {}", server.upper_threshold);
        }
        if server.lower_threshold != 0 {
            let _ = writeln!(out, "lower_threshold = {}", server.lower_threshold);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::parse;

    pub(crate) const FULL: &str = r#"
[dpdk]
lcores = "0-2"
memory_mb = 256
hugepages = true
mbufs = 4095
args = ["--no-shconf", "--file-prefix=a \"quoted\" one"]

[[port]]
name = "wan"
vdev = "net_null0,size=64"
addresses = ["198.18.0.1/24", "198.18.1.1/24"]
gateway = "198.18.0.254"
static_neighbors = [{ address = "198.18.0.7", mac = "02:00:00:00:00:07" }]
mac = "02:00:00:00:00:01"
mtu = 9000

[[port]]
name = "lan"
pci = "0000:03:00.0"
addresses = ["198.19.0.1/24"]

[[service]]
protocol = "tcp"
address = "198.18.0.100:80"
scheduler = "sh"
sched_flags = ["sh-port", "sh-fallback"]
persistence = { timeout = 600, netmask = "255.255.255.0" }
[[service.server]]
address = "198.19.0.11:8080"
forward = "nat"
weight = 3
[[service.server]]
address = "198.19.0.12"
forward = "dr"
weight = 0

[[service]]
protocol = "udp"
address = "198.18.0.100:53"
scheduler = "mh"
mh_table_size = 251
one_packet = true
[[service.server]]
address = "198.18.5.9:53"
forward = "tun"

[[group]]
name = "web"
mark = 7
members = ["tcp:198.18.0.101:80", "tcp:198.18.0.101:443"]
scheduler = "rr"
persistence = { timeout = 60 }
[[group.server]]
address = "198.19.0.21"
forward = "nat"

[control]
socket = "/tmp/rvs test.sock"
listen = "[::1]:9180"
token_file = "/etc/rvs/token"
"#;

    #[test]
    fn parse_of_render_is_identity() {
        let config = parse(FULL, "full.toml").unwrap();
        let text = render(&config);
        let again = parse(&text, "rendered.toml").unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(again, config);
    }

    #[test]
    fn minimal_config_round_trips() {
        let config = parse(
            "[[port]]\nname = \"p\"\nvdev = \"net_null0\"\naddresses = [\"198.18.0.1/24\"]\n",
            "min.toml",
        )
        .unwrap();
        assert_eq!(parse(&render(&config), "r.toml").unwrap(), config);
    }
}
