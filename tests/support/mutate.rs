//! Fault injection on bytes, for the decoder tests: arbitrary inputs and mutations of valid
//! encodings (bits flipped, bytes inserted, deleted, overwritten with boundary values, spans
//! duplicated, the tail truncated). Deterministic: a failing input is reproduced from its seed.
//!
//! Used by `tests/decoders.rs` and, through `#[path]`, by the `strata` binary's unit tests (the
//! CLI's dump parser lives in the binary), so every decoder is driven by the same mutator.
#![allow(dead_code)]

use std::panic::{catch_unwind, AssertUnwindSafe};

/// SplitMix64: a small, fast, deterministic generator (no dependency needed for this).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// A byte, biased towards the values decoders treat specially.
    pub fn byte(&mut self) -> u8 {
        const SPECIAL: [u8; 16] = [
            0x00, 0xff, 0x7f, 0x80, 0xc0, 0xc1, 0xc4, 0xc6, 0xd9, 0xdb, 0xdd, 0xdf, b'"', b'\n',
            b':', b'-',
        ];
        if self.below(4) == 0 {
            SPECIAL[self.below(SPECIAL.len())]
        } else {
            self.next() as u8
        }
    }
}

/// Up to `max_len` random bytes.
pub fn arbitrary(rng: &mut Rng, max_len: usize) -> Vec<u8> {
    let len = rng.below(max_len + 1);
    (0..len).map(|_| rng.byte()).collect()
}

/// `seed` with one to four mutations applied.
pub fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut bytes = seed.to_vec();
    for _ in 0..=rng.below(4) {
        mutate_once(rng, &mut bytes);
    }
    bytes
}

fn mutate_once(rng: &mut Rng, bytes: &mut Vec<u8>) {
    let len = bytes.len();
    let at = rng.below(len + 1);
    match rng.below(6) {
        0 if len > 0 => bytes[at.min(len - 1)] ^= 1 << rng.below(8),
        1 => bytes.insert(at, rng.byte()),
        2 if len > 0 => {
            bytes.remove(at.min(len - 1));
        }
        3 if len > 0 => bytes[at.min(len - 1)] = rng.byte(),
        4 => {
            let end = (at + rng.below(16)).min(len);
            let span = bytes[at..end].to_vec();
            bytes.splice(at..at, span);
        }
        _ => bytes.truncate(at),
    }
}

/// Runs `check` on `n` inputs — a third arbitrary, the rest mutations of `seeds` — and fails
/// naming the input if it panics. Returns how many inputs ran.
pub fn fuzz(n: usize, seed: u64, seeds: &[Vec<u8>], check: impl Fn(&[u8])) -> usize {
    let mut rng = Rng::new(seed);
    for i in 0..n {
        let input = if seeds.is_empty() || i % 3 == 0 {
            arbitrary(&mut rng, 300)
        } else {
            let pick = rng.below(seeds.len());
            mutate(&mut rng, &seeds[pick])
        };
        if catch_unwind(AssertUnwindSafe(|| check(&input))).is_err() {
            panic!("decoder panicked on input #{i} (seed {seed}): {input:?}");
        }
    }
    n
}

/// Inputs per decoder in a normal `cargo test` run (fast, quiet).
pub const QUICK: usize = 3_000;
/// Inputs per decoder in the `#[ignore]`d long runs.
pub const LONG: usize = 1_000_000;
