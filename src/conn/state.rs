//! IPVS connection states, per-state timeouts and the TCP state machine.
//!
//! The transition tables follow the kernel's `tcp_states` in
//! `net/netfilter/ipvs/ip_vs_proto_tcp.c` (the normal tables, not the
//! `secure_tcp` ones): one table for packets from the client ("input"), one for
//! packets from the real server ("output") and one used for input while the
//! director has never seen a reply ("input only", DR and TUN forwarding).
//! A packet picks its row by flag class, RST first, then SYN, FIN, ACK; a
//! packet with none of those four flags moves the connection to CLOSE, as in
//! the kernel.

use std::fmt;

use super::Millis;

/// Connection state, with IPVS's TCP states and the single UDP state.
///
/// Discriminants are the kernel's `IP_VS_TCP_S_*` numbers for the TCP states.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[repr(u8)]
pub enum ConnState {
    /// Just created, no packet accounted yet (`NONE`).
    None = 0,
    Established = 1,
    SynSent = 2,
    SynRecv = 3,
    FinWait = 4,
    TimeWait = 5,
    Close = 6,
    CloseWait = 7,
    LastAck = 8,
    Listen = 9,
    SynAck = 10,
    /// Any non-TCP connection (ipvsadm prints `UDP`).
    Udp = 11,
}

/// Number of TCP states (columns of the transition tables).
const TCP_STATE_COUNT: usize = 11;

impl ConnState {
    /// All states, in discriminant order.
    pub const ALL: [ConnState; 12] = [
        ConnState::None,
        ConnState::Established,
        ConnState::SynSent,
        ConnState::SynRecv,
        ConnState::FinWait,
        ConnState::TimeWait,
        ConnState::Close,
        ConnState::CloseWait,
        ConnState::LastAck,
        ConnState::Listen,
        ConnState::SynAck,
        ConnState::Udp,
    ];

    /// The state's name as `ipvsadm -Lc` prints it.
    pub fn name(self) -> &'static str {
        match self {
            ConnState::None => "NONE",
            ConnState::Established => "ESTABLISHED",
            ConnState::SynSent => "SYN_SENT",
            ConnState::SynRecv => "SYN_RECV",
            ConnState::FinWait => "FIN_WAIT",
            ConnState::TimeWait => "TIME_WAIT",
            ConnState::Close => "CLOSE",
            ConnState::CloseWait => "CLOSE_WAIT",
            ConnState::LastAck => "LAST_ACK",
            ConnState::Listen => "LISTEN",
            ConnState::SynAck => "SYNACK",
            ConnState::Udp => "UDP",
        }
    }

    /// Whether the connection counts in the server's `ActiveConn`; IPVS counts
    /// only ESTABLISHED, everything else (UDP included) is `InActConn`.
    pub fn is_active(self) -> bool {
        self == ConnState::Established
    }

    /// The state a fresh connection of `protocol` starts in before its first
    /// packet is accounted: NONE for TCP, UDP for everything else.
    pub fn initial(protocol: u8) -> ConnState {
        if protocol == super::IPPROTO_TCP {
            ConnState::None
        } else {
            ConnState::Udp
        }
    }
}

impl fmt::Display for ConnState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which way a packet travels, relative to the connection.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Direction {
    /// Client to virtual service (IPVS "input").
    FromClient,
    /// Real server to client (IPVS "output"); only seen with NAT forwarding.
    FromServer,
}

/// The TCP header flags that drive the state machine.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct TcpFlags {
    pub syn: bool,
    pub ack: bool,
    pub fin: bool,
    pub rst: bool,
}

impl TcpFlags {
    pub const NONE: TcpFlags = TcpFlags::new(false, false, false, false);
    pub const SYN: TcpFlags = TcpFlags::new(true, false, false, false);
    pub const SYN_ACK: TcpFlags = TcpFlags::new(true, true, false, false);
    pub const ACK: TcpFlags = TcpFlags::new(false, true, false, false);
    pub const FIN_ACK: TcpFlags = TcpFlags::new(false, true, true, false);
    pub const RST: TcpFlags = TcpFlags::new(false, false, false, true);
    pub const RST_ACK: TcpFlags = TcpFlags::new(false, true, false, true);

    pub const fn new(syn: bool, ack: bool, fin: bool, rst: bool) -> TcpFlags {
        TcpFlags { syn, ack, fin, rst }
    }

    /// From the flags byte of a TCP header (offset 13: CWR ECE URG ACK PSH RST SYN FIN).
    pub const fn from_header_byte(b: u8) -> TcpFlags {
        TcpFlags {
            fin: b & 0x01 != 0,
            syn: b & 0x02 != 0,
            rst: b & 0x04 != 0,
            ack: b & 0x10 != 0,
        }
    }

    /// Table row for this packet: RST beats SYN beats FIN beats ACK.
    fn class(self) -> Option<usize> {
        if self.rst {
            Some(ROW_RST)
        } else if self.syn {
            Some(ROW_SYN)
        } else if self.fin {
            Some(ROW_FIN)
        } else if self.ack {
            Some(ROW_ACK)
        } else {
            Option::None
        }
    }
}

const ROW_SYN: usize = 0;
const ROW_FIN: usize = 1;
const ROW_ACK: usize = 2;
const ROW_RST: usize = 3;

type Table = [[ConnState; TCP_STATE_COUNT]; 4];

// Short names for the tables below. No transition of these (non-secure_tcp)
// tables leads to NONE or SYNACK.
const ES: ConnState = ConnState::Established;
const SS: ConnState = ConnState::SynSent;
const SR: ConnState = ConnState::SynRecv;
const FW: ConnState = ConnState::FinWait;
const TW: ConnState = ConnState::TimeWait;
const CL: ConnState = ConnState::Close;
const CW: ConnState = ConnState::CloseWait;
const LA: ConnState = ConnState::LastAck;
const LI: ConnState = ConnState::Listen;

// Rows: SYN, FIN, ACK, RST. Columns: the current state, in discriminant order
// (NONE ESTABLISHED SYN_SENT SYN_RECV FIN_WAIT TIME_WAIT CLOSE CLOSE_WAIT
// LAST_ACK LISTEN SYNACK).
const FROM_CLIENT: Table = [
    [SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SR],
    [CL, CW, SS, TW, TW, TW, CL, CW, LA, LI, TW],
    [ES, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES],
    [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, SR],
];

const FROM_SERVER: Table = [
    [SS, ES, SS, SR, SS, SS, SS, SS, SS, LI, SR],
    [TW, FW, SS, TW, FW, TW, CL, TW, LA, LI, TW],
    [ES, ES, SS, ES, FW, TW, CL, CW, LA, ES, ES],
    [CL, CL, SS, CL, CL, TW, CL, CL, CL, CL, CL],
];

const FROM_CLIENT_ONLY: Table = [
    [SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SR],
    [CL, FW, SS, TW, FW, TW, CL, CW, LA, LI, TW],
    [ES, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES],
    [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, CL],
];

fn lookup(table: &Table, current: ConnState, flags: TcpFlags) -> ConnState {
    if current == ConnState::Udp {
        return ConnState::Udp;
    }
    match flags.class() {
        Some(row) => table[row][current as usize],
        Option::None => ConnState::Close,
    }
}

/// IPVS's TCP transition for a packet seen in both-directions mode (NAT), or
/// for any packet from the server.
pub fn next_tcp_state(current: ConnState, dir: Direction, flags: TcpFlags) -> ConnState {
    match dir {
        Direction::FromClient => lookup(&FROM_CLIENT, current, flags),
        Direction::FromServer => lookup(&FROM_SERVER, current, flags),
    }
}

/// IPVS's transition for a client packet on a connection whose replies bypass
/// the director (DR, TUN: the kernel's `IP_VS_CONN_F_NOOUTPUT`). Here a client
/// FIN on an established connection leads to FIN_WAIT rather than CLOSE_WAIT.
pub fn next_tcp_state_input_only(current: ConnState, flags: TcpFlags) -> ConnState {
    lookup(&FROM_CLIENT_ONLY, current, flags)
}

/// Idle timeout per state, in milliseconds.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Timeouts {
    pub none: Millis,
    pub established: Millis,
    pub syn_sent: Millis,
    pub syn_recv: Millis,
    pub fin_wait: Millis,
    pub time_wait: Millis,
    pub close: Millis,
    pub close_wait: Millis,
    pub last_ack: Millis,
    pub listen: Millis,
    pub synack: Millis,
    pub udp: Millis,
}

const SEC: Millis = 1000;

impl Default for Timeouts {
    /// The kernel's defaults.
    fn default() -> Self {
        Timeouts {
            none: 2 * SEC,
            established: 900 * SEC,
            syn_sent: 120 * SEC,
            syn_recv: 60 * SEC,
            fin_wait: 120 * SEC,
            time_wait: 120 * SEC,
            close: 10 * SEC,
            close_wait: 60 * SEC,
            last_ack: 30 * SEC,
            listen: 120 * SEC,
            synack: 120 * SEC,
            udp: 300 * SEC,
        }
    }
}

impl Timeouts {
    /// Timeout of `state`.
    pub fn get(&self, state: ConnState) -> Millis {
        match state {
            ConnState::None => self.none,
            ConnState::Established => self.established,
            ConnState::SynSent => self.syn_sent,
            ConnState::SynRecv => self.syn_recv,
            ConnState::FinWait => self.fin_wait,
            ConnState::TimeWait => self.time_wait,
            ConnState::Close => self.close,
            ConnState::CloseWait => self.close_wait,
            ConnState::LastAck => self.last_ack,
            ConnState::Listen => self.listen,
            ConnState::SynAck => self.synack,
            ConnState::Udp => self.udp,
        }
    }

    /// Set the timeout of `state`.
    pub fn set(&mut self, state: ConnState, timeout: Millis) {
        let slot = match state {
            ConnState::None => &mut self.none,
            ConnState::Established => &mut self.established,
            ConnState::SynSent => &mut self.syn_sent,
            ConnState::SynRecv => &mut self.syn_recv,
            ConnState::FinWait => &mut self.fin_wait,
            ConnState::TimeWait => &mut self.time_wait,
            ConnState::Close => &mut self.close,
            ConnState::CloseWait => &mut self.close_wait,
            ConnState::LastAck => &mut self.last_ack,
            ConnState::Listen => &mut self.listen,
            ConnState::SynAck => &mut self.synack,
            ConnState::Udp => &mut self.udp,
        };
        *slot = timeout;
    }

    /// `ipvsadm --set tcp tcpfin udp`, in seconds: tcp sets ESTABLISHED,
    /// tcpfin sets FIN_WAIT, udp sets UDP; 0 leaves a value unchanged.
    pub fn set_ipvsadm(&mut self, tcp_secs: u32, tcpfin_secs: u32, udp_secs: u32) {
        if tcp_secs != 0 {
            self.established = Millis::from(tcp_secs) * SEC;
        }
        if tcpfin_secs != 0 {
            self.fin_wait = Millis::from(tcpfin_secs) * SEC;
        }
        if udp_secs != 0 {
            self.udp = Millis::from(udp_secs) * SEC;
        }
    }

    /// `(tcp, tcpfin, udp)` in whole seconds, as `ipvsadm -L --timeout` shows.
    pub fn ipvsadm(&self) -> (u64, u64, u64) {
        (self.established / SEC, self.fin_wait / SEC, self.udp / SEC)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Direction::{FromClient, FromServer};

    fn run(start: ConnState, pkts: &[(Direction, TcpFlags)]) -> Vec<ConnState> {
        let mut s = start;
        pkts.iter()
            .map(|&(d, f)| {
                s = next_tcp_state(s, d, f);
                s
            })
            .collect()
    }

    #[test]
    fn handshake_data_server_closes_first() {
        let got = run(
            ConnState::None,
            &[
                (FromClient, TcpFlags::SYN),
                (FromServer, TcpFlags::SYN_ACK),
                (FromClient, TcpFlags::ACK),
                (FromClient, TcpFlags::ACK), // data
                (FromServer, TcpFlags::ACK), // data
                (FromServer, TcpFlags::FIN_ACK),
                (FromClient, TcpFlags::ACK),
                (FromClient, TcpFlags::FIN_ACK),
                (FromServer, TcpFlags::ACK),
            ],
        );
        use ConnState::*;
        assert_eq!(
            got,
            [
                SynRecv,
                SynRecv,
                Established,
                Established,
                Established,
                FinWait,
                FinWait,
                TimeWait,
                TimeWait
            ]
        );
    }

    #[test]
    fn handshake_data_client_closes_first() {
        // The kernel's input table sends a client FIN on ESTABLISHED to
        // CLOSE_WAIT; the server's FIN then leads to TIME_WAIT.
        let got = run(
            ConnState::None,
            &[
                (FromClient, TcpFlags::SYN),
                (FromServer, TcpFlags::SYN_ACK),
                (FromClient, TcpFlags::ACK),
                (FromClient, TcpFlags::FIN_ACK),
                (FromServer, TcpFlags::ACK),
                (FromServer, TcpFlags::FIN_ACK),
                (FromClient, TcpFlags::ACK),
            ],
        );
        use ConnState::*;
        assert_eq!(
            got,
            [
                SynRecv,
                SynRecv,
                Established,
                CloseWait,
                CloseWait,
                TimeWait,
                TimeWait
            ]
        );
    }

    #[test]
    fn input_only_close_goes_to_fin_wait() {
        let mut s = ConnState::None;
        let mut seen = vec![];
        for f in [
            TcpFlags::SYN,
            TcpFlags::ACK,
            TcpFlags::ACK,
            TcpFlags::FIN_ACK,
            TcpFlags::ACK,
        ] {
            s = next_tcp_state_input_only(s, f);
            seen.push(s);
        }
        use ConnState::*;
        assert_eq!(seen, [SynRecv, Established, Established, FinWait, FinWait]);
        // A client RST on SYNACK goes to CLOSE here, unlike the NAT table.
        assert_eq!(next_tcp_state_input_only(SynAck, TcpFlags::RST), Close);
        assert_eq!(next_tcp_state(SynAck, FromClient, TcpFlags::RST), SynRecv);
    }

    #[test]
    fn rst_closes() {
        for dir in [FromClient, FromServer] {
            for f in [TcpFlags::RST, TcpFlags::RST_ACK] {
                assert_eq!(
                    next_tcp_state(ConnState::Established, dir, f),
                    ConnState::Close
                );
                assert_eq!(next_tcp_state(ConnState::FinWait, dir, f), ConnState::Close);
            }
        }
        assert_eq!(
            next_tcp_state_input_only(ConnState::Established, TcpFlags::RST),
            ConnState::Close
        );
        // RST beats SYN.
        let syn_rst = TcpFlags::new(true, false, false, true);
        assert_eq!(
            next_tcp_state(ConnState::Established, FromClient, syn_rst),
            ConnState::Close
        );
        // Kernel quirks kept: client RST during SYN_RECV stays SYN_RECV,
        // server RST in TIME_WAIT stays TIME_WAIT.
        assert_eq!(
            next_tcp_state(ConnState::SynRecv, FromClient, TcpFlags::RST),
            ConnState::SynRecv
        );
        assert_eq!(
            next_tcp_state(ConnState::TimeWait, FromServer, TcpFlags::RST),
            ConnState::TimeWait
        );
    }

    #[test]
    fn flag_priority_and_no_flags() {
        // SYN beats FIN beats ACK.
        let syn_fin = TcpFlags::new(true, true, true, false);
        assert_eq!(
            next_tcp_state(ConnState::Established, FromServer, syn_fin),
            ConnState::Established
        );
        assert_eq!(
            next_tcp_state(ConnState::Established, FromServer, TcpFlags::FIN_ACK),
            ConnState::FinWait
        );
        // No SYN/FIN/ACK/RST at all: CLOSE, whatever the state.
        for s in ConnState::ALL
            .iter()
            .copied()
            .filter(|&s| s != ConnState::Udp)
        {
            assert_eq!(
                next_tcp_state(s, FromClient, TcpFlags::NONE),
                ConnState::Close
            );
            assert_eq!(
                next_tcp_state_input_only(s, TcpFlags::NONE),
                ConnState::Close
            );
        }
        // UDP is never touched by the TCP table.
        assert_eq!(
            next_tcp_state(ConnState::Udp, FromClient, TcpFlags::SYN),
            ConnState::Udp
        );
    }

    #[test]
    fn mid_stream_ack_picks_up_connection() {
        // Newer kernels (sloppy TCP support) take an ACK on a NONE connection
        // straight to ESTABLISHED.
        assert_eq!(
            next_tcp_state(ConnState::None, FromClient, TcpFlags::ACK),
            ConnState::Established
        );
        assert_eq!(
            next_tcp_state_input_only(ConnState::None, TcpFlags::ACK),
            ConnState::Established
        );
        assert_eq!(
            next_tcp_state(ConnState::None, FromClient, TcpFlags::FIN_ACK),
            ConnState::Close
        );
    }

    #[test]
    fn header_byte_decoding() {
        assert_eq!(TcpFlags::from_header_byte(0x02), TcpFlags::SYN);
        assert_eq!(TcpFlags::from_header_byte(0x12), TcpFlags::SYN_ACK);
        assert_eq!(TcpFlags::from_header_byte(0x18), TcpFlags::ACK); // PSH|ACK
        assert_eq!(TcpFlags::from_header_byte(0x11), TcpFlags::FIN_ACK);
        assert_eq!(TcpFlags::from_header_byte(0x04), TcpFlags::RST);
        assert_eq!(TcpFlags::from_header_byte(0x14), TcpFlags::RST_ACK);
        assert_eq!(TcpFlags::from_header_byte(0xd8), TcpFlags::ACK); // CWR|ECE|ACK|PSH
        assert_eq!(TcpFlags::from_header_byte(0xe8), TcpFlags::NONE); // CWR|ECE|URG|PSH
    }

    #[test]
    fn names_and_activity() {
        let names: Vec<_> = ConnState::ALL.iter().map(|s| s.name()).collect();
        assert_eq!(
            names,
            [
                "NONE",
                "ESTABLISHED",
                "SYN_SENT",
                "SYN_RECV",
                "FIN_WAIT",
                "TIME_WAIT",
                "CLOSE",
                "CLOSE_WAIT",
                "LAST_ACK",
                "LISTEN",
                "SYNACK",
                "UDP"
            ]
        );
        for (i, s) in ConnState::ALL.iter().enumerate() {
            assert_eq!(*s as usize, i);
            assert_eq!(s.is_active(), *s == ConnState::Established);
        }
        assert_eq!(ConnState::SynRecv.to_string(), "SYN_RECV");
        assert_eq!(ConnState::initial(6), ConnState::None);
        assert_eq!(ConnState::initial(17), ConnState::Udp);
    }

    #[test]
    fn default_timeouts_are_the_kernels() {
        let t = Timeouts::default();
        let secs: Vec<_> = ConnState::ALL.iter().map(|&s| t.get(s) / 1000).collect();
        assert_eq!(secs, [2, 900, 120, 60, 120, 120, 10, 60, 30, 120, 120, 300]);
        assert_eq!(t.ipvsadm(), (900, 120, 300));
    }

    #[test]
    fn ipvsadm_set_and_per_state_set() {
        let mut t = Timeouts::default();
        t.set_ipvsadm(3600, 0, 0);
        assert_eq!(t.ipvsadm(), (3600, 120, 300));
        t.set_ipvsadm(0, 30, 10);
        assert_eq!(t.ipvsadm(), (3600, 30, 10));
        assert_eq!(
            t.get(ConnState::TimeWait),
            120_000,
            "tcpfin is FIN_WAIT only"
        );
        for s in ConnState::ALL {
            t.set(s, 7 + s as Millis);
            assert_eq!(t.get(s), 7 + s as Millis);
        }
    }
}
