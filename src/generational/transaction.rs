//! Transactions (Nebulex's `transaction/2`, `in_transaction?/0`): key-level locks held while a
//! closure runs.
//!
//! **What a transaction guarantees.** While `transaction(keys, f)` runs `f`, no other
//! *transaction* on any of those keys (or an all-keys transaction) runs: transactions on the same
//! keys are serialised. Plain writes (`put`, `delete`, ...) do **not** wait for transaction
//! locks, exactly as in Nebulex; a caller that needs isolation from them must write through
//! transactions too. Each single operation is atomic on its own (partition lock).
//!
//! Locks are owned by the calling **thread**: a nested `transaction` on the same thread
//! re-enters the locks it already holds and takes any new keys it names. The closure is sync;
//! do not hold a transaction across an `.await` (the task may move to another thread). Locks are
//! released when `f` returns, returns an error or panics. Keys are locked by hash, so two
//! different keys may rarely share a lock (a harmless false conflict). Locks are taken all at
//! once, never one by one, so two transactions cannot deadlock on each other's keys; a nested
//! transaction that adds keys while another thread holds them does wait, and two threads doing
//! that crosswise would deadlock — take every key in the outermost transaction.

use std::{
    cell::Cell,
    collections::HashMap,
    hash::Hash,
    sync::atomic::{AtomicU64, Ordering},
};

use parking_lot::{Condvar, Mutex};

use super::store::GenerationalStore;

/// A thread's owner id for transaction locks.
fn owner() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local! {
        static ID: Cell<u64> = const { Cell::new(0) };
    }
    ID.with(|id| {
        if id.get() == 0 {
            id.set(NEXT.fetch_add(1, Ordering::Relaxed));
        }
        id.get()
    })
}

/// A held lock: who holds it and how many times (re-entrant).
#[derive(Clone, Copy)]
struct Held {
    owner: u64,
    count: usize,
}

#[derive(Default)]
struct LockTable {
    keys: HashMap<u64, Held>,
    all: Option<Held>,
    /// Transaction depth per owner.
    depth: HashMap<u64, usize>,
    /// Threads waiting in `acquire` for a lock another thread holds (tests wait on it to pin a
    /// contender inside the wait).
    waiting: usize,
}

impl LockTable {
    fn free_for(held: Option<&Held>, me: u64) -> bool {
        held.is_none_or(|h| h.owner == me)
    }

    fn can_take(&self, wanted: Option<&[u64]>, me: u64) -> bool {
        if !Self::free_for(self.all.as_ref(), me) {
            return false;
        }
        match wanted {
            None => self.keys.values().all(|h| h.owner == me),
            Some(hashes) => hashes.iter().all(|h| Self::free_for(self.keys.get(h), me)),
        }
    }

    fn take(&mut self, wanted: Option<&[u64]>, me: u64) {
        let bump = |h: &mut Option<Held>| {
            let held = h.get_or_insert(Held {
                owner: me,
                count: 0,
            });
            held.count += 1;
        };
        match wanted {
            None => bump(&mut self.all),
            Some(hashes) => {
                for hash in hashes {
                    let held = self.keys.entry(*hash).or_insert(Held {
                        owner: me,
                        count: 0,
                    });
                    held.count += 1;
                }
            }
        }
        *self.depth.entry(me).or_insert(0) += 1;
    }

    fn release(&mut self, wanted: Option<&[u64]>, me: u64) {
        match wanted {
            None => {
                if let Some(h) = self.all.as_mut() {
                    h.count -= 1;
                    if h.count == 0 {
                        self.all = None;
                    }
                }
            }
            Some(hashes) => {
                for hash in hashes {
                    if let Some(h) = self.keys.get_mut(hash) {
                        h.count -= 1;
                        if h.count == 0 {
                            self.keys.remove(hash);
                        }
                    }
                }
            }
        }
        if let Some(d) = self.depth.get_mut(&me) {
            *d -= 1;
            if *d == 0 {
                self.depth.remove(&me);
            }
        }
    }
}

/// The store's transaction locks.
#[derive(Default)]
pub(crate) struct Locks {
    table: Mutex<LockTable>,
    released: Condvar,
}

/// Releases a transaction's locks when dropped, also on error and on panic.
struct Guard<'a> {
    locks: &'a Locks,
    wanted: Option<Vec<u64>>,
    me: u64,
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        self.locks
            .table
            .lock()
            .release(self.wanted.as_deref(), self.me);
        self.locks.released.notify_all();
    }
}

impl Locks {
    fn acquire(&self, wanted: Option<Vec<u64>>) -> Guard<'_> {
        let me = owner();
        let mut table = self.table.lock();
        while !table.can_take(wanted.as_deref(), me) {
            table.waiting += 1;
            self.released.wait(&mut table);
            table.waiting -= 1;
        }
        table.take(wanted.as_deref(), me);
        Guard {
            locks: self,
            wanted,
            me,
        }
    }

    fn in_transaction(&self) -> bool {
        self.table.lock().depth.contains_key(&owner())
    }
}

impl<K, V> GenerationalStore<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// Runs `f` holding transaction locks on `keys` (every key — an all-keys lock — when `keys`
    /// is empty). Re-entrant on the same thread; the locks are released when `f` returns, fails
    /// or panics (the panic then continues).
    ///
    /// **Guarantee:** transactions on the same keys (or any key, for an all-keys transaction)
    /// never run at the same time. Plain writes (`put`, `delete`, ...) do *not* wait for
    /// transaction locks, as in Nebulex: write through transactions wherever you need isolation.
    /// Locks belong to the calling thread: `f` is sync, so don't `.await` while holding one. A
    /// nested transaction naming new keys takes them too (waiting if another thread holds them;
    /// two threads doing that crosswise deadlock — name every key in the outermost transaction).
    /// Keys are locked by hash, so two keys may rarely share a lock (a false conflict only).
    ///
    /// ```
    /// use strata::GenerationalStore;
    ///
    /// let store = GenerationalStore::<String, u64>::builder().build()?;
    /// store.put("balance".into(), 10, None)?;
    /// let after = store.transaction(&["balance".to_string()], || {
    ///     assert!(store.in_transaction());
    ///     let balance = store.get("balance").unwrap_or(0);
    ///     store.put("balance".into(), balance - 3, None)?;
    ///     Ok::<_, strata::Error>(balance - 3)
    /// })?;
    /// assert_eq!(after, 7);
    /// assert!(!store.in_transaction());
    /// # Ok::<(), strata::Error>(())
    /// ```
    pub fn transaction<R, E>(&self, keys: &[K], f: impl FnOnce() -> Result<R, E>) -> Result<R, E> {
        let wanted = if keys.is_empty() {
            None
        } else {
            let mut hashes: Vec<u64> = keys.iter().map(|k| self.hash(k)).collect();
            hashes.sort_unstable();
            hashes.dedup();
            Some(hashes)
        };
        let _guard = self.inner.locks.acquire(wanted);
        f()
    }

    /// True while the calling thread runs inside one of this store's transactions.
    pub fn in_transaction(&self) -> bool {
        self.inner.locks.in_transaction()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    };

    use crate::GenerationalStore;

    /// A contender for a held key is pinned inside the lock's wait (its waiting count seen)
    /// before the holder leaves: it has not run its closure by then, and runs it once the holder
    /// is out. A transaction on another key does not wait for the holder.
    #[test]
    fn a_transaction_on_a_held_key_waits_until_the_holder_is_out() {
        let store = GenerationalStore::<String, u64>::builder().build().unwrap();
        let entered = Arc::new(AtomicBool::new(false));
        let contender = store.transaction(&["k".to_string()], || {
            let (s, entered2) = (store.clone(), entered.clone());
            let contender = std::thread::spawn(move || {
                s.transaction(&["k".to_string(), "other".to_string()], || {
                    entered2.store(true, Ordering::SeqCst);
                    Ok::<_, crate::Error>(())
                })
            });
            while store.inner.locks.table.lock().waiting == 0 && !entered.load(Ordering::SeqCst) {
                std::thread::yield_now();
            }
            assert!(
                !entered.load(Ordering::SeqCst),
                "a transaction on a held key ran while the holder was inside"
            );
            let s = store.clone();
            std::thread::spawn(move || {
                s.transaction(&["unrelated".to_string()], || Ok::<_, crate::Error>(()))
            })
            .join()
            .unwrap()?;
            Ok::<_, crate::Error>(contender)
        });
        contender.unwrap().join().unwrap().unwrap();
        assert!(entered.load(Ordering::SeqCst));
        assert_eq!(store.inner.locks.table.lock().waiting, 0);
    }
}
