//! A real Redis Cluster for tests: three masters on loopback ports, created once per test binary
//! and shared by every test in it (tests keep apart by namespace).
//!
//! Each node runs under `sh -c 'redis-server ... & read _; kill'` whose stdin is a pipe held by
//! this process: when the test binary exits (or is killed), the pipe closes, `read` returns and
//! the node is killed, so no node outlives the tests although statics are never dropped.

use std::{
    net::{Ipv4Addr, TcpListener, TcpStream},
    process::{Child, Command, Stdio},
    sync::OnceLock,
    thread::sleep,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

/// Number of masters.
const NODES: u16 = 3;
/// Cluster bus ports are node port + 10000, so node ports stay below 55535.
const BUS_OFFSET: u16 = 10000;

/// A running three-master cluster on 127.0.0.1.
pub struct RedisCluster {
    ports: Vec<u16>,
    /// The `sh` wrappers; their stdin pipes keep the nodes alive.
    _guards: Vec<Child>,
}

/// The cluster shared by this test binary, started on first use.
pub fn shared() -> &'static RedisCluster {
    static CLUSTER: OnceLock<RedisCluster> = OnceLock::new();
    CLUSTER.get_or_init(RedisCluster::start)
}

fn port_free(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

/// A base port with `NODES` consecutive free ports whose bus ports are free too.
fn free_base_port() -> u16 {
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos()) as u16
        ^ (std::process::id() as u16);
    for attempt in 0..200u16 {
        let base = 20000 + (seed.wrapping_add(attempt.wrapping_mul(97)) % 25000);
        let all_free = (base..base + NODES).all(|p| port_free(p) && port_free(p + BUS_OFFSET));
        if all_free {
            return base;
        }
    }
    panic!("no free loopback ports for a Redis Cluster between 20000 and 45010");
}

fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli is not installed: run scripts/test (it installs redis-tools)");
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

fn spawn_node(port: u16, dir: &str) -> Child {
    let script = format!(
        "redis-server --port {port} --bind 127.0.0.1 --protected-mode no --cluster-enabled yes \
         --cluster-config-file nodes-{port}.conf --cluster-node-timeout 2000 --save '' \
         --appendonly no --dir {dir} >/dev/null 2>&1 & pid=$!; read _; kill -9 $pid; \
         rm -rf {dir}"
    );
    Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start sh for a redis-server cluster node")
}

fn wait_until(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if ready() {
            return;
        }
        sleep(Duration::from_millis(50));
    }
    panic!("Redis Cluster: {what} within {timeout:?}");
}

impl RedisCluster {
    fn start() -> Self {
        let base = free_base_port();
        let ports: Vec<u16> = (base..base + NODES).collect();
        let dir =
            std::env::temp_dir().join(format!("strata-cluster-{}-{base}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch dir for the cluster");
        let dir = dir.to_string_lossy().into_owned();
        let guards = ports.iter().map(|&p| spawn_node(p, &dir)).collect();
        for &p in &ports {
            wait_until(
                "a node did not accept connections",
                Duration::from_secs(10),
                || TcpStream::connect((Ipv4Addr::LOCALHOST, p)).is_ok(),
            );
        }
        let cluster = RedisCluster {
            ports,
            _guards: guards,
        };
        cluster.create();
        cluster
    }

    fn create(&self) {
        let addrs: Vec<String> = self
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let mut args = vec!["--cluster", "create"];
        args.extend(addrs.iter().map(String::as_str));
        args.extend(["--cluster-replicas", "0", "--cluster-yes"]);
        let out = redis_cli(self.ports[0], &args);
        assert!(
            out.contains("All 16384 slots covered"),
            "cluster create failed:\n{out}"
        );
        for &p in &self.ports {
            wait_until(
                "cluster_state:ok not reached",
                Duration::from_secs(20),
                || {
                    let info = redis_cli(p, &["cluster", "info"]);
                    info.contains("cluster_state:ok") && info.contains("cluster_known_nodes:3")
                },
            );
        }
    }

    /// `redis://127.0.0.1:PORT/` for every node (seed URLs for a cluster client).
    pub fn urls(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}/"))
            .collect()
    }

    /// The node ports.
    pub fn ports(&self) -> &[u16] {
        &self.ports
    }
}
