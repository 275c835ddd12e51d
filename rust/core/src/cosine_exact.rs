//! The exact order of cosine distances, so that mathematically equal ones
//! tie (and go to the lowest index) as the Euclidean ones do.
//!
//! The f64 key of a cosine distance, `|a/|a| - b/|b||^2`, is within
//! [`key_error`] of the true value, but equal true values can differ there
//! by an ulp. Keys closer than twice that bound are ordered by an exact
//! comparison instead: with `a.b = S` and `|b|^2 = Q`, the cosine is
//! `S / (|a| sqrt(Q))`, so for one anchor `a` candidates compare by the sign
//! of `S` and then by `S_1^2 Q_2` against `S_2^2 Q_1`. Every f64 is an
//! integer times a power of two, so those are integer sums and products;
//! they are computed in big integers, exactly for every finite input (the
//! row's common power of two cancels). [`repair_keys`] then adjusts the
//! keys so that their f64 order is the exact order and exactly equal
//! distances share one key: downstream code (extremes, top-k, semi-hard
//! buckets) ranks by key then index unchanged.

use std::cmp::Ordering;

use crate::exact::Exact;
use crate::real::Real;

/// A rigorous bound on `|key - true key|` of [`Exact::d2`] under cosine
/// over `d` coordinates: the row norms, the divisions, the differences and
/// the sum each add O(d u) relative to unit vectors (|key| <= 4).
pub(crate) fn key_error(d: usize) -> f64 {
    (16.0 * d as f64 + 128.0) * f64::EPSILON / 2.0 + 1e-300
}

/// Non-negative big integer, little-endian 64-bit limbs, no high zero limbs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Nat(Vec<u64>);

impl Nat {
    /// `m * 2^shift`.
    fn shifted(m: u64, shift: u32) -> Nat {
        if m == 0 {
            return Nat::default();
        }
        let (limbs, bits) = ((shift / 64) as usize, shift % 64);
        let mut v = vec![0u64; limbs];
        let wide = (m as u128) << bits;
        v.push(wide as u64);
        v.push((wide >> 64) as u64);
        Nat(v).trimmed()
    }

    fn trimmed(mut self) -> Nat {
        while self.0.last() == Some(&0) {
            self.0.pop();
        }
        self
    }

    fn add(&self, o: &Nat) -> Nat {
        let (long, short) = if self.0.len() >= o.0.len() {
            (self, o)
        } else {
            (o, self)
        };
        let mut out = Vec::with_capacity(long.0.len() + 1);
        let mut carry = 0u128;
        for (k, &l) in long.0.iter().enumerate() {
            let s = l as u128 + *short.0.get(k).unwrap_or(&0) as u128 + carry;
            out.push(s as u64);
            carry = s >> 64;
        }
        out.push(carry as u64);
        Nat(out).trimmed()
    }

    /// `self - o`, requires `self >= o`.
    fn sub(&self, o: &Nat) -> Nat {
        let mut out = Vec::with_capacity(self.0.len());
        let mut borrow = 0i128;
        for (k, &l) in self.0.iter().enumerate() {
            let mut s = l as i128 - *o.0.get(k).unwrap_or(&0) as i128 - borrow;
            borrow = (s < 0) as i128;
            if s < 0 {
                s += 1i128 << 64;
            }
            out.push(s as u64);
        }
        debug_assert_eq!(borrow, 0);
        Nat(out).trimmed()
    }

    fn mul(&self, o: &Nat) -> Nat {
        if self.0.is_empty() || o.0.is_empty() {
            return Nat::default();
        }
        let mut out = vec![0u64; self.0.len() + o.0.len()];
        for (i, &u) in self.0.iter().enumerate() {
            let mut carry = 0u128;
            for (j, &v) in o.0.iter().enumerate() {
                let t = u as u128 * v as u128 + out[i + j] as u128 + carry;
                out[i + j] = t as u64;
                carry = t >> 64;
            }
            out[i + o.0.len()] = carry as u64;
        }
        Nat(out).trimmed()
    }

    fn cmp(&self, o: &Nat) -> Ordering {
        self.0
            .len()
            .cmp(&o.0.len())
            .then_with(|| self.0.iter().rev().cmp(o.0.iter().rev()))
    }
}

/// `(negative, mantissa, exponent)` with `v = +-mantissa * 2^exponent`.
fn decompose(v: f64) -> (bool, u64, i32) {
    let bits = v.to_bits();
    let neg = bits >> 63 == 1;
    let biased = ((bits >> 52) & 0x7ff) as i32;
    let frac = bits & ((1u64 << 52) - 1);
    if biased == 0 {
        (neg, frac, -1074)
    } else {
        (neg, frac | (1u64 << 52), biased - 1075)
    }
}

/// A row as signed integers `(negative, |value| / 2^E)`, E the row's
/// smallest exponent (which cancels in every comparison).
fn integer_row<T: Real>(row: &[T]) -> Vec<(bool, Nat)> {
    let parts: Vec<(bool, u64, i32)> = row.iter().map(|v| decompose(v.to_f64())).collect();
    let base = parts
        .iter()
        .filter(|p| p.1 != 0)
        .map(|p| p.2)
        .min()
        .unwrap_or(0);
    parts
        .into_iter()
        .map(|(neg, m, e)| (neg, Nat::shifted(m, (e - base) as u32)))
        .collect()
}

/// `(sign of a.b, |a.b|, |b|^2)` in the rows' integer units.
fn dot_and_square(a: &[(bool, Nat)], b: &[(bool, Nat)]) -> (Ordering, Nat, Nat) {
    let (mut plus, mut minus, mut sq) = (Nat::default(), Nat::default(), Nat::default());
    for ((na, ua), (nb, ub)) in a.iter().zip(b) {
        sq = sq.add(&ub.mul(ub));
        let p = ua.mul(ub);
        if na == nb {
            plus = plus.add(&p);
        } else {
            minus = minus.add(&p);
        }
    }
    match plus.cmp(&minus) {
        Ordering::Less => (Ordering::Less, minus.sub(&plus), sq),
        Ordering::Equal => (Ordering::Equal, Nat::default(), sq),
        Ordering::Greater => (Ordering::Greater, plus.sub(&minus), sq),
    }
}

/// The exact order of the cosine distances `dist(a, b1)` and `dist(a, b2)`.
pub(crate) fn cmp_distance<T: Real>(a: &[T], b1: &[T], b2: &[T]) -> Ordering {
    let ia = integer_row(a);
    let (s1, m1, q1) = dot_and_square(&ia, &integer_row(b1));
    let (s2, m2, q2) = dot_and_square(&ia, &integer_row(b2));
    // Larger cosine = smaller distance.
    if s1 != s2 {
        return s2.cmp(&s1);
    }
    // |cos_1| vs |cos_2|: S_1^2 Q_2 vs S_2^2 Q_1.
    let mag = m1.mul(&m1).mul(&q2).cmp(&m2.mul(&m2).mul(&q1));
    match s1 {
        Ordering::Greater => mag.reverse(),
        Ordering::Less => mag,
        Ordering::Equal => Ordering::Equal,
    }
}

/// Reorders `(key, index)` pairs of query row `i` (keys from
/// [`Exact::d2`] under cosine) by the exact distance, ties by index, and
/// adjusts the keys (by a few ulps at most) so that the f64 order of the
/// keys is that order and exactly equal distances share one key.
pub(crate) fn repair_keys<T: Real>(exact: &Exact<T>, i: usize, cands: &mut [(f64, usize)]) {
    let tol = 2.0 * key_error(exact.x.cols);
    let a = exact.x.row(i);
    let exact_cmp = |u: &(f64, usize), v: &(f64, usize)| {
        if u.1 == v.1 {
            Ordering::Equal
        } else if (u.0 - v.0).abs() > tol {
            u.0.total_cmp(&v.0)
        } else {
            cmp_distance(a, exact.y.row(u.1), exact.y.row(v.1))
        }
    };
    cands.sort_by(|u, v| exact_cmp(u, v).then(u.1.cmp(&v.1)));
    // Decided on the original keys, before any is moved.
    let tied: Vec<bool> = cands
        .windows(2)
        .map(|w| exact_cmp(&w[0], &w[1]) == Ordering::Equal)
        .collect();
    for (t, tie) in (1..cands.len()).zip(tied) {
        let prev = cands[t - 1].0;
        if tie {
            cands[t].0 = prev;
        } else if cands[t].0 <= prev {
            cands[t].0 = next_up(prev);
        }
    }
}

/// The least f64 above `v` (finite, non-negative `v`).
fn next_up(v: f64) -> f64 {
    f64::from_bits(v.to_bits() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_integer_arithmetic() {
        let a = Nat::shifted(u64::MAX, 70);
        let b = Nat::shifted(3, 0);
        assert_eq!(a.add(&b).sub(&b), a);
        assert_eq!(a.mul(&b).cmp(&a.add(&a).add(&a)), Ordering::Equal);
        assert_eq!(b.cmp(&a), Ordering::Less);
    }

    #[test]
    fn decompose_round_trips() {
        for v in [1.0, -2.5, 3e-310, 1e300, 0.1f64] {
            let (neg, m, e) = decompose(v);
            let back = m as f64 * 2f64.powi(e);
            assert_eq!(if neg { -back } else { back }, v);
        }
    }

    #[test]
    fn equal_cosines_compare_equal() {
        // cos(a, b1) = cos(a, b2) = 1/sqrt(2) exactly; 2 b1 is the same direction.
        let a = [1.0f64, 0.0];
        assert_eq!(cmp_distance(&a, &[1.0, 1.0], &[1.0, -1.0]), Ordering::Equal);
        assert_eq!(cmp_distance(&a, &[1.0, 1.0], &[2.0, 2.0]), Ordering::Equal);
        assert_eq!(cmp_distance(&a, &[1.0, 0.1], &[1.0, 0.2]), Ordering::Less);
        assert_eq!(
            cmp_distance(&a, &[-1.0, 0.1], &[-1.0, 0.2]),
            Ordering::Greater
        );
        assert_eq!(cmp_distance(&a, &[0.0, 1.0], &[0.0, -3.0]), Ordering::Equal);
    }
}
