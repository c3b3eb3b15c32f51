//! The future of [`Cache::get`]: on its first poll it asks the store for an answer at once
//! ([`Cache::get_now`]), and only when the store declines does it build and await the read
//! through the store's future. Written by hand rather than as an `async fn` so that its `poll`
//! can be inlined into the caller's own future: a read from memory then hands its
//! `Result<Option<V>>` straight to the caller instead of through the state of a nested future
//! (measured in `benches/compare/getcost.rs`, probes `cache_get_*`).

use std::{
    fmt::Debug,
    future::Future,
    hash::Hash,
    pin::Pin,
    task::{Context, Poll},
};

use super::cache::Cache;
use crate::{
    error::{Error, Result},
    store::Store,
};

/// A read of `key`: not started (nothing is read until the first poll), or waiting on the
/// store's future (`read`). A read the store answers at once leaves the future as it was
/// (`read` still `None`, written again: see `still_not_waiting`).
///
/// The store's future is boxed, so `Get` is `Unpin` and a hit's future is three words the
/// caller writes once. `read` is dropped out of line ([`Drop`] below): the drop of a `Get` is
/// then a test of a pointer in the caller, where the enum this was (`Start`, `Waiting`, `Done`)
/// had its drop glue called out of line on every hit (an awaited `Cache::get` hit: 182 → 174
/// instructions, `benches/compare/getcost.rs`). A read that has to wait (Redis) allocates
/// once.
pub(super) struct Get<'c, 'k, K, V, S, W, F> {
    cache: &'c Cache<K, V, S>,
    key: &'k K,
    wait: W,
    /// The store's read, once the store declined to answer at once; `None` again when it has
    /// answered (polled again, the future reads again).
    read: Option<Pin<Box<F>>>,
}

impl<'c, 'k, K, V, S, W, F> Get<'c, 'k, K, V, S, W, F> {
    /// A read of `key` that awaits `wait(cache, key)` if the store cannot answer at once.
    #[inline]
    pub(super) fn new(cache: &'c Cache<K, V, S>, key: &'k K, wait: W) -> Self {
        Get {
            cache,
            key,
            wait,
            read: None,
        }
    }
}

impl<K, V, S, W, F> Drop for Get<'_, '_, K, V, S, W, F> {
    #[inline(always)]
    fn drop(&mut self) {
        // What is left of `read` for the drop glue is a `None` it knows of: no second test.
        if let Some(read) = self.read.take() {
            drop_read(read);
        }
    }
}

/// Drops a read cancelled while it waited (out of line: the hit path only tests for it).
#[cold]
#[inline(never)]
fn drop_read<F>(read: Pin<Box<F>>) {
    drop(read);
}

impl<'c, 'k, K, V, S, W, F> Future for Get<'c, 'k, K, V, S, W, F>
where
    K: Hash + Eq + Clone + Send + Sync + Debug + 'static,
    V: Clone + Send + Sync + 'static,
    S: Store<K, V> + 'static,
    W: Fn(&'c Cache<K, V, S>, &'k K) -> F + Copy + Unpin,
    F: Future<Output = Result<Option<V>>>,
{
    type Output = Result<Option<V>>;

    // `inline(always)`, as `Cache::get_now`: a hit is then built in registers where the caller
    // uses it. Left to the `#[inline]` hint, LLVM kept `get_now` out of line here, and the
    // answer went through two 24-byte copies whose 16-byte loads read 8-byte stores (a
    // store-forwarding stall each; profile in BENCHMARKS.md, row `Cache::get polled`).
    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if this.read.is_none() {
            // A read answered at once leaves the future as it is, not waiting (the caller
            // does not poll a future that has answered; one that did would read again, and
            // get a correct answer).
            if let Some(answer) = this.cache.get_now(this.key) {
                this.still_not_waiting();
                return Poll::Ready(answer);
            }
            this.start_waiting();
        }
        // The waiting path hands its answer back in two parts, the value (in registers for a
        // small `V`) and an error through `failed`, and the `Result` is put together here.
        // Returned whole, the `Result` came back through memory, and the optimiser had the
        // hit write its answer to that same memory: the caller then read the hit's answer
        // back from the stack, in an awaited loop as one 16-byte load of two 8-byte stores
        // (a store-to-load forwarding stall on every read, which instruction counts do not
        // show; rows `Cache::get hit` of `benches/compare/cache.rs`).
        let mut failed = None;
        let value = std::task::ready!(this.poll_waiting(cx, &mut failed));
        Poll::Ready(match failed {
            None => Ok(value),
            Some(e) => Err(e),
        })
    }
}

impl<'c, 'k, K, V, S, W, F> Get<'c, 'k, K, V, S, W, F>
where
    W: Fn(&'c Cache<K, V, S>, &'k K) -> F + Copy,
    F: Future<Output = Result<Option<V>>>,
{
    /// Tells the optimiser, after a read answered at once, what it cannot see for itself:
    /// `read` is still `None` (it was before the read, and nothing else holds `&mut self`).
    /// The store's lock and counters are atomics between that test and the drop, so without
    /// this the drop loaded `read` again, tested it, and kept a call to [`drop_read`] on the
    /// hit path, and the answer was spilled to the stack around that call. The `None` written
    /// here is what the drop then reads (one store instead of a load, a store, a test and
    /// three spills: an awaited `Cache::get` hit 174 → 166 instructions,
    /// `benches/compare/getcost.rs`). What is "taken" is `None`: the `forget` leaks nothing,
    /// and it keeps the drop glue of the old value (another test) out.
    #[inline(always)]
    fn still_not_waiting(&mut self) {
        debug_assert!(self.read.is_none(), "a read answered at once never waited");
        std::mem::forget(self.read.take());
    }

    /// Starts the store's read (kept out of line: the fast path stays small).
    #[inline(never)]
    fn start_waiting(&mut self) {
        self.read = Some(Box::pin((self.wait)(self.cache, self.key)));
    }

    /// Polls the store's read; once it answers, the read is dropped. A failed read answers
    /// `None` with its error in `failed` (see `Get::poll`).
    #[inline(never)]
    fn poll_waiting(
        &mut self,
        cx: &mut Context<'_>,
        failed: &mut Option<Error>,
    ) -> Poll<Option<V>> {
        let Some(read) = self.read.as_mut() else {
            unreachable!("`Get::poll` starts the read before it polls it");
        };
        let answer = std::task::ready!(read.as_mut().poll(cx));
        self.read = None;
        Poll::Ready(answer.unwrap_or_else(|e| {
            *failed = Some(e);
            None
        }))
    }
}
