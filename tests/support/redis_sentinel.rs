//! A real Sentinel setup on loopback for failover tests: one master, one replica and three
//! sentinels (`redis-server <conf> --sentinel`), all child processes stopped on drop.

use std::{
    process::{Child, Command, Stdio},
    thread::sleep,
    time::{Duration, Instant},
};

use super::redis_server::{free_port, redis_binary, RedisServer};

/// The name the sentinels monitor.
pub const MASTER_NAME: &str = "mymaster";

/// One master, one replica of it, and three sentinels watching them (quorum 2).
pub struct Sentinels {
    pub master: RedisServer,
    pub replica: RedisServer,
    ports: Vec<u16>,
    children: Vec<Child>,
    dir: tempfile::TempDir,
}

impl Sentinels {
    /// Starts everything and waits until the replica is in sync and every sentinel knows it.
    /// A master is declared down after `down_after` without answers.
    pub fn start(down_after: Duration) -> Self {
        let master = RedisServer::start();
        let port = master.port().to_string();
        let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &port]);
        wait_for("the replica to sync", || {
            replica
                .raw(&["INFO", "replication"])
                .contains("master_link_status:up")
        });
        let dir = tempfile::tempdir().expect("scratch dir for the sentinels");
        let mut ports = Vec::new();
        let mut children = Vec::new();
        for i in 0..3 {
            let sentinel_port = free_port();
            let conf = dir.path().join(format!("sentinel-{i}.conf"));
            let text = format!(
                "port {sentinel_port}\nbind 127.0.0.1\nprotected-mode no\ndir {dir}\n\
                 sentinel monitor {MASTER_NAME} 127.0.0.1 {port} 2\n\
                 sentinel down-after-milliseconds {MASTER_NAME} {down}\n\
                 sentinel failover-timeout {MASTER_NAME} 10000\n\
                 sentinel parallel-syncs {MASTER_NAME} 1\n\
                 logfile {dir}/sentinel-{i}.log\n",
                dir = dir.path().display(),
                down = down_after.as_millis(),
            );
            std::fs::write(&conf, text).expect("write a sentinel config");
            let child = Command::new(redis_binary())
                .arg(&conf)
                .arg("--sentinel")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start a sentinel (redis-server --sentinel)");
            ports.push(sentinel_port);
            children.push(child);
        }
        let set = Sentinels {
            master,
            replica,
            ports,
            children,
            dir,
        };
        for &port in &set.ports {
            wait_for(
                "every sentinel to know the replica and the other sentinels",
                || {
                    if std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                        return false; // still starting
                    }
                    let info = raw_on(port, &["SENTINEL", "MASTER", MASTER_NAME]);
                    field(&info, "num-slaves") == Some(1)
                        && field(&info, "num-other-sentinels") == Some(2)
                },
            );
        }
        set
    }

    /// The sentinels' URLs.
    pub fn urls(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}/"))
            .collect()
    }

    /// A command to the first sentinel, raw reply.
    pub fn sentinel_raw(&self, args: &[&str]) -> String {
        raw_on(self.ports[0], args)
    }

    /// The port the sentinels name as master now.
    pub fn master_port(&self) -> Option<u16> {
        let reply = raw_on(
            self.ports[0],
            &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME],
        );
        reply.lines().filter_map(|l| l.parse().ok()).next_back()
    }
}

impl Drop for Sentinels {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        // A failing test shows what the sentinels did (a failed vote, a refused replica), which
        // its own assertion cannot say; a passing one prints nothing.
        if std::thread::panicking() {
            for i in 0..self.children.len() {
                let log = self.dir.path().join(format!("sentinel-{i}.log"));
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                eprintln!("--- {}:\n{text}", log.display());
            }
        }
    }
}

/// `raw` against a port that is not a `RedisServer` of ours (a sentinel).
fn raw_on(port: u16, args: &[&str]) -> String {
    RedisServer::raw_at(port, args)
}

/// A numeric field of a flat `SENTINEL MASTER` reply (name line, then value line).
fn field(reply: &str, name: &str) -> Option<u64> {
    let lines: Vec<&str> = reply.lines().collect();
    let at = lines.iter().position(|l| *l == name)?;
    lines.get(at + 1)?.parse().ok()
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        sleep(Duration::from_millis(50));
    }
}
