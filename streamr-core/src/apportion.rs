//! Exact integer division of an amount by weights: largest remainder, ties to the lower index.

/// Splits `amount` in proportion to `weights` so the parts sum to exactly `amount` (or to zero
/// when every weight is zero).
///
/// Each part is `⌊amount·w/W⌋`; the units left over go one each to the largest remainders
/// `amount·w mod W`, ties to the lower index (callers sort by node id). To keep `amount·w`
/// within `u128`, weights whose total exceeds 2^64 are first shifted right by the same number
/// of bits (a relative change below 2^-63, the same for everyone, so the split stays
/// deterministic).
pub(crate) fn apportion(amount: u64, weights: &[u128]) -> Vec<u64> {
    let total: u128 = weights.iter().fold(0u128, |acc, w| acc.saturating_add(*w));
    if total == 0 {
        return vec![0; weights.len()];
    }
    // Shift so that the saturated total (≤ 2^128 − 1) fits in 64 bits; one extra bit makes the
    // shifted sum safe even when the total saturated.
    let bits = 128 - total.leading_zeros();
    let shift = bits.saturating_sub(63);
    let shifted: Vec<u128> = weights.iter().map(|w| w >> shift).collect();
    let total: u128 = shifted.iter().sum();
    if total == 0 {
        return vec![0; weights.len()];
    }
    let amount128 = u128::from(amount);
    let mut parts = Vec::with_capacity(weights.len());
    let mut remainders = Vec::with_capacity(weights.len());
    let mut given: u128 = 0;
    for (i, w) in shifted.iter().enumerate() {
        // amount < 2^64 and w ≤ total < 2^64, so the product fits.
        let product = amount128 * w;
        let part = product / total;
        given += part;
        parts.push(u64::try_from(part).unwrap_or(u64::MAX));
        remainders.push((product % total, i));
    }
    let mut left = amount128.saturating_sub(given);
    remainders.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for (_, i) in remainders {
        if left == 0 {
            break;
        }
        if let Some(part) = parts.get_mut(i) {
            *part = part.saturating_add(1);
            left -= 1;
        }
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn remainder_goes_to_largest_fraction_then_lowest_index() {
        assert_eq!(apportion(10, &[1, 1, 1]), [4, 3, 3]);
        assert_eq!(apportion(10, &[1, 2]), [3, 7]);
        assert_eq!(apportion(5, &[0, 0]), [0, 0]);
    }

    proptest! {
        #[test]
        fn parts_sum_to_the_amount(
            amount in any::<u64>(),
            weights in proptest::collection::vec(any::<u128>(), 1..50),
        ) {
            let parts = apportion(amount, &weights);
            let sum: u128 = parts.iter().map(|p| u128::from(*p)).sum();
            let shift = (128 - weights.iter().fold(0u128, |a, w| a.saturating_add(*w)).leading_zeros()).saturating_sub(63);
            if weights.iter().any(|w| (w >> shift) > 0) {
                prop_assert_eq!(sum, u128::from(amount));
            } else {
                prop_assert_eq!(sum, 0);
            }
        }
    }
}
