//! The future of [`Cache::get`]: on its first poll it asks the store for an answer at once
//! ([`Cache::get_now`]), and only when the store declines does it build and await the read
//! through the store's future. Written by hand rather than as an `async fn` so that its `poll`
//! can be inlined into the caller's own future: a read from memory then hands its
//! `Result<Option<V>>` straight to the caller instead of through the state of a nested future
//! (measured in `benches/compare/cache.rs`, rows `Cache::get` and `Cache::get_now`).

use std::{
    fmt::Debug,
    future::Future,
    hash::Hash,
    pin::Pin,
    task::{Context, Poll},
};

use super::cache::Cache;
use crate::{error::Result, store::Store};

pin_project_lite::pin_project! {
    /// A read not started yet (nothing is read until the first poll), one waiting on the
    /// store, or one that has answered after waiting. A read the store answers at once stays
    /// `Start`: its poll writes nothing here (3 instructions of every awaited read from memory,
    /// `benches/compare/getcost.rs`). The store's future is boxed: with it inline, dropping
    /// a `Get` was a call LLVM kept out of line (9 instructions of every awaited read from
    /// memory, `benches/compare/cache.rs`); a read that has to wait (Redis) allocates once more.
    #[project = Step]
    pub(super) enum Get<'c, 'k, K, V, S, W, F> {
        Start { cache: &'c Cache<K, V, S>, key: &'k K, wait: W },
        Waiting { read: Pin<Box<F>> },
        Done,
    }
}

impl<'c, 'k, K, V, S, W, F> Get<'c, 'k, K, V, S, W, F> {
    /// A read of `key` that awaits `wait(cache, key)` if the store cannot answer at once.
    #[inline]
    pub(super) fn new(cache: &'c Cache<K, V, S>, key: &'k K, wait: W) -> Self {
        Get::Start { cache, key, wait }
    }
}

impl<'c, 'k, K, V, S, W, F> Future for Get<'c, 'k, K, V, S, W, F>
where
    K: Hash + Eq + Clone + Send + Sync + Debug + 'static,
    V: Clone + Send + Sync + 'static,
    S: Store<K, V> + 'static,
    W: Fn(&'c Cache<K, V, S>, &'k K) -> F + Copy,
    F: Future<Output = Result<Option<V>>>,
{
    type Output = Result<Option<V>>;

    // `inline(always)`, as `Cache::get_now`: a hit is then built in registers where the caller
    // uses it. Left to the `#[inline]` hint, LLVM kept `get_now` out of line here, and the
    // answer went through two 24-byte copies whose 16-byte loads read 8-byte stores (a
    // store-forwarding stall each; profile in BENCHMARKS.md, row `Cache::get polled`).
    #[inline(always)]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Step::Start { cache, key, wait } = self.as_mut().project() {
            let (cache, key, wait) = (*cache, *key, *wait);
            // A read answered at once leaves the future as it is: nothing is written to it
            // (the caller does not poll a future that has answered; one that did would read
            // again, and get a correct answer).
            if let Some(answer) = cache.get_now(key) {
                return Poll::Ready(answer);
            }
            self.as_mut().start_waiting(cache, key, wait);
        }
        self.poll_waiting(cx)
    }
}

impl<'c, 'k, K, V, S, W, F> Get<'c, 'k, K, V, S, W, F>
where
    W: FnOnce(&'c Cache<K, V, S>, &'k K) -> F,
    F: Future<Output = Result<Option<V>>>,
{
    /// Starts the store's read (kept out of line: the fast path stays small).
    #[inline(never)]
    fn start_waiting(mut self: Pin<&mut Self>, cache: &'c Cache<K, V, S>, key: &'k K, wait: W) {
        self.set(Get::Waiting {
            read: Box::pin(wait(cache, key)),
        });
    }

    fn poll_waiting(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<Option<V>>> {
        let Step::Waiting { read } = self.as_mut().project() else {
            panic!("`Cache::get` polled after it completed");
        };
        let answer = std::task::ready!(read.as_mut().poll(cx));
        self.set(Get::Done);
        Poll::Ready(answer)
    }
}
