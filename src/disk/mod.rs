//! `DiskStore`: Pow's MnesiaCache on one node — every live entry in memory for reads, every
//! write also in an embedded engine on disk, so a restart (or a crash) logs nobody out.
//!
//! # Layout and guarantees
//! - One directory ([`DiskDb`]) holds many namespaces (at most 64: a new one past that is
//!   [`Error::TooManyNamespaces`](crate::Error::TooManyNamespaces), counted and created under
//!   one lock, so racing opens never pass it; a `put_raw` batch's new namespaces are created
//!   all or none, see [`DiskDb::open_namespaces`]). The limit counts namespaces holding live
//!   entries: one whose entries all expired, were cleared or deleted (or that was never
//!   written) stops counting at the next open, which drops its empty keyspace
//!   (`disk_format::a_namespace_without_live_entries_stops_counting_at_the_next_open`); that
//!   search reads a dead namespace whole, so it stops at half of `open_timeout` and leaves
//!   the rest to the next open
//!   (`disk_format::the_search_for_dead_namespaces_stops_at_half_the_open_timeout`). A
//!   running process frees a place at once with [`DiskDb::drop_namespace`] (every entry of
//!   it goes; refused while a store of it is open;
//!   `disk_format::a_dropped_namespace_frees_its_place_at_once_and_stays_dropped`). A
//!   directory migrated from format 1 keeps every namespace it held, more than 64 included
//!   (`disk_format::a_format_1_directory_with_more_namespaces_than_the_limit_stays_whole`).
//!   Each namespace is in an engine
//!   keyspace of its own (`ns:<namespace>`) whose keys are the key's [`Key`](crate::Key) bytes
//!   and whose values are the encoded value followed by the deadline. Above the engine, keys
//!   are still spelled `namespace:key` (scans, raw records). The engine is fjall (an LSM tree
//!   with a journal) behind a private trait.
//! - **Format**: the directory records its on-disk format (2). Format 1 (strata before
//!   2026-12-07) kept every namespace in one keyspace under `namespace:key`; an open moves
//!   those records into their namespaces' keyspaces, each batch of the move (inserts and
//!   removes) one commit, so a crash anywhere in it loses and duplicates nothing and the next
//!   open resumes it; the old keyspace is dropped once the moves are fsynced
//!   (`disk_format::an_open_killed_during_the_migration_loses_and_duplicates_nothing`,
//!   and killed after the fsync or after the drop:
//!   `disk_format::an_open_killed_after_the_moves_or_the_drop_loses_and_duplicates_nothing`).
//!   The move does **not** count against `open_timeout` (~15 s per million sessions measured
//!   at load 11, against ~1.4 s for an open that moves nothing): the load after it gets the
//!   whole timeout, so a first start after an upgrade does not fail on it
//!   (`disk_format::a_move_slower_than_the_open_timeout_does_not_fail_the_open`); a load
//!   timing out after it says the move is done and kept, and the next open does not repeat
//!   it (`disk_format::an_open_timing_out_after_the_migration_says_so_and_the_next_open_is_whole`). Why:
//!   with `namespace:` in front of every key, fjall's write buffer (a skip list comparing a
//!   4-byte inline key prefix first) compared whole keys ~30 times per insert. There is no way
//!   back: an older strata opens a format-2 directory as empty. A directory from a newer
//!   format is [`Error::NewerFormat`](crate::Error::NewerFormat), left untouched.
//! - **Open** locks the directory (a second open, in this process or another, is
//!   [`Error::DirLocked`](crate::Error::DirLocked) after a 0.5 s grace period for a holder that
//!   is exiting), loads everything, deletes the expired
//!   records of *every* namespace (pow#713) and restores every deadline into the memory tier's
//!   sweeper. It fails with [`Error::Timeout`](crate::Error::Timeout) past `open_timeout`.
//!   The load decodes on every core and fills the memory tier in bulk (`memory::fill`: each
//!   shard's table sized once and filled in bucket order, no `put` per record); a bounded or
//!   idle tier, which must admit or flag entry by entry, is filled by `put`s.
//! - **Writes** take the stripe locks of their keys (256 stripes), decide on what memory holds
//!   and queue their ops as ONE job to one writer thread that group-commits whatever is queued.
//!   [`Writes::Sync`] returns once the commit reached the OS (it survives `kill -9`; add
//!   `fsync_interval` for power loss). A sync write is applied to memory by the writer thread
//!   only after its commit succeeded, and its stripes stay locked until then: **no reader ever
//!   sees a sync write that can still fail**, and the next writer of the key decides on
//!   committed state (test `a_sync_write_is_invisible_to_readers_until_its_commit_returns`).
//!   Writers of different stripes still share one commit
//!   (`concurrent_sync_writers_still_share_one_commit`). [`Writes::Async`] queues first, then
//!   applies to memory and returns: readers see it before it is on disk.
//! - **A failed commit** leaves memory as it was: the caller gets an error and nobody ever saw
//!   the write (`a_failed_delete_leaves_the_key_readable`,
//!   `a_failed_put_is_never_visible_and_not_on_disk`). A failure the engine would repeat
//!   (fjall poisons its journal when a journal write or fsync fails: disk full, I/O error) or
//!   the failure of a batch holding async writes (nobody is waiting to hear of it) makes the
//!   directory unavailable: that call and every later call of every handle, reads included,
//!   is [`Error::Unavailable`](crate::Error::Unavailable) naming the directory, until it is
//!   reopened (`a_poisoned_engine_makes_every_later_call_unavailable`,
//!   `a_failed_async_commit_makes_the_store_unavailable`, and with a real full file system in
//!   a child process, `a_full_disk_never_shows_a_failed_write_and_refuses_later_ones`).
//!   Whether a failed commit's bytes reached the journal anyway is unknown to the engine; after
//!   a `kill -9` the test above finds it absent.
//! - **Batches**: `put_many`, `delete_many`, `clear` (a prefix delete, expanded into removes)
//!   and `DiskDb::put_raw` are each ONE engine commit, never split: all of it is applied, in
//!   memory and on disk, or none (`a_failed_put_many_applies_none_of_it`,
//!   `a_failed_delete_many_deletes_nothing`, `a_failed_clear_keeps_every_entry`,
//!   `a_put_many_bigger_than_a_writer_batch_is_one_commit`). Jobs queued together share a
//!   commit, so a failure fails all of them.
//! - **Expiry**: the memory tier hides and sweeps expired entries; their records are *not*
//!   deleted one by one on disk. The engine's compaction filter drops them when it compacts,
//!   and the next open purges whatever is left, so disk use stays bounded without a delete per
//!   expiry.
//! - **Undecodable values** (a type changed between releases, or garbled bytes:
//!   `a_value_garbled_in_the_middle_is_a_counted_miss`) are a *counted miss*, not an
//!   error: at open they are skipped with one warning per namespace, counted in
//!   [`DiskStore::undecodable`], and left on disk until they expire, are overwritten or deleted
//!   — so rolling back to the old release reads them again. Reads of them miss.
//! - **Close**: dropping the last handle commits what is queued (the writer thread drains it),
//!   flushes the engine's write buffer to tables and fsyncs; then the directory is unlocked. It
//!   writes nothing else: fjall has no API to retire its active journal, so the next open
//!   replays it (at most fjall's 64 MB rotation size; test `close_writes_no_journal_padding`).
//!   [`DiskBuilder::retire_journal_on_close`] trades up to 64 MB of padding writes at close for
//!   a reopen that replays nothing (see its docs for why it is opt-in).
//!   Off an async runtime the drop waits for all this. On a runtime's thread it returns at once
//!   and the close finishes on a thread of its own, the directory locked until it is done: an
//!   open in this process waits for it, another process waits while the lock file says
//!   `closing` (`dropping_the_last_handle_on_a_runtime_thread_does_not_wait_for_the_close`,
//!   `another_process_waits_for_a_close_finishing_in_the_background`).
//!   [`DiskDb::close`] awaits it; do so before the process exits. A crash skips all this and
//!   the next open replays the journal as usual.
//! - **Queue**: async writes return once queued; the queue holds up to `queue_capacity` ops
//!   (1 048 576 by default), so a burst goes at memory speed and a sustained stream at the
//!   writer's: a write over capacity is queued, then its caller blocks until the writer has
//!   made room — never dropped (`a_full_queue_holds_an_async_put_until_the_writer_makes_room`).
//!   A batch that fails fails every job in it
//!   (`a_failing_batch_of_queued_async_writes_fails_every_job_in_it`), and a close commits
//!   everything queued before it
//!   (`a_close_with_async_writes_queued_behind_a_parked_commit_commits_them_all`). The writer
//!   applies each batch (up to 65 536 ops) in key order, which makes the engine's skip-list
//!   inserts cache-friendly.
//! - **Corruption**: unreadable engine files are [`Error::Corrupt`](crate::Error::Corrupt) with
//!   the path, or with [`OnCorrupt::Discard`] a warning and an empty start.
//! - **Damaged journal**: fjall 3.1 recovers its journal only in its `TolerateCorruptTail` mode
//!   (the mode option is commented out in its config), cutting it at the first bad batch
//!   (`journal/batch_reader.rs`, `truncate_to`) — the batches after the damage would vanish
//!   silently. So every commit writes its sequence number into a meta keyspace in the same
//!   batch, and `<dir>/COMMITTED` records the last acknowledged one (one 16-byte `pwrite` per
//!   batch, fsynced with the engine). An open that recovers a lower number is
//!   [`Error::LostCommits`](crate::Error::LostCommits); `accept_data_loss(true)` opens with what
//!   survived (`a_garbled_journal_tail_is_lost_commits_never_fewer_entries`,
//!   `a_journal_garbled_anywhere_never_opens_with_fewer_entries`).
//! - **Larger than memory** ([`DiskBuilder::memory_capacity`], opt-in, `Writes::Sync` only): the
//!   memory tier is a bounded hot set, the engine holds every entry. A read that misses memory
//!   reads the engine, which only ever holds committed writes, and promotes what it found under
//!   the key's stripe lock, so a promotion never overwrites a newer write; a stripe busy with a
//!   write is not waited for (`a_cold_read_during_a_parked_commit_sees_the_committed_value`).
//!   Conditional writes, counters and batches decide on memory-or-engine state under their
//!   stripe locks; `keys`, `count`, `clear`'s count and prefix scans read the engine. Opening
//!   loads nothing and purges nothing: every read checks the record's deadline and compaction
//!   drops expired records. The whole conformance suite runs on this mode
//!   (`conformance::disk_larger_than_memory`, a 2-entry hot set). With
//!   [`DiskBuilder::max_capacity`] too the disk holds at most that many entries, evicting
//!   FIFO by insertion from memory and disk under the key's stripe lock (`disk::fifo`;
//!   `conformance::disk_larger_than_memory_limited`).
//! - **Bounded** ([`DiskBuilder::max_capacity`], [`DiskBuilder::max_weight`], opt-in, in
//!   the all-in-memory mode): at most N entries (or that much weight: encoded bytes unless the
//!   store builder's `weigher` says otherwise) per namespace in memory and on disk. The memory tier evicts (S3-FIFO) and the
//!   write that caused an eviction queues its delete on disk before it returns, under the
//!   evicted key's stripe lock and only if no later write reinstated the key, so an evicted
//!   entry is gone after a restart and a put racing the eviction survives
//!   (`disk_bounded::a_put_after_an_eviction_is_not_deleted_by_it`). A delete lost to a crash
//!   or a lowered limit is caught up at open: the bounded tier evicts the surplus while loading
//!   and deletes it on disk. The conformance suite runs on this mode
//!   (`conformance::disk_bounded`).
//! - **Idle expiry** ([`DiskBuilder::time_to_idle`], or `Store::with_time_to_idle` for one
//!   namespace; not in the larger-than-memory mode): the memory tier expires an entry idle
//!   after its last read or write, and a background thread (the idle settler) deletes it on
//!   disk under its stripe lock, only if memory still has no live entry, so a racing write
//!   wins (`disk_idle::a_write_racing_the_idle_delete_wins`) and an idled-out entry is gone
//!   after a restart. The disk does not record reads: idle time restarts at open.
//! - **Compact memory tier** ([`DiskBuilder::compact_memory`], the default in the
//!   all-in-memory mode without `max_capacity`, `max_weight` or `time_to_idle`): each entry is
//!   ONE encoded record (deadline, key bytes, the value encoded as on disk) in a per-shard
//!   arena, decoded on every read (`disk::compact`), instead of a `K` and a `V`: no
//!   allocation per entry, ~280 bytes per 240-byte session after a reopen instead of ~357
//!   (`compact_memory(false)` opts out; a `get` then clones instead of decoding, 1.05x).
//!   Reads, writes, conditional writes, counters, prefix matching, stats, events and the
//!   eviction listener behave as in the other tier (`conformance::disk_compact`, with its
//!   listener cases); expired entries leave memory
//!   when read, when writes sweep their shard, or when the tier's sweeper thread scans the
//!   shards whose earliest deadline has passed (resting ~4 µs per entry scanned between rounds,
//!   so up to ~4 s late at a million entries). With `compact_memory(true)` the builder refuses
//!   `memory_capacity`, `max_capacity`, `max_weight` and `time_to_idle`, and
//!   `Store::with_time_to_idle` is refused; a compact tier chosen by default is swapped for
//!   the other tier by `Store::with_time_to_idle`, entries and listener included
//!   (`disk_store::compact::by_default_with_time_to_idle_swaps_in_an_idle_tier_keeping_entries_and_listener`).
//! - **Eviction listener** (`Store::install_eviction_listener`): every removal of the memory
//!   tier (which holds every live entry) with its value and cause (the compact tier decodes
//!   the removed record for it), `Size` evictions of a
//!   bounded store included. A sync write's removals are delivered on the writer thread after
//!   its commit: a listener must not block on the same directory. Refused in the
//!   larger-than-memory mode, where a delete of an entry only on disk would go unseen.
//! - **Permissions**: the directory is created `0700`, strata's own files `0600`, and the
//!   engine's files are made `0600` at open and close
//!   (`the_data_directory_and_its_files_are_owner_only`).

mod bounded;
mod builder;
mod closing;
mod cold;
mod compact;
mod db;
mod engine;
mod faults;
mod fifo;
mod idle;
mod load;
mod lock;
mod marker;
mod perms;
mod raw;
mod record;
mod retire;
mod store;
mod stripe;
mod sync_read;
mod writer;

pub use builder::{
    DiskBuilder, DiskDbBuilder, DiskStoreBuilder, ForDb, ForStore, OnCorrupt, Writes,
};
pub use db::DiskDb;
#[doc(hidden)]
pub use faults::Faults;
pub use load::OpenSummary;
#[doc(hidden)]
pub use raw::decode_stored_record;
pub use raw::RawRecord;
pub use store::DiskStore;
