//! The per-worker connection table and IPVS's connection state tracking.
//!
//! Each worker core owns one [`ConnTable`]: no sharing, no locks. After
//! [`ConnTable::with_capacity`] nothing here allocates, locks, formats or
//! panics. Time is always a parameter ([`Millis`] on a monotonic clock).
//!
//! Typical packet path:
//!
//! * client → VIP: [`ConnTable::find_from_client`]; on a miss schedule a real
//!   server, build the record with [`Conn::new`] and insert it with
//!   [`ConnTable::insert_first_packet`], which also accounts the packet (a TCP
//!   SYN takes the connection from NONE to SYN_RECV, as IPVS does);
//! * real server → client (NAT): [`ConnTable::find_from_server`];
//! * every packet of a known connection: [`ConnTable::on_packet`], which returns
//!   `(old, new)` state so the caller can move the connection between the
//!   server's active and inactive counts ([`ConnState::is_active`]);
//! * every loop iteration: [`ConnTable::expire`] with a small budget.

mod persist;
mod state;
mod table;

use std::fmt;
use std::net::Ipv4Addr;

pub use persist::{PersistTable, Template, TemplateKey};
pub use state::{
    next_tcp_state, next_tcp_state_input_only, ConnState, Direction, TcpFlags, Timeouts,
};
pub use table::{ConnTable, Iter, BYTES_PER_CONN, INDEX_SLOTS_PER_CONN, MAX_CAPACITY};

/// Milliseconds on a monotonic clock.
pub type Millis = u64;

/// IP protocol number of TCP.
pub const IPPROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const IPPROTO_UDP: u8 = 17;

/// Bit of [`Conn::flags`] owned by this module: the director does not see the
/// server's replies (DR, TUN), so client packets use the input-only TCP table.
/// The caller sets it when creating such a connection; [`Conn::on_packet`]
/// clears it on the first packet from the server, like the kernel's
/// `IP_VS_CONN_F_NOOUTPUT`. Bits 0..=6 are free for the caller.
pub const CONN_F_NO_OUTPUT: u8 = 1 << 7;

/// A packet's 5-tuple as it appears on the wire.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct FlowKey {
    pub protocol: u8,
    pub src_addr: Ipv4Addr,
    pub src_port: u16,
    pub dst_addr: Ipv4Addr,
    pub dst_port: u16,
}

/// One connection: client ↔ virtual service ↔ real server.
///
/// 40 bytes. Do not change the address, port or protocol fields of a record
/// that is in a table (through [`ConnTable::get_mut`]): they are its index
/// keys.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Conn {
    pub protocol: u8,
    pub client_addr: Ipv4Addr,
    pub client_port: u16,
    pub virtual_addr: Ipv4Addr,
    pub virtual_port: u16,
    pub real_addr: Ipv4Addr,
    pub real_port: u16,
    /// Stable id of the real server, assigned by the control plane.
    pub dest_id: u32,
    pub state: ConnState,
    /// When the connection becomes idle-expired; it is expired once
    /// `now >= expires_at`.
    pub expires_at: Millis,
    /// Bit 7 is [`CONN_F_NO_OUTPUT`]; bits 0..=6 belong to the caller
    /// (forwarding method etc.).
    pub flags: u8,
}

impl Conn {
    /// A fresh connection for a packet whose tuple is `client` (client → VIP),
    /// sent to `real_addr:real_port`. The state is [`ConnState::initial`]
    /// (NONE for TCP), `expires_at` and `flags` are 0: account the first
    /// packet with [`ConnTable::insert_first_packet`] or
    /// [`ConnTable::on_packet`].
    pub fn new(client: &FlowKey, real_addr: Ipv4Addr, real_port: u16, dest_id: u32) -> Conn {
        Conn {
            protocol: client.protocol,
            client_addr: client.src_addr,
            client_port: client.src_port,
            virtual_addr: client.dst_addr,
            virtual_port: client.dst_port,
            real_addr,
            real_port,
            dest_id,
            state: ConnState::initial(client.protocol),
            expires_at: 0,
            flags: 0,
        }
    }

    /// The tuple of the client's packets: client → VIP.
    pub fn client_key(&self) -> FlowKey {
        FlowKey {
            protocol: self.protocol,
            src_addr: self.client_addr,
            src_port: self.client_port,
            dst_addr: self.virtual_addr,
            dst_port: self.virtual_port,
        }
    }

    /// The tuple of the server's replies: real server → client.
    pub fn server_key(&self) -> FlowKey {
        FlowKey {
            protocol: self.protocol,
            src_addr: self.real_addr,
            src_port: self.real_port,
            dst_addr: self.client_addr,
            dst_port: self.client_port,
        }
    }

    /// Account one packet: run IPVS's transition (TCP) or stay UDP (every
    /// other protocol), and set `expires_at = now + timeout(new state)`.
    /// Returns `(old, new)`.
    pub fn on_packet(
        &mut self,
        dir: Direction,
        flags: TcpFlags,
        now: Millis,
        timeouts: &Timeouts,
    ) -> (ConnState, ConnState) {
        let old = self.state;
        let new = if self.protocol == IPPROTO_TCP {
            if self.flags & CONN_F_NO_OUTPUT == 0 {
                next_tcp_state(old, dir, flags)
            } else {
                match dir {
                    Direction::FromServer => {
                        self.flags &= !CONN_F_NO_OUTPUT;
                        next_tcp_state(old, dir, flags)
                    }
                    Direction::FromClient => next_tcp_state_input_only(old, flags),
                }
            }
        } else {
            ConnState::Udp
        };
        self.state = new;
        self.expires_at = now.saturating_add(timeouts.get(new));
        (old, new)
    }

    /// Whether the connection has expired at `now`.
    pub fn is_expired(&self, now: Millis) -> bool {
        now >= self.expires_at
    }

    /// The record free table slots hold.
    pub(crate) const EMPTY: Conn = Conn {
        protocol: 0,
        client_addr: Ipv4Addr::UNSPECIFIED,
        client_port: 0,
        virtual_addr: Ipv4Addr::UNSPECIFIED,
        virtual_port: 0,
        real_addr: Ipv4Addr::UNSPECIFIED,
        real_port: 0,
        dest_id: 0,
        state: ConnState::None,
        expires_at: 0,
        flags: 0,
    };
}

/// Handle of a connection in one [`ConnTable`]: its slot number. A handle
/// stays valid until the connection is removed or expires; afterwards the slot
/// may be reused by a new connection.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct ConnId(u32);

impl ConnId {
    /// The slot number, `0..capacity`.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// The table holds `capacity` connections already; the caller counts a drop.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct TableFull;

impl fmt::Display for TableFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("connection table full")
    }
}

impl std::error::Error for TableFull {}
