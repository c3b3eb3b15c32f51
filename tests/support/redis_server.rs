//! A real `redis-server` for tests: started on a free loopback port, stopped on drop.
//!
//! Tests never skip when Redis is missing: `scripts/test` installs it, and a missing binary is a
//! loud panic that says so.

use std::{
    collections::BTreeSet,
    io::{BufRead, BufReader, Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::Mutex,
    thread::sleep,
    time::{Duration, Instant},
};

/// A running `redis-server` child process on 127.0.0.1.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    args: Vec<String>,
}

/// A free TCP port on 127.0.0.1 (the OS picks it; there is a small window before we bind it).
/// Never the same port twice in one test process: the OS may hand a just-released port to the
/// next caller, and two tests running in parallel would then start two servers on one port
/// (the second fails to bind, and both tests end up talking to the first).
pub fn free_port() -> u16 {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    loop {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind an ephemeral port");
        let port = listener.local_addr().expect("local addr").port();
        if GIVEN.lock().unwrap_or_else(|e| e.into_inner()).insert(port) {
            return port;
        }
    }
}

pub fn redis_binary() -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("redis-server"))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!("redis-server is not installed: run scripts/test (it installs it) or `apt-get install -y redis-server`")
    })
}

impl RedisServer {
    /// Starts a server with persistence off.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts a server with extra `redis-server` arguments (e.g. `["--requirepass", "s3cret"]`).
    pub fn start_with(extra: &[&str]) -> Self {
        Self::start_on(free_port(), extra)
    }

    /// Starts a server asking for `port` first; if something else already holds that port, the
    /// server moves to a free one ([`RedisServer::port`] says where it ended up).
    pub fn start_on(port: u16, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("scratch dir for redis");
        let mut server = RedisServer {
            child: None,
            port,
            dir,
            args: extra.iter().map(|s| s.to_string()).collect(),
        };
        for _ in 0..5 {
            if server.spawn() {
                return server;
            }
            server.port = free_port();
        }
        panic!("redis-server could not bind a free port on 127.0.0.1 in 5 tries");
    }

    /// Starts the server on `self.port`; false if it exited first (the port was taken).
    fn spawn(&mut self) -> bool {
        let mut cmd = Command::new(redis_binary());
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        self.child = Some(cmd.spawn().expect("start redis-server"));
        self.wait_ready()
    }

    /// Waits until the server on `self.port` is our child (its `INFO` names our pid), not a
    /// server of another test that got the port first; false if our child exited.
    fn wait_ready(&mut self) -> bool {
        let pid = format!(
            "process_id:{}\r",
            self.child.as_ref().expect("spawned").id()
        );
        let info = self.auth_then(&["INFO", "server"]);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let child = self.child.as_mut().expect("spawned");
            if child.try_wait().expect("poll redis-server").is_some() {
                self.child = None;
                return false;
            }
            let reply = Self::try_pipeline_at(self.port, &info);
            if reply.is_ok_and(|reply| reply.contains(&pid)) {
                return true;
            }
            sleep(Duration::from_millis(20));
        }
        panic!(
            "redis-server did not accept connections on port {} within 10 s",
            self.port
        );
    }

    /// `command`, preceded by `AUTH` when the server was started with `--requirepass`.
    fn auth_then(&self, command: &[&str]) -> Vec<Vec<String>> {
        let password = self
            .args
            .iter()
            .position(|a| a == "--requirepass")
            .and_then(|i| self.args.get(i + 1));
        let auth = password.map(|p| vec!["AUTH".to_string(), p.clone()]);
        let command = command.iter().map(|a| a.to_string()).collect();
        auth.into_iter().chain([command]).collect()
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Kills the server (SIGKILL) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the server (SIGSTOP): it keeps its connections but answers nothing, as a hung
    /// or partitioned host would, until [`RedisServer::resume`].
    pub fn pause(&self) {
        self.signal(rustix::process::Signal::STOP);
    }

    /// Lets a paused server run again (SIGCONT).
    pub fn resume(&self) {
        self.signal(rustix::process::Signal::CONT);
    }

    fn signal(&self, signal: rustix::process::Signal) {
        let child = self.child.as_ref().expect("the server is running");
        let pid = rustix::process::Pid::from_child(child);
        rustix::process::kill_process(pid, signal).expect("signal redis-server");
    }

    /// Starts the server again on the same port (after [`RedisServer::kill`]).
    pub fn restart(&mut self) {
        self.kill();
        assert!(
            self.spawn(),
            "redis-server could not bind port {} again",
            self.port
        );
    }

    /// Sends one command over a fresh connection and returns the raw RESP reply (for tests that
    /// must look at Redis without going through strata).
    pub fn raw(&self, args: &[&str]) -> String {
        Self::raw_at(self.port, args)
    }

    /// [`RedisServer::raw`] against any server on 127.0.0.1 (a sentinel, say).
    pub fn raw_at(port: u16, args: &[&str]) -> String {
        Self::try_raw_at(port, args).expect("talk to redis-server")
    }

    /// [`RedisServer::raw`] that reports a refused or reset connection instead of panicking (a
    /// server that is changing role closes its clients).
    #[allow(dead_code)] // not every test binary polls a server that may drop it
    pub fn try_raw(&self, args: &[&str]) -> std::io::Result<String> {
        Self::try_raw_at(self.port, args)
    }

    fn try_raw_at(port: u16, args: &[&str]) -> std::io::Result<String> {
        Self::try_pipeline_at(port, &[args.to_vec()])
    }

    /// Sends `commands` in one write over a fresh connection; the last one's reply.
    fn try_pipeline_at<S: AsRef<str>>(port: u16, commands: &[Vec<S>]) -> std::io::Result<String> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let mut stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut req = String::new();
        for args in commands {
            req.push_str(&format!("*{}\r\n", args.len()));
            for a in args {
                let a = a.as_ref();
                req.push_str(&format!("${}\r\n{}\r\n", a.len(), a));
            }
        }
        stream.write_all(req.as_bytes())?;
        let mut reader = BufReader::new(stream);
        let mut reply = String::new();
        for _ in commands {
            reply = read_reply(&mut reader)?;
        }
        Ok(reply)
    }
}

fn read_reply(reader: &mut BufReader<TcpStream>) -> std::io::Result<String> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let line = line.trim_end().to_string();
    match line.as_bytes().first() {
        Some(b'$') => {
            let len: i64 = line[1..].parse().map_err(|_| bad("bulk length"))?;
            if len < 0 {
                return Ok("(nil)".into());
            }
            let mut buf = vec![0; len as usize + 2];
            reader.read_exact(&mut buf)?;
            Ok(String::from_utf8_lossy(&buf[..len as usize]).into_owned())
        }
        Some(b'*') => {
            let n: i64 = line[1..].parse().map_err(|_| bad("array length"))?;
            let items = (0..n.max(0))
                .map(|_| read_reply(reader))
                .collect::<std::io::Result<Vec<String>>>()?;
            Ok(items.join("\n"))
        }
        _ => Ok(line),
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
