//! Sessions: `sessions_of` (a user's devices, through the user index) with 1 M sessions over
//! 100 k users, on MemoryStore and DiskStore. Latency per call: median and p99 over sampled
//! users. A listing is one `keys_with_prefix` on the index plus two batched reads, so its cost
//! shows how each store answers a prefix (an ordered range on disk; a filter in memory).

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
    report::{Report, Row},
    workload::Rng,
};

/// Sessions per user.
const DEVICES: usize = 10;

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

/// Signs in `users * DEVICES` sessions through `create` (the path an app takes).
async fn populate<S, I>(sessions: &StrataSessionStore<S, I>, users: usize)
where
    S: Store<String, Record> + 'static,
    I: Store<String, SessionRoster> + 'static,
{
    for i in 0..users * DEVICES {
        let mut record = record(i % users);
        sessions.create(&mut record).await.expect("create");
    }
}

/// Microseconds per `sessions_of` for `samples` random users: (median, p99).
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

/// `1M`, `100k` or the number itself.
fn count(n: usize) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1_000 && n % 1_000 == 0 => format!("{}k", n / 1_000),
        n => n.to_string(),
    }
}

pub fn run(report: &mut Report) {
    let sessions = report.n(1_000_000, 100_000);
    let users = sessions / DEVICES;
    let samples = report.n(2_000, 500).min(users);
    let rt = runtime();

    let memory = StrataSessionStore::new(MemoryStore::<String, Record>::new())
        .with_user_index(MemoryStore::<String, SessionRoster>::new(), "user_id");
    let stats = rt.block_on(async {
        populate(&memory, users).await;
        latency(&memory, users, samples).await
    });
    add(report, "MemoryStore", sessions, users, stats);
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
    let stats = rt.block_on(async {
        populate(&disk, users).await;
        db.flush().await.expect("flush");
        latency(&disk, users, samples).await
    });
    add(report, "DiskStore", sessions, users, stats);
}
