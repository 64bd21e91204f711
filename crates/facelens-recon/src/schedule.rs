//! Learning-rate schedule: linear warm-up, then cosine decay to a floor.
//!
//! A pure function of the step, so a resumed run needs no scheduler state.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CosineSchedule {
    pub base_lr: f64,
    pub min_lr: f64,
    pub warmup_steps: u64,
    pub total_steps: u64,
}

impl Default for CosineSchedule {
    fn default() -> Self {
        Self {
            base_lr: 1e-3,
            min_lr: 1e-5,
            warmup_steps: 0,
            total_steps: 1,
        }
    }
}

impl CosineSchedule {
    /// Learning rate of (0-based) step `step`: `base * (step + 1) / warmup` during warm-up, then
    /// `min + (base - min) * (1 + cos(pi * t)) / 2` with `t` going from 0 to 1 at `total_steps`.
    pub fn lr(&self, step: u64) -> f64 {
        if step < self.warmup_steps {
            return self.base_lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let span = self.total_steps.saturating_sub(self.warmup_steps).max(1);
        let t = ((step - self.warmup_steps) as f64 / span as f64).min(1.0);
        self.min_lr + (self.base_lr - self.min_lr) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine() {
        let s = CosineSchedule {
            base_lr: 1.0,
            min_lr: 0.0,
            warmup_steps: 4,
            total_steps: 14,
        };
        assert_eq!(s.lr(0), 0.25);
        assert_eq!(s.lr(3), 1.0);
        assert!((s.lr(4) - 1.0).abs() < 1e-12);
        assert!((s.lr(9) - 0.5).abs() < 1e-12);
        assert!(s.lr(14).abs() < 1e-12);
        assert!(s.lr(100).abs() < 1e-12);
    }
}
