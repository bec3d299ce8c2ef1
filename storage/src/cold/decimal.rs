//! Decimal storage of float fields in cold objects. Sensor readings are decimal numbers at a
//! fixed precision (a speed to 0.1 km/h, a level to 0.01): as scaled integers with delta
//! encoding they take far fewer bytes than as IEEE doubles. [`scale_of`] finds, for one column
//! of one object, the smallest decimal scale `s` in `0..=9` at which every value survives
//! `v → round(v·10^s) as i64 → (i as f64) / 10^s` bit for bit (so `-0.0`, NaN, infinities and
//! values needing more digits keep the column DOUBLE). [`to_scaled`] and [`from_scaled`] are
//! the two directions; the decoder divides by the exact power of ten, which is correctly
//! rounded, so a stored value reads back as the very `f64` that was written.

/// `10^s` for `s` in `0..=MAX_SCALE`; every one is exact in `f64`.
const POW10: [f64; 10] = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9];

/// Largest decimal scale tried.
pub(crate) const MAX_SCALE: u8 = 9;

/// Precision of the Parquet DECIMAL written: 18 digits fit INT64 (the physical type).
pub(crate) const PRECISION: u8 = 18;

/// Largest magnitude of a scaled value (exclusive): integers below 2^53 are exact in `f64`.
const LIMIT: f64 = 9_007_199_254_740_992.0;

/// `v` as an integer at scale `s`, when it reads back as exactly `v`.
pub(crate) fn to_scaled(v: f64, s: u8) -> Option<i64> {
    let p = POW10[usize::from(s)];
    let x = (v * p).round();
    if !x.is_finite() || x.abs() >= LIMIT {
        return None;
    }
    let i = x as i64;
    (from_scaled(i, s).to_bits() == v.to_bits()).then_some(i)
}

/// The `f64` an integer at scale `s` stands for (correctly rounded: one division by an exact
/// power of ten).
pub(crate) fn from_scaled(i: i64, s: u8) -> f64 {
    i as f64 / POW10[usize::from(s)]
}

/// The smallest scale at which every value round-trips exactly, or `None` (the column stays
/// DOUBLE). An empty column gets scale 0. One pass raises the scale until each value fits; the
/// values before the last raise are checked again at the final scale (an early value may not
/// fit a scale raised later: it can overflow 2^53), and so on until nothing changes.
pub(crate) fn scale_of<I>(values: I) -> Option<u8>
where
    I: IntoIterator<Item = f64>,
    I::IntoIter: Clone,
{
    let values = values.into_iter();
    let mut s = 0;
    // Values before this index were last checked at a smaller scale.
    let mut unchecked = 0;
    for (i, v) in values.clone().enumerate() {
        while to_scaled(v, s).is_none() {
            if s == MAX_SCALE {
                return None;
            }
            s += 1;
            unchecked = i;
        }
    }
    while !values
        .clone()
        .take(unchecked)
        .all(|v| to_scaled(v, s).is_some())
    {
        if s == MAX_SCALE {
            return None;
        }
        s += 1;
        unchecked = usize::MAX;
    }
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn scales_follow_the_decimals() {
        assert_eq!(scale_of([1.0, -7.0, 0.0, 1e15]), Some(0));
        assert_eq!(scale_of([1.5, -2.0, 3.1]), Some(1));
        assert_eq!(scale_of([0.25, 12.75, -0.05]), Some(2));
        assert_eq!(scale_of([0.001, 1.5, 98.765]), Some(3));
        assert_eq!(scale_of([]), Some(0));
        assert_eq!(scale_of([-123456.789]), Some(3));
    }

    #[test]
    fn values_that_need_double_have_no_scale() {
        assert_eq!(scale_of([1.0, f64::NAN]), None);
        assert_eq!(scale_of([f64::INFINITY]), None);
        assert_eq!(scale_of([f64::NEG_INFINITY]), None);
        // -0.0 would read back as +0.0.
        assert_eq!(scale_of([-0.0]), None);
        assert_eq!(scale_of([1.0 / 3.0]), None);
        assert_eq!(scale_of([0.1 + 0.2]), None);
        assert_eq!(scale_of([1e-10]), None);
        // Too large once scaled: 2^53 itself, and 10^8 at scale 9.
        assert_eq!(scale_of([9_007_199_254_740_992.0]), None);
        assert_eq!(scale_of([100_000_000.5, 0.000_000_001]), None);
        assert_eq!(scale_of([9_007_199_254_740_991.0]), Some(0));
    }

    #[test]
    fn scaled_values_read_back_exactly() {
        for (v, s) in [(12.34, 2), (-0.001, 3), (5e-9, 9), (1.1, 1)] {
            let i = to_scaled(v, s).unwrap();
            assert_eq!(from_scaled(i, s).to_bits(), v.to_bits());
        }
        assert_eq!(to_scaled(12.34, 2), Some(1234));
        assert_eq!(to_scaled(12.34, 1), None);
    }

    proptest! {
        /// Any f64 (every bit pattern): when a scale is found, every value reads back with the
        /// same bits.
        #[test]
        fn any_f64_round_trips_when_a_scale_is_found(
            bits in proptest::collection::vec(any::<u64>(), 1..8),
            pick in 0usize..8,
        ) {
            let mut values: Vec<f64> = bits.into_iter().map(f64::from_bits).collect();
            // Mix in decimal values so the found-scale branch is exercised too.
            let n = values.len();
            values[pick % n] = (pick as f64) * 0.1;
            if let Some(s) = scale_of(values.iter().copied()) {
                for v in &values {
                    let i = to_scaled(*v, s).unwrap();
                    prop_assert_eq!(from_scaled(i, s).to_bits(), v.to_bits());
                }
            }
        }

        /// A decimal with `s` digits after the point (as its nearest f64) gets a scale of at
        /// most `s`, and reads back exactly.
        #[test]
        fn decimals_get_at_most_their_digits(k in -(1i64 << 50)..(1i64 << 50), s in 0u8..=9) {
            let v = k as f64 / POW10[usize::from(s)];
            let found = scale_of([v]);
            prop_assert!(found.is_some_and(|f| f <= s), "{} scale {:?}", v, found);
            let f = found.unwrap();
            prop_assert_eq!(from_scaled(to_scaled(v, f).unwrap(), f).to_bits(), v.to_bits());
        }
    }
}
