//! Fault injection: a wrapper around the engine that fails or parks commits on cue, so tests
//! can force a failed commit, a failing disk, or a reader racing a commit in flight.
//!
//! It lives here, not in `tests/`, because the engine trait is private; it is reached through
//! the hidden builder option [`DiskBuilder::faults`](crate::DiskBuilder::faults) and costs
//! nothing when unused (the engine is only wrapped when a plan is given). It is a reusable
//! test utility, not an API: hidden from the docs and free to change.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use parking_lot::{Condvar, Mutex};

use super::engine::{CommitError, Engine, Migration, MigrationCrash, Op, Visitor};
use crate::{error::Result, namespace::Namespace};

/// How long [`Faults::wait_parked`] waits for a commit to reach the barrier.
const PARK_WAIT: Duration = Duration::from_secs(10);

/// A plan of commit faults, shared between a test and the engine it wraps. Clones share it.
///
/// ```
/// use strata::{DiskDb, Faults, Store};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> strata::Result<()> {
/// let dir = tempfile::tempdir().unwrap();
/// let faults = Faults::new();
/// let db = DiskDb::builder().dir(dir.path()).faults(faults.clone()).open()?;
/// let store = db.store::<String, u32>("ns")?;
/// faults.fail_nth_commit(1);
/// assert!(store.put("k".into(), 1, None).await.is_err());
/// assert_eq!(store.get(&"k".into()).await?, None, "memory never shows a failed write");
/// store.put("k".into(), 2, None).await?;
/// # Ok(()) }
/// ```
#[doc(hidden)]
#[derive(Clone, Debug, Default)]
pub struct Faults {
    state: Arc<State>,
}

#[derive(Debug, Default)]
struct State {
    plan: Mutex<Plan>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct Plan {
    /// Commits attempted so far.
    commits: u64,
    /// Ops in each commit attempted, in order.
    sizes: Vec<usize>,
    /// Fail the commit with this (1-based) number.
    fail_at: Option<u64>,
    /// Fail every commit until cleared.
    fail_all: bool,
    /// How an open migrates a format-1 directory.
    migration: Migration,
    /// Report failures as fatal (like fjall's poisoned journal).
    fatal: bool,
    park: Park,
    /// The engine's close stops at the barrier (see [`Faults::park_close`]).
    park_close: bool,
}

#[derive(Debug, Default, PartialEq, Eq)]
enum Park {
    #[default]
    Off,
    /// The next commit stops at the barrier.
    Armed,
    /// A commit is waiting at the barrier.
    Parked,
    /// The waiting commit may go on.
    Released,
}

impl Faults {
    /// A plan with no faults.
    pub fn new() -> Self {
        Self::default()
    }

    /// The `n`th commit from now fails (1: the next one), without applying any of its ops.
    pub fn fail_nth_commit(&self, n: u64) {
        let mut plan = self.state.plan.lock();
        plan.fail_at = Some(plan.commits + n.max(1));
    }

    /// Every commit fails (nothing applied) until this is called with `false`.
    pub fn fail_all_commits(&self, on: bool) {
        self.state.plan.lock().fail_all = on;
    }

    /// Injected failures say the engine refuses every later commit, as fjall does once a
    /// journal write failed.
    pub fn fatal(&self, on: bool) {
        self.state.plan.lock().fatal = on;
    }

    /// The next commit stops at a barrier until [`Faults::release`].
    pub fn park_next_commit(&self) {
        self.state.plan.lock().park = Park::Armed;
    }

    /// The engine's close (when the last handle drops) stops at the barrier until
    /// [`Faults::release`], or for at most 10 s, so a close that blocks its caller still ends.
    pub fn park_close(&self) {
        self.state.plan.lock().park_close = true;
    }

    /// Blocks until a commit is parked at the barrier; false after 10 s without one.
    pub fn wait_parked(&self) -> bool {
        let deadline = Instant::now() + PARK_WAIT;
        let mut plan = self.state.plan.lock();
        while plan.park != Park::Parked {
            if self
                .state
                .changed
                .wait_until(&mut plan, deadline)
                .timed_out()
            {
                return false;
            }
        }
        true
    }

    /// Lets the parked commit (or the next one to park) go on.
    pub fn release(&self) {
        self.state.plan.lock().park = Park::Released;
        self.state.changed.notify_all();
    }

    /// Makes an open that migrates a format-1 directory move `records` per batch.
    pub fn migrate_in_batches_of(&self, records: usize) {
        self.state.plan.lock().migration.batch = records;
    }

    /// Makes an open that migrates a format-1 directory abort the process (no unwinding, no
    /// close: a crash) right after its `n`th batch is committed. For a child process.
    pub fn abort_after_migration_batches(&self, n: u64) {
        self.state.plan.lock().migration.crash = Some(MigrationCrash::Batch(n));
    }

    /// Makes an open that migrates a format-1 directory abort the process once every record
    /// has moved and the moves are fsynced, before format 1's keyspace is dropped.
    pub fn abort_after_migration_persist(&self) {
        self.state.plan.lock().migration.crash = Some(MigrationCrash::Persisted);
    }

    /// Makes an open that migrates a format-1 directory abort the process once format 1's
    /// keyspace is dropped, before the new format is recorded.
    pub fn abort_after_migration_drop(&self) {
        self.state.plan.lock().migration.crash = Some(MigrationCrash::Dropped);
    }

    /// Makes an open that migrates a format-1 directory wait `stall` before it moves anything
    /// (a move slower than the open's timeout).
    pub fn stall_migration(&self, stall: Duration) {
        self.state.plan.lock().migration.stall = stall;
    }

    /// How an open migrates a format-1 directory.
    pub(crate) fn migration(&self) -> Migration {
        self.state.plan.lock().migration
    }

    /// Commits attempted so far (failed ones included).
    pub fn commits(&self) -> u64 {
        self.state.plan.lock().commits
    }

    /// Ops in each commit attempted so far, in order.
    pub fn commit_sizes(&self) -> Vec<usize> {
        self.state.plan.lock().sizes.clone()
    }

    /// Counts a commit, waits at the barrier if armed, and says whether it must fail.
    fn before_commit(&self, ops: usize) -> Option<CommitError> {
        let mut plan = self.state.plan.lock();
        plan.commits += 1;
        plan.sizes.push(ops);
        if plan.park == Park::Armed {
            plan.park = Park::Parked;
            self.state.changed.notify_all();
            while plan.park == Park::Parked {
                self.state.changed.wait(&mut plan);
            }
            plan.park = Park::Off;
        }
        let fail = plan.fail_all || plan.fail_at == Some(plan.commits);
        fail.then(|| CommitError {
            reason: format!("injected fault: commit {} failed", plan.commits),
            fatal: plan.fatal,
        })
    }

    /// Waits at the barrier if [`Faults::park_close`] was called (bounded, see there).
    fn before_close(&self) {
        let deadline = Instant::now() + PARK_WAIT;
        let mut plan = self.state.plan.lock();
        if !std::mem::take(&mut plan.park_close) {
            return;
        }
        plan.park = Park::Parked;
        self.state.changed.notify_all();
        while plan.park == Park::Parked {
            if self
                .state
                .changed
                .wait_until(&mut plan, deadline)
                .timed_out()
            {
                break;
            }
        }
        plan.park = Park::Off;
    }

    /// Wraps `engine` so its commits follow this plan.
    pub(crate) fn wrap(&self, engine: Arc<dyn Engine>) -> Arc<dyn Engine> {
        Arc::new(FaultyEngine {
            inner: engine,
            faults: self.clone(),
        })
    }
}

/// An engine whose commits follow a [`Faults`] plan; everything else passes through.
struct FaultyEngine {
    inner: Arc<dyn Engine>,
    faults: Faults,
}

impl Engine for FaultyEngine {
    fn open_namespaces(&self, namespaces: &[Namespace]) -> Result<()> {
        self.inner.open_namespaces(namespaces)
    }

    fn drop_namespace(&self, namespace: &Namespace) -> Result<bool> {
        self.inner.drop_namespace(namespace)
    }

    fn scan(&self, prefix: &[u8], visit: &mut Visitor<'_>) -> Result<()> {
        self.inner.scan(prefix, visit)
    }

    fn size_hints(&self) -> Vec<(Vec<u8>, usize, u64)> {
        self.inner.size_hints()
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.inner.get(key)
    }

    fn commit(&self, ops: &[Op]) -> std::result::Result<(), CommitError> {
        match self.faults.before_commit(ops.len()) {
            Some(error) => Err(error),
            None => self.inner.commit(ops),
        }
    }

    fn sync(&self) -> std::result::Result<(), String> {
        self.inner.sync()
    }

    fn compact(&self) -> Result<()> {
        self.inner.compact()
    }

    fn close(&self) {
        self.faults.before_close();
        self.inner.close()
    }
}
