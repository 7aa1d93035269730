//! The configuration file: TOML in, a validated and typed [`Config`] out.
//!
//! ```toml
//! [dpdk]                      # optional table; every key has a default
//! lcores = "0-1"              # EAL -l; the first (lowest) lcore runs the management
//!                             # thread, the others poll ports (so at least 2)
//! memory_mb = 512             # EAL -m
//! hugepages = false           # false adds --no-huge
//! mbufs = 16383               # mbuf pool size
//! args = []                   # further EAL arguments, e.g. ["--no-shconf"]
//!
//! [[port]]
//! name = "wan"
//! vdev = "net_af_packet0,iface=veth-wan"   # or pci = "0000:03:00.0" (exactly one)
//! addresses = ["198.18.0.1/24"]            # the director's own addresses here
//! gateway = "198.18.0.254"                 # optional default next hop via this port
//! static_neighbors = [ { address = "198.18.0.7", mac = "02:00:00:00:00:07" } ]
//! mac = "02:00:00:00:00:01"                # optional, see below
//!
//! mtu = 1500                               # optional; checked by tun
//!
//! [[service]]
//! protocol = "tcp"                 # "tcp" | "udp"
//! address = "198.18.0.100:80"      # VIP:port; port 0 = all ports (needs persistence)
//! scheduler = "wlc"                # any name of `SchedulerKind::ALL` (default "wlc")
//! sched_flags = ["sh-port"]        # ipvsadm -b, for sh / mh
//! persistence = { timeout = 360, netmask = "255.255.255.255" }  # optional, -p / -M
//! one_packet = false               # UDP only, -o
//! mh_table_size = 65537            # mh only, one of sched::maglev::PRIMES
//!
//! [[service.server]]
//! address = "198.19.0.11:80"       # port optional (dr/tun: always the client's)
//! forward = "nat"                  # "nat" | "dr" | "tun"
//! weight = 1                       # 0..=65535, default 1; 0 = no new connections
//!
//! [[group]]                        # service group = IPVS firewall-mark service
//! name = "web"
//! mark = 1                         # optional, default the 1-based position
//! members = ["tcp:198.18.0.100:80", "tcp:198.18.0.100:443"]
//! scheduler = "rr"                 # and sched_flags, persistence as for services
//!
//! [[group.server]]
//! address = "198.19.0.11"          # no port: keep the client's destination port
//! forward = "nat"
//!
//! [control]                        # optional: rvsd's control API (docs/API.md)
//! socket = "/run/rvs/rvsd.sock"    # Unix socket (mode 0600), the default
//! listen = "127.0.0.1:9180"        # optional TCP listener, needs token_file
//! token_file = "/etc/rvs/token"    # bearer token for `listen`
//! ```
//!
//! `port.mac` is an rvs extension with no LVS counterpart: it overrides the
//! MAC address of the port, which matters for devices that invent a random
//! one (`net_pcap`, `net_null`) when peers or captures expect a fixed one.
//!
//! Every error names the file, the 1-based line of the offending key or value
//! and the key path, e.g.
//! `lab.toml:14: service[0].scheduler: unknown scheduler "fifo" (expected one of: rr, wrr, lc, wlc, ...)`.

use std::collections::HashMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use toml::Spanned;

use crate::addr::{Ipv4Cidr, MacAddr};
use crate::sched::{maglev, HashFlags, SchedulerKind};

/// Lcore ids must be below this (a sanity bound; EAL enforces its own
/// RTE_MAX_LCORE, usually 128).
const MAX_LCORE: u32 = 1024;

// ---------------------------------------------------------------------------
// Validated configuration
// ---------------------------------------------------------------------------

/// A complete, validated configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub dpdk: DpdkConfig,
    /// At least one port; names are unique.
    pub ports: Vec<PortConfig>,
    /// Unique by (protocol, VIP, port). May be empty.
    pub services: Vec<ServiceConfig>,
    /// Service groups (`[[group]]`, IPVS firewall-mark services): unique by
    /// name and mark; no member is also a `[[service]]` or in two groups.
    pub groups: Vec<GroupConfig>,
    /// Connection timeouts (`[timeouts]`, ipvsadm `--set`).
    pub timeouts: TimeoutsConfig,
    /// Table sizes per worker (`[limits]`).
    pub limits: LimitsConfig,
    /// Benchmark knobs (`[bench]`); off by default.
    pub bench: BenchConfig,
    /// `[control]`: where the control API listens.
    pub control: ControlConfig,
}

/// `[timeouts]`: ipvsadm's `--set tcp tcpfin udp`, in seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeoutsConfig {
    /// Established TCP connections (default 900).
    pub tcp: u32,
    /// TCP connections after a FIN (FIN_WAIT, default 120).
    pub tcpfin: u32,
    /// UDP flows (default 300).
    pub udp: u32,
}

impl Default for TimeoutsConfig {
    fn default() -> Self {
        TimeoutsConfig {
            tcp: 900,
            tcpfin: 120,
            udp: 300,
        }
    }
}

/// `[limits]`: what each worker allocates once at start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LimitsConfig {
    /// Connections per worker (57 bytes each with the index).
    pub connections: u32,
    /// Persistence templates per worker.
    pub templates: u32,
    /// ARP entries per worker.
    pub neighbors: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            connections: 1 << 20,
            templates: 1 << 18,
            neighbors: 4096,
        }
    }
}

/// `[bench]`: settings for measuring rvsd, never for production.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BenchConfig {
    /// Each worker takes at most this many packets per second from its RX
    /// queues (a token bucket), so a source that never runs dry
    /// (`net_pcap` with `infinite_rx=1`) offers a chosen load. 0 = no limit.
    pub pace_pps: u64,
    /// Each worker fills its table with this many synthetic established
    /// connections before forwarding (never matched by real traffic), so
    /// lookups run against a table of that size.
    pub prefill_connections: u32,
}

/// The control API's endpoints (`[control]`, docs/API.md).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlConfig {
    /// The Unix socket (always served; mode 0600).
    pub socket: PathBuf,
    /// An optional TCP listener; requests on it need the bearer token.
    pub listen: Option<SocketAddr>,
    /// The file holding that token; set exactly when `listen` is.
    pub token_file: Option<PathBuf>,
}

impl ControlConfig {
    pub const DEFAULT_SOCKET: &'static str = "/run/rvs/rvsd.sock";
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            socket: PathBuf::from(Self::DEFAULT_SOCKET),
            listen: None,
            token_file: None,
        }
    }
}

/// EAL and memory settings (`[dpdk]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DpdkConfig {
    /// The lcore list exactly as written (passed to EAL `-l`).
    pub lcores: String,
    /// `lcores` expanded, ascending, no duplicates, at least two entries.
    /// `lcore_ids[0]` is the EAL main lcore (the management thread); the
    /// rest are workers.
    pub lcore_ids: Vec<u32>,
    pub memory_mb: u32,
    pub hugepages: bool,
    /// mbuf pool size (at least 1).
    pub mbufs: u32,
    /// Extra EAL arguments, appended last.
    pub args: Vec<String>,
}

impl Default for DpdkConfig {
    fn default() -> Self {
        DpdkConfig {
            lcores: "0-1".to_string(),
            lcore_ids: vec![0, 1],
            memory_mb: 512,
            hugepages: false,
            mbufs: 16383,
            args: Vec::new(),
        }
    }
}

impl DpdkConfig {
    /// The full EAL argument vector, program name first:
    /// `rvsd -l LCORES -m MB [--no-huge] [--no-pci] (--vdev=DEV | -a PCI)... ARGS...`.
    /// `--no-pci` is added when no port uses `pci`; devices appear in port order.
    pub fn eal_args(&self, ports: &[PortConfig]) -> Vec<String> {
        // `lcore@cpu` places lcores on CPUs (EAL --lcores), e.g. more
        // lcores than CPUs on a small machine; a plain list is `-l`.
        let lcore_option = if self.lcores.contains('@') {
            "--lcores"
        } else {
            "-l"
        };
        let mut out: Vec<String> = vec![
            "rvsd".into(),
            lcore_option.into(),
            self.lcores.clone(),
            "-m".into(),
            self.memory_mb.to_string(),
        ];
        if !self.hugepages {
            out.push("--no-huge".into());
        }
        if !ports.iter().any(|p| matches!(p.device, PortDevice::Pci(_))) {
            out.push("--no-pci".into());
        }
        for port in ports {
            match &port.device {
                PortDevice::Vdev(v) => out.push(format!("--vdev={v}")),
                PortDevice::Pci(p) => {
                    out.push("-a".into());
                    out.push(p.clone());
                }
            }
        }
        out.extend(self.args.iter().cloned());
        out
    }

    /// The lcore running the management thread (the EAL main lcore).
    pub fn main_lcore(&self) -> u32 {
        self.lcore_ids[0]
    }

    /// The lcores that poll ports.
    pub fn worker_lcores(&self) -> &[u32] {
        &self.lcore_ids[1..]
    }
}

/// How a port's device is found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortDevice {
    /// A virtual device, as given to `--vdev` (e.g. `net_af_packet0,iface=veth0`).
    /// Its DPDK name is the part before the first comma.
    Vdev(String),
    /// A PCI address, as given to `-a` (device arguments after a comma allowed).
    Pci(String),
}

/// One `[[port]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortConfig {
    pub name: String,
    pub device: PortDevice,
    /// At least one; no address is used twice across all ports.
    pub addresses: Vec<Ipv4Cidr>,
    /// Default next hop; always inside one of `addresses`' prefixes. At most
    /// one port in a configuration has one.
    pub gateway: Option<Ipv4Addr>,
    /// Permanent ARP entries; addresses unique within the port.
    pub static_neighbors: Vec<(Ipv4Addr, MacAddr)>,
    /// Unicast MAC override (rvs extension).
    pub mac: Option<MacAddr>,
    /// Largest IP packet the port's link carries (default 1500); IPIP
    /// encapsulation checks against it.
    pub mtu: u16,
}

/// Default port MTU.
pub const DEFAULT_MTU: u16 = 1500;

/// Transport protocol of a virtual service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    /// IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
        }
    }

    /// Name as written in the configuration: `"tcp"` / `"udp"`.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "tcp" => Some(Protocol::Tcp),
            "udp" => Some(Protocol::Udp),
            _ => None,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Packet forwarding method to a real server (per server, as in IPVS).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Forward {
    Nat,
    Dr,
    Tun,
}

impl Forward {
    pub const ALL: &'static [Forward] = &[Forward::Nat, Forward::Dr, Forward::Tun];

    /// Name as written in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            Forward::Nat => "nat",
            Forward::Dr => "dr",
            Forward::Tun => "tun",
        }
    }

    /// Name as `ipvsadm -L` prints it in the "Forward" column.
    pub fn ipvsadm_name(self) -> &'static str {
        match self {
            Forward::Nat => "Masq",
            Forward::Dr => "Route",
            Forward::Tun => "Tunnel",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|f| f.name() == name)
    }
}

impl fmt::Display for Forward {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One `[[service]]` (a virtual service).
///
/// A service with no servers is valid: it accepts the configuration but
/// drops new connections (as IPVS does when no server is available).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceConfig {
    pub protocol: Protocol,
    /// VIP and port; port 0 (only with persistence) matches every port of
    /// the VIP that no other service of the protocol claims.
    pub address: SocketAddrV4,
    pub scheduler: SchedulerKind,
    /// ipvsadm `-b` (`sh-port`, `sh-fallback`, `mh-port`, `mh-fallback`).
    pub sched_flags: HashFlags,
    /// ipvsadm `-p` / `-M`.
    pub persistence: Option<Persistence>,
    /// ipvsadm `-o` (UDP only): every datagram scheduled on its own.
    pub one_packet: bool,
    /// Maglev lookup table size (`mh` only): a prime from
    /// `sched::maglev::PRIMES`, default 65537.
    pub mh_table_size: usize,
    /// Unique by address within the service.
    pub servers: Vec<ServerConfig>,
}

/// One `[[group]]`: several `protocol:VIP:port` members scheduled and
/// persisted as one service (IPVS's firewall-mark service, `-f MARK`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupConfig {
    pub name: String,
    /// 1..; default: the group's 1-based position among the groups.
    pub mark: u32,
    /// At least one; ports are not 0.
    pub members: Vec<(Protocol, SocketAddrV4)>,
    pub scheduler: SchedulerKind,
    pub sched_flags: HashFlags,
    pub persistence: Option<Persistence>,
    /// Always false for now (kept so groups and services read alike).
    pub one_packet: bool,
    pub mh_table_size: usize,
    /// Server ports are usually 0: the client's destination port is kept.
    pub servers: Vec<ServerConfig>,
}

/// Persistence (ipvsadm `-p [timeout] -M netmask`): a client's new
/// connections go to the server its earlier ones went to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Persistence {
    /// Seconds the client's template lives after its last new connection
    /// (longer while it still has connections). 1..=31536000, default 360.
    pub timeout_secs: u32,
    /// Clients are grouped by `address & netmask` (default /32).
    pub netmask: Ipv4Addr,
}

impl Persistence {
    /// ipvsadm's default `-p` timeout.
    pub const DEFAULT_TIMEOUT_SECS: u32 = 360;
}

/// One `[[service.server]]` / `[[group.server]]` (a real server).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// Port 0: keep the port the client connected to (port-0 services and
    /// groups). For dr and tun the port is always the client's.
    pub address: SocketAddrV4,
    pub forward: Forward,
    /// 0..=65535; 0 means no new connections.
    pub weight: u32,
    /// ipvsadm `-x`: above this many connections (active + inactive) the
    /// server takes no new ones (0 = no limit).
    pub upper_threshold: u32,
    /// ipvsadm `-y`: an overloaded server takes new connections again below
    /// this many (0 = below 3/4 of `upper_threshold`, as IPVS).
    pub lower_threshold: u32,
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// A configuration error, located.
///
/// Displays as `FILE:LINE: KEY: MESSAGE`; `:LINE` is left out when there is
/// no position (I/O errors, a missing `[[port]]`) and `KEY: ` when no key can
/// be named (some TOML syntax errors).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    /// 1-based.
    pub line: Option<usize>,
    /// Key path such as `service[0].server[1].weight` (indices 0-based).
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

// ---------------------------------------------------------------------------
// Entry points
// ---------------------------------------------------------------------------

/// Read and validate a configuration file. The path, as given, names the
/// file in errors.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: file.clone(),
        line: None,
        key: String::new(),
        message: format!("cannot read configuration: {e}"),
    })?;
    parse(&text, &file)
}

/// Validate configuration text; `file_name` names it in errors.
pub fn parse(text: &str, file_name: &str) -> Result<Config, ConfigError> {
    let cx = Cx {
        file: file_name,
        text,
    };
    let raw: RawConfig = toml::from_str(text).map_err(|e| cx.toml_error(&e))?;
    cx.config(raw)
}

// ---------------------------------------------------------------------------
// Raw (serde) form, with spans
// ---------------------------------------------------------------------------

// Integers are read as i64 so that range errors get our own messages.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    dpdk: Option<RawDpdk>,
    #[serde(default)]
    port: Vec<Spanned<RawPort>>,
    #[serde(default)]
    service: Vec<Spanned<RawService>>,
    #[serde(default)]
    group: Vec<Spanned<RawGroup>>,
    bench: Option<RawBench>,
    control: Option<RawControl>,
    timeouts: Option<RawTimeouts>,
    limits: Option<RawLimits>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTimeouts {
    tcp: Option<Spanned<i64>>,
    tcpfin: Option<Spanned<i64>>,
    udp: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBench {
    pace_pps: Option<Spanned<i64>>,
    prefill_connections: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    connections: Option<Spanned<i64>>,
    templates: Option<Spanned<i64>>,
    neighbors: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawControl {
    socket: Option<Spanned<String>>,
    listen: Option<Spanned<String>>,
    token_file: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDpdk {
    lcores: Option<Spanned<String>>,
    memory_mb: Option<Spanned<i64>>,
    hugepages: Option<bool>,
    mbufs: Option<Spanned<i64>>,
    args: Option<Vec<Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPort {
    name: Spanned<String>,
    vdev: Option<Spanned<String>>,
    pci: Option<Spanned<String>>,
    addresses: Spanned<Vec<Spanned<String>>>,
    gateway: Option<Spanned<String>>,
    #[serde(default)]
    static_neighbors: Vec<Spanned<RawNeighbor>>,
    mac: Option<Spanned<String>>,
    mtu: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNeighbor {
    address: Spanned<String>,
    mac: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    protocol: Spanned<String>,
    address: Spanned<String>,
    scheduler: Option<Spanned<String>>,
    sched_flags: Option<Vec<Spanned<String>>>,
    persistence: Option<Spanned<RawPersistence>>,
    one_packet: Option<Spanned<bool>>,
    mh_table_size: Option<Spanned<i64>>,
    #[serde(default)]
    server: Vec<Spanned<RawServer>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    name: Spanned<String>,
    mark: Option<Spanned<i64>>,
    members: Spanned<Vec<Spanned<String>>>,
    scheduler: Option<Spanned<String>>,
    sched_flags: Option<Vec<Spanned<String>>>,
    persistence: Option<Spanned<RawPersistence>>,
    one_packet: Option<Spanned<bool>>,
    mh_table_size: Option<Spanned<i64>>,
    #[serde(default)]
    server: Vec<Spanned<RawServer>>,
}

/// What services and groups share (serde's `flatten` would lose the spans).
struct RawServiceBody<'a> {
    scheduler: &'a Option<Spanned<String>>,
    sched_flags: &'a Option<Vec<Spanned<String>>>,
    persistence: &'a Option<Spanned<RawPersistence>>,
    one_packet: &'a Option<Spanned<bool>>,
    mh_table_size: &'a Option<Spanned<i64>>,
    server: &'a [Spanned<RawServer>],
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPersistence {
    timeout: Option<Spanned<i64>>,
    netmask: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    address: Spanned<String>,
    forward: Spanned<String>,
    weight: Option<Spanned<i64>>,
    upper_threshold: Option<Spanned<i64>>,
    lower_threshold: Option<Spanned<i64>>,
}

/// The validated common part of a service or group.
struct ServiceBody {
    scheduler: SchedulerKind,
    sched_flags: HashFlags,
    persistence: Option<Persistence>,
    one_packet: bool,
    mh_table_size: usize,
    servers: Vec<ServerConfig>,
}

/// Where a server list belongs, for the rules that depend on it.
#[derive(Clone, Copy)]
enum ServiceKind {
    /// A `[[service]]` with this port (0: all ports).
    Single(u16),
    /// A `[[group]]`: servers may keep the client's port.
    Group,
}

// ---------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------

struct Cx<'a> {
    file: &'a str,
    text: &'a str,
}

type Res<T> = Result<T, ConfigError>;

impl Cx<'_> {
    /// 1-based line of a byte offset.
    fn line_of(&self, offset: usize) -> usize {
        let offset = offset.min(self.text.len());
        1 + self.text.as_bytes()[..offset]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
    }

    fn err(
        &self,
        span: Range<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            file: self.file.to_string(),
            line: Some(self.line_of(span.start)),
            key: key.into(),
            message: message.into(),
        }
    }

    fn toml_error(&self, e: &toml::de::Error) -> ConfigError {
        // Syntax errors may span lines ("invalid table header\nexpected ...").
        let mut message = e.message().trim().replace('\n', "; ");
        if message.is_empty() {
            // toml says nothing for e.g. `key =` with no value.
            message = "TOML syntax error".to_string();
        }
        let (line, key) = match e.span() {
            Some(span) => {
                let (mut key, datetime) = key_path_at(self.text, span.start).unwrap_or_default();
                if datetime {
                    // toml hands datetimes to serde as maps.
                    message = message.replace("invalid type: map", "invalid type: datetime");
                }
                if let Some(field) = message
                    .strip_prefix("missing field `")
                    .and_then(|rest| rest.split('`').next())
                {
                    key = if key.is_empty() {
                        field.to_string()
                    } else {
                        format!("{key}.{field}")
                    };
                }
                (Some(self.line_of(span.start)), key)
            }
            None => (None, String::new()),
        };
        ConfigError {
            file: self.file.to_string(),
            line,
            key,
            message,
        }
    }

    fn config(&self, raw: RawConfig) -> Res<Config> {
        let dpdk = match raw.dpdk {
            Some(d) => self.dpdk(d)?,
            None => DpdkConfig::default(),
        };
        if raw.port.is_empty() {
            return Err(ConfigError {
                file: self.file.to_string(),
                line: None,
                key: "port".into(),
                message: "no [[port]] defined; at least one is needed".into(),
            });
        }
        let ports = self.ports(raw.port)?;
        let services = self.services(raw.service, &ports)?;
        let groups = self.groups(raw.group, &ports, &services)?;
        let mut timeouts = TimeoutsConfig::default();
        if let Some(t) = raw.timeouts {
            // The kernel keeps timeouts in jiffies in an int: about 24 days.
            const MAX: i64 = 2_000_000;
            let set = |v: Option<Spanned<i64>>, key: &str, out: &mut u32| -> Res<()> {
                if let Some(v) = v {
                    *out = self.int_in(&v, key, 1, MAX)? as u32;
                }
                Ok(())
            };
            set(t.tcp, "timeouts.tcp", &mut timeouts.tcp)?;
            set(t.tcpfin, "timeouts.tcpfin", &mut timeouts.tcpfin)?;
            set(t.udp, "timeouts.udp", &mut timeouts.udp)?;
        }
        let mut limits = LimitsConfig::default();
        if let Some(l) = raw.limits {
            let max = crate::conn::MAX_CAPACITY as i64;
            if let Some(v) = &l.connections {
                limits.connections = self.int_in(v, "limits.connections", 1, max)? as u32;
            }
            if let Some(v) = &l.templates {
                limits.templates = self.int_in(v, "limits.templates", 1, max)? as u32;
            }
            if let Some(v) = &l.neighbors {
                limits.neighbors = self.int_in(v, "limits.neighbors", 1, 1 << 20)? as u32;
            }
        }
        let mut bench = BenchConfig::default();
        if let Some(b) = raw.bench {
            if let Some(pace) = &b.pace_pps {
                bench.pace_pps = self.int_in(pace, "bench.pace_pps", 0, 1_000_000_000)? as u64;
            }
            if let Some(n) = &b.prefill_connections {
                let n = self.int_in(n, "bench.prefill_connections", 0, u32::MAX as i64)?;
                if n >= i64::from(limits.connections) {
                    return Err(self.err(
                        b.prefill_connections.as_ref().expect("set").span(),
                        "bench.prefill_connections",
                        format!(
                            "prefill_connections {n} leaves no room in limits.connections ({})",
                            limits.connections
                        ),
                    ));
                }
                bench.prefill_connections = n as u32;
            }
        }
        let control = match raw.control {
            Some(c) => self.control(c)?,
            None => ControlConfig::default(),
        };
        Ok(Config {
            dpdk,
            ports,
            services,
            groups,
            timeouts,
            limits,
            bench,
            control,
        })
    }

    fn control(&self, raw: RawControl) -> Res<ControlConfig> {
        let mut out = ControlConfig::default();
        if let Some(socket) = raw.socket {
            if socket.get_ref().is_empty() {
                return Err(self.err(
                    socket.span(),
                    "control.socket",
                    "socket path must not be empty (default \"/run/rvs/rvsd.sock\")",
                ));
            }
            out.socket = PathBuf::from(socket.into_inner());
        }
        if let Some(listen) = &raw.listen {
            let addr: SocketAddr = listen.get_ref().parse().map_err(|_| {
                self.err(
                    listen.span(),
                    "control.listen",
                    format!(
                        "invalid address {:?} (expected address:port, e.g. \"127.0.0.1:9180\")",
                        listen.get_ref()
                    ),
                )
            })?;
            out.listen = Some(addr);
        }
        match (&raw.listen, raw.token_file) {
            (Some(listen), None) => {
                return Err(self.err(
                    listen.span(),
                    "control.listen",
                    "a TCP listener needs `token_file` (the bearer token clients must send)",
                ))
            }
            (None, Some(token)) => {
                return Err(self.err(
                    token.span(),
                    "control.token_file",
                    "token_file is only used with `listen`; set both or neither",
                ))
            }
            (Some(_), Some(token)) => {
                if token.get_ref().is_empty() {
                    return Err(self.err(
                        token.span(),
                        "control.token_file",
                        "token_file must not be empty",
                    ));
                }
                out.token_file = Some(PathBuf::from(token.into_inner()));
            }
            (None, None) => {}
        }
        Ok(out)
    }

    fn dpdk(&self, raw: RawDpdk) -> Res<DpdkConfig> {
        let mut out = DpdkConfig::default();
        if let Some(lcores) = raw.lcores {
            let key = "dpdk.lcores";
            let ids =
                parse_lcores(lcores.get_ref()).map_err(|m| self.err(lcores.span(), key, m))?;
            if ids.len() < 2 {
                return Err(self.err(
                    lcores.span(),
                    key,
                    format!(
                        "lcores {:?} gives {} lcore; need at least 2 \
                         (one management, one or more workers)",
                        lcores.get_ref(),
                        ids.len()
                    ),
                ));
            }
            out.lcore_ids = ids;
            out.lcores = lcores.into_inner();
        }
        if let Some(mem) = raw.memory_mb {
            out.memory_mb = self.int_in(&mem, "dpdk.memory_mb", 1, u32::MAX as i64)? as u32;
        }
        if let Some(h) = raw.hugepages {
            out.hugepages = h;
        }
        if let Some(mbufs) = raw.mbufs {
            out.mbufs = self.int_in(&mbufs, "dpdk.mbufs", 1, u32::MAX as i64)? as u32;
        }
        if let Some(args) = raw.args {
            for (i, arg) in args.iter().enumerate() {
                let key = format!("dpdk.args[{i}]");
                let a = arg.get_ref().as_str();
                let clash =
                    if a.starts_with("-l") || a.starts_with("-c") || a.starts_with("--lcores") {
                        Some("dpdk.lcores")
                    } else if a.starts_with("-m") || a.starts_with("--socket-mem") {
                        Some("dpdk.memory_mb")
                    } else {
                        None
                    };
                if let Some(instead) = clash {
                    return Err(self.err(
                        arg.span(),
                        key,
                        format!("EAL argument {a:?} conflicts with {instead}; set that instead"),
                    ));
                }
            }
            out.args = args.into_iter().map(Spanned::into_inner).collect();
        }
        Ok(out)
    }

    /// An integer key checked against `lo..=hi`.
    fn int_in(&self, v: &Spanned<i64>, key: &str, lo: i64, hi: i64) -> Res<i64> {
        let n = *v.get_ref();
        if n < lo || n > hi {
            let what = key.rsplit('.').next().unwrap_or(key);
            let msg = if lo == 1 && hi == u32::MAX as i64 {
                format!("{what} {n} out of range (must be at least 1)")
            } else {
                format!("{what} {n} out of range ({lo}..={hi})")
            };
            return Err(self.err(v.span(), key, msg));
        }
        Ok(n)
    }

    fn ports(&self, raw: Vec<Spanned<RawPort>>) -> Res<Vec<PortConfig>> {
        let mut ports = Vec::with_capacity(raw.len());
        let mut names: HashMap<String, usize> = HashMap::new();
        let mut owners: HashMap<Ipv4Addr, (String, usize)> = HashMap::new();
        let mut gateway_port: Option<(String, usize)> = None;
        for (i, sp) in raw.into_iter().enumerate() {
            let p = format!("port[{i}]");
            let header = sp.span();
            let r = sp.into_inner();

            let name = r.name.get_ref().clone();
            let name_line = self.line_of(r.name.span().start);
            if name.is_empty() {
                return Err(self.err(
                    r.name.span(),
                    format!("{p}.name"),
                    "port name must not be empty",
                ));
            }
            if let Some(first) = names.insert(name.clone(), name_line) {
                return Err(self.err(
                    r.name.span(),
                    format!("{p}.name"),
                    format!("duplicate port name {name:?} (also used at line {first})"),
                ));
            }

            let device = match (r.vdev, r.pci) {
                (Some(v), None) => {
                    let s = v.get_ref();
                    if s.is_empty() || s.starts_with(',') || s.chars().any(char::is_whitespace) {
                        return Err(self.err(
                            v.span(),
                            format!("{p}.vdev"),
                            format!(
                                "invalid vdev {s:?} (expected e.g. \"net_af_packet0,iface=eth0\")"
                            ),
                        ));
                    }
                    PortDevice::Vdev(v.into_inner())
                }
                (None, Some(pci)) => {
                    if !valid_pci(pci.get_ref()) {
                        return Err(self.err(
                            pci.span(),
                            format!("{p}.pci"),
                            format!(
                                "invalid PCI address {:?} (expected e.g. \"0000:03:00.0\")",
                                pci.get_ref()
                            ),
                        ));
                    }
                    PortDevice::Pci(pci.into_inner())
                }
                (None, None) => {
                    return Err(self.err(
                        header,
                        p,
                        format!("port {name:?} needs a device: exactly one of `vdev` or `pci`"),
                    ))
                }
                (Some(_), Some(pci)) => {
                    return Err(self.err(
                        pci.span(),
                        format!("{p}.pci"),
                        format!("port {name:?} has both `vdev` and `pci`; give exactly one"),
                    ))
                }
            };

            let mut addresses = Vec::new();
            if r.addresses.get_ref().is_empty() {
                return Err(self.err(
                    r.addresses.span(),
                    format!("{p}.addresses"),
                    format!("port {name:?} needs at least one address (e.g. \"198.18.0.1/24\")"),
                ));
            }
            for (j, a) in r.addresses.get_ref().iter().enumerate() {
                let key = format!("{p}.addresses[{j}]");
                let cidr: Ipv4Cidr = a
                    .get_ref()
                    .parse()
                    .map_err(|e| self.err(a.span(), &key, format!("{e}")))?;
                let line = self.line_of(a.span().start);
                if let Some((other, first)) = owners.insert(cidr.addr, (name.clone(), line)) {
                    return Err(self.err(
                        a.span(),
                        key,
                        format!(
                            "address {} already assigned to port {other:?} (line {first})",
                            cidr.addr
                        ),
                    ));
                }
                addresses.push(cidr);
            }

            let gateway = match r.gateway {
                None => None,
                Some(g) => {
                    let key = format!("{p}.gateway");
                    let gw: Ipv4Addr = g.get_ref().parse().map_err(|_| {
                        self.err(
                            g.span(),
                            &key,
                            format!("invalid IPv4 address {:?}", g.get_ref()),
                        )
                    })?;
                    if !addresses.iter().any(|c| c.contains(gw)) {
                        let list: Vec<String> = addresses.iter().map(|c| c.to_string()).collect();
                        return Err(self.err(
                            g.span(),
                            key,
                            format!(
                                "gateway {gw} is not inside any of port {name:?}'s address prefixes ({})",
                                list.join(", ")
                            ),
                        ));
                    }
                    if addresses.iter().any(|c| c.addr == gw) {
                        return Err(self.err(
                            g.span(),
                            key,
                            format!("gateway {gw} is one of port {name:?}'s own addresses"),
                        ));
                    }
                    let line = self.line_of(g.span().start);
                    if let Some((other, first)) = &gateway_port {
                        return Err(self.err(
                            g.span(),
                            key,
                            format!(
                                "port {other:?} already has the default gateway (line {first}); \
                                 only one default route is supported"
                            ),
                        ));
                    }
                    gateway_port = Some((name.clone(), line));
                    Some(gw)
                }
            };

            let mut static_neighbors: Vec<(Ipv4Addr, MacAddr)> = Vec::new();
            let mut seen: HashMap<Ipv4Addr, usize> = HashMap::new();
            for (j, n) in r.static_neighbors.iter().enumerate() {
                let n = n.get_ref();
                let key = format!("{p}.static_neighbors[{j}]");
                let ip: Ipv4Addr = n.address.get_ref().parse().map_err(|_| {
                    self.err(
                        n.address.span(),
                        format!("{key}.address"),
                        format!("invalid IPv4 address {:?}", n.address.get_ref()),
                    )
                })?;
                let mac: MacAddr =
                    n.mac.get_ref().parse().map_err(|e| {
                        self.err(n.mac.span(), format!("{key}.mac"), format!("{e}"))
                    })?;
                if mac.is_multicast() || mac == MacAddr::ZERO {
                    return Err(self.err(
                        n.mac.span(),
                        format!("{key}.mac"),
                        format!("neighbour MAC {mac} is not a unicast address"),
                    ));
                }
                let line = self.line_of(n.address.span().start);
                if let Some(first) = seen.insert(ip, line) {
                    return Err(self.err(
                        n.address.span(),
                        format!("{key}.address"),
                        format!("duplicate static neighbour {ip} (also at line {first})"),
                    ));
                }
                static_neighbors.push((ip, mac));
            }

            let mac = match r.mac {
                None => None,
                Some(m) => {
                    let key = format!("{p}.mac");
                    let mac: MacAddr = m
                        .get_ref()
                        .parse()
                        .map_err(|e| self.err(m.span(), &key, format!("{e}")))?;
                    if mac.is_multicast() || mac == MacAddr::ZERO {
                        return Err(self.err(
                            m.span(),
                            key,
                            format!("port MAC {mac} is not a unicast address"),
                        ));
                    }
                    Some(mac)
                }
            };

            let mtu = match &r.mtu {
                None => DEFAULT_MTU,
                Some(m) => self.int_in(m, &format!("{p}.mtu"), 576, 9216)? as u16,
            };

            ports.push(PortConfig {
                name,
                device,
                addresses,
                gateway,
                static_neighbors,
                mac,
                mtu,
            });
        }
        Ok(ports)
    }

    fn services(
        &self,
        raw: Vec<Spanned<RawService>>,
        ports: &[PortConfig],
    ) -> Res<Vec<ServiceConfig>> {
        let mut services = Vec::with_capacity(raw.len());
        let mut seen: HashMap<(Protocol, SocketAddrV4), usize> = HashMap::new();
        for (i, sp) in raw.into_iter().enumerate() {
            let s = format!("service[{i}]");
            let r = sp.into_inner();
            let protocol = self.protocol(&r.protocol, &format!("{s}.protocol"))?;

            let key = format!("{s}.address");
            let address = self.socket_addr(&r.address, &key, "198.18.0.100:80")?;
            if address.port() == 0 && r.persistence.is_none() {
                return Err(self.err(
                    r.address.span(),
                    key,
                    "port 0 (all ports) needs persistence (add persistence = { timeout = 360 })",
                ));
            }
            let line = self.line_of(r.address.span().start);
            if let Some(first) = seen.insert((protocol, address), line) {
                return Err(self.err(
                    r.address.span(),
                    key,
                    format!(
                        "duplicate service {protocol} {address} (also defined at line {first})"
                    ),
                ));
            }
            let body = RawServiceBody {
                scheduler: &r.scheduler,
                sched_flags: &r.sched_flags,
                persistence: &r.persistence,
                one_packet: &r.one_packet,
                mh_table_size: &r.mh_table_size,
                server: &r.server,
            };
            let b = self.service_body(&s, &body, ServiceKind::Single(address.port()), ports)?;
            if b.one_packet && protocol != Protocol::Udp {
                let op = r.one_packet.as_ref().expect("one_packet was given");
                return Err(self.err(
                    op.span(),
                    format!("{s}.one_packet"),
                    "one-packet scheduling is for UDP services only",
                ));
            }
            if b.one_packet {
                // Their replies are translated back by the server's address
                // and port alone: one server in two such services would be
                // ambiguous.
                for (j, srv) in b.servers.iter().enumerate() {
                    let clash = services.iter().find(|o: &&ServiceConfig| {
                        o.one_packet
                            && o.servers.iter().any(|x| {
                                x.forward == Forward::Nat
                                    && srv.forward == Forward::Nat
                                    && x.address == srv.address
                            })
                    });
                    if let Some(other) = clash {
                        return Err(self.err(
                            r.server[j].get_ref().address.span(),
                            format!("{s}.server[{j}].address"),
                            format!(
                                "server {} is also in one-packet service {} {}; its replies \
                                 could not be told apart",
                                srv.address, other.protocol, other.address
                            ),
                        ));
                    }
                }
            }
            services.push(ServiceConfig {
                protocol,
                address,
                scheduler: b.scheduler,
                sched_flags: b.sched_flags,
                persistence: b.persistence,
                one_packet: b.one_packet,
                mh_table_size: b.mh_table_size,
                servers: b.servers,
            });
        }
        Ok(services)
    }

    fn groups(
        &self,
        raw: Vec<Spanned<RawGroup>>,
        ports: &[PortConfig],
        services: &[ServiceConfig],
    ) -> Res<Vec<GroupConfig>> {
        let mut groups: Vec<GroupConfig> = Vec::with_capacity(raw.len());
        let mut names: HashMap<String, usize> = HashMap::new();
        let mut marks: HashMap<u32, usize> = HashMap::new();
        let mut members_seen: HashMap<(Protocol, SocketAddrV4), usize> = HashMap::new();
        for (i, sp) in raw.into_iter().enumerate() {
            let g = format!("group[{i}]");
            let r = sp.into_inner();
            let name = r.name.get_ref().clone();
            if name.is_empty() {
                return Err(self.err(
                    r.name.span(),
                    format!("{g}.name"),
                    "group name must not be empty",
                ));
            }
            let line = self.line_of(r.name.span().start);
            if let Some(first) = names.insert(name.clone(), line) {
                return Err(self.err(
                    r.name.span(),
                    format!("{g}.name"),
                    format!("duplicate group name {name:?} (also used at line {first})"),
                ));
            }
            let mark = match &r.mark {
                Some(m) => self.int_in(m, &format!("{g}.mark"), 1, u32::MAX as i64)? as u32,
                None => i as u32 + 1,
            };
            let mark_span = r.mark.as_ref().map_or(r.name.span(), Spanned::span);
            if let Some(first) = marks.insert(mark, self.line_of(mark_span.start)) {
                return Err(self.err(
                    mark_span,
                    format!("{g}.mark"),
                    format!(
                        "mark {mark} is already used by another group (line {first}); \
                         set `mark` explicitly"
                    ),
                ));
            }
            if r.members.get_ref().is_empty() {
                return Err(self.err(
                    r.members.span(),
                    format!("{g}.members"),
                    "a group needs at least one member (e.g. \"tcp:198.18.0.100:80\")",
                ));
            }
            let mut members = Vec::with_capacity(r.members.get_ref().len());
            for (j, m) in r.members.get_ref().iter().enumerate() {
                let key = format!("{g}.members[{j}]");
                let member = self.member(m, &key)?;
                let (protocol, address) = member;
                if services
                    .iter()
                    .any(|s| s.protocol == protocol && s.address == address)
                {
                    return Err(self.err(
                        m.span(),
                        key,
                        format!("{protocol} {address} is also a [[service]]; it can be only one"),
                    ));
                }
                let line = self.line_of(m.span().start);
                if let Some(first) = members_seen.insert(member, line) {
                    return Err(self.err(
                        m.span(),
                        key,
                        format!("{protocol} {address} is already a group member (line {first})"),
                    ));
                }
                members.push(member);
            }
            let body = RawServiceBody {
                scheduler: &r.scheduler,
                sched_flags: &r.sched_flags,
                persistence: &r.persistence,
                one_packet: &r.one_packet,
                mh_table_size: &r.mh_table_size,
                server: &r.server,
            };
            let b = self.service_body(&g, &body, ServiceKind::Group, ports)?;
            if b.one_packet {
                let op = r.one_packet.as_ref().expect("one_packet was given");
                return Err(self.err(
                    op.span(),
                    format!("{g}.one_packet"),
                    "one-packet scheduling is supported on UDP [[service]]s, not on groups",
                ));
            }
            groups.push(GroupConfig {
                name,
                mark,
                members,
                scheduler: b.scheduler,
                sched_flags: b.sched_flags,
                persistence: b.persistence,
                one_packet: b.one_packet,
                mh_table_size: b.mh_table_size,
                servers: b.servers,
            });
        }
        Ok(groups)
    }

    /// A group member: `"tcp:198.18.0.100:80"`.
    fn member(&self, m: &Spanned<String>, key: &str) -> Res<(Protocol, SocketAddrV4)> {
        let text = m.get_ref();
        let bad = || {
            self.err(
                m.span(),
                key,
                format!(
                    "invalid member {text:?} (expected protocol:VIP:port, e.g. \"tcp:198.18.0.100:443\")"
                ),
            )
        };
        let (proto, addr) = text.split_once(':').ok_or_else(bad)?;
        let protocol = Protocol::from_name(proto).ok_or_else(bad)?;
        let address: SocketAddrV4 = addr.parse().map_err(|_| bad())?;
        let ip = *address.ip();
        if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() {
            return Err(self.err(m.span(), key, format!("{ip} is not a unicast address")));
        }
        if address.port() == 0 {
            return Err(self.err(
                m.span(),
                key,
                "a member needs a port (for all ports use a [[service]] with port 0)",
            ));
        }
        Ok((protocol, address))
    }

    fn protocol(&self, v: &Spanned<String>, key: &str) -> Res<Protocol> {
        Protocol::from_name(v.get_ref()).ok_or_else(|| {
            self.err(
                v.span(),
                key,
                format!(
                    "unknown protocol {:?} (expected \"tcp\" or \"udp\")",
                    v.get_ref()
                ),
            )
        })
    }

    /// Scheduler, flags, persistence and servers of a service or group `s`.
    fn service_body(
        &self,
        s: &str,
        r: &RawServiceBody<'_>,
        kind: ServiceKind,
        ports: &[PortConfig],
    ) -> Res<ServiceBody> {
        let scheduler = match r.scheduler {
            None => SchedulerKind::Wlc,
            Some(name) => name
                .get_ref()
                .parse()
                .map_err(|m: String| self.err(name.span(), format!("{s}.scheduler"), m))?,
        };
        let mut sched_flags = HashFlags::NONE;
        for (j, f) in r.sched_flags.iter().flatten().enumerate() {
            let key = format!("{s}.sched_flags[{j}]");
            let (owner, flag) = f.get_ref().split_once('-').unwrap_or(("", ""));
            let known = matches!(owner, "sh" | "mh") && matches!(flag, "port" | "fallback");
            if !known {
                return Err(self.err(
                    f.span(),
                    key,
                    format!(
                        "unknown scheduler flag {:?} (expected sh-port, sh-fallback, mh-port or mh-fallback)",
                        f.get_ref()
                    ),
                ));
            }
            if owner != scheduler.name() {
                return Err(self.err(
                    f.span(),
                    key,
                    format!(
                        "flag {:?} is for scheduler {owner}, not {scheduler}",
                        f.get_ref()
                    ),
                ));
            }
            match flag {
                "port" => sched_flags.port = true,
                _ => sched_flags.fallback = true,
            }
        }
        let persistence = match r.persistence {
            None => None,
            Some(p) => {
                let p = p.get_ref();
                let timeout_secs = match &p.timeout {
                    None => Persistence::DEFAULT_TIMEOUT_SECS,
                    Some(t) => {
                        self.int_in(t, &format!("{s}.persistence.timeout"), 1, 31_536_000)? as u32
                    }
                };
                let netmask = match &p.netmask {
                    None => Ipv4Addr::BROADCAST,
                    Some(m) => {
                        let key = format!("{s}.persistence.netmask");
                        let bad = || {
                            self.err(
                                m.span(),
                                &key,
                                format!(
                                    "invalid netmask {:?} (expected e.g. \"255.255.255.0\")",
                                    m.get_ref()
                                ),
                            )
                        };
                        let mask: Ipv4Addr = m.get_ref().parse().map_err(|_| bad())?;
                        let bits = u32::from(mask);
                        if bits.leading_ones() + bits.trailing_zeros() != 32 {
                            return Err(bad());
                        }
                        mask
                    }
                };
                Some(Persistence {
                    timeout_secs,
                    netmask,
                })
            }
        };
        let one_packet = r.one_packet.as_ref().is_some_and(|o| *o.get_ref());
        let mh_table_size = match r.mh_table_size {
            None => maglev::DEFAULT_SIZE,
            Some(m) => {
                let key = format!("{s}.mh_table_size");
                if scheduler != SchedulerKind::Mh {
                    return Err(self.err(
                        m.span(),
                        key,
                        format!("mh_table_size is for scheduler mh, not {scheduler}"),
                    ));
                }
                let n = *m.get_ref();
                if n < 0 || !maglev::is_allowed_size(n as usize) {
                    let list: Vec<String> = maglev::PRIMES.iter().map(|p| p.to_string()).collect();
                    return Err(self.err(
                        m.span(),
                        key,
                        format!("mh_table_size {n} is not one of {}", list.join(", ")),
                    ));
                }
                n as usize
            }
        };

        let has_gateway = ports.iter().any(|p| p.gateway.is_some());
        let on_link = |ip: Ipv4Addr| {
            ports
                .iter()
                .any(|p| p.addresses.iter().any(|c| c.contains(ip)))
        };
        let mut servers = Vec::with_capacity(r.server.len());
        let mut addrs: HashMap<SocketAddrV4, usize> = HashMap::new();
        for (j, srv) in r.server.iter().enumerate() {
            let srv = srv.get_ref();
            let k = format!("{s}.server[{j}]");
            let key = format!("{k}.address");

            let fwd = srv.forward.get_ref();
            let forward = Forward::from_name(fwd).ok_or_else(|| {
                self.err(
                    srv.forward.span(),
                    format!("{k}.forward"),
                    format!("unknown forwarding method {fwd:?} (expected one of: nat, dr, tun)"),
                )
            })?;

            // The port may be left out: the service's port (0 = the client's).
            let text = srv.address.get_ref();
            let with_port = if text.contains(':') {
                text.clone()
            } else {
                let port = match kind {
                    ServiceKind::Single(p) => p,
                    ServiceKind::Group => 0,
                };
                format!("{text}:{port}")
            };
            let spanned = Spanned::new(srv.address.span(), with_port);
            let address = self.socket_addr(&spanned, &key, "198.19.0.11:80")?;
            let service_port = match kind {
                ServiceKind::Single(p) => p,
                ServiceKind::Group => 0,
            };
            if address.port() == 0 && service_port != 0 && text.contains(':') {
                return Err(self.err(
                    srv.address.span(),
                    key,
                    format!("server {address}: port 0 is not allowed (omit the port to use the service's)"),
                ));
            }
            if forward != Forward::Nat && address.port() != service_port && address.port() != 0 {
                return Err(self.err(
                    srv.address.span(),
                    key,
                    format!(
                        "server {address}: {forward} cannot change the port (the server sees \
                         the client's destination port); omit the port"
                    ),
                ));
            }
            let address = if forward != Forward::Nat {
                SocketAddrV4::new(*address.ip(), service_port)
            } else {
                address
            };
            let line = self.line_of(srv.address.span().start);
            if let Some(first) = addrs.insert(address, line) {
                return Err(self.err(
                    srv.address.span(),
                    key,
                    format!("duplicate server {address} in this service (also at line {first})"),
                ));
            }
            let ip = *address.ip();
            if forward == Forward::Dr && !on_link(ip) {
                return Err(self.err(
                    srv.address.span(),
                    key,
                    format!(
                        "server {ip}: dr needs the server on a directly attached segment \
                         (inside a port's address prefix)"
                    ),
                ));
            }
            if !has_gateway && !on_link(ip) {
                return Err(self.err(
                    srv.address.span(),
                    key,
                    format!(
                        "server {ip} is unreachable: not inside any port's address prefix \
                         and no port has a gateway"
                    ),
                ));
            }
            let weight = match &srv.weight {
                None => 1,
                Some(w) => self.int_in(w, &format!("{k}.weight"), 0, 65535)? as u32,
            };
            let threshold = |v: &Option<Spanned<i64>>, key: &str| -> Res<u32> {
                match v {
                    None => Ok(0),
                    Some(t) => {
                        Ok(self.int_in(t, &format!("{k}.{key}"), 0, u32::MAX as i64)? as u32)
                    }
                }
            };
            let upper_threshold = threshold(&srv.upper_threshold, "upper_threshold")?;
            let lower_threshold = threshold(&srv.lower_threshold, "lower_threshold")?;
            if upper_threshold != 0 && lower_threshold > upper_threshold {
                let span = srv.lower_threshold.as_ref().expect("set").span();
                return Err(self.err(
                    span,
                    format!("{k}.lower_threshold"),
                    format!(
                        "lower_threshold {lower_threshold} is above upper_threshold {upper_threshold}"
                    ),
                ));
            }
            servers.push(ServerConfig {
                address,
                forward,
                weight,
                upper_threshold,
                lower_threshold,
            });
        }
        Ok(ServiceBody {
            scheduler,
            sched_flags,
            persistence,
            one_packet,
            mh_table_size,
            servers,
        })
    }

    /// `a.b.c.d:port`, unicast.
    fn socket_addr(&self, v: &Spanned<String>, key: &str, example: &str) -> Res<SocketAddrV4> {
        let addr: SocketAddrV4 = v.get_ref().parse().map_err(|_| {
            self.err(
                v.span(),
                key,
                format!(
                    "invalid address {:?} (expected IPv4 address:port, e.g. {example})",
                    v.get_ref()
                ),
            )
        })?;
        let ip = *addr.ip();
        if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() {
            return Err(self.err(v.span(), key, format!("{ip} is not a unicast address")));
        }
        Ok(addr)
    }
}

/// Expand an EAL `-l` list: `"0-1"`, `"0,2,4"`, `"1-3,5"`. Ascending.
fn parse_lcores(s: &str) -> Result<Vec<u32>, String> {
    let bad = || {
        format!(
            "invalid lcore list {s:?} (expected e.g. \"0-1\", \"0,2,4\", \"1-3,5\" \
             or with CPUs \"0@0,1@0,2@1\")"
        )
    };
    let num = |t: &str| -> Result<u32, String> {
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let n: u32 = t.parse().map_err(|_| bad())?;
        if n >= MAX_LCORE {
            return Err(format!(
                "lcore {n} out of range (at most {})",
                MAX_LCORE - 1
            ));
        }
        Ok(n)
    };
    let mut taken = vec![false; MAX_LCORE as usize];
    let mut ids = Vec::new();
    for part in s.split(',') {
        // `LCORES@CPU`: the CPU must be a number; EAL checks it exists.
        let part = match part.split_once('@') {
            Some((ids, cpu)) => {
                if cpu.is_empty() || !cpu.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad());
                }
                ids
            }
            None => part,
        };
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => {
                let n = num(part)?;
                (n, n)
            }
        };
        if lo > hi {
            return Err(format!(
                "invalid lcore range {part:?} in {s:?} (start above end)"
            ));
        }
        for id in lo..=hi {
            if std::mem::replace(&mut taken[id as usize], true) {
                return Err(format!("lcore {id} listed twice in {s:?}"));
            }
            ids.push(id);
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

/// `[DDDD:]BB:DD.F`, optionally followed by `,devargs`.
fn valid_pci(s: &str) -> bool {
    let addr = s.split(',').next().unwrap_or("");
    let hex = |t: &str, n: usize| t.len() == n && t.bytes().all(|b| b.is_ascii_hexdigit());
    let Some((rest, func)) = addr.rsplit_once('.') else {
        return false;
    };
    if !(func.len() == 1 && matches!(func.as_bytes()[0], b'0'..=b'7')) {
        return false;
    }
    let parts: Vec<&str> = rest.split(':').collect();
    match parts.as_slice() {
        [bus, dev] => hex(bus, 2) && hex(dev, 2),
        [dom, bus, dev] => hex(dom, 4) && hex(bus, 2) && hex(dev, 2),
        _ => false,
    }
}

// ---------------------------------------------------------------------------
// Key paths for serde errors
// ---------------------------------------------------------------------------

// serde/toml errors carry a byte span but no key path. To name the key we
// re-read the document into a span tree (keys and values with their spans)
// and pick the innermost key or value covering the error position.
//
// `toml::Spanned` cannot be used for the tree: implicit tables (`a.b = 1`)
// have no span and datetimes present unspanned keys, and `Spanned` fails on
// both. So the tree speaks the `Spanned` protocol itself: it asks for a
// struct with Spanned's (private) name and fields, which the deserializer
// answers with a start/end/value map when it has a span and with the plain
// value otherwise. The name and fields are learned from `Spanned` itself
// (`spanned_protocol`), not copied.

/// Spanned's struct name and field names (start, end, value).
fn spanned_protocol() -> (&'static str, &'static [&'static str]) {
    use std::cell::Cell;
    use std::sync::OnceLock;
    type Magic = (&'static str, &'static [&'static str]);

    thread_local!(static SEEN: Cell<Option<Magic>> = const { Cell::new(None) });
    struct Probe;
    impl<'de> Deserializer<'de> for Probe {
        type Error = de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("probe"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            name: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            SEEN.with(|s| s.set(Some((name, fields))));
            Err(de::Error::custom("probe"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }

    static MAGIC: OnceLock<Magic> = OnceLock::new();
    *MAGIC.get_or_init(|| {
        let _ = Spanned::<()>::deserialize(Probe);
        match SEEN.with(Cell::take) {
            Some((name, fields)) if fields.len() == 3 => (name, fields),
            // Unknown protocol: nothing will match and keys go unnamed.
            _ => ("", &[]),
        }
    })
}

/// A key, with its span when the deserializer provides one.
struct Key {
    span: Option<Range<usize>>,
    name: String,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Key, E> {
                Ok(Key {
                    span: None,
                    name: s.to_string(),
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Key, A::Error> {
                let (_, f) = spanned_protocol();
                let (mut start, mut end, mut name) = (None, None, String::new());
                while let Some(k) = map.next_key::<String>()? {
                    match f.iter().position(|x| *x == k) {
                        Some(0) => start = Some(map.next_value::<usize>()?),
                        Some(1) => end = Some(map.next_value::<usize>()?),
                        Some(_) => name = map.next_value::<String>()?,
                        None => {
                            map.next_value::<de::IgnoredAny>()?;
                        }
                    }
                }
                let span = start.zip(end).map(|(s, e)| s..e);
                Ok(Key { span, name })
            }
        }
        let (name, fields) = spanned_protocol();
        d.deserialize_struct(name, fields, KeyVisitor)
    }
}

/// A value with its span when known.
struct SNode {
    span: Option<Range<usize>>,
    node: Node,
}

enum Node {
    Table(Vec<(Key, SNode)>),
    Array(Vec<SNode>),
    Datetime,
    Leaf,
}

impl<'de> Deserialize<'de> for SNode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (name, fields) = spanned_protocol();
        d.deserialize_struct(name, fields, NodeVisitor)
    }
}

/// A value read without asking for its span.
struct Unspanned(SNode);

impl<'de> Deserialize<'de> for Unspanned {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor).map(Unspanned)
    }
}

/// Reads any value; a start/end/value map (the Spanned protocol) becomes
/// the span of the value inside it.
struct NodeVisitor;

impl NodeVisitor {
    fn plain<E>(node: Node) -> Result<SNode, E> {
        Ok(SNode { span: None, node })
    }
}

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = SNode;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any TOML value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<SNode, E> {
        Self::plain(Node::Leaf)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<SNode, E> {
        Self::plain(Node::Leaf)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<SNode, E> {
        Self::plain(Node::Leaf)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<SNode, E> {
        Self::plain(Node::Leaf)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<SNode, E> {
        Self::plain(Node::Leaf)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<SNode, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<SNode>()? {
            items.push(item);
        }
        Self::plain(Node::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SNode, A::Error> {
        let (_, f) = spanned_protocol();
        let Some(first) = map.next_key::<Key>()? else {
            return Self::plain(Node::Table(Vec::new()));
        };
        if first.span.is_some() {
            // An ordinary table: its keys have spans.
            let mut entries = vec![(first, map.next_value::<SNode>()?)];
            while let Some(key) = map.next_key::<Key>()? {
                let value = map.next_value::<SNode>()?;
                entries.push((key, value));
            }
            return Self::plain(Node::Table(entries));
        }
        if f.first() != Some(&first.name.as_str()) {
            // toml presents a datetime as a map with one unspanned key.
            map.next_value::<de::IgnoredAny>()?;
            while map
                .next_entry::<de::IgnoredAny, de::IgnoredAny>()?
                .is_some()
            {}
            return Self::plain(Node::Datetime);
        }
        // The Spanned protocol: start, end, value.
        let start = map.next_value::<usize>()?;
        let (mut end, mut inner) = (start, None);
        while let Some(key) = map.next_key::<Key>()? {
            if f.get(1) == Some(&key.name.as_str()) {
                end = map.next_value::<usize>()?;
            } else {
                // Not SNode again: the deserializer would answer with
                // another span map, forever.
                inner = Some(map.next_value::<Unspanned>()?.0);
            }
        }
        Ok(SNode {
            span: Some(start..end),
            node: inner.map_or(Node::Leaf, |n| n.node),
        })
    }
}

/// (key path, span, the value there is a datetime)
type SpanEntry = (String, Range<usize>, bool);

fn collect_spans(node: &Node, path: &str, out: &mut Vec<SpanEntry>) {
    fn value(p: &str, v: &SNode, out: &mut Vec<SpanEntry>) {
        if let Some(span) = &v.span {
            out.push((
                p.to_string(),
                span.clone(),
                matches!(v.node, Node::Datetime),
            ));
        }
        collect_spans(&v.node, p, out);
    }
    match node {
        Node::Leaf | Node::Datetime => {}
        Node::Table(entries) => {
            for (k, v) in entries {
                let p = if path.is_empty() {
                    k.name.clone()
                } else {
                    format!("{path}.{}", k.name)
                };
                if let Some(span) = &k.span {
                    out.push((p.clone(), span.clone(), false));
                }
                value(&p, v, out);
            }
        }
        Node::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                value(&format!("{path}[{i}]"), v, out);
            }
        }
    }
}

/// The key path of the innermost key or value covering `offset`, and
/// whether that is a datetime value.
fn key_path_at(text: &str, offset: usize) -> Option<(String, bool)> {
    let root: SNode = toml::from_str(text).ok()?;
    let mut spans = Vec::new();
    collect_spans(&root.node, "", &mut spans);
    let covers = |r: &Range<usize>| r.start <= offset && (offset < r.end || r.start == r.end);
    spans
        .into_iter()
        .enumerate()
        .filter(|(_, (_, r, _))| covers(r))
        // Smallest span wins; on a tie the deeper (later) entry.
        .min_by_key(|(i, (_, r, _))| (r.end - r.start, usize::MAX - i))
        .map(|(_, (p, _, dt))| (p, dt))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The schema example (also tests/fixtures/config/full.toml).
    const FULL: &str = r#"[dpdk]
lcores = "0-1"
memory_mb = 512
hugepages = false
mbufs = 16383
args = []

[[port]]
name = "wan"
vdev = "net_af_packet0,iface=veth-wan"
addresses = ["198.18.0.1/24"]
gateway = "198.18.0.254"
static_neighbors = [ { address = "198.18.0.7", mac = "02:00:00:00:00:07" } ]
mac = "02:00:00:00:00:01"

[[service]]
protocol = "tcp"
address = "198.18.0.100:80"
scheduler = "wlc"

[[service.server]]
address = "198.19.0.11:80"
forward = "nat"
weight = 1
"#;

    /// Two ports, lines 1-9; whatever follows starts on line 10.
    const PORTS: &str = r#"[[port]]
name = "wan"
vdev = "net_null0"
addresses = ["198.18.0.1/24"]

[[port]]
name = "lan"
vdev = "net_null1"
addresses = ["198.19.0.1/24"]
"#;

    /// PORTS plus one service (lines 10-12, then `service_extra`) with one
    /// server: without `service_extra`, `[[service.server]]` is line 13, its
    /// address 14, forward 15, and `server_extra` starts on line 16.
    fn service(service_extra: &str, server_extra: &str) -> String {
        format!(
            "{PORTS}[[service]]\nprotocol = \"tcp\"\naddress = \"198.18.0.100:80\"\n{service_extra}\
             [[service.server]]\naddress = \"198.19.0.11:80\"\nforward = \"nat\"\n{server_extra}"
        )
    }

    fn sa(s: &str) -> SocketAddrV4 {
        s.parse().unwrap()
    }

    fn ok(text: &str) -> Config {
        parse(text, "t.toml").unwrap_or_else(|e| panic!("rejected: {e}\n{text}"))
    }

    /// Parse must fail at `line` on `key`, and the message must contain `needle`.
    #[track_caller]
    fn expect_err(text: &str, line: usize, key: &str, needle: &str) -> ConfigError {
        let e = match parse(text, "t.toml") {
            Ok(c) => panic!("accepted: {c:?}\n{text}"),
            Err(e) => e,
        };
        assert_eq!(e.file, "t.toml");
        assert_eq!((e.line, e.key.as_str()), (Some(line), key), "{e}");
        assert!(e.message.contains(needle), "{e:?} lacks {needle:?}");
        e
    }

    #[test]
    fn full_example() {
        let c = ok(FULL);
        let want = Config {
            dpdk: DpdkConfig {
                lcores: "0-1".into(),
                lcore_ids: vec![0, 1],
                memory_mb: 512,
                hugepages: false,
                mbufs: 16383,
                args: vec![],
            },
            ports: vec![PortConfig {
                name: "wan".into(),
                device: PortDevice::Vdev("net_af_packet0,iface=veth-wan".into()),
                addresses: vec![Ipv4Cidr::new(Ipv4Addr::new(198, 18, 0, 1), 24).unwrap()],
                gateway: Some(Ipv4Addr::new(198, 18, 0, 254)),
                static_neighbors: vec![(Ipv4Addr::new(198, 18, 0, 7), MacAddr([2, 0, 0, 0, 0, 7]))],
                mac: Some(MacAddr([2, 0, 0, 0, 0, 1])),
                mtu: 1500,
            }],
            services: vec![ServiceConfig {
                protocol: Protocol::Tcp,
                address: sa("198.18.0.100:80"),
                scheduler: SchedulerKind::Wlc,
                sched_flags: HashFlags::NONE,
                persistence: None,
                one_packet: false,
                mh_table_size: maglev::DEFAULT_SIZE,
                servers: vec![ServerConfig {
                    address: sa("198.19.0.11:80"),
                    forward: Forward::Nat,
                    weight: 1,
                    upper_threshold: 0,
                    lower_threshold: 0,
                }],
            }],
            groups: vec![],
            timeouts: TimeoutsConfig::default(),
            limits: LimitsConfig::default(),
            bench: BenchConfig::default(),
            control: ControlConfig::default(),
        };
        assert_eq!(c, want);
        assert_eq!(c.dpdk.main_lcore(), 0);
        assert_eq!(c.dpdk.worker_lcores(), &[1]);
    }

    #[test]
    fn defaults() {
        let c = ok(&format!(
            "{PORTS}[[service]]\nprotocol = \"udp\"\naddress = \"198.18.0.100:53\"\n\
             [[service.server]]\naddress = \"198.19.0.11:53\"\nforward = \"nat\"\n"
        ));
        assert_eq!(c.dpdk, DpdkConfig::default());
        assert_eq!(c.dpdk.lcores, "0-1");
        assert_eq!(c.dpdk.lcore_ids, [0, 1]);
        assert_eq!(
            (c.dpdk.memory_mb, c.dpdk.hugepages, c.dpdk.mbufs),
            (512, false, 16383)
        );
        assert!(c.dpdk.args.is_empty());
        let p = &c.ports[1];
        assert_eq!(p.name, "lan");
        assert_eq!((p.gateway, p.mac), (None, None));
        assert!(p.static_neighbors.is_empty());
        let s = &c.services[0];
        assert_eq!(
            (s.protocol, s.scheduler),
            (Protocol::Udp, SchedulerKind::Wlc)
        );
        assert_eq!(s.protocol.number(), 17);
        assert_eq!(s.servers[0].weight, 1);
    }

    #[test]
    fn enum_names() {
        assert_eq!((Protocol::Tcp.number(), Protocol::Tcp.name()), (6, "tcp"));
        assert_eq!((Protocol::Udp.number(), Protocol::Udp.name()), (17, "udp"));
        let names: Vec<_> = Forward::ALL
            .iter()
            .map(|f| (f.name(), f.ipvsadm_name()))
            .collect();
        assert_eq!(names, [("nat", "Masq"), ("dr", "Route"), ("tun", "Tunnel")]);
        assert_eq!(Forward::from_name("tun"), Some(Forward::Tun));
        assert_eq!(Protocol::from_name("TCP"), None);
    }

    #[test]
    fn all_schedulers_and_weights() {
        for kind in SchedulerKind::ALL {
            let c = ok(&service(
                &format!("scheduler = \"{}\"\n", kind.name()),
                "weight = 0\n",
            ));
            assert_eq!(c.services[0].scheduler, *kind);
            assert_eq!(c.services[0].servers[0].weight, 0);
        }
        let c = ok(&service("", "weight = 65535\n"));
        assert_eq!(c.services[0].servers[0].weight, 65535);
    }

    #[test]
    fn service_without_servers_is_allowed() {
        let c = ok(&format!(
            "{PORTS}[[service]]\nprotocol = \"tcp\"\naddress = \"198.18.0.100:443\"\n"
        ));
        assert!(c.services[0].servers.is_empty());
        // No services at all is fine too.
        assert!(ok(PORTS).services.is_empty());
    }

    #[test]
    fn eal_args_vdev() {
        let c = ok(PORTS);
        assert_eq!(
            c.dpdk.eal_args(&c.ports),
            [
                "rvsd",
                "-l",
                "0-1",
                "-m",
                "512",
                "--no-huge",
                "--no-pci",
                "--vdev=net_null0",
                "--vdev=net_null1",
            ]
        );
        let placed = ok(&format!("[dpdk]\nlcores = \"0@0,1@0,2@1\"\n{PORTS}"));
        assert_eq!(placed.dpdk.worker_lcores(), &[1, 2]);
        assert_eq!(
            placed.dpdk.eal_args(&placed.ports)[1..3],
            ["--lcores", "0@0,1@0,2@1"]
        );
    }

    #[test]
    fn eal_args_hugepages_pci() {
        let c = ok(r#"
[dpdk]
lcores = "1-3,5"
memory_mb = 2048
hugepages = true
mbufs = 65535
args = ["--no-shconf", "--file-prefix=rvs"]

[[port]]
name = "wan"
pci = "0000:03:00.0"
addresses = ["198.18.0.1/24"]

[[port]]
name = "lan"
pci = "03:00.1,rxq_pkt_pad_en=1"
addresses = ["198.19.0.1/24"]

[[port]]
name = "tap"
vdev = "net_tap0,iface=rvs0"
addresses = ["10.0.0.1/8"]
"#);
        assert_eq!(c.dpdk.lcore_ids, [1, 2, 3, 5]);
        assert_eq!(c.dpdk.main_lcore(), 1);
        assert_eq!(c.dpdk.worker_lcores(), &[2, 3, 5]);
        assert_eq!(
            c.ports[1].device,
            PortDevice::Pci("03:00.1,rxq_pkt_pad_en=1".into())
        );
        assert_eq!(
            c.dpdk.eal_args(&c.ports),
            [
                "rvsd",
                "-l",
                "1-3,5",
                "-m",
                "2048",
                "-a",
                "0000:03:00.0",
                "-a",
                "03:00.1,rxq_pkt_pad_en=1",
                "--vdev=net_tap0,iface=rvs0",
                "--no-shconf",
                "--file-prefix=rvs",
            ]
        );
    }

    #[test]
    fn lcore_lists() {
        assert_eq!(parse_lcores("0-1").unwrap(), [0, 1]);
        assert_eq!(parse_lcores("0,2,4").unwrap(), [0, 2, 4]);
        assert_eq!(parse_lcores("1-3,5").unwrap(), [1, 2, 3, 5]);
        assert_eq!(parse_lcores("7,3").unwrap(), [3, 7]);
        assert_eq!(parse_lcores("4-4,0").unwrap(), [0, 4]);
        // Placed on CPUs (EAL --lcores): more lcores than CPUs.
        assert_eq!(parse_lcores("0@0,1@0,2@1").unwrap(), [0, 1, 2]);
        assert_eq!(parse_lcores("0-1@0,2@1").unwrap(), [0, 1, 2]);
        for bad in [
            "", "0-", "-1", "a", "0,,1", "0 - 1", " 0,1", "1-0", "0-1-2", "0,1,", "(0,1)@0", "0@",
            "0@x", "0@1@2",
        ] {
            assert!(parse_lcores(bad).is_err(), "{bad:?}");
        }
        assert!(parse_lcores("0-2,1")
            .unwrap_err()
            .contains("lcore 1 listed twice"));
        assert!(parse_lcores("0,5000")
            .unwrap_err()
            .contains("lcore 5000 out of range"));
        assert!(parse_lcores("0-99999999999").is_err());
    }

    #[test]
    fn bad_lcores() {
        let e = expect_err(
            &format!("[dpdk]\nmemory_mb = 64\nlcores = \"0-\"\n{PORTS}"),
            3,
            "dpdk.lcores",
            "invalid lcore list \"0-\"",
        );
        assert_eq!(
            e.to_string(),
            r#"t.toml:3: dpdk.lcores: invalid lcore list "0-" (expected e.g. "0-1", "0,2,4", "1-3,5" or with CPUs "0@0,1@0,2@1")"#
        );
        expect_err(
            &format!("[dpdk]\nlcores = \"2-1\"\n{PORTS}"),
            2,
            "dpdk.lcores",
            "start above end",
        );
        expect_err(
            &format!("[dpdk]\nlcores = \"0,0\"\n{PORTS}"),
            2,
            "dpdk.lcores",
            "listed twice",
        );
    }

    #[test]
    fn too_few_lcores() {
        expect_err(
            &format!("[dpdk]\nlcores = \"3\"\n{PORTS}"),
            2,
            "dpdk.lcores",
            "lcores \"3\" gives 1 lcore; need at least 2 (one management, one or more workers)",
        );
    }

    #[test]
    fn mbufs_and_memory_range() {
        expect_err(
            &format!("[dpdk]\nmbufs = 0\n{PORTS}"),
            2,
            "dpdk.mbufs",
            "mbufs 0 out of range",
        );
        expect_err(
            &format!("[dpdk]\n\nmemory_mb = -5\n{PORTS}"),
            3,
            "dpdk.memory_mb",
            "memory_mb -5 out of range",
        );
        expect_err(
            &format!("[dpdk]\nmbufs = 4294967296\n{PORTS}"),
            2,
            "dpdk.mbufs",
            "4294967296",
        );
    }

    #[test]
    fn conflicting_eal_args() {
        expect_err(
            &format!("[dpdk]\nargs = [\"--no-shconf\",\n  \"-l0-3\"]\n{PORTS}"),
            3,
            "dpdk.args[1]",
            "EAL argument \"-l0-3\" conflicts with dpdk.lcores",
        );
        expect_err(
            &format!("[dpdk]\nargs = [\"--socket-mem=512\"]\n{PORTS}"),
            2,
            "dpdk.args[0]",
            "conflicts with dpdk.memory_mb",
        );
    }

    #[test]
    fn syntax_error() {
        let e = parse(
            "[[port]]\nname = \"wan\"\nvdev = \"x\naddresses = []\n",
            "lab.toml",
        )
        .unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (Some(3), ""), "{e}");
        assert!(!e.message.contains('\n'));
        assert!(e.to_string().starts_with("lab.toml:3: "), "{e}");
        let e = parse("a =", "t.toml").unwrap_err();
        assert_eq!((e.line, e.message.as_str()), (Some(1), "TOML syntax error"));
        let e = parse("[dpdk\nlcores = \"0-1\"\n", "lab.toml").unwrap_err();
        assert_eq!(e.line, Some(1), "{e}");
        assert!(e.message.contains("invalid table header"), "{e}");
        // A key defined twice is a TOML error too.
        let e = parse(&format!("{PORTS}name = \"again\"\n"), "t.toml").unwrap_err();
        assert_eq!(e.line, Some(10), "{e}");
    }

    #[test]
    fn unknown_keys() {
        expect_err(
            &format!("\nfoo = 1\n{PORTS}"),
            2,
            "foo",
            "unknown field `foo`",
        );
        // After a table header a key belongs to that table.
        expect_err(
            &format!("{PORTS}\nfoo = 1\n"),
            11,
            "port[1].foo",
            "unknown field `foo`",
        );
        expect_err(
            &format!("{PORTS}[timeouts]\ntcp = 900\nfin = 3\n"),
            12,
            "timeouts.fin",
            "unknown field `fin`",
        );
        expect_err(
            &format!("{PORTS}[timeouts]\nudp = 0\n"),
            11,
            "timeouts.udp",
            "udp 0 out of range (1..=2000000)",
        );
        let c = ok(&format!("{PORTS}[timeouts]\ntcp = 60\n"));
        assert_eq!(
            c.timeouts,
            TimeoutsConfig {
                tcp: 60,
                tcpfin: 120,
                udp: 300
            }
        );
        expect_err(
            &format!("[dpdk]\nlcores = \"0-1\"\nmemory = 64\n{PORTS}"),
            3,
            "dpdk.memory",
            "unknown field `memory`",
        );
        expect_err(
            &format!("{PORTS}iface = \"eth0\"\n"),
            10,
            "port[1].iface",
            "unknown field `iface`",
        );
        expect_err(
            &format!("{PORTS}static_neighbors = [\n  {{ address = \"198.19.0.5\", mac = \"02:00:00:00:00:05\", ttl = 5 }},\n]\n"),
            11,
            "port[1].static_neighbors[0].ttl",
            "unknown field `ttl`",
        );
        expect_err(
            &service("persistent = 300\n", ""),
            13,
            "service[0].persistent",
            "unknown field `persistent`",
        );
        expect_err(
            &service("", "weight = 1\nmode = \"nat\"\n"),
            17,
            "service[0].server[0].mode",
            "unknown field `mode`",
        );
        // Dotted keys, inline tables and sub-tables are located too.
        expect_err(
            &format!("dpdk.lcores = \"0-1\"\ndpdk.zz = 1\n{PORTS}"),
            2,
            "dpdk.zz",
            "unknown field `zz`",
        );
        expect_err(
            &format!("[dpdk]\na.b.c = 1\n{PORTS}"),
            2,
            "dpdk.a",
            "unknown field `a`",
        );
        expect_err(
            &format!("{PORTS}[port.extra]\nx = 1\n"),
            10,
            "port[1].extra",
            "unknown field `extra`",
        );
        expect_err(
            "port = [\n  { name = \"a\", vdev = \"x\", addresses = [\"10.0.0.1/8\"] },\n  { name = \"b\", vdev = \"y\", addresses = [\"10.0.0.2/8\"], up = true },\n]\n",
            3,
            "port[1].up",
            "unknown field `up`",
        );
        let e = expect_err(
            &format!("{PORTS}[[services]]\n"),
            10,
            "services",
            "unknown field `services`",
        );
        assert!(
            e.message
                .contains("expected one of `dpdk`, `port`, `service`"),
            "{e}"
        );
    }

    #[test]
    fn wrong_types() {
        expect_err(
            &format!("[dpdk]\nmemory_mb = \"512\"\n{PORTS}"),
            2,
            "dpdk.memory_mb",
            "invalid type: string \"512\"",
        );
        expect_err(
            &format!("[dpdk]\nhugepages = 1\n{PORTS}"),
            2,
            "dpdk.hugepages",
            "invalid type: integer `1`",
        );
        expect_err(
            &format!("[dpdk]\nargs = \"--no-shconf\"\n{PORTS}"),
            2,
            "dpdk.args",
            "expected a sequence",
        );
        expect_err(
            &format!("{PORTS}\n[dpdk]\nlcores = 0\n"),
            12,
            "dpdk.lcores",
            "invalid type: integer `0`",
        );
        expect_err(
            "[[port]]\nname = \"wan\"\nvdev = \"net_null0\"\naddresses = \"198.18.0.1/24\"\n",
            4,
            "port[0].addresses",
            "expected a sequence",
        );
        expect_err(
            &service("", "weight = \"1\"\n"),
            16,
            "service[0].server[0].weight",
            "invalid type: string \"1\"",
        );
        expect_err(
            &service("", "weight = 1.5\n"),
            16,
            "service[0].server[0].weight",
            "invalid type: floating point `1.5`",
        );
        expect_err("port = 5\n", 1, "port", "expected a sequence");
        expect_err(
            &format!("[dpdk]\nlcores = 1979-05-27T07:32:00Z\n{PORTS}"),
            2,
            "dpdk.lcores",
            "invalid type: datetime, expected a string",
        );
    }

    #[test]
    fn spanned_protocol_is_known() {
        let (name, fields) = spanned_protocol();
        assert!(!name.is_empty());
        assert_eq!(fields.len(), 3);
    }

    #[test]
    fn missing_keys() {
        expect_err(
            "[[port]]\nvdev = \"net_null0\"\naddresses = []\n",
            1,
            "port[0].name",
            "missing field `name`",
        );
        expect_err(
            "[[port]]\nname = \"a\"\nvdev = \"net_null0\"\n",
            1,
            "port[0].addresses",
            "missing field `addresses`",
        );
        expect_err(
            &format!("{PORTS}[[service]]\naddress = \"198.18.0.100:80\"\n"),
            10,
            "service[0].protocol",
            "missing field `protocol`",
        );
        expect_err(
            &format!("{PORTS}[[service]]\nprotocol = \"tcp\"\n[[service.server]]\naddress = \"198.19.0.11:80\"\n"),
            12,
            "service[0].server[0].forward",
            "missing field `forward`",
        );
        expect_err(
            &format!("{PORTS}static_neighbors = [{{ address = \"198.19.0.5\" }}]\n"),
            10,
            "port[1].static_neighbors[0].mac",
            "missing field `mac`",
        );
    }

    #[test]
    fn no_ports() {
        let e = parse("[dpdk]\nlcores = \"0-1\"\n", "lab.toml").unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (None, "port"));
        assert_eq!(
            e.to_string(),
            "lab.toml: port: no [[port]] defined; at least one is needed"
        );
        assert_eq!(parse("", "x.toml").unwrap_err().key, "port");
    }

    #[test]
    fn port_device_neither_or_both() {
        let e = expect_err(
            &format!("{PORTS}\n[[port]]\nname = \"x\"\naddresses = [\"10.0.0.1/8\"]\n"),
            11,
            "port[2]",
            "port \"x\" needs a device: exactly one of `vdev` or `pci`",
        );
        assert_eq!(
            e.to_string(),
            "t.toml:11: port[2]: port \"x\" needs a device: exactly one of `vdev` or `pci`"
        );
        expect_err(
            "[[port]]\nname = \"x\"\nvdev = \"net_null0\"\npci = \"0000:03:00.0\"\naddresses = [\"10.0.0.1/8\"]\n",
            4,
            "port[0].pci",
            "has both `vdev` and `pci`",
        );
    }

    #[test]
    fn bad_devices() {
        expect_err(
            "[[port]]\nname = \"x\"\npci = \"03:00\"\naddresses = [\"10.0.0.1/8\"]\n",
            3,
            "port[0].pci",
            "invalid PCI address \"03:00\"",
        );
        expect_err(
            "[[port]]\nname = \"x\"\nvdev = \"\"\naddresses = [\"10.0.0.1/8\"]\n",
            3,
            "port[0].vdev",
            "invalid vdev \"\"",
        );
        assert!(valid_pci("0000:03:00.0") && valid_pci("af:1f.7") && valid_pci("0000:03:00.0,a=b"));
        assert!(!valid_pci("0000:03:00.8") && !valid_pci("000:03:00.0") && !valid_pci("03:00.0.1"));
    }

    #[test]
    fn duplicate_port_name() {
        let e = expect_err(
            &format!("{PORTS}\n[[port]]\nname = \"wan\"\nvdev = \"net_null2\"\naddresses = [\"10.0.0.1/8\"]\n"),
            12,
            "port[2].name",
            "duplicate port name \"wan\" (also used at line 2)",
        );
        assert_eq!(e.line, Some(12));
        expect_err(
            "[[port]]\nname = \"\"\nvdev = \"net_null0\"\naddresses = [\"10.0.0.1/8\"]\n",
            2,
            "port[0].name",
            "must not be empty",
        );
    }

    #[test]
    fn bad_port_addresses() {
        expect_err(
            "[[port]]\nname = \"wan\"\nvdev = \"net_null0\"\naddresses = [\n  \"198.18.0.1/24\",\n  \"198.18.0.300/24\",\n]\n",
            6,
            "port[0].addresses[1]",
            "invalid IPv4 prefix \"198.18.0.300/24\"",
        );
        expect_err(
            "[[port]]\nname = \"wan\"\nvdev = \"net_null0\"\naddresses = [\"198.18.0.1\"]\n",
            4,
            "port[0].addresses[0]",
            "\"198.18.0.1\"",
        );
        expect_err(
            "[[port]]\nname = \"wan\"\nvdev = \"net_null0\"\naddresses = []\n",
            4,
            "port[0].addresses",
            "needs at least one address",
        );
        expect_err(
            &format!("{PORTS}\n[[port]]\nname = \"x\"\nvdev = \"net_null2\"\naddresses = [\"198.19.0.1/16\"]\n"),
            14,
            "port[2].addresses[0]",
            "address 198.19.0.1 already assigned to port \"lan\" (line 9)",
        );
    }

    #[test]
    fn bad_gateway() {
        expect_err(
            &format!("{PORTS}gateway = \"198.19.0\"\n"),
            10,
            "port[1].gateway",
            "invalid IPv4 address \"198.19.0\"",
        );
        let e = expect_err(
            &format!("{PORTS}gateway = \"198.18.0.254\"\n"),
            10,
            "port[1].gateway",
            "gateway 198.18.0.254 is not inside any of port \"lan\"'s address prefixes (198.19.0.1/24)",
        );
        assert_eq!(
            e.to_string(),
            "t.toml:10: port[1].gateway: gateway 198.18.0.254 is not inside any of port \"lan\"'s address prefixes (198.19.0.1/24)"
        );
        expect_err(
            &format!("{PORTS}gateway = \"198.19.0.1\"\n"),
            10,
            "port[1].gateway",
            "is one of port \"lan\"'s own addresses",
        );
        // Inside a second prefix of the port is fine.
        let c = ok(
            &format!("{PORTS}addresses = [\"198.19.0.1/24\", \"10.1.0.1/16\"]\n").replace(
                "addresses = [\"198.19.0.1/24\"]\naddresses",
                "gateway = \"10.1.255.254\"\naddresses",
            ),
        );
        assert_eq!(c.ports[1].gateway, Some(Ipv4Addr::new(10, 1, 255, 254)));
        // Only one default route.
        let two = PORTS.replace(
            "addresses = [\"198.18.0.1/24\"]",
            "addresses = [\"198.18.0.1/24\"]\ngateway = \"198.18.0.254\"",
        ) + "gateway = \"198.19.0.254\"\n";
        expect_err(
            &two,
            11,
            "port[1].gateway",
            "port \"wan\" already has the default gateway (line 5)",
        );
    }

    #[test]
    fn bad_neighbors() {
        expect_err(
            &format!("{PORTS}static_neighbors = [\n  {{ address = \"198.19.0.5\", mac = \"02:00:00:00:00:05\" }},\n  {{ address = \"198.19.0.x\", mac = \"02:00:00:00:00:06\" }},\n]\n"),
            12,
            "port[1].static_neighbors[1].address",
            "invalid IPv4 address \"198.19.0.x\"",
        );
        expect_err(
            &format!("{PORTS}static_neighbors = [\n  {{ address = \"198.19.0.5\", mac = \"02:00:00:00:05\" }},\n]\n"),
            11,
            "port[1].static_neighbors[0].mac",
            "invalid MAC address \"02:00:00:00:05\"",
        );
        expect_err(
            &format!("{PORTS}static_neighbors = [\n  {{ address = \"198.19.0.5\", mac = \"ff:ff:ff:ff:ff:ff\" }},\n]\n"),
            11,
            "port[1].static_neighbors[0].mac",
            "not a unicast address",
        );
        expect_err(
            &format!("{PORTS}static_neighbors = [\n  {{ address = \"198.19.0.5\", mac = \"02:00:00:00:00:05\" }},\n  {{ address = \"198.19.0.5\", mac = \"02:00:00:00:00:06\" }},\n]\n"),
            12,
            "port[1].static_neighbors[1].address",
            "duplicate static neighbour 198.19.0.5 (also at line 11)",
        );
    }

    #[test]
    fn bad_port_mac() {
        expect_err(
            &format!("{PORTS}mac = \"02:00:00:00:00\"\n"),
            10,
            "port[1].mac",
            "invalid MAC address \"02:00:00:00:00\"",
        );
        expect_err(
            &format!("{PORTS}mac = \"01:00:5e:00:00:01\"\n"),
            10,
            "port[1].mac",
            "port MAC 01:00:5e:00:00:01 is not a unicast address",
        );
        expect_err(
            &format!("{PORTS}mac = \"00:00:00:00:00:00\"\n"),
            10,
            "port[1].mac",
            "not a unicast address",
        );
    }

    #[test]
    fn bad_vip() {
        let base = service("", "");
        let e = expect_err(
            &base.replace("198.18.0.100:80", "198.18.0.100"),
            12,
            "service[0].address",
            "invalid address \"198.18.0.100\" (expected IPv4 address:port, e.g. 198.18.0.100:80)",
        );
        assert!(e
            .to_string()
            .starts_with("t.toml:12: service[0].address: invalid address"));
        expect_err(
            &base.replace("198.18.0.100:80", "198.18.0.100:65536"),
            12,
            "service[0].address",
            "\"198.18.0.100:65536\"",
        );
        expect_err(
            &base.replace("198.18.0.100:80", "[::1]:80"),
            12,
            "service[0].address",
            "\"[::1]:80\"",
        );
        expect_err(
            &base.replace("198.18.0.100:80", "224.0.0.1:80"),
            12,
            "service[0].address",
            "224.0.0.1 is not a unicast address",
        );
        expect_err(
            &base.replace("198.18.0.100:80", "0.0.0.0:80"),
            12,
            "service[0].address",
            "not a unicast address",
        );
    }

    #[test]
    fn vip_port_zero() {
        expect_err(
            &service("", "").replace("198.18.0.100:80", "198.18.0.100:0"),
            12,
            "service[0].address",
            "port 0 (all ports) needs persistence",
        );
        // With persistence it is the per-client service over every port;
        // its servers keep the client's port.
        let c = ok(&service("persistence = { timeout = 60 }\n", "")
            .replace("198.18.0.100:80", "198.18.0.100:0")
            .replace("198.19.0.11:80", "198.19.0.11"));
        assert_eq!(c.services[0].address.port(), 0);
        assert_eq!(c.services[0].servers[0].address, sa("198.19.0.11:0"));
    }

    #[test]
    fn bad_server_address() {
        expect_err(
            &service("", "").replace("198.19.0.11:80", "198.19.0.11:http"),
            14,
            "service[0].server[0].address",
            "invalid address \"198.19.0.11:http\"",
        );
        // Without a port the server listens on the service's.
        let c = ok(&service("", "").replace("198.19.0.11:80", "198.19.0.11"));
        assert_eq!(c.services[0].servers[0].address, sa("198.19.0.11:80"));
        expect_err(
            &service("", "").replace("198.19.0.11:80", "198.19.0.11:0"),
            14,
            "service[0].server[0].address",
            "port 0 is not allowed",
        );
        expect_err(
            &service("", "").replace("198.19.0.11:80", "10.9.9.9:80"),
            14,
            "service[0].server[0].address",
            "server 10.9.9.9 is unreachable",
        );
    }

    fn all_scheduler_names() -> String {
        let names: Vec<&str> = SchedulerKind::ALL.iter().map(|k| k.name()).collect();
        assert!(names.starts_with(&["rr", "wrr", "lc", "wlc"]));
        names.join(", ")
    }

    #[test]
    fn unknown_scheduler() {
        let e = expect_err(
            &service("scheduler = \"fifo\"\n", ""),
            13,
            "service[0].scheduler",
            "\"fifo\"",
        );
        assert_eq!(
            e.to_string(),
            format!(
                r#"t.toml:13: service[0].scheduler: unknown scheduler "fifo" (expected one of: {})"#,
                all_scheduler_names()
            )
        );
    }

    #[test]
    fn unknown_protocol() {
        expect_err(
            &service("", "").replace("\"tcp\"", "\"sctp\""),
            11,
            "service[0].protocol",
            "unknown protocol \"sctp\" (expected \"tcp\" or \"udp\")",
        );
    }

    #[test]
    fn duplicate_service() {
        let text = format!(
            "{}\n[[service]]\nprotocol = \"udp\"\naddress = \"198.18.0.100:80\"\n\n[[service]]\nprotocol = \"tcp\"\naddress = \"198.18.0.100:80\"\n",
            service("", "")
        );
        let e = expect_err(
            &text,
            23,
            "service[2].address",
            "duplicate service tcp 198.18.0.100:80 (also defined at line 12)",
        );
        assert_eq!(e.line, Some(23));
    }

    #[test]
    fn duplicate_server() {
        expect_err(
            &service(
                "",
                "\n[[service.server]]\naddress = \"198.19.0.11:80\"\nforward = \"nat\"\n",
            ),
            18,
            "service[0].server[1].address",
            "duplicate server 198.19.0.11:80 in this service (also at line 14)",
        );
        // The same server in two services is fine.
        let text = format!(
            "{}[[service]]\nprotocol = \"tcp\"\naddress = \"198.18.0.100:81\"\n[[service.server]]\naddress = \"198.19.0.11:80\"\nforward = \"nat\"\n",
            service("", "")
        );
        assert_eq!(ok(&text).services.len(), 2);
    }

    #[test]
    fn weight_out_of_range() {
        expect_err(
            &service("", "weight = 65536\n"),
            16,
            "service[0].server[0].weight",
            "weight 65536 out of range (0..=65535)",
        );
        expect_err(
            &service("", "weight = -1\n"),
            16,
            "service[0].server[0].weight",
            "weight -1 out of range (0..=65535)",
        );
    }

    #[test]
    fn forward_methods() {
        for (name, method) in [("dr", Forward::Dr), ("tun", Forward::Tun)] {
            let text = service("", "").replace("\"nat\"", &format!("\"{name}\""));
            assert_eq!(ok(&text).services[0].servers[0].forward, method);
            // dr and tun cannot change the port.
            expect_err(
                &text.replace("198.19.0.11:80", "198.19.0.11:8080"),
                14,
                "service[0].server[0].address",
                &format!("server 198.19.0.11:8080: {name} cannot change the port"),
            );
        }
        // dr needs the server on an attached segment; tun may go via a gateway.
        let routed = service("", "")
            .replace(
                "addresses = [\"198.18.0.1/24\"]",
                "addresses = [\"198.18.0.1/24\"]\ngateway = \"198.18.0.254\"",
            )
            .replace("198.19.0.11:80", "203.0.113.9:80");
        assert!(parse(&routed.replace("\"nat\"", "\"tun\""), "t.toml").is_ok());
        expect_err(
            &routed.replace("\"nat\"", "\"dr\""),
            15,
            "service[0].server[0].address",
            "dr needs the server on a directly attached segment",
        );
        expect_err(
            &service("", "").replace("\"nat\"", "\"masq\""),
            15,
            "service[0].server[0].forward",
            "unknown forwarding method \"masq\" (expected one of: nat, dr, tun)",
        );
    }

    #[test]
    fn persistence() {
        let c = ok(&service("persistence = {}\n", ""));
        assert_eq!(
            c.services[0].persistence,
            Some(Persistence {
                timeout_secs: 360,
                netmask: Ipv4Addr::BROADCAST
            })
        );
        let c = ok(&service(
            "persistence = { timeout = 30, netmask = \"255.255.255.0\" }\n",
            "",
        ));
        assert_eq!(
            c.services[0].persistence,
            Some(Persistence {
                timeout_secs: 30,
                netmask: Ipv4Addr::new(255, 255, 255, 0)
            })
        );
        assert_eq!(ok(&service("", "")).services[0].persistence, None);
        expect_err(
            &service("persistence = { timeout = 0 }\n", ""),
            13,
            "service[0].persistence.timeout",
            "timeout 0 out of range (1..=31536000)",
        );
        expect_err(
            &service("persistence = { netmask = \"255.0.255.0\" }\n", ""),
            13,
            "service[0].persistence.netmask",
            "invalid netmask \"255.0.255.0\"",
        );
        expect_err(
            &service("persistence = { time = 5 }\n", ""),
            13,
            "service[0].persistence.time",
            "unknown field `time`",
        );
    }

    #[test]
    fn one_packet_services_cannot_share_a_nat_server() {
        let udp = service("one_packet = true\n", "").replace("\"tcp\"", "\"udp\"");
        let second = "[[service]]\nprotocol = \"udp\"\naddress = \"198.18.0.100:54\"\n\
                      one_packet = true\n[[service.server]]\naddress = \"198.19.0.11:80\"\n\
                      forward = \"nat\"\n";
        expect_err(
            &format!("{udp}{second}"),
            22,
            "service[1].server[0].address",
            "server 198.19.0.11:80 is also in one-packet service udp 198.18.0.100:80",
        );
        // Without one_packet on the second it is fine.
        assert!(parse(
            &format!("{udp}{}", second.replace("one_packet = true\n", "")),
            "t.toml"
        )
        .is_ok());
    }

    #[test]
    fn one_packet_is_for_udp() {
        let udp = service("one_packet = true\n", "").replace("\"tcp\"", "\"udp\"");
        assert!(ok(&udp).services[0].one_packet);
        assert!(!ok(&service("", "")).services[0].one_packet);
        expect_err(
            &service("one_packet = true\n", ""),
            13,
            "service[0].one_packet",
            "one-packet scheduling is for UDP services only",
        );
    }

    #[test]
    fn scheduler_flags() {
        let c = ok(&service(
            "scheduler = \"sh\"\nsched_flags = [\"sh-port\", \"sh-fallback\"]\n",
            "",
        ));
        assert_eq!(
            c.services[0].sched_flags,
            HashFlags {
                port: true,
                fallback: true
            }
        );
        let c = ok(&service(
            "scheduler = \"mh\"\nsched_flags = [\"mh-port\"]\nmh_table_size = 251\n",
            "",
        ));
        assert!(c.services[0].sched_flags.port);
        assert_eq!(c.services[0].mh_table_size, 251);
        expect_err(
            &service("scheduler = \"sh\"\nsched_flags = [\"mh-port\"]\n", ""),
            14,
            "service[0].sched_flags[0]",
            "flag \"mh-port\" is for scheduler mh, not sh",
        );
        expect_err(
            &service("scheduler = \"sh\"\nsched_flags = [\"sh-sticky\"]\n", ""),
            14,
            "service[0].sched_flags[0]",
            "unknown scheduler flag \"sh-sticky\"",
        );
        expect_err(
            &service("scheduler = \"mh\"\nmh_table_size = 1000\n", ""),
            14,
            "service[0].mh_table_size",
            "mh_table_size 1000 is not one of 251, 509",
        );
        expect_err(
            &service("mh_table_size = 251\n", ""),
            13,
            "service[0].mh_table_size",
            "mh_table_size is for scheduler mh, not wlc",
        );
    }

    #[test]
    fn connection_thresholds() {
        let c = ok(&service(
            "",
            "upper_threshold = 100\nlower_threshold = 50\n",
        ));
        let r = &c.services[0].servers[0];
        assert_eq!((r.upper_threshold, r.lower_threshold), (100, 50));
        expect_err(
            &service("", "upper_threshold = 10\nlower_threshold = 50\n"),
            17,
            "service[0].server[0].lower_threshold",
            "lower_threshold 50 is above upper_threshold 10",
        );
        expect_err(
            &service("", "upper_threshold = -1\n"),
            16,
            "service[0].server[0].upper_threshold",
            "out of range",
        );
    }

    #[test]
    fn port_mtu() {
        assert_eq!(ok(PORTS).ports[0].mtu, 1500);
        let text = PORTS.replacen(
            "vdev = \"net_null0\"\n",
            "vdev = \"net_null0\"\nmtu = 9000\n",
            1,
        );
        assert_eq!(ok(&text).ports[0].mtu, 9000);
        expect_err(
            &PORTS.replacen(
                "vdev = \"net_null0\"\n",
                "vdev = \"net_null0\"\nmtu = 100\n",
                1,
            ),
            4,
            "port[0].mtu",
            "mtu 100 out of range (576..=9216)",
        );
    }

    const GROUP: &str = "[[group]]\nname = \"web\"\nmembers = [\"tcp:198.18.0.100:80\", \"tcp:198.18.0.100:443\"]\n\
                         scheduler = \"rr\"\npersistence = { timeout = 60 }\n\
                         [[group.server]]\naddress = \"198.19.0.11\"\nforward = \"nat\"\n\
                         [[group.server]]\naddress = \"198.19.0.12\"\nforward = \"dr\"\n";

    #[test]
    fn groups() {
        let c = ok(&format!("{PORTS}{GROUP}"));
        let g = &c.groups[0];
        assert_eq!(g.name, "web");
        assert_eq!(g.mark, 1);
        assert_eq!(
            g.members,
            vec![
                (Protocol::Tcp, sa("198.18.0.100:80")),
                (Protocol::Tcp, sa("198.18.0.100:443"))
            ]
        );
        assert_eq!(g.scheduler, SchedulerKind::Rr);
        assert_eq!(g.persistence.unwrap().timeout_secs, 60);
        // Servers without a port keep the client's port.
        assert_eq!(g.servers[0].address, sa("198.19.0.11:0"));
        assert_eq!(g.servers[1].address, sa("198.19.0.12:0"));
        assert_eq!(g.servers[1].forward, Forward::Dr);

        // Marks: explicit, or the 1-based position; never twice.
        let two = format!(
            "{PORTS}{GROUP}{}",
            GROUP.replace("web", "mail").replace("100:", "101:")
        );
        assert_eq!(ok(&two).groups[1].mark, 2);
        expect_err(
            &format!("{PORTS}{GROUP}{GROUP}"),
            22,
            "group[1].name",
            "duplicate group name \"web\"",
        );
        let clash = format!(
            "{PORTS}{}{}",
            GROUP.replace("name = \"web\"", "name = \"web\"\nmark = 2"),
            GROUP.replace("web", "mail").replace("100:", "101:")
        );
        expect_err(
            &clash,
            23,
            "group[1].mark",
            "mark 2 is already used by another group",
        );

        expect_err(
            &format!(
                "{PORTS}{}",
                GROUP.replace("tcp:198.18.0.100:443", "sctp:198.18.0.100:443")
            ),
            12,
            "group[0].members[1]",
            "invalid member \"sctp:198.18.0.100:443\"",
        );
        expect_err(
            &format!(
                "{PORTS}{}",
                GROUP.replace("tcp:198.18.0.100:443", "tcp:198.18.0.100:0")
            ),
            12,
            "group[0].members[1]",
            "a member needs a port",
        );
        expect_err(
            &format!(
                "{PORTS}{}",
                GROUP.replace("[\"tcp:198.18.0.100:80\", \"tcp:198.18.0.100:443\"]", "[]")
            ),
            12,
            "group[0].members",
            "a group needs at least one member",
        );
        // A member cannot also be a [[service]] or in another group.
        expect_err(
            &format!("{}{GROUP}", service("", "")),
            18,
            "group[0].members[0]",
            "tcp 198.18.0.100:80 is also a [[service]]",
        );
        expect_err(
            &format!("{PORTS}{GROUP}{}", GROUP.replace("web", "mail")),
            23,
            "group[1].members[0]",
            "tcp 198.18.0.100:80 is already a group member (line 12)",
        );
        expect_err(
            &format!(
                "{PORTS}{}",
                GROUP.replace(
                    "scheduler = \"rr\"",
                    "scheduler = \"rr\"\none_packet = true"
                )
            ),
            14,
            "group[0].one_packet",
            "not on groups",
        );
    }

    #[test]
    fn display_without_line_or_key() {
        let e = ConfigError {
            file: "a.toml".into(),
            line: None,
            key: String::new(),
            message: "m".into(),
        };
        assert_eq!(e.to_string(), "a.toml: m");
        let e = ConfigError {
            file: "a.toml".into(),
            line: Some(3),
            key: "k".into(),
            message: "m".into(),
        };
        assert_eq!(e.to_string(), "a.toml:3: k: m");
    }

    #[test]
    fn load_io_error() {
        let e = load(Path::new("/nonexistent/rvs.toml")).unwrap_err();
        assert_eq!(
            (e.file.as_str(), e.line, e.key.as_str()),
            ("/nonexistent/rvs.toml", None, "")
        );
        assert!(e.message.starts_with("cannot read configuration: "), "{e}");
    }

    fn manifest_path(rel: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
    }

    #[test]
    fn example_files_parse() {
        for name in ["lab.toml", "pcap-example.toml"] {
            let c = load(&manifest_path(&format!("dpdk-config/{name}")))
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(c.ports.len(), 2, "{name}");
            assert!(!c.services.is_empty(), "{name}");
        }
        let lab = load(&manifest_path("dpdk-config/lab.toml")).unwrap();
        assert_eq!(
            lab.dpdk.eal_args(&lab.ports),
            [
                "rvsd",
                "-l",
                "0-1",
                "-m",
                "512",
                "--no-huge",
                "--no-pci",
                "--vdev=net_af_packet0,iface=lab-wan",
                "--vdev=net_af_packet1,iface=lab-lan",
                "--in-memory",
            ]
        );
    }

    #[test]
    fn fixture_files() {
        let full = load(&manifest_path("tests/fixtures/config/full.toml")).unwrap();
        assert_eq!(full, ok(FULL));
        let min = load(&manifest_path("tests/fixtures/config/minimal.toml")).unwrap();
        assert_eq!(min.dpdk, DpdkConfig::default());
        let path = manifest_path("tests/fixtures/config/bad-scheduler.toml");
        let e = load(&path).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{}:15: service[0].scheduler: unknown scheduler \"fifo\" (expected one of: {})",
                path.display(),
                all_scheduler_names()
            )
        );
    }

    /// Every error must carry a line inside the text, except the few without one.
    fn check_error_sane(text: &str, e: &ConfigError) {
        if let Some(line) = e.line {
            assert!(line >= 1 && line <= text.split('\n').count(), "{e}");
        }
        assert!(!e.message.is_empty());
        let _ = e.to_string();
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn never_panics_on_garbage(text in "\\PC*") {
            if let Err(e) = parse(&text, "p.toml") {
                check_error_sane(&text, &e);
            }
        }

        #[test]
        fn never_panics_on_tomlish(text in "[\\[\\]{}=\",.:/ a-z0-9_\\n-]{0,200}") {
            if let Err(e) = parse(&text, "p.toml") {
                check_error_sane(&text, &e);
            }
        }

        #[test]
        fn never_panics_on_mutations(
            ops in prop::collection::vec((0usize..2000, 0usize..3, 0usize..12, "[\\PC\\n]{0,4}"), 1..6)
        ) {
            let mut text = FULL.to_string();
            for (pos, kind, len, insert) in ops {
                let pos = floor_char_boundary(&text, pos % (text.len() + 1));
                let end = floor_char_boundary(&text, (pos + len).min(text.len()));
                match kind {
                    0 => text.replace_range(pos..end, ""),
                    1 => text.insert_str(pos, &insert),
                    _ => text.replace_range(pos..end, &insert),
                }
            }
            if let Err(e) = parse(&text, "p.toml") {
                check_error_sane(&text, &e);
            }
        }

        #[test]
        fn never_panics_on_value_swaps(
            picks in prop::collection::vec((0usize..64, 0usize..VALUES.len()), 1..4)
        ) {
            // Replace whole right-hand sides with plausible-but-wrong values.
            let mut lines: Vec<String> = FULL.lines().map(str::to_string).collect();
            for (i, v) in picks {
                let i = i % lines.len();
                if let Some((k, _)) = lines[i].split_once(" = ") {
                    lines[i] = format!("{k} = {}", VALUES[v]);
                }
            }
            let text = lines.join("\n");
            if let Err(e) = parse(&text, "p.toml") {
                check_error_sane(&text, &e);
            }
        }
    }

    const VALUES: &[&str] = &[
        "0",
        "-1",
        "65536",
        "4294967296",
        "9223372036854775807",
        "true",
        "1.5",
        "\"\"",
        "\"0-\"",
        "\"0\"",
        "\"dr\"",
        "\"fifo\"",
        "\"1.2.3.4:0\"",
        "\"1.2.3.4/33\"",
        "[]",
        "[1]",
        "{}",
        "{ a = 1 }",
        "1979-05-27",
        "\"ff:ff:ff:ff:ff:ff\"",
        "\"0-1023\"",
        "\"0-1024\"",
        "nan",
        "inf",
        "[\"-m\"]",
    ];

    fn floor_char_boundary(s: &str, mut i: usize) -> usize {
        while !s.is_char_boundary(i) {
            i -= 1;
        }
        i
    }

    #[test]
    fn control_defaults_and_values() {
        let c = ok(PORTS);
        assert_eq!(c.control, ControlConfig::default());
        assert_eq!(c.control.socket, PathBuf::from("/run/rvs/rvsd.sock"));
        let c = ok(&format!(
            "{PORTS}[control]\nsocket = \"/tmp/x.sock\"\nlisten = \"127.0.0.1:9180\"\n\
             token_file = \"/etc/rvs/token\"\n"
        ));
        assert_eq!(
            c.control,
            ControlConfig {
                socket: PathBuf::from("/tmp/x.sock"),
                listen: Some("127.0.0.1:9180".parse().unwrap()),
                token_file: Some(PathBuf::from("/etc/rvs/token")),
            }
        );
    }

    #[test]
    fn control_errors_name_key_and_line() {
        // PORTS is 9 lines; [control] is line 10.
        expect_err(
            &format!("{PORTS}[control]\nsocket = \"\"\n"),
            11,
            "control.socket",
            "must not be empty",
        );
        expect_err(
            &format!("{PORTS}[control]\nlisten = \"localhost:9180\"\ntoken_file = \"t\"\n"),
            11,
            "control.listen",
            "invalid address \"localhost:9180\"",
        );
        expect_err(
            &format!("{PORTS}[control]\nlisten = \"127.0.0.1:9180\"\n"),
            11,
            "control.listen",
            "needs `token_file`",
        );
        expect_err(
            &format!("{PORTS}[control]\ntoken_file = \"/etc/rvs/token\"\n"),
            11,
            "control.token_file",
            "only used with `listen`",
        );
        expect_err(
            &format!("{PORTS}[control]\nport = 1\n"),
            11,
            "control.port",
            "unknown field",
        );
    }
}
