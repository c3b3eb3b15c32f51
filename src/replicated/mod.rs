//! `ReplicatedStore`: Pow's multi-node `MnesiaCache` (+ `Unsplit`), rebuilt on Redis.
//!
//! Each node keeps a **local tier** (a `MemoryStore`, or a disk store) in front of a **remote
//! store** that holds the truth and the TTLs (a `RedisStore`). Nodes never talk to each other:
//! they share one Redis, and tell each other what changed over a Redis pub/sub channel per
//! namespace (`invalidation`, with the wire format in `message`).
//!
//! # Consistency model
//! - **Writes** (`put`, `delete`, `take`, `expire`, `incr`, `clear`, ...) go to Redis first; if
//!   Redis refuses, the call fails and nothing local changes. Then the node updates (or drops)
//!   its own copy and `PUBLISH`es an invalidation; every other node drops its copy when the
//!   message arrives (typically well under a millisecond on loopback). A node ignores its own
//!   echoes (the node id is in the message).
//! - **Group commit** (`put`, `delete`): one writer task per store sends one batch at a time,
//!   made of whatever queued while the previous batch was in flight (a lone write goes alone,
//!   at once): on Redis one pipeline of the `SET`s and `UNLINK`s followed by ONE `PUBLISH` whose
//!   message lists every key ([`crate::Store::write_many_and_notify`]), so a write costs one
//!   round trip (`a_replicated_put_or_delete_is_one_round_trip`, requests counted through a
//!   proxy) and Redis fans out one message per batch, not per key
//!   (`puts_queued_behind_a_batch_in_flight_go_as_one_batch_with_one_publish`: a batch parked
//!   in Redis with `CLIENT PAUSE WRITE`, five puts queued behind it, two `PUBLISH`es counted).
//!   A put returns `Ok` only after Redis acknowledged its `SET` and the `PUBLISH`; then, per key,
//!   the fill guard is claimed and the local copy written, and only then is the caller
//!   answered. Each write keeps its own value and TTL (the conformance case
//!   `concurrent_writes_keep_their_own_values_and_ttls`). A failed batch fails exactly its
//!   callers: each gets an error naming its own write, nothing of theirs is cached, and since
//!   Redis may have run some of the writes, their keys' copies are dropped here and on the
//!   other nodes (best effort;
//!   `a_batch_whose_connection_is_cut_mid_reply_fails_every_caller_and_caches_nothing`). A
//!   batch the link dropped under is refused as a whole before anything is sent. A caller that
//!   goes away (its future dropped) breaks nothing for the others, and its queued write is still
//!   made (`a_cancelled_caller_does_not_break_the_batch_for_the_others`). On a Redis Cluster the
//!   batch is one pipeline per slot, sent at once, then the `PUBLISH` after all of them were
//!   acknowledged: two round trips, so no node hears of a write before it is in Redis
//!   (`on_a_cluster_a_batch_across_slots_is_committed_and_invalidated_everywhere`). With
//!   Sentinel the batch goes to the master the remote store follows, as any write. A batch of
//!   one key is sent in the one-key message form, a longer batch in a form of its own.
//! - **A message a node cannot read** on its namespace's channel (garbled, cut short, a key it
//!   cannot decode, or another build's version or op, as in a rolling upgrade) is counted as
//!   `garbled` and drops that node's whole local tier, since which key changed is unknown; the
//!   next reads go to Redis (`an_unreadable_message_drops_the_local_tier_and_a_foreign_one_is_ignored`).
//!   Nodes built before this rule ignored such a message, so upgrade those first: a node of a
//!   build before group commit ignores a batch of several keys.
//! - **`get_many`** serves local copies and reads every local miss in one round trip (`MGET`
//!   and the `PTTL`s pipelined, one pipeline per cluster slot), caching them as a single read
//!   does (`get_many_reads_every_local_miss_in_one_round_trip`).
//! - **`compare_and_set`** compares against Redis, never a local copy (one Lua script), then
//!   drops every node's copy; a GCRA [`crate::RateLimiter`] over a replicated store is exact
//!   across nodes.
//! - **Reads** are served from the local tier when it holds a live copy and the link is up;
//!   otherwise from Redis with the key's remaining TTL (`GET` + `PTTL`), then cached locally
//!   with a TTL that ends no later than the Redis one. A read that races with an invalidation
//!   never caches the superseded value (striped fill guards, `link`), and neither does a read
//!   that races with a write on the same node: the write bumps the fill guard after Redis
//!   acknowledges it and before it touches the local tier (`Stripes::claim`; forced by
//!   `a_fill_racing_a_write_on_the_same_node_never_caches_the_old_value`).
//! - **Expiry** is Redis's alone, so "verify expiry before deletion" (Mnesia's
//!   `delete_or_reschedule`) holds by construction: a local copy expiring only drops the copy,
//!   never the key, and a TTL extended on one node (`expire`) invalidates every other node's
//!   copy, so the next read there picks up the new TTL.
//! - **Staleness window**: between a write on node A and the invalidation reaching node B, B can
//!   still return the old value (read-your-writes holds on A only). That window is the pub/sub
//!   latency.
//! - **Join**: a node starting with a local tier that already holds entries (a disk tier from a
//!   previous run) checks each against Redis and Redis wins (as `set_master_nodes` makes the
//!   cluster's copy win over a Mnesia node's disk); `warm_on_join` also fills the tier from Redis.
//! - **Split and recovery** (`Unsplit`): when the subscription drops or stops answering pings,
//!   the local tier is suspect. While disconnected, writes fail with `Error::Backend` — a write
//!   we cannot make true everywhere is refused, where Mnesia + Unsplit accept it and silently
//!   drop the losing island's writes on heal — and reads serve a local copy only within
//!   `stale_for` of the link's last proof of life (default zero: never); past that, or without
//!   a copy, they go to Redis, and fail if Redis does not answer. On reconnect the local tier
//!   is flushed, the link is marked up (writes are accepted again at once), and the tier
//!   refills lazily, or with `warm_on_join` by a background warm that reads Redis in pipelined
//!   batches while invalidations keep being applied; an invalidation (or a write on this node)
//!   that lands between a batch's read and its local write wins, and a warm stops when the
//!   link drops again (forced by
//!   `a_resync_accepts_writes_at_once_and_invalidations_win_over_its_reads`). A connection that breaks loudly (reset,
//!   `CLIENT KILL`, Redis restart) is noticed at once; one that goes silent (a partition without
//!   a reset) within two `heartbeat`s, and until then reads may still serve local copies.
//!
//! - **Sentinel**: with [`ReplicatedStoreBuilder::sentinel`] the link asks the sentinels for the
//!   master on connect and on every reconnect. A failover drops the subscription (the old master
//!   dies, or is demoted and closes its clients), so the split rules above hold through it: writes
//!   are refused until the link is back on the promoted master, then the local tier is flushed and
//!   (with `warm_on_join`) refilled in the background; the warm retries listing the keys while
//!   the remote store leaves the old master (forced by `replicated_nodes_follow_a_killed_master`
//!   and `replicated_nodes_follow_a_sentinel_failover_command` in `tests/redis_sentinel.rs`).
//!
//! One residual gap: if a node's `PUBLISH` fails after its Redis write succeeded (its own
//! connection broke while the others' did not; for `put` and `delete`, whose `PUBLISH` goes in
//! the same pipeline as the batch, only a break between the replies), the write is in Redis,
//! the caller gets an error, and other nodes keep their copies until their local TTL, unless
//! the failure's own best-effort invalidation gets through; `local_ttl` bounds that.
//!
//! Why group commit (issue 16 item 2): with one `SET`+`PUBLISH` pipeline per put, the raw
//! redis-rs floor with two nodes subscribed was 0.53× a plain `SET` (0.48–0.85, 64 tasks, one
//! run on 2 shared cores), and strata's put 0.36–0.52× a RedisStore put: every put cost Redis a
//! pattern match and a message write per subscriber, and cost every node the parse of one
//! message, its own echo included. One `PUBLISH` per batch moves the raw floor to 0.96× a plain
//! `SET` (0.90–1.12, same run; the `floor of a replicated put` contest of
//! `cargo bench --all-features --bench compare -- replicated`); BENCHMARKS.md has what the
//! ReplicatedStore put reaches.
//!
//! Why `PUBLISH` and not Redis 6+ server-assisted client-side caching (`CLIENT TRACKING ON
//! REDIRECT <id> BCAST PREFIX <ns>: NOLOOP`, which would let a write skip the `PUBLISH`): measured
//! raw (redis-rs, 64 tasks, the writer and one or two tracking nodes, Redis 7.0, 2 shared cores),
//! a `SET` on a tracked connection is 0.59–0.77× a plain `SET` in the same run (median of each
//! run; one noisy run 0.94), under the 0.8× a replicated put aims at, before strata's own work.
//! Redis pays for tracking on every write: its CPU per `SET` goes from 0.9–1.2 µs to 1.5–2.0 µs
//! (the key is remembered per prefix, and an invalidation array built and sent to each tracking
//! client every event-loop turn), about what a pipelined `SET`+`PUBLISH` costs it (1.4–1.9 µs);
//! the client side is cheaper (2.0–2.8 µs per op against 3.2–4.5 µs; plain 1.7–2.2 µs). Client
//! plus server CPU per op, plain over tracked, is 0.63–0.77. `SET`+`PUBLISH` measured 0.47–0.62×
//! in the same runs. The `floor of a replicated put` contest of
//! `cargo bench --all-features --bench compare -- replicated` measures both floors.

mod builder;
mod commit;
mod invalidation;
mod join;
mod keybytes;
mod link;
mod message;
mod replies;
mod stats;
mod store;

pub(crate) use link::Stripes;

pub use builder::{ReplicatedStoreBuilder, DEFAULT_CHANNEL_PREFIX};
pub use stats::ReplicationStats;
pub use store::ReplicatedStore;

/// `error` for a log line that must not name a key (a session id is a bearer secret): a
/// value's decode or encode error shows its reason only; every other error shows as it is
/// (the warnings that use it are about batch and namespace operations, whose contexts name no
/// key).
pub(crate) fn without_key(error: &crate::Error) -> WithoutKey<'_> {
    WithoutKey(error)
}

/// What [`without_key`] displays.
pub(crate) struct WithoutKey<'a>(&'a crate::Error);

impl std::fmt::Display for WithoutKey<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            crate::Error::Decode(e) => write!(f, "a value could not be decoded: {}", e.reason),
            crate::Error::Encode(e) => write!(f, "a value could not be encoded: {}", e.reason),
            other => std::fmt::Display::fmt(other, f),
        }
    }
}
