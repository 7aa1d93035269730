//! Fixed-capacity connection table with two lookup keys per connection.
//!
//! Layout, all allocated once by [`ConnTable::with_capacity`]:
//!
//! * `conns`: a slab of `capacity` [`Conn`] records (40 bytes each). A
//!   [`ConnId`] is a slot number. Free slots are chained into a LIFO free list
//!   through their otherwise unused `dest_id` field.
//! * `live`: one bit per slot, set while the slot holds a connection (used by
//!   the expiry sweep and by iteration).
//! * `index`: an open-addressing hash index of `4 × capacity` 32-bit entries,
//!   so it is never more than half full (each connection has two keys). An
//!   entry packs `slot + 1` (0 means empty), one bit telling which key of the
//!   connection it stands for (client → VIP or server → client) and, in the
//!   remaining high bits, a tag taken from the key's hash, so a probe only
//!   reads a `Conn` when the tag matches. Home positions are mapped onto the
//!   index with a multiply-shift (any size works, no power-of-two rounding);
//!   collisions probe linearly and deletion shifts later entries back, so
//!   there are no tombstones and lookups never degrade with churn.
//!
//! Memory: 40 + 4 × 4 + 1/8 = 56.125 bytes per connection of capacity.
//!
//! The hash is a keyed multiply-fold mixer (two rounds of a 64×64→128-bit
//! multiply folded to 64 bits) with four keys derived from the caller's seed.
//! Without the seed a remote client cannot aim its tuples at one bucket. It is
//! not a cryptographic PRF: pick the seed at random per process.

use std::fmt;
use std::mem::size_of;

use super::{Conn, ConnId, ConnState, Direction, FlowKey, Millis, TableFull, TcpFlags, Timeouts};

/// Largest capacity [`ConnTable::with_capacity`] accepts (268 M connections).
pub const MAX_CAPACITY: usize = 1 << 28;

/// Index entries per connection of capacity (two keys at load ≤ 1/2).
pub const INDEX_SLOTS_PER_CONN: usize = 4;

/// Bytes per connection of capacity, rounded up: the record, its index entries
/// and (rounded up to a byte) its live bit.
pub const BYTES_PER_CONN: usize = size_of::<Conn>() + INDEX_SLOTS_PER_CONN * size_of::<u32>() + 1;

// The per-connection memory budget is 64 bytes.
const _: () = assert!(BYTES_PER_CONN <= 64);

/// End of the free list.
const NIL: u32 = u32::MAX;

/// Which key of a connection an index entry stands for.
const CLIENT: u32 = 0;
const SERVER: u32 = 1;

/// The per-worker connection table. See the module documentation.
pub struct ConnTable {
    conns: Vec<Conn>,
    live: Vec<u64>,
    index: Vec<u32>,
    free_head: u32,
    len: usize,
    /// Next slot the expiry sweep examines.
    cursor: usize,
    /// Bits of an index entry holding `slot + 1`; the side bit sits just
    /// above them and the tag fills the rest.
    slot_bits: u32,
    slot_mask: u32,
    keys: [u64; 4],
    /// Test hook: every key hashes to this value (worst-case collisions).
    #[cfg(test)]
    fixed_hash: Option<u64>,
}

#[inline]
pub(super) fn fold_mul(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

pub(super) fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[inline]
fn key_of(c: &Conn, side: u32) -> FlowKey {
    if side == CLIENT {
        c.client_key()
    } else {
        c.server_key()
    }
}

impl ConnTable {
    /// A table for up to `max_conns` connections, allocated here once
    /// ([`BYTES_PER_CONN`] bytes per connection). `hash_seed` keys the hash;
    /// use a random value. Panics if `max_conns > MAX_CAPACITY`.
    pub fn with_capacity(max_conns: usize, hash_seed: u64) -> Self {
        assert!(
            max_conns <= MAX_CAPACITY,
            "connection table capacity {max_conns} exceeds {MAX_CAPACITY}"
        );
        // `slot + 1` ranges over 1..=max_conns.
        let slot_bits = (usize::BITS - max_conns.leading_zeros()).max(1);
        let slot_mask = (1u32 << slot_bits) - 1;

        let mut conns = vec![Conn::EMPTY; max_conns];
        for (i, c) in conns.iter_mut().enumerate() {
            c.dest_id = if i + 1 < max_conns {
                (i + 1) as u32
            } else {
                NIL
            };
        }
        let mut s = hash_seed;
        let keys = [
            splitmix64(&mut s),
            splitmix64(&mut s),
            splitmix64(&mut s),
            splitmix64(&mut s) | 1,
        ];
        ConnTable {
            conns,
            live: vec![0; max_conns.div_ceil(64)],
            index: vec![0; (max_conns * INDEX_SLOTS_PER_CONN).max(INDEX_SLOTS_PER_CONN)],
            free_head: if max_conns > 0 { 0 } else { NIL },
            len: 0,
            cursor: 0,
            slot_bits,
            slot_mask,
            keys,
            #[cfg(test)]
            fixed_hash: None,
        }
    }

    /// Number of live connections.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Maximum number of connections.
    pub fn capacity(&self) -> usize {
        self.conns.len()
    }

    /// Bytes allocated by the table.
    pub fn memory_bytes(&self) -> usize {
        self.conns.len() * size_of::<Conn>()
            + self.live.len() * size_of::<u64>()
            + self.index.len() * size_of::<u32>()
    }

    /// Add a connection, indexed by both its client key and its server key.
    /// The record is stored as given (set `expires_at`, or use
    /// [`insert_first_packet`](Self::insert_first_packet)). The table does not
    /// check for an existing connection with the same key: look it up first.
    pub fn insert(&mut self, conn: Conn) -> Result<ConnId, TableFull> {
        let slot = self.free_head;
        if slot == NIL {
            return Err(TableFull);
        }
        let s = slot as usize;
        self.free_head = self.conns[s].dest_id;
        self.conns[s] = conn;
        self.live[s >> 6] |= 1 << (s & 63);
        self.index_insert(&conn.client_key(), CLIENT, slot);
        self.index_insert(&conn.server_key(), SERVER, slot);
        self.len += 1;
        Ok(ConnId(slot))
    }

    /// [`insert`](Self::insert) then account the client's first packet
    /// ([`on_packet`](Self::on_packet) `FromClient`), the way IPVS creates a
    /// connection in NONE and runs the transition right away (a SYN gives
    /// SYN_RECV). Returns the id and the new state; the old one is
    /// `conn.state`.
    pub fn insert_first_packet(
        &mut self,
        conn: Conn,
        flags: TcpFlags,
        now: Millis,
        timeouts: &Timeouts,
    ) -> Result<(ConnId, ConnState), TableFull> {
        let id = self.insert(conn)?;
        let (_, new) = self.on_packet(id, Direction::FromClient, flags, now, timeouts);
        Ok((id, new))
    }

    /// The connection whose client key (client → VIP) is `key`.
    pub fn find_from_client(&self, key: &FlowKey) -> Option<ConnId> {
        self.find(key, CLIENT)
    }

    /// The connection whose server key (real server → client) is `key`.
    pub fn find_from_server(&self, key: &FlowKey) -> Option<ConnId> {
        self.find(key, SERVER)
    }

    /// The connection a packet with tuple `key` belongs to, in either
    /// direction, with one probe sequence (both keys of a tuple hash alike):
    /// a reply costs one lookup, not a client-side miss and then a hit.
    /// When both a client key and a server key equal `key` (two connections
    /// whose client and real server swap roles), the client side wins, as
    /// looking it up first would.
    #[inline]
    pub fn find_any(&self, key: &FlowKey) -> Option<(ConnId, Direction)> {
        let h = self.hash(key, CLIENT);
        let tag = self.fingerprint(h, CLIENT);
        let side_bit = 1 << self.slot_bits;
        let mut pos = self.home(h);
        let mut server_match = None;
        for _ in 0..self.index.len() {
            let e = self.index[pos];
            if e == 0 {
                break;
            }
            if (e & !self.slot_mask) & !side_bit == tag {
                let slot = (e & self.slot_mask) - 1;
                let side = if e & side_bit == 0 { CLIENT } else { SERVER };
                if key_of(&self.conns[slot as usize], side) == *key {
                    if side == CLIENT {
                        return Some((ConnId(slot), Direction::FromClient));
                    }
                    server_match.get_or_insert((ConnId(slot), Direction::FromServer));
                }
            }
            pos = self.next(pos);
        }
        server_match
    }

    /// The connection `id`. For an id that has been removed this returns the
    /// slot's stale contents (or its new occupant): check with
    /// [`is_live`](Self::is_live) or use [`try_get`](Self::try_get) when
    /// unsure.
    pub fn get(&self, id: ConnId) -> &Conn {
        &self.conns[id.index()]
    }

    /// Mutable access to connection `id`. Only change `state`, `expires_at`,
    /// `flags` and `dest_id`: the addresses, ports and protocol are index
    /// keys.
    pub fn get_mut(&mut self, id: ConnId) -> &mut Conn {
        &mut self.conns[id.index()]
    }

    /// The connection `id`, if it is live.
    pub fn try_get(&self, id: ConnId) -> Option<&Conn> {
        if self.is_live(id) {
            Some(&self.conns[id.index()])
        } else {
            None
        }
    }

    /// Whether `id` currently holds a connection.
    pub fn is_live(&self, id: ConnId) -> bool {
        let s = id.index();
        s < self.conns.len() && self.live[s >> 6] & (1 << (s & 63)) != 0
    }

    /// Remove connection `id` and return it. `id` must be live (e.g. just
    /// returned by a find); for an id that is not, the table is left
    /// unchanged and the slot's stale contents are returned (its `dest_id`
    /// is then meaningless). See [`try_remove`](Self::try_remove).
    pub fn remove(&mut self, id: ConnId) -> Conn {
        match self.try_remove(id) {
            Some(conn) => conn,
            None => self.conns.get(id.index()).copied().unwrap_or(Conn::EMPTY),
        }
    }

    /// Remove connection `id` and return it; `None` (and no change) if `id` is
    /// not live.
    pub fn try_remove(&mut self, id: ConnId) -> Option<Conn> {
        if self.is_live(id) {
            Some(self.remove_slot(id.index()))
        } else {
            None
        }
    }

    /// Account a packet of connection `id` (see [`Conn::on_packet`]): TCP
    /// transition or UDP, then `expires_at = now + timeout(new state)`.
    /// Returns `(old, new)` state for the caller's active/inactive counts.
    pub fn on_packet(
        &mut self,
        id: ConnId,
        dir: Direction,
        flags: TcpFlags,
        now: Millis,
        timeouts: &Timeouts,
    ) -> (ConnState, ConnState) {
        self.conns[id.index()].on_packet(dir, flags, now, timeouts)
    }

    /// Examine at most `budget` slots from the sweep cursor (wrapping) and
    /// remove each connection with `now >= expires_at`, calling `on_expired`
    /// with it first. Returns how many were removed. Calling this every loop
    /// iteration with budget `b` sweeps the whole table every
    /// `capacity / b` calls.
    pub fn expire(
        &mut self,
        now: Millis,
        budget: usize,
        mut on_expired: impl FnMut(&Conn),
    ) -> usize {
        let cap = self.conns.len();
        if self.len == 0 {
            return 0;
        }
        let mut left = budget.min(cap);
        let mut removed = 0;
        while left > 0 {
            let s = self.cursor;
            let word = self.live[s >> 6];
            let step = if s & 63 == 0 && word == 0 {
                // 64 free slots: pass over them at once.
                64.min(cap - s).min(left)
            } else {
                if word & (1 << (s & 63)) != 0 && self.conns[s].is_expired(now) {
                    on_expired(&self.conns[s]);
                    self.remove_slot(s);
                    removed += 1;
                }
                1
            };
            left -= step;
            self.cursor = if s + step >= cap { 0 } else { s + step };
        }
        removed
    }

    /// Live connections in slot order.
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            table: self,
            word: 0,
            bits: self.live.first().copied().unwrap_or(0),
        }
    }

    // ----- internals -----

    fn remove_slot(&mut self, s: usize) -> Conn {
        let conn = self.conns[s];
        let slot = s as u32;
        self.index_remove(&conn.client_key(), CLIENT, slot);
        self.index_remove(&conn.server_key(), SERVER, slot);
        self.live[s >> 6] &= !(1 << (s & 63));
        self.conns[s].dest_id = self.free_head;
        self.free_head = slot;
        self.len -= 1;
        conn
    }

    #[inline]
    fn hash(&self, k: &FlowKey, side: u32) -> u64 {
        #[cfg(test)]
        if let Some(h) = self.fixed_hash {
            return h;
        }
        let a = (u64::from(u32::from(k.src_addr)) << 32) | u64::from(u32::from(k.dst_addr));
        // The side is not hashed: a packet's tuple probes one sequence for
        // both keys (see `find_any`); the entry's side bit tells them apart.
        let _ = side;
        let b = (u64::from(k.src_port) << 48)
            | (u64::from(k.dst_port) << 32)
            | (u64::from(k.protocol) << 8);
        let h = fold_mul(a ^ self.keys[0], b ^ self.keys[1]);
        fold_mul(h ^ self.keys[2], self.keys[3])
    }

    /// Home position of hash `h`: its high 32 bits scaled onto the index.
    #[inline]
    fn home(&self, h: u64) -> usize {
        (((h >> 32) * self.index.len() as u64) >> 32) as usize
    }

    /// Tag and side bits of an index entry (everything but `slot + 1`); the
    /// tag comes from the low bits of `h`, independent of the home position.
    #[inline]
    fn fingerprint(&self, h: u64, side: u32) -> u32 {
        ((h as u32) << (self.slot_bits + 1)) | (side << self.slot_bits)
    }

    #[inline]
    fn next(&self, pos: usize) -> usize {
        if pos + 1 == self.index.len() {
            0
        } else {
            pos + 1
        }
    }

    fn find(&self, key: &FlowKey, side: u32) -> Option<ConnId> {
        let h = self.hash(key, side);
        let want = self.fingerprint(h, side);
        let mut pos = self.home(h);
        // The index is never more than half full, so an empty entry ends the
        // probe long before this bound.
        for _ in 0..self.index.len() {
            let e = self.index[pos];
            if e == 0 {
                return None;
            }
            if e & !self.slot_mask == want {
                let slot = (e & self.slot_mask) - 1;
                if key_of(&self.conns[slot as usize], side) == *key {
                    return Some(ConnId(slot));
                }
            }
            pos = self.next(pos);
        }
        None
    }

    fn index_insert(&mut self, key: &FlowKey, side: u32, slot: u32) {
        let h = self.hash(key, side);
        let entry = self.fingerprint(h, side) | (slot + 1);
        let mut pos = self.home(h);
        for _ in 0..self.index.len() {
            if self.index[pos] == 0 {
                self.index[pos] = entry;
                return;
            }
            pos = self.next(pos);
        }
        // Unreachable: at most 2 × capacity of the 4 × capacity entries are used.
        debug_assert!(false, "connection index full");
    }

    fn index_remove(&mut self, key: &FlowKey, side: u32, slot: u32) {
        let h = self.hash(key, side);
        let entry = self.fingerprint(h, side) | (slot + 1);
        let mut pos = self.home(h);
        let mut found = None;
        for _ in 0..self.index.len() {
            match self.index[pos] {
                e if e == entry => {
                    found = Some(pos);
                    break;
                }
                0 => break,
                _ => pos = self.next(pos),
            }
        }
        if found.is_none() {
            // The record's key fields were changed while it was in the table:
            // find the entry by slot and side alone (slow, never on a correct
            // caller's path) so the index stays consistent anyway.
            let id_mask = self.slot_mask | (1 << self.slot_bits);
            let id_bits = (side << self.slot_bits) | (slot + 1);
            found = self.index.iter().position(|&e| e & id_mask == id_bits);
        }
        if let Some(pos) = found {
            self.backshift(pos);
        }
    }

    /// Home position of the index entry `e`.
    fn entry_home(&self, e: u32) -> usize {
        let slot = ((e & self.slot_mask) - 1) as usize;
        let side = (e >> self.slot_bits) & 1;
        self.home(self.hash(&key_of(&self.conns[slot], side), side))
    }

    /// Empty index position `hole` and shift back the entries after it that
    /// can move closer to their home, so every entry stays reachable from its
    /// home without crossing an empty position.
    fn backshift(&mut self, mut hole: usize) {
        self.index[hole] = 0;
        let mut j = hole;
        loop {
            j = self.next(j);
            let e = self.index[j];
            if e == 0 {
                return;
            }
            let k = self.entry_home(e);
            // The entry must stay if its home lies cyclically in (hole, j].
            let stays = if hole <= j {
                hole < k && k <= j
            } else {
                hole < k || k <= j
            };
            if !stays {
                self.index[hole] = e;
                self.index[j] = 0;
                hole = j;
            }
        }
    }
}

impl fmt::Debug for ConnTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnTable")
            .field("len", &self.len)
            .field("capacity", &self.capacity())
            .finish()
    }
}

/// Iterator over the live connections of a [`ConnTable`], in slot order.
pub struct Iter<'a> {
    table: &'a ConnTable,
    word: usize,
    bits: u64,
}

impl<'a> Iterator for Iter<'a> {
    type Item = (ConnId, &'a Conn);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.bits != 0 {
                let s = self.word * 64 + self.bits.trailing_zeros() as usize;
                self.bits &= self.bits - 1;
                return Some((ConnId(s as u32), &self.table.conns[s]));
            }
            if self.word + 1 >= self.table.live.len() {
                return None;
            }
            self.word += 1;
            self.bits = self.table.live[self.word];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::{CONN_F_NO_OUTPUT, IPPROTO_TCP, IPPROTO_UDP};
    use proptest::prelude::*;
    use std::collections::HashMap;
    use std::net::Ipv4Addr;

    impl ConnTable {
        /// Check every structural invariant; panics with a message if broken.
        fn check_invariants(&self) {
            let cap = self.capacity();
            // Live bits agree with len.
            let live: usize = self.live.iter().map(|w| w.count_ones() as usize).sum();
            assert_eq!(live, self.len, "live bits vs len");
            // Free list: exactly the dead slots, no cycles.
            let mut free = 0;
            let mut f = self.free_head;
            while f != NIL {
                assert!((f as usize) < cap);
                assert!(!self.is_live(ConnId(f)), "live slot {f} on free list");
                free += 1;
                assert!(free <= cap, "free list cycle");
                f = self.conns[f as usize].dest_id;
            }
            assert_eq!(free + self.len, cap, "free list length");
            // Index: two entries per live slot, each reachable from its home.
            let mut seen = vec![[false; 2]; cap];
            let mut used = 0;
            let n = self.index.len();
            for (p, &e) in self.index.iter().enumerate() {
                if e == 0 {
                    continue;
                }
                used += 1;
                let slot = ((e & self.slot_mask) - 1) as usize;
                let side = (e >> self.slot_bits) & 1;
                assert!(self.is_live(ConnId(slot as u32)), "entry for dead slot");
                assert!(!seen[slot][side as usize], "duplicate entry");
                seen[slot][side as usize] = true;
                let h = self.hash(&key_of(&self.conns[slot], side), side);
                assert_eq!(e & !self.slot_mask, self.fingerprint(h, side), "stale tag");
                let mut q = self.home(h);
                while q != p {
                    assert_ne!(self.index[q], 0, "hole between home and entry");
                    q = (q + 1) % n;
                }
            }
            assert_eq!(used, 2 * self.len);
            assert!(used * 2 <= n, "index over half full");
        }
    }

    fn ip(x: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 0, 0, x)
    }

    fn conn(proto: u8, c: (u8, u16), v: (u8, u16), r: (u8, u16), expires_at: Millis) -> Conn {
        let key = FlowKey {
            protocol: proto,
            src_addr: ip(c.0),
            src_port: c.1,
            dst_addr: ip(v.0),
            dst_port: v.1,
        };
        let mut c = Conn::new(&key, ip(r.0), r.1, u32::from(r.0));
        c.expires_at = expires_at;
        c
    }

    fn tcp(client_port: u16) -> Conn {
        conn(IPPROTO_TCP, (1, client_port), (100, 80), (200, 8080), 0)
    }

    #[test]
    fn bytes_per_conn_within_budget() {
        assert_eq!(size_of::<Conn>(), 40);
        assert_eq!(BYTES_PER_CONN, 57);
        let t = ConnTable::with_capacity(1 << 16, 1);
        let per_conn = t.memory_bytes() as f64 / t.capacity() as f64;
        assert!(per_conn <= 64.0, "{per_conn}");
        assert_eq!(per_conn, 56.125);
    }

    #[test]
    fn insert_find_remove_both_keys() {
        let mut t = ConnTable::with_capacity(16, 42);
        let c = tcp(1234);
        let id = t.insert(c).unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!(t.find_from_client(&c.client_key()), Some(id));
        assert_eq!(t.find_from_server(&c.server_key()), Some(id));
        // Keys are not interchangeable.
        assert_eq!(t.find_from_client(&c.server_key()), None);
        assert_eq!(t.find_from_server(&c.client_key()), None);
        assert_eq!(*t.get(id), c);
        t.get_mut(id).dest_id = 77;
        assert_eq!(t.get(id).dest_id, 77);
        let gone = t.remove(id);
        assert_eq!(gone.dest_id, 77);
        assert_eq!(t.len(), 0);
        assert_eq!(t.find_from_client(&c.client_key()), None);
        assert_eq!(t.find_from_server(&c.server_key()), None);
        assert_eq!(t.try_remove(id), None, "double remove is a no-op");
        assert_eq!(
            t.remove(id).client_key(),
            gone.client_key(),
            "stale contents"
        );
        assert_eq!(t.len(), 0);
        assert_eq!(t.try_get(id), None);
        t.check_invariants();
    }

    #[test]
    fn keys_are_the_right_tuples() {
        let c = conn(IPPROTO_TCP, (1, 1000), (2, 80), (3, 8080), 0);
        let ck = c.client_key();
        assert_eq!(
            (ck.src_addr, ck.src_port, ck.dst_addr, ck.dst_port),
            (ip(1), 1000, ip(2), 80)
        );
        let sk = c.server_key();
        assert_eq!(
            (sk.src_addr, sk.src_port, sk.dst_addr, sk.dst_port),
            (ip(3), 8080, ip(1), 1000)
        );
        assert_eq!(ck.protocol, IPPROTO_TCP);
        assert_eq!(sk.protocol, IPPROTO_TCP);
    }

    #[test]
    fn full_table_then_room_again() {
        let mut t = ConnTable::with_capacity(8, 7);
        let ids: Vec<_> = (0..8).map(|p| t.insert(tcp(p)).unwrap()).collect();
        assert_eq!(t.insert(tcp(100)), Err(TableFull));
        assert_eq!(t.len(), 8);
        t.remove(ids[3]);
        let id = t.insert(tcp(100)).unwrap();
        assert_eq!(t.find_from_client(&tcp(100).client_key()), Some(id));
        assert_eq!(t.find_from_client(&tcp(3).client_key()), None);
        assert_eq!(t.insert(tcp(101)), Err(TableFull));
        t.check_invariants();
    }

    #[test]
    fn zero_capacity() {
        let mut t = ConnTable::with_capacity(0, 0);
        assert_eq!(t.insert(tcp(1)), Err(TableFull));
        assert_eq!(t.find_from_client(&tcp(1).client_key()), None);
        assert_eq!(t.expire(u64::MAX, 100, |_| {}), 0);
        assert_eq!(t.iter().count(), 0);
        t.check_invariants();
    }

    #[test]
    fn tcp_lifecycle_through_table_with_expiry() {
        let to = Timeouts::default();
        let mut t = ConnTable::with_capacity(4, 3);
        let t0 = 1_000_000;
        let (id, st) = t
            .insert_first_packet(tcp(5555), TcpFlags::SYN, t0, &to)
            .unwrap();
        assert_eq!(st, ConnState::SynRecv);
        assert_eq!(t.get(id).expires_at, t0 + to.syn_recv);
        assert_eq!(
            t.on_packet(id, Direction::FromServer, TcpFlags::SYN_ACK, t0 + 1, &to),
            (ConnState::SynRecv, ConnState::SynRecv)
        );
        let (old, new) = t.on_packet(id, Direction::FromClient, TcpFlags::ACK, t0 + 2, &to);
        assert_eq!((old, new), (ConnState::SynRecv, ConnState::Established));
        assert!(!old.is_active() && new.is_active());
        let ts = t0 + 2;
        assert_eq!(t.get(id).expires_at, ts + 900_000);
        // Not expired one millisecond early, expired just after.
        assert_eq!(t.expire(ts + to.established - 1, 4, |_| {}), 0);
        // A packet refreshes the expiry.
        let tr = ts + to.established - 1;
        t.on_packet(id, Direction::FromClient, TcpFlags::ACK, tr, &to);
        assert_eq!(t.expire(ts + to.established + 1, 4, |_| {}), 0);
        // Server closes: FIN_WAIT with its own timeout.
        t.on_packet(id, Direction::FromServer, TcpFlags::FIN_ACK, tr, &to);
        assert_eq!(t.get(id).state, ConnState::FinWait);
        assert_eq!(t.get(id).expires_at, tr + to.fin_wait);
        t.on_packet(id, Direction::FromClient, TcpFlags::FIN_ACK, tr, &to);
        assert_eq!(t.get(id).state, ConnState::TimeWait);
        assert_eq!(t.expire(tr + to.time_wait - 1, 4, |_| {}), 0);
        let mut expired = vec![];
        assert_eq!(t.expire(tr + to.time_wait + 1, 4, |c| expired.push(*c)), 1);
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].state, ConnState::TimeWait);
        assert!(t.is_empty());
        assert_eq!(t.find_from_client(&tcp(5555).client_key()), None);
    }

    #[test]
    fn expiry_boundaries_per_state() {
        let to = Timeouts::default();
        for (flags, state) in [
            (TcpFlags::SYN, ConnState::SynRecv),
            (TcpFlags::ACK, ConnState::Established),
            (TcpFlags::RST, ConnState::Close),
        ] {
            let mut t = ConnTable::with_capacity(2, 9);
            let t0 = 50;
            let (_, st) = t.insert_first_packet(tcp(1), flags, t0, &to).unwrap();
            assert_eq!(st, state);
            let timeout = to.get(state);
            assert_eq!(t.expire(t0 + timeout - 1, 2, |_| {}), 0, "{state}");
            assert_eq!(t.expire(t0 + timeout + 1, 2, |_| {}), 1, "{state}");
        }
    }

    #[test]
    fn rst_then_close_timeout() {
        let to = Timeouts::default();
        let mut t = ConnTable::with_capacity(2, 9);
        let (id, _) = t
            .insert_first_packet(tcp(1), TcpFlags::SYN, 0, &to)
            .unwrap();
        t.on_packet(id, Direction::FromClient, TcpFlags::ACK, 10, &to);
        assert_eq!(
            t.on_packet(id, Direction::FromServer, TcpFlags::RST, 20, &to),
            (ConnState::Established, ConnState::Close)
        );
        assert_eq!(t.get(id).expires_at, 20 + 10_000);
    }

    #[test]
    fn udp_connections() {
        let mut to = Timeouts::default();
        to.set_ipvsadm(0, 0, 45);
        let mut t = ConnTable::with_capacity(2, 9);
        let c = conn(IPPROTO_UDP, (1, 53000), (100, 53), (200, 53), 0);
        assert_eq!(c.state, ConnState::Udp);
        let (id, st) = t.insert_first_packet(c, TcpFlags::NONE, 5, &to).unwrap();
        assert_eq!(st, ConnState::Udp);
        assert!(!st.is_active());
        assert_eq!(t.get(id).expires_at, 5 + 45_000);
        assert_eq!(
            t.on_packet(id, Direction::FromServer, TcpFlags::NONE, 1000, &to),
            (ConnState::Udp, ConnState::Udp)
        );
        assert_eq!(t.get(id).expires_at, 1000 + 45_000);
        assert_eq!(t.get(id).state.name(), "UDP");
    }

    #[test]
    fn no_output_flag_uses_input_only_table() {
        let to = Timeouts::default();
        let mut t = ConnTable::with_capacity(4, 9);
        let mut c = tcp(1);
        c.flags = CONN_F_NO_OUTPUT | 0x03;
        let (id, _) = t.insert_first_packet(c, TcpFlags::SYN, 0, &to).unwrap();
        t.on_packet(id, Direction::FromClient, TcpFlags::ACK, 1, &to);
        let (_, st) = t.on_packet(id, Direction::FromClient, TcpFlags::FIN_ACK, 2, &to);
        assert_eq!(st, ConnState::FinWait, "DR: client FIN gives FIN_WAIT");
        assert_eq!(t.get(id).flags, CONN_F_NO_OUTPUT | 0x03);

        // A server packet clears the flag; the NAT tables apply from then on.
        let mut c = tcp(2);
        c.flags = CONN_F_NO_OUTPUT | 0x03;
        let (id, _) = t.insert_first_packet(c, TcpFlags::SYN, 0, &to).unwrap();
        t.on_packet(id, Direction::FromServer, TcpFlags::SYN_ACK, 1, &to);
        assert_eq!(t.get(id).flags, 0x03);
        t.on_packet(id, Direction::FromClient, TcpFlags::ACK, 2, &to);
        let (_, st) = t.on_packet(id, Direction::FromClient, TcpFlags::FIN_ACK, 3, &to);
        assert_eq!(st, ConnState::CloseWait);
    }

    #[test]
    fn small_budget_sweeps_everything() {
        let cap = 1000;
        let mut t = ConnTable::with_capacity(cap, 11);
        // Every third slot stays free to exercise the skipping.
        let mut ids = vec![];
        for p in 0..cap as u16 {
            let expires = if p % 2 == 0 { 100 } else { 10_000 };
            ids.push(
                t.insert(conn(IPPROTO_TCP, (1, p), (100, 80), (200, 80), expires))
                    .unwrap(),
            );
        }
        for id in ids.iter().step_by(3) {
            t.remove(*id);
        }
        let before = t.len();
        let due = t.iter().filter(|(_, c)| c.expires_at <= 500).count();
        let mut removed = 0;
        let mut calls = 0;
        while calls < cap.div_ceil(7) {
            removed += t.expire(500, 7, |c| assert!(c.expires_at <= 500));
            calls += 1;
        }
        assert_eq!(removed, due);
        assert_eq!(t.len(), before - due);
        assert!(t.iter().all(|(_, c)| c.expires_at > 500));
        t.check_invariants();
        // Budget 0 does nothing; a huge budget is capped at one sweep.
        assert_eq!(t.expire(u64::MAX, 0, |_| {}), 0);
        assert_eq!(t.expire(u64::MAX, usize::MAX, |_| {}), before - due);
        assert!(t.is_empty());
    }

    #[test]
    fn many_connections_random_keys() {
        let n = 50_000;
        let mut t = ConnTable::with_capacity(n, 0xdead_beef);
        let mut s = 1u64;
        let mut conns = vec![];
        for _ in 0..n {
            let r = splitmix64(&mut s);
            let c = Conn::new(
                &FlowKey {
                    protocol: IPPROTO_TCP,
                    src_addr: Ipv4Addr::from(r as u32),
                    src_port: (r >> 32) as u16,
                    dst_addr: ip(100),
                    dst_port: 80,
                },
                ip((r >> 48) as u8),
                8080,
                1,
            );
            conns.push((t.insert(c).unwrap(), c));
        }
        assert_eq!(t.insert(tcp(1)), Err(TableFull));
        for (id, c) in &conns {
            assert_eq!(t.find_from_client(&c.client_key()), Some(*id));
            assert_eq!(t.find_from_server(&c.server_key()), Some(*id));
        }
        for (id, _) in conns.iter().step_by(2) {
            t.remove(*id);
        }
        for (i, (id, c)) in conns.iter().enumerate() {
            let want = if i % 2 == 0 { None } else { Some(*id) };
            assert_eq!(t.find_from_client(&c.client_key()), want);
            assert_eq!(t.find_from_server(&c.server_key()), want);
        }
        t.check_invariants();
    }

    #[test]
    fn mutated_key_fields_do_not_corrupt_the_index() {
        let mut t = ConnTable::with_capacity(8, 5);
        let ids: Vec<_> = (0..8).map(|p| t.insert(tcp(p)).unwrap()).collect();
        t.get_mut(ids[2]).client_port = 999; // misuse
        t.remove(ids[2]);
        t.check_invariants();
        for (p, id) in ids.iter().enumerate() {
            if p != 2 {
                assert_eq!(t.find_from_client(&tcp(p as u16).client_key()), Some(*id));
            }
        }
    }

    /// (mean, max) distance of index entries from their home position.
    fn probe_stats(t: &ConnTable) -> (f64, usize) {
        let n = t.index.len();
        let (mut sum, mut max, mut count) = (0, 0, 0);
        for (p, &e) in t.index.iter().enumerate() {
            if e != 0 {
                let d = (p + n - t.entry_home(e)) % n;
                sum += d;
                max = max.max(d);
                count += 1;
            }
        }
        (sum as f64 / count as f64, max)
    }

    #[test]
    fn sequential_tuples_spread_well() {
        // Typical traffic: many ports of few clients, and many clients with
        // neighbouring addresses, one VIP, few real servers.
        let n = 1 << 16;
        for layout in 0..2 {
            let mut t = ConnTable::with_capacity(n, 0x5eed);
            for i in 0..n as u32 {
                let (addr, port) = if layout == 0 {
                    (
                        Ipv4Addr::new(192, 0, 2, (i >> 14) as u8),
                        1024 + (i & 0x3fff) as u16,
                    )
                } else {
                    (Ipv4Addr::from(0x0a00_0000 + i), 40000)
                };
                let key = FlowKey {
                    protocol: IPPROTO_TCP,
                    src_addr: addr,
                    src_port: port,
                    dst_addr: ip(100),
                    dst_port: 443,
                };
                t.insert(Conn::new(&key, ip(200 + (i % 4) as u8), 443, 0))
                    .unwrap();
            }
            let (mean, max) = probe_stats(&t);
            // Linear probing at load 1/2 with a good hash: mean 0.5, max a few dozen.
            assert!(
                mean < 1.0 && max < 64,
                "layout {layout}: mean {mean} max {max}"
            );
        }
    }

    #[test]
    fn seed_changes_layout() {
        let a = ConnTable::with_capacity(1024, 1);
        let b = ConnTable::with_capacity(1024, 2);
        let k = tcp(1).client_key();
        let differs = (0..64u16).any(|p| {
            let k = FlowKey { src_port: p, ..k };
            a.home(a.hash(&k, CLIENT)) != b.home(b.hash(&k, CLIENT))
        });
        assert!(differs);
    }

    // ----- model-based property test -----

    #[derive(Clone, Debug)]
    enum Op {
        Insert(Conn),
        Remove(usize),
        RemoveAny(u32),
        FindClient(FlowKey),
        FindServer(FlowKey),
        Packet(usize, bool, u8, Millis),
        Expire(Millis, usize),
    }

    /// Connections over tiny address and port domains, so keys repeat often.
    fn arb_conn() -> impl Strategy<Value = Conn> {
        (
            prop::sample::select(vec![IPPROTO_TCP, IPPROTO_UDP]),
            (1u8..3, 1u16..4),
            (100u8..102, 80u16..82),
            (200u8..202, 8080u16..8082),
            0u64..200,
            any::<u8>(),
        )
            .prop_map(|(p, c, v, r, exp, flags)| {
                let mut c = conn(p, c, v, r, exp);
                c.flags = flags;
                c
            })
    }

    fn arb_op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => arb_conn().prop_map(Op::Insert),
            2 => any::<usize>().prop_map(Op::Remove),
            1 => any::<u32>().prop_map(Op::RemoveAny),
            2 => arb_conn().prop_map(|c| Op::FindClient(c.client_key())),
            2 => arb_conn().prop_map(|c| Op::FindServer(c.server_key())),
            2 => (any::<usize>(), any::<bool>(), any::<u8>(), 0u64..200)
                .prop_map(|(i, d, f, t)| Op::Packet(i, d, f, t)),
            1 => (0u64..400, 0usize..20).prop_map(|(t, b)| Op::Expire(t, b)),
        ]
    }

    fn check_find(t: &ConnTable, model: &HashMap<u32, Conn>, key: &FlowKey, side: u32) {
        // One probe for both sides agrees with the two separate lookups,
        // the client side first.
        let side_of = |d: Direction| match d {
            Direction::FromClient => CLIENT,
            Direction::FromServer => SERVER,
        };
        let want_any = t
            .find(key, CLIENT)
            .map(|id| (id, Direction::FromClient))
            .or(t.find(key, SERVER).map(|id| (id, Direction::FromServer)));
        match (t.find_any(key), want_any) {
            (Some((id, dir)), Some((_, want_dir))) => {
                assert_eq!(dir, want_dir);
                assert_eq!(key_of(&t.conns[id.index()], side_of(dir)), *key);
            }
            (got, want) => assert_eq!(got, want),
        }
        let got = t.find(key, side);
        let expected = model.values().any(|c| key_of(c, side) == *key);
        match got {
            Some(id) => {
                let c = model.get(&id.0).expect("find returned a dead id");
                assert_eq!(key_of(c, side), *key);
            }
            None => assert!(!expected, "find missed {key:?}"),
        }
    }

    fn run_model(cap: usize, seed: u64, fixed_hash: Option<u64>, ops: Vec<Op>) {
        let to = Timeouts {
            established: 30,
            udp: 50,
            ..Timeouts::default()
        };
        let mut t = ConnTable::with_capacity(cap, seed);
        t.fixed_hash = fixed_hash;
        let mut model: HashMap<u32, Conn> = HashMap::new();
        let pick = |model: &HashMap<u32, Conn>, i: usize| {
            let mut ids: Vec<u32> = model.keys().copied().collect();
            ids.sort_unstable();
            ids[i % ids.len()]
        };
        for op in ops {
            match op {
                Op::Insert(c) => match t.insert(c) {
                    Ok(id) => {
                        assert!(model.len() < cap);
                        assert!(model.insert(id.0, c).is_none(), "id handed out twice");
                    }
                    Err(TableFull) => assert_eq!(model.len(), cap),
                },
                Op::Remove(i) if !model.is_empty() => {
                    let id = pick(&model, i);
                    let c = model.remove(&id).unwrap();
                    assert_eq!(t.remove(ConnId(id)), c);
                    assert_eq!(t.try_get(ConnId(id)), None);
                }
                Op::Remove(_) => {}
                Op::RemoveAny(raw) => {
                    let id = raw % (cap as u32 + 2);
                    let want = model.remove(&id);
                    assert_eq!(t.try_remove(ConnId(id)), want);
                }
                Op::FindClient(k) => check_find(&t, &model, &k, CLIENT),
                Op::FindServer(k) => check_find(&t, &model, &k, SERVER),
                Op::Packet(i, from_client, f, now) if !model.is_empty() => {
                    let id = pick(&model, i);
                    let dir = if from_client {
                        Direction::FromClient
                    } else {
                        Direction::FromServer
                    };
                    let flags = TcpFlags::from_header_byte(f);
                    let m = model.get_mut(&id).unwrap();
                    let want = m.on_packet(dir, flags, now, &to);
                    assert_eq!(t.on_packet(ConnId(id), dir, flags, now, &to), want);
                    assert_eq!(t.get(ConnId(id)), m);
                }
                Op::Packet(..) => {}
                Op::Expire(now, budget) => {
                    let mut seen: Vec<Conn> = vec![];
                    let n = t.expire(now, budget, |c| seen.push(*c));
                    assert_eq!(n, seen.len());
                    assert!(n <= budget);
                    let mut gone: Vec<u32> = model
                        .keys()
                        .copied()
                        .filter(|&id| !t.is_live(ConnId(id)))
                        .collect();
                    gone.sort_unstable();
                    assert_eq!(gone.len(), n);
                    let gone_conns: Vec<Conn> =
                        gone.iter().map(|id| model.remove(id).unwrap()).collect();
                    assert!(gone_conns.iter().all(|c| c.expires_at <= now));
                    // The callback saw exactly the removed records (as multisets).
                    let mut a: Vec<String> = gone_conns.iter().map(|c| format!("{c:?}")).collect();
                    let mut b: Vec<String> = seen.iter().map(|c| format!("{c:?}")).collect();
                    a.sort();
                    b.sort();
                    assert_eq!(a, b);
                }
            }
            assert_eq!(t.len(), model.len());
            t.check_invariants();
        }
        // Every model connection is found under both keys.
        for c in model.values() {
            check_find(&t, &model, &c.client_key(), CLIENT);
            check_find(&t, &model, &c.server_key(), SERVER);
        }
        let mut listed: Vec<u32> = t
            .iter()
            .map(|(id, c)| {
                assert_eq!(model.get(&id.0), Some(c));
                id.0
            })
            .collect();
        listed.sort_unstable();
        let mut ids: Vec<u32> = model.keys().copied().collect();
        ids.sort_unstable();
        assert_eq!(listed, ids);
        // Budget-1 calls, one per slot, sweep the whole table.
        for _ in 0..cap {
            t.expire(u64::MAX, 1, |_| {});
        }
        assert!(t.is_empty());
        t.check_invariants();
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn table_matches_hashmap_model(
            cap in 1usize..12,
            seed in any::<u64>(),
            ops in prop::collection::vec(arb_op(), 1..150),
        ) {
            run_model(cap, seed, None, ops);
        }

        #[test]
        fn table_matches_model_when_every_key_collides(
            cap in 1usize..12,
            h in any::<u64>(),
            ops in prop::collection::vec(arb_op(), 1..150),
        ) {
            run_model(cap, 0, Some(h), ops);
        }

        #[test]
        fn larger_table_matches_model(
            seed in any::<u64>(),
            ops in prop::collection::vec(arb_op(), 1..400),
        ) {
            run_model(70, seed, None, ops);
        }
    }
}
