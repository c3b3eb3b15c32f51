//! strata's own RESP2 driver (`strata::redis_driver`, a prototype raced by the `compare` bench;
//! issue 16 item 1) against a real `redis-server` on loopback: the handshake from the URL
//! (AUTH with or without a user, SELECT, PING; the password never in an error), and many tasks
//! sharing one connection, each reading its own writes.
#![cfg(feature = "redis")]

mod support;

use std::sync::Arc;

use strata::redis_driver::{ConnectError, Driver, Reply};
use support::RedisServer;

const PASSWORD: &str = "s3cret-Xq9Zw";

#[tokio::test]
async fn the_url_s_password_and_database_are_used_and_never_shown() {
    let server = RedisServer::start_with(&["--requirepass", PASSWORD]);
    let port = server.port();
    for url in [
        format!("redis://:{PASSWORD}@127.0.0.1:{port}/3"),
        format!("redis://default:{PASSWORD}@127.0.0.1:{port}/3"),
    ] {
        let driver = Driver::connect_url(&url).await.expect("handshake");
        let set = driver.call(&[b"SET", b"driver:k", b"v"]).await.unwrap();
        assert_eq!(set, Reply::Ok);
        // The key is in database 3, not 0.
        let client = redis::Client::open(url.as_str()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let got: Option<String> = redis::cmd("GET")
            .arg("driver:k")
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(got.as_deref(), Some("v"));
        let in_zero: Option<String> = redis::pipe()
            .cmd("SELECT")
            .arg(0)
            .ignore()
            .cmd("GET")
            .arg("driver:k")
            .query_async::<(Option<String>,)>(&mut conn)
            .await
            .unwrap()
            .0;
        assert_eq!(in_zero, None);
    }

    for url in [
        format!("redis://:wrong-{PASSWORD}@127.0.0.1:{port}/"),
        format!("redis://nobody:wrong-{PASSWORD}@127.0.0.1:{port}/"),
    ] {
        let error = match Driver::connect_url(&url).await {
            Err(e) => e,
            Ok(_) => panic!("a wrong password connected"),
        };
        assert!(
            matches!(&error, ConnectError::Refused { step: "AUTH", .. }),
            "{error:?}"
        );
        let shown = format!("{error} {error:?}");
        assert!(!shown.contains(PASSWORD), "the password leaked: {shown}");
    }

    // No password at all: the first command is refused, said as the PING's refusal.
    let error = match Driver::connect_url(&format!("redis://127.0.0.1:{port}/")).await {
        Err(e) => e,
        Ok(_) => panic!("connected without a password"),
    };
    assert!(
        matches!(&error, ConnectError::Refused { step: "PING", reply } if reply.contains("NOAUTH")),
        "{error:?}"
    );
}

#[tokio::test]
async fn urls_the_driver_does_not_carry_are_refused_by_name() {
    for (url, what) in [
        ("rediss://127.0.0.1:1/", "TLS"),
        ("redis+unix:///tmp/none.sock", "Unix"),
    ] {
        let error = match Driver::connect_url(url).await {
            Err(e) => e,
            Ok(_) => panic!("{url} connected"),
        };
        assert!(
            matches!(&error, ConnectError::Unsupported(why) if why.contains(what)),
            "{url}: {error:?}"
        );
    }
    let error = match Driver::connect_url("redis://:pw-Xq9Zw@127.0.0.1:notaport/").await {
        Err(e) => e,
        Ok(_) => panic!("a bad URL connected"),
    };
    assert!(matches!(&error, ConnectError::Url(_)), "{error:?}");
    assert!(!error.to_string().contains("pw-Xq9Zw"), "{error}");
}

/// 64 tasks on one connection, on a 2-worker runtime: every task reads back what it wrote last,
/// so no reply reaches another task's call and nothing is lost or reordered per task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tasks_share_one_connection_and_each_reads_its_own_writes() {
    let server = RedisServer::start();
    let driver = Arc::new(Driver::connect_url(&server.url()).await.expect("connect"));
    let tasks: Vec<_> = (0..64u32)
        .map(|t| {
            let driver = driver.clone();
            tokio::spawn(async move {
                let key = format!("driver:{t}");
                for i in 0..200u32 {
                    let value = format!("{t}-{i}");
                    let set = driver.call(&[b"SET", key.as_bytes(), value.as_bytes()]);
                    assert_eq!(set.await.unwrap(), Reply::Ok);
                    let got = driver.call(&[b"GET", key.as_bytes()]).await.unwrap();
                    assert_eq!(got, Reply::Bulk(value.into_bytes()));
                    let n = driver.call(&[b"INCR", b"driver:count"]).await.unwrap();
                    assert!(matches!(n, Reply::Int(n) if n > 0));
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    let total = driver.call(&[b"GET", b"driver:count"]).await.unwrap();
    assert_eq!(total, Reply::Bulk(b"12800".to_vec()));
    let wrong = driver.call(&[b"INCR", b"driver:0"]).await.unwrap();
    assert!(matches!(wrong, Reply::Error(e) if e.starts_with("ERR")));
}

/// A 32 MiB value fills the socket's send buffer, so the write stops part-way (asserted: the
/// driver counts the writes that found the socket full) and the read task writes the rest once
/// the socket drains; its 32 MiB reply outgrows the 64 KiB read buffer.
/// Small calls queued behind it on the same connection still get their own replies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_larger_than_the_socket_s_buffers_goes_out_and_comes_back_whole() {
    let server = RedisServer::start();
    let driver = Arc::new(Driver::connect_url(&server.url()).await.expect("connect"));
    let big: Vec<u8> = (0..32 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let set = driver.call(&[b"SET", b"driver:big", &big]);
    let small: Vec<_> = (0..16u8)
        .map(|i| {
            let driver = driver.clone();
            tokio::spawn(async move {
                let key = [b'k', i];
                let set = driver.call(&[b"SET", &key, &[i]]).await.unwrap();
                assert_eq!(set, Reply::Ok);
                assert_eq!(
                    driver.call(&[b"GET", &key]).await.unwrap(),
                    Reply::Bulk(vec![i])
                );
            })
        })
        .collect();
    assert_eq!(set.await.unwrap(), Reply::Ok);
    assert!(
        driver.write_stalls() > 0,
        "the 32 MiB command went out without the socket ever being full: the test did not reach the read task's write"
    );
    for task in small {
        task.await.expect("small call");
    }
    let got = driver.call(&[b"GET", b"driver:big"]).await.unwrap();
    assert!(
        got == Reply::Bulk(big),
        "the 32 MiB value came back changed"
    );
}
