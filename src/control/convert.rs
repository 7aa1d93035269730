//! The running [`Config`] as rvsadm's [`Model`], and a model changed by
//! rvsadm back into a validated `Config`.
//!
//! The way back renders the configuration as TOML and runs it through
//! [`config::parse`], so a table changed by rvsadm obeys exactly the rules
//! of the file; an error is reported against the rvsadm argument that
//! named the service or server (`-t 198.18.0.100:80 -r 198.18.5.9:80: ...`)
//! instead of a key of a file that does not exist.

use std::net::{SocketAddr, SocketAddrV4};

use crate::adm::model::{
    Destination, Family, Forward as AdmForward, Group, GroupMember, Netmask,
    Persistence as AdmPersistence, Protocol as AdmProtocol, SchedFlags, Timeouts,
};
use crate::adm::{Model, Service, ServiceKey};
use crate::config::{
    self, Config, Forward, GroupConfig, Persistence, Protocol, ServerConfig, ServiceConfig,
};
use crate::sched::{maglev, HashFlags, SchedulerKind};
use crate::stats::{Counters, Rates};

use super::render::render;

fn adm_protocol(p: Protocol) -> AdmProtocol {
    match p {
        Protocol::Tcp => AdmProtocol::Tcp,
        Protocol::Udp => AdmProtocol::Udp,
    }
}

fn config_protocol(p: AdmProtocol) -> Protocol {
    match p {
        AdmProtocol::Tcp => Protocol::Tcp,
        AdmProtocol::Udp => Protocol::Udp,
    }
}

fn adm_forward(f: Forward) -> AdmForward {
    match f {
        Forward::Nat => AdmForward::Nat,
        Forward::Dr => AdmForward::Dr,
        Forward::Tun => AdmForward::Tun,
    }
}

fn adm_flags(flags: HashFlags) -> SchedFlags {
    SchedFlags {
        flag1: flags.fallback,
        flag2: flags.port,
        flag3: false,
    }
}

fn adm_persistence(p: Option<Persistence>) -> Option<AdmPersistence> {
    p.map(|p| AdmPersistence {
        timeout: p.timeout_secs,
        netmask: Netmask::Ipv4(p.netmask),
    })
}

fn destinations(servers: &[ServerConfig]) -> Vec<Destination> {
    servers
        .iter()
        .map(|s| Destination {
            addr: SocketAddr::V4(s.address),
            forward: adm_forward(s.forward),
            weight: s.weight,
            upper_threshold: s.upper_threshold,
            lower_threshold: s.lower_threshold,
            active_conns: 0,
            inactive_conns: 0,
            persistent_conns: 0,
            stats: Counters::default(),
            rates: Rates::default(),
        })
        .collect()
}

/// The table rvsadm sees for `config`: its services, then its groups as
/// firewall-mark services. Counters and connection counts are zero (the
/// workers do not publish them yet).
pub fn model_from_config(config: &Config) -> Model {
    let mut model = Model {
        timeouts: Timeouts {
            tcp: config.timeouts.tcp,
            tcpfin: config.timeouts.tcpfin,
            udp: config.timeouts.udp,
        },
        ..Model::default()
    };
    for s in &config.services {
        model.services.push(Service {
            key: ServiceKey::Addr {
                protocol: adm_protocol(s.protocol),
                addr: SocketAddr::V4(s.address),
            },
            scheduler: s.scheduler.name().to_string(),
            sched_flags: adm_flags(s.sched_flags),
            persistence: adm_persistence(s.persistence),
            one_packet: s.one_packet,
            group: None,
            destinations: destinations(&s.servers),
            stats: Counters::default(),
            rates: Rates::default(),
        });
    }
    for g in &config.groups {
        model.services.push(Service {
            key: ServiceKey::Fwmark {
                mark: g.mark,
                family: Family::Ipv4,
            },
            scheduler: g.scheduler.name().to_string(),
            sched_flags: adm_flags(g.sched_flags),
            persistence: adm_persistence(g.persistence),
            one_packet: g.one_packet,
            group: Some(Group {
                name: Some(g.name.clone()),
                members: g
                    .members
                    .iter()
                    .map(|&(p, a)| GroupMember {
                        protocol: adm_protocol(p),
                        addr: SocketAddr::V4(a),
                    })
                    .collect(),
            }),
            destinations: destinations(&g.servers),
            stats: Counters::default(),
            rates: Rates::default(),
        });
    }
    model
}

/// Why a changed table cannot run: the message names the rvsadm argument.
pub type Refusal = String;

fn ipv4(addr: SocketAddr, label: &str) -> Result<SocketAddrV4, Refusal> {
    match addr {
        SocketAddr::V4(a) => Ok(a),
        SocketAddr::V6(_) => Err(format!("{label}: rvs forwards IPv4 only")),
    }
}

/// The parts of a service the file's `[[service]]` and `[[group]]` share.
struct Body {
    scheduler: SchedulerKind,
    sched_flags: HashFlags,
    persistence: Option<Persistence>,
    servers: Vec<ServerConfig>,
}

fn body(service: &Service, label: &str) -> Result<Body, Refusal> {
    let scheduler = service
        .scheduler_kind()
        .ok_or_else(|| format!("{label}: unknown scheduler -s {}", service.scheduler))?;
    let flags = service.sched_flags;
    if !flags.is_empty() && !matches!(scheduler, SchedulerKind::Sh | SchedulerKind::Mh) {
        return Err(format!(
            "{label}: -b {}: only the sh and mh schedulers take flags in rvs",
            flags.names(&service.scheduler)
        ));
    }
    if flags.flag3 {
        return Err(format!(
            "{label}: -b flag-3: {} has no third flag",
            service.scheduler
        ));
    }
    let persistence = match service.persistence {
        None => None,
        Some(p) => match p.netmask {
            Netmask::Ipv4(netmask) => Some(Persistence {
                timeout_secs: p.timeout,
                netmask,
            }),
            Netmask::PrefixLen(len) => {
                return Err(format!("{label}: -M {len}: rvs forwards IPv4 only"))
            }
        },
    };
    let mut servers = Vec::with_capacity(service.destinations.len());
    for d in &service.destinations {
        let server_label = format!("{label} -r {}", d.addr);
        let address = ipv4(d.addr, &server_label)?;
        let forward = match d.forward {
            AdmForward::Nat => Forward::Nat,
            AdmForward::Dr => Forward::Dr,
            AdmForward::Tun => Forward::Tun,
            AdmForward::Local => {
                return Err(format!(
                    "{server_label}: rvs has no local delivery (no host stack)"
                ))
            }
        };
        servers.push(ServerConfig {
            address,
            forward,
            weight: d.weight,
            upper_threshold: d.upper_threshold,
            lower_threshold: d.lower_threshold,
        });
    }
    Ok(Body {
        scheduler,
        sched_flags: HashFlags {
            fallback: flags.flag1,
            port: flags.flag2,
        },
        persistence,
        servers,
    })
}

/// rvsadm's name for what a config key path such as
/// `service[2].server[0].address` points at, from the labels of the
/// services and groups in file order.
fn label_of_key<'a>(
    key: &str,
    services: &'a [Vec<String>],
    groups: &'a [Vec<String>],
) -> Option<&'a str> {
    let index = |text: &str, prefix: &str| -> Option<(usize, String)> {
        let rest = text.strip_prefix(prefix)?;
        let (number, rest) = rest.split_once(']')?;
        Some((number.parse().ok()?, rest.to_string()))
    };
    let (table, rest) = if let Some(found) = index(key, "service[") {
        (services, found)
    } else {
        (groups, index(key, "group[")?)
    };
    let (i, rest) = rest;
    let labels = table.get(i)?;
    match index(&rest, ".server[") {
        Some((j, _)) => labels.get(j + 1).map(String::as_str),
        None => labels.first().map(String::as_str),
    }
}

/// The configuration that runs `model`: `running`'s ports, `[dpdk]` and
/// `[control]` with the model's services and groups, validated as the file
/// would be.
///
/// rvs's table differs from IPVS's in a few ways, each refused with the
/// argument named: IPv4 only, flags
/// only for sh and mh, and firewall marks exist only as service groups,
/// so a firewall-mark service takes its name and members from the group
/// with the same mark in `known_groups` (every group the configuration
/// file has defined, which lets `-S` / `-C` / `-R` round-trip) and a new
/// mark is refused. A service's `mh_table_size` is kept from the running
/// configuration (ipvsadm has no option for it).
pub fn config_from_model(
    model: &Model,
    running: &Config,
    known_groups: &[GroupConfig],
) -> Result<Config, Refusal> {
    let mut config = running.clone();
    config.timeouts = crate::config::TimeoutsConfig {
        tcp: model.timeouts.tcp,
        tcpfin: model.timeouts.tcpfin,
        udp: model.timeouts.udp,
    };
    config.services.clear();
    config.groups.clear();
    // Per service or group: its own label, then one per server.
    let mut service_labels: Vec<Vec<String>> = Vec::new();
    let mut group_labels: Vec<Vec<String>> = Vec::new();
    for service in &model.services {
        let label = service.key.to_string();
        let b = body(service, &label)?;
        let mut labels = vec![label.clone()];
        labels.extend(
            service
                .destinations
                .iter()
                .map(|d| format!("{label} -r {}", d.addr)),
        );
        match service.key {
            ServiceKey::Addr { protocol, addr } => {
                let address = ipv4(addr, &label)?;
                let protocol = config_protocol(protocol);
                let mh_table_size = running
                    .services
                    .iter()
                    .find(|s| s.protocol == protocol && s.address == address)
                    .map_or(maglev::DEFAULT_SIZE, |s| s.mh_table_size);
                config.services.push(ServiceConfig {
                    protocol,
                    address,
                    scheduler: b.scheduler,
                    sched_flags: b.sched_flags,
                    persistence: b.persistence,
                    one_packet: service.one_packet,
                    mh_table_size,
                    servers: b.servers,
                });
                service_labels.push(labels);
            }
            ServiceKey::Fwmark { mark, family } => {
                if family != Family::Ipv4 {
                    return Err(format!("{label}: rvs forwards IPv4 only"));
                }
                let known = known_groups.iter().find(|g| g.mark == mark);
                let (name, members) = match (&service.group, known) {
                    (Some(group), _) => {
                        let name = group
                            .name
                            .clone()
                            .or_else(|| known.map(|g| g.name.clone()))
                            .unwrap_or_else(|| format!("mark-{mark}"));
                        let mut members = Vec::with_capacity(group.members.len());
                        for m in &group.members {
                            members.push((config_protocol(m.protocol), ipv4(m.addr, &label)?));
                        }
                        (name, members)
                    }
                    (None, Some(g)) => (g.name.clone(), g.members.clone()),
                    (None, None) => {
                        return Err(format!(
                            "{label}: rvs has no firewall marks: a firewall-mark service is a \
                             [[group]] of the configuration file, which gives its members"
                        ))
                    }
                };
                config.groups.push(GroupConfig {
                    name,
                    mark,
                    members,
                    scheduler: b.scheduler,
                    sched_flags: b.sched_flags,
                    persistence: b.persistence,
                    one_packet: service.one_packet,
                    mh_table_size: known.map_or(maglev::DEFAULT_SIZE, |g| g.mh_table_size),
                    servers: b.servers,
                });
                group_labels.push(labels);
            }
        }
    }
    config::parse(&render(&config), "rvsadm").map_err(|e| {
        match label_of_key(&e.key, &service_labels, &group_labels) {
            Some(label) => format!("{label}: {}", e.message),
            None => format!("{}: {}", e.key, e.message),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    #[test]
    fn config_to_model_and_back_is_identity() {
        let config = parse(super::super::render::tests::FULL, "full.toml").unwrap();
        let model = model_from_config(&config);
        assert_eq!(model.services.len(), 3);
        assert!(model.services[2].key.is_fwmark());
        let back = config_from_model(&model, &config, &config.groups).unwrap();
        assert_eq!(back, config);
    }

    #[test]
    fn a_deleted_group_comes_back_by_its_mark() {
        let config = parse(super::super::render::tests::FULL, "full.toml").unwrap();
        let mut model = model_from_config(&config);
        model.services[2].group = None;
        let back = config_from_model(&model, &config, &config.groups).unwrap();
        assert_eq!(back.groups, config.groups);
        let err = config_from_model(&model, &config, &[]).unwrap_err();
        assert!(err.starts_with("-f 7: rvs has no firewall marks"), "{err}");
    }

    #[test]
    fn file_keys_become_rvsadm_arguments() {
        let services = vec![vec!["-t A".to_string(), "-t A -r B".to_string()]];
        let groups = vec![vec!["-f 1".to_string()]];
        let label = |key| label_of_key(key, &services, &groups);
        assert_eq!(label("service[0].scheduler"), Some("-t A"));
        assert_eq!(label("service[0].server[0].address"), Some("-t A -r B"));
        assert_eq!(label("service[0].server[1].address"), None);
        assert_eq!(label("group[0].members[1]"), Some("-f 1"));
        assert_eq!(label("service[1]"), None);
        assert_eq!(label("port[0].mtu"), None);
    }
}
