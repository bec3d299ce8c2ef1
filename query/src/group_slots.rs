//! The group table's index of an in-scan fold (`aggregate.rs`): group key (the id of its string
//! terms, its time bucket) → slot, and the bucket of a time.
//!
//! A fleet-wide bucketed aggregate folds one run per series and bucket: 240,000 lookups for
//! 10,000 trucks over a day of hourly buckets. Hashing each key (and dividing each run's time by
//! the stride) was a fifth of the fold's CPU. Here the buckets of one terms id sit in a plain
//! array indexed by bucket number, counted from the first bucket the terms id met, and a series'
//! runs, which come in time order, find their bucket by stepping from the last one.
//!
//! Invariant: no key gets two slots. A terms id's array covers `DENSE_BUCKETS` bucket numbers
//! from the first it met, fixed when the array is made; keys outside it (an earlier bucket, a
//! span longer than the array), keys without a bucket and slot numbers an array entry cannot
//! hold go to the hash map, and a key not found in an array is looked for there before it is
//! called new.

use datafusion::error::{DataFusionError, Result};
use foldhash::HashMap;

/// Bucket numbers one terms id's array covers (4 bytes each, grown only as far as used).
const DENSE_BUCKETS: i64 = 4096;

/// No slot yet.
const NONE: u32 = u32::MAX;

/// The buckets of one grid and the slots of the groups seen so far.
#[derive(Debug, Default)]
pub(crate) struct GroupSlots {
    /// `(stride, origin)` of the buckets; `None` when the groups have no bucket term.
    grid: Option<(i64, i64)>,
    /// Per terms id: the first bucket number it met, and its slots from there.
    dense: Vec<Option<(i64, Vec<u32>)>>,
    /// Every other key.
    index: HashMap<(u32, Option<i64>), usize>,
    /// The last bucket found: its start and number (see [`GroupSlots::bucket_of`]).
    last: Option<(i64, i64)>,
}

/// Where a key's slot is, or would go.
pub(crate) enum Found {
    Slot(usize),
    /// New key; the bytes the index grows by when it is added with [`GroupSlots::add`].
    New(usize),
}

impl GroupSlots {
    /// `(stride, origin)` of the buckets, if any.
    pub fn grid(&self) -> Option<(i64, i64)> {
        self.grid
    }

    /// An empty index for groups bucketed on `grid` (`(stride, origin)`), if any.
    pub fn new(grid: Option<(i64, i64)>) -> GroupSlots {
        GroupSlots {
            grid,
            ..GroupSlots::default()
        }
    }

    /// The bucket holding `t` (`date_bin` on the grid) and its number, `None` without a grid: the
    /// next run of a series is usually in the same bucket or the next, found without a division.
    pub fn bucket_of(&mut self, t: i64) -> Result<Option<(i64, i64)>> {
        let Some((stride, origin)) = self.grid else {
            return Ok(None);
        };
        if let Some((start, n)) = self.last
            && t >= start
        {
            let offset = i128::from(t) - i128::from(start);
            if offset < i128::from(stride) {
                return Ok(Some((start, n)));
            }
            if offset < 2 * i128::from(stride) {
                let next = (start + stride, n + 1);
                self.last = Some(next);
                return Ok(Some(next));
            }
        }
        let start = date_bin(stride, t, origin)?;
        let n = (i128::from(start) - i128::from(origin)) / i128::from(stride);
        let found = (start, i64::try_from(n).map_err(|_| overflow(t))?);
        self.last = Some(found);
        Ok(Some(found))
    }

    /// The slot of `(terms, bucket)`, `bucket` from [`GroupSlots::bucket_of`].
    pub fn find(&self, terms: u32, bucket: Option<(i64, i64)>) -> Found {
        let grows = match self.dense_at(terms, bucket) {
            Dense::At(i) => match self.dense[terms as usize].as_ref().map(|d| &d.1) {
                Some(slots) if i < slots.len() && slots[i] != NONE => {
                    return Found::Slot(slots[i] as usize);
                }
                Some(slots) => 4 * (i + 1).saturating_sub(slots.len()),
                None => 4 * (i + 1),
            },
            Dense::Make => 4,
            Dense::No => 32,
        };
        // Not in an array: in the map, where `add` also puts a slot an array cannot hold.
        match self.index.get(&(terms, bucket.map(|b| b.0))) {
            Some(&slot) => Found::Slot(slot),
            None => Found::New(grows),
        }
    }

    /// Records `slot` as the slot of the new key `(terms, bucket)` (after [`GroupSlots::find`]).
    pub fn add(&mut self, terms: u32, bucket: Option<(i64, i64)>, slot: usize) {
        let at = self.dense_at(terms, bucket);
        let slot32 = u32::try_from(slot).ok().filter(|&s| s != NONE);
        match (at, bucket, slot32) {
            (Dense::At(i), _, Some(s)) => {
                let slots = &mut self.dense[terms as usize].as_mut().expect("made").1;
                if slots.len() <= i {
                    slots.resize(i + 1, NONE);
                }
                slots[i] = s;
            }
            (Dense::Make, Some((_, n)), Some(s)) => {
                let t = terms as usize;
                if self.dense.len() <= t {
                    self.dense.resize_with(t + 1, || None);
                }
                self.dense[t] = Some((n, vec![s]));
            }
            _ => {
                self.index.insert((terms, bucket.map(|b| b.0)), slot);
            }
        }
    }

    fn dense_at(&self, terms: u32, bucket: Option<(i64, i64)>) -> Dense {
        let Some((_, n)) = bucket else {
            return Dense::No;
        };
        match self.dense.get(terms as usize) {
            Some(Some((first, _))) => match n.checked_sub(*first) {
                Some(i) if (0..DENSE_BUCKETS).contains(&i) => Dense::At(i as usize),
                _ => Dense::No,
            },
            _ => Dense::Make,
        }
    }
}

enum Dense {
    /// In the terms id's array, at this position.
    At(usize),
    /// The terms id has no array yet: this key starts it.
    Make,
    /// In the hash map.
    No,
}

fn overflow(t: i64) -> DataFusionError {
    DataFusionError::Execution(format!("date_bin of {t} overflows i64"))
}

/// `date_bin(stride, source, origin)`: the start of the `stride`-wide bucket holding `source`,
/// buckets aligned on `origin`.
pub(crate) fn date_bin(stride: i64, source: i64, origin: i64) -> Result<i64> {
    let diff = source.checked_sub(origin).ok_or_else(|| overflow(source))?;
    let rem = diff.checked_rem(stride).ok_or_else(|| overflow(source))?;
    let mut delta = diff.checked_sub(rem).ok_or_else(|| overflow(source))?;
    if diff < 0 && stride > 1 && delta != diff {
        delta = delta.checked_sub(stride).ok_or_else(|| overflow(source))?;
    }
    origin.checked_add(delta).ok_or_else(|| overflow(source))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Adds the key if new, as the fold does, and returns its slot.
    fn slot(g: &mut GroupSlots, next: &mut usize, terms: u32, b: Option<(i64, i64)>) -> usize {
        match g.find(terms, b) {
            Found::Slot(s) => s,
            Found::New(_) => {
                g.add(terms, b, *next);
                *next += 1;
                *next - 1
            }
        }
    }

    #[test]
    fn every_key_has_one_slot_wherever_it_is_kept() {
        let (stride, origin) = (10, 3);
        let mut g = GroupSlots::new(Some((stride, origin)));
        let mut next = 0;
        let mut reference: std::collections::HashMap<(u32, Option<i64>), usize> =
            Default::default();
        // Times in and out of order, before the first bucket a terms id met, far past its array,
        // negative, and keys without a bucket.
        let mut times: Vec<i64> = (0..300).map(|i| i * 7 - 500).collect();
        times.extend([1_000_000, 40_963, 40_964, -1_000_000, 5, 5, 13, 2, 3]);
        times.extend((0..300).rev().map(|i| i * 3));
        for terms in [0u32, 1, 2, 0, 1] {
            for &t in &times {
                let b = g.bucket_of(t).unwrap().unwrap();
                assert_eq!(b.0, date_bin(stride, t, origin).unwrap(), "bucket of {t}");
                assert_eq!(b.0, origin + b.1 * stride, "number of {t}");
                for key in [Some(b), None] {
                    let s = slot(&mut g, &mut next, terms, key);
                    let want = *reference.entry((terms, key.map(|k| k.0))).or_insert(s);
                    assert_eq!(s, want, "terms {terms} bucket {key:?}");
                }
            }
        }
        assert_eq!(next, reference.len(), "one slot per distinct key");
    }

    #[test]
    fn date_bin_rounds_down_on_both_sides_of_the_origin() {
        assert_eq!(date_bin(10, 25, 0).unwrap(), 20);
        assert_eq!(date_bin(10, 20, 0).unwrap(), 20);
        assert_eq!(date_bin(10, -5, 0).unwrap(), -10);
        assert_eq!(date_bin(10, 7, 3).unwrap(), 3);
        assert_eq!(date_bin(10, 2, 3).unwrap(), -7);
        assert!(date_bin(10, i64::MIN, 1).is_err());
    }

    #[test]
    fn a_bucket_far_from_the_origin_overflows_with_an_error() {
        assert!(
            GroupSlots::new(Some((1, i64::MAX)))
                .bucket_of(i64::MIN)
                .is_err()
        );
        let mut g = GroupSlots::new(Some((10, 0)));
        assert!(g.bucket_of(i64::MAX - 1).is_ok());
        // The step to the next bucket must not overflow either.
        assert!(g.bucket_of(i64::MAX).is_ok());
        assert_eq!(GroupSlots::new(None).bucket_of(5).unwrap(), None);
    }
}
