//! `RateLimiter` over Redis holds across processes (issue 16 item 6): several OS processes (this
//! test binary re-run as children) and several clients in one process check the same key at
//! once, and the total admitted is exactly the limit, for GCRA and for the fixed window.
//!
//! The children start together: each connects, says `ready`, and waits for `go` on stdin, so
//! both are mid-burst at the same time. GCRA's window is an hour, so no refill happens during
//! the test and "exactly the burst" is the only correct total.
#![cfg(feature = "redis")]

mod support;

use std::{
    io::{BufRead, BufReader, Write},
    process::{Child, Command, Stdio},
    time::Duration,
};

use strata::{RateLimiter, RedisStore, Store};
use support::RedisServer;

const URL_VAR: &str = "STRATA_RATE_LIMIT_CHILD_URL";
const MODE_VAR: &str = "STRATA_RATE_LIMIT_CHILD_MODE";
const CHECKS: usize = 500;
const LIMIT: u64 = 100;
const WINDOW: Duration = Duration::from_secs(3600);

async fn limiter(url: &str) -> RateLimiter<RedisStore<String, i64>> {
    let store = RedisStore::builder()
        .url(url)
        .namespace("rl")
        .connect_timeout(Duration::from_secs(5))
        .command_timeout(Duration::from_secs(10))
        .build()
        .await
        .unwrap();
    RateLimiter::new(store)
}

/// Runs `CHECKS` concurrent checks of one key; returns how many were allowed.
async fn burst(limiter: &RateLimiter<RedisStore<String, i64>>, gcra: bool) -> usize {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..CHECKS {
        let limiter = limiter.clone();
        tasks.spawn(async move {
            let decision = if gcra {
                limiter.check_gcra("login:10.0.0.1", LIMIT, WINDOW).await
            } else {
                limiter.check("login:10.0.0.1", LIMIT, WINDOW).await
            };
            decision.unwrap().allowed
        });
    }
    let mut allowed = 0;
    while let Some(result) = tasks.join_next().await {
        allowed += usize::from(result.unwrap());
    }
    allowed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "child process of the *_across_processes tests; run by them"]
async fn rate_limit_child() {
    let (Some(url), Some(mode)) = (std::env::var_os(URL_VAR), std::env::var_os(MODE_VAR)) else {
        return;
    };
    let limiter = limiter(url.to_str().unwrap()).await;
    println!("ready");
    let mut go = String::new();
    std::io::stdin().read_line(&mut go).unwrap();
    let allowed = burst(&limiter, mode == "gcra").await;
    println!("allowed {allowed}");
}

/// A child process of this test binary, with its stdout read line by line and its stderr kept
/// in a file, so a child that dies says why.
struct ChildRun {
    child: Child,
    out: BufReader<std::process::ChildStdout>,
    stderr: tempfile::NamedTempFile,
}

/// Starts one child in `mode`; returns it once it has connected and said `ready`.
fn spawn_child(url: &str, mode: &str) -> ChildRun {
    let stderr = tempfile::NamedTempFile::new().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["rate_limit_child", "--exact", "--ignored", "--nocapture"])
        .env(URL_VAR, url)
        .env(MODE_VAR, mode)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(stderr.reopen().unwrap())
        .spawn()
        .unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    let mut run = ChildRun { child, out, stderr };
    let ready = run.next_report();
    assert_eq!(ready, "ready", "the child did not start");
    run
}

impl ChildRun {
    /// The child's next line of its own (the test harness prints lines of its own too).
    fn next_report(&mut self) -> String {
        loop {
            let mut line = String::new();
            if self.out.read_line(&mut line).unwrap() == 0 {
                let stderr = std::fs::read_to_string(self.stderr.path()).unwrap_or_default();
                panic!("the child exited; its stderr:\n{stderr}");
            }
            let line = line.trim();
            if line == "ready" || line.starts_with("allowed ") {
                return line.to_string();
            }
        }
    }
}

/// Two processes × `CHECKS` concurrent checks, released together; the total allowed.
fn allowed_across_processes(mode: &str) -> usize {
    let server = RedisServer::start();
    let mut children: Vec<_> = (0..2).map(|_| spawn_child(&server.url(), mode)).collect();
    for run in &mut children {
        run.child
            .stdin
            .as_mut()
            .unwrap()
            .write_all(b"go\n")
            .unwrap();
    }
    let mut total = 0;
    for mut run in children {
        let report = run.next_report();
        total += report["allowed ".len()..].parse::<usize>().unwrap();
        assert!(run.child.wait().unwrap().success());
    }
    total
}

#[test]
fn gcra_admits_exactly_the_burst_across_processes() {
    assert_eq!(allowed_across_processes("gcra"), LIMIT as usize);
}

#[test]
fn fixed_window_admits_exactly_the_limit_across_processes() {
    assert_eq!(allowed_across_processes("window"), LIMIT as usize);
}

/// The same race inside one process: two limiters, each with its own connection (as two
/// nodes would have), so neither's in-process key lock orders the other's checks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcra_admits_exactly_the_burst_across_two_clients() {
    let server = RedisServer::start();
    let (a, b) = (limiter(&server.url()).await, limiter(&server.url()).await);
    let (x, y) = tokio::join!(burst(&a, true), burst(&b, true));
    assert_eq!(x + y, LIMIT as usize);
}

/// An admitted GCRA check on Redis is one round trip (one script: the read, the decision and the
/// write), and so is a denied one. Before: a `GET`, then the compare-and-set script.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gcra_check_on_redis_is_one_round_trip() {
    let server = RedisServer::start();
    let proxy = support::proxy::Proxy::start(server.addr());
    let limiter = limiter(&proxy.url()).await;
    // The first call loads the script (`EVALSHA` answered `NOSCRIPT`, then `EVAL`).
    assert!(limiter.check_gcra("warm", 2, WINDOW).await.unwrap().allowed);
    for expected in [true, true, false] {
        let before = proxy.requests();
        let decision = limiter.check_gcra("ip", 2, WINDOW).await.unwrap();
        assert_eq!(decision.allowed, expected);
        assert_eq!(proxy.requests() - before, 1, "allowed: {expected}");
    }
}

/// A GCRA key that holds something other than an arrival time is an error, never a panic, a
/// silent reset or an overwrite.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gcra_state_that_is_not_a_number_is_an_error_and_left_alone() {
    let server = RedisServer::start();
    let limiter = limiter(&server.url()).await;
    let raw = RedisStore::<String, String>::builder()
        .url(server.url())
        .namespace("rl")
        .build()
        .await
        .unwrap();
    raw.put("gcra:ip".into(), "not a time".into(), None)
        .await
        .unwrap();
    let err = limiter.check_gcra("ip", 2, WINDOW).await.unwrap_err();
    assert!(err.to_string().contains("not a decimal integer"), "{err}");
    let kept = raw.get(&"gcra:ip".to_string()).await.unwrap();
    assert_eq!(kept.as_deref(), Some("not a time"));
}
