//! Histogram summaries with equal-width buckets.
//!
//! We deliberately use `n` equal-width buckets spanning `[min, max]` (the same
//! layout TensorBoard's own v2 `histogram` summary uses, default 30 buckets)
//! instead of TensorFlow's legacy ~1500 exponential buckets: it needs no
//! lookup table, keeps event files small, and renders identically because
//! TensorBoard re-bins histograms for display anyway.
//!
//! Encoding in `HistogramProto`: `bucket_limit[i]` is the right edge of
//! bucket `i`, and the last limit is exactly `max`. Values fall into
//! `[left, right)` except the last bucket, which is closed so `max` counts.

use crate::error::{Error, Result};
use crate::proto::HistogramProto;

/// Bucket count used by [`crate::SummaryWriter::add_histogram`].
pub const DEFAULT_BUCKETS: usize = 30;

/// Builds a histogram of `values` with `buckets` equal-width buckets.
///
/// Non-finite values are rejected rather than skipped: a NaN in a weight
/// histogram is a training bug the caller should hear about, and TensorBoard
/// cannot draw a histogram whose `min`/`max` are NaN.
pub fn build(tag: &str, values: &[f32], buckets: usize) -> Result<HistogramProto> {
    let fail = |reason: String| Error::Histogram {
        tag: tag.to_owned(),
        reason,
    };
    if buckets == 0 {
        return Err(fail("bucket count must be at least 1".into()));
    }
    if values.is_empty() {
        return Err(fail("no values".into()));
    }
    let non_finite = values.iter().filter(|v| !v.is_finite()).count();
    if non_finite > 0 {
        return Err(fail(format!(
            "{non_finite} of {} values are NaN or infinite",
            values.len()
        )));
    }

    let (mut min, mut max, mut sum, mut sum_squares) = (f64::INFINITY, f64::NEG_INFINITY, 0.0, 0.0);
    for &v in values {
        let v = f64::from(v);
        min = min.min(v);
        max = max.max(v);
        sum += v;
        sum_squares += v * v;
    }

    // A constant tensor gets a single bucket; equal-width buckets of width 0
    // would be meaningless.
    let n = if max > min { buckets } else { 1 };
    let width = (max - min) / n as f64;
    let mut counts = vec![0.0f64; n];
    for &v in values {
        let idx = if width > 0.0 {
            // Truncation is the intended floor for non-negative offsets; the
            // clamp puts `max` (and rounding spill-over) in the last bucket.
            (((f64::from(v) - min) / width) as usize).min(n - 1)
        } else {
            0
        };
        counts[idx] += 1.0;
    }
    let mut limits: Vec<f64> = (1..=n).map(|i| min + width * i as f64).collect();
    if let Some(last) = limits.last_mut() {
        *last = max;
    }

    Ok(HistogramProto {
        min,
        max,
        num: values.len() as f64,
        sum,
        sum_squares,
        bucket_limit: limits,
        bucket: counts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_and_buckets() {
        let h = build("h", &[0.0, 1.0, 2.0, 3.0, 4.0], 4).expect("valid");
        assert_eq!(
            (h.min, h.max, h.num, h.sum, h.sum_squares),
            (0.0, 4.0, 5.0, 10.0, 30.0)
        );
        assert_eq!(h.bucket_limit, vec![1.0, 2.0, 3.0, 4.0]);
        assert_eq!(h.bucket, vec![1.0, 1.0, 1.0, 2.0]);
    }

    #[test]
    fn counts_sum_to_num() {
        let values: Vec<f32> = (0..1000)
            .map(|i| ((i * 37) % 101) as f32 * 0.173 - 5.0)
            .collect();
        let h = build("h", &values, DEFAULT_BUCKETS).expect("valid");
        assert_eq!(h.bucket.len(), DEFAULT_BUCKETS);
        assert_eq!(h.bucket.iter().sum::<f64>(), 1000.0);
        assert_eq!(*h.bucket_limit.last().expect("non-empty"), h.max);
        assert!(h.bucket_limit.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn constant_input_gets_one_bucket() {
        let h = build("h", &[2.5; 7], 30).expect("valid");
        assert_eq!(h.bucket_limit, vec![2.5]);
        assert_eq!(h.bucket, vec![7.0]);
    }

    #[test]
    fn rejects_bad_input() {
        assert!(build("h", &[], 30).is_err());
        assert!(build("h", &[1.0], 0).is_err());
        let err = build("w", &[1.0, f32::NAN, f32::INFINITY], 30).unwrap_err();
        assert!(err.to_string().contains("2 of 3"), "{err}");
        assert!(err.to_string().contains("'w'"), "{err}");
    }
}
