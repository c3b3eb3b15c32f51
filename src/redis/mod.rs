//! `RedisStore`: entries in Redis or Redis Cluster (Pow's Redix backend, done for production).
//!
//! One multiplexed, auto-pipelined connection is shared by every clone and namespace of a
//! store and reconnects by itself (`connection`); each `Store` operation is the one Redis
//! command that does it atomically (`store`), counters are native Redis integers (`counter`),
//! `compare_and_set` and a GCRA step are one Lua script each (`compare`, `gcra`), cluster-wide fetch leases and
//! their notice channel live in `lease`,
//! listing walks `SCAN` on every master (`scan`), batches are split per cluster slot
//! (`slot`), and a reply's value is decoded from the reply's own buffer (`value`). `driver`,
//! `resp` and `inbox` are strata's own RESP2 connection driver, which carries a single server's
//! plain-TCP connection (`link`: the driver or redis-rs's connection, whichever carries it).

mod builder;
mod compare;
mod connection;
mod counter;
pub mod driver;
mod gcra;
mod inbox;
mod lease;
mod link;
mod pipeline;
mod resp;
mod scan;
mod slot;
mod store;
mod value;

pub use builder::RedisStoreBuilder;
pub(crate) use connection::MasterLocator;
pub use lease::DistributedFetch;
pub use store::RedisStore;
