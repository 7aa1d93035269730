//! ipvsadm 1.31's command line → [`Command`].
//!
//! Parsing follows ipvsadm (which uses popt):
//! - the first option must be a command (`-A`, `--list`, ...); anything else
//!   first gives "Try `rvsadm -h' ..." and exit 255. No arguments at all
//!   lists the table.
//! - short options cluster (`-Ln`) and take their value from the rest of
//!   the cluster or the next argument (`-w3`, `-w 3`); long options take
//!   `--weight=3` or `--weight 3`. `-p`/`--persistent` has an optional
//!   value: it takes the next argument only when that does not start with
//!   `-`, else 360 s. Arguments that are not options are collected; only
//!   `--set` uses them (3), any other is "unexpected argument".
//! - each option may be given once ("multiple 'weight' options
//!   specified"), and ipvsadm's table says which options each command
//!   needs, allows or forbids, with its messages and exit code 2.
//! - `-r` without a port takes the service's; with `-g` or `-i` the real
//!   port is forced to the virtual port (not for firewall-mark services).
//!
//! Differences, all because rvs does no name resolution: addresses must be
//! numeric (IPv4 dotted quad, IPv6), and ports numeric or one of a few
//! well-known names ([`WELL_KNOWN_PORTS`]). Where ipvsadm's message does not
//! name the offending argument, rvsadm appends it (`illegal weight
//! specified: -w 70000`).
//!
//! Not supported: `--sctp-service`, the 1.31 tunnel options (`--tun-*`)
//! and the sync daemon's multicast options (`--mcast-group` and friends):
//! they are unknown options here.

use super::error::AdmError;
use super::model::{
    Family, Forward, Netmask, Persistence, Protocol, SchedFlags, ServiceKey, Timeouts,
    DEFAULT_PERSISTENCE_TIMEOUT, DEFAULT_SCHEDULER, MAX_THRESHOLD, MAX_TIMEOUT, MAX_WEIGHT,
};
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The program name in messages.
pub const PROGRAM: &str = "rvsadm";

/// A parsed command line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// `-A`
    AddService(ServiceSpec),
    /// `-E`
    EditService(ServiceSpec),
    /// `-D`
    DeleteService(ServiceKey),
    /// `-a`
    AddDest(ServiceKey, DestSpec),
    /// `-e`
    EditDest(ServiceKey, DestSpec),
    /// `-d`: the server's address and port.
    DeleteDest(ServiceKey, SocketAddr),
    /// `-C`
    Clear,
    /// `-Z`, of one service or all.
    Zero(Option<ServiceKey>),
    /// `--set tcp tcpfin udp` (0: unchanged).
    SetTimeouts(Timeouts),
    /// `-L`, `-l`, and no arguments at all.
    List(ListRequest),
    /// `-S`: always numeric.
    Save,
    /// `-R`: rules from standard input.
    Restore,
    StartDaemon(DaemonSpec),
    StopDaemon(DaemonSpec),
    /// `-h`
    Help,
    /// `-v`
    Version,
}

/// A virtual service's attributes as `-A` and `-E` give them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceSpec {
    pub key: ServiceKey,
    pub scheduler: String,
    #[serde(default)]
    pub sched_flags: SchedFlags,
    #[serde(default)]
    pub persistence: Option<Persistence>,
    #[serde(default)]
    pub one_packet: bool,
    /// Persistence engine (`--pe`); rvs has none, so any name is refused.
    #[serde(default)]
    pub pe: Option<String>,
}

impl ServiceSpec {
    /// ipvsadm's own checks of a service (the kernel's come in
    /// [`super::Model::apply`]).
    pub fn validate(&self) -> Result<(), AdmError> {
        if let ServiceKey::Addr { protocol, addr } = self.key {
            if addr.port() == 0 && self.persistence.is_none() {
                return Err(AdmError::usage(format!(
                    "Zero port specified for non-persistent service: {}",
                    self.key
                )));
            }
            if self.one_packet && protocol != Protocol::Udp {
                return Err(AdmError::usage(format!(
                    "One-Packet Scheduling is only for UDP virtual services: {}",
                    self.key
                )));
            }
        }
        if let Some(persistence) = &self.persistence {
            if !(1..=MAX_TIMEOUT).contains(&persistence.timeout) {
                return Err(AdmError::usage(format!(
                    "invalid timeout value `{}' specified",
                    persistence.timeout
                )));
            }
            let netmask_ok = match persistence.netmask {
                Netmask::Ipv4(_) => self.key.family() == Family::Ipv4,
                Netmask::PrefixLen(len) => {
                    self.key.family() == Family::Ipv6 && (1..=128).contains(&len)
                }
            };
            if !netmask_ok {
                let what = match self.key.family() {
                    Family::Ipv4 => "illegal virtual server persistent mask specified",
                    Family::Ipv6 => "illegal ipv6 netmask specified",
                };
                return Err(AdmError::usage(format!(
                    "{what}: -M {}",
                    persistence.netmask
                )));
            }
        }
        Ok(())
    }
}

/// A real server's attributes as `-a` and `-e` give them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestSpec {
    pub addr: SocketAddr,
    pub forward: Forward,
    pub weight: u32,
    #[serde(default)]
    pub upper_threshold: u32,
    #[serde(default)]
    pub lower_threshold: u32,
}

impl DestSpec {
    /// ipvsadm's checks and port rule for a server of `service`: weight and
    /// thresholds in range, the same address family unless tunnelling, and
    /// for `-g`/`-i` (not firewall marks) the virtual port.
    pub fn for_service(&self, service: &ServiceKey) -> Result<DestSpec, AdmError> {
        if self.weight > MAX_WEIGHT {
            return Err(AdmError::usage(format!(
                "illegal weight specified: -w {}",
                self.weight
            )));
        }
        if self.upper_threshold > MAX_THRESHOLD {
            return Err(AdmError::usage(format!(
                "illegal u_threshold specified: -x {}",
                self.upper_threshold
            )));
        }
        if self.lower_threshold > MAX_THRESHOLD {
            return Err(AdmError::usage(format!(
                "illegal l_threshold specified: -y {}",
                self.lower_threshold
            )));
        }
        let mut spec = *self;
        if !service.is_fwmark() && matches!(self.forward, Forward::Dr | Forward::Tun) {
            spec.addr.set_port(service.port());
        }
        if Family::of(spec.addr.ip()) != service.family() && spec.forward != Forward::Tun {
            return Err(AdmError::usage(format!(
                "Different address family is allowed only for tunneling servers: -r {}",
                spec.addr
            )));
        }
        Ok(spec)
    }
}

/// What `-L` lists and how.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListRequest {
    pub what: ListWhat,
    pub format: ListFormat,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ListWhat {
    /// The version line and every service.
    #[default]
    Services,
    /// One service, without the version line (`-L -t ...`).
    Service(ServiceKey),
    /// `-c`
    Connections,
    /// `--timeout`
    Timeouts,
    /// `--daemon`: rvs has none, so nothing is printed.
    Daemons,
}

/// The listing options. With several of stats, rate, thresholds and
/// persistent-conn, the first in that order wins (as ipvsadm).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListFormat {
    /// `-n`: rvsadm is always numeric; kept for completeness.
    pub numeric: bool,
    pub stats: bool,
    pub rate: bool,
    pub thresholds: bool,
    pub persistent_conn: bool,
    pub nosort: bool,
    pub exact: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncState {
    Master,
    Backup,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonSpec {
    pub state: SyncState,
    pub mcast_interface: Option<String>,
    pub syncid: Option<u8>,
}

/// Port names accepted where ipvsadm would ask `/etc/services`.
pub const WELL_KNOWN_PORTS: &[(&str, u16)] = &[
    ("ftp", 21),
    ("ssh", 22),
    ("telnet", 23),
    ("smtp", 25),
    ("domain", 53),
    ("http", 80),
    ("pop3", 110),
    ("ntp", 123),
    ("imap", 143),
    ("snmp", 161),
    ("ldap", 389),
    ("https", 443),
    ("submission", 587),
    ("imaps", 993),
    ("pop3s", 995),
    ("mysql", 3306),
    ("postgresql", 5432),
];

/// The message for a command line ipvsadm cannot start on (exit 255).
pub fn try_help() -> AdmError {
    AdmError::refused(format!(
        "Try `{PROGRAM} -h' or '{PROGRAM} --help' for more information."
    ))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ArgKind {
    None,
    Required,
    Optional,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tag {
    Add,
    Edit,
    Delete,
    Clear,
    List,
    Zero,
    AddDest,
    EditDest,
    DeleteDest,
    Set,
    Help,
    Version,
    Restore,
    Save,
    StartDaemon,
    StopDaemon,
    Tcp,
    Udp,
    Fwmark,
    Scheduler,
    Persistent,
    Netmask,
    RealServer,
    Masquerading,
    Ipip,
    Gatewaying,
    Weight,
    UThreshold,
    LThreshold,
    Numeric,
    Connection,
    McastInterface,
    Syncid,
    Timeout,
    Daemon,
    Stats,
    Rate,
    Thresholds,
    PersistentConn,
    NoSort,
    Sort,
    Exact,
    Ipv6,
    Ops,
    Pe,
    SchedFlags,
}

struct OptionDef {
    long: &'static str,
    short: Option<char>,
    arg: ArgKind,
    tag: Tag,
}

const fn def(long: &'static str, short: Option<char>, arg: ArgKind, tag: Tag) -> OptionDef {
    OptionDef {
        long,
        short,
        arg,
        tag,
    }
}

use ArgKind::{None as NoArg, Optional, Required};

/// ipvsadm 1.31's options (less the unsupported ones, see the module doc).
const OPTIONS: &[OptionDef] = &[
    def("add-service", Some('A'), NoArg, Tag::Add),
    def("edit-service", Some('E'), NoArg, Tag::Edit),
    def("delete-service", Some('D'), NoArg, Tag::Delete),
    def("clear", Some('C'), NoArg, Tag::Clear),
    def("list", Some('L'), NoArg, Tag::List),
    def("list", Some('l'), NoArg, Tag::List),
    def("zero", Some('Z'), NoArg, Tag::Zero),
    def("add-server", Some('a'), NoArg, Tag::AddDest),
    def("edit-server", Some('e'), NoArg, Tag::EditDest),
    def("delete-server", Some('d'), NoArg, Tag::DeleteDest),
    def("set", None, NoArg, Tag::Set),
    def("help", Some('h'), NoArg, Tag::Help),
    def("version", Some('v'), NoArg, Tag::Version),
    def("restore", Some('R'), NoArg, Tag::Restore),
    def("save", Some('S'), NoArg, Tag::Save),
    def("start-daemon", None, Required, Tag::StartDaemon),
    def("stop-daemon", None, Required, Tag::StopDaemon),
    def("tcp-service", Some('t'), Required, Tag::Tcp),
    def("udp-service", Some('u'), Required, Tag::Udp),
    def("fwmark-service", Some('f'), Required, Tag::Fwmark),
    def("scheduler", Some('s'), Required, Tag::Scheduler),
    def("persistent", Some('p'), Optional, Tag::Persistent),
    def("netmask", Some('M'), Required, Tag::Netmask),
    def("real-server", Some('r'), Required, Tag::RealServer),
    def("masquerading", Some('m'), NoArg, Tag::Masquerading),
    def("ipip", Some('i'), NoArg, Tag::Ipip),
    def("gatewaying", Some('g'), NoArg, Tag::Gatewaying),
    def("weight", Some('w'), Required, Tag::Weight),
    def("u-threshold", Some('x'), Required, Tag::UThreshold),
    def("l-threshold", Some('y'), Required, Tag::LThreshold),
    def("numeric", Some('n'), NoArg, Tag::Numeric),
    def("connection", Some('c'), NoArg, Tag::Connection),
    def("mcast-interface", None, Required, Tag::McastInterface),
    def("syncid", None, Required, Tag::Syncid),
    def("timeout", None, NoArg, Tag::Timeout),
    def("daemon", None, NoArg, Tag::Daemon),
    def("stats", None, NoArg, Tag::Stats),
    def("rate", None, NoArg, Tag::Rate),
    def("thresholds", None, NoArg, Tag::Thresholds),
    def("persistent-conn", None, NoArg, Tag::PersistentConn),
    def("nosort", None, NoArg, Tag::NoSort),
    def("sort", None, NoArg, Tag::Sort),
    def("exact", Some('X'), NoArg, Tag::Exact),
    def("ipv6", Some('6'), NoArg, Tag::Ipv6),
    def("ops", Some('o'), NoArg, Tag::Ops),
    def("pe", None, Required, Tag::Pe),
    def("sched-flags", Some('b'), Required, Tag::SchedFlags),
];

/// One option as found on the command line.
struct Found {
    tag: Tag,
    arg: Option<String>,
    /// As the user wrote it (`-w`, `--weight`), for messages.
    spelled: String,
}

/// popt's view of argv: options in order, non-options set aside.
struct Tokens<'a> {
    argv: &'a [String],
    next: usize,
    /// Inside a cluster of short options: (argv index, byte offset).
    cluster: Option<(usize, usize)>,
    after_double_dash: bool,
    positionals: Vec<String>,
}

impl<'a> Tokens<'a> {
    fn new(argv: &'a [String]) -> Tokens<'a> {
        Tokens {
            argv,
            next: 0,
            cluster: None,
            after_double_dash: false,
            positionals: Vec::new(),
        }
    }

    /// The argument after the current one, as an option's value.
    fn take_next(&mut self, optional: bool) -> Option<String> {
        let candidate = self.argv.get(self.next)?;
        if optional && candidate.starts_with('-') {
            return None;
        }
        self.next += 1;
        Some(candidate.clone())
    }

    /// The next option, or popt's complaint `(spelled, reason)`.
    fn next_option(&mut self) -> Option<Result<Found, (String, &'static str)>> {
        if let Some((index, offset)) = self.cluster {
            return Some(self.short_option(index, offset));
        }
        while let Some(word) = self.argv.get(self.next) {
            self.next += 1;
            if self.after_double_dash || word == "-" || !word.starts_with('-') {
                self.positionals.push(word.clone());
            } else if word == "--" {
                self.after_double_dash = true;
            } else if let Some(long) = word.strip_prefix("--") {
                return Some(self.long_option(long));
            } else {
                return Some(self.short_option(self.next - 1, 1));
            }
        }
        None
    }

    fn long_option(&mut self, text: &str) -> Result<Found, (String, &'static str)> {
        let (name, inline) = match text.split_once('=') {
            Some((name, value)) => (name, Some(value.to_string())),
            None => (text, None),
        };
        let spelled = format!("--{name}");
        let Some(def) = OPTIONS.iter().find(|d| d.long == name) else {
            return Err((spelled, "unknown option"));
        };
        let arg = match (def.arg, inline) {
            (NoArg, Some(_)) => return Err((spelled, "option does not take an argument")),
            (NoArg, None) => None,
            (_, Some(value)) => Some(value),
            (Required, None) => match self.take_next(false) {
                Some(value) => Some(value),
                None => return Err((spelled, "missing argument")),
            },
            (Optional, None) => self.take_next(true),
        };
        Ok(Found {
            tag: def.tag,
            arg,
            spelled,
        })
    }

    fn short_option(
        &mut self,
        index: usize,
        offset: usize,
    ) -> Result<Found, (String, &'static str)> {
        let word = &self.argv[index];
        let rest = &word[offset..];
        let Some(letter) = rest.chars().next() else {
            self.cluster = None;
            return Err((word.clone(), "unknown option"));
        };
        let after = offset + letter.len_utf8();
        let spelled = format!("-{letter}");
        self.cluster = (after < word.len()).then_some((index, after));
        let Some(def) = OPTIONS.iter().find(|d| d.short == Some(letter)) else {
            self.cluster = None;
            return Err((spelled, "unknown option"));
        };
        let arg = match def.arg {
            NoArg => None,
            Required | Optional if self.cluster.is_some() => {
                self.cluster = None;
                Some(word[after..].to_string())
            }
            Required => match self.take_next(false) {
                Some(value) => Some(value),
                None => return Err((spelled, "missing argument")),
            },
            Optional => self.take_next(true),
        };
        Ok(Found {
            tag: def.tag,
            arg,
            spelled,
        })
    }
}

/// ipvsadm's commands, in the order of its option table's rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cmd {
    Add,
    Edit,
    Delete,
    Flush,
    List,
    AddDest,
    DeleteDest,
    EditDest,
    Timeout,
    StartDaemon,
    StopDaemon,
    Restore,
    Save,
    Zero,
}

impl Cmd {
    fn name(self) -> &'static str {
        match self {
            Cmd::Add => "add-service",
            Cmd::Edit => "edit-service",
            Cmd::Delete => "delete-service",
            Cmd::Flush => "flush",
            Cmd::List => "list",
            Cmd::AddDest => "add-server",
            Cmd::DeleteDest => "delete-server",
            Cmd::EditDest => "edit-server",
            Cmd::Timeout => "set",
            Cmd::StartDaemon => "start-daemon",
            Cmd::StopDaemon => "stop-daemon",
            Cmd::Restore => "restore",
            Cmd::Save => "save",
            Cmd::Zero => "zero",
        }
    }

    /// ipvsadm's table of legal options, one character per option of
    /// [`OPTION_NAMES`]: `+` compulsory, `x` illegal, `1` at most one of the
    /// `1`s, space optional.
    fn legal_options(self) -> &'static [u8; OPTION_COUNT] {
        match self {
            Cmd::Add | Cmd::Edit => b"xx+   xxxxxxxxxxxxxxx   ",
            Cmd::Delete => b"xx+xxxxxxxxxxxxxxxxxxxxx",
            Cmd::Flush | Cmd::Timeout | Cmd::Restore => b"xxxxxxxxxxxxxxxxxxxxxxxx",
            Cmd::List => b" 11xxxxxxxxx11       xxx",
            Cmd::AddDest | Cmd::EditDest => b"xx+xxx+    xxxxxxxxxxxxx",
            Cmd::DeleteDest => b"xx+xxx+xxxxxxxxxxxxxxxxx",
            Cmd::StartDaemon => b"xxxxxxxxxxx xxxxxxx xxxx",
            Cmd::StopDaemon => b"xxxxxxxxxxxxxxxxxxx xxxx",
            Cmd::Save => b" xxxxxxxxxxxxxxxxxxxxxxx",
            Cmd::Zero => b"xx xxxxxxxxxxxxxxxxxxxxx",
        }
    }
}

const OPTION_COUNT: usize = 24;

/// ipvsadm's option names, in its table's column order.
const OPTION_NAMES: [&str; OPTION_COUNT] = [
    "numeric",
    "connection",
    "service-address",
    "scheduler",
    "persistent",
    "netmask",
    "real-server",
    "forwarding-method",
    "weight",
    "u-threshold",
    "l-threshold",
    "mcast-interface",
    "timeout",
    "daemon",
    "stats",
    "rate",
    "thresholds",
    "persistent-conn",
    "nosort",
    "syncid",
    "exact",
    "ops",
    "pe",
    "sched-flags",
];

/// Column of [`OPTION_NAMES`] an option counts in, if any.
fn column(tag: Tag) -> Option<usize> {
    let name = match tag {
        Tag::Numeric => "numeric",
        Tag::Connection => "connection",
        Tag::Tcp | Tag::Udp | Tag::Fwmark => "service-address",
        Tag::Scheduler => "scheduler",
        Tag::Persistent => "persistent",
        Tag::Netmask => "netmask",
        Tag::RealServer => "real-server",
        Tag::Masquerading | Tag::Ipip | Tag::Gatewaying => "forwarding-method",
        Tag::Weight => "weight",
        Tag::UThreshold => "u-threshold",
        Tag::LThreshold => "l-threshold",
        Tag::McastInterface => "mcast-interface",
        Tag::Timeout => "timeout",
        Tag::Daemon => "daemon",
        Tag::Stats => "stats",
        Tag::Rate => "rate",
        Tag::Thresholds => "thresholds",
        Tag::PersistentConn => "persistent-conn",
        Tag::NoSort => "nosort",
        Tag::Syncid => "syncid",
        Tag::Exact => "exact",
        Tag::Ops => "ops",
        Tag::Pe => "pe",
        Tag::SchedFlags => "sched-flags",
        _ => return None,
    };
    OPTION_NAMES.iter().position(|n| *n == name)
}

/// C's `strtol` on the whole string (leading blanks and a sign allowed, no
/// trailing characters), within `min..=max`: ipvsadm's `string_to_number`.
fn c_number(text: &str, min: i64, max: i64) -> Option<i64> {
    let trimmed = text.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let (negative, digits) = match trimmed.as_bytes().first() {
        Some(b'+') => (false, &trimmed[1..]),
        Some(b'-') => (true, &trimmed[1..]),
        _ => (false, trimmed),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let magnitude: i64 = digits.parse().ok()?;
    let value = if negative { -magnitude } else { magnitude };
    (min..=max).contains(&value).then_some(value)
}

fn parse_port(text: &str) -> Option<u16> {
    if let Some(port) = c_number(text, 0, 65_535) {
        return u16::try_from(port).ok();
    }
    WELL_KNOWN_PORTS
        .iter()
        .find(|(name, _)| *name == text)
        .map(|(_, port)| *port)
}

/// ipvsadm's `parse_service`: `ADDR`, `ADDR:PORT`, `[V6]:PORT` or bare
/// `V6`. An all-digit string (a mistaken port) is refused.
fn parse_address(text: &str) -> Option<(IpAddr, Option<u16>)> {
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if let Some(inner) = text.strip_prefix('[') {
        let (host, after) = inner.split_once(']')?;
        let port = parse_port(after.strip_prefix(':')?)?;
        let ip: Ipv6Addr = host.parse().ok()?;
        return Some((IpAddr::V6(ip), Some(port)));
    }
    if let Ok(ip) = text.parse::<Ipv6Addr>() {
        return Some((IpAddr::V6(ip), None));
    }
    let (host, port) = match text.rsplit_once(':') {
        Some((host, port)) => (host, Some(parse_port(port)?)),
        None => (text, None),
    };
    let ip: Ipv4Addr = host.parse().ok()?;
    Some((IpAddr::V4(ip), port))
}

fn parse_timeout(text: &str, min: u32) -> Result<u32, AdmError> {
    c_number(text, i64::from(min), i64::from(MAX_TIMEOUT))
        .map(|t| t as u32)
        .ok_or_else(|| AdmError::usage(format!("invalid timeout value `{text}' specified")))
}

#[derive(Clone, Copy, Debug)]
enum ServiceArg {
    Addr {
        protocol: Protocol,
        ip: IpAddr,
        port: u16,
    },
    Fwmark(u32),
}

/// Everything the options said, before the command is checked and built.
#[derive(Default)]
struct Options {
    given: [bool; OPTION_COUNT],
    /// The spelling of the option in each column, for messages.
    spelled: [Option<String>; OPTION_COUNT],
    service: Option<ServiceArg>,
    ipv6_fwmark: bool,
    scheduler: Option<String>,
    persistent: Option<u32>,
    netmask: Option<String>,
    server: Option<(IpAddr, Option<u16>)>,
    forward: Option<Forward>,
    weight: Option<u32>,
    upper: Option<u32>,
    lower: Option<u32>,
    mcast_interface: Option<String>,
    syncid: Option<u8>,
    pe: Option<String>,
    sched_flags: Option<String>,
    format: ListFormat,
}

impl Options {
    fn is_given(&self, name: &str) -> bool {
        OPTION_NAMES
            .iter()
            .position(|n| *n == name)
            .is_some_and(|column| self.given[column])
    }

    fn take(&mut self, found: Found) -> Result<(), AdmError> {
        let Found { tag, arg, spelled } = found;
        if let Some(column) = column(tag) {
            if self.given[column] {
                return Err(AdmError::usage(format!(
                    "multiple '{}' options specified",
                    OPTION_NAMES[column]
                )));
            }
            self.given[column] = true;
            self.spelled[column] = Some(spelled.clone());
        }
        let value = arg.clone().unwrap_or_default();
        let illegal =
            |what: &str| AdmError::usage(format!("illegal {what} specified: {spelled} {value}"));
        match tag {
            Tag::Tcp | Tag::Udp => {
                let protocol = if tag == Tag::Tcp {
                    Protocol::Tcp
                } else {
                    Protocol::Udp
                };
                let (ip, port) = parse_address(&value)
                    .ok_or_else(|| illegal("virtual server address[:port]"))?;
                self.service = Some(ServiceArg::Addr {
                    protocol,
                    ip,
                    port: port.unwrap_or(0),
                });
            }
            Tag::Fwmark => {
                let mark = c_number(&value, 1, i64::from(u32::MAX)).ok_or_else(|| {
                    AdmError::usage(format!("invalid fwmark value `{value}' specified"))
                })?;
                self.service = Some(ServiceArg::Fwmark(mark as u32));
            }
            Tag::Ipv6 => {
                if !matches!(self.service, Some(ServiceArg::Fwmark(_))) {
                    return Err(AdmError::usage("-6 used before -f"));
                }
                self.ipv6_fwmark = true;
            }
            Tag::Scheduler => self.scheduler = Some(value),
            Tag::Persistent => {
                self.persistent = Some(match &arg {
                    None => DEFAULT_PERSISTENCE_TIMEOUT,
                    Some(text) => parse_timeout(text, 1)?,
                });
            }
            Tag::Netmask => self.netmask = Some(value),
            Tag::RealServer => {
                let server =
                    parse_address(&value).ok_or_else(|| illegal("real server address[:port]"))?;
                self.server = Some(server);
            }
            Tag::Masquerading => self.forward = Some(Forward::Nat),
            Tag::Ipip => self.forward = Some(Forward::Tun),
            Tag::Gatewaying => self.forward = Some(Forward::Dr),
            Tag::Weight => {
                let weight =
                    c_number(&value, 0, i64::from(MAX_WEIGHT)).ok_or_else(|| illegal("weight"))?;
                self.weight = Some(weight as u32);
            }
            Tag::UThreshold => {
                let upper = c_number(&value, 0, i64::from(MAX_THRESHOLD))
                    .ok_or_else(|| illegal("u_threshold"))?;
                self.upper = Some(upper as u32);
            }
            Tag::LThreshold => {
                let lower = c_number(&value, 0, i64::from(MAX_THRESHOLD))
                    .ok_or_else(|| illegal("l_threshold"))?;
                self.lower = Some(lower as u32);
            }
            Tag::McastInterface => self.mcast_interface = Some(value),
            Tag::Syncid => {
                let syncid = c_number(&value, 0, 255).ok_or_else(|| illegal("syncid"))?;
                self.syncid = Some(syncid as u8);
            }
            Tag::Numeric => self.format.numeric = true,
            Tag::Stats => self.format.stats = true,
            Tag::Rate => self.format.rate = true,
            Tag::Thresholds => self.format.thresholds = true,
            Tag::PersistentConn => self.format.persistent_conn = true,
            Tag::NoSort => self.format.nosort = true,
            Tag::Exact => self.format.exact = true,
            Tag::Pe => self.pe = Some(value),
            Tag::SchedFlags => self.sched_flags = Some(value),
            // Recorded in `given` only.
            Tag::Connection | Tag::Timeout | Tag::Daemon | Tag::Ops | Tag::Sort => {}
            // A command after the first option.
            Tag::Add
            | Tag::Edit
            | Tag::Delete
            | Tag::Clear
            | Tag::List
            | Tag::Zero
            | Tag::AddDest
            | Tag::EditDest
            | Tag::DeleteDest
            | Tag::Set
            | Tag::Help
            | Tag::Version
            | Tag::Restore
            | Tag::Save
            | Tag::StartDaemon
            | Tag::StopDaemon => {
                return Err(AdmError::usage(format!("invalid option `{spelled}'")));
            }
        }
        Ok(())
    }

    /// ipvsadm's `generic_opt_check`, columns in table order.
    fn check_legal(&self, cmd: Cmd) -> Result<(), AdmError> {
        let legal = cmd.legal_options();
        let mut exclusive: Option<usize> = None;
        for (column, (&rule, &given)) in legal.iter().zip(self.given.iter()).enumerate() {
            let name = OPTION_NAMES[column];
            match (rule, given) {
                (b'+', false) => {
                    return Err(AdmError::usage(format!(
                        "You need to supply the '{name}' option for the '{}' command",
                        cmd.name()
                    )))
                }
                (b'x', true) => {
                    return Err(AdmError::usage(format!(
                        "Illegal '{name}' option with the '{}' command",
                        cmd.name()
                    )))
                }
                (b'1', true) => match exclusive {
                    None => exclusive = Some(column),
                    Some(first) => {
                        return Err(AdmError::usage(format!(
                        "The option '{name}' conflicts with the '{}' option in the '{}' command",
                        OPTION_NAMES[first],
                        cmd.name()
                    )))
                    }
                },
                _ => {}
            }
        }
        Ok(())
    }

    fn service_key(&self) -> Option<ServiceKey> {
        Some(match self.service? {
            ServiceArg::Addr { protocol, ip, port } => ServiceKey::Addr {
                protocol,
                addr: SocketAddr::new(ip, port),
            },
            ServiceArg::Fwmark(mark) => ServiceKey::Fwmark {
                mark,
                family: if self.ipv6_fwmark {
                    Family::Ipv6
                } else {
                    Family::Ipv4
                },
            },
        })
    }

    fn service_spec(&self, key: ServiceKey) -> Result<ServiceSpec, AdmError> {
        let family = key.family();
        let netmask = match &self.netmask {
            None => Netmask::host(family),
            Some(text) => match family {
                Family::Ipv4 => Netmask::Ipv4(text.parse().map_err(|_| {
                    AdmError::usage(format!(
                        "illegal virtual server persistent mask specified: -M {text}"
                    ))
                })?),
                Family::Ipv6 => Netmask::PrefixLen(c_number(text, 1, 128).ok_or_else(|| {
                    AdmError::usage(format!("illegal ipv6 netmask specified: -M {text}"))
                })? as u8),
            },
        };
        let spec = ServiceSpec {
            key,
            scheduler: self
                .scheduler
                .clone()
                .unwrap_or_else(|| DEFAULT_SCHEDULER.to_string()),
            sched_flags: self.parsed_sched_flags()?,
            persistence: self
                .persistent
                .map(|timeout| Persistence { timeout, netmask }),
            one_packet: self.is_given("ops"),
            pe: self.pe.clone(),
        };
        spec.validate()?;
        Ok(spec)
    }

    fn parsed_sched_flags(&self) -> Result<SchedFlags, AdmError> {
        match &self.sched_flags {
            None => Ok(SchedFlags::default()),
            Some(list) => {
                SchedFlags::parse(list, self.scheduler.as_deref().unwrap_or(DEFAULT_SCHEDULER))
            }
        }
    }

    /// The real server's address; without a port, the service's.
    fn server_addr(&self, key: &ServiceKey) -> Option<SocketAddr> {
        let (ip, port) = self.server?;
        Some(SocketAddr::new(ip, port.unwrap_or(key.port())))
    }

    fn dest_spec(&self, key: &ServiceKey) -> Option<DestSpec> {
        Some(DestSpec {
            addr: self.server_addr(key)?,
            forward: self.forward.unwrap_or(Forward::Dr),
            weight: self.weight.unwrap_or(1),
            upper_threshold: self.upper.unwrap_or(0),
            lower_threshold: self.lower.unwrap_or(0),
        })
    }

    /// ipvsadm's extra rule for `-L`.
    fn check_list_conflicts(&self) -> Result<(), AdmError> {
        let spelled = |names: &[&str]| -> Vec<String> {
            names
                .iter()
                .filter_map(|name| {
                    let column = OPTION_NAMES.iter().position(|n| n == name)?;
                    self.spelled[column].clone()
                })
                .collect()
        };
        let listings = spelled(&["connection", "timeout", "daemon"]);
        let formats = spelled(&["stats", "rate", "thresholds"]);
        let settings = spelled(&["timeout", "daemon"]);
        let persistent = spelled(&["persistent-conn"]);
        let clash = if !listings.is_empty() && !formats.is_empty() {
            Some((&listings[0], &formats[0]))
        } else if !settings.is_empty() && !persistent.is_empty() {
            Some((&settings[0], &persistent[0]))
        } else {
            None
        };
        match clash {
            Some((a, b)) => Err(AdmError::usage(format!(
                "options conflicts in the list command: {a} with {b}"
            ))),
            None => Ok(()),
        }
    }
}

/// Parses a command line (without the program name).
pub fn parse(argv: &[String]) -> Result<Command, AdmError> {
    if argv.is_empty() {
        return Ok(Command::List(ListRequest::default()));
    }
    let mut tokens = Tokens::new(argv);
    let first = match tokens.next_option() {
        Some(Ok(found)) => found,
        _ => return Err(try_help()),
    };
    let mut daemon_state = None;
    let cmd = match first.tag {
        Tag::Add => Cmd::Add,
        Tag::Edit => Cmd::Edit,
        Tag::Delete => Cmd::Delete,
        Tag::Clear => Cmd::Flush,
        Tag::List => Cmd::List,
        Tag::Zero => Cmd::Zero,
        Tag::AddDest => Cmd::AddDest,
        Tag::EditDest => Cmd::EditDest,
        Tag::DeleteDest => Cmd::DeleteDest,
        Tag::Set => Cmd::Timeout,
        Tag::Restore => Cmd::Restore,
        Tag::Save => Cmd::Save,
        Tag::Help => return Ok(Command::Help),
        Tag::Version => return Ok(Command::Version),
        Tag::StartDaemon | Tag::StopDaemon => {
            let start = first.tag == Tag::StartDaemon;
            daemon_state = Some(match first.arg.as_deref() {
                Some("master") => SyncState::Master,
                Some("backup") => SyncState::Backup,
                other => {
                    let which = if start {
                        "start-daemon parameter"
                    } else {
                        "start_daemon"
                    };
                    return Err(AdmError::usage(format!(
                        "illegal {which} specified: {}",
                        other.unwrap_or_default()
                    )));
                }
            });
            if start {
                Cmd::StartDaemon
            } else {
                Cmd::StopDaemon
            }
        }
        _ => return Err(try_help()),
    };

    let mut options = Options::default();
    while let Some(next) = tokens.next_option() {
        let found =
            next.map_err(|(spelled, why)| AdmError::refused(format!("{spelled}: {why}")))?;
        options.take(found)?;
    }

    let mut positionals = std::mem::take(&mut tokens.positionals).into_iter();
    let mut timeouts = Timeouts::default();
    if cmd == Cmd::Timeout {
        let (Some(tcp), Some(tcpfin), Some(udp)) =
            (positionals.next(), positionals.next(), positionals.next())
        else {
            return Err(AdmError::usage("--set option requires 3 timeout values"));
        };
        timeouts = Timeouts {
            tcp: parse_timeout(&tcp, 0)?,
            tcpfin: parse_timeout(&tcpfin, 0)?,
            udp: parse_timeout(&udp, 0)?,
        };
    }
    if let Some(extra) = positionals.next() {
        return Err(AdmError::usage(format!("unexpected argument {extra}")));
    }
    // ipvsadm parses -b after the other options, before the table check.
    options.parsed_sched_flags()?;
    options.check_legal(cmd)?;

    let key = options.service_key();
    // The table made service-address compulsory for these commands.
    let need_key = || key.ok_or_else(try_help);
    let need_dest = |key: &ServiceKey| options.dest_spec(key).ok_or_else(try_help);
    Ok(match cmd {
        Cmd::Add => Command::AddService(options.service_spec(need_key()?)?),
        Cmd::Edit => Command::EditService(options.service_spec(need_key()?)?),
        Cmd::Delete => Command::DeleteService(need_key()?),
        Cmd::Flush => Command::Clear,
        Cmd::AddDest | Cmd::EditDest => {
            let key = need_key()?;
            let spec = need_dest(&key)?.for_service(&key)?;
            if cmd == Cmd::AddDest {
                Command::AddDest(key, spec)
            } else {
                Command::EditDest(key, spec)
            }
        }
        Cmd::DeleteDest => {
            let key = need_key()?;
            Command::DeleteDest(key, need_dest(&key)?.addr)
        }
        Cmd::List => {
            options.check_list_conflicts()?;
            let what = if options.is_given("connection") {
                ListWhat::Connections
            } else if let Some(key) = key {
                ListWhat::Service(key)
            } else if options.is_given("timeout") {
                ListWhat::Timeouts
            } else if options.is_given("daemon") {
                ListWhat::Daemons
            } else {
                ListWhat::Services
            };
            Command::List(ListRequest {
                what,
                format: options.format,
            })
        }
        Cmd::Timeout => Command::SetTimeouts(timeouts),
        Cmd::Restore => Command::Restore,
        Cmd::Save => Command::Save,
        Cmd::Zero => Command::Zero(key),
        Cmd::StartDaemon | Cmd::StopDaemon => {
            let spec = DaemonSpec {
                state: daemon_state.unwrap_or(SyncState::Master),
                mcast_interface: options.mcast_interface.clone(),
                syncid: options.syncid,
            };
            if cmd == Cmd::StartDaemon {
                Command::StartDaemon(spec)
            } else {
                Command::StopDaemon(spec)
            }
        }
    })
}

/// `-h`'s text.
pub fn usage() -> String {
    let p = PROGRAM;
    let version = version();
    format!(
        "{version}
Usage:
  {p} -A|E virtual-service [-s scheduler] [-p [timeout]] [-M netmask] [-o] [-b sched-flags]
  {p} -D virtual-service
  {p} -C
  {p} -R
  {p} -S [-n]
  {p} -a|e virtual-service -r server-address [-g|i|m] [-w weight] [-x upper] [-y lower]
  {p} -d virtual-service -r server-address
  {p} -L|l [virtual-service] [options]
  {p} -Z [virtual-service]
  {p} --set tcp tcpfin udp
  {p} -h

Commands (long or short):
  --add-service     -A        add a virtual service
  --edit-service    -E        change a virtual service (unset options revert to defaults)
  --delete-service  -D        delete a virtual service and its real servers
  --clear           -C        delete every virtual service
  --restore         -R        read rules (as --save writes them) from standard input
  --save            -S        write the rules to standard output
  --add-server      -a        add a real server to a virtual service
  --edit-server     -e        change a real server (unset options revert to defaults)
  --delete-server   -d        delete a real server
  --list            -L|-l     list the table
  --zero            -Z        zero the counters of one or all services
  --set tcp tcpfin udp        set the connection timeouts in seconds (0: unchanged)
  --help            -h        this text
  --version         -v        the version

virtual-service:
  --tcp-service|-t  address[:port]   a TCP service
  --udp-service|-u  address[:port]   a UDP service
  --fwmark-service|-f mark           a firewall-mark service (an rvs service group)

Options:
  --ipv6         -6                   the firewall-mark service is IPv6 (after -f)
  --scheduler    -s scheduler         one of rr|wrr|lc|wlc|lblc|lblcr|dh|sh|sed|nq|fo|ovf|mh|twos,
                                      {DEFAULT_SCHEDULER} when not given
  --persistent   -p [timeout]         persistent service ({DEFAULT_PERSISTENCE_TIMEOUT} s when no timeout)
  --netmask      -M netmask           persistence granularity (IPv6: a prefix length)
  --ops          -o                   one-packet scheduling (UDP)
  --sched-flags  -b flags             sh-fallback,sh-port or mh-fallback,mh-port
  --real-server  -r address[:port]    real server (the service's port when none)
  --gatewaying   -g                   direct routing (the default)
  --ipip         -i                   IP-in-IP tunnelling
  --masquerading -m                   NAT
  --weight       -w weight            0..65535, 1 when not given
  --u-threshold  -x uthreshold        upper connection threshold
  --l-threshold  -y lthreshold        lower connection threshold
  --connection   -c                   list the connections
  --timeout                           list the timeouts (tcp tcpfin udp)
  --daemon                            list the sync daemons (rvs has none)
  --stats                             list the counters
  --rate                              list the rates
  --thresholds                        list the thresholds
  --persistent-conn                   list the persistent connections
  --exact                -X           exact numbers, not K/M/G/T
  --nosort                            list in the order of creation
  --sort                              the default, accepted for compatibility
  --numeric      -n                   numeric output (rvsadm never resolves names)
"
    )
}

/// `-v`'s text.
pub fn version() -> String {
    format!(
        "{PROGRAM} v{} (ipvsadm 1.31 compatible, IPVS v{})",
        env!("CARGO_PKG_VERSION"),
        super::model::IPVS_VERSION
    )
}
