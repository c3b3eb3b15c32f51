//! A real `redis-server` for tests: started on a free loopback port, stopped on drop.
//!
//! Tests never skip when Redis is missing: `scripts/test` installs it, and a missing binary is a
//! loud panic that says so.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
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
pub fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind an ephemeral port");
    listener.local_addr().expect("local addr").port()
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
        let dir = tempfile::tempdir().expect("scratch dir for redis");
        let mut server = RedisServer {
            child: None,
            port: free_port(),
            dir,
            args: extra.iter().map(|s| s.to_string()).collect(),
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new(redis_binary());
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        self.child = Some(cmd.spawn().expect("start redis-server"));
        self.wait_ready();
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if TcpStream::connect(self.addr()).is_ok() {
                return;
            }
            sleep(Duration::from_millis(20));
        }
        panic!(
            "redis-server did not accept connections on port {} within 10 s",
            self.port
        );
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
        self.spawn();
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
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let mut stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{}\r\n", a.len(), a));
        }
        stream.write_all(req.as_bytes())?;
        read_reply(&mut BufReader::new(stream))
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
