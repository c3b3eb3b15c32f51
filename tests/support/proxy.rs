//! A loopback TCP fault proxy for tests: sits in front of a real server (a `redis-server`) and
//! injects network faults on command, so a test forces the bad case instead of hoping a sleep
//! hits it.
//!
//! - [`Proxy::pass`]: forward everything (the default);
//! - [`Proxy::delay`]: hold every chunk for a while before forwarding it;
//! - [`Proxy::black_hole`]: every connection open now stops forwarding in both directions
//!   *without closing* (a silent partition, a half-open connection), while new connections
//!   are accepted and forwarded;
//! - [`Proxy::cut_all`]: close every open connection (a reset the peers notice at once);
//! - [`Proxy::refuse_new`]: new connections are closed as soon as they are accepted;
//! - [`Proxy::park_new`]: new connections are accepted and then parked, neither forwarded nor
//!   closed, until the test lets them through; [`Proxy::parked`] counts them, so a test knows a
//!   client is stuck connecting (inside its connect window) without guessing with a sleep;
//! - [`Proxy::hold_replies`]: requests still reach the server, its replies wait in the proxy
//!   (with [`Proxy::cut_all`] after it: a request that ran whose reply never arrives).
//!
//! Plain threads, so it works under any runtime (or none); only [`Proxy::wait_parked`] needs
//! tokio's timer.

use std::{
    io::{ErrorKind, Read, Write},
    net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream},
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    thread::{self, JoinHandle},
    time::Duration,
};

/// How often a pump that has nothing to read looks at the controls.
const POLL: Duration = Duration::from_millis(5);

/// One accepted connection: both sockets, and whether it is black-holed.
struct Link {
    client: TcpStream,
    server: TcpStream,
    held: Arc<AtomicBool>,
}

#[derive(Default)]
struct State {
    delay: Mutex<Option<Duration>>,
    refuse: AtomicBool,
    /// `Some`: new connections wait here (the client side only) until [`Proxy::park_new`]
    /// `(false)` links them. One lock for the switch and the list, so none is left behind.
    parked: Mutex<Option<Vec<TcpStream>>>,
    hold_replies: AtomicBool,
    stop: AtomicBool,
    accepted: AtomicUsize,
    requests: AtomicUsize,
    links: Mutex<Vec<Link>>,
}

/// A running proxy on a free loopback port; stopped (every connection closed) on drop.
pub struct Proxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    state: Arc<State>,
    acceptor: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Starts a proxy that forwards to `upstream`.
    pub fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let state = Arc::new(State::default());
        let acceptor = thread::spawn({
            let state = state.clone();
            move || accept_loop(listener, upstream, &state)
        });
        Proxy {
            addr,
            upstream,
            state,
            acceptor: Some(acceptor),
        }
    }

    /// The proxy's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `redis://127.0.0.1:<proxy port>/`.
    pub fn url(&self) -> String {
        format!("redis://{}/", self.addr)
    }

    /// How many connections the proxy has accepted so far (refused ones included).
    pub fn accepted(&self) -> usize {
        self.state.accepted.load(Ordering::Acquire)
    }

    /// How many chunks clients have sent through the proxy so far, on every connection. A
    /// request (or a pipeline) written at once arrives as one chunk on loopback, so the change
    /// across one call counts its round trips.
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::Acquire)
    }

    /// Forward everything without delay, and accept new connections (black-holed connections
    /// stay black-holed: a silent peer does not come back).
    pub fn pass(&self) {
        *self.state.delay.lock().unwrap() = None;
        self.state.refuse.store(false, Ordering::Release);
    }

    /// Hold every chunk, in both directions, for `by` before forwarding it.
    pub fn delay(&self, by: Duration) {
        *self.state.delay.lock().unwrap() = Some(by);
    }

    /// Stop forwarding on every open connection without closing it; new ones still pass.
    pub fn black_hole(&self) {
        for link in self.state.links.lock().unwrap().iter() {
            link.held.store(true, Ordering::Release);
        }
    }

    /// Close every open connection, both ways.
    pub fn cut_all(&self) {
        for link in self.state.links.lock().unwrap().drain(..) {
            let _ = link.client.shutdown(Shutdown::Both);
            let _ = link.server.shutdown(Shutdown::Both);
        }
    }

    /// Stop forwarding replies (server to client) on every connection while `hold` is true;
    /// requests are still forwarded, so the server runs them. `false`: forward them again.
    pub fn hold_replies(&self, hold: bool) {
        self.state.hold_replies.store(hold, Ordering::Release);
    }

    /// Close new connections as soon as they are accepted (`false`: accept them again).
    pub fn refuse_new(&self, refuse: bool) {
        self.state.refuse.store(refuse, Ordering::Release);
    }

    /// `true`: accept new connections but park them, neither forwarded nor closed, so a client
    /// connecting through the proxy waits (its handshake gets no reply) for as long as the test
    /// wants. `false`: link every parked connection to the server, in order, and forward new
    /// ones again. A parked connection whose client gave up in the meantime is linked and ends.
    pub fn park_new(&self, park: bool) {
        let mut parked = self.state.parked.lock().unwrap();
        match (park, parked.take()) {
            (true, waiting) => *parked = Some(waiting.unwrap_or_default()),
            (false, None) => {}
            (false, Some(waiting)) => {
                for client in waiting {
                    connect_upstream(client, self.upstream, &self.state);
                }
            }
        }
    }

    /// How many connections are parked now (see [`Proxy::park_new`]).
    pub fn parked(&self) -> usize {
        self.state
            .parked
            .lock()
            .unwrap()
            .as_ref()
            .map_or(0, Vec::len)
    }

    /// Waits until at least `count` connections are parked: a client is then inside its connect
    /// window, held there until [`Proxy::park_new`]`(false)`. Async, so a client on the same
    /// (even current-thread) runtime goes on connecting meanwhile. Panics after `within`, a
    /// bound for a broken test, not a timing guess.
    pub async fn wait_parked(&self, count: usize, within: Duration) {
        let deadline = std::time::Instant::now() + within;
        while self.parked() < count {
            assert!(
                std::time::Instant::now() < deadline,
                "{count} connection(s) not parked within {within:?} ({} are)",
                self.parked()
            );
            tokio::time::sleep(POLL).await;
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::Release);
        self.cut_all();
        self.state.parked.lock().unwrap().take(); // closes the parked connections
        let _ = TcpStream::connect(self.addr); // wakes the acceptor
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn accept_loop(listener: TcpListener, upstream: SocketAddr, state: &Arc<State>) {
    for client in listener.incoming() {
        if state.stop.load(Ordering::Acquire) {
            return;
        }
        let Ok(client) = client else { continue };
        state.accepted.fetch_add(1, Ordering::AcqRel);
        if state.refuse.load(Ordering::Acquire) {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        }
        let client = {
            let mut parked = state.parked.lock().unwrap();
            match parked.as_mut() {
                Some(waiting) => {
                    waiting.push(client);
                    continue;
                }
                None => client,
            }
        };
        connect_upstream(client, upstream, state);
    }
}

/// Connects `client` to the server and links the two, or closes `client` if the server is not
/// there.
fn connect_upstream(client: TcpStream, upstream: SocketAddr, state: &Arc<State>) {
    match TcpStream::connect(upstream) {
        Ok(server) => link(client, server, state),
        Err(_) => {
            let _ = client.shutdown(Shutdown::Both);
        }
    }
}

/// Starts the two pumps of one connection and records it for the controls.
fn link(client: TcpStream, server: TcpStream, state: &Arc<State>) {
    let held = Arc::new(AtomicBool::new(false));
    let pumps = [
        (client.try_clone(), server.try_clone(), true),
        (server.try_clone(), client.try_clone(), false),
    ];
    for (from, to, upstream) in pumps {
        let (Ok(from), Ok(to)) = (from, to) else {
            return;
        };
        let (state, held) = (state.clone(), held.clone());
        thread::spawn(move || pump(from, to, &state, &held, upstream));
    }
    state.links.lock().unwrap().push(Link {
        client,
        server,
        held,
    });
}

/// Copies `from` to `to` until either side closes, honouring the controls. A held (black-
/// holed) link neither reads nor writes, so both peers just see silence.
/// `upstream`: this pump carries client requests, which it counts.
fn pump(mut from: TcpStream, mut to: TcpStream, state: &State, held: &AtomicBool, upstream: bool) {
    let _ = from.set_read_timeout(Some(POLL));
    let mut buf = [0u8; 16 * 1024];
    while !state.stop.load(Ordering::Acquire) {
        if held.load(Ordering::Acquire) {
            thread::sleep(POLL);
            continue;
        }
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(_) => break,
        };
        if upstream {
            state.requests.fetch_add(1, Ordering::AcqRel);
        }
        if let Some(by) = *state.delay.lock().unwrap() {
            thread::sleep(by);
        }
        // Replies read while (or just before) replies are held wait here, in the proxy.
        while !upstream && state.hold_replies.load(Ordering::Acquire) {
            if state.stop.load(Ordering::Acquire) {
                return;
            }
            thread::sleep(POLL);
        }
        if held.load(Ordering::Acquire) {
            continue; // black-holed while in flight: the bytes are lost, as in a partition
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
