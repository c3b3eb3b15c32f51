//! `strata_node`: one `ReplicatedStore` node driven by line commands on stdin, answering one line
//! per command on stdout. The multi-process tests (tests/replicated_store.rs) build this example
//! and start three of these on one `redis-server`.
//!
//! ```text
//! cargo run --example strata_node --features redis -- --redis redis://127.0.0.1:6379/ [--namespace NS] [--stale-for-ms N]
//!             [--heartbeat-ms N] [--local-ttl-ms N] [--warm] [--offline-ok]
//!             [--channel-prefix P] [--dir PATH]
//!
//! With `--dir` the local tier is a `DiskStore` in that directory (one per node), else a
//! `MemoryStore`.
//! ```
//!
//! Prints `ready node=<id>` once connected (or `error <message>` and exits 1). Commands:
//! `put KEY VALUE [TTL_MS]`, `get KEY`, `local KEY` (the local tier only), `del KEY`,
//! `expire KEY TTL_MS`, `ttl KEY`, `stats`, `quit`. Keys and values are single words.
//! Replies: `ok`, `ok true|false`, `value V`, `none`, `ttl MS|never|none`,
//! `stats k=v ...`, `err <message>`.

use std::{process::ExitCode, time::Duration};

#[cfg(feature = "disk")]
use strata::DiskStore;
use strata::{Expiry, MemoryStore, RedisStore, ReplicatedStore, Store};
use tokio::sync::mpsc;

#[cfg(feature = "disk")]
type Disk = DiskStore<String, String>;

/// A node with local tier `L` (memory, or disk with `--dir`).
type Node<L> = ReplicatedStore<String, String, L, RedisStore<String, String>>;

#[derive(Debug, Default)]
struct Args {
    redis: String,
    namespace: String,
    stale_for: Duration,
    heartbeat: Option<Duration>,
    local_ttl: Option<Duration>,
    warm: bool,
    offline_ok: bool,
    channel_prefix: Option<String>,
    dir: Option<std::path::PathBuf>,
}

fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut args = Args {
        namespace: "cache".into(),
        ..Args::default()
    };
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--redis" => args.redis = value()?,
            "--namespace" => args.namespace = value()?,
            "--stale-for-ms" => args.stale_for = millis(&value()?)?,
            "--heartbeat-ms" => args.heartbeat = Some(millis(&value()?)?),
            "--local-ttl-ms" => args.local_ttl = Some(millis(&value()?)?),
            "--warm" => args.warm = true,
            "--offline-ok" => args.offline_ok = true,
            "--channel-prefix" => args.channel_prefix = Some(value()?),
            "--dir" => args.dir = Some(value()?.into()),
            other => {
                return Err(format!(
                    "unknown option {other}; see the doc at the top of strata-node.rs"
                ))
            }
        }
    }
    if args.redis.is_empty() {
        return Err("--redis URL is required".into());
    }
    Ok(args)
}

fn millis(s: &str) -> Result<Duration, String> {
    s.parse()
        .map(Duration::from_millis)
        .map_err(|e| format!("{s:?} is not a number of milliseconds: {e}"))
}

async fn open<L: Store<String, String> + 'static>(
    args: &Args,
    local: L,
) -> strata::Result<Node<L>> {
    let remote = RedisStore::builder()
        .url(args.redis.clone())
        .namespace(&args.namespace)
        .build()
        .await?;
    let mut builder = ReplicatedStore::builder()
        .local(local)
        .remote(remote)
        .url(args.redis.clone())
        .stale_for(args.stale_for)
        .warm_on_join(args.warm)
        .allow_start_offline(args.offline_ok);
    if let Some(hb) = args.heartbeat {
        builder = builder.heartbeat(hb);
    }
    if let Some(prefix) = &args.channel_prefix {
        builder = builder.channel_prefix(prefix.clone());
    }
    if let Some(cap) = args.local_ttl {
        builder = builder.local_ttl(cap);
    }
    builder.build().await
}

fn reply<T: std::fmt::Display>(result: strata::Result<T>) -> String {
    match result {
        Ok(v) => v.to_string(),
        Err(e) => format!("err {}", e.to_string().replace('\n', " ")),
    }
}

fn value(v: Option<String>) -> String {
    v.map_or_else(|| "none".into(), |v| format!("value {v}"))
}

fn ttl(t: Option<Expiry>) -> String {
    match t {
        None => "ttl none".into(),
        Some(Expiry::Never) => "ttl never".into(),
        Some(Expiry::In(d)) => format!("ttl {}", d.as_millis()),
    }
}

fn stats<L>(node: &Node<L>) -> String {
    let s = node.replication_stats();
    format!(
        "stats node={} connected={} received={} applied={} own_echoes={} unknown_namespace={} garbled={} disconnects={} recoveries={} latency_us={}",
        s.node_id,
        u8::from(s.connected),
        s.received,
        s.applied,
        s.own_echoes,
        s.unknown_namespace,
        s.garbled,
        s.disconnects,
        s.recoveries,
        s.last_latency.map_or(-1, |d| d.as_micros() as i64),
    )
}

async fn command<L: Store<String, String> + 'static>(node: &Node<L>, line: &str) -> Option<String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let key = || words.get(1).map(|k| k.to_string()).unwrap_or_default();
    let num = |i: usize| words.get(i).and_then(|w| w.parse::<u64>().ok());
    let out = match words.first().copied()? {
        "put" => {
            let ttl = num(3).map(Duration::from_millis);
            let v = words.get(2).unwrap_or(&"").to_string();
            reply(node.put(key(), v, ttl).await.map(|()| "ok"))
        }
        "get" => reply(node.get(&key()).await.map(value)),
        "local" => reply(node.local().get(&key()).await.map(value)),
        "del" => reply(node.delete(&key()).await.map(|b| format!("ok {b}"))),
        "expire" => {
            let ttl = num(2).map(Duration::from_millis);
            reply(node.expire(&key(), ttl).await.map(|b| format!("ok {b}")))
        }
        "ttl" => reply(node.ttl(&key()).await.map(ttl)),
        "stats" => stats(node),
        "quit" => return None,
        other => format!("err unknown command {other:?}"),
    };
    Some(out)
}

/// Reads stdin on a plain thread (no extra Tokio features) and forwards each line.
fn stdin_lines() -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

async fn run(args: Args) -> ExitCode {
    match &args.dir {
        None => serve(open(&args, MemoryStore::new()).await).await,
        #[cfg(feature = "disk")]
        Some(dir) => serve(open_on_disk(&args, dir).await).await,
        #[cfg(not(feature = "disk"))]
        Some(_) => {
            println!("error --dir needs strata built with the `disk` feature");
            ExitCode::FAILURE
        }
    }
}

#[cfg(feature = "disk")]
async fn open_on_disk(args: &Args, dir: &std::path::Path) -> strata::Result<Node<Disk>> {
    let local = DiskStore::builder()
        .dir(dir)
        .namespace(&args.namespace)
        .open()?;
    open(args, local).await
}

async fn serve<L: Store<String, String> + 'static>(opened: strata::Result<Node<L>>) -> ExitCode {
    let node = match opened {
        Ok(node) => node,
        Err(e) => {
            println!("error {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("ready node={}", node.replication_stats().node_id);
    let mut lines = stdin_lines();
    while let Some(line) = lines.recv().await {
        match command(&node, &line).await {
            Some(out) => println!("{out}"),
            None => break,
        }
    }
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("strata-node: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    match runtime {
        Ok(rt) => rt.block_on(run(args)),
        Err(e) => {
            eprintln!("strata-node: cannot start the Tokio runtime: {e}");
            ExitCode::FAILURE
        }
    }
}
