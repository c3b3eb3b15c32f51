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
//!   echoes (the node id is in the message). `put` and `delete` send the write and the
//!   `PUBLISH` in one pipeline ([`crate::Store::put_and_notify`]), so they cost one round trip
//!   (forced by `a_replicated_put_or_delete_is_one_round_trip`,
//!   which counts requests through a proxy).
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
//! the same write as the command, only a break between the two replies), the write is in Redis,
//! the caller gets an error, and other nodes keep their copies until their local TTL;
//! `local_ttl` bounds that.
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
mod invalidation;
mod join;
mod link;
mod message;
mod stats;
mod store;

pub(crate) use link::Stripes;

pub use builder::{ReplicatedStoreBuilder, DEFAULT_CHANNEL_PREFIX};
pub use stats::ReplicationStats;
pub use store::ReplicatedStore;
