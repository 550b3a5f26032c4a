//! Latency histogram with logarithmic buckets, in the spirit of HdrHistogram:
//! fixed memory whatever the number of samples, and about 1.6 % precision at
//! any magnitude, from one microsecond to an hour.
//!
//! Values below 128 µs get a bucket each. Above, every power of two is cut into
//! `SUB_BUCKETS` equal buckets, so a bucket is never wider than 1/64 of its
//! lower bound. Percentiles report a bucket's upper bound (never optimistic),
//! clipped to the largest value seen.

/// Buckets per power of two above the linear range: the precision (1/64).
const SUB_BUCKETS: u64 = 64;

/// Values below this get a bucket each.
const LINEAR: u64 = 2 * SUB_BUCKETS;

/// Buckets needed to cover every `u32` microsecond value (about 71 minutes).
const BUCKETS: usize = (LINEAR + (32 - 7) * SUB_BUCKETS) as usize;

/// Latencies in microseconds.
#[derive(Debug, Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    sum: u64,
    max: u32,
}

impl Default for Histogram {
    fn default() -> Histogram {
        Histogram { counts: vec![0; BUCKETS], total: 0, sum: 0, max: 0 }
    }
}

impl Histogram {
    /// Records one latency of `micros` microseconds.
    pub fn record(&mut self, micros: u32) {
        self.counts[bucket_of(micros)] += 1;
        self.total += 1;
        self.sum += u64::from(micros);
        self.max = self.max.max(micros);
    }

    /// Adds every sample of `other` (histograms of several threads).
    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.total += other.total;
        self.sum += other.sum;
        self.max = self.max.max(other.max);
    }

    /// Samples recorded.
    pub fn len(&self) -> u64 {
        self.total
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// The largest value recorded, exactly.
    pub fn max(&self) -> u32 {
        self.max
    }

    /// The mean in microseconds (0 when empty).
    pub fn mean(&self) -> f64 {
        if self.total == 0 { 0.0 } else { self.sum as f64 / self.total as f64 }
    }

    /// The value at or below which a `quantile` (0.0–1.0) of the samples lie,
    /// rounded up to its bucket's upper bound (0 when empty).
    pub fn quantile(&self, quantile: f64) -> u32 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((quantile.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (bucket, &count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return upper_bound(bucket).min(self.max);
            }
        }
        self.max
    }
}

fn bucket_of(micros: u32) -> usize {
    let v = u64::from(micros);
    if v < LINEAR {
        return v as usize;
    }
    // v >> shift lands in [SUB_BUCKETS, 2 * SUB_BUCKETS).
    let shift = 63 - v.leading_zeros() as u64 - SUB_BUCKETS.trailing_zeros() as u64;
    (LINEAR + (shift - 1) * SUB_BUCKETS + ((v >> shift) - SUB_BUCKETS)) as usize
}

fn upper_bound(bucket: usize) -> u32 {
    let b = bucket as u64;
    if b < LINEAR {
        return b as u32;
    }
    let shift = (b - LINEAR) / SUB_BUCKETS + 1;
    let sub = (b - LINEAR) % SUB_BUCKETS + SUB_BUCKETS;
    (((sub + 1) << shift) - 1).min(u64::from(u32::MAX)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_values_are_exact() {
        let mut h = Histogram::default();
        for v in 1..=100 {
            h.record(v);
        }
        assert_eq!(h.quantile(0.5), 50);
        assert_eq!(h.quantile(0.9), 90);
        assert_eq!(h.quantile(0.99), 99);
        assert_eq!(h.quantile(1.0), 100);
        assert_eq!(h.max(), 100);
        assert_eq!(h.len(), 100);
        assert!((h.mean() - 50.5).abs() < 1e-9);
    }

    #[test]
    fn large_values_are_within_the_precision_and_never_below() {
        for v in [128u32, 129, 1_000, 12_345, 999_999, 54_321_000, u32::MAX] {
            let mut h = Histogram::default();
            h.record(v);
            h.record(1);
            let p = h.quantile(1.0);
            assert_eq!(p, v, "the maximum is exact");
            let bucket_top = upper_bound(bucket_of(v));
            assert!(bucket_top >= v, "{v}: {bucket_top}");
            assert!(f64::from(bucket_top - v) <= f64::from(v) / 64.0 + 1.0, "{v}: {bucket_top}");
        }
    }

    #[test]
    fn buckets_are_monotonic_and_cover_u32() {
        let mut last = 0;
        for v in (0..40_000u32).chain([u32::MAX / 2, u32::MAX]) {
            let b = bucket_of(v);
            assert!(b >= last && b < BUCKETS, "{v}");
            assert!(upper_bound(b) >= v);
            last = b;
        }
    }

    #[test]
    fn percentiles_of_a_skewed_distribution() {
        let mut h = Histogram::default();
        for _ in 0..990 {
            h.record(1_000);
        }
        for _ in 0..10 {
            h.record(50_000);
        }
        assert!((1_000..=1_016).contains(&h.quantile(0.5)));
        assert!((1_000..=1_016).contains(&h.quantile(0.99)));
        assert_eq!(h.quantile(0.999), 50_000);
    }

    #[test]
    fn merging_adds_samples() {
        let (mut a, mut b) = (Histogram::default(), Histogram::default());
        a.record(10);
        b.record(20);
        b.record(30);
        a.merge(&b);
        assert_eq!((a.len(), a.max(), a.quantile(0.5)), (3, 30, 20));
        assert!(Histogram::default().is_empty());
        assert_eq!(Histogram::default().quantile(0.99), 0);
    }
}
