//! Smoke test of the shared `redis-server` test helper.
mod support;

use support::RedisServer;

#[test]
fn starts_answers_restarts_and_stops() {
    let mut server = RedisServer::start();
    assert_eq!(server.raw(&["PING"]), "+PONG");
    assert_eq!(
        server.raw(&["SET", "strata:smoke", "1", "PX", "60000"]),
        "+OK"
    );
    assert_eq!(server.raw(&["GET", "strata:smoke"]), "1");
    server.restart();
    // persistence is off, so a restart starts empty
    assert_eq!(server.raw(&["GET", "strata:smoke"]), "(nil)");
    let addr = server.addr();
    drop(server);
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "server still up after drop"
    );
}

#[test]
fn two_servers_get_different_ports() {
    let a = RedisServer::start();
    let b = RedisServer::start();
    assert_ne!(a.port(), b.port());
    assert_eq!(b.raw(&["PING"]), "+PONG");
}
