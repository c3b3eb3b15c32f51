//! One shard: a hash table of entries and a min-heap of their deadlines.

use std::{cmp::Reverse, collections::BinaryHeap};

use hashbrown::HashTable;

/// An entry. `deadline` is Unix milliseconds, 0 for none.
pub(crate) struct Slot<K, V> {
    pub key: K,
    pub value: V,
    pub deadline: u64,
}

impl<K, V> Slot<K, V> {
    #[inline]
    pub fn is_expired(&self, now: impl FnOnce() -> u64) -> bool {
        self.deadline != 0 && self.deadline <= now()
    }
}

/// The deadline index holds `(deadline, hash)` pairs, not keys (16 bytes whatever the key type):
/// at a deadline the sweeper removes the entries on that hash's probe path whose deadline has
/// passed. That may take along another expired entry sharing the hash's control byte, which is
/// correct: every entry it removes is expired. Overwritten deadlines stay in the heap until popped (lazy deletion); the heap is
/// rebuilt when it grows past twice the table.
pub(crate) struct Shard<K, V> {
    pub table: HashTable<Slot<K, V>>,
    pub deadlines: BinaryHeap<Reverse<(u64, u64)>>,
}

impl<K, V> Default for Shard<K, V> {
    fn default() -> Self {
        Shard {
            table: HashTable::new(),
            deadlines: BinaryHeap::new(),
        }
    }
}

impl<K, V> Shard<K, V> {
    /// Records that the entry with `hash` expires at `deadline` (no-op for 0).
    pub fn schedule(&mut self, hash: u64, deadline: u64, rehash: impl Fn(&K) -> u64) {
        if deadline == 0 {
            return;
        }
        self.deadlines.push(Reverse((deadline, hash)));
        if self.deadlines.len() > 2 * self.table.len() + 64 {
            self.rebuild_deadlines(rehash);
        }
    }

    fn rebuild_deadlines(&mut self, rehash: impl Fn(&K) -> u64) {
        let live = self
            .table
            .iter()
            .filter(|s| s.deadline != 0)
            .map(|s| Reverse((s.deadline, rehash(&s.key))));
        self.deadlines = live.collect();
    }

    /// The earliest scheduled deadline, if any.
    pub fn next_deadline(&self) -> Option<u64> {
        self.deadlines.peek().map(|Reverse((d, _))| *d)
    }

    /// Removes up to `budget` due deadlines' entries expired at `now`; returns them.
    pub fn purge(&mut self, now: u64, budget: usize, out: &mut Vec<Slot<K, V>>) -> usize {
        let mut done = 0;
        while done < budget {
            match self.deadlines.peek() {
                Some(Reverse((d, _))) if *d <= now => {}
                _ => break,
            }
            let Some(Reverse((_, hash))) = self.deadlines.pop() else {
                break;
            };
            while let Ok(entry) = self
                .table
                .find_entry(hash, |s| s.deadline != 0 && s.deadline <= now)
            {
                out.push(entry.remove().0);
            }
            done += 1;
        }
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard_with(n: u64) -> Shard<u64, u64> {
        let mut shard = Shard::default();
        for k in 0..n {
            shard.table.insert_unique(
                k,
                Slot {
                    key: k,
                    value: k,
                    deadline: 10,
                },
                |s| s.key,
            );
        }
        shard
    }

    #[test]
    fn overwrites_do_not_grow_the_deadline_index_without_bound() {
        let mut shard = shard_with(100);
        for round in 0..20_000 {
            shard.schedule(round % 100, 10 + round, |k| *k);
        }
        assert!(
            shard.deadlines.len() <= 2 * 100 + 64 + 1,
            "{}",
            shard.deadlines.len()
        );
    }

    #[test]
    fn purge_removes_due_entries_only_and_respects_the_budget() {
        let mut shard = shard_with(0);
        for k in 0..10u64 {
            shard.table.insert_unique(
                k,
                Slot {
                    key: k,
                    value: k,
                    deadline: 100 + k,
                },
                |s| s.key,
            );
            shard.schedule(k, 100 + k, |k| *k);
        }
        let mut out = Vec::new();
        assert_eq!(
            shard.purge(104, 3, &mut out),
            3,
            "three deadlines processed"
        );
        // Removing by hash may take other due entries along (they are expired too): never a
        // live one.
        assert!(out.len() >= 3 && out.iter().all(|s| s.deadline <= 104));
        shard.purge(104, 100, &mut out);
        let mut keys: Vec<u64> = out.iter().map(|s| s.key).collect();
        keys.sort();
        assert_eq!(keys, [0, 1, 2, 3, 4]);
        assert_eq!(shard.table.len(), 5);
        assert_eq!(shard.next_deadline(), Some(105));
    }
}
