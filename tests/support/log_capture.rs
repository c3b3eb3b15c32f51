//! Captures what `tracing` logs on this thread, so a test can check that a secret never reaches
//! the logs. Use it in a `current_thread` test: the guard covers everything the test awaits.
//!
//! ```ignore
//! let (logs, _guard) = log_capture::start();
//! sessions.load(&id).await?;
//! assert!(!logs.text().contains(&id.to_string()));
//! ```

use std::{
    fmt::{self, Write},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
};

use tracing::{
    field::{Field, Visit},
    span,
    subscriber::DefaultGuard,
    Event, Metadata, Subscriber,
};

/// Everything logged (events and span fields) while the guard lives, as `name=value` text.
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<String>>);

impl Logs {
    pub fn text(&self) -> String {
        self.0.lock().unwrap().clone()
    }
}

/// Starts capturing every level on this thread until the guard drops.
pub fn start() -> (Logs, DefaultGuard) {
    let logs = Logs::default();
    let subscriber = Capture {
        logs: logs.clone(),
        next_span: AtomicU64::new(1),
    };
    (logs, tracing::subscriber::set_default(subscriber))
}

struct Capture {
    logs: Logs,
    next_span: AtomicU64,
}

struct Fields<'a>(&'a mut String);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let _ = write!(self.0, "{}={value:?} ", field.name());
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, span: &span::Attributes<'_>) -> span::Id {
        let mut text = self.logs.0.lock().unwrap();
        let _ = write!(text, "span {} ", span.metadata().name());
        span.record(&mut Fields(&mut text));
        text.push('\n');
        span::Id::from_u64(self.next_span.fetch_add(1, Ordering::Relaxed))
    }

    fn record(&self, _: &span::Id, values: &span::Record<'_>) {
        let mut text = self.logs.0.lock().unwrap();
        values.record(&mut Fields(&mut text));
        text.push('\n');
    }

    fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut text = self.logs.0.lock().unwrap();
        let _ = write!(text, "{} ", event.metadata().level());
        event.record(&mut Fields(&mut text));
        text.push('\n');
    }

    fn enter(&self, _: &span::Id) {}

    fn exit(&self, _: &span::Id) {}
}
