//! strata's own multiplexed RESP2 connection driver: what `RedisStore` sends through on a
//! plain-TCP single server or Sentinel master (`link`; TLS, Unix sockets, RESP3, a cluster and
//! `auto_pipeline(false)` stay on redis-rs). The `compare` bench also races it bare, without the
//! store's layers (`cargo bench --all-features --bench compare -- redis`, rows
//! `[strata driver prototype]`), and `STRATA_REDIS_PROBE=driver:get:N` measures it alone.
//!
//! **Shape.** One plain TCP connection, with the handshake strata needs when made from a URL
//! ([`Driver::connect_url`]: `AUTH`, `SELECT`, `PING`), no reconnect (the store's `Single`
//! replaces a broken one), no TLS. A call encodes its command straight into the connection's
//! write buffer and takes the next place in the queue of replies (no `Cmd`, no per-call allocation: the queue's slots
//! are reused). Writing needs no task: the first call that finds nothing queued to write asks
//! the runtime for a deferred wake ([`tokio::task::yield_now`]'s, as the auto-pipeline does),
//! and that wake writes everything the calls made meanwhile appended, in one `write` (a call
//! made while nothing is in flight writes at once: a lone caller waits for no one). One
//! spawned task reads: it decodes the replies from one reused buffer (the `inbox` module, where a
//! reply cut short is not decoded again when the rest comes) and
//! hands each to the call at the head of the queue, waking it. A full socket leaves the rest
//! of the buffer to that task, which writes it once the socket is writable again.
//!
//! **Failures.** A read or write error, EOF, bytes that are not RESP2, or the read task dropped
//! with its runtime break the connection: every call waiting and every later call gets the
//! [`DriverError`]. A deferred write dropped unrun (its runtime shut down) writes as it goes. A call dropped before its
//! reply (a timeout, a cancelled request) keeps its place: its reply is read and dropped, so no
//! reply reaches the wrong caller.

use std::{
    collections::VecDeque,
    future::Future,
    io,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, MutexGuard,
    },
    task::{Context, Poll, Wake, Waker},
};

use tokio::net::{TcpStream, ToSocketAddrs};

pub use super::resp::{encode, encode_array, encode_parts, ProtocolError, Reply};
use super::{inbox::Inbox, resp};

/// Decodes a GET reply's bytes as `RedisStore::get` does (a MessagePack string becomes the
/// `String` in the reply's own buffer, without a copy).
pub fn decode_owned<V: serde::de::DeserializeOwned>(bytes: Vec<u8>) -> crate::Result<V> {
    super::value::decode_owned(bytes, "")
}

/// Why a call on the driver failed; the connection is not used again.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DriverError {
    /// The socket failed or the server closed it.
    #[error("the Redis connection broke ({0}); connect a new one")]
    Broken(Arc<str>),
    /// The server sent bytes that are not RESP2.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The [`Driver`] was dropped.
    #[error("the Redis connection was closed by its owner")]
    Closed,
}

/// One multiplexed RESP2 connection (see the module's docs). Dropping it stops its read task.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use strata::redis_driver::{Driver, Reply};
/// let driver = Driver::connect_url("redis://:password@127.0.0.1:6379/2").await?;
/// driver.call(&[b"SET", b"k", b"v"]).await?;
/// assert_eq!(driver.call(&[b"GET", b"k"]).await?, Reply::Bulk(b"v".to_vec()));
/// # Ok(()) }
/// ```
pub struct Driver {
    shared: Arc<Shared>,
}

struct Shared {
    stream: TcpStream,
    state: Mutex<State>,
}

/// The connection's queue and buffers, under one lock.
struct State {
    /// Encoded commands not written yet.
    out: Vec<u8>,
    /// A deferred write is asked for and has not run.
    flush_asked: bool,
    /// The socket was full: the read task writes the rest once it is writable.
    write_blocked: bool,
    /// The calls waiting for replies, oldest first; `pending[i]` is call `head + i`.
    pending: VecDeque<Entry>,
    head: u64,
    /// The next call's number.
    next: u64,
    /// The number of the call the next reply is for.
    answered: u64,
    broken: Option<DriverError>,
    /// The read task's waker, for a write that found the socket full.
    task: Option<Waker>,
    /// How many writes found the socket full (see [`Driver::write_stalls`]).
    stalls: u64,
}

#[derive(Default)]
struct Entry {
    waker: Option<Waker>,
    reply: Option<Reply>,
    /// Its call took its reply or was dropped.
    gone: bool,
}

impl State {
    /// Drops the entries at the head whose calls are gone and whose replies came.
    fn pop_gone(&mut self) {
        while self.head < self.answered && self.pending.front().is_some_and(|e| e.gone) {
            self.pending.pop_front();
            self.head += 1;
        }
    }

    /// Breaks the connection: every waiting call is woken to take `error`.
    fn fail(&mut self, error: DriverError, woken: &mut Vec<Waker>) {
        if self.broken.is_none() {
            self.broken = Some(error);
        }
        woken.extend(self.pending.iter_mut().filter_map(|e| e.waker.take()));
    }
}

fn io_error(e: &io::Error) -> DriverError {
    DriverError::Broken(e.to_string().into())
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes what `state.out` holds, as far as the socket takes it; a full socket leaves the
    /// rest to the read task (woken unless `from_task`).
    fn write(&self, state: &mut State, from_task: bool, woken: &mut Vec<Waker>) {
        while !state.out.is_empty() && state.broken.is_none() {
            match self.stream.try_write(&state.out) {
                Ok(n) if n == state.out.len() => state.out.clear(),
                Ok(n) => {
                    state.out.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    state.write_blocked = true;
                    state.stalls += 1;
                    if !from_task {
                        woken.extend(state.task.clone());
                    }
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => state.fail(io_error(&e), woken),
            }
        }
    }

    /// The deferred write: everything appended since it was asked for, in one write.
    fn flush(&self) {
        let mut woken = Vec::new();
        {
            let mut state = self.lock();
            state.flush_asked = false;
            if !state.write_blocked {
                self.write(&mut state, false, &mut woken);
            }
        }
        woken.into_iter().for_each(Waker::wake);
    }
}

/// The deferred write's wake. Dropped unwoken (its runtime shut down before running it), it
/// writes then: else the calls appended meanwhile would wait for a write nobody makes.
struct Flush {
    shared: Arc<Shared>,
    woken: AtomicBool,
}

impl Wake for Flush {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.shared.flush();
    }
}

impl Drop for Flush {
    fn drop(&mut self) {
        if !*self.woken.get_mut() {
            self.shared.flush();
        }
    }
}

/// Why [`Driver::connect_url`] failed. Never holds the URL's password.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The URL does not parse (the message shows it with its password redacted).
    #[error("{0}")]
    Url(String),
    /// The URL needs what the driver does not carry (TLS, a Unix socket): use `RedisStore`,
    /// which connects those through redis-rs.
    #[error("strata's own driver carries plain TCP only, not {0}; RedisStore connects it through redis-rs")]
    Unsupported(&'static str),
    /// The TCP connection failed.
    #[error("could not connect to Redis at {addr}: {source}")]
    Io {
        /// `host:port`.
        addr: String,
        /// What the connect returned.
        #[source]
        source: io::Error,
    },
    /// The server refused a step of the handshake (its reply names why; it never holds the
    /// password).
    #[error("Redis refused the handshake's {step}: {reply}; check the URL's user, password and database")]
    Refused {
        /// `AUTH`, `SELECT` or `PING`.
        step: &'static str,
        /// The server's error (or what it sent instead of the expected reply).
        reply: String,
    },
    /// The connection broke during the handshake.
    #[error(transparent)]
    Driver(#[from] DriverError),
}

impl Driver {
    /// Connects as a `redis://[user:password@]host:port[/db]` URL says: plain TCP, then the
    /// handshake strata needs, each step checked: `AUTH` (with the user if the URL names one)
    /// when it has a password, `SELECT` when its database is not 0, and a `PING`. The
    /// password is never in an error.
    pub async fn connect_url(url: &str) -> Result<Driver, ConnectError> {
        use redis::IntoConnectionInfo;
        // Before parsing: without the `tls` feature redis-rs refuses a `rediss://` URL as
        // unparsable, which would hide the reason.
        if url.starts_with("rediss://") {
            return Err(ConnectError::Unsupported("TLS (rediss://)"));
        }
        let info = url.into_connection_info().map_err(|e| {
            ConnectError::Url(format!(
                "{} is not a Redis URL: {e}",
                crate::redact_url(url)
            ))
        })?;
        Driver::connect_info(&info).await
    }

    /// [`Driver::connect_url`] with the URL parsed already (as a `redis::Client` holds it):
    /// plain TCP only, RESP2 only (a URL asking for RESP3 is [`ConnectError::Unsupported`]).
    pub async fn connect_info(info: &redis::ConnectionInfo) -> Result<Driver, ConnectError> {
        use redis::{ConnectionAddr, ProtocolVersion};
        let (host, port) = match info.addr() {
            ConnectionAddr::Tcp(host, port) => (host.clone(), *port),
            ConnectionAddr::Unix(_) => return Err(ConnectError::Unsupported("a Unix socket")),
            _ => return Err(ConnectError::Unsupported("TLS (rediss://)")),
        };
        let settings = info.redis_settings();
        if settings.protocol() != ProtocolVersion::RESP2 {
            return Err(ConnectError::Unsupported("RESP3"));
        }
        let driver = Driver::connect((host.as_str(), port))
            .await
            .map_err(|source| ConnectError::Io {
                addr: format!("{host}:{port}"),
                source,
            })?;
        driver.handshake(settings).await?;
        Ok(driver)
    }

    /// `AUTH` when the settings hold a password, `SELECT` when their database is not 0, and a
    /// `PING`, each checked.
    async fn handshake(&self, settings: &redis::RedisConnectionInfo) -> Result<(), ConnectError> {
        if let Some(password) = settings.password() {
            let reply = match settings.username() {
                Some(user) => self.call(&[b"AUTH", user.as_bytes(), password.as_bytes()]),
                None => self.call(&[b"AUTH", password.as_bytes()]),
            }
            .await?;
            expect_ok("AUTH", reply)?;
        }
        if settings.db() != 0 {
            let db = itoa::Buffer::new()
                .format(settings.db())
                .as_bytes()
                .to_vec();
            let reply = self.call(&[b"SELECT", &db]).await?;
            expect_ok("SELECT", reply)?;
        }
        match self.call(&[b"PING"]).await? {
            Reply::Status(pong) if pong == "PONG" => Ok(()),
            other => Err(refused("PING", other)),
        }
    }

    /// Connects to `addr` (plain TCP, `TCP_NODELAY`) and spawns the read task on the current
    /// runtime, without a handshake (no `AUTH`, database 0): [`Driver::connect_url`] does one.
    pub async fn connect(addr: impl ToSocketAddrs) -> io::Result<Driver> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let shared = Arc::new(Shared {
            stream,
            state: Mutex::new(State {
                out: Vec::with_capacity(16 * 1024),
                flush_asked: false,
                write_blocked: false,
                pending: VecDeque::with_capacity(256),
                head: 0,
                next: 0,
                answered: 0,
                broken: None,
                task: None,
                stalls: 0,
            }),
        });
        tokio::spawn(Reader {
            shared: shared.clone(),
            inbox: Inbox::new(64 * 1024),
            replies: Vec::with_capacity(64),
            woken: Vec::with_capacity(64),
        });
        Ok(Driver { shared })
    }

    /// Sends the command `args` and waits for its reply (a server error is [`Reply::Error`]).
    /// The command is queued when this is called, not when the future is first polled.
    pub fn call(&self, args: &[&[u8]]) -> Call<'_> {
        self.call_with(|out| resp::encode(out, args))
    }

    /// Sends the one command that `encode` appends to the write buffer (with
    /// [`resp`]'s encoders: a namespaced key written in its parts, without joining them).
    pub fn call_with(&self, encode: impl FnOnce(&mut Vec<u8>)) -> Call<'_> {
        let shared = &self.shared;
        let state = match self.queue(1, encode) {
            Ok(seq) => return Call::queued(shared, seq),
            Err(error) => CallState::Failed(Some(error)),
        };
        Call {
            shared,
            seq: 0,
            state,
        }
    }

    /// Sends the `n` commands that `encode` appends (a pipeline's, packed) and waits for their
    /// `n` replies, in order. They go out in one write, so no other call's command comes
    /// between them.
    pub fn call_many(&self, n: usize, encode: impl FnOnce(&mut Vec<u8>)) -> CallMany<'_> {
        let shared = &self.shared;
        let state = match n {
            0 => CallState::Done,
            _ => match self.queue(n, encode) {
                Ok(first) => return CallMany::queued(shared, first, n),
                Err(error) => CallState::Failed(Some(error)),
            },
        };
        CallMany {
            shared,
            first: 0,
            n,
            state,
        }
    }

    /// Appends the `n` commands `encode` writes and takes `n` places in the queue of replies;
    /// writes at once if nothing was in flight, else asks for the deferred write. Returns the
    /// first place's number.
    fn queue(&self, n: usize, encode: impl FnOnce(&mut Vec<u8>)) -> Result<u64, DriverError> {
        let shared = &self.shared;
        let mut state = shared.lock();
        if let Some(error) = &state.broken {
            return Err(error.clone());
        }
        encode(&mut state.out);
        let seq = state.next;
        state.next += n as u64;
        state.pending.extend((0..n).map(|_| Entry::default()));
        let alone = state.pending.len() == n;
        if state.write_blocked || state.flush_asked {
            return Ok(seq);
        }
        if alone {
            // Nothing in flight: no batch to wait for.
            let mut woken = Vec::new();
            shared.write(&mut state, false, &mut woken);
            drop(state);
            woken.into_iter().for_each(Waker::wake);
            return Ok(seq);
        }
        state.flush_asked = true;
        drop(state);
        defer(shared);
        Ok(seq)
    }
}

impl Driver {
    /// How many times a write found the socket's send buffer full and left the rest to the
    /// read task (which writes it once the socket is writable): the tests' proof that a large
    /// command took that path.
    pub fn write_stalls(&self) -> u64 {
        self.shared.lock().stalls
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let mut woken = Vec::new();
        {
            let mut state = self.shared.lock();
            state.fail(DriverError::Closed, &mut woken);
            woken.extend(state.task.take());
        }
        woken.into_iter().for_each(Waker::wake);
    }
}

fn expect_ok(step: &'static str, reply: Reply) -> Result<(), ConnectError> {
    match reply {
        Reply::Ok => Ok(()),
        other => Err(refused(step, other)),
    }
}

fn refused(step: &'static str, reply: Reply) -> ConnectError {
    let reply = match reply {
        Reply::Error(e) | Reply::Status(e) => e,
        other => format!("an unexpected reply ({})", other.kind()),
    };
    ConnectError::Refused { step, reply }
}

/// Asks the runtime to write the connection's buffer once it has run the tasks that are ready
/// now (tokio's `yield_now` wake; at once outside a tokio runtime).
fn defer(shared: &Arc<Shared>) {
    let waker = Waker::from(Arc::new(Flush {
        shared: shared.clone(),
        woken: AtomicBool::new(false),
    }));
    let yielded = std::pin::pin!(tokio::task::yield_now());
    let _ = yielded.poll(&mut Context::from_waker(&waker));
}

/// One call's wait for its reply.
pub struct Call<'a> {
    shared: &'a Arc<Shared>,
    seq: u64,
    state: CallState,
}

enum CallState {
    Queued,
    Done,
    Failed(Option<DriverError>),
}

impl<'a> Call<'a> {
    fn queued(shared: &'a Arc<Shared>, seq: u64) -> Self {
        Call {
            shared,
            seq,
            state: CallState::Queued,
        }
    }
}

impl Future for Call<'_> {
    type Output = Result<Reply, DriverError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.state {
            CallState::Queued => {}
            CallState::Done => return Poll::Ready(Err(DriverError::Closed)),
            CallState::Failed(error) => {
                return Poll::Ready(Err(error.take().unwrap_or(DriverError::Closed)))
            }
        }
        let mut state = self.shared.lock();
        let index = self.seq.wrapping_sub(state.head) as usize;
        let broken = state.broken.clone();
        let Some(entry) = state.pending.get_mut(index) else {
            drop(state);
            self.state = CallState::Done;
            return Poll::Ready(Err(broken.unwrap_or(DriverError::Closed)));
        };
        if let Some(reply) = entry.reply.take() {
            entry.gone = true;
            entry.waker = None;
            state.pop_gone();
            drop(state);
            self.state = CallState::Done;
            return Poll::Ready(Ok(reply));
        }
        if let Some(error) = broken {
            entry.gone = true;
            entry.waker = None;
            drop(state);
            self.state = CallState::Done;
            return Poll::Ready(Err(error));
        }
        match &entry.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => entry.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl Drop for Call<'_> {
    fn drop(&mut self) {
        if !matches!(self.state, CallState::Queued) {
            return;
        }
        let (reply, waker) = {
            let mut state = self.shared.lock();
            let index = self.seq.wrapping_sub(state.head) as usize;
            let taken = state.pending.get_mut(index).map(|entry| {
                entry.gone = true;
                (entry.reply.take(), entry.waker.take())
            });
            state.pop_gone();
            taken.unwrap_or((None, None))
        };
        drop((reply, waker));
    }
}

/// The wait of [`Driver::call_many`]'s commands for their replies.
pub struct CallMany<'a> {
    shared: &'a Arc<Shared>,
    first: u64,
    n: usize,
    state: CallState,
}

impl<'a> CallMany<'a> {
    fn queued(shared: &'a Arc<Shared>, first: u64, n: usize) -> Self {
        CallMany {
            shared,
            first,
            n,
            state: CallState::Queued,
        }
    }

    /// Marks its places gone (their replies taken, or dropped when they come): returns what
    /// they held, to be dropped with the lock released.
    fn leave(&self, state: &mut State) -> Vec<Reply> {
        let base = self.first.wrapping_sub(state.head) as usize;
        let mut replies = Vec::with_capacity(self.n);
        for entry in state.pending.range_mut(base..).take(self.n) {
            entry.gone = true;
            entry.waker = None;
            replies.extend(entry.reply.take());
        }
        state.pop_gone();
        replies
    }
}

impl Future for CallMany<'_> {
    type Output = Result<Vec<Reply>, DriverError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.state {
            CallState::Queued => {}
            CallState::Done => return Poll::Ready(Ok(Vec::new())),
            CallState::Failed(error) => {
                return Poll::Ready(Err(error.take().unwrap_or(DriverError::Closed)))
            }
        }
        let mut state = self.shared.lock();
        let last = (self.first + self.n as u64 - 1).wrapping_sub(state.head) as usize;
        let broken = state.broken.clone();
        let answered = match state.pending.get_mut(last) {
            Some(entry) if entry.reply.is_some() => true,
            Some(entry) if broken.is_none() => {
                match &entry.waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => entry.waker = Some(cx.waker().clone()),
                }
                return Poll::Pending;
            }
            _ => false,
        };
        let replies = self.leave(&mut state);
        drop(state);
        self.state = CallState::Done;
        if !answered || replies.len() != self.n {
            return Poll::Ready(Err(broken.unwrap_or(DriverError::Closed)));
        }
        Poll::Ready(Ok(replies))
    }
}

impl Drop for CallMany<'_> {
    fn drop(&mut self) {
        if !matches!(self.state, CallState::Queued) {
            return;
        }
        let replies = self.leave(&mut self.shared.lock());
        drop(replies);
    }
}

/// The read task: decodes replies and hands them out; writes what a full socket left.
struct Reader {
    shared: Arc<Shared>,
    inbox: Inbox,
    replies: Vec<Reply>,
    woken: Vec<Waker>,
}

/// Reads per poll of the read task before it yields to the others.
const READS_PER_POLL: usize = 16;

impl Future for Reader {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let shared = this.shared.clone();
        for _ in 0..READS_PER_POLL {
            {
                let mut state = shared.lock();
                if state.broken.is_some() {
                    return Poll::Ready(());
                }
                match &state.task {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => state.task = Some(cx.waker().clone()),
                }
                if state.write_blocked {
                    drop(state);
                    match shared.stream.poll_write_ready(cx) {
                        Poll::Pending => {}
                        Poll::Ready(ready) => {
                            let mut state = shared.lock();
                            state.write_blocked = false;
                            match ready {
                                Ok(()) => shared.write(&mut state, true, &mut this.woken),
                                Err(e) => state.fail(io_error(&e), &mut this.woken),
                            }
                            drop(state);
                            this.woken.drain(..).for_each(Waker::wake);
                            continue;
                        }
                    }
                }
            }
            match shared.stream.poll_read_ready(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return this.broken(io_error(&e)),
            }
            match shared.stream.try_read(this.inbox.room()) {
                Ok(0) => {
                    return this.broken(DriverError::Broken(
                        "the server closed the connection".into(),
                    ))
                }
                Ok(n) => {
                    this.inbox.filled(n);
                    if let Err(e) = this.deliver() {
                        return this.broken(e);
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return this.broken(io_error(&e)),
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl Drop for Reader {
    /// Dropped unfinished (its runtime shut down): the connection has no reader any more, so
    /// every call waiting and every later call fails (and the store renews the connection)
    /// instead of waiting for replies nobody reads.
    fn drop(&mut self) {
        let _ = self.broken(DriverError::Broken(
            "the runtime that ran the connection's read task shut down".into(),
        ));
    }
}

impl Reader {
    fn broken(&mut self, error: DriverError) -> Poll<()> {
        self.shared.lock().fail(error, &mut self.woken);
        self.woken.drain(..).for_each(Waker::wake);
        Poll::Ready(())
    }

    /// Decodes every whole reply read and hands each to its call.
    fn deliver(&mut self) -> Result<(), DriverError> {
        while let Some(reply) = self.inbox.next_reply()? {
            self.replies.push(reply);
        }
        if self.replies.is_empty() {
            return Ok(());
        }
        let mut dropped = Vec::new();
        {
            let mut state = self.shared.lock();
            for reply in self.replies.drain(..) {
                if state.answered == state.next {
                    return Err(DriverError::Broken(
                        "Redis sent a reply no command asked for; the connection is out of step"
                            .into(),
                    ));
                }
                let index = state.answered.wrapping_sub(state.head) as usize;
                state.answered += 1;
                match state.pending.get_mut(index) {
                    Some(entry) if !entry.gone => {
                        entry.reply = Some(reply);
                        self.woken.extend(entry.waker.take());
                    }
                    _ => dropped.push(reply),
                }
            }
            state.pop_gone();
        }
        self.woken.drain(..).for_each(Waker::wake);
        drop(dropped);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::TcpListener,
    };

    /// A fake server on 127.0.0.1: accepts one connection and gives it to `serve`.
    async fn fake<F, Fut>(serve: F) -> Driver
    where
        F: FnOnce(TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            serve(socket).await;
        });
        Driver::connect(addr).await.unwrap()
    }

    /// Reads exactly `n` bytes of commands and returns them.
    async fn commands(socket: &mut TcpStream, n: usize) -> Vec<u8> {
        let mut got = vec![0; n];
        socket.read_exact(&mut got).await.unwrap();
        got
    }

    const GET_A: &[u8] = b"*2\r\n$3\r\nGET\r\n$1\r\na\r\n";

    #[tokio::test]
    async fn replies_reach_their_callers_in_order_and_a_dropped_calls_reply_is_dropped() {
        let driver = fake(|mut socket| async move {
            assert_eq!(
                commands(&mut socket, 3 * GET_A.len()).await,
                GET_A.repeat(3)
            );
            socket.write_all(b":1\r\n$2\r\nxy\r\n:3\r\n").await.unwrap();
            assert_eq!(commands(&mut socket, GET_A.len()).await, GET_A);
            // The reply cut in two writes.
            socket.write_all(b"$5\r\nhel").await.unwrap();
            socket.write_all(b"lo\r\n").await.unwrap();
            let mut rest = Vec::new();
            let _ = socket.read_to_end(&mut rest).await;
        })
        .await;
        let first = driver.call(&[b"GET", b"a"]);
        let second = driver.call(&[b"GET", b"a"]);
        let third = driver.call(&[b"GET", b"a"]);
        drop(second);
        let (first, third) = tokio::join!(first, third);
        assert_eq!(first.unwrap(), Reply::Int(1));
        assert_eq!(third.unwrap(), Reply::Int(3));
        let fourth = driver.call(&[b"GET", b"a"]).await.unwrap();
        assert_eq!(fourth, Reply::Bulk(b"hello".to_vec()));
        assert!(driver.shared.lock().pending.is_empty());
    }

    #[tokio::test]
    async fn a_server_error_is_the_calls_reply_and_the_connection_goes_on() {
        let driver = fake(|mut socket| async move {
            commands(&mut socket, GET_A.len()).await;
            socket.write_all(b"-WRONGTYPE no\r\n").await.unwrap();
            commands(&mut socket, GET_A.len()).await;
            socket.write_all(b"+OK\r\n").await.unwrap();
            let _ = socket.read_to_end(&mut Vec::new()).await;
        })
        .await;
        let error = driver.call(&[b"GET", b"a"]).await.unwrap();
        assert_eq!(error, Reply::Error("WRONGTYPE no".into()));
        assert_eq!(driver.call(&[b"GET", b"a"]).await.unwrap(), Reply::Ok);
    }

    #[tokio::test]
    async fn bytes_that_are_not_resp_break_the_connection_with_a_typed_error() {
        let driver = fake(|mut socket| async move {
            commands(&mut socket, 2 * GET_A.len()).await;
            socket.write_all(b"?garbage\r\n").await.unwrap();
            let _ = socket.read_to_end(&mut Vec::new()).await;
        })
        .await;
        let (first, second) =
            tokio::join!(driver.call(&[b"GET", b"a"]), driver.call(&[b"GET", b"a"]));
        for reply in [first, second] {
            assert!(matches!(
                reply,
                Err(DriverError::Protocol(ProtocolError::UnknownType(b'?')))
            ));
        }
        // Every later call fails at once, with the same error.
        assert!(matches!(
            driver.call(&[b"GET", b"a"]).await,
            Err(DriverError::Protocol(_))
        ));
    }

    #[tokio::test]
    async fn a_closed_connection_or_an_unasked_reply_breaks_it() {
        let driver = fake(|mut socket| async move {
            commands(&mut socket, GET_A.len()).await;
        })
        .await;
        let closed = driver.call(&[b"GET", b"a"]).await;
        assert!(
            matches!(&closed, Err(DriverError::Broken(why)) if why.contains("closed")),
            "{closed:?}"
        );

        let driver = fake(|mut socket| async move {
            socket.write_all(b":1\r\n").await.unwrap();
            let _ = socket.read_to_end(&mut Vec::new()).await;
        })
        .await;
        // No call is queued: the reply is one no command asked for. Waits (yielding to the
        // read task, no timer) until the read task has seen it.
        while driver.shared.lock().broken.is_none() {
            tokio::task::yield_now().await;
        }
        let reply = driver.call(&[b"GET", b"a"]).await;
        assert!(
            matches!(&reply, Err(DriverError::Broken(why)) if why.contains("no command asked")),
            "{reply:?}"
        );
    }
}
