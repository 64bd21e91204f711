//! Seeded random number generators whose streams are fixed by their seed on every platform and
//! across crate versions.
//!
//! Published results depend on these exact streams (the masks of the random baselines, decoder
//! initialisation, shuffles and noise), and candle cannot seed its CPU generator, so facelens
//! owns its generators:
//!
//! * [`SplitMix64`]: one `u64` of state; the perturbation baselines draw their masks from it.
//! * [`Xoshiro256`]: xoshiro256** (Blackman & Vigna) seeded through SplitMix64; its whole state
//!   is four `u64`s, so a training checkpoint can store it and resume bit-exactly.
//!
//! Changing any constant or expression here changes results; the tests pin the streams.

/// One SplitMix64 step: advances `x` and returns a well-mixed value.
pub fn splitmix64(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Hash of several words: stateless randomness for decisions that must not depend on which
/// worker thread makes them (e.g. whether sample `i` of epoch `e` is turned grey).
pub fn hash_words(words: &[u64]) -> u64 {
    let mut s = 0x6A09_E667_F3BC_C909u64;
    let mut out = 0;
    for w in words {
        s ^= *w;
        out = splitmix64(&mut s);
    }
    out
}

/// A uniform value in `[0, 1)` from the top 53 bits of a hash.
pub fn unit_from_hash(h: u64) -> f64 {
    (h >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// SplitMix64: a tiny, fast generator, used where `f32` precision is enough.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        splitmix64(&mut self.0)
    }

    /// Uniform in `[0, 1)`, from the top 24 bits.
    pub fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Uniform integer in `0..n` (`n > 0`, below 2^32), by Lemire's multiply-shift.
    pub fn below(&mut self, n: usize) -> usize {
        (((self.next_u64() >> 32) * n as u64) >> 32) as usize
    }
}

/// xoshiro256**, seeded through SplitMix64.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Xoshiro256 {
    state: [u64; 4],
}

impl Xoshiro256 {
    pub fn new(seed: u64) -> Self {
        let mut s = seed;
        Self { state: [splitmix64(&mut s), splitmix64(&mut s), splitmix64(&mut s), splitmix64(&mut s)] }
    }

    /// The generator for a named stream of a seed (e.g. weight init vs. embedding noise), so
    /// streams never overlap by accident.
    pub fn stream(seed: u64, stream: u64) -> Self {
        Self::new(hash_words(&[seed, stream]))
    }

    pub fn state(&self) -> [u64; 4] {
        self.state
    }

    pub fn from_state(state: [u64; 4]) -> Self {
        Self { state }
    }

    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.state;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in `[0, 1)`.
    pub fn uniform(&mut self) -> f64 {
        unit_from_hash(self.next_u64())
    }

    /// Uniform integer in `0..n` (`n > 0`), by rejection so it is unbiased.
    pub fn below(&mut self, n: u64) -> u64 {
        let zone = u64::MAX - u64::MAX % n;
        loop {
            let x = self.next_u64();
            if x < zone {
                return x % n;
            }
        }
    }

    /// Standard normal (Box–Muller; one value per call keeps the state simple).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform();
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// A uniformly random permutation of `0..n` (Fisher–Yates).
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut p: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let j = self.below(i as u64 + 1) as usize;
            p.swap(i, j);
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The published SplitMix64 reference outputs for seed 1234567 (Vigna's splitmix64.c).
    #[test]
    fn splitmix64_matches_the_reference_stream() {
        let mut r = SplitMix64::new(1234567);
        let got: Vec<u64> = (0..5).map(|_| r.next_u64()).collect();
        assert_eq!(
            got,
            [
                6457827717110365317,
                3203168211198807973,
                9817491932198370423,
                4593380528125082431,
                16408922859458223821
            ]
        );
    }

    #[test]
    fn splitmix64_is_uniform_enough_and_below_stays_in_range() {
        let mut rng = SplitMix64::new(7);
        let mean = (0..10_000).map(|_| rng.uniform() as f64).sum::<f64>() / 10_000.0;
        assert!((mean - 0.5).abs() < 0.02, "mean {mean}");
        assert!((0..10_000).all(|_| rng.below(83) < 83));
    }

    /// Values of the generators as they stood in facelens-saliency and facelens-recon before
    /// they moved here: published results depend on these streams.
    #[test]
    fn streams_are_pinned() {
        let mut s = SplitMix64::new(42);
        assert_eq!((s.uniform(), s.below(1000)), (0.741_564_87, 159));
        let mut x = Xoshiro256::new(0);
        assert_eq!(
            [x.next_u64(), x.next_u64(), x.next_u64()],
            [11091344671253066420, 13793997310169335082, 1900383378846508768]
        );
        let mut x = Xoshiro256::stream(7, 0xE4B);
        assert_eq!(
            x.state(),
            [6297998189237650614, 10400503411803650891, 10241145712862180105, 12145599465406108175]
        );
        assert_eq!(x.normal(), -0.7993219758693713);
        assert_eq!(x.below(97), 25);
        assert_eq!(Xoshiro256::new(9).permutation(10), [9, 2, 6, 4, 3, 5, 8, 7, 1, 0]);
    }

    #[test]
    fn state_round_trip_continues_the_stream() {
        let mut a = Xoshiro256::new(7);
        a.next_u64();
        let mut b = Xoshiro256::from_state(a.state());
        assert_eq!(a.next_u64(), b.next_u64());
    }

    #[test]
    fn permutation_is_a_permutation() {
        let mut p = Xoshiro256::new(1).permutation(100);
        p.sort_unstable();
        assert_eq!(p, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn normal_has_unit_moments() {
        let mut r = Xoshiro256::new(3);
        let xs: Vec<f64> = (0..20000).map(|_| r.normal()).collect();
        let m = xs.iter().sum::<f64>() / xs.len() as f64;
        let v = xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / xs.len() as f64;
        assert!(m.abs() < 0.03 && (v - 1.0).abs() < 0.05, "mean {m} var {v}");
    }
}
