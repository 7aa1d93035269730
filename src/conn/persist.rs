//! Persistence templates (ipvsadm `-p`): which real server a client (its
//! address under the service's netmask) was sent to, so its next new
//! connections go there too.
//!
//! IPVS keeps a template as a special connection entry whose timer restarts
//! while it still "controls" connections. Here a template is a small record
//! in its own fixed-capacity table, keyed by (service tag, masked client):
//!
//! * a new connection of the client (re)arms the template:
//!   `expires_at = now + timeout` and `controlled += 1`;
//! * a connection that ends decrements `controlled`;
//! * the expiry sweep removes a template whose time is up only when it
//!   controls nothing; otherwise it re-arms it for another `timeout`, as the
//!   kernel does.
//!
//! Open addressing with linear probing over a power-of-two array at most
//! half full, deletion by backward shift (no tombstones). Allocated once;
//! nothing here allocates, locks or panics after [`PersistTable::with_capacity`].

use std::net::Ipv4Addr;

use super::table::{fold_mul, splitmix64};
use super::{Millis, TableFull};

/// What a template is found by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TemplateKey {
    /// [`crate::snapshot::ServiceId::tag`]: stable across reloads.
    pub service: u64,
    /// The client address `&` the service's netmask.
    pub client: Ipv4Addr,
}

/// Where the client goes, and for how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Template {
    pub dest_id: u32,
    /// Live connections scheduled through this template.
    pub controlled: u32,
    pub expires_at: Millis,
    /// The service's persistence timeout, for re-arming.
    pub timeout: Millis,
}

#[derive(Clone, Copy)]
struct Slot {
    used: bool,
    key: TemplateKey,
    template: Template,
}

const EMPTY: Slot = Slot {
    used: false,
    key: TemplateKey {
        service: 0,
        client: Ipv4Addr::UNSPECIFIED,
    },
    template: Template {
        dest_id: 0,
        controlled: 0,
        expires_at: 0,
        timeout: 0,
    },
};

/// The per-worker template table. See the module documentation.
pub struct PersistTable {
    slots: Vec<Slot>,
    mask: usize,
    len: usize,
    capacity: usize,
    cursor: usize,
    keys: [u64; 2],
}

impl PersistTable {
    /// Room for `max_templates`; `hash_seed` keys the hash (pick it at random).
    pub fn with_capacity(max_templates: usize, hash_seed: u64) -> Self {
        let size = (max_templates.max(1) * 2).next_power_of_two();
        let mut s = hash_seed ^ 0x0070_6572_7369_7374; // "persist": not the conn table's keys
        PersistTable {
            slots: vec![EMPTY; size],
            mask: size - 1,
            len: 0,
            capacity: max_templates,
            cursor: 0,
            keys: [splitmix64(&mut s), splitmix64(&mut s) | 1],
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    fn home(&self, key: &TemplateKey) -> usize {
        let h =
            fold_mul(key.service ^ self.keys[0], self.keys[1]) ^ u64::from(u32::from(key.client));
        fold_mul(h ^ self.keys[0], self.keys[1]) as usize & self.mask
    }

    #[inline]
    fn position(&self, key: &TemplateKey) -> Option<usize> {
        let mut i = self.home(key);
        loop {
            let slot = &self.slots[i];
            if !slot.used {
                return None;
            }
            if slot.key == *key {
                return Some(i);
            }
            i = (i + 1) & self.mask;
        }
    }

    #[inline]
    pub fn get_mut(&mut self, key: &TemplateKey) -> Option<&mut Template> {
        let i = self.position(key)?;
        Some(&mut self.slots[i].template)
    }

    #[inline]
    pub fn get(&self, key: &TemplateKey) -> Option<&Template> {
        let i = self.position(key)?;
        Some(&self.slots[i].template)
    }

    /// Adds or replaces the template of `key`.
    pub fn insert(&mut self, key: TemplateKey, template: Template) -> Result<(), TableFull> {
        let mut i = self.home(&key);
        loop {
            let slot = &mut self.slots[i];
            if !slot.used {
                if self.len >= self.capacity {
                    return Err(TableFull);
                }
                *slot = Slot {
                    used: true,
                    key,
                    template,
                };
                self.len += 1;
                return Ok(());
            }
            if slot.key == key {
                slot.template = template;
                return Ok(());
            }
            i = (i + 1) & self.mask;
        }
    }

    pub fn remove(&mut self, key: &TemplateKey) -> Option<Template> {
        let i = self.position(key)?;
        let gone = self.slots[i].template;
        self.vacate(i);
        Some(gone)
    }

    /// Empties slot `hole` and shifts later entries of its probe run back,
    /// so every entry stays reachable from its home without tombstones.
    fn vacate(&mut self, mut hole: usize) {
        self.slots[hole] = EMPTY;
        self.len -= 1;
        let mut i = (hole + 1) & self.mask;
        while self.slots[i].used {
            let home = self.home(&self.slots[i].key);
            // Move `i` into the hole unless its home lies cyclically in (hole, i].
            let stays = if hole <= i {
                hole < home && home <= i
            } else {
                hole < home || home <= i
            };
            if !stays {
                self.slots[hole] = self.slots[i];
                self.slots[i] = EMPTY;
                hole = i;
            }
            i = (i + 1) & self.mask;
        }
    }

    /// One new connection scheduled through `key`'s template (found or
    /// just created): re-arms it for `timeout` from `now`.
    pub fn on_new_connection(
        &mut self,
        key: &TemplateKey,
        dest_id: u32,
        now: Millis,
        timeout: Millis,
    ) -> Result<(), TableFull> {
        let expires_at = now.saturating_add(timeout);
        if let Some(t) = self.get_mut(key) {
            t.dest_id = dest_id;
            t.controlled = t.controlled.saturating_add(1);
            t.expires_at = expires_at;
            t.timeout = timeout;
            return Ok(());
        }
        self.insert(
            *key,
            Template {
                dest_id,
                controlled: 1,
                expires_at,
                timeout,
            },
        )
    }

    /// One connection scheduled through `key`'s template has ended.
    pub fn on_connection_end(&mut self, key: &TemplateKey) {
        if let Some(t) = self.get_mut(key) {
            t.controlled = t.controlled.saturating_sub(1);
        }
    }

    /// Examines up to `budget` slots from where the last call stopped:
    /// removes templates whose time is up and that control no connection,
    /// re-arms those that still do. Returns how many were removed.
    pub fn expire(&mut self, now: Millis, budget: usize) -> usize {
        let mut removed = 0;
        for _ in 0..budget.min(self.slots.len()) {
            let i = self.cursor;
            let slot = &mut self.slots[i];
            if slot.used && now >= slot.template.expires_at {
                if slot.template.controlled > 0 {
                    slot.template.expires_at = now.saturating_add(slot.template.timeout);
                } else {
                    self.vacate(i);
                    removed += 1;
                    // A later entry may have moved into `i`: look again.
                    continue;
                }
            }
            self.cursor = (i + 1) & self.mask;
        }
        removed
    }

    /// Keeps only the templates `keep` approves (control path: after a
    /// configuration change).
    pub fn retain(&mut self, mut keep: impl FnMut(&TemplateKey, &Template) -> bool) {
        let mut i = 0;
        while i < self.slots.len() {
            let s = self.slots[i];
            if s.used && !keep(&s.key, &s.template) {
                self.vacate(i);
                continue; // an entry may have shifted into `i`
            }
            i += 1;
        }
    }

    /// Every template (control path: listings).
    pub fn iter(&self) -> impl Iterator<Item = (&TemplateKey, &Template)> {
        self.slots
            .iter()
            .filter(|s| s.used)
            .map(|s| (&s.key, &s.template))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn key(service: u64, client: u32) -> TemplateKey {
        TemplateKey {
            service,
            client: Ipv4Addr::from(client),
        }
    }

    #[test]
    fn new_connections_arm_and_count() {
        let mut t = PersistTable::with_capacity(8, 1);
        let k = key(1, 0xc612_0002);
        t.on_new_connection(&k, 7, 1000, 360_000).unwrap();
        t.on_new_connection(&k, 7, 5000, 360_000).unwrap();
        assert_eq!(
            t.get(&k),
            Some(&Template {
                dest_id: 7,
                controlled: 2,
                expires_at: 365_000,
                timeout: 360_000
            })
        );
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn template_outlives_its_timeout_while_it_controls_connections() {
        let mut t = PersistTable::with_capacity(8, 2);
        let k = key(1, 42);
        t.on_new_connection(&k, 3, 0, 1000).unwrap();
        // Time is up but a connection is still open: re-armed, not removed.
        assert_eq!(t.expire(1000, 64), 0);
        assert_eq!(t.get(&k).unwrap().expires_at, 2000);
        t.on_connection_end(&k);
        // Not yet due again.
        assert_eq!(t.expire(1999, 64), 0);
        assert!(t.get(&k).is_some());
        assert_eq!(t.expire(2000, 64), 1);
        assert!(t.get(&k).is_none());
        assert!(t.is_empty());
    }

    #[test]
    fn idle_template_expires_exactly_at_its_time() {
        let mut t = PersistTable::with_capacity(8, 3);
        let k = key(9, 1);
        t.on_new_connection(&k, 1, 100, 50).unwrap();
        t.on_connection_end(&k);
        assert_eq!(t.expire(149, 64), 0);
        assert_eq!(t.expire(150, 64), 1);
    }

    #[test]
    fn full_table_refuses() {
        let mut t = PersistTable::with_capacity(2, 4);
        t.on_new_connection(&key(1, 1), 0, 0, 10).unwrap();
        t.on_new_connection(&key(1, 2), 0, 0, 10).unwrap();
        assert_eq!(t.on_new_connection(&key(1, 3), 0, 0, 10), Err(TableFull));
        // An existing key is still updated.
        t.on_new_connection(&key(1, 2), 5, 0, 10).unwrap();
        assert_eq!(t.get(&key(1, 2)).unwrap().dest_id, 5);
    }

    #[test]
    fn retain_drops_a_service() {
        let mut t = PersistTable::with_capacity(64, 5);
        for c in 0..20 {
            t.on_new_connection(&key(c % 2, c as u32), 1, 0, 10)
                .unwrap();
        }
        t.retain(|k, _| k.service != 0);
        assert_eq!(t.len(), 10);
        assert!(t.iter().all(|(k, _)| k.service == 1));
        for c in (1..20).step_by(2) {
            assert!(t.get(&key(1, c)).is_some());
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        New(u8, u8),
        End(u8, u8),
        Remove(u8, u8),
        Expire(u16),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u8..3, 0u8..40).prop_map(|(s, c)| Op::New(s, c)),
            2 => (0u8..3, 0u8..40).prop_map(|(s, c)| Op::End(s, c)),
            1 => (0u8..3, 0u8..40).prop_map(|(s, c)| Op::Remove(s, c)),
            2 => (1u16..200).prop_map(Op::Expire),
        ]
    }

    proptest! {
        /// Against a HashMap model with a full sweep per expiry: same
        /// templates, same counts, same times.
        #[test]
        fn behaves_like_a_map(ops in prop::collection::vec(op(), 1..300), seed in any::<u64>()) {
            let mut t = PersistTable::with_capacity(128, seed);
            let mut model: HashMap<TemplateKey, Template> = HashMap::new();
            let mut now: Millis = 0;
            for op in ops {
                match op {
                    Op::New(s, c) => {
                        let k = key(u64::from(s), u32::from(c));
                        t.on_new_connection(&k, u32::from(c), now, 100).unwrap();
                        let e = model.entry(k).or_insert(Template {
                            dest_id: 0, controlled: 0, expires_at: 0, timeout: 100,
                        });
                        e.dest_id = u32::from(c);
                        e.controlled += 1;
                        e.expires_at = now + 100;
                    }
                    Op::End(s, c) => {
                        let k = key(u64::from(s), u32::from(c));
                        t.on_connection_end(&k);
                        if let Some(e) = model.get_mut(&k) {
                            e.controlled = e.controlled.saturating_sub(1);
                        }
                    }
                    Op::Remove(s, c) => {
                        let k = key(u64::from(s), u32::from(c));
                        prop_assert_eq!(t.remove(&k), model.remove(&k));
                    }
                    Op::Expire(dt) => {
                        now += u64::from(dt);
                        // Each call examines at most the whole array; removals
                        // re-examine their slot, so three calls sweep it all.
                        for _ in 0..3 {
                            t.expire(now, usize::MAX);
                        }
                        model.retain(|_, e| e.controlled > 0 || now < e.expires_at);
                        for e in model.values_mut() {
                            if now >= e.expires_at {
                                e.expires_at = now + e.timeout;
                            }
                        }
                    }
                }
                prop_assert_eq!(t.len(), model.len());
                for (k, e) in &model {
                    prop_assert_eq!(t.get(k), Some(e));
                }
            }
        }
    }
}
