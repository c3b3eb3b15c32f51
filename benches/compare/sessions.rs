//! Sessions: `sessions_of` (a user's devices, through the user index) at 100 k and then 1 M
//! sessions (10 per user: 10 k, then 100 k users), on MemoryStore, DiskStore and RedisStore.
//! Latency per call: median and p99 over sampled users. A listing reads one roster and the
//! records it names, so the figure should not grow with the total: each store's "1M vs 100k"
//! row is the ratio of its two medians (the peer is the same store at the smaller total).
//!
//! Then what the session server's sign-in rate limit costs: sign-ins (`create` into a DiskStore
//! with the user index) with a `RateLimiter` fixed-window check per sign-in, as the server does,
//! against the same sign-ins without it, on the contest harness.

use std::time::Instant;

use strata::{
    sessions::{SessionRoster, StrataSessionStore},
    DiskDb, MemoryStore, Store, Writes,
};
use tower_sessions_core::{
    session::{Id, Record},
    SessionStore,
};

use crate::{
    contest::{self, Contest, Entrant, Slice},
    report::{Report, Row},
    workload::Rng,
};

/// Sessions per user.
const DEVICES: usize = 10;
/// Sign-ins in flight at once while filling (so a Redis fill is not one round trip at a time).
const FILL_CONCURRENCY: usize = 64;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

fn record(user: usize) -> Record {
    let mut record = Record {
        id: Id::default(),
        data: Default::default(),
        expiry_date: time::OffsetDateTime::now_utc() + time::Duration::hours(2),
    };
    record
        .data
        .insert("user_id".into(), format!("user{user}").into());
    record
}

/// Signs in `DEVICES` sessions for each user in `users` through `create` (the path an app
/// takes), `FILL_CONCURRENCY` at a time.
async fn populate<S, I>(sessions: &StrataSessionStore<S, I>, users: std::ops::Range<usize>)
where
    S: Store<String, Record> + Clone + 'static,
    I: Store<String, SessionRoster> + Clone + 'static,
{
    let span = users.len();
    let all: Vec<usize> = (0..span * DEVICES)
        .map(|i| users.start + i % span)
        .collect();
    for chunk in all.chunks(FILL_CONCURRENCY) {
        let mut tasks = tokio::task::JoinSet::new();
        for &user in chunk {
            let sessions = sessions.clone();
            tasks.spawn(async move {
                let mut record = record(user);
                sessions.create(&mut record).await.expect("create");
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.expect("a sign-in task");
        }
    }
}

/// Microseconds per `sessions_of` for `samples` random users of `0..users`: (median, p99).
async fn latency<S, I>(
    sessions: &StrataSessionStore<S, I>,
    users: usize,
    samples: usize,
) -> (f64, f64)
where
    S: Store<String, Record> + 'static,
    I: Store<String, SessionRoster> + 'static,
{
    let mut rng = Rng::new(7);
    let mut micros = Vec::with_capacity(samples);
    for _ in 0..samples {
        let user = format!("user{}", rng.next_u64() as usize % users);
        let started = Instant::now();
        let listed = sessions.sessions_of(&user).await.expect("sessions_of");
        micros.push(started.elapsed().as_secs_f64() * 1e6);
        assert_eq!(listed.len(), DEVICES, "every device of {user} listed");
    }
    micros.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| micros[((micros.len() - 1) as f64 * q) as usize];
    (at(0.5), at(0.99))
}

fn add(report: &mut Report, store: &str, sessions: usize, users: usize, (p50, p99): (f64, f64)) {
    for (stat, value) in [("median", p50), ("p99", p99)] {
        report.add(Row {
            section: "sessions".into(),
            label: format!(
                "sessions_of {stat}, {} sessions/{} users, {store}",
                count(sessions),
                count(users)
            ),
            strata: value,
            peer: None,
            unit: "µs",
            higher_is_better: false,
        });
    }
}

/// The row that shows the point: the median at the larger total over the median at the
/// smaller one (about 1 when the cost does not grow with the total).
fn add_growth(report: &mut Report, store: &str, totals: [usize; 2], medians: [f64; 2]) {
    report.add(Row {
        section: "sessions".into(),
        label: format!(
            "sessions_of median at {} vs at {} sessions, {store}",
            count(totals[1]),
            count(totals[0])
        ),
        strata: medians[1],
        peer: Some((format!("{store} at {}", count(totals[0])), medians[0])),
        unit: "µs",
        higher_is_better: false,
    });
}

/// `1M`, `100k` or the number itself.
fn count(n: usize) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1_000 && n % 1_000 == 0 => format!("{}k", n / 1_000),
        n => n.to_string(),
    }
}

/// Fills `sessions` to the smaller total, measures, fills on to the larger one, measures.
fn measure<S, I>(
    report: &mut Report,
    rt: &tokio::runtime::Runtime,
    store: &str,
    sessions: &StrataSessionStore<S, I>,
    flush: impl Fn(),
) where
    S: Store<String, Record> + Clone + 'static,
    I: Store<String, SessionRoster> + Clone + 'static,
{
    let totals = [report.n(100_000, 10_000), report.n(1_000_000, 100_000)];
    let samples = report.n(2_000, 500);
    let mut medians = [0.0; 2];
    let mut filled_users = 0;
    for (stage, total) in totals.into_iter().enumerate() {
        let users = total / DEVICES;
        let started = Instant::now();
        rt.block_on(populate(sessions, filled_users..users));
        flush();
        filled_users = users;
        // Progress for a real run; `cargo test`'s smoke run stays quiet.
        if !report.smoke {
            eprintln!(
                "sessions: {store} filled to {} sessions in {:.1} s",
                count(total),
                started.elapsed().as_secs_f64()
            );
        }
        let stats = rt.block_on(latency(sessions, users, samples.min(users)));
        add(report, store, total, users, stats);
        medians[stage] = stats.0;
    }
    add_growth(report, store, totals, medians);
}

/// Sessions in a DiskStore with their user index in another namespace of the same directory.
type DiskSessions =
    StrataSessionStore<strata::DiskStore<String, Record>, strata::DiskStore<String, SessionRoster>>;

/// A fresh DiskStore-backed session store with its user index, in its own directory.
fn fresh_disk_sessions() -> (tempfile::TempDir, DiskDb, DiskSessions) {
    let dir = tempfile::tempdir().expect("scratch dir");
    let db = DiskDb::builder()
        .dir(dir.path().join("db"))
        .writes(Writes::Async)
        .open()
        .expect("open the bench directory");
    let sessions = StrataSessionStore::new(db.store("sessions").expect("namespace"))
        .with_user_index(db.store("index").expect("namespace"), "user_id");
    (dir, db, sessions)
}

/// Sign-ins per second for one slice, each checked first by `limiter` when given (a distinct
/// client address per 1,000 sign-ins, a limit no client reaches: the check always allows).
fn sign_ins(
    rt: &tokio::runtime::Runtime,
    limiter: Option<&strata::RateLimiter<MemoryStore<String, i64>>>,
    slice: std::time::Duration,
) -> f64 {
    let (dir, db, sessions) = fresh_disk_sessions();
    let rate = contest::sequential_async(rt, slice, |i| {
        let sessions = sessions.clone();
        async move {
            if let Some(limiter) = limiter {
                let client = format!("10.0.{}.{}", i / 256_000 % 256, i / 1_000 % 256);
                let window = std::time::Duration::from_secs(60);
                let decision = limiter.check(&client, u64::MAX / 2, window).await;
                assert!(decision.expect("rate limit check").allowed);
            }
            let mut record = record(i as usize % 10_000);
            sessions.create(&mut record).await.expect("create");
        }
    });
    drop((sessions, db, dir));
    rate
}

fn sign_in_limit(report: &mut Report, rt: &tokio::runtime::Runtime) {
    let limited = Entrant::ours("sign-in with rate limit", move || -> Slice<'_> {
        let store = MemoryStore::builder()
            .namespace("sign-in")
            .build()
            .expect("limiter store");
        let limiter = strata::RateLimiter::new(store);
        Box::new(move |slice| sign_ins(rt, Some(&limiter), slice))
    });
    let plain = Entrant::peer("sign-in without", move || -> Slice<'_> {
        Box::new(move |slice| sign_ins(rt, None, slice))
    });
    contest::run(
        report,
        Contest {
            section: "sessions",
            label: "sign-in (create + roster), DiskStore: rate-limit check overhead".into(),
            chart: "throughput_sessions",
            title: "Sign-ins with and without the per-address rate limit",
            group: "sign-in\nDiskStore".into(),
            entrants: vec![limited, plain],
        },
    );
}

pub fn run(report: &mut Report) {
    let rt = runtime();
    sign_in_limit(report, &rt);

    let memory = StrataSessionStore::new(MemoryStore::<String, Record>::new())
        .with_user_index(MemoryStore::<String, SessionRoster>::new(), "user_id");
    measure(report, &rt, "MemoryStore", &memory, || {});
    drop(memory);

    let dir = tempfile::tempdir().expect("scratch dir");
    let db = DiskDb::builder()
        .dir(dir.path().join("db"))
        .writes(Writes::Async)
        .open()
        .expect("open the bench directory");
    let disk = StrataSessionStore::new(db.store::<String, Record>("sessions").expect("namespace"))
        .with_user_index(
            db.store::<String, SessionRoster>("index")
                .expect("namespace"),
            "user_id",
        );
    measure(report, &rt, "DiskStore", &disk, || {
        rt.block_on(db.flush()).expect("flush");
    });
    drop(disk);
    drop(db);

    #[cfg(feature = "redis")]
    {
        let server = crate::redis_server::RedisServer::start();
        let records: strata::RedisStore<String, Record> = rt
            .block_on(
                strata::RedisStore::builder()
                    .url(server.url())
                    .namespace("sessions")
                    .build(),
            )
            .expect("connect to the bench's redis-server");
        let rosters: strata::RedisStore<String, SessionRoster> = rt
            .block_on(
                strata::RedisStore::builder()
                    .url(server.url())
                    .namespace("index")
                    .build(),
            )
            .expect("connect to the bench's redis-server");
        let redis = StrataSessionStore::new(records).with_user_index(rosters, "user_id");
        measure(report, &rt, "RedisStore", &redis, || {});
    }
}
