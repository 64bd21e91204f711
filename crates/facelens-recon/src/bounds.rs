//! Range checks for configuration and checkpoint values, so that a typo or a crafted file is
//! refused with the key and its bound before anything is allocated (a `batch_size` of 10^12 or
//! a decoder `width` of 2^40 would otherwise abort on allocation or be killed for memory).
//! Messages read `<key> = <value>: <what is allowed>`.

use std::fmt::Display;

use crate::error::{ReconError, Result};

/// `lo <= v <= hi` for a count.
pub(crate) fn count<T: PartialOrd + Display + Copy>(key: &str, v: T, lo: T, hi: T) -> Result<()> {
    if v < lo || v > hi {
        return Err(ReconError::Config(format!("{key} = {v}: must be in {lo}..={hi}")));
    }
    Ok(())
}

/// A finite real in `[lo, hi]`, or `[lo, hi)` when `hi_open`; `lo_open` likewise.
pub(crate) fn real(key: &str, v: f64, lo: f64, lo_open: bool, hi: f64, hi_open: bool) -> Result<()> {
    let above = if lo_open { v > lo } else { v >= lo };
    let below = if hi_open { v < hi } else { v <= hi };
    if !(v.is_finite() && above && below) {
        let (l, r) = (if lo_open { '(' } else { '[' }, if hi_open { ')' } else { ']' });
        let hi = if hi.is_infinite() { "inf".to_string() } else { hi.to_string() };
        return Err(ReconError::Config(format!("{key} = {v}: must be a finite number in {l}{lo}, {hi}{r}")));
    }
    Ok(())
}

/// A finite real `>= 0`.
pub(crate) fn non_negative(key: &str, v: f64) -> Result<()> {
    real(key, v, 0.0, false, f64::INFINITY, true)
}
