//! Captures what `tracing` logs on this thread, so a test can check that a secret never reaches
//! the logs. Use it in a `current_thread` test: the guard covers everything the test awaits.
//!
//! One global subscriber routes each event to the capture of the thread it happens on. A
//! thread-local `set_default` per test was flaky: `tracing` caches each call site's interest
//! globally, and a parallel test hitting the call site without a subscriber could cache it as
//! "never", so the capturing test saw nothing.
//!
//! ```ignore
//! let (logs, _guard) = log_capture::start();
//! sessions.load(&id).await?;
//! assert!(!logs.text().contains(&id.to_string()));
//! ```

use std::{
    cell::RefCell,
    fmt::{self, Write},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, Once,
    },
};

use tracing::{
    field::{Field, Visit},
    span, Event, Metadata, Subscriber,
};

/// Everything logged (events and span fields) while the guard lives, as `name=value` text.
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<String>>);

impl Logs {
    pub fn text(&self) -> String {
        self.0.lock().unwrap().clone()
    }
}

thread_local! {
    /// The capture of this thread, if one is running.
    static CAPTURE: RefCell<Option<Logs>> = const { RefCell::new(None) };
}

/// Stops this thread's capture when dropped.
pub struct Guard(());

impl Drop for Guard {
    fn drop(&mut self) {
        CAPTURE.with(|c| c.borrow_mut().take());
    }
}

/// Starts capturing every level on this thread until the guard drops.
pub fn start() -> (Logs, Guard) {
    static ROUTER: Once = Once::new();
    ROUTER.call_once(|| {
        let router = Capture {
            next_span: AtomicU64::new(1),
        };
        // Another global subscriber in this test binary would make captures miss events.
        tracing::subscriber::set_global_default(router).expect("no other global subscriber");
    });
    let logs = Logs::default();
    CAPTURE.with(|c| *c.borrow_mut() = Some(logs.clone()));
    (logs, Guard(()))
}

/// Appends to this thread's capture, if any.
fn append(write: impl FnOnce(&mut String)) {
    CAPTURE.with(|c| {
        if let Some(logs) = c.borrow().as_ref() {
            write(&mut logs.0.lock().unwrap());
        }
    });
}

struct Capture {
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
        append(|text| {
            let _ = write!(text, "span {} ", span.metadata().name());
            span.record(&mut Fields(text));
            text.push('\n');
        });
        span::Id::from_u64(self.next_span.fetch_add(1, Ordering::Relaxed))
    }

    fn record(&self, _: &span::Id, values: &span::Record<'_>) {
        append(|text| {
            values.record(&mut Fields(text));
            text.push('\n');
        });
    }

    fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}

    fn event(&self, event: &Event<'_>) {
        append(|text| {
            let _ = write!(text, "{} ", event.metadata().level());
            event.record(&mut Fields(text));
            text.push('\n');
        });
    }

    fn enter(&self, _: &span::Id) {}

    fn exit(&self, _: &span::Id) {}
}
