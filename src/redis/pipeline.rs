//! Auto-pipelining (ioredis' and fred's): the single commands that callers send on one server's
//! connection while the runtime is busy go out as one pipeline, one socket write, instead of
//! one write each. Under load this is most of the client's CPU per command: a 64-task GET load
//! writes ~34 commands per write instead of one (see BENCHMARKS.md).
//!
//! **How a batch forms.** A command sent while no other command is in flight on the connection
//! and no batch is open goes at once, on its own: a lone caller pays nothing (deferring it cost
//! a lone task twice the CPU per GET and two more context switches, see BENCHMARKS.md). Else the
//! first caller to find no open batch opens one and becomes its first member; every caller until
//! the batch is sent joins it (its command appended, its index noted). The batch is sent once
//! the runtime has run every other task that was ready when it opened ([`defer`]: tokio's
//! `yield_now` wake, which the scheduler defers until it has nothing else to run or polls its
//! I/O driver), so the callers that one read of replies woke all join.
//!
//! **Who sends it.** No task is spawned: the send is a shared future ([`Shared`]) that the
//! members drive. Until the batch is due, members wait on the batch itself, each with its own
//! waker; when it becomes due, **one** of them is woken to send it (the others sleep on until
//! the replies are in, so each member is woken once per command, not twice: waking every member
//! to find one sender cost a GET a whole extra task poll, see BENCHMARKS.md). A member that is
//! dropped (a timeout, a cancelled request) takes nothing with it: if no other member is sending
//! the batch, the next waiting one is woken to, and each takes its own reply by index, so no
//! reply reaches the wrong caller. Any member polled once the batch is due may send it. The
//! cost: a member that is alive but no longer polled (its runtime's worker blocked in
//! synchronous code, or its future kept aside unpolled) holds the others up while it is the one
//! woken, until their timeouts, as the deferred wake held by a blocked worker already did.
//! If every member is dropped, the batch is dropped (sent or not, like a cancelled command).
//! Nothing outlives its callers, so a runtime that shuts down strands nothing; the deferred
//! wake itself, dropped by a runtime that shuts down, makes the batch due ([`Fire`]'s drop).
//!
//! **Replies.** Redis answers a pipeline's commands one by one: a server error (`WRONGTYPE`)
//! is that command's reply ([`Value::ServerError`]), given to its caller only. A broken
//! connection fails the whole pipeline, so every member gets the error (and renews the
//! connection, see `connection`).
//!
//! **Order.** A caller sends its next command only after its previous one's reply, and a batch
//! keeps its members' order, so each caller's commands run in the order it made them. Calls
//! made concurrently have no order, even within one task: under `join!`, a single command
//! issued before an explicit pipeline (a write with `wait_for_replicas`, `put_many`, a notify
//! write) waits for the batch's deferred wake, while the pipeline is not batched and goes at
//! once, so Redis may run the pipeline first.

use std::{
    borrow::Cow,
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex, MutexGuard, Weak,
    },
    task::{Context, Poll, Wake, Waker},
};

use futures_util::future::{BoxFuture, FutureExt, Shared, WeakShared};
use redis::{aio::MultiplexedConnection, Cmd, Pipeline, RedisError, RedisResult, Value};

/// One server connection and its open batch.
pub(crate) struct Pipelined {
    conn: MultiplexedConnection,
    /// False: every command is sent on its own (`auto_pipeline(false)`).
    auto: bool,
    /// The batch callers join now, if one is open.
    open: Mutex<Option<Open>>,
    /// Commands sent and not answered (or given up) yet: none, and a command goes alone.
    in_flight: Arc<AtomicUsize>,
}

/// Counts `n` commands in flight until dropped (answered, failed, or given up).
struct InFlight {
    count: Arc<AtomicUsize>,
    n: usize,
}

impl InFlight {
    fn new(count: &Arc<AtomicUsize>, n: usize) -> Self {
        count.fetch_add(n, Ordering::AcqRel);
        InFlight {
            count: count.clone(),
            n,
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.count.fetch_sub(self.n, Ordering::AcqRel);
    }
}

/// Where a command goes: alone at once (given back), or into the open batch.
enum Joined<'a> {
    Alone(InFlight, Cow<'a, Cmd>),
    Batch(Member),
}

/// A batch not sent yet.
struct Open {
    batch: Arc<Batch>,
    /// Held weakly: once every member is dropped before the batch is due, its send goes with
    /// them (never sent, like a cancelled command) and the next caller opens a new batch. A
    /// strong handle here kept it open, to be sent with whatever single command came next,
    /// however much later, after newer writes.
    send: WeakShared<Send>,
}

/// Every member's reply, each taken (by index) by its member; or the error that failed them all.
type Replies = Result<Arc<Mutex<Vec<Value>>>, RedisError>;

/// A batch's send.
type Send = BoxFuture<'static, Replies>;

/// A batch's commands, and its members until they go on to send it.
struct Batch {
    state: Mutex<BatchState>,
}

struct BatchState {
    /// Taken by the send.
    commands: Option<Pipeline>,
    count: usize,
    /// The runtime ran the tasks that were ready when the batch opened (or dropped the deferred
    /// wake): the batch may be sent.
    due: bool,
    /// The deferred wake was asked for.
    armed: bool,
    /// Sent, and answered or failed: the members still waiting are woken to take their replies.
    done: bool,
    /// By member index, the waker of each member waiting for the batch to be due or done; `None`
    /// once it went on to the send, or was dropped.
    waiting: Vec<Option<Waker>>,
    /// Members that went on to the send (each may drive it, and `Shared` wakes them).
    sending: usize,
    /// The waiting member woken to send the due batch, until it does or is dropped.
    woken: Option<usize>,
}

impl BatchState {
    /// The waiting member to wake so that the due batch is sent, if no member is sending it or
    /// was woken to: the first one still waiting.
    fn sender(&mut self) -> Option<Waker> {
        if !self.due || self.done || self.sending > 0 || self.woken.is_some() {
            return None;
        }
        let (index, waker) = self
            .waiting
            .iter()
            .enumerate()
            .find_map(|(i, w)| Some((i, w.as_ref()?.clone())))?;
        self.woken = Some(index);
        Some(waker)
    }
}

impl Batch {
    fn new() -> Arc<Self> {
        Arc::new(Batch {
            state: Mutex::new(BatchState {
                commands: Some(Pipeline::with_capacity(16)),
                count: 0,
                due: false,
                armed: false,
                done: false,
                waiting: Vec::with_capacity(16),
                sending: 0,
                woken: None,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, BatchState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Due: wakes one waiting member to send it (unless one is sending it already).
    fn fire(&self) {
        let sender = {
            let mut state = self.lock();
            state.due = true;
            state.sender()
        };
        if let Some(sender) = sender {
            sender.wake();
        }
    }

    /// Sent and answered (or failed): wakes every member still waiting.
    fn finish(&self) {
        let waiting: Vec<Waker> = {
            let mut state = self.lock();
            state.done = true;
            state.waiting.iter_mut().filter_map(Option::take).collect()
        };
        for waker in waiting {
            waker.wake();
        }
    }
}

impl Pipelined {
    pub(crate) fn new(conn: MultiplexedConnection, auto: bool) -> Arc<Self> {
        Arc::new(Pipelined {
            conn,
            auto,
            open: Mutex::new(None),
            in_flight: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// A clone of the connection, for pipelines and commands sent on their own.
    pub(crate) fn connection(&self) -> MultiplexedConnection {
        self.conn.clone()
    }

    /// The database the connection selected.
    pub(crate) fn db(&self) -> i64 {
        redis::aio::ConnectionLike::get_db(&self.conn)
    }

    /// Sends one command and returns its reply (a server error as [`Value::ServerError`]).
    /// An owned `cmd` joins a batch as it is; a borrowed one is cloned into it.
    pub(crate) async fn send(self: Arc<Self>, cmd: Cow<'_, Cmd>) -> RedisResult<Value> {
        if !self.auto || cmd.is_no_response() {
            return self.send_alone(&cmd).await;
        }
        // `self` is held until the reply: the batch sends on this connection even if it
        // was replaced (renewed) meanwhile.
        let member = match self.join(cmd) {
            Joined::Alone(_in_flight, cmd) => return self.send_alone(&cmd).await,
            Joined::Batch(member) => member,
        };
        let index = member.index;
        let replies = member.await?;
        let mut replies = replies.lock().unwrap_or_else(|p| p.into_inner());
        match replies.get_mut(index) {
            Some(reply) => Ok(std::mem::replace(reply, Value::Nil)),
            None => Err(RedisError::from(std::io::Error::other(
                "Redis answered an auto-pipelined batch with fewer replies than commands; the connection is out of step and is replaced",
            ))),
        }
    }

    /// `cmd` sent on its own. Boxed: the client's future for it is large, and every call's
    /// future (this one's callers' too) is moved a few times before it runs, so keeping it
    /// inline made every call copy it, batched or not (~5 % of a batched GET's instructions,
    /// callgrind); a call sent alone waits a whole round trip anyway.
    fn send_alone<'a>(&self, cmd: &'a Cmd) -> BoxFuture<'a, RedisResult<Value>> {
        let mut conn = self.conn.clone();
        Box::pin(async move { conn.send_packed_command(cmd).await })
    }

    fn lock(&self) -> MutexGuard<'_, Option<Open>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends `cmd` to the open batch (opening one if none is) as a new member; or, with no
    /// batch open and nothing in flight, counts it in flight to be sent alone.
    fn join<'a>(self: &Arc<Self>, cmd: Cow<'a, Cmd>) -> Joined<'a> {
        let mut open = self.lock();
        let live = open.as_ref().and_then(|open| {
            let send = open.send.upgrade()?;
            Some((open.batch.clone(), send))
        });
        let (batch, send) = match live {
            Some(live) => live,
            None => {
                // Counted under the lock: of two callers finding the connection idle, one
                // goes alone.
                if self.in_flight.load(Ordering::Acquire) == 0 {
                    *open = None;
                    return Joined::Alone(InFlight::new(&self.in_flight, 1), cmd);
                }
                let batch = Batch::new();
                let send = send_batch(Arc::downgrade(self), batch.clone(), self.in_flight.clone());
                // A send not polled yet always downgrades.
                *open = send.downgrade().map(|weak| Open {
                    batch: batch.clone(),
                    send: weak,
                });
                (batch, send)
            }
        };
        let index = {
            let mut state = batch.lock();
            if let Some(commands) = state.commands.as_mut() {
                commands.add_command(cmd.into_owned());
            }
            state.count += 1;
            state.waiting.push(None);
            state.count - 1
        };
        Joined::Batch(Member {
            batch,
            send,
            index,
            sending: false,
        })
    }

    /// Closes `batch`: no caller joins it any more.
    fn close(&self, batch: &Arc<Batch>) {
        let mut open = self.lock();
        if open.as_ref().is_some_and(|o| Arc::ptr_eq(&o.batch, batch)) {
            *open = None;
        }
    }
}

/// A call's place in a batch: waits (on the batch) until the batch is due, then on its send;
/// ready with every member's replies.
struct Member {
    batch: Arc<Batch>,
    send: Shared<Send>,
    index: usize,
    /// Went on to the send.
    sending: bool,
}

impl Future for Member {
    type Output = Replies;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Replies> {
        let this = &mut *self;
        if !this.sending {
            let mut state = this.batch.lock();
            if !state.due && !state.done {
                match &mut state.waiting[this.index] {
                    Some(waker) if waker.will_wake(cx.waker()) => {}
                    slot => *slot = Some(cx.waker().clone()),
                }
                let arm = !std::mem::replace(&mut state.armed, true);
                drop(state);
                if arm {
                    defer(&this.batch);
                }
                return Poll::Pending;
            }
            state.waiting[this.index] = None;
            state.sending += 1;
            if state.woken == Some(this.index) {
                state.woken = None;
            }
            this.sending = true;
        }
        Pin::new(&mut this.send).poll(cx)
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let sender = {
            let mut state = self.batch.lock();
            if self.sending {
                state.sending -= 1;
            } else if let Some(slot) = state.waiting.get_mut(self.index) {
                *slot = None;
            }
            if state.woken == Some(self.index) {
                state.woken = None;
            }
            // It may have been the one sending the batch (or woken to): another takes over.
            state.sender()
        };
        if let Some(sender) = sender {
            sender.wake();
        }
    }
}

/// The send of `batch`, once it is due: closes it to new members, sends its commands as one
/// pipeline, then wakes the members still waiting.
fn send_batch(
    pipelined: Weak<Pipelined>,
    batch: Arc<Batch>,
    in_flight: Arc<AtomicUsize>,
) -> Shared<Send> {
    async move {
        let sent = async {
            let (mut conn, commands, count) = {
                let pipelined = pipelined.upgrade().ok_or_else(dropped)?;
                pipelined.close(&batch);
                let (commands, count) = {
                    let mut state = batch.lock();
                    (state.commands.take().ok_or_else(dropped)?, state.count)
                };
                (pipelined.connection(), commands, count)
            };
            let _in_flight = InFlight::new(&in_flight, count);
            let replies = conn.send_packed_commands(&commands, 0, count).await?;
            Ok(Arc::new(Mutex::new(replies)))
        };
        let replies = sent.await;
        batch.finish();
        replies
    }
    .boxed()
    .shared()
}

/// A batch whose connection was dropped (its store with it) or that was sent twice; neither
/// happens while a member waits, as every member holds the connection.
fn dropped() -> RedisError {
    RedisError::from(std::io::Error::other(
        "the Redis connection of an auto-pipelined batch was dropped before it was sent",
    ))
}

/// Asks the runtime to make `batch` due once it has run the tasks that are ready now, so that
/// the callers one read of replies woke all join it: tokio's `yield_now` wake, which the
/// scheduler defers until it has nothing else to run or polls its I/O driver (at once outside
/// a tokio runtime). The yield future itself is not needed again.
fn defer(batch: &Arc<Batch>) {
    let fire = Waker::from(Arc::new(Fire {
        batch: batch.clone(),
    }));
    let yielded = std::pin::pin!(tokio::task::yield_now());
    let _ = yielded.poll(&mut Context::from_waker(&fire));
}

/// The deferred wake of a batch: makes it due. Dropped without being woken (its runtime shut
/// down), it does the same, so the batch is not left waiting for ever.
struct Fire {
    batch: Arc<Batch>,
}

impl Wake for Fire {
    fn wake(self: Arc<Self>) {
        self.batch.fire();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.batch.fire();
    }
}

impl Drop for Fire {
    fn drop(&mut self) {
        self.batch.fire();
    }
}
