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
/// **Precision of the system clock.** It is the OS monotonic clock, started from the wall clock.
/// A read of an entry with a TTL checks its deadline against the kernel's coarse clock first
/// (a few loads, no counter read) and against the precise clock only when the deadline is close,
/// so an entry is never served at or after its deadline, as long as the coarse clock lags by
/// less than that margin (at least 50 ms; a kernel tick stalled longer, on a starved VM, could
/// let an entry be served late by the excess). A new deadline is set from the coarse
/// time, which lags by up to a kernel tick (1-10 ms), so an entry may expire up to a tick
/// *before* its TTL is over, never after it. A [`ManualClock`] is exact.
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

/// The system clock: the OS monotonic clock, as milliseconds on the Unix timeline.
///
/// It is read two ways. The **precise** reading is `CLOCK_MONOTONIC` (what `Instant` reads: a
/// time-stamp-counter read in the vDSO). The **coarse** reading is, on Linux,
/// `CLOCK_MONOTONIC_COARSE`: the same clock as of the kernel's last tick, a few loads from the vDSO
/// page with no counter read. So `coarse <= precise` at every instant, and `precise - coarse` is
/// the time since the last tick (1-10 ms, a few ticks on a loaded VM: up to 15 ms seen on the
/// 2-vCPU benchmark machine, whose tick is 4 ms).
///
/// Why two: in a VM a counter read between two table loads cost ~20 ns, as much as the rest of a
/// `get` (12 ns), because it keeps the CPU from overlapping one get's cache misses with the next.
/// The coarse read overlaps them like any other load. An expiry check ([`Clock::is_due`]) first
/// compares the deadline with the coarse time plus a margin: a deadline further out than that has
/// surely not passed. Only a deadline within the margin pays for the precise read, so the answer
/// is exact. New deadlines are set from the coarse time ([`Clock::entry_deadline`]), so an entry
/// may expire up to one tick before its TTL is over, never after.
struct SystemBase {
    /// What puts a monotonic reading (in ms) on the Unix timeline, added with wrapping: the
    /// wall-clock time at start minus the *coarse* monotonic reading at start. Every later
    /// reading, coarse or precise, is at least that one, so the sum never wraps and a reading
    /// costs one addition (no saturating steps on the hot path).
    offset_ms: u64,
    /// How far ahead of the coarse time a deadline must lie to be judged "not yet" without the
    /// precise read: at least 16 ticks (or 50 ms), grown to 4x the largest lag ever observed.
    margin_ms: AtomicU64,
}

/// The OS clock readings, in whole milliseconds of the monotonic clock (rounded down, so a
/// later reading is never smaller).
#[cfg(any(target_os = "linux", target_os = "android"))]
mod source {
    use rustix::time::{clock_getres, clock_gettime, ClockId, Timespec};

    fn nanos(t: Timespec) -> u64 {
        let secs = u64::try_from(t.tv_sec).unwrap_or(0);
        let sub = u64::try_from(t.tv_nsec).unwrap_or(0);
        secs.saturating_mul(1_000_000_000).saturating_add(sub)
    }

    /// `t` in whole milliseconds. A monotonic reading is never negative (the kernel counts it
    /// from boot), so the casts keep its value; on the hot path, this is a multiply and a
    /// multiply-shift, where the checked conversion through nanoseconds cost ~20 instructions.
    #[inline]
    fn millis(t: Timespec) -> u64 {
        let secs = t.tv_sec as u64;
        secs.wrapping_mul(1000)
            .wrapping_add(t.tv_nsec as u64 / 1_000_000)
    }

    #[inline]
    pub(super) fn precise_ms() -> u64 {
        millis(clock_gettime(ClockId::Monotonic))
    }

    #[inline]
    pub(super) fn coarse_ms() -> u64 {
        millis(clock_gettime(ClockId::MonotonicCoarse))
    }

    /// How often the coarse clock moves (the kernel tick).
    pub(super) fn tick_ns() -> u64 {
        nanos(clock_getres(ClockId::MonotonicCoarse))
    }
}

/// Elsewhere there is no coarse clock: both readings are `Instant`'s.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
mod source {
    use std::{sync::OnceLock, time::Instant};

    pub(super) fn precise_ms() -> u64 {
        static START: OnceLock<Instant> = OnceLock::new();
        let elapsed = START.get_or_init(Instant::now).elapsed().as_millis();
        u64::try_from(elapsed).unwrap_or(u64::MAX)
    }

    pub(super) fn coarse_ms() -> u64 {
        precise_ms()
    }

    pub(super) fn tick_ns() -> u64 {
        0
    }
}

/// The margin never goes below this, whatever the tick.
const MIN_MARGIN_MS: u64 = 50;

impl SystemBase {
    fn new() -> Self {
        let tick_ms = source::tick_ns().div_ceil(1_000_000);
        SystemBase {
            offset_ms: wall_clock_ms().wrapping_sub(source::coarse_ms()),
            margin_ms: AtomicU64::new(tick_ms.saturating_mul(16).max(MIN_MARGIN_MS)),
        }
    }

    /// A monotonic reading (ms) as Unix milliseconds: one map for both readings, increasing,
    /// so `coarse <= precise` holds on the Unix timeline too.
    #[inline]
    fn unix_ms_of(&self, ms: u64) -> UnixMillis {
        ms.wrapping_add(self.offset_ms)
    }

    #[inline]
    fn precise_ms(&self) -> UnixMillis {
        self.unix_ms_of(source::precise_ms())
    }

    #[inline]
    fn coarse_ms(&self) -> UnixMillis {
        self.unix_ms_of(source::coarse_ms())
    }

    #[inline]
    fn is_due(&self, deadline: UnixMillis) -> bool {
        self.is_due_at(deadline, self.coarse_ms())
    }

    /// [`is_due`](Self::is_due) with a coarse reading the caller just took.
    #[inline]
    fn is_due_at(&self, deadline: UnixMillis, coarse: UnixMillis) -> bool {
        let margin = self.margin_ms.load(Ordering::Relaxed);
        is_due_by(deadline, coarse, margin, || self.precise_near(margin))
    }

    /// The precise time, for a deadline within the margin; also widens the margin if the coarse
    /// clock lags by more than a quarter of it. Out of line: the common check stays small.
    #[inline(never)]
    fn precise_near(&self, margin: u64) -> (UnixMillis, UnixMillis) {
        let coarse = self.coarse_ms();
        let precise = self.precise_ms();
        let wanted = widened_margin(margin, precise.saturating_sub(coarse));
        if wanted > margin {
            self.margin_ms.fetch_max(wanted, Ordering::Relaxed);
        }
        (coarse, precise)
    }
}

/// Whether `deadline` has passed, given a coarse reading and a way to take a precise one.
///
/// `coarse` is never ahead of the true time; while it lags by no more than `margin`, a deadline
/// beyond `coarse + margin` is still ahead, and the answer is exact. Otherwise `precise` (which
/// returns a fresh coarse reading too, for its own lag check) decides.
#[inline]
fn is_due_by(
    deadline: UnixMillis,
    coarse: UnixMillis,
    margin: u64,
    precise: impl FnOnce() -> (UnixMillis, UnixMillis),
) -> bool {
    if deadline > coarse.saturating_add(margin) {
        return false;
    }
    deadline <= precise().1
}

/// The margin after seeing the coarse clock `lag` ms behind: at least 4x the lag.
fn widened_margin(margin: u64, lag: u64) -> u64 {
    margin.max(lag.saturating_mul(4))
}

// `inline`: every expiry check of a `get` asks for it; out of line it was a call for one load
// and a compare (5 instructions and the call, `benches/compare/getcost.rs`).
#[inline]
fn system_base() -> &'static SystemBase {
    static BASE: OnceLock<SystemBase> = OnceLock::new();
    BASE.get_or_init(SystemBase::new)
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
    /// How far the coarse reading trails `now_ms` (see [`ManualClock::set_coarse_lag`]).
    coarse_lag_ms: AtomicU64,
    /// How many times a [`Clock`] made from this one was read (see [`ManualClock::reads`]).
    reads: AtomicU64,
    wakers: Mutex<Vec<Waker>>,
}

impl ManualState {
    /// The time, counted so tests can prove a hot path never reads the clock (manual clocks
    /// only: the system clock's reads stay uncounted).
    #[inline]
    fn read(&self) -> UnixMillis {
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.now_ms.load(Ordering::Acquire)
    }
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
            None => system_base().precise_ms(),
            Some(m) => m.read(),
        }
    }

    /// Now, as of the system clock's last tick: never ahead of [`now_ms`](Self::now_ms), behind it
    /// by up to a tick (1-10 ms; more on a starved VM). Costs a few loads instead of a counter
    /// read. A manual clock returns its exact time.
    #[inline]
    pub(crate) fn coarse_ms(&self) -> UnixMillis {
        match &self.manual {
            None => system_base().coarse_ms(),
            Some(m) => m
                .read()
                .saturating_sub(m.coarse_lag_ms.load(Ordering::Relaxed)),
        }
    }

    /// Whether `deadline` (Unix ms, not 0) has passed: exactly `deadline <= now_ms()`, but on the
    /// system clock only a deadline close to now pays for the precise read (see [`SystemBase`]).
    #[inline]
    pub(crate) fn is_due(&self, deadline: UnixMillis) -> bool {
        match &self.manual {
            None => system_base().is_due(deadline),
            Some(m) => deadline <= m.read(),
        }
    }

    /// [`is_due`](Self::is_due) judged from `coarse`, a reading of
    /// [`coarse_ms`](Self::coarse_ms) the caller took just before (under the same lock), so a
    /// write that read the time for its new deadline does not read it again to judge the entry
    /// it replaces. Exact as `is_due` is: the answer holds as of that reading, which is no more
    /// stale than `is_due`'s own. A manual clock ignores `coarse` and answers at its time.
    #[inline]
    pub(crate) fn is_due_at(&self, deadline: UnixMillis, coarse: UnixMillis) -> bool {
        match &self.manual {
            None => system_base().is_due_at(deadline, coarse),
            Some(m) => deadline <= m.read(),
        }
    }

    /// The deadline for an entry written now with `ttl`, or `None` for no expiry.
    ///
    /// Fails with [`Error::InvalidTtl`] for a zero TTL. Sub-millisecond TTLs round up to 1 ms.
    pub fn deadline(&self, ttl: Option<Duration>) -> Result<Option<UnixMillis>> {
        Ok(Some(self.entry_deadline(ttl)?).filter(|&d| d != 0))
    }

    /// The deadline as stores keep it inline: Unix milliseconds, 0 for none.
    ///
    /// Taken from the coarse time, which may lag by a tick: an entry can expire up to a tick
    /// before its TTL is over, never after it.
    #[inline]
    pub(crate) fn entry_deadline(&self, ttl: Option<Duration>) -> Result<u64> {
        match ttl {
            None => Ok(0),
            ttl => deadline_at(self.coarse_ms(), ttl),
        }
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
            coarse_lag_ms: AtomicU64::new(0),
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

    /// Makes the coarse reading of this clock trail the exact time by `lag`, as the system clock's
    /// coarse reading trails its precise one by up to a kernel tick. Expiry checks stay exact, so a
    /// test can prove that a store never serves an entry past its deadline by reading the coarse
    /// time alone; new deadlines are then set `lag` early, as on the system clock.
    ///
    /// ```
    /// use std::time::Duration;
    /// use strata::{ManualClock, MemoryStore};
    ///
    /// let time = ManualClock::new();
    /// time.set_coarse_lag(Duration::from_millis(50));
    /// let store = MemoryStore::builder().clock(time.clock()).build()?;
    /// store.put(1u64, 1u64, Some(Duration::from_millis(100)))?;
    /// time.advance(Duration::from_millis(100));
    /// assert_eq!(store.get(&1), None, "expired, though the coarse time is 50 ms behind");
    /// # Ok::<(), strata::Error>(())
    /// ```
    pub fn set_coarse_lag(&self, lag: Duration) {
        self.state
            .coarse_lag_ms
            .store(ttl_ms(lag), Ordering::Relaxed);
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
    fn a_deadline_past_the_margin_is_ahead_without_a_precise_read() {
        let precise = || -> (u64, u64) { panic!("read the precise clock") };
        assert!(!is_due_by(1_065, 1_000, 64, precise));
        assert!(!is_due_by(u64::MAX, 1_000, 64, precise));
    }

    #[test]
    fn a_deadline_within_the_margin_is_decided_by_the_precise_time() {
        // The coarse clock says 1_000 but it is really 1_010: a deadline at 1_005 has passed.
        assert!(is_due_by(1_005, 1_000, 64, || (1_000, 1_010)));
        assert!(is_due_by(1_010, 1_000, 64, || (1_000, 1_010)));
        assert!(!is_due_by(1_011, 1_000, 64, || (1_000, 1_010)));
        // Exactly at the margin is still checked.
        assert!(!is_due_by(1_064, 1_000, 64, || (1_000, 1_010)));
        assert!(is_due_by(1_064, 1_000, 64, || (1_000, 1_064)));
    }

    proptest::proptest! {
        /// While the coarse clock lags by no more than the margin, the fast check gives exactly
        /// `deadline <= precise`, whatever the deadline.
        #[test]
        fn the_fast_check_is_exact_while_the_lag_is_within_the_margin(
            coarse in 0u64..1 << 50,
            lag in 0u64..1_000,
            margin in 0u64..1_000,
            offset in 0u64..4_000,
        ) {
            let lag = lag.min(margin);
            let precise = coarse + lag;
            // Deadlines from 2 s before the true time to 2 s after it.
            let deadline = (precise + offset).saturating_sub(2_000);
            proptest::prop_assert_eq!(
                is_due_by(deadline, coarse, margin, || (coarse, precise)),
                deadline <= precise
            );
        }
    }

    #[test]
    fn a_lag_seen_widens_the_margin_to_four_times_it() {
        assert_eq!(widened_margin(64, 10), 64);
        assert_eq!(widened_margin(64, 16), 64);
        assert_eq!(widened_margin(64, 17), 68);
        assert_eq!(widened_margin(64, u64::MAX), u64::MAX);
    }

    #[test]
    fn the_system_clock_coarse_time_never_runs_ahead_and_deadlines_are_exact() {
        let c = Clock::system();
        for _ in 0..10_000 {
            let coarse = c.coarse_ms();
            let precise = c.now_ms();
            assert!(
                coarse <= precise,
                "coarse {coarse} ahead of precise {precise}"
            );
            // A deadline of "now" has passed at once, however far the coarse clock lags.
            assert!(c.is_due(precise));
            assert!(!c.is_due(precise + 60_000));
        }
        let margin = system_base().margin_ms.load(Ordering::Relaxed);
        assert!(margin >= MIN_MARGIN_MS);
    }

    #[test]
    fn a_new_deadline_is_never_later_than_now_plus_the_ttl() {
        let c = Clock::system();
        let ttl = Duration::from_secs(10);
        for _ in 0..1_000 {
            let deadline = c.entry_deadline(Some(ttl)).unwrap();
            let latest = c.now_ms() + 10_000;
            assert!(deadline <= latest, "deadline {deadline} after {latest}");
        }
        assert_eq!(c.entry_deadline(None).unwrap(), 0);
        assert!(c.entry_deadline(Some(Duration::ZERO)).is_err());
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
