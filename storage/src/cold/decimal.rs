//! Decimal storage of float fields in cold objects. Sensor readings are decimal numbers at a
//! fixed precision (a speed to 0.1 km/h, a level to 0.01): as scaled integers with delta
//! encoding they take far fewer bytes than as IEEE doubles. [`Scaler`] finds, for one column
//! of one object, the smallest decimal scale `s` in `0..=9` at which every value is an integer
//! `i` with `(i as f64) / 10^s` equal to it bit for bit, without holding the values (so `-0.0`,
//! NaN, infinities and values needing more digits keep the column DOUBLE); [`scaled_at`] and
//! [`rescale`] then give each value's integer at that scale. [`to_scaled`] and [`from_scaled`]
//! are the two directions; the decoder divides by the exact power of ten, which is correctly
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
#[inline]
pub(crate) fn to_scaled(v: f64, s: u8) -> Option<i64> {
    let x = v * POW10[usize::from(s)];
    if x.is_nan() || x.abs() >= LIMIT {
        return None;
    }
    let i = round(x);
    (i.unsigned_abs() < LIMIT_INT && from_scaled(i, s).to_bits() == v.to_bits()).then_some(i)
}

/// `x` (|x| < 2^53) rounded half away from zero, as `f64::round` does, without its library
/// call: the truncation and the fraction `x - trunc(x)` are both exact at this magnitude.
#[inline]
fn round(x: f64) -> i64 {
    let t = x as i64;
    let f = x - t as f64;
    t + i64::from(f >= 0.5) - i64::from(f <= -0.5)
}

/// The `f64` an integer at scale `s` stands for (correctly rounded: one division by an exact
/// power of ten).
pub(crate) fn from_scaled(i: i64, s: u8) -> f64 {
    i as f64 / POW10[usize::from(s)]
}

/// The smallest scale in `floor..=k` at which integers `ints` at scale `k` are still integers
/// (they all end in `k - s` zeros); the values they stand for need no more.
fn needed_scale(ints: &[i64], k: u8, floor: u8) -> u8 {
    let mut s = k;
    let mut p = 10i64;
    while s > floor && ints.iter().all(|i| i % p == 0) {
        s -= 1;
        p = p.saturating_mul(10);
    }
    s
}

/// Largest magnitude of a scaled value as an integer (exclusive), [`LIMIT`].
const LIMIT_INT: u64 = 1 << 53;

/// Finds the scale of a float column: the smallest `s` in `0..=MAX_SCALE` at which every value
/// is an integer `i` (below 2^53 in magnitude) that reads back as the very same `f64` through
/// [`from_scaled`]; it says when no scale fits (the column stays DOUBLE). An empty column gets
/// scale 0. Values come one at a time ([`Scaler::push`]) or as integers at a decimal scale, as
/// the hot decimal codec stores them ([`Scaler::push_scaled`]); it keeps only the scale and the
/// largest magnitude so far, so a column's values need not be held while its scale is found
/// ([`scaled_at`] and [`rescale`] then give each value's integer at the column's scale). Every
/// value that fits some scale `t` fits any larger `s` as `i·10^(s-t)`: the same real number over
/// `10^s` as `i` over `10^t`, so the correctly rounded division gives the same `f64`, as long as
/// it stays below 2^53.
#[derive(Debug, Default)]
pub(crate) struct Scaler {
    /// The scale so far.
    pub scale: u8,
    /// The largest magnitude of a value's integer at `scale`.
    largest: u64,
}

impl Scaler {
    /// Adds `v`; false when no scale fits it and the values before (the column stays DOUBLE).
    #[inline]
    pub fn push(&mut self, v: f64) -> bool {
        match to_scaled(v, self.scale) {
            Some(i) => {
                self.largest = self.largest.max(i.unsigned_abs());
                true
            }
            None => self.raise(v),
        }
    }

    /// Adds integers at decimal scale `k` (each stands for `i / 10^k`); false when they or the
    /// values before cannot share one scale below 2^53.
    pub fn push_scaled(&mut self, ints: &[i64], k: u8) -> bool {
        if ints.is_empty() {
            return true;
        }
        // A run's scale may be larger than its values need (trailing zeros): the smallest one
        // is the column's, as for floats pushed one by one.
        let need = match k > self.scale {
            true => needed_scale(ints, k, self.scale),
            false => k,
        };
        if need > MAX_SCALE {
            let div = 10f64.powi(i32::from(k));
            return ints.iter().all(|&i| self.push(i as f64 / div));
        }
        if need > self.scale && !self.rescale(need) {
            return false;
        }
        let largest = ints.iter().fold(0, |m, i| m.max(i.unsigned_abs()));
        let at_scale = match k > self.scale {
            true => largest / 10u64.pow(u32::from(k - self.scale)),
            false => match largest.checked_mul(10u64.pow(u32::from(self.scale - k))) {
                Some(x) => x,
                None => return false,
            },
        };
        if at_scale >= LIMIT_INT {
            return false;
        }
        self.largest = self.largest.max(at_scale);
        true
    }

    /// Adds a chunk of values that are all integers over `10^k` (and `k` the smallest such
    /// scale) with smallest and largest values `min` and `max`, without the values: the others
    /// lie between those two, so their integers are no larger.
    pub fn push_bounds(&mut self, k: u8, min: f64, max: f64) -> bool {
        if k > MAX_SCALE || (k > self.scale && !self.rescale(k)) {
            return false;
        }
        self.push(min) && self.push(max)
    }

    /// Raises the scale to `t`; false when the largest value would reach 2^53.
    fn rescale(&mut self, t: u8) -> bool {
        let p = 10u64.pow(u32::from(t - self.scale));
        match self.largest.checked_mul(p).filter(|x| *x < LIMIT_INT) {
            Some(x) => {
                self.largest = x;
                self.scale = t;
                true
            }
            None => false,
        }
    }

    /// Raises the scale as far as `v` needs.
    #[cold]
    fn raise(&mut self, v: f64) -> bool {
        let s = self.scale;
        let Some((t, i)) = (s + 1..=MAX_SCALE).find_map(|t| to_scaled(v, t).map(|i| (t, i))) else {
            return false;
        };
        if !self.rescale(t) {
            return false;
        }
        self.largest = self.largest.max(i.unsigned_abs());
        true
    }
}

/// `v` as an integer at scale `s`, for a value a [`Scaler`] that ended at `s` took: at the
/// smallest scale it fits, times the power of ten up to `s`.
pub(crate) fn scaled_at(v: f64, s: u8) -> Option<i64> {
    if let Some(i) = to_scaled(v, s) {
        return Some(i);
    }
    let (t, i) = (0..s).find_map(|t| to_scaled(v, t).map(|i| (t, i)))?;
    i.checked_mul(10i64.pow(u32::from(s - t)))
        .filter(|x| x.unsigned_abs() < LIMIT_INT)
}

/// Whether integers at a column's scale are all within the column's range (below 2^53 in
/// magnitude, where every integer converts to a float exactly).
pub(crate) fn fits(ints: &[i64]) -> bool {
    ints.iter().all(|i| i.unsigned_abs() < LIMIT_INT)
}

/// Integers at scale `k` onto `out` at scale `s`, for a run a [`Scaler`] that ended at `s` took
/// (so when `k > s` they end in `k - s` zeros and divide exactly); false when one does not fit.
pub(crate) fn rescale(ints: &[i64], k: u8, s: u8, out: &mut Vec<i64>) -> bool {
    let start = out.len();
    let ok = match k.cmp(&s) {
        std::cmp::Ordering::Equal => {
            out.extend_from_slice(ints);
            fits(ints)
        }
        std::cmp::Ordering::Less => {
            let p = 10i64.pow(u32::from(s - k));
            out.extend(ints.iter().map(|i| i.saturating_mul(p)));
            out[start..].iter().all(|i| i.unsigned_abs() < LIMIT_INT)
        }
        std::cmp::Ordering::Greater => {
            let p = 10i64.pow(u32::from(k - s));
            out.extend(ints.iter().map(|i| i / p));
            ints.iter().all(|i| i % p == 0)
        }
    };
    if !ok {
        out.truncate(start);
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A whole column through a [`Scaler`], then each value at its scale ([`scaled_at`]).
    fn scaled<I: IntoIterator<Item = f64>>(values: I) -> Option<(u8, Vec<i64>)> {
        let values: Vec<f64> = values.into_iter().collect();
        let mut scaler = Scaler::default();
        if !values.iter().all(|v| scaler.push(*v)) {
            return None;
        }
        let s = scaler.scale;
        let ints = values
            .iter()
            .map(|v| scaled_at(*v, s).expect("a value the scaler took"));
        Some((s, ints.collect()))
    }

    /// The scale [`scaled`] finds, checking that its integers read back exactly.
    fn scale_of<I: IntoIterator<Item = f64>>(values: I) -> Option<u8> {
        let values: Vec<f64> = values.into_iter().collect();
        let (s, ints) = scaled(values.iter().copied())?;
        assert_eq!(ints.len(), values.len());
        for (i, v) in ints.iter().zip(&values) {
            assert_eq!(
                from_scaled(*i, s).to_bits(),
                v.to_bits(),
                "{v} at scale {s}"
            );
        }
        Some(s)
    }

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
    fn rounding_is_half_away_from_zero_like_f64_round() {
        for x in [
            0.0,
            0.49,
            0.5,
            0.51,
            1.5,
            2.5,
            -0.5,
            -1.5,
            -2.49,
            123.999_999,
            -7.0,
            4503599627370495.5,
            -4503599627370495.5,
            9007199254740991.0,
        ] {
            assert_eq!(round(x), x.round() as i64, "{x}");
        }
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
        /// The rounding matches `f64::round` on every value the scaler rounds.
        #[test]
        fn rounding_matches_f64_round(x in -9.0e15f64..9.0e15) {
            prop_assert_eq!(round(x), x.round() as i64);
        }

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
            if let Some((s, ints)) = scaled(values.iter().copied()) {
                prop_assert_eq!(ints.len(), values.len());
                for (i, v) in ints.iter().zip(&values) {
                    prop_assert_eq!(from_scaled(*i, s).to_bits(), v.to_bits());
                }
            }
        }

        /// Integers pushed at their decimal scales (as segments hand them over) read back as
        /// the floats they stand for, at a scale no larger than the largest given; they fit
        /// whenever the same floats pushed one by one fit.
        #[test]
        fn scaled_runs_read_back_as_their_floats(
            runs in proptest::collection::vec(
                (0u8..=10, proptest::collection::vec(-(1i64 << 40)..(1i64 << 40), 0..20)),
                0..6,
            ),
        ) {
            let floats: Vec<f64> = runs
                .iter()
                .flat_map(|(k, ints)| {
                    let div = 10f64.powi(i32::from(*k));
                    ints.iter().map(move |i| *i as f64 / div)
                })
                .collect();
            let mut by_runs = Scaler::default();
            let fit = runs.iter().all(|(k, ints)| by_runs.push_scaled(ints, *k));
            let mut by_floats = Scaler::default();
            let floats_fit = floats.iter().all(|v| by_floats.push(*v));
            prop_assert!(fit || !floats_fit, "runs refused what floats took");
            if fit {
                let s = by_runs.scale;
                let largest = runs.iter().map(|r| r.0).max().unwrap_or(0);
                prop_assert!(s <= largest);
                if floats_fit {
                    prop_assert_eq!(s, by_floats.scale);
                }
                let mut ints = Vec::new();
                for (k, run) in &runs {
                    prop_assert!(rescale(run, *k, s, &mut ints), "a run the scaler took");
                }
                prop_assert_eq!(ints.len(), floats.len());
                // Near 2^53 two integers can stand for one double: each way gives one of them.
                for (i, v) in ints.iter().zip(&floats) {
                    prop_assert_eq!(from_scaled(*i, s).to_bits(), v.to_bits());
                    let at = scaled_at(*v, s);
                    prop_assert!(at.is_some_and(|a| from_scaled(a, s).to_bits() == v.to_bits()));
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
            let (f, ints) = scaled([v]).unwrap();
            prop_assert_eq!(from_scaled(ints[0], f).to_bits(), v.to_bits());
        }
    }
}
