//! Coalescing identical concurrent misses inside one isolate: the first request for a key leads
//! (goes upstream), later ones wait for its result instead of asking the provider again.
//!
//! The structure is pure; the waiting is the edge's. The edge keeps one `Coalescer<W>` per
//! isolate (a `thread_local` `RefCell`), where `W` is where the leader leaves a follower its
//! result (the edge uses a shared cell the follower polls on its own timer: in Workers, waking
//! another request's task runs it in the waker's I/O context, which the runtime refuses):
//!
//! 1. `join(key, now, slot)`: `Leader(ticket)` → go upstream; `Follower` → wait for the slot,
//!    at most until the follower's own deadline; `Alone` → go upstream uncoalesced (table full).
//! 2. The leader, on every path (a drop guard), calls `finish(key, ticket)` and hands each
//!    waiter the stored entry (or `None` when it failed or the answer is not storable).
//! 3. A follower that gets `None`, loses its slot or reaches its deadline proceeds alone, as a
//!    miss.
//!
//! A leader that never finishes (its request was cancelled) holds the key for at most
//! `lease_ms`: the next `join` after that takes over, and the old waiters are dropped (their
//! slots are released, so they proceed alone).

/// Keys tracked at once; beyond, requests go alone.
pub const MAX_KEYS: usize = 256;
/// Followers per key; beyond, requests go alone.
pub const MAX_WAITERS: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket(u64);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Leader(Ticket),
    Follower,
    Alone,
}

#[derive(Debug)]
struct Slot<W> {
    key: String,
    ticket: u64,
    since_ms: u64,
    waiters: Vec<W>,
}

/// A short list scanned linearly (at most [`MAX_KEYS`]): less code in the wasm than a map.
#[derive(Debug)]
pub struct Coalescer<W> {
    slots: Vec<Slot<W>>,
    lease_ms: u64,
    next: u64,
}

impl<W> Coalescer<W> {
    /// `lease_ms`: how long a leader may hold a key (use the route's total deadline).
    pub fn new(lease_ms: u64) -> Self {
        Coalescer {
            slots: Vec::new(),
            lease_ms,
            next: 0,
        }
    }

    /// Join the flight for `key`. A follower's `waiter` is kept until the leader finishes; a
    /// leader's or a lone request's is dropped.
    pub fn join(&mut self, key: &str, now_ms: u64, waiter: W) -> Role {
        self.next += 1;
        let ticket = self.next;
        let (lease_ms, len) = (self.lease_ms, self.slots.len());
        let fresh = |key: String| Slot {
            key,
            ticket,
            since_ms: now_ms,
            waiters: Vec::new(),
        };
        match self.slots.iter_mut().find(|s| s.key == key) {
            Some(s) if now_ms.saturating_sub(s.since_ms) < lease_ms => {
                if s.waiters.len() >= MAX_WAITERS {
                    return Role::Alone;
                }
                s.waiters.push(waiter);
                return Role::Follower;
            }
            // The lease is over: take over; the old waiters are dropped.
            Some(s) => *s = fresh(std::mem::take(&mut s.key)),
            None if len >= MAX_KEYS => return Role::Alone,
            None => self.slots.push(fresh(key.to_string())),
        }
        Role::Leader(Ticket(ticket))
    }

    /// The leader is done: release the key and return the waiters to wake. A leader whose
    /// lease was taken over gets nothing (its successor owns the key now).
    pub fn finish(&mut self, key: &str, ticket: Ticket) -> Vec<W> {
        match self
            .slots
            .iter()
            .position(|s| s.key == key && s.ticket == ticket.0)
        {
            Some(i) => self.slots.swap_remove(i).waiters,
            None => Vec::new(),
        }
    }

    /// Keys in flight.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_leads_others_follow_and_are_woken() {
        let mut c = Coalescer::new(1_000);
        let Role::Leader(t) = c.join("k", 0, 0) else {
            panic!("first must lead")
        };
        assert_eq!(c.join("k", 10, 1), Role::Follower);
        assert_eq!(c.join("k", 20, 2), Role::Follower);
        assert!(matches!(c.join("other", 20, 9), Role::Leader(_)));
        assert_eq!(c.finish("k", t), vec![1, 2]);
        assert_eq!(c.len(), 1);
        assert!(matches!(c.join("k", 30, 3), Role::Leader(_)), "released");
    }

    #[test]
    fn abandoned_leader_is_taken_over_after_the_lease() {
        let mut c = Coalescer::new(1_000);
        let Role::Leader(old) = c.join("k", 0, 0) else {
            panic!()
        };
        assert_eq!(c.join("k", 500, 1), Role::Follower);
        let Role::Leader(new) = c.join("k", 1_000, 2) else {
            panic!("lease over: take over")
        };
        assert_eq!(c.join("k", 1_100, 3), Role::Follower);
        assert!(c.finish("k", old).is_empty(), "the old leader owns nothing");
        assert_eq!(c.finish("k", new), vec![3]);
        assert!(c.is_empty());
    }

    #[test]
    fn bounded() {
        let mut c = Coalescer::new(1_000);
        for i in 0..MAX_KEYS {
            assert!(matches!(c.join(&i.to_string(), 0, ()), Role::Leader(_)));
        }
        assert_eq!(c.join("one more", 0, ()), Role::Alone);
        for _ in 0..MAX_WAITERS {
            assert_eq!(c.join("0", 0, ()), Role::Follower);
        }
        assert_eq!(c.join("0", 0, ()), Role::Alone);
    }
}
