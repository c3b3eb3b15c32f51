//! Walking a namespace's keys with `SCAN MATCH namespace:* COUNT batch` — never `KEYS`, which
//! blocks the server. On a cluster every master is scanned in turn (its address comes from
//! `CLUSTER NODES`), since each holds only its own slots.

use std::time::Duration;

use redis::{
    cluster_routing::{RoutingInfo, SingleNodeRoutingInfo},
    Value,
};

use super::connection::{command_error, Conn};
use crate::error::{Error, Result};

/// One node to scan: `None` is the single server behind a non-cluster connection.
pub(crate) type Node = Option<(String, u16)>;

/// A cursor over one node's matching keys.
pub(crate) struct Scan<'a> {
    conn: &'a Conn,
    node: Node,
    pattern: Vec<u8>,
    batch: usize,
    timeout: Duration,
    cursor: Option<u64>,
}

impl<'a> Scan<'a> {
    pub fn new(
        conn: &'a Conn,
        node: Node,
        pattern: Vec<u8>,
        batch: usize,
        timeout: Duration,
    ) -> Self {
        Scan {
            conn,
            node,
            pattern,
            batch,
            timeout,
            cursor: Some(0),
        }
    }

    /// The next page of keys, or `None` when the node has been walked through.
    pub async fn next_page(&mut self) -> Result<Option<Vec<Vec<u8>>>> {
        let Some(cursor) = self.cursor else {
            return Ok(None);
        };
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(cursor)
            .arg("MATCH")
            .arg(&self.pattern)
            .arg("COUNT")
            .arg(self.batch);
        let reply = self.send(&cmd).await?;
        let (next, keys): (u64, Vec<Vec<u8>>) = redis::from_redis_value(reply)
            .map_err(|e| Error::backend(self.context(), e.to_string()))?;
        self.cursor = (next != 0).then_some(next);
        Ok(Some(keys))
    }

    async fn send(&self, cmd: &redis::Cmd) -> Result<Value> {
        let node = self.node.clone();
        let call = |conn| async move {
            match (conn, node) {
                (Conn::Cluster(c), Some((host, port))) => {
                    let route =
                        RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress { host, port });
                    c.current().1.route_command(cmd.clone(), route).await
                }
                (mut conn, _) => cmd.query_async::<Value>(&mut conn).await,
            }
        };
        let reply = self.conn.timed(self.timeout, call).await;
        match reply {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(command_error(e, self.timeout, self.context())),
            Err(_) => Err(Error::from(crate::TimeoutError {
                context: self.context(),
                after: self.timeout,
            })),
        }
    }

    fn context(&self) -> String {
        let pattern = String::from_utf8_lossy(&self.pattern);
        match &self.node {
            Some((host, port)) => format!("SCAN MATCH {pattern} on {host}:{port}"),
            None => format!("SCAN MATCH {pattern}"),
        }
    }
}

/// The nodes to scan: the one server, or every master of the cluster.
pub(crate) async fn nodes(conn: &Conn, timeout: Duration) -> Result<Vec<Node>> {
    if let Conn::Single(_) = conn {
        return Ok(vec![None]);
    }
    let cmd = redis::cmd("CLUSTER").arg("NODES").clone();
    let text: String = conn.run(&cmd, timeout, || "CLUSTER NODES".into()).await?;
    let masters = parse_masters(&text);
    if masters.is_empty() {
        return Err(Error::backend(
            "CLUSTER NODES",
            "the cluster reports no healthy master; check `redis-cli cluster info`",
        ));
    }
    Ok(masters.into_iter().map(Some).collect())
}

/// Healthy masters from a `CLUSTER NODES` reply
/// (`id host:port@bus[,hostname] flags master-id ping pong epoch state slots...`).
fn parse_masters(text: &str) -> Vec<(String, u16)> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let addr = fields.nth(1)?;
            let flags = fields.next()?;
            let healthy_master = flags.split(',').any(|f| f == "master")
                && !flags.split(',').any(|f| f == "fail" || f == "noaddr");
            let host_port = addr.split(['@', ',']).next()?;
            let (host, port) = host_port.rsplit_once(':')?;
            healthy_master.then(|| Some((host.to_owned(), port.parse().ok()?)))?
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::parse_masters;

    #[test]
    fn finds_healthy_masters() {
        let text = "a 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460\n\
                    b 127.0.0.1:7001@17001,host master - 0 0 2 connected 5461-10922\n\
                    c 127.0.0.1:7002@17002 master,fail - 0 0 3 connected\n\
                    d 127.0.0.1:7003@17003 slave a 0 0 1 connected\n";
        assert_eq!(
            parse_masters(text),
            [
                ("127.0.0.1".to_owned(), 7000),
                ("127.0.0.1".to_owned(), 7001)
            ]
        );
    }

    /// `CLUSTER NODES` replies as text of arbitrary shape (fields, separators, numbers):
    /// parsing returns masters or nothing, never panics.
    fn parse_never_panics(cases: u32) {
        use proptest::{prelude::*, test_runner::TestRunner};
        let line = "[a-z0-9 :@,.\\-]{0,40}|[^\\n]{0,40}";
        let text = proptest::collection::vec(line, 0..6).prop_map(|lines| lines.join("\n"));
        let mut runner = TestRunner::new(ProptestConfig::with_cases(cases));
        runner
            .run(&text, |text| {
                let _ = parse_masters(&text);
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn parse_masters_never_panics() {
        parse_never_panics(1_000);
    }

    /// `cargo test --all-features --lib parse_masters_never_panics_long -- --ignored`
    #[test]
    #[ignore = "1 M cases; run by hand"]
    fn parse_masters_never_panics_long() {
        parse_never_panics(1_000_000);
    }
}
