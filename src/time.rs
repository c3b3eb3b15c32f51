//! One clock for every store, so expiry can be tested by moving time instead of sleeping.
//!
//! Deadlines are stored as whole milliseconds since the Unix epoch (`u64`), the one representation
//! that is compact enough to keep inline in every entry and stable enough to write to disk or send
//! to Redis. The system clock reads the wall clock once and then advances monotonically from it, so
//! a wall-clock step while the process runs does not make every entry expire at once.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, OnceLock,
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use parking_lot::Mutex;

use crate::error::{Error, Result};

/// Milliseconds since the Unix epoch.
pub type UnixMillis = u64;

/// A source of "now" for expiry: the system clock, or a manual clock that tests advance.
///
/// Cheap to clone. Every store takes one in its builder (`.clock(..)`); the default is
/// [`Clock::system`].
///
/// ```
/// use std::time::Duration;
/// use strata::{Clock, ManualClock};
///
/// let manual = ManualClock::new();
/// let clock: Clock = manual.clock();
/// let t0 = clock.now_ms();
/// manual.advance(Duration::from_secs(2));
/// assert_eq!(clock.now_ms() - t0, 2_000);
/// ```
#[derive(Clone, Debug, Default)]
pub struct Clock {
    manual: Option<Arc<ManualState>>,
}

/// The system clock reads the CPU's time-stamp counter through `quanta` where it is invariant
/// (about 3x cheaper than `clock_gettime`, and every read of an entry with a TTL pays for one),
/// and falls back to the OS monotonic clock where it is not.
///
/// A raw reading becomes milliseconds through one precomputed fixed-point scale (a 64x64-bit
/// multiply keeping the high half), taken once from quanta's own conversion; converting through
/// nanoseconds instead costs two such multiplies and a division by 10^6 on every read.
struct SystemBase {
    clock: quanta::Clock,
    start: u64,
    unix_ms: UnixMillis,
    scale: MillisScale,
}

fn system_base() -> &'static SystemBase {
    static BASE: OnceLock<SystemBase> = OnceLock::new();
    BASE.get_or_init(|| {
        let clock = quanta::Clock::new();
        SystemBase {
            start: clock.raw(),
            scale: MillisScale::of(&clock),
            clock,
            unix_ms: wall_clock_ms(),
        }
    })
}

/// Raw clock ticks to milliseconds: `ms = ticks * factor / 2^64`.
#[derive(Clone, Copy, Debug)]
struct MillisScale {
    factor: u64,
}

impl MillisScale {
    /// 2^48 ticks (a day at 3 GHz) is the span over which quanta's conversion is sampled: its
    /// nanosecond count then has ~14 significant digits, so the scale drifts from quanta's by
    /// less than 1 ms per 10^10 s.
    const SPAN_SHIFT: u32 = 48;

    /// The scale of `clock`'s raw readings, from quanta's conversion of [`Self::SPAN_SHIFT`]
    /// ticks (through its public API, so it follows whatever calibration quanta did).
    fn of(clock: &quanta::Clock) -> Self {
        let span_nanos = u128::from(clock.delta_as_nanos(0, 1 << Self::SPAN_SHIFT));
        // factor / 2^64 = ms per tick = span_nanos / 10^6 / 2^SPAN_SHIFT.
        let factor = (span_nanos << (64 - Self::SPAN_SHIFT)) / 1_000_000;
        MillisScale {
            factor: u64::try_from(factor).unwrap_or(u64::MAX),
        }
    }

    /// Milliseconds in `ticks` raw ticks.
    #[inline]
    fn millis(self, ticks: u64) -> u64 {
        ((u128::from(ticks) * u128::from(self.factor)) >> 64) as u64
    }
}

fn wall_clock_ms() -> UnixMillis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as UnixMillis)
        .unwrap_or(0)
}

type Waker = Box<dyn Fn() -> bool + Send + Sync>;

#[derive(Default)]
struct ManualState {
    now_ms: AtomicU64,
    /// How many times a [`Clock`] made from this one was read (see [`ManualClock::reads`]).
    reads: AtomicU64,
    wakers: Mutex<Vec<Waker>>,
}

impl std::fmt::Debug for ManualState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManualState")
            .field("now_ms", &self.now_ms.load(Ordering::Relaxed))
            .finish()
    }
}

impl Clock {
    /// The system clock (the default).
    pub fn system() -> Self {
        Clock { manual: None }
    }

    /// True when this is a [`ManualClock`].
    pub fn is_manual(&self) -> bool {
        self.manual.is_some()
    }

    /// Now, in milliseconds since the Unix epoch.
    #[inline]
    pub fn now_ms(&self) -> UnixMillis {
        match &self.manual {
            None => {
                let base = system_base();
                // A reading before `start` (a TSC a few ticks behind on another core) is 0.
                let ticks = base.clock.raw().saturating_sub(base.start);
                base.unix_ms + base.scale.millis(ticks)
            }
            Some(m) => {
                // Counted so tests can prove a hot path never reads the clock; manual clocks
                // only, so the system clock's read stays one TSC read.
                m.reads.fetch_add(1, Ordering::Relaxed);
                m.now_ms.load(Ordering::Acquire)
            }
        }
    }

    /// The deadline for an entry written now with `ttl`, or `None` for no expiry.
    ///
    /// Fails with [`Error::InvalidTtl`] for a zero TTL. Sub-millisecond TTLs round up to 1 ms.
    pub fn deadline(&self, ttl: Option<Duration>) -> Result<Option<UnixMillis>> {
        Ok(Some(self.entry_deadline(ttl)?).filter(|&d| d != 0))
    }

    /// The deadline as stores keep it inline: Unix milliseconds, 0 for none.
    #[inline]
    pub(crate) fn entry_deadline(&self, ttl: Option<Duration>) -> Result<u64> {
        deadline_at(self.now_ms(), ttl)
    }

    /// Time left until `deadline`, or `None` if it has passed.
    pub fn remaining(&self, deadline: UnixMillis) -> Option<Duration> {
        let now = self.now_ms();
        (deadline > now).then(|| Duration::from_millis(deadline - now))
    }

    /// Registers `waker`, called after every [`ManualClock::advance`]; a waker that returns
    /// `false` is dropped. Does nothing on the system clock, where background tasks sleep on real
    /// time instead.
    pub fn on_advance(&self, waker: impl Fn() -> bool + Send + Sync + 'static) {
        if let Some(m) = &self.manual {
            m.wakers.lock().push(Box::new(waker));
        }
    }

    /// How long a background task should sleep to reach `deadline` on this clock: the real time
    /// left on the system clock, or `None` (wait to be woken by `advance`) on a manual clock.
    pub fn sleep_hint(&self, deadline: UnixMillis) -> Option<Duration> {
        match &self.manual {
            None => Some(Duration::from_millis(
                deadline.saturating_sub(self.now_ms()),
            )),
            Some(_) => None,
        }
    }
}

/// A clock that only moves when told to, for tests of expiry without sleeping.
///
/// It starts at the current wall-clock time so deadlines written to disk or Redis stay plausible.
#[derive(Clone, Debug)]
pub struct ManualClock {
    state: Arc<ManualState>,
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl ManualClock {
    /// A manual clock starting at the current wall-clock time.
    pub fn new() -> Self {
        Self::starting_at(wall_clock_ms())
    }

    /// A manual clock starting at `unix_ms`.
    pub fn starting_at(unix_ms: UnixMillis) -> Self {
        let state = ManualState {
            now_ms: AtomicU64::new(unix_ms),
            reads: AtomicU64::new(0),
            wakers: Mutex::new(Vec::new()),
        };
        ManualClock {
            state: Arc::new(state),
        }
    }

    /// The [`Clock`] to hand to stores.
    pub fn clock(&self) -> Clock {
        Clock {
            manual: Some(self.state.clone()),
        }
    }

    /// Moves time forward by `by` and wakes every background task registered on this clock.
    pub fn advance(&self, by: Duration) {
        self.state.now_ms.fetch_add(ttl_ms(by), Ordering::AcqRel);
        self.state.wakers.lock().retain(|wake| wake());
    }

    /// Now, in milliseconds since the Unix epoch. Not counted in [`reads`](Self::reads).
    pub fn now_ms(&self) -> UnixMillis {
        self.state.now_ms.load(Ordering::Acquire)
    }

    /// How many times the stores (or anyone) read the time through a [`Clock`] made from this
    /// one, so a test can prove that an operation does not read the clock at all.
    ///
    /// ```
    /// use strata::{ManualClock, MemoryStore};
    ///
    /// let time = ManualClock::new();
    /// let store = MemoryStore::builder().clock(time.clock()).build()?;
    /// store.put(1u64, 1u64, None)?;
    /// let before = time.reads();
    /// assert_eq!(store.get(&1), Some(1));
    /// assert_eq!(time.reads(), before, "an entry without a TTL is read without the clock");
    /// # Ok::<(), strata::Error>(())
    /// ```
    pub fn reads(&self) -> u64 {
        self.state.reads.load(Ordering::Relaxed)
    }
}

/// Checks a TTL: `None` (no expiry) and any positive duration pass, zero is [`Error::InvalidTtl`].
///
/// ```
/// use std::time::Duration;
/// assert!(strata::check_ttl(Some(Duration::ZERO)).is_err());
/// assert!(strata::check_ttl(None).is_ok());
/// ```
pub fn check_ttl(ttl: Option<Duration>) -> Result<Option<Duration>> {
    match ttl {
        Some(ttl) if ttl.is_zero() => Err(Error::InvalidTtl { ttl }),
        other => Ok(other),
    }
}

/// A TTL in whole milliseconds, rounded up so a tiny positive TTL never becomes zero.
#[inline]
pub(crate) fn ttl_ms(ttl: Duration) -> u64 {
    let sub_ms = u64::from(ttl.subsec_nanos().div_ceil(1_000_000));
    ttl.as_secs().saturating_mul(1000).saturating_add(sub_ms)
}

/// The deadline of an entry written at `now` with `ttl` (0 = none), after checking the TTL.
#[inline]
pub(crate) fn deadline_at(now: UnixMillis, ttl: Option<Duration>) -> Result<u64> {
    match ttl {
        None => Ok(0),
        Some(ttl) if ttl.is_zero() => Err(Error::InvalidTtl { ttl }),
        Some(ttl) => Ok(now.saturating_add(ttl_ms(ttl))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let m = ManualClock::starting_at(1_000);
        let c = m.clock();
        assert_eq!(c.now_ms(), 1_000);
        m.advance(Duration::from_millis(250));
        assert_eq!(c.now_ms(), 1_250);
        assert_eq!(
            c.deadline(Some(Duration::from_secs(1))).unwrap(),
            Some(2_250)
        );
        assert_eq!(c.remaining(2_250), Some(Duration::from_secs(1)));
        assert_eq!(c.remaining(1_250), None);
    }

    #[test]
    fn zero_ttl_is_refused_and_tiny_ttl_rounds_up() {
        assert!(matches!(
            check_ttl(Some(Duration::ZERO)),
            Err(Error::InvalidTtl { .. })
        ));
        assert_eq!(ttl_ms(Duration::from_micros(10)), 1);
        assert_eq!(ttl_ms(Duration::from_millis(7)), 7);
        assert_eq!(ttl_ms(Duration::from_nanos(7_000_001)), 8);
        assert_eq!(ttl_ms(Duration::MAX), u64::MAX);
        assert_eq!(deadline_at(5, None).unwrap(), 0);
        assert_eq!(deadline_at(5, Some(Duration::from_secs(1))).unwrap(), 1005);
        assert!(deadline_at(5, Some(Duration::ZERO)).is_err());
    }

    #[test]
    fn the_precomputed_scale_matches_quanta() {
        let clock = quanta::Clock::new();
        let scale = MillisScale::of(&clock);
        // Readings from 0 to 2^56 ticks (9 months at 3 GHz), at every power of two and between.
        let readings = (0..57).flat_map(|bit| [1u64 << bit, (1 << bit) + (1 << bit) / 3]);
        for ticks in readings.chain([0, 999_999, 1_000_001, 123_456_789_012]) {
            let quanta_ms = clock.delta_as_nanos(0, ticks) / 1_000_000;
            let ours = scale.millis(ticks);
            assert!(
                ours.abs_diff(quanta_ms) <= 1,
                "{ticks} ticks: {ours} ms, quanta says {quanta_ms} ms"
            );
        }
    }

    #[test]
    fn system_clock_is_close_to_wall_clock() {
        let c = Clock::system();
        let diff = c.now_ms().abs_diff(wall_clock_ms());
        assert!(diff < 5_000, "system clock off by {diff} ms");
    }

    #[test]
    fn wakers_run_on_advance_and_drop_when_done() {
        let m = ManualClock::new();
        let hits = Arc::new(AtomicU64::new(0));
        let h = hits.clone();
        m.clock()
            .on_advance(move || h.fetch_add(1, Ordering::Relaxed) < 1);
        m.advance(Duration::from_millis(1));
        m.advance(Duration::from_millis(1));
        m.advance(Duration::from_millis(1));
        assert_eq!(hits.load(Ordering::Relaxed), 2);
    }
}
