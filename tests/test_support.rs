//! The test helpers themselves: two tests running in parallel must never end up sharing one
//! `redis-server` (a flake seen in `rate_limit_processes`: one test's server died at the end of
//! that test while the other was still using it).

mod support;

use std::collections::BTreeSet;

use support::{redis_server::free_port, RedisServer};

#[test]
fn free_port_never_hands_out_a_port_twice_in_one_process() {
    let ports: Vec<u16> = (0..200).map(|_| free_port()).collect();
    let distinct: BTreeSet<u16> = ports.iter().copied().collect();
    assert_eq!(distinct.len(), ports.len());
}

#[test]
fn a_server_asked_for_a_taken_port_moves_to_a_free_one() {
    let first = RedisServer::start();
    let second = RedisServer::start_on(first.port(), &[]);
    assert_ne!(second.port(), first.port());
    second.raw(&["SET", "k", "second"]);
    assert_eq!(
        first.raw(&["GET", "k"]),
        "(nil)",
        "the two handles share a server"
    );
}
