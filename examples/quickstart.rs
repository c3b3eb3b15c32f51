//! Quickstart: put/get, TTL expiry and namespaces on a `MemoryStore`, printing what happens.
//!
//! Run with `cargo run --release --example quickstart`.

use std::time::Duration;

use strata::{EventKind, MemoryStore, Namespace, Store};

#[tokio::main]
async fn main() -> strata::Result<()> {
    // A store with the defaults: sharded, stats on, one sweeper thread once a TTL is used.
    let store: MemoryStore<String, String> = MemoryStore::builder().build()?;
    let mut events = store.subscribe();

    store.put("greeting".into(), "hello".into(), None)?;
    println!("put greeting=hello (no TTL)");
    println!("get greeting -> {:?}", store.get("greeting"));

    store.put(
        "token".into(),
        "abc123".into(),
        Some(Duration::from_millis(300)),
    )?;
    println!(
        "put token=abc123 with a 300 ms TTL; ttl -> {:?}",
        store.ttl("token")
    );
    println!("get token -> {:?}", store.get("token"));
    tokio::time::sleep(Duration::from_millis(400)).await;
    println!(
        "400 ms later, get token -> {:?} (expired entries are never returned)",
        store.get("token")
    );

    // The same operations through the async Store trait, as generic code would use them.
    let counter: MemoryStore<String, i64> = MemoryStore::builder().build()?;
    for _ in 0..3 {
        Store::incr(&counter, &"visits".to_string(), 1).await?;
    }
    println!("incr visits x3 -> {:?}", counter.get("visits"));

    // Namespaces: one store per namespace; names with ':' are refused with a clear error.
    let sessions: MemoryStore<String, String> = MemoryStore::builder().build()?;
    let tokens: MemoryStore<String, String> = MemoryStore::builder().build()?;
    sessions.put("42".into(), "session of user 42".into(), None)?;
    tokens.put("42".into(), "token of user 42".into(), None)?;
    println!("sessions[42] -> {:?}", sessions.get("42"));
    println!("tokens[42]   -> {:?}", tokens.get("42"));
    match Namespace::new("bad:namespace") {
        Ok(_) => println!("unexpected: namespace accepted"),
        Err(e) => println!("Namespace::new(\"bad:namespace\") -> error: {e}"),
    }
    match store.put("x".into(), "y".into(), Some(Duration::ZERO)) {
        Ok(()) => println!("unexpected: zero TTL accepted"),
        Err(e) => println!("put with a zero TTL -> error: {e}"),
    }

    println!("keys -> {:?}", store.keys());
    let mut seen = Vec::new();
    while let Some(event) = events.try_recv() {
        seen.push(format!("{}:{:?}", event.key, event.kind));
    }
    println!("events -> {}", seen.join(", "));
    let expired = seen
        .iter()
        .filter(|e| e.ends_with(&format!("{:?}", EventKind::Expired)))
        .count();
    println!("stats -> {:?} ({expired} expiry event(s))", store.stats());
    Ok(())
}
