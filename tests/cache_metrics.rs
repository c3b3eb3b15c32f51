//! The `metrics` feature: a cache's stats reach the installed `metrics` recorder.
#![cfg(feature = "metrics")]

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, Key, KeyName, Metadata, Recorder, SharedString,
    Unit,
};
use strata::{Cache, Load, MemoryStore};

type Values = Arc<Mutex<BTreeMap<String, f64>>>;

/// A recorder that keeps the last value of every counter and gauge, keyed `name{labels}`.
#[derive(Default)]
struct Capture(Values);

struct Slot(Values, String);

impl CounterFn for Slot {
    fn increment(&self, value: u64) {
        *self.0.lock().unwrap().entry(self.1.clone()).or_default() += value as f64;
    }
    fn absolute(&self, value: u64) {
        self.0.lock().unwrap().insert(self.1.clone(), value as f64);
    }
}

impl GaugeFn for Slot {
    fn increment(&self, value: f64) {
        *self.0.lock().unwrap().entry(self.1.clone()).or_default() += value;
    }
    fn decrement(&self, value: f64) {
        *self.0.lock().unwrap().entry(self.1.clone()).or_default() -= value;
    }
    fn set(&self, value: f64) {
        self.0.lock().unwrap().insert(self.1.clone(), value);
    }
}

impl Capture {
    fn slot(&self, key: &Key) -> Arc<Slot> {
        let labels: Vec<_> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        Arc::new(Slot(
            self.0.clone(),
            format!("{}{{{}}}", key.name(), labels.join(",")),
        ))
    }
}

impl Recorder for Capture {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.slot(key))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.slot(key))
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

#[tokio::test]
async fn stats_are_exported_with_the_namespace_label() {
    let cache = Cache::builder()
        .store(MemoryStore::<String, u32>::new())
        .namespace("sessions")
        .build()
        .await
        .unwrap();
    cache.put("a".into(), 1, None).await.unwrap();
    cache.get(&"a".into()).await.unwrap();
    cache.get(&"b".into()).await.unwrap();
    let _ = cache
        .fetch("c".into(), |_| async {
            Ok::<_, std::io::Error>(Load::Commit(3))
        })
        .await;
    let capture = Capture::default();
    metrics::with_local_recorder(&capture, || cache.export_metrics());
    let values = capture.0.lock().unwrap();
    assert_eq!(values["strata_cache_hits{namespace=sessions}"], 1.0);
    assert_eq!(values["strata_cache_misses{namespace=sessions}"], 2.0);
    assert_eq!(values["strata_cache_writes{namespace=sessions}"], 2.0);
    assert_eq!(values["strata_cache_loads{namespace=sessions}"], 1.0);
    assert!(values.contains_key("strata_cache_load_seconds{namespace=sessions}"));
}
