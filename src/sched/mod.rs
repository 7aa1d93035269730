//! Real-server schedulers: small plug-ins behind one trait, one file each.
//!
//! A scheduler instance belongs to one worker and one service. It sees the
//! service's servers as a slice of [`ServerLoad`] (weight and this worker's
//! connection counts) and returns the index of the chosen server, or `None`
//! when no server may take new connections (all weights 0). Picks happen on
//! the packet path: they must not allocate, lock or panic.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// What a scheduler may look at for one server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServerLoad {
    /// 0..=65535; 0 means "no new connections".
    pub weight: u32,
    /// Connections in ESTABLISHED state (IPVS `activeconns`).
    pub active: u32,
    /// All other connections (IPVS `inactconns`).
    pub inactive: u32,
}

/// The new flow being scheduled (hashing schedulers use it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowInfo {
    pub protocol: u8,
    pub client_addr: Ipv4Addr,
    pub client_port: u16,
    pub virtual_addr: Ipv4Addr,
    pub virtual_port: u16,
}

pub trait Scheduler: Send {
    /// Name as ipvsadm prints it.
    fn name(&self) -> &'static str;
    /// Index into `servers` of the server for a new connection.
    fn pick(&mut self, servers: &[ServerLoad], flow: &FlowInfo) -> Option<usize>;
}

/// Scheduler names accepted in configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SchedulerKind {
    Rr,
    Wrr,
    Lc,
    Wlc,
}

impl SchedulerKind {
    pub const ALL: &'static [SchedulerKind] = &[Self::Rr, Self::Wrr, Self::Lc, Self::Wlc];

    pub fn name(self) -> &'static str {
        match self {
            Self::Rr => "rr",
            Self::Wrr => "wrr",
            Self::Lc => "lc",
            Self::Wlc => "wlc",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| k.name() == name)
    }

    /// A fresh scheduler of this kind (control path: allocates).
    pub fn build(self) -> Box<dyn Scheduler> {
        todo_scheduler(self)
    }
}

// Placeholder until the scheduler files land.
fn todo_scheduler(_kind: SchedulerKind) -> Box<dyn Scheduler> {
    unimplemented!("schedulers not yet written")
}

impl fmt::Display for SchedulerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SchedulerKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_name(s).ok_or_else(|| {
            let names: Vec<&str> = Self::ALL.iter().map(|k| k.name()).collect();
            format!(
                "unknown scheduler {s:?} (expected one of: {})",
                names.join(", ")
            )
        })
    }
}
