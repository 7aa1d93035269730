//! The director's table as rvsadm sees it, and the changes ipvsadm's
//! commands make to it ([`Model::apply`]), with the kernel's semantics and
//! error messages (`net/netfilter/ipvs/ip_vs_ctl.c` as libipvs reports it).
//!
//! The model is plain data (serde: it is also the JSON of the control API).
//! Counters, rates, connection counts and the connection list are filled in
//! by whoever owns the data plane; rvsadm commands change the
//! configuration part and zero the counters.
//!
//! Semantics worth knowing:
//! - `-E` and `-e` replace every attribute of the service or server with
//!   what the command says, defaults included: `-E` without `-p` removes
//!   persistence, `-e` without `-m` makes a server `Route` (ipvsadm's
//!   defaults, sent whole to the kernel).
//! - Deleting a service deletes its servers. `-C` deletes every service.
//! - `--set` with 0 leaves that timeout unchanged.
//! - Errors carry ipvsadm's text, then `: ` and the service or server
//!   concerned in ipvsadm's own syntax (e.g. `No such service: -t
//!   198.18.0.100:80`), and ipvsadm's exit code.

use super::args::{Command, DestSpec, ServiceSpec};
use super::error::AdmError;
use crate::sched::{HashFlags, SchedulerKind};
use crate::stats::{Counters, Rates};
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Largest timeout ipvsadm accepts, in seconds (31 days).
pub const MAX_TIMEOUT: u32 = 86_400 * 31;
/// Persistence timeout when `-p` has no value.
pub const DEFAULT_PERSISTENCE_TIMEOUT: u32 = 360;
/// Scheduler when `-s` is not given.
pub const DEFAULT_SCHEDULER: &str = "wlc";
/// Largest weight (the kernel keeps it in an `int`; ipvsadm caps it).
pub const MAX_WEIGHT: u32 = 65_535;
/// Largest connection threshold (`INT_MAX`).
pub const MAX_THRESHOLD: u32 = i32::MAX as u32;
/// The IPVS version rvsadm reports.
pub const IPVS_VERSION: &str = "1.2.1";
/// `size=` of the version line when nothing else is known (IPVS's default
/// connection hash table size, 2¹²).
pub const DEFAULT_TABLE_SIZE: u32 = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    /// As listings print it.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
        }
    }

    /// IP protocol number (the kernel sorts services by it).
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
        }
    }

    /// The option selecting it (`-t` / `-u`).
    pub fn option(self) -> &'static str {
        match self {
            Protocol::Tcp => "-t",
            Protocol::Udp => "-u",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Ipv4,
    Ipv6,
}

impl Family {
    pub fn of(addr: IpAddr) -> Family {
        match addr {
            IpAddr::V4(_) => Family::Ipv4,
            IpAddr::V6(_) => Family::Ipv6,
        }
    }
}

/// What identifies a virtual service: protocol, VIP and port, or a
/// firewall mark (rvs service groups) and an address family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceKey {
    Addr {
        protocol: Protocol,
        addr: SocketAddr,
    },
    Fwmark {
        mark: u32,
        family: Family,
    },
}

impl ServiceKey {
    pub fn family(&self) -> Family {
        match self {
            ServiceKey::Addr { addr, .. } => Family::of(addr.ip()),
            ServiceKey::Fwmark { family, .. } => *family,
        }
    }

    /// The virtual port; 0 for firewall-mark services.
    pub fn port(&self) -> u16 {
        match self {
            ServiceKey::Addr { addr, .. } => addr.port(),
            ServiceKey::Fwmark { .. } => 0,
        }
    }

    pub fn is_fwmark(&self) -> bool {
        matches!(self, ServiceKey::Fwmark { .. })
    }

    /// libipvs's listing order: firewall mark (0 for address services),
    /// family, protocol number, address, port.
    pub fn listing_order(&self, other: &ServiceKey) -> Ordering {
        fn parts(key: &ServiceKey) -> (u32, Family, u8, Option<IpAddr>, u16) {
            match *key {
                ServiceKey::Addr { protocol, addr } => (
                    0,
                    Family::of(addr.ip()),
                    protocol.number(),
                    Some(addr.ip()),
                    addr.port(),
                ),
                // ipvsadm sends fwmark services as TCP.
                ServiceKey::Fwmark { mark, family } => (mark, family, 6, None, 0),
            }
        }
        parts(self).cmp(&parts(other))
    }
}

/// ipvsadm's syntax for the service: `-t 198.18.0.100:80`, `-u [2001:db8::1]:53`,
/// `-f 7`, `-f 7 -6`. `SocketAddr` prints IPv6 in brackets, as ipvsadm.
impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceKey::Addr { protocol, addr } => write!(f, "{} {}", protocol.option(), addr),
            ServiceKey::Fwmark { mark, family } => {
                write!(f, "-f {mark}")?;
                if *family == Family::Ipv6 {
                    f.write_str(" -6")?;
                }
                Ok(())
            }
        }
    }
}

/// The scheduler flags of `-b` (IPVS `IP_VS_SVC_F_SCHED1..3`). For `sh` and
/// `mh`, flag 1 is `*-fallback` and flag 2 is `*-port`; other schedulers
/// know them as `flag-1`, `flag-2`, `flag-3`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SchedFlags {
    pub flag1: bool,
    pub flag2: bool,
    pub flag3: bool,
}

impl SchedFlags {
    pub fn is_empty(&self) -> bool {
        !(self.flag1 || self.flag2 || self.flag3)
    }

    /// Parses `-b`'s comma-separated list for `scheduler` (ipvsadm checks
    /// `sh-*` / `mh-*` against the scheduler given with `-s`, or `wlc`).
    pub fn parse(list: &str, scheduler: &str) -> Result<SchedFlags, AdmError> {
        let mut flags = SchedFlags::default();
        // strtok: empty items between commas are skipped.
        let mut items = list.split(',').filter(|item| !item.is_empty()).peekable();
        if items.peek().is_none() {
            return Err(AdmError::usage(format!("invalid scheduler flag `{list}'")));
        }
        for item in items {
            let (needs, flag) = match item {
                "flag-1" => (None, &mut flags.flag1),
                "flag-2" => (None, &mut flags.flag2),
                "flag-3" => (None, &mut flags.flag3),
                "sh-fallback" => (Some("sh"), &mut flags.flag1),
                "sh-port" => (Some("sh"), &mut flags.flag2),
                "mh-fallback" => (Some("mh"), &mut flags.flag1),
                "mh-port" => (Some("mh"), &mut flags.flag2),
                _ => return Err(AdmError::usage(format!("invalid scheduler flag `{item}'"))),
            };
            *flag = true;
            if needs.is_some_and(|needed| needed != scheduler) {
                return Err(AdmError::usage(format!(
                    "incompatible scheduler flag `{item}'"
                )));
            }
        }
        Ok(flags)
    }

    /// The flags' names as ipvsadm prints them for `scheduler`,
    /// comma-separated (`sh-fallback,sh-port`). For sh and mh only their
    /// own two flags have names, so a lone flag 3 prints as nothing.
    pub fn names(&self, scheduler: &str) -> String {
        let named: [(bool, &str); 3] = match scheduler {
            "sh" => [
                (self.flag1, "sh-fallback"),
                (self.flag2, "sh-port"),
                (false, ""),
            ],
            "mh" => [
                (self.flag1, "mh-fallback"),
                (self.flag2, "mh-port"),
                (false, ""),
            ],
            _ => [
                (self.flag1, "flag-1"),
                (self.flag2, "flag-2"),
                (self.flag3, "flag-3"),
            ],
        };
        let names: Vec<&str> = named
            .iter()
            .filter(|(set, _)| *set)
            .map(|(_, name)| *name)
            .collect();
        names.join(",")
    }

    /// The flags as the hashing schedulers (sh, mh) take them.
    pub fn hash_flags(&self) -> HashFlags {
        HashFlags {
            fallback: self.flag1,
            port: self.flag2,
        }
    }
}

/// The persistence granularity: an IPv4 netmask, or an IPv6 prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Netmask {
    Ipv4(Ipv4Addr),
    PrefixLen(u8),
}

impl Netmask {
    /// Per-client granularity (/32 or /128), ipvsadm's default.
    pub fn host(family: Family) -> Netmask {
        match family {
            Family::Ipv4 => Netmask::Ipv4(Ipv4Addr::BROADCAST),
            Family::Ipv6 => Netmask::PrefixLen(128),
        }
    }

    pub fn family(&self) -> Family {
        match self {
            Netmask::Ipv4(_) => Family::Ipv4,
            Netmask::PrefixLen(_) => Family::Ipv6,
        }
    }
}

impl fmt::Display for Netmask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Netmask::Ipv4(mask) => write!(f, "{mask}"),
            Netmask::PrefixLen(len) => write!(f, "{len}"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Persistence {
    /// Seconds, 1..=[`MAX_TIMEOUT`].
    pub timeout: u32,
    pub netmask: Netmask,
}

/// Forwarding method of a real server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Forward {
    /// NAT (`-m`, `Masq`).
    Nat,
    /// Direct routing (`-g`, `Route`), ipvsadm's default.
    Dr,
    /// IP-in-IP tunnelling (`-i`, `Tunnel`).
    Tun,
    /// The director itself (`Local`). IPVS picks it for a real server
    /// address that is local; rvs has no host stack, so only a model filled
    /// in by its owner can hold it. Saved as `-g`, as ipvsadm does.
    Local,
}

impl Forward {
    /// As `-L` prints it.
    pub fn listing_name(self) -> &'static str {
        match self {
            Forward::Nat => "Masq",
            Forward::Dr => "Route",
            Forward::Tun => "Tunnel",
            Forward::Local => "Local",
        }
    }

    /// As `-S` writes it.
    pub fn save_option(self) -> &'static str {
        match self {
            Forward::Nat => "-m",
            Forward::Tun => "-i",
            Forward::Dr | Forward::Local => "-g",
        }
    }
}

/// One member of a service group: traffic to it is scheduled by the
/// group's firewall-mark service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GroupMember {
    pub protocol: Protocol,
    pub addr: SocketAddr,
}

/// What makes a firewall-mark service an rvs service group. ipvsadm has no
/// syntax for it: the configuration sets it, and rvsadm keeps it across
/// `-E`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub members: Vec<GroupMember>,
}

/// A real server of a service (IPVS "destination").
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Destination {
    /// Port 0 in a firewall-mark service: the client's port is kept.
    pub addr: SocketAddr,
    pub forward: Forward,
    /// 0..=65535; 0 takes no new connections.
    pub weight: u32,
    /// No new connections above this many (0: no limit).
    pub upper_threshold: u32,
    /// New connections again below this many after the upper one was hit.
    pub lower_threshold: u32,
    #[serde(default)]
    pub active_conns: u32,
    #[serde(default)]
    pub inactive_conns: u32,
    /// Persistence templates pointing at this server.
    #[serde(default)]
    pub persistent_conns: u32,
    /// Since the last `-Z`.
    #[serde(default)]
    pub stats: Counters,
    #[serde(default)]
    pub rates: Rates,
}

impl Destination {
    /// A new server as `-a` adds it: no connections, counters at 0.
    pub fn new(spec: &DestSpec) -> Destination {
        Destination {
            addr: spec.addr,
            forward: spec.forward,
            weight: spec.weight,
            upper_threshold: spec.upper_threshold,
            lower_threshold: spec.lower_threshold,
            active_conns: 0,
            inactive_conns: 0,
            persistent_conns: 0,
            stats: Counters::default(),
            rates: Rates::default(),
        }
    }

    /// Listing order: address, then port.
    pub fn listing_order(&self, other: &Destination) -> Ordering {
        (self.addr.ip(), self.addr.port()).cmp(&(other.addr.ip(), other.addr.port()))
    }
}

/// A virtual service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    pub key: ServiceKey,
    /// A name [`SchedulerKind::from_name`] knows.
    pub scheduler: String,
    #[serde(default)]
    pub sched_flags: SchedFlags,
    #[serde(default)]
    pub persistence: Option<Persistence>,
    /// One-packet scheduling (`-o`, UDP and firewall-mark services).
    #[serde(default)]
    pub one_packet: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<Group>,
    /// In the order they were added (`--nosort`).
    #[serde(default)]
    pub destinations: Vec<Destination>,
    /// Since the last `-Z`.
    #[serde(default)]
    pub stats: Counters,
    #[serde(default)]
    pub rates: Rates,
}

impl Service {
    /// A new service as `-A` adds it: no servers, no group, counters at 0.
    pub fn new(spec: &ServiceSpec) -> Service {
        Service {
            key: spec.key,
            scheduler: spec.scheduler.clone(),
            sched_flags: spec.sched_flags,
            persistence: spec.persistence,
            one_packet: spec.one_packet,
            group: None,
            destinations: Vec::new(),
            stats: Counters::default(),
            rates: Rates::default(),
        }
    }

    pub fn scheduler_kind(&self) -> Option<SchedulerKind> {
        SchedulerKind::from_name(&self.scheduler)
    }

    pub fn destination(&self, addr: SocketAddr) -> Option<&Destination> {
        self.destinations.iter().find(|d| d.addr == addr)
    }

    fn zero(&mut self) {
        self.stats = Counters::default();
        self.rates = Rates::default();
        for dest in &mut self.destinations {
            dest.stats = Counters::default();
            dest.rates = Rates::default();
        }
    }
}

/// One entry of the connection table as `-L -c` shows it (persistence
/// templates included: client port 0, state `NONE`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionEntry {
    pub protocol: Protocol,
    pub client: SocketAddr,
    #[serde(rename = "virtual")]
    pub virtual_addr: SocketAddr,
    pub destination: SocketAddr,
    /// IPVS's state name (`ESTABLISHED`, `SYN_RECV`, `UDP`, ...).
    pub state: String,
    /// Seconds until the entry expires.
    pub expires: u32,
}

/// The three timeouts `--set` and `-L --timeout` deal with, in seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Timeouts {
    /// Established TCP connections.
    pub tcp: u32,
    /// TCP after a FIN.
    pub tcpfin: u32,
    pub udp: u32,
}

impl Default for Timeouts {
    /// The kernel's: 900 120 300.
    fn default() -> Self {
        Timeouts {
            tcp: 900,
            tcpfin: 120,
            udp: 300,
        }
    }
}

/// The whole table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Model {
    /// In the order they were added (`--nosort`).
    #[serde(default)]
    pub services: Vec<Service>,
    #[serde(default)]
    pub connections: Vec<ConnectionEntry>,
    #[serde(default)]
    pub timeouts: Timeouts,
    /// The `size=` of the version line: the connection table's size.
    pub table_size: u32,
}

impl Default for Model {
    fn default() -> Self {
        Model {
            services: Vec::new(),
            connections: Vec::new(),
            timeouts: Timeouts::default(),
            table_size: DEFAULT_TABLE_SIZE,
        }
    }
}

fn service_not_defined(key: &ServiceKey) -> AdmError {
    AdmError::refused(format!("Service not defined: {key}"))
}

fn no_such_service(key: &ServiceKey) -> AdmError {
    AdmError::refused(format!("No such service: {key}"))
}

impl Model {
    pub fn service(&self, key: &ServiceKey) -> Option<&Service> {
        self.services.iter().find(|s| s.key == *key)
    }

    pub fn service_mut(&mut self, key: &ServiceKey) -> Option<&mut Service> {
        self.services.iter_mut().find(|s| s.key == *key)
    }

    /// Carries out a command that changes the table: `-A -E -D -a -e -d -C
    /// -Z --set`. Commands that only read (`-L -S -h -v`) change nothing
    /// and succeed; `-R` needs its input ([`super::restore::restore`]) and
    /// the sync daemons do not exist in rvs: both are refused.
    pub fn apply(&mut self, command: &Command) -> Result<(), AdmError> {
        match command {
            Command::AddService(spec) => self.add_service(spec),
            Command::EditService(spec) => self.edit_service(spec),
            Command::DeleteService(key) => {
                let before = self.services.len();
                self.services.retain(|s| s.key != *key);
                if self.services.len() == before {
                    return Err(no_such_service(key));
                }
                Ok(())
            }
            Command::AddDest(key, spec) => self.add_dest(key, spec),
            Command::EditDest(key, spec) => self.edit_dest(key, spec),
            Command::DeleteDest(key, addr) => {
                let service = self
                    .service_mut(key)
                    .ok_or_else(|| service_not_defined(key))?;
                let before = service.destinations.len();
                service.destinations.retain(|d| d.addr != *addr);
                if service.destinations.len() == before {
                    return Err(AdmError::refused(format!(
                        "No such destination: {key} -r {addr}"
                    )));
                }
                Ok(())
            }
            Command::Clear => {
                self.services.clear();
                Ok(())
            }
            Command::Zero(None) => {
                self.services.iter_mut().for_each(Service::zero);
                Ok(())
            }
            Command::Zero(Some(key)) => {
                self.service_mut(key)
                    .ok_or_else(|| no_such_service(key))?
                    .zero();
                Ok(())
            }
            Command::SetTimeouts(timeouts) => self.set_timeouts(timeouts),
            Command::List(_) | Command::Save | Command::Help | Command::Version => Ok(()),
            Command::Restore => Err(AdmError::usage(
                "-R reads its rules from standard input: use restore()",
            )),
            Command::StartDaemon(_) | Command::StopDaemon(_) => Err(AdmError::refused(
                "Operation not supported: rvs has no connection synchronisation daemon \
                 (--start-daemon, --stop-daemon)",
            )),
        }
    }

    fn add_service(&mut self, spec: &ServiceSpec) -> Result<(), AdmError> {
        spec.validate()?;
        if self.service(&spec.key).is_some() {
            return Err(AdmError::refused(format!(
                "Service already exists: {}",
                spec.key
            )));
        }
        check_engines(spec)?;
        self.services.push(Service::new(spec));
        Ok(())
    }

    fn edit_service(&mut self, spec: &ServiceSpec) -> Result<(), AdmError> {
        spec.validate()?;
        let service = self
            .service_mut(&spec.key)
            .ok_or_else(|| no_such_service(&spec.key))?;
        check_engines(spec)?;
        service.scheduler = spec.scheduler.clone();
        service.sched_flags = spec.sched_flags;
        service.persistence = spec.persistence;
        service.one_packet = spec.one_packet;
        Ok(())
    }

    fn add_dest(&mut self, key: &ServiceKey, spec: &DestSpec) -> Result<(), AdmError> {
        let spec = spec.for_service(key)?;
        let service = self
            .service_mut(key)
            .ok_or_else(|| service_not_defined(key))?;
        check_thresholds(&spec)?;
        if service.destination(spec.addr).is_some() {
            return Err(AdmError::refused(format!(
                "Destination already exists: {key} -r {}",
                spec.addr
            )));
        }
        let ip = spec.addr.ip();
        let unicast =
            !ip.is_unspecified() && !ip.is_multicast() && ip != IpAddr::V4(Ipv4Addr::BROADCAST);
        if !unicast {
            return Err(AdmError::refused(format!(
                "Invalid operation.  Possibly wrong module version, address not unicast, ...: \
                 -r {}",
                spec.addr
            )));
        }
        service.destinations.push(Destination::new(&spec));
        Ok(())
    }

    fn edit_dest(&mut self, key: &ServiceKey, spec: &DestSpec) -> Result<(), AdmError> {
        let spec = spec.for_service(key)?;
        let service = self
            .service_mut(key)
            .ok_or_else(|| service_not_defined(key))?;
        check_thresholds(&spec)?;
        let dest = service
            .destinations
            .iter_mut()
            .find(|d| d.addr == spec.addr)
            .ok_or_else(|| {
                AdmError::refused(format!("No such destination: {key} -r {}", spec.addr))
            })?;
        dest.forward = spec.forward;
        dest.weight = spec.weight;
        dest.upper_threshold = spec.upper_threshold;
        dest.lower_threshold = spec.lower_threshold;
        Ok(())
    }

    fn set_timeouts(&mut self, new: &Timeouts) -> Result<(), AdmError> {
        for value in [new.tcp, new.tcpfin, new.udp] {
            if value > MAX_TIMEOUT {
                return Err(AdmError::usage(format!(
                    "invalid timeout value `{value}' specified"
                )));
            }
        }
        // The kernel leaves a timeout given as 0 unchanged.
        let keep = |new: u32, old: u32| if new == 0 { old } else { new };
        self.timeouts = Timeouts {
            tcp: keep(new.tcp, self.timeouts.tcp),
            tcpfin: keep(new.tcpfin, self.timeouts.tcpfin),
            udp: keep(new.udp, self.timeouts.udp),
        };
        Ok(())
    }
}

/// The kernel looks the scheduler (and persistence engine) up by name.
fn check_engines(spec: &ServiceSpec) -> Result<(), AdmError> {
    if SchedulerKind::from_name(&spec.scheduler).is_none() {
        return Err(AdmError::refused(format!(
            "Scheduler or persistence engine not found: -s {}",
            spec.scheduler
        )));
    }
    if let Some(pe) = &spec.pe {
        // rvs has no persistence engines (IPVS has only "sip").
        return Err(AdmError::refused(format!(
            "Scheduler or persistence engine not found: --pe {pe}"
        )));
    }
    Ok(())
}

/// The kernel's `ERANGE` for `-y` above `-x` (0 included: `-y` needs `-x`).
fn check_thresholds(spec: &DestSpec) -> Result<(), AdmError> {
    if spec.lower_threshold > spec.upper_threshold {
        return Err(AdmError::refused(format!(
            "Numerical result out of range: -x {} -y {} (the lower threshold is above the upper)",
            spec.upper_threshold, spec.lower_threshold
        )));
    }
    Ok(())
}
