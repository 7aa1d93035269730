//! Prometheus text exposition format 0.0.4 (`GET /metrics`): the model's
//! per-service and per-server counters, rates and connection counts, and
//! the data plane's drops and port counters. Every metric is prefixed
//! `rvs_`; a metric's samples are written together under its HELP and TYPE
//! lines, as the format requires.

use super::{service_label, Counters};
use crate::adm::model::{Destination, Model};
use crate::stats::{Counters as Traffic, Rates};
use std::fmt::Write;

/// The content type to serve [`render`]'s text with.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Reads one series' value out of a service's or server's stats and rates.
type Read = fn(&Traffic, &Rates) -> u64;

/// A metric that both services and servers have, read from their stats
/// and rates. `help` names the one it describes `{scope}`; `series` pairs a
/// `direction` label value (or none) with how to read it.
struct TrafficMetric {
    suffix: &'static str,
    kind: &'static str,
    help: &'static str,
    series: &'static [(Option<&'static str>, Read)],
}

const TRAFFIC_METRICS: &[TrafficMetric] = &[
    TrafficMetric {
        suffix: "connections_total",
        kind: "counter",
        help: "Connections scheduled to {scope}.",
        series: &[(None, |stats, _| stats.conns)],
    },
    TrafficMetric {
        suffix: "packets_total",
        kind: "counter",
        help: "Packets of {scope}: in from clients, out from real servers.",
        series: &[
            (Some("in"), |stats, _| stats.inpkts),
            (Some("out"), |stats, _| stats.outpkts),
        ],
    },
    TrafficMetric {
        suffix: "bytes_total",
        kind: "counter",
        help: "Bytes (whole IP packets) of {scope}: in from clients, out from real servers.",
        series: &[
            (Some("in"), |stats, _| stats.inbytes),
            (Some("out"), |stats, _| stats.outbytes),
        ],
    },
    TrafficMetric {
        suffix: "rate_cps",
        kind: "gauge",
        help: "Connections per second to {scope} (IPVS's 2 s estimator).",
        series: &[(None, |_, rates| rates.cps)],
    },
    TrafficMetric {
        suffix: "rate_pps",
        kind: "gauge",
        help: "Packets per second of {scope}: in from clients, out from real servers.",
        series: &[
            (Some("in"), |_, rates| rates.inpps),
            (Some("out"), |_, rates| rates.outpps),
        ],
    },
    TrafficMetric {
        suffix: "rate_bps",
        kind: "gauge",
        help: "Bytes per second of {scope}: in from clients, out from real servers.",
        series: &[
            (Some("in"), |_, rates| rates.inbps),
            (Some("out"), |_, rates| rates.outbps),
        ],
    },
];

/// A gauge only real servers have: name suffix, help, how to read it.
type ServerGauge = (&'static str, &'static str, fn(&Destination) -> u64);

const SERVER_GAUGES: &[ServerGauge] = &[
    (
        "weight",
        "Weight of the real server in the service (0 takes no new connections)",
        |dest| dest.weight.into(),
    ),
    (
        "active_connections",
        "Active connections to the real server (IPVS ActiveConn)",
        |dest| dest.active_conns.into(),
    ),
    (
        "inactive_connections",
        "Inactive connections to the real server (IPVS InActConn)",
        |dest| dest.inactive_conns.into(),
    ),
    (
        "persistent_connections",
        "Persistence templates pointing at the real server",
        |dest| dest.persistent_conns.into(),
    ),
];

/// The whole exposition. Allocates freely: it runs on the management
/// thread, once per scrape.
pub fn render(model: &Model, counters: &Counters) -> String {
    let mut out = Exposition::default();
    let services: Vec<(String, &crate::adm::model::Service)> = model
        .services
        .iter()
        .map(|service| (service_label(&service.key), service))
        .collect();

    out.family("rvs_uptime_seconds", "gauge", "Seconds since rvsd started.");
    out.sample_f64("rvs_uptime_seconds", &[], counters.uptime_seconds);

    out.family(
        "rvs_connections",
        "gauge",
        "Connections in the connection tables now.",
    );
    out.sample("rvs_connections", &[], counters.conns_live);

    out.family(
        "rvs_drops_total",
        "counter",
        "Packets the data plane dropped, by reason.",
    );
    for (reason, count) in &counters.drops {
        out.sample("rvs_drops_total", &[("reason", reason)], *count);
    }

    out.family(
        "rvs_port_packets_total",
        "counter",
        "Packets the workers received (rx) and transmitted (tx) on the port.",
    );
    for port in &counters.ports {
        for (direction, value) in [("rx", port.rx_packets), ("tx", port.tx_packets)] {
            let labels = [("port", port.name.as_str()), ("direction", direction)];
            out.sample("rvs_port_packets_total", &labels, value);
        }
    }
    out.family(
        "rvs_port_nic_packets_total",
        "counter",
        "Packets the NIC itself counted on the port, received (rx) and transmitted (tx).",
    );
    for port in &counters.ports {
        for (direction, value) in [("rx", port.nic_rx_packets), ("tx", port.nic_tx_packets)] {
            let labels = [("port", port.name.as_str()), ("direction", direction)];
            out.sample("rvs_port_nic_packets_total", &labels, value);
        }
    }
    out.family(
        "rvs_port_nic_rx_missed_total",
        "counter",
        "Packets the NIC dropped on the port for want of a free RX descriptor.",
    );
    for port in &counters.ports {
        let labels = [("port", port.name.as_str())];
        out.sample("rvs_port_nic_rx_missed_total", &labels, port.nic_rx_missed);
    }

    for metric in TRAFFIC_METRICS {
        let name = format!("rvs_service_{}", metric.suffix);
        let help = metric.help.replace("{scope}", "the virtual service");
        out.family(&name, metric.kind, &help);
        for (label, service) in &services {
            for (direction, read) in metric.series {
                let value = read(&service.stats, &service.rates);
                match direction {
                    Some(direction) => out.sample(
                        &name,
                        &[("service", label), ("direction", direction)],
                        value,
                    ),
                    None => out.sample(&name, &[("service", label)], value),
                }
            }
        }
    }

    for metric in TRAFFIC_METRICS {
        let name = format!("rvs_server_{}", metric.suffix);
        let help = metric
            .help
            .replace("{scope}", "the real server in the service");
        out.family(&name, metric.kind, &help);
        for (label, service) in &services {
            for dest in &service.destinations {
                let server = dest.addr.to_string();
                for (direction, read) in metric.series {
                    let value = read(&dest.stats, &dest.rates);
                    match direction {
                        Some(direction) => out.sample(
                            &name,
                            &[
                                ("service", label),
                                ("server", &server),
                                ("direction", direction),
                            ],
                            value,
                        ),
                        None => {
                            out.sample(&name, &[("service", label), ("server", &server)], value)
                        }
                    }
                }
            }
        }
    }

    for (suffix, help, read) in SERVER_GAUGES {
        let name = format!("rvs_server_{suffix}");
        out.family(&name, "gauge", &format!("{help}."));
        for (label, service) in &services {
            for dest in &service.destinations {
                let server = dest.addr.to_string();
                out.sample(
                    &name,
                    &[("service", label), ("server", &server)],
                    read(dest),
                );
            }
        }
    }

    out.text
}

#[derive(Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        self.text.push_str("# HELP ");
        self.text.push_str(name);
        self.text.push(' ');
        escape_into(&mut self.text, help, false);
        self.text.push_str("\n# TYPE ");
        self.text.push_str(name);
        self.text.push(' ');
        self.text.push_str(kind);
        self.text.push('\n');
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        self.series(name, labels);
        // Writing into a String cannot fail.
        let _ = writeln!(self.text, " {value}");
    }

    fn sample_f64(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.series(name, labels);
        // The format's spellings of the non-finite values (Go's ParseFloat).
        if value.is_nan() {
            self.text.push_str(" NaN\n");
        } else if value == f64::INFINITY {
            self.text.push_str(" +Inf\n");
        } else if value == f64::NEG_INFINITY {
            self.text.push_str(" -Inf\n");
        } else {
            let _ = writeln!(self.text, " {value}");
        }
    }

    fn series(&mut self, name: &str, labels: &[(&str, &str)]) {
        self.text.push_str(name);
        if labels.is_empty() {
            return;
        }
        self.text.push('{');
        for (index, (label, value)) in labels.iter().enumerate() {
            if index > 0 {
                self.text.push(',');
            }
            self.text.push_str(label);
            self.text.push_str("=\"");
            escape_into(&mut self.text, value, true);
            self.text.push('"');
        }
        self.text.push('}');
    }
}

/// The format's escapes: backslash and line feed everywhere, and the double
/// quote inside label values.
fn escape_into(out: &mut String, text: &str, label_value: bool) {
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if label_value => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adm::model::{
        Family, Forward, Group, GroupMember, Netmask, Persistence, Protocol, SchedFlags, Service,
        ServiceKey,
    };
    use crate::web::PortCounters;
    use std::collections::{BTreeMap, HashSet};

    fn server(addr: &str, weight: u32) -> Destination {
        Destination {
            addr: addr.parse().unwrap(),
            forward: Forward::Nat,
            weight,
            upper_threshold: 0,
            lower_threshold: 0,
            active_conns: 3,
            inactive_conns: 4,
            persistent_conns: 1,
            stats: Traffic {
                conns: 10,
                inpkts: 100,
                outpkts: 90,
                inbytes: 6000,
                outbytes: 120000,
            },
            rates: Rates {
                cps: 2,
                inpps: 20,
                outpps: 18,
                inbps: 1200,
                outbps: 24000,
            },
        }
    }

    fn one_service_model() -> Model {
        let dest = server("198.19.0.11:80", 5);
        Model {
            services: vec![Service {
                key: ServiceKey::Addr {
                    protocol: Protocol::Tcp,
                    addr: "198.18.0.100:80".parse().unwrap(),
                },
                scheduler: "wlc".into(),
                sched_flags: SchedFlags::default(),
                persistence: None,
                one_packet: false,
                group: None,
                stats: dest.stats,
                rates: dest.rates,
                destinations: vec![dest],
            }],
            ..Model::default()
        }
    }

    fn some_counters() -> Counters {
        Counters {
            drops: BTreeMap::from([("no_service".to_string(), 7), ("tx_full".to_string(), 0)]),
            ports: vec![PortCounters {
                name: "wan".into(),
                rx_packets: 1000,
                tx_packets: 990,
                nic_rx_packets: 1001,
                nic_tx_packets: 991,
                nic_rx_missed: 1,
            }],
            conns_live: 7,
            uptime_seconds: 12.5,
        }
    }

    #[test]
    fn renders_a_small_model_exactly() {
        let text = render(&one_service_model(), &some_counters());
        let expected = r#"# HELP rvs_uptime_seconds Seconds since rvsd started.
# TYPE rvs_uptime_seconds gauge
rvs_uptime_seconds 12.5
# HELP rvs_connections Connections in the connection tables now.
# TYPE rvs_connections gauge
rvs_connections 7
# HELP rvs_drops_total Packets the data plane dropped, by reason.
# TYPE rvs_drops_total counter
rvs_drops_total{reason="no_service"} 7
rvs_drops_total{reason="tx_full"} 0
# HELP rvs_port_packets_total Packets the workers received (rx) and transmitted (tx) on the port.
# TYPE rvs_port_packets_total counter
rvs_port_packets_total{port="wan",direction="rx"} 1000
rvs_port_packets_total{port="wan",direction="tx"} 990
# HELP rvs_port_nic_packets_total Packets the NIC itself counted on the port, received (rx) and transmitted (tx).
# TYPE rvs_port_nic_packets_total counter
rvs_port_nic_packets_total{port="wan",direction="rx"} 1001
rvs_port_nic_packets_total{port="wan",direction="tx"} 991
# HELP rvs_port_nic_rx_missed_total Packets the NIC dropped on the port for want of a free RX descriptor.
# TYPE rvs_port_nic_rx_missed_total counter
rvs_port_nic_rx_missed_total{port="wan"} 1
# HELP rvs_service_connections_total Connections scheduled to the virtual service.
# TYPE rvs_service_connections_total counter
rvs_service_connections_total{service="TCP 198.18.0.100:80"} 10
# HELP rvs_service_packets_total Packets of the virtual service: in from clients, out from real servers.
# TYPE rvs_service_packets_total counter
rvs_service_packets_total{service="TCP 198.18.0.100:80",direction="in"} 100
rvs_service_packets_total{service="TCP 198.18.0.100:80",direction="out"} 90
# HELP rvs_service_bytes_total Bytes (whole IP packets) of the virtual service: in from clients, out from real servers.
# TYPE rvs_service_bytes_total counter
rvs_service_bytes_total{service="TCP 198.18.0.100:80",direction="in"} 6000
rvs_service_bytes_total{service="TCP 198.18.0.100:80",direction="out"} 120000
# HELP rvs_service_rate_cps Connections per second to the virtual service (IPVS's 2 s estimator).
# TYPE rvs_service_rate_cps gauge
rvs_service_rate_cps{service="TCP 198.18.0.100:80"} 2
# HELP rvs_service_rate_pps Packets per second of the virtual service: in from clients, out from real servers.
# TYPE rvs_service_rate_pps gauge
rvs_service_rate_pps{service="TCP 198.18.0.100:80",direction="in"} 20
rvs_service_rate_pps{service="TCP 198.18.0.100:80",direction="out"} 18
# HELP rvs_service_rate_bps Bytes per second of the virtual service: in from clients, out from real servers.
# TYPE rvs_service_rate_bps gauge
rvs_service_rate_bps{service="TCP 198.18.0.100:80",direction="in"} 1200
rvs_service_rate_bps{service="TCP 198.18.0.100:80",direction="out"} 24000
# HELP rvs_server_connections_total Connections scheduled to the real server in the service.
# TYPE rvs_server_connections_total counter
rvs_server_connections_total{service="TCP 198.18.0.100:80",server="198.19.0.11:80"} 10
# HELP rvs_server_packets_total Packets of the real server in the service: in from clients, out from real servers.
# TYPE rvs_server_packets_total counter
rvs_server_packets_total{service="TCP 198.18.0.100:80",server="198.19.0.11:80",direction="in"} 100
rvs_server_packets_total{service="TCP 198.18.0.100:80",server="198.19.0.11:80",direction="out"} 90
# HELP rvs_server_bytes_total Bytes (whole IP packets) of the real server in the service: in from clients, out from real servers.
# TYPE rvs_server_bytes_total counter
rvs_server_bytes_total{service="TCP 198.18.0.100:80",server="198.19.0.11:80",direction="in"} 6000
rvs_server_bytes_total{service="TCP 198.18.0.100:80",server="198.19.0.11:80",direction="out"} 120000
# HELP rvs_server_rate_cps Connections per second to the real server in the service (IPVS's 2 s estimator).
# TYPE rvs_server_rate_cps gauge
rvs_server_rate_cps{service="TCP 198.18.0.100:80",server="198.19.0.11:80"} 2
# HELP rvs_server_rate_pps Packets per second of the real server in the service: in from clients, out from real servers.
# TYPE rvs_server_rate_pps gauge
rvs_server_rate_pps{service="TCP 198.18.0.100:80",server="198.19.0.11:80",direction="in"} 20
rvs_server_rate_pps{service="TCP 198.18.0.100:80",server="198.19.0.11:80",direction="out"} 18
# HELP rvs_server_rate_bps Bytes per second of the real server in the service: in from clients, out from real servers.
# TYPE rvs_server_rate_bps gauge
rvs_server_rate_bps{service="TCP 198.18.0.100:80",server="198.19.0.11:80",direction="in"} 1200
rvs_server_rate_bps{service="TCP 198.18.0.100:80",server="198.19.0.11:80",direction="out"} 24000
# HELP rvs_server_weight Weight of the real server in the service (0 takes no new connections).
# TYPE rvs_server_weight gauge
rvs_server_weight{service="TCP 198.18.0.100:80",server="198.19.0.11:80"} 5
# HELP rvs_server_active_connections Active connections to the real server (IPVS ActiveConn).
# TYPE rvs_server_active_connections gauge
rvs_server_active_connections{service="TCP 198.18.0.100:80",server="198.19.0.11:80"} 3
# HELP rvs_server_inactive_connections Inactive connections to the real server (IPVS InActConn).
# TYPE rvs_server_inactive_connections gauge
rvs_server_inactive_connections{service="TCP 198.18.0.100:80",server="198.19.0.11:80"} 4
# HELP rvs_server_persistent_connections Persistence templates pointing at the real server.
# TYPE rvs_server_persistent_connections gauge
rvs_server_persistent_connections{service="TCP 198.18.0.100:80",server="198.19.0.11:80"} 1
"#;
        assert_eq!(text, expected);
    }

    #[test]
    fn escapes_label_values_and_help() {
        let mut out = Exposition::default();
        out.family("rvs_x", "gauge", "a \\ and a\nline \"quoted\"");
        out.sample("rvs_x", &[("port", "a\"b\\c\nd")], 1);
        assert_eq!(
            out.text,
            "# HELP rvs_x a \\\\ and a\\nline \"quoted\"\n\
             # TYPE rvs_x gauge\n\
             rvs_x{port=\"a\\\"b\\\\c\\nd\"} 1\n"
        );
    }

    #[test]
    fn spells_non_finite_values_as_the_format_does() {
        let mut out = Exposition::default();
        out.sample_f64("a", &[], f64::NAN);
        out.sample_f64("b", &[], f64::INFINITY);
        out.sample_f64("c", &[], f64::NEG_INFINITY);
        out.sample_f64("d", &[], 0.25);
        assert_eq!(out.text, "a NaN\nb +Inf\nc -Inf\nd 0.25\n");
    }

    /// A sample line split into its name, labels (unescaped) and value.
    type ParsedSample = (String, Vec<(String, String)>, f64);

    /// Parses one sample line by the 0.0.4 grammar:
    /// `name{label="value",...} value` (no timestamp: rvs writes none).
    fn parse_sample(line: &str) -> Result<ParsedSample, String> {
        let is_name_start = |c: char| c.is_ascii_alphabetic() || c == '_' || c == ':';
        let is_name_char = |c: char| is_name_start(c) || c.is_ascii_digit();
        let name_end = line
            .find(|c: char| !is_name_char(c))
            .ok_or("no value after the name")?;
        let name = &line[..name_end];
        if !name.starts_with(is_name_start) {
            return Err(format!("bad metric name {name:?}"));
        }
        let mut rest = &line[name_end..];
        let mut labels = Vec::new();
        if let Some(after) = rest.strip_prefix('{') {
            rest = after;
            loop {
                if let Some(after) = rest.strip_prefix('}') {
                    rest = after;
                    break;
                }
                let eq = rest.find('=').ok_or("label without =")?;
                let label = &rest[..eq];
                if label.is_empty()
                    || !label.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                    || !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                {
                    return Err(format!("bad label name {label:?}"));
                }
                rest = rest[eq + 1..]
                    .strip_prefix('"')
                    .ok_or("label value not quoted")?;
                let mut value = String::new();
                let mut chars = rest.char_indices();
                let end = loop {
                    match chars.next().ok_or("unterminated label value")? {
                        (_, '\\') => match chars.next().ok_or("dangling backslash")?.1 {
                            '\\' => value.push('\\'),
                            '"' => value.push('"'),
                            'n' => value.push('\n'),
                            other => return Err(format!("bad escape \\{other}")),
                        },
                        (at, '"') => break at,
                        (_, c) => value.push(c),
                    }
                };
                labels.push((label.to_string(), value));
                rest = &rest[end + 1..];
                rest = rest.strip_prefix(',').unwrap_or(rest);
            }
        }
        let value = rest.strip_prefix(' ').ok_or("no space before the value")?;
        let value = match value {
            "NaN" => f64::NAN,
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            number => number
                .parse::<f64>()
                .map_err(|_| format!("bad value {number:?}"))?,
        };
        Ok((name.to_string(), labels, value))
    }

    #[test]
    fn every_line_parses_and_every_metric_is_one_typed_group() {
        let mut model = one_service_model();
        let mut group_service = model.services[0].clone();
        group_service.key = ServiceKey::Fwmark {
            mark: 1,
            family: Family::Ipv4,
        };
        group_service.scheduler = "sh".into();
        group_service.persistence = Some(Persistence {
            timeout: 360,
            netmask: Netmask::Ipv4("255.255.255.0".parse().unwrap()),
        });
        group_service.group = Some(Group {
            name: Some("web".into()),
            members: vec![GroupMember {
                protocol: Protocol::Tcp,
                addr: "198.18.0.100:443".parse().unwrap(),
            }],
        });
        group_service.destinations =
            vec![server("198.19.0.12:0", 1), server("[2001:db8::12]:0", 0)];
        model.services.push(group_service);
        let mut counters = some_counters();
        counters
            .drops
            .insert("odd \"reason\"\\with\nnewline".into(), 3);
        counters.uptime_seconds = f64::NAN;

        let text = render(&model, &counters);
        assert!(text.ends_with('\n'));
        let mut typed: Vec<String> = Vec::new();
        let mut finished: HashSet<String> = HashSet::new();
        let mut samples = 0;
        for (number, line) in text.lines().enumerate() {
            let number = number + 1;
            if let Some(comment) = line.strip_prefix("# ") {
                let mut words = comment.splitn(3, ' ');
                let (keyword, name) = (words.next().unwrap(), words.next().unwrap());
                assert!(name.starts_with("rvs_"), "line {number}: {line}");
                match keyword {
                    "HELP" => assert!(words.next().is_some_and(|help| !help.is_empty())),
                    "TYPE" => {
                        let kind = words.next().unwrap();
                        assert!(
                            ["counter", "gauge"].contains(&kind),
                            "line {number}: {line}"
                        );
                        if kind == "counter" {
                            assert!(name.ends_with("_total"), "line {number}: {line}");
                        }
                        if let Some(previous) = typed.last() {
                            finished.insert(previous.clone());
                        }
                        assert!(
                            !finished.contains(name),
                            "line {number}: {name} typed twice"
                        );
                        typed.push(name.to_string());
                    }
                    _ => panic!("line {number}: unknown comment {line}"),
                }
                continue;
            }
            let (name, labels, _) =
                parse_sample(line).unwrap_or_else(|err| panic!("line {number}: {err}: {line}"));
            assert_eq!(
                typed.last(),
                Some(&name),
                "line {number}: sample outside its metric's group"
            );
            let label_names: HashSet<&str> = labels.iter().map(|(l, _)| l.as_str()).collect();
            assert_eq!(
                label_names.len(),
                labels.len(),
                "line {number}: repeated label"
            );
            samples += 1;
        }
        assert_eq!(typed.len(), 6 + 6 + 6 + 4);
        // 1 + 1 + 3 drops + 2 + 2 + 1 ports; per service 1+2+2+1+2+2 = 10
        // (2 services); per server 10 + 4 gauges (3 servers).
        assert_eq!(samples, 1 + 1 + 3 + 2 + 2 + 1 + 10 * 2 + 14 * 3);

        // Labels round-trip through the escapes.
        let odd = text
            .lines()
            .find(|line| line.starts_with("rvs_drops_total{reason=\"odd"))
            .unwrap();
        let (_, labels, value) = parse_sample(odd).unwrap();
        assert_eq!(labels[0].1, "odd \"reason\"\\with\nnewline");
        assert_eq!(value, 3.0);
        assert!(text.contains("rvs_uptime_seconds NaN\n"));
        assert!(
            text.contains("rvs_server_weight{service=\"FWM 1\",server=\"[2001:db8::12]:0\"} 0\n")
        );
    }

    #[test]
    fn an_empty_model_still_declares_every_metric() {
        let text = render(&Model::default(), &Counters::default());
        assert_eq!(text.matches("# TYPE ").count(), 22);
        let samples: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(samples, ["rvs_uptime_seconds 0", "rvs_connections 0"]);
    }
}
