//! The compact tier's background sweeper: one thread per namespace, started by the first write
//! (or load) of an entry with a deadline, parked until the earliest deadline of any shard, and
//! stopped when the tier is dropped (it holds only a weak reference; the drop unparks it). The
//! same lifecycle as the default tier's sweeper (`memory::sweeper`), so expired entries nobody
//! reads or writes still leave memory, with their `Expired` events.
//!
//! The compact tier keeps no deadline index (it would cost bytes per entry), so a sweep scans
//! each shard whose earliest deadline has passed. To bound that work, after a round that
//! scanned `n` entries the sweeper rests for `n / 256` ms (at least [`REST_MIN_MS`]) before
//! the next one: ~4 µs of rest per entry scanned, so sweeping takes a few percent of one core
//! at most, and an expired entry leaves memory within its deadline plus one rest (64 ms for a
//! small store, ~4 s at a million entries) unless a read or a write of its shard removes it
//! first. The rest is counted on the store's clock, so a `ManualClock` drives it in tests.
//!
//! The schedule and its wake-up protocol are `crate::sweeper`'s, shared with the default
//! tier: writers lower the next wake-up only for a deadline earlier than it and unpark the
//! thread only while it sleeps, and no deadline written during a round is missed.

use std::sync::Arc;

use serde::de::DeserializeOwned;

use super::Inner;
use crate::{
    codec::Key,
    events::{EventKind, RemovalCause},
    stats::Counter as Stat,
    sweeper::{self, Round, Schedule, Swept},
    time::Clock,
};

/// The shortest rest between two rounds, in ms (the default tier groups deadlines in 64 ms
/// buckets).
const REST_MIN_MS: u64 = 64;

/// How long to rest after a round that scanned `scanned` entries, in ms.
fn rest_after(scanned: usize) -> u64 {
    REST_MIN_MS.max(scanned as u64 / 256)
}

impl<K: Key, V: DeserializeOwned + Send + Sync + 'static> Swept for Inner<K, V> {
    fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Sweeps every due shard; rests in proportion to the entries scanned.
    fn sweep(this: &Arc<Self>, now: u64) -> Round {
        let (_, scanned) = this.purge(now);
        Round {
            next: this.next_deadline(),
            rest_ms: rest_after(scanned),
        }
    }
}

impl<K: Key, V: DeserializeOwned + Send + Sync + 'static> Inner<K, V> {
    /// Makes sure the sweeper wakes by `deadline` (0 = no deadline: nothing to do).
    #[inline]
    pub(super) fn wake_sweeper_for(&self, deadline: u64) {
        self.schedule.wake_for(deadline, || {
            sweeper::start(self.me.clone(), &self.clock, "compact tier")
        });
    }

    /// Sweeps every shard whose earliest deadline has passed at `now` (compacting those left
    /// wasteful) and sends the `Expired` events; returns how many entries it removed and how
    /// many it scanned. Each shard's removals are counted before its lock is released.
    pub(super) fn purge(&self, now: u64) -> (usize, usize) {
        let keep = self.events.is_active();
        let (mut removed, mut scanned) = (0, 0);
        for (lane, shard) in self.shards.iter().enumerate() {
            if shard.read().earliest > now {
                continue;
            }
            let (count, keys) = {
                let mut shard = shard.write();
                scanned += shard.table.len();
                let gone = |rec: &super::Rec<'_>| self.removed(lane, rec, RemovalCause::Expired);
                let (count, keys) = shard.sweep(now, keep, gone);
                shard.compact_if_wasteful();
                self.stats.add(Stat::Expirations, count as u64);
                (count, keys)
            };
            removed += count;
            // A sweep that removed nothing here takes no delivery turn (`listener.rs`: holding
            // one, it would keep the removals of a call that returned undelivered).
            if count > 0 {
                self.listener.deliver(lane);
            }
            self.announce_expired(keys);
        }
        (removed, scanned)
    }

    /// Sends an `Expired` event for each of these keys' bytes.
    pub(super) fn announce_expired(&self, keys: Vec<Vec<u8>>) {
        for bytes in keys {
            if let Ok(key) = K::decode_key(&bytes) {
                self.events.emit(&key, EventKind::Expired);
            }
        }
    }

    /// The earliest deadline any shard may still hold.
    pub(super) fn next_deadline(&self) -> Option<u64> {
        let earliest = self.shards.iter().map(|s| s.read().earliest).min()?;
        (earliest != u64::MAX).then_some(earliest)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{super::*, *};
    use crate::ManualClock;

    /// Entries and arena bytes the tier holds, expired or not.
    fn held(t: &Compact<String, String>) -> (usize, usize) {
        let shards = t.inner.shards.iter().map(|s| s.read());
        shards.fold((0, 0), |(n, b), s| (n + s.table.len(), b + s.arena.len()))
    }

    #[tokio::test]
    async fn the_sweeper_drops_expired_entries_nobody_reads_or_writes() {
        let time = ManualClock::new();
        let t: Compact<String, String> = Compact::new(time.clock(), Format::MessagePack, 0);
        let mut events = t.subscribe();
        let soon = time.clock().now_ms() + 1_000;
        let value = "x".repeat(4_000);
        for i in 0..1_000 {
            t.put(&format!("k{i}"), &value, soon).unwrap();
        }
        for i in 0..10 {
            t.put(&format!("keep{i}"), &value, 0).unwrap();
        }
        let (entries, bytes) = held(&t);
        assert_eq!(entries, 1_010);
        assert!(bytes > 4_000_000, "{bytes}");
        // Past the deadlines: the advance wakes the sweeper (started by the first put), which
        // sweeps every shard; nothing else touches the tier. The timeout only bounds a failure.
        time.advance(Duration::from_secs(2));
        let mut expired = 0;
        while expired < 1_000 {
            let next = tokio::time::timeout(Duration::from_secs(30), events.recv()).await;
            let event = next.expect("the sweeper expires every entry").unwrap();
            expired += usize::from(event.kind == EventKind::Expired);
        }
        assert_eq!(t.stats().expirations, 1_000);
        let (entries, bytes) = held(&t);
        assert_eq!(entries, 10, "the expired records left the table");
        // Every shard with garbage past the compaction rule gave its arena back.
        let live = 10 * record_len(b"keep0", &[0; 4_003]);
        let bound = live * 4 / 3 + t.inner.shards.len() * GARBAGE_MIN;
        assert!(bytes <= bound, "arena {bytes}, live {live}, bound {bound}");
        assert_eq!((t.count(), t.purge_expired()), (10, 0));
        assert_eq!(events.try_recv(), None, "no event twice");
    }

    #[test]
    fn purge_expired_sweeps_only_what_is_due() {
        let time = ManualClock::new();
        let t: Compact<String, String> = Compact::new(time.clock(), Format::MessagePack, 0);
        let now = time.clock().now_ms();
        for i in 0..100u64 {
            t.put(&format!("k{i}"), &"v".into(), now + 1_000 * (1 + i % 2))
                .unwrap();
        }
        assert_eq!(t.purge_expired(), 0);
        time.advance(Duration::from_millis(1_500));
        // The sweeper may have swept first: between them, exactly the first half went.
        t.purge_expired();
        assert_eq!(held(&t).0, 50);
        assert_eq!(t.stats().expirations, 50);
    }

    /// The bound the docs give: an expired entry leaves memory by its deadline plus one rest.
    /// A round that scanned 100 000 entries rests 390 ms; an entry written during that rest,
    /// due 100 ms into it, is expired (its event sent) once the clock reaches the rest's end.
    #[tokio::test]
    async fn an_entry_due_during_a_long_rest_leaves_when_the_rest_ends() {
        let time = ManualClock::new();
        let t: Compact<String, String> = Compact::new(time.clock(), Format::MessagePack, 0);
        let start = time.clock().now_ms();
        for i in 0..100_000 {
            t.put(&format!("k{i}"), &"v".into(), start + 1_000).unwrap();
        }
        time.advance(Duration::from_secs(2));
        // The round that expires them scans all 100 000: it then rests 390 ms from `swept`.
        let swept = start + 2_000;
        let waited = std::time::Instant::now();
        while t.stats().expirations < 100_000 {
            assert!(
                waited.elapsed() < Duration::from_secs(60),
                "the first round ran"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(rest_after(100_000), 390);
        let mut events = t.subscribe();
        t.put(&"late".into(), &"v".into(), swept + 100).unwrap();
        time.advance(Duration::from_millis(390));
        loop {
            let next = tokio::time::timeout(Duration::from_secs(30), events.recv()).await;
            let event = next.expect("expired by the end of the rest").unwrap();
            assert_eq!(event.key, "late");
            if event.kind == EventKind::Expired {
                break;
            }
        }
        assert_eq!(held(&t).0, 0);
    }

    /// The listener's promise (`listener.rs`): a sweep that removed nothing takes no delivery
    /// turn. Here a shard is due (its earliest deadline, of a value since overwritten with no
    /// TTL, has passed) but holds nothing expired; parked inside a turn, that sweep held back
    /// the replacements of puts that had all returned. Deterministic: the sweep runs at an
    /// explicit `now` past the deadline while the manual clock stays put, so the tier's own
    /// sweeper thread (parked until the clock reaches the deadline) never sweeps that shard
    /// first.
    #[test]
    fn a_sweep_that_removed_nothing_takes_no_delivery_turn() {
        let time = ManualClock::new();
        let t: Compact<String, String> = Compact::new(time.clock(), Format::MessagePack, 0);
        let seen = Arc::new(parking_lot::Mutex::new(0usize));
        let counted = seen.clone();
        let listener: crate::EvictionListener<String, String> =
            Arc::new(move |_, _, _| *counted.lock() += 1);
        t.install_listener(listener).unwrap();
        let key = String::from("k");
        let deadline = time.clock().now_ms() + 1_000;
        t.put(&key, &"ttl".into(), deadline).unwrap();
        t.put(&key, &"0".into(), 0).unwrap(); // the shard's earliest stays at `deadline`
        *seen.lock() = 0;
        let swept = t.clone();
        let notifier = t.inner.listener.notifier().unwrap();
        let (parked, finish) = notifier.run_parked_in_turn(move || {
            assert_eq!(swept.inner.purge(deadline + 1).0, 0, "nothing expired");
        });
        for value in 1..=10 {
            t.put(&key, &value.to_string(), 0).unwrap(); // each replaces the last
        }
        let delivered = *seen.lock();
        finish();
        assert_eq!(
            (parked, delivered),
            (false, 10),
            "every put has returned: each value it replaced is delivered"
        );
    }

    #[test]
    fn the_rest_grows_with_the_entries_scanned() {
        assert_eq!(rest_after(0), REST_MIN_MS);
        assert_eq!(rest_after(10_000), REST_MIN_MS);
        assert_eq!(rest_after(1_000_000), 3_906);
    }
}
