//! The latency histogram of the rollups: fixed log-scale buckets, so that
//! per-minute counts add up exactly across minutes, replicas and replays,
//! and p50/p95/p99 are read from the sums.
//!
//! Bucket `i` holds durations in `(2^((i-1)/4), 2^(i/4)]` milliseconds:
//! four buckets per doubling, each at most 19% wide, from 1 ms (bucket 0
//! holds everything up to 1 ms) to about 2^(MAX/4) ms = 18 hours.

/// The last bucket index.
pub const MAX_BUCKET: i16 = 64;

/// The bucket of a duration in milliseconds.
///
/// ```
/// use observatory_schemas::histogram::{bucket, upper_bound_ms};
/// assert_eq!(bucket(0.5), 0);
/// assert_eq!(bucket(1.0), 0);
/// assert_eq!(bucket(2.0), 4);
/// assert!(upper_bound_ms(bucket(123.0)) >= 123.0);
/// ```
pub fn bucket(ms: f64) -> i16 {
    if !ms.is_finite() || ms <= 1.0 {
        return 0;
    }
    ((ms.log2() * 4.0).ceil() as i64).clamp(0, MAX_BUCKET as i64) as i16
}

/// The upper bound of a bucket, in milliseconds.
pub fn upper_bound_ms(bucket: i16) -> f64 {
    2f64.powf(bucket as f64 / 4.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_bound_their_values() {
        for ms in [1.5, 3.0, 10.0, 99.9, 1000.0, 45_000.0] {
            let b = bucket(ms);
            assert!(upper_bound_ms(b) >= ms);
            assert!(upper_bound_ms(b - 1) < ms);
            assert!(upper_bound_ms(b) / ms < 1.19);
        }
        assert_eq!(bucket(f64::INFINITY), 0);
        assert_eq!(bucket(1e12), MAX_BUCKET);
    }
}
