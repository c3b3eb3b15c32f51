//! Group commit: a node's concurrent puts and deletes reach Redis together.
//!
//! One writer task per store (per namespace) sends one batch at a time: whatever queued while
//! the previous batch was in flight, so a lone write goes alone and at once. A batch is one
//! remote call ([`Store::write_many_and_notify`]; on Redis one pipeline of the `SET`s and
//! `UNLINK`s and ONE `PUBLISH` that lists every key, one pipeline per slot on a cluster), so the
//! server fans out one message per batch instead of one per key and each node parses one.
//!
//! After Redis acknowledged the batch, the writer does each write's local part (the fill-guard
//! claim, then the local put or drop, as a single write did) and only then answers the callers. Callers wait on a oneshot, so a caller that goes away (its future
//! dropped) changes nothing for the others; a write that was queued is still sent, as a request
//! already on the wire would be.

use std::{
    fmt,
    sync::{atomic::Ordering, Arc, Weak},
};

use parking_lot::RwLock;
use tokio::sync::{mpsc, oneshot};

use super::{link::Guard, store::Inner};
use crate::{
    codec::Key,
    error::{Error, Result},
    store::{BatchWrite, Expiry, Notice, Store},
    time::UnixMillis,
};

/// The most writes in one batch: bounds one pipeline (and its replies) well under the command
/// timeout; a longer queue goes in the next batches.
const MAX_BATCH: usize = 1024;

/// A write waiting for its batch.
pub(super) struct Queued<K, V> {
    pub write: BatchWrite<K, V>,
    /// The key as the invalidation message carries it.
    pub bytes: Vec<u8>,
    /// The key's fill guard, taken before the write was queued ([`super::Stripes::claim`]).
    pub guard: Guard,
    /// When the caller began (clock ms): the local copy never outlives the remote TTL.
    pub started: UnixMillis,
    reply: oneshot::Sender<Result<bool>>,
}

/// The queue in front of one store's writer. The writer starts with the first write (on that
/// caller's runtime) and again if its runtime went away.
pub(super) struct Committer<K, V> {
    queue: RwLock<Option<mpsc::UnboundedSender<Queued<K, V>>>>,
}

impl<K, V> Default for Committer<K, V> {
    fn default() -> Self {
        Committer {
            queue: RwLock::new(None),
        }
    }
}

/// What a batch write is called in errors.
fn verb<K, V>(write: &BatchWrite<K, V>) -> &'static str {
    match write {
        BatchWrite::Put { .. } => "PUT",
        BatchWrite::Delete(_) => "DELETE",
    }
}

impl<K, V, L, R> Inner<K, V, L, R>
where
    K: Key,
    V: Clone + Send + Sync + 'static,
    L: Store<K, V> + 'static,
    R: Store<K, V> + 'static,
{
    /// Queues `write` for the next batch and waits for its outcome: a put's `true`, or whether
    /// a delete removed a live entry.
    pub(super) async fn commit(
        self: &Arc<Self>,
        write: BatchWrite<K, V>,
        bytes: Vec<u8>,
        guard: Guard,
        started: UnixMillis,
    ) -> Result<bool> {
        let context = format!("{} {:?} in {}", verb(&write), write.key(), self.namespace);
        let (reply, outcome) = oneshot::channel();
        let queued = Queued {
            write,
            bytes,
            guard,
            started,
            reply,
        };
        self.enqueue(queued)
            .map_err(|why| Error::backend(&*context, why))?;
        outcome.await.unwrap_or_else(|_| {
            let why = "the store's writer stopped before answering (its runtime shut down)";
            Err(Error::backend(context, why))
        })
    }

    fn enqueue(self: &Arc<Self>, queued: Queued<K, V>) -> std::result::Result<(), &'static str> {
        let counters = &self.hub.counters;
        counters.waiting.fetch_add(1, Ordering::Relaxed);
        let queued = match &*self.commits.queue.read() {
            Some(queue) => match queue.send(queued) {
                Ok(()) => return Ok(()),
                Err(mpsc::error::SendError(queued)) => queued,
            },
            None => queued,
        };
        let mut slot = self.commits.queue.write();
        let queued = match slot.as_ref() {
            Some(queue) => match queue.send(queued) {
                Ok(()) => return Ok(()),
                Err(mpsc::error::SendError(queued)) => queued,
            },
            None => queued,
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            counters.waiting.fetch_sub(1, Ordering::Relaxed);
            return Err("a ReplicatedStore writes from inside a Tokio runtime");
        };
        let (queue, rx) = mpsc::unbounded_channel();
        runtime.spawn(writer(Arc::downgrade(self), rx));
        let sent = queue
            .send(queued)
            .map_err(|_| "the store's writer did not start");
        *slot = Some(queue);
        sent
    }

    /// Sends one batch and answers each of its callers. A batch that could not be sent because
    /// a value did not encode goes again write by write, so only the bad one fails.
    async fn send_batch(&self, batch: Vec<Queued<K, V>>) {
        if let Some(alone) = self.try_batch(batch).await {
            for queued in alone {
                let _ = self.try_batch(vec![queued]).await;
            }
        }
    }

    /// Sends one batch and answers its callers, or hands it back to be sent write by write.
    async fn try_batch(&self, batch: Vec<Queued<K, V>>) -> Option<Vec<Queued<K, V>>> {
        let counters = &self.hub.counters;
        counters.batches.fetch_add(1, Ordering::Relaxed);
        (counters.batched_writes).fetch_add(batch.len() as u64, Ordering::Relaxed);
        if !self.hub.link.is_up() {
            self.refuse(batch);
            return None;
        }
        let keys: Vec<&[u8]> = batch.iter().map(|q| q.bytes.as_slice()).collect();
        let payload = self.hub.message_many(&keys);
        let notice = Notice {
            channel: &self.channel,
            payload: &payload,
        };
        let writes: Vec<BatchWrite<K, V>> = batch.iter().map(|q| q.write.clone()).collect();
        let outcome = self.remote.write_many_and_notify(writes, notice).await;
        match outcome {
            Ok((done, sent)) if done.len() == batch.len() => {
                self.committed(batch, done, sent).await
            }
            Ok((done, _)) => {
                let why = format!("{} outcomes for {} writes", done.len(), batch.len());
                let e = Error::backend(format!("a batch of writes in {}", self.namespace), why);
                self.failed(batch, e).await
            }
            // Nothing was sent: a value did not encode.
            Err(Error::Encode { .. }) if batch.len() > 1 => return Some(batch),
            Err(e) => self.failed(batch, e).await,
        }
        None
    }

    /// The link dropped while the batch waited: nothing is sent, every caller is refused.
    fn refuse(&self, batch: Vec<Queued<K, V>>) {
        for q in batch {
            let context = format!(
                "{} {:?} in {}",
                verb(&q.write),
                q.write.key(),
                self.namespace
            );
            let _ = q.reply.send(Err(super::store::link_down(context)));
        }
    }

    /// Redis acknowledged every write (and the message, if it carried it): the local parts,
    /// then the message if it still has to go, then the answers. The local parts run
    /// concurrently (a disk tier group-commits them); two writes of one key in a batch share a
    /// fill-guard stripe, so at most one of them can claim it and the key ends uncached rather
    /// than with either value.
    async fn committed(&self, batch: Vec<Queued<K, V>>, done: Vec<bool>, sent: bool) {
        let mut keys = Vec::with_capacity(batch.len());
        let mut replies = Vec::with_capacity(batch.len());
        let mut local = Vec::with_capacity(batch.len());
        for q in batch {
            local.push(self.apply_here(q.write, q.guard, q.started));
            keys.push(q.bytes);
            replies.push(q.reply);
        }
        futures_util::future::join_all(local).await;
        let published = match sent {
            true => Ok(()),
            false => {
                let keys: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
                self.hub.publish_many(&self.channel, &keys).await
            }
        };
        match published {
            Ok(()) => {
                for (reply, flag) in replies.into_iter().zip(done) {
                    let _ = reply.send(Ok(flag));
                }
            }
            Err(e) => answer_all(replies, e, |_| "PUBLISH after a batch of writes".into()),
        }
    }

    /// One write's local part after Redis acknowledged it: a put claims its fill guard (so a
    /// fill that began earlier can never cache the value it replaced) and then caches its
    /// value; a delete drops the copy.
    async fn apply_here(&self, write: BatchWrite<K, V>, guard: Guard, started: UnixMillis) {
        match write {
            BatchWrite::Put { key, value, ttl } => {
                let expiry = ttl.map_or(Expiry::Never, Expiry::In);
                match (self.stripes.claim(guard), self.local_ttl(expiry, started)) {
                    (Some(mine), Some(local)) => self.cache(mine, &key, value, local).await,
                    _ => self.drop_local(&key).await,
                }
            }
            BatchWrite::Delete(key) => self.changed_here(&key).await,
        }
    }

    /// The batch failed, so any of its writes may or may not be in Redis: nothing of theirs is
    /// cached here, their keys' local copies are dropped and the other nodes told so (best
    /// effort), and every caller of the batch gets the error.
    async fn failed(&self, batch: Vec<Queued<K, V>>, error: Error) {
        for q in &batch {
            self.changed_here(q.write.key()).await;
        }
        let keys: Vec<&[u8]> = batch.iter().map(|q| q.bytes.as_slice()).collect();
        let _ = self.hub.publish_many(&self.channel, &keys).await;
        let namespace = &self.namespace;
        let contexts: Vec<String> = (batch.iter())
            .map(|q| format!("{} {:?} in {namespace}", verb(&q.write), q.write.key()))
            .collect();
        let replies = batch.into_iter().map(|q| q.reply).collect();
        answer_all(replies, error, |i| contexts[i].clone());
    }
}

/// Gives every caller of a batch `error`: a lone caller the error itself, each caller of a
/// larger batch a [`Error::Backend`] naming its own write, with the batch's error as source.
fn answer_all(
    mut replies: Vec<oneshot::Sender<Result<bool>>>,
    error: Error,
    context: impl Fn(usize) -> String,
) {
    if replies.len() == 1 {
        if let Some(reply) = replies.pop() {
            let _ = reply.send(Err(error));
        }
        return;
    }
    let count = replies.len();
    let shared = Arc::new(error);
    for (i, reply) in replies.into_iter().enumerate() {
        let context = format!("{} (one of a batch of {count} writes)", context(i));
        let _ = reply.send(Err(Error::backend(context, SharedError(shared.clone()))));
    }
}

/// One error shared by the callers of a batch, as the source of each one's own error.
#[derive(Debug)]
struct SharedError(Arc<Error>);

impl fmt::Display for SharedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for SharedError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&*self.0)
    }
}

/// The writer of one store: one batch in flight at a time. It ends when the store (and with it
/// the queue's sender) is dropped.
async fn writer<K, V, L, R>(
    inner: Weak<Inner<K, V, L, R>>,
    mut queue: mpsc::UnboundedReceiver<Queued<K, V>>,
) where
    K: Key,
    V: Clone + Send + Sync + 'static,
    L: Store<K, V> + 'static,
    R: Store<K, V> + 'static,
{
    let mut last = 0;
    while let Some(first) = queue.recv().await {
        if last > 1 {
            // Under load, the callers the last batch answered are queueing their next writes
            // right now: let them, so they go as one batch instead of a batch of the first
            // one and a batch of the rest. After a lone write (or idle) nothing waits.
            tokio::task::yield_now().await;
        }
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let Some(inner) = inner.upgrade() else { return };
        let waiting = &inner.hub.counters.waiting;
        waiting.fetch_sub(batch.len() as u64, Ordering::Relaxed);
        last = batch.len();
        inner.send_batch(batch).await;
    }
}
