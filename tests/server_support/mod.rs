//! A `strata-session-server` child process for tests, driven over loopback HTTP/1.1 with plain
//! `TcpStream`s (every request on its own connection), and its stderr (the log) collected.
#![allow(dead_code)]

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    path::Path,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    thread::JoinHandle,
    time::Duration,
};

/// A running server process; killed with SIGKILL when dropped.
pub struct Server {
    child: Child,
    /// `host:port` it listens on.
    pub addr: String,
    /// The first line it printed.
    pub banner: String,
    log: Arc<Mutex<String>>,
    log_reader: Option<JoinHandle<()>>,
}

/// The server binary with a clean environment for the variables it reads.
pub fn command() -> Command {
    command_for(env!("CARGO_BIN_EXE_strata-session-server").as_ref())
}

/// [`command`] for the server binary at `bin` (another build, to compare with).
pub fn command_for(bin: &std::ffi::OsStr) -> Command {
    let mut command = Command::new(bin);
    for var in [
        "STRATA_ADDR",
        "PORT",
        "STRATA_DATA_DIR",
        "STRATA_REDIS_URL",
        "STRATA_REPLICATED",
        "STRATA_SESSION_IDLE_SECS",
        "STRATA_SECURE_COOKIE",
        "STRATA_SIGN_IN_LIMIT",
        "RUST_LOG",
    ] {
        command.env_remove(var);
    }
    command.env("STRATA_ADDR", "127.0.0.1:0");
    command
}

impl Server {
    /// A server keeping sessions in a DiskStore in `dir`.
    pub fn start(dir: &Path) -> Server {
        Server::start_with(dir, &[])
    }

    /// A server on `dir` with extra environment variables.
    pub fn start_with(dir: &Path, env: &[(&str, &str)]) -> Server {
        let mut command = command();
        command.env("STRATA_DATA_DIR", dir);
        Server::spawn(command.envs(env.iter().copied()))
    }

    /// Starts `command`, waits for its banner and keeps reading its stderr.
    pub fn spawn(command: &mut Command) -> Server {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        let log_reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let mut banner = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut banner)
            .unwrap();
        let mut server = Server {
            child,
            addr: String::new(),
            banner,
            log,
            log_reader: Some(log_reader),
        };
        let Some(addr) = server.banner.split("http://").nth(1) else {
            let _ = server.child.wait();
            panic!("the server did not start: {}", server.take_log());
        };
        server.addr = addr.split_whitespace().next().unwrap().to_owned();
        server
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `request`; returns the reply.
    pub fn send(&self, request: Request) -> Reply {
        let mut stream = TcpStream::connect(&self.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        stream
            .write_all(request.to_http(&self.addr).as_bytes())
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        Reply::parse(&response)
    }

    /// A plain request: `method path`, with `cookie` if given and a form body.
    pub fn request(&self, method: &str, path: &str, cookie: Option<&str>, form: &str) -> Reply {
        let mut request = Request::new(method, path).form(form);
        if let Some(cookie) = cookie {
            request = request.cookie(cookie);
        }
        self.send(request)
    }

    /// `GET path` with `cookie`.
    pub fn get(&self, path: &str, cookie: &str) -> Reply {
        self.request("GET", path, Some(cookie), "")
    }

    /// Signs in as `name`; returns the session cookie.
    pub fn sign_in(&self, name: &str) -> String {
        let reply = self.request("POST", "/sign-in", None, &format!("name={name}"));
        assert_eq!(reply.status, 303, "{}", reply.body);
        reply.cookie.expect("signing in sets the session cookie")
    }

    /// SIGTERM, then waits (at most 60 s, then SIGKILL and a panic: never a hang) for the exit;
    /// returns the exit status and everything it logged to stderr.
    pub fn terminate(mut self) -> (std::process::ExitStatus, String) {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -TERM failed");
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "the server did not exit within 60 s of SIGTERM: {}",
                    self.take_log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        (status, self.take_log())
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGKILL, then everything it logged to stderr.
    pub fn kill_and_read_log(mut self) -> String {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.take_log()
    }

    fn take_log(&mut self) -> String {
        if let Some(reader) = self.log_reader.take() {
            reader.join().unwrap();
        }
        std::mem::take(&mut *self.log.lock().unwrap())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP request.
pub struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Request {
    /// `method path`, no body.
    pub fn new(method: &str, path: &str) -> Request {
        Request {
            method: method.into(),
            path: path.into(),
            headers: Vec::new(),
            body: String::new(),
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Request {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sends `cookie` (`id=...`).
    pub fn cookie(self, cookie: &str) -> Request {
        self.header("Cookie", cookie)
    }

    /// A url-encoded form body.
    pub fn form(mut self, body: &str) -> Request {
        self.body = body.into();
        self
    }

    fn to_http(&self, addr: &str) -> String {
        let headers: String = self
            .headers
            .iter()
            .map(|(name, value)| format!("{name}: {value}\r\n"))
            .collect();
        format!(
            "{} {} HTTP/1.1\r\nHost: {addr}\r\n{headers}Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
            self.method,
            self.path,
            self.body.len(),
            self.body
        )
    }
}

/// One HTTP response.
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// The session cookie set (`id=...`), if any.
    pub cookie: Option<String>,
    /// Every header, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: String,
}

impl Reply {
    fn parse(response: &str) -> Reply {
        let (head, body) = response.split_once("\r\n\r\n").unwrap_or((response, ""));
        let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap();
        let headers: Vec<(String, String)> = head
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(": "))
            .map(|(n, v)| (n.to_ascii_lowercase(), v.to_owned()))
            .collect();
        let cookie = headers
            .iter()
            .find(|(n, _)| n == "set-cookie")
            .map(|(_, v)| v.split(';').next().unwrap().to_owned());
        Reply {
            status,
            cookie,
            headers,
            body: body.to_owned(),
        }
    }

    /// The value of header `name` (lower case), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `GET /me` with `cookie`.
pub fn me(server: &Server, cookie: &str) -> Reply {
    server.get("/me", cookie)
}

/// Every session record stored in the DiskStore in `dir` (the server must be stopped).
pub fn stored_records(dir: &Path) -> Vec<tower_sessions::session::Record> {
    use strata::{DiskStore, Store};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store: DiskStore<String, tower_sessions::session::Record> = DiskStore::builder()
            .dir(dir)
            .namespace("sessions")
            .open()
            .unwrap();
        let keys = Store::keys(&store).await.unwrap();
        let records = Store::get_many(&store, &keys).await.unwrap();
        records.into_iter().flatten().collect()
    })
}

/// The number of sessions stored in the DiskStore in `dir` (the server must be stopped).
pub fn stored_sessions(dir: &Path) -> usize {
    stored_records(dir).len()
}

/// Runs `command` to its exit and returns its stderr; a server that starts instead of refusing
/// is killed after 30 s and fails the test (never a hang).
pub fn refused_with(command: &mut Command) -> String {
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("the server started instead of refusing the setting");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = child.wait().unwrap();
    assert!(!status.success(), "the server exited successfully");
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    err
}
