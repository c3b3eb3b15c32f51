//! Events: what happened to which key, for subscribers that want to know (hooks in Cachex terms).
//!
//! Publishing never blocks a writer: events go into a bounded broadcast ring; a subscriber that
//! falls behind loses the oldest events (and is told how many) instead of slowing the store.
//! When nobody subscribes, publishing costs one relaxed atomic load. To see every removal, with
//! its value, give the store an [`EvictionListener`](crate::EvictionListener) instead.

use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc,
};

use tokio::sync::broadcast;

/// Why an entry left the store (moka's `RemovalCause`, plus our generational eviction).
///
/// An [`EvictionListener`](crate::EvictionListener) gets it with every removed entry; a bounded
/// store's own evictions are `Size`:
///
/// ```
/// use std::sync::{
///     atomic::{AtomicUsize, Ordering},
///     Arc,
/// };
/// use strata::{MemoryStore, RemovalCause};
///
/// let evicted = Arc::new(AtomicUsize::new(0));
/// let count = evicted.clone();
/// let store = MemoryStore::<u64, u64>::builder()
///     .max_capacity(100)
///     .eviction_listener(move |_key, _value, cause| {
///         if cause == RemovalCause::Size {
///             count.fetch_add(1, Ordering::Relaxed);
///         }
///     })
///     .build()?;
/// for i in 0..1_000 {
///     store.put(i, i, None)?;
/// }
/// assert!(store.count() <= 100);
/// // Every entry that is not there any more was handed over as `Size`, before `put` returned.
/// assert_eq!(evicted.load(Ordering::Relaxed), 1_000 - store.count());
/// # Ok::<(), strata::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum RemovalCause {
    /// Deleted by a caller (`delete`, `take`, `clear`).
    Explicit,
    /// Overwritten by a `put` of the same key.
    Replaced,
    /// Its TTL ran out.
    Expired,
    /// Evicted to respect a size or memory limit.
    Size,
    /// Dropped with the older generation of a generational store.
    Generation,
}

/// What happened to a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EventKind {
    /// A new key was written.
    Put,
    /// An existing key was overwritten.
    Replace,
    /// A key was deleted by a caller.
    Delete,
    /// A key expired.
    Expired,
    /// A key was evicted for size or memory.
    Evicted,
    /// A key was dropped with an old generation.
    Generation,
}

impl EventKind {
    /// The removal cause this event stands for, if it removed (or replaced) a value.
    pub fn cause(self) -> Option<RemovalCause> {
        match self {
            EventKind::Put => None,
            EventKind::Replace => Some(RemovalCause::Replaced),
            EventKind::Delete => Some(RemovalCause::Explicit),
            EventKind::Expired => Some(RemovalCause::Expired),
            EventKind::Evicted => Some(RemovalCause::Size),
            EventKind::Generation => Some(RemovalCause::Generation),
        }
    }
}

impl From<RemovalCause> for EventKind {
    fn from(cause: RemovalCause) -> Self {
        match cause {
            RemovalCause::Explicit => EventKind::Delete,
            RemovalCause::Replaced => EventKind::Replace,
            RemovalCause::Expired => EventKind::Expired,
            RemovalCause::Size => EventKind::Evicted,
            RemovalCause::Generation => EventKind::Generation,
        }
    }
}

/// One event: a key and what happened to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event<K> {
    /// The key.
    pub key: K,
    /// What happened.
    pub kind: EventKind,
}

/// Default number of events buffered per subscriber before the oldest are dropped.
pub const DEFAULT_EVENT_CAPACITY: usize = 4096;

/// The publishing side, owned by a store.
pub struct EventBus<K> {
    tx: broadcast::Sender<Event<K>>,
    subscribers: Arc<AtomicUsize>,
}

impl<K: Clone> EventBus<K> {
    /// A bus buffering `capacity` events per subscriber.
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(1));
        EventBus {
            tx,
            subscribers: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// True when someone listens; check it before building an event that costs a clone.
    #[inline]
    pub fn is_active(&self) -> bool {
        self.subscribers.load(Ordering::Relaxed) > 0
    }

    /// Publishes `kind` for `key` if anyone listens. Never blocks.
    #[inline]
    pub fn emit(&self, key: &K, kind: EventKind) {
        if self.is_active() {
            let _ = self.tx.send(Event {
                key: key.clone(),
                kind,
            });
        }
    }

    /// A new subscription that sees every event published from now on.
    pub fn subscribe(&self) -> Events<K> {
        let rx = self.tx.subscribe();
        self.subscribers.fetch_add(1, Ordering::Relaxed);
        Events {
            rx,
            subscribers: self.subscribers.clone(),
            lagged: 0,
        }
    }
}

impl<K: Clone> Default for EventBus<K> {
    fn default() -> Self {
        Self::new(DEFAULT_EVENT_CAPACITY)
    }
}

impl<K> std::fmt::Debug for EventBus<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventBus")
            .field("subscribers", &self.subscribers.load(Ordering::Relaxed))
            .finish()
    }
}

/// A subscription to a store's events.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> strata::Result<()> {
/// use strata::{EventKind, MemoryStore};
/// let store = MemoryStore::<String, u32>::builder().build()?;
/// let mut events = store.subscribe();
/// store.put("a".to_string(), 1, None)?;
/// let event = events.recv().await.unwrap();
/// assert_eq!((event.key.as_str(), event.kind), ("a", EventKind::Put));
/// # Ok(()) }
/// ```
pub struct Events<K> {
    rx: broadcast::Receiver<Event<K>>,
    subscribers: Arc<AtomicUsize>,
    lagged: u64,
}

impl<K: Clone> Events<K> {
    /// The next event, or `None` once the store is gone. Events lost because this subscriber fell
    /// behind are skipped and counted in [`Events::lagged`].
    pub async fn recv(&mut self) -> Option<Event<K>> {
        loop {
            match self.rx.recv().await {
                Ok(event) => return Some(event),
                Err(broadcast::error::RecvError::Lagged(n)) => self.lagged += n,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// The next event if one is ready, without waiting.
    pub fn try_recv(&mut self) -> Option<Event<K>> {
        loop {
            match self.rx.try_recv() {
                Ok(event) => return Some(event),
                Err(broadcast::error::TryRecvError::Lagged(n)) => self.lagged += n,
                Err(_) => return None,
            }
        }
    }

    /// How many events this subscriber missed because it fell behind.
    pub fn lagged(&self) -> u64 {
        self.lagged
    }
}

impl<K> Drop for Events<K> {
    fn drop(&mut self) {
        self.subscribers.fetch_sub(1, Ordering::Relaxed);
    }
}

impl<K> std::fmt::Debug for Events<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events")
            .field("lagged", &self.lagged)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_subscriber_loses_oldest_and_counts_them() {
        let bus = EventBus::new(4);
        let mut events = bus.subscribe();
        for i in 0..10u32 {
            bus.emit(&i, EventKind::Put);
        }
        let first = events.try_recv().unwrap();
        assert_eq!(first.key, 6);
        assert_eq!(events.lagged(), 6);
    }

    #[test]
    fn no_subscriber_means_inactive() {
        let bus: EventBus<u32> = EventBus::default();
        assert!(!bus.is_active());
        let events = bus.subscribe();
        assert!(bus.is_active());
        drop(events);
        assert!(!bus.is_active());
    }
}
