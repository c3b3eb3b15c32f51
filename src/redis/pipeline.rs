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
//! the runtime has run every other task that was ready when it opened ([`Deferred`]: tokio's
//! `yield_now` wake, which the scheduler defers until it has nothing else to run or polls its
//! I/O driver), so the callers that one read of replies woke all join.
//!
//! **Who sends it.** No task is spawned: the batch is a shared future ([`Shared`]) that every
//! member awaits, and whichever member is polled drives it. A member that is dropped (a
//! timeout, a cancelled request) takes nothing with it: the others still drive the batch, and
//! each takes its own reply by index, so no reply reaches the wrong caller. If every member is
//! dropped, the batch is dropped (sent or not, like a cancelled command). Nothing outlives its
//! callers, so a runtime that shuts down strands nothing; the deferred wake itself, dropped by
//! a runtime that shuts down, releases the batch ([`Fire`]'s drop).
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
        atomic::{AtomicBool, AtomicUsize, Ordering},
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
    queue: Mutex<Queue>,
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

/// Where a command goes: alone at once (given back), or into the open batch at this index.
enum Joined<'a> {
    Alone(InFlight, Cow<'a, Cmd>),
    Batch(usize, Batch),
}

/// The batch callers join now, if one is open, and the id the next one gets.
#[derive(Default)]
struct Queue {
    open: Option<Open>,
    next_id: u64,
}

/// A batch not sent yet.
struct Open {
    id: u64,
    commands: Pipeline,
    count: usize,
    /// Held weakly: once every member is dropped before the batch is due, its send goes with
    /// them (never sent, like a cancelled command) and the next caller opens a new batch. A
    /// strong handle here kept it open, to be sent with whatever single command came next,
    /// however much later, after newer writes.
    reply: Option<WeakShared<BoxFuture<'static, Replies>>>,
}

/// Every member's reply, each taken (by index) by its member; or the error that failed them all.
type Replies = Result<Arc<Mutex<Vec<Value>>>, RedisError>;

/// The batch's send, driven by whichever member polls it.
type Batch = Shared<BoxFuture<'static, Replies>>;

impl Pipelined {
    pub(crate) fn new(conn: MultiplexedConnection, auto: bool) -> Arc<Self> {
        Arc::new(Pipelined {
            conn,
            auto,
            queue: Mutex::new(Queue::default()),
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
        let (index, batch) = match self.join(cmd) {
            Joined::Alone(_in_flight, cmd) => return self.send_alone(&cmd).await,
            Joined::Batch(index, batch) => (index, batch),
        };
        let replies = batch.await?;
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

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends `cmd` to the open batch (opening one if none is) and returns its index there;
    /// or, with no batch open and nothing in flight, counts it in flight to be sent alone.
    fn join<'a>(self: &Arc<Self>, cmd: Cow<'a, Cmd>) -> Joined<'a> {
        let mut queue = self.lock();
        let queue = &mut *queue;
        // Counted under the lock: of two callers finding the connection idle, one goes alone.
        if queue.open.is_none() && self.in_flight.load(Ordering::Acquire) == 0 {
            return Joined::Alone(InFlight::new(&self.in_flight, 1), cmd);
        }
        let live = queue
            .open
            .as_ref()
            .and_then(|open| open.reply.as_ref()?.upgrade());
        let (open, batch) = match (&mut queue.open, live) {
            (Some(open), Some(batch)) => (open, batch),
            (open, _) => {
                let id = queue.next_id;
                queue.next_id += 1;
                let batch = send_when_due(Arc::downgrade(self), self.in_flight.clone(), id);
                let open = open.insert(Open {
                    id,
                    commands: Pipeline::new(),
                    count: 0,
                    reply: batch.downgrade(),
                });
                (open, batch)
            }
        };
        open.commands.add_command(cmd.into_owned());
        open.count += 1;
        Joined::Batch(open.count - 1, batch)
    }

    /// Closes batch `id`: no caller joins it any more. `None` if it is not the open one.
    fn close(&self, id: u64) -> Option<(Pipeline, usize)> {
        let mut queue = self.lock();
        match &queue.open {
            Some(open) if open.id == id => {}
            _ => return None,
        }
        let Open {
            commands, count, ..
        } = queue.open.take()?;
        Some((commands, count))
    }
}

/// The send of batch `id`, once the runtime has run the tasks ready now (so they can join).
fn send_when_due(pipelined: Weak<Pipelined>, in_flight: Arc<AtomicUsize>, id: u64) -> Batch {
    async move {
        Deferred::default().await;
        let (mut conn, commands, count) = {
            let pipelined = pipelined.upgrade().ok_or_else(dropped)?;
            let (commands, count) = pipelined.close(id).ok_or_else(dropped)?;
            (pipelined.connection(), commands, count)
        };
        let _in_flight = InFlight::new(&in_flight, count);
        let replies = conn.send_packed_commands(&commands, 0, count).await?;
        Ok(Arc::new(Mutex::new(replies)))
    }
    .boxed()
    .shared()
}

/// A batch whose connection was dropped (its store with it) or that was closed twice; neither
/// happens while a member waits, as every member holds the connection.
fn dropped() -> RedisError {
    RedisError::from(std::io::Error::other(
        "the Redis connection of an auto-pipelined batch was dropped before it was sent",
    ))
}

/// Ready once the scheduler woke it after running the other ready tasks, however many times it
/// is polled before: every member of a batch polls it, and tokio's `yield_now` alone is ready
/// at its second poll, which would close a batch as soon as its second member joined.
#[derive(Default)]
struct Deferred {
    due: Option<Arc<AtomicBool>>,
}

impl Future for Deferred {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if let Some(due) = &self.due {
            return match due.load(Ordering::Acquire) {
                true => Poll::Ready(()),
                false => Poll::Pending,
            };
        }
        let due = Arc::new(AtomicBool::new(false));
        let fire = Waker::from(Arc::new(Fire {
            due: due.clone(),
            waker: cx.waker().clone(),
        }));
        // `yield_now` hands `fire` to the scheduler to be woken once the other ready tasks
        // ran (at once, outside a tokio runtime); the yield future itself is not needed again.
        let yielded = std::pin::pin!(tokio::task::yield_now());
        let _ = yielded.poll(&mut Context::from_waker(&fire));
        self.due = Some(due);
        Poll::Pending
    }
}

/// The deferred wake of a [`Deferred`]: marks it due and wakes the batch. Dropped without being
/// woken (its runtime shut down), it does the same, so the batch is not left open for ever.
struct Fire {
    due: Arc<AtomicBool>,
    waker: Waker,
}

impl Fire {
    fn fire(&self) {
        if !self.due.swap(true, Ordering::AcqRel) {
            self.waker.wake_by_ref();
        }
    }
}

impl Wake for Fire {
    fn wake(self: Arc<Self>) {
        self.fire();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.fire();
    }
}

impl Drop for Fire {
    fn drop(&mut self) {
        self.fire();
    }
}
