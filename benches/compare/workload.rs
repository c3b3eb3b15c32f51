//! Workloads: Zipf-distributed keys and a fixed get/put mix, generated before timing starts.

/// xorshift64*: fast, deterministic, good enough for workload generation.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A Zipf(s) sampler over `0..n` by inverse CDF (binary search in a precomputed table).
pub struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    pub fn new(n: usize, s: f64) -> Self {
        let mut cdf = Vec::with_capacity(n);
        let mut sum = 0.0;
        for i in 1..=n {
            sum += 1.0 / (i as f64).powf(s);
            cdf.push(sum);
        }
        for c in &mut cdf {
            *c /= sum;
        }
        Zipf { cdf }
    }

    pub fn sample(&self, rng: &mut Rng) -> u64 {
        let u = rng.next_f64();
        self.cdf.partition_point(|&c| c < u) as u64
    }
}

/// Key sequence for one thread: Zipf ranks scrambled so hot keys are spread over the hash space.
pub fn zipf_keys(n: usize, s: f64, count: usize, seed: u64) -> Vec<u64> {
    let zipf = Zipf::new(n, s);
    let mut rng = Rng::new(seed);
    (0..count)
        .map(|_| scramble(zipf.sample(&mut rng)))
        .collect()
}

/// A bijection on u64 so key ranks don't map to adjacent integers.
pub fn scramble(x: u64) -> u64 {
    x.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17)
}

/// `true` = get, `false` = put, with `read_pct` percent gets.
pub fn op_mix(count: usize, read_pct: u32, seed: u64) -> Vec<bool> {
    let mut rng = Rng::new(seed);
    (0..count)
        .map(|_| (rng.next_u64() % 100) < read_pct as u64)
        .collect()
}

/// Read-through traces for hit ratios: each is the sequence of keys requested.
pub mod traces {
    use super::{scramble, Rng, Zipf};

    /// Zipf(s) requests over `n` keys; with `scan = Some((period, len))`, every `period`
    /// requests a one-pass scan over `len` cold keys (never requested otherwise).
    pub fn zipf(n: usize, s: f64, requests: usize, scan: Option<(usize, usize)>) -> Vec<u64> {
        let zipf = Zipf::new(n, s);
        let mut rng = Rng::new(42);
        let mut out = Vec::with_capacity(requests);
        let mut cold = n as u64;
        while out.len() < requests {
            if let Some((period, len)) = scan {
                if !out.is_empty() && out.len() % period == 0 {
                    out.extend((0..len as u64).map(|i| scramble(cold + i)));
                    cold += len as u64;
                }
            }
            out.push(scramble(zipf.sample(&mut rng)));
        }
        out
    }

    /// A loop: keys `0..len` requested in order, over and over (LRU and FIFO hit nothing once
    /// `len` exceeds the capacity; a policy that keeps a fixed part of the loop hits that part).
    pub fn looping(len: usize, requests: usize) -> Vec<u64> {
        (0..requests).map(|i| scramble((i % len) as u64)).collect()
    }

    /// Zipf(0.99) over `n` keys whose hot set moves to `n` new keys `phases` times.
    pub fn shifting(n: usize, requests: usize, phases: usize) -> Vec<u64> {
        let zipf = Zipf::new(n, 0.99);
        let mut rng = Rng::new(43);
        let per_phase = requests.div_ceil(phases);
        (0..requests)
            .map(|i| scramble(zipf.sample(&mut rng) + (i / per_phase * n) as u64))
            .collect()
    }
}
