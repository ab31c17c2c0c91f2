//! Seeded fault decisions. Every fault that fires "at a probability" draws from a [`Dice`] made
//! from the run's seed and the fault's own name, so the same seed replays the same decisions for
//! each fault whatever the others do, and the seed is printed in every report.

use std::sync::Mutex;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A seed for a run that was given none: the clock's nanoseconds (the low 64 bits). Every
/// command prints it, so the run can be replayed with `--seed`.
pub fn clock_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| {
            u64::try_from(d.as_nanos() & u128::from(u64::MAX)).unwrap_or(0)
        })
}

/// A seeded source of decisions, shared by the connections or requests one fault sees.
#[derive(Debug)]
pub struct Dice {
    rng: Mutex<StdRng>,
}

impl Dice {
    /// Dice for the fault named `name` in a run seeded with `seed`.
    pub fn new(seed: u64, name: &str) -> Self {
        // FNV-1a of the name, mixed into the seed: each fault draws from a stream of its own.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in name.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        Self {
            rng: Mutex::new(StdRng::seed_from_u64(seed ^ h)),
        }
    }

    /// True with probability `p` (clamped to 0..=1).
    pub fn chance(&self, p: f64) -> bool {
        let p = p.clamp(0.0, 1.0);
        if p >= 1.0 {
            return true;
        }
        if p <= 0.0 {
            return false;
        }
        self.with(|r| r.random_bool(p))
    }

    /// Uniform in `0..=max`.
    pub fn upto(&self, max: u64) -> u64 {
        if max == 0 {
            return 0;
        }
        self.with(|r| r.random_range(0..=max))
    }

    fn with<T>(&self, f: impl FnOnce(&mut StdRng) -> T) -> T {
        // A poisoned lock only means another draw panicked; the generator is still usable.
        let mut rng = self
            .rng
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut rng)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_replays_the_same_decisions() {
        let draw = |seed| {
            let d = Dice::new(seed, "latency");
            (0..64).map(|_| d.chance(0.5)).collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
    }

    #[test]
    fn faults_of_one_run_draw_from_streams_of_their_own() {
        let a = Dice::new(7, "a");
        let b = Dice::new(7, "b");
        let xs: Vec<_> = (0..64).map(|_| a.upto(1_000_000)).collect();
        let ys: Vec<_> = (0..64).map(|_| b.upto(1_000_000)).collect();
        assert_ne!(xs, ys);
    }

    #[test]
    fn certain_and_impossible_chances_draw_nothing() {
        let d = Dice::new(1, "x");
        assert!((0..100).all(|_| d.chance(1.0)));
        assert!((0..100).all(|_| !d.chance(0.0)));
    }
}
