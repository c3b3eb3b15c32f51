//! A counting global allocator, so bytes per entry are measured, not guessed from RSS.
//! Counting is off except while a measurement runs, so it doesn't tax the throughput rows.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    sync::atomic::{AtomicBool, AtomicIsize, AtomicUsize, Ordering},
};

pub struct Counting;

static ON: AtomicBool = AtomicBool::new(false);
static BYTES: AtomicIsize = AtomicIsize::new(0);
static COUNT: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if ON.load(Ordering::Relaxed) {
            BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
            COUNT.fetch_add(1, Ordering::Relaxed);
        }
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if ON.load(Ordering::Relaxed) {
            BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        }
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if ON.load(Ordering::Relaxed) {
            BYTES.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        System.realloc(ptr, layout, new_size)
    }
}

/// Bytes still allocated by `build` (what it returns is kept alive until measured), counting
/// only allocations made while it runs. Frees made during the run of memory allocated before are
/// not counted (counting starts at zero inside `build`).
pub fn retained_bytes<T>(build: impl FnOnce() -> T) -> (T, isize) {
    BYTES.store(0, Ordering::SeqCst);
    ON.store(true, Ordering::SeqCst);
    let value = build();
    ON.store(false, Ordering::SeqCst);
    (value, BYTES.load(Ordering::SeqCst))
}

/// How many allocations (`alloc` calls; a `realloc` is not counted) `run` makes, every thread.
#[cfg(feature = "redis")]
pub fn allocations<T>(run: impl FnOnce() -> T) -> (T, usize) {
    COUNT.store(0, Ordering::SeqCst);
    ON.store(true, Ordering::SeqCst);
    let value = run();
    ON.store(false, Ordering::SeqCst);
    (value, COUNT.load(Ordering::SeqCst))
}
