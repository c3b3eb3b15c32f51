//! `ReplicationStats`: what a node's invalidation channel has seen.

use std::{sync::atomic::Ordering, time::Duration};

use super::invalidation::Hub;

/// A snapshot of one node's invalidation channel, from
/// [`ReplicatedStore::replication_stats`](super::ReplicatedStore::replication_stats).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReplicationStats {
    /// This node's id, carried in every message it publishes.
    pub node_id: u64,
    /// True while the node receives every invalidation.
    pub connected: bool,
    /// Messages received on the channel (all namespaces, including ignored ones).
    pub received: u64,
    /// Messages from other nodes applied to a local tier.
    pub applied: u64,
    /// This node's own messages, echoed back by Redis and ignored.
    pub own_echoes: u64,
    /// Messages for a namespace no store on this node serves, ignored.
    pub unknown_namespace: u64,
    /// Payloads (or keys in them) that did not decode; each dropped the namespace's local tier,
    /// since the key it invalidated is unknown.
    pub garbled: u64,
    /// Times the link to Redis dropped.
    pub disconnects: u64,
    /// Times it came back and the local tiers were flushed.
    pub recoveries: u64,
    /// Background warms after a reconnect (`warm_on_join`) that ran to the end; one that
    /// the link's next drop cut short is not counted.
    pub warms: u64,
    /// Values in Redis that the warm or the reconcile at join (or after a reconnect) could not
    /// decode as `V` (a type changed at a deploy, a stray `SET`): each is a miss there, its
    /// key left to read lazily (where a `get` of it is the decode error), while every other
    /// key of its batch is cached. Logged without the key.
    pub undecodable: u64,
    /// Publish-to-apply time of the last applied message (wall clock, so only meaningful
    /// between processes on one host or with synchronised clocks).
    pub last_latency: Option<Duration>,
    /// Group commits this node sent: each one pipeline of the puts and deletes that queued
    /// while the previous one was in flight, with one invalidation message for all of them.
    pub batches: u64,
    /// The puts and deletes those batches carried (`batched_writes / batches`: the mean batch).
    pub batched_writes: u64,
    /// Puts and deletes queued behind the batch in flight at the time of the snapshot.
    pub waiting: u64,
}

impl ReplicationStats {
    pub(super) fn read(hub: &Hub) -> Self {
        let c = &hub.counters;
        let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let latency = get(&c.last_latency_us);
        ReplicationStats {
            node_id: hub.node(),
            connected: hub.link.is_up(),
            received: get(&c.received),
            applied: get(&c.applied),
            own_echoes: get(&c.own_echoes),
            unknown_namespace: get(&c.unknown_namespace),
            garbled: get(&c.garbled),
            disconnects: get(&c.disconnects),
            recoveries: get(&c.recoveries),
            warms: get(&c.warms),
            undecodable: get(&c.undecodable),
            last_latency: (latency != u64::MAX).then(|| Duration::from_micros(latency)),
            batches: get(&c.batches),
            batched_writes: get(&c.batched_writes),
            waiting: get(&c.waiting),
        }
    }
}
