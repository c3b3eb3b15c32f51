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
//! **One timer per batch.** A call with a deadline ([`Pipelined::send_by`], every
//! `Conn::run`) that joins a batch does not start a timer of its own: the batch holds one, set
//! for the earliest deadline of its members (registering and removing a timer per call was ~7 %
//! of a batched command's instructions, see BENCHMARKS.md). A member that joins with an earlier
//! deadline than the timer's moves it earlier (a new timer). When it fires, every member whose
//! deadline has passed is marked timed out, and every live member is woken: the timed-out ones
//! end with [`TimedOut`] (and leave the batch as a dropped member does), the others see that
//! the batch has no timer any more and set a new one, on their own runtime, for the earliest
//! deadline left. So each member times out at its own deadline, never at an earlier member's:
//! a late joiner is not cut short by the timer the batch started with. A timer dropped with its
//! runtime (which fires it) counts as fired, so the members polled on another runtime set a new
//! one there. The batch's timer is dropped once its replies are in.
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
    cell::Cell,
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex, MutexGuard, Weak,
    },
    task::{Context, Poll, Wake, Waker},
};

use tokio::time::{Instant, Sleep};

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

/// A call's deadline passed before its reply came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimedOut;

/// A batch's send.
type Send = BoxFuture<'static, Replies>;

/// A batch's commands, and its members until they go on to send it.
struct Batch {
    state: Mutex<BatchState>,
    /// The batch's timer fired at least once: members look at their [`Slot`] on every poll
    /// from then on (before, a poll in the send reads nothing of the batch).
    fired: AtomicBool,
}

/// One member of a batch, by its index.
struct Slot {
    /// The member's waker: woken when the batch is due (to send it) or done, while it waits;
    /// and when the batch's timer fires, while it lives.
    waker: Option<Waker>,
    /// Went on to the send (`Shared` wakes it when the replies are in).
    sending: bool,
    /// Dropped.
    gone: bool,
    /// When its call gives up, if it has a deadline here (else its caller's own timeout
    /// bounds it).
    deadline: Option<Instant>,
    /// The batch's timer fired at or after `deadline`.
    timed_out: bool,
}

impl Slot {
    /// Waits for the batch to be due or done, with a waker to be woken by.
    fn waiting(&self) -> bool {
        !self.sending && !self.gone && self.waker.is_some()
    }

    /// Keeps `waker` as the member's, unless it is the same task's.
    fn set_waker(&mut self, waker: &Waker) {
        match &self.waker {
            Some(w) if w.will_wake(waker) => {}
            _ => self.waker = Some(waker.clone()),
        }
    }
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
    /// By member index.
    members: Vec<Slot>,
    /// Members that went on to the send (each may drive it, and `Shared` wakes them).
    sending: usize,
    /// The waiting member woken to send the due batch, until it does or is dropped.
    woken: Option<usize>,
    /// The batch's one timer and the deadline it is set for: the earliest deadline of the
    /// members that have one, are alive and have not timed out. `None` before the first member
    /// with a deadline, once it fired, and once the replies are in.
    timer: Option<(Instant, Pin<Box<Sleep>>)>,
}

impl BatchState {
    /// The waiting member to wake so that the due batch is sent, if no member is sending it or
    /// was woken to: the first one still waiting.
    fn sender(&mut self) -> Option<Waker> {
        if !self.due || self.done || self.sending > 0 || self.woken.is_some() {
            return None;
        }
        let (index, waker) = self
            .members
            .iter()
            .enumerate()
            .find(|(_, slot)| slot.waiting())
            .and_then(|(i, slot)| Some((i, slot.waker.clone()?)))?;
        self.woken = Some(index);
        Some(waker)
    }

    /// Sets the batch's timer for the earliest deadline of its live members that have not
    /// timed out, if it has none or a later one. Returns the timer it replaces (to be dropped
    /// once the lock is released: removing it takes the timer driver's lock) and, if that
    /// deadline has passed already, the members to wake (see [`BatchState::expire`]).
    fn arm(&mut self, batch: &Arc<Batch>) -> (Option<Pin<Box<Sleep>>>, Vec<Waker>) {
        let nothing = (None, Vec::new());
        if self.done {
            return nothing;
        }
        let earliest = self
            .members
            .iter()
            .filter(|slot| !slot.gone && !slot.timed_out)
            .filter_map(|slot| slot.deadline)
            .min();
        let Some(earliest) = earliest else {
            return nothing;
        };
        if self.timer.as_ref().is_some_and(|(at, _)| *at <= earliest) {
            return nothing;
        }
        // Made on the caller's runtime (the one polling now), and registered at once with
        // the batch's own waker. Polled without a cooperative budget: an exhausted budget
        // would make the poll wake that waker at once instead of registering the timer.
        let mut sleep = Box::pin(tokio::time::sleep_until(earliest));
        let waker = Waker::from(Arc::new(Timer {
            batch: Arc::downgrade(batch),
        }));
        let registered = std::pin::pin!(tokio::task::coop::unconstrained(sleep.as_mut()));
        let fired = registered.poll(&mut Context::from_waker(&waker)).is_ready();
        let old = self.timer.replace((earliest, sleep)).map(|(_, old)| old);
        if !fired {
            return (old, Vec::new());
        }
        // The deadline is behind already (the timer did not register): expired at once.
        batch.fired.store(true, Ordering::Release);
        let expired = self.timer.take().map(|(_, sleep)| sleep);
        let woken = self.expire();
        (old.or(expired), woken)
    }

    /// The timer fired (or was dropped with its runtime): marks the members whose deadline
    /// passed as timed out, and returns the waker of every live member, to be woken with the
    /// lock released (each timed-out one ends; the first polled of the others sets a new
    /// timer). Nothing once the replies are in. The caller took the timer.
    fn expire(&mut self) -> Vec<Waker> {
        if self.done {
            return Vec::new();
        }
        let now = Instant::now();
        let mut woken = Vec::new();
        for slot in self.members.iter_mut().filter(|slot| !slot.gone) {
            if slot.deadline.is_some_and(|d| d <= now) {
                slot.timed_out = true;
            }
            woken.extend(slot.waker.clone());
        }
        woken
    }
}

/// The most commands (members) a batch's buffers are kept for the next batch with: a larger
/// batch's are given back.
const SPARE_KEPT: usize = 1024;

thread_local! {
    /// The command list of the last batch this thread sent, emptied, for the next batch to
    /// fill: a 64-task GET load sends ~32 commands a batch, and a new command list and member
    /// list per batch (each over 1 KiB, grown from 16 entries to 32 on the way) cost a batched
    /// GET 2 % of its instructions on a current-thread runtime (callgrind, see BENCHMARKS.md).
    static SPARE_COMMANDS: Cell<Option<Pipeline>> = const { Cell::new(None) };
    /// The member list of the last batch dropped on this thread, emptied, likewise.
    static SPARE_MEMBERS: Cell<Vec<Slot>> = const { Cell::new(Vec::new()) };
}

/// An empty command list: this thread's spare one, or a new one.
fn spare_commands() -> Pipeline {
    SPARE_COMMANDS
        .try_with(Cell::take)
        .ok()
        .flatten()
        .unwrap_or_else(|| Pipeline::with_capacity(16))
}

/// Keeps `commands` (sent) as this thread's spare command list, emptied, unless it is large.
fn keep_commands(mut commands: Pipeline) {
    if commands.len() > SPARE_KEPT {
        return;
    }
    commands.clear();
    let _ = SPARE_COMMANDS.try_with(|spare| spare.set(Some(commands)));
}

/// An empty member list: this thread's spare one, or a new one.
fn spare_members() -> Vec<Slot> {
    let members = SPARE_MEMBERS.try_with(Cell::take).unwrap_or_default();
    if members.capacity() == 0 {
        return Vec::with_capacity(16);
    }
    members
}

impl Drop for BatchState {
    /// Keeps the member list as this thread's spare, emptied (its wakers dropped), unless
    /// it is large.
    fn drop(&mut self) {
        let mut members = std::mem::take(&mut self.members);
        if members.capacity() > SPARE_KEPT {
            return;
        }
        members.clear();
        let _ = SPARE_MEMBERS.try_with(|spare| spare.set(members));
    }
}

impl Batch {
    fn new() -> Arc<Self> {
        Arc::new(Batch {
            state: Mutex::new(BatchState {
                commands: Some(spare_commands()),
                count: 0,
                due: false,
                armed: false,
                done: false,
                members: spare_members(),
                sending: 0,
                woken: None,
                timer: None,
            }),
            fired: AtomicBool::new(false),
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

    /// Sent and answered (or failed): wakes every member still waiting, and drops the timer.
    fn finish(&self) {
        let (waiting, timer): (Vec<Waker>, _) = {
            let mut state = self.lock();
            state.done = true;
            let waiting = state
                .members
                .iter_mut()
                .filter(|slot| !slot.sending && !slot.gone)
                .filter_map(|slot| slot.waker.take())
                .collect();
            (waiting, state.timer.take())
        };
        drop(timer);
        for waker in waiting {
            waker.wake();
        }
    }

    /// The timer fired: see [`BatchState::expire`].
    fn expire(&self) {
        let (woken, timer) = {
            let mut state = self.lock();
            self.fired.store(true, Ordering::Release);
            let timer = state.timer.take();
            (state.expire(), timer)
        };
        drop(timer);
        for waker in woken {
            waker.wake();
        }
    }
}

/// The waker of a batch's timer. Weak: the timer is the batch's, and a strong handle in the
/// timer would keep the batch alive with it.
struct Timer {
    batch: Weak<Batch>,
}

impl Wake for Timer {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if let Some(batch) = self.batch.upgrade() {
            batch.expire();
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
    /// An owned `cmd` joins a batch as it is; a borrowed one is cloned into it. The caller
    /// bounds the wait.
    pub(crate) async fn send(self: Arc<Self>, cmd: Cow<'_, Cmd>) -> RedisResult<Value> {
        match self.send_until(cmd, None).await {
            Ok(reply) => reply,
            // Without a deadline nothing times out here.
            Err(TimedOut) => Err(RedisError::from(std::io::Error::other(
                "an auto-pipelined call without a deadline timed out",
            ))),
        }
    }

    /// [`Pipelined::send`] within `deadline`: a call sent alone under its own timer, one that
    /// joins a batch under the batch's (see the module's docs).
    pub(crate) async fn send_by(
        self: Arc<Self>,
        cmd: Cow<'_, Cmd>,
        deadline: Instant,
    ) -> Result<RedisResult<Value>, TimedOut> {
        self.send_until(cmd, Some(deadline)).await
    }

    async fn send_until(
        self: Arc<Self>,
        cmd: Cow<'_, Cmd>,
        deadline: Option<Instant>,
    ) -> Result<RedisResult<Value>, TimedOut> {
        if !self.auto || cmd.is_no_response() {
            return self.send_alone(&cmd, deadline).await;
        }
        // `self` is held until the reply: the batch sends on this connection even if it
        // was replaced (renewed) meanwhile.
        let member = match self.join(cmd, deadline) {
            Joined::Alone(_in_flight, cmd) => return self.send_alone(&cmd, deadline).await,
            Joined::Batch(member) => member,
        };
        let index = member.index;
        let replies = match member.await? {
            Ok(replies) => replies,
            Err(e) => return Ok(Err(e)),
        };
        let mut replies = replies.lock().unwrap_or_else(|p| p.into_inner());
        Ok(match replies.get_mut(index) {
            Some(reply) => Ok(std::mem::replace(reply, Value::Nil)),
            None => Err(RedisError::from(std::io::Error::other(
                "Redis answered an auto-pipelined batch with fewer replies than commands; the connection is out of step and is replaced",
            ))),
        })
    }

    /// `cmd` sent on its own. Boxed: the client's future for it is large, and every call's
    /// future (this one's callers' too) is moved a few times before it runs, so keeping it
    /// inline made every call copy it, batched or not (~5 % of a batched GET's instructions,
    /// callgrind); a call sent alone waits a whole round trip anyway. Under its own timer if
    /// it has a deadline.
    fn send_alone<'a>(
        &self,
        cmd: &'a Cmd,
        deadline: Option<Instant>,
    ) -> BoxFuture<'a, Result<RedisResult<Value>, TimedOut>> {
        let mut conn = self.conn.clone();
        Box::pin(async move {
            let reply = conn.send_packed_command(cmd);
            match deadline {
                None => Ok(reply.await),
                Some(at) => tokio::time::timeout_at(at, reply)
                    .await
                    .map_err(|_| TimedOut),
            }
        })
    }

    fn lock(&self) -> MutexGuard<'_, Option<Open>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends `cmd` to the open batch (opening one if none is) as a new member; or, with no
    /// batch open and nothing in flight, counts it in flight to be sent alone.
    fn join<'a>(self: &Arc<Self>, cmd: Cow<'a, Cmd>, deadline: Option<Instant>) -> Joined<'a> {
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
        let (index, replaced) = {
            let mut state = batch.lock();
            if let Some(commands) = state.commands.as_mut() {
                commands.add_command(cmd.into_owned());
            }
            state.count += 1;
            state.members.push(Slot {
                waker: None,
                sending: false,
                gone: false,
                deadline,
                timed_out: false,
            });
            // The first member with a deadline sets the batch's timer; a later one only if
            // its deadline is earlier (a shorter timeout).
            let replaced = match deadline {
                Some(at) if state.timer.as_ref().is_none_or(|(t, _)| at < *t) => state.arm(&batch),
                _ => (None, Vec::new()),
            };
            (state.count - 1, replaced)
        };
        let (old, woken) = replaced;
        drop(old);
        woken.into_iter().for_each(Waker::wake);
        Joined::Batch(Member {
            batch,
            send,
            index,
            sending: false,
            timed: deadline.is_some(),
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
/// ready with every member's replies, or [`TimedOut`] once the batch's timer found its
/// deadline passed.
struct Member {
    batch: Arc<Batch>,
    send: Shared<Send>,
    index: usize,
    /// Went on to the send.
    sending: bool,
    /// Has a deadline: its waker must stay with the batch (for the timer) while it sends.
    timed: bool,
}

impl Future for Member {
    type Output = Result<Replies, TimedOut>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        // The batch has this poll's waker (no second lock for it after the send's poll).
        let mut kept = false;
        if this.batch.fired.load(Ordering::Acquire) {
            let (old, woken) = {
                let mut state = this.batch.lock();
                let slot = &mut state.members[this.index];
                if slot.timed_out {
                    return Poll::Ready(Err(TimedOut));
                }
                slot.set_waker(cx.waker());
                // The timer fired for an earlier deadline: a new one for the earliest left.
                state.arm(&this.batch)
            };
            drop(old);
            woken.into_iter().for_each(Waker::wake);
            kept = true;
        }
        if !this.sending {
            let mut state = this.batch.lock();
            if !state.due && !state.done {
                state.members[this.index].set_waker(cx.waker());
                let arm = !std::mem::replace(&mut state.armed, true);
                drop(state);
                if arm {
                    defer(&this.batch);
                }
                return Poll::Pending;
            }
            let done = state.done;
            let slot = &mut state.members[this.index];
            slot.sending = true;
            if this.timed && !done && !kept {
                slot.set_waker(cx.waker());
                kept = true;
            }
            state.sending += 1;
            if state.woken == Some(this.index) {
                state.woken = None;
            }
            this.sending = true;
        }
        let polled = Pin::new(&mut this.send).poll(cx);
        if polled.is_pending() && this.timed && !kept {
            // Polled again while sending (by another waker, maybe): the timer wakes this one.
            this.batch.lock().members[this.index].set_waker(cx.waker());
        }
        polled.map(Ok)
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let (sender, waker) = {
            let mut state = self.batch.lock();
            if self.sending {
                state.sending -= 1;
            }
            let waker = state.members.get_mut(self.index).and_then(|slot| {
                slot.gone = true;
                slot.waker.take()
            });
            if state.woken == Some(self.index) {
                state.woken = None;
            }
            // It may have been the one sending the batch (or woken to): another takes over.
            (state.sender(), waker)
        };
        drop(waker);
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
            let replies = conn.send_packed_commands(&commands, 0, count).await;
            keep_commands(commands);
            Ok(Arc::new(Mutex::new(replies?)))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch's buffers go to the next batch on the thread, empty, with their room; a
    /// batch larger than [`SPARE_KEPT`] gives its room back.
    #[test]
    fn a_batch_takes_the_last_batchs_buffers_empty() {
        let first = Batch::new();
        let room = {
            let mut state = first.lock();
            for _ in 0..40 {
                state.members.push(Slot {
                    waker: Some(Waker::noop().clone()),
                    sending: false,
                    gone: false,
                    deadline: None,
                    timed_out: false,
                });
            }
            state.members.capacity()
        };
        let mut commands = first.lock().commands.take().unwrap();
        for _ in 0..40 {
            commands.cmd("GET").arg("k");
        }
        keep_commands(commands);
        drop(first);

        let second = Batch::new();
        {
            let mut state = second.lock();
            assert!(state.members.is_empty());
            assert_eq!(state.members.capacity(), room);
            let commands = state.commands.take().unwrap();
            assert!(commands.is_empty(), "the spare command list comes empty");
        }
        drop(second);

        let large = Batch::new();
        large.lock().members.reserve_exact(SPARE_KEPT + 1);
        drop(large);
        assert_eq!(Batch::new().lock().members.capacity(), 16);
    }
}
