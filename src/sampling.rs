//! The one sampling hash. Every "is this event in the sample?" decision (drift profiles,
//! shadow scoring, trace sampling) is a deterministic hash of something the event carries, so a
//! replayed or redelivered event decides the same way on every instance.

use crate::pipeline::Transaction;

/// murmur3's 64-bit finaliser followed by a map to [0, 1): close inputs spread evenly.
#[inline]
fn unit_interval(mut h: u64) -> f64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// 64-bit FNV-1a of bytes.
#[inline]
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Whether the event with this id is in a sample of `fraction` (in [0, 1]).
#[inline]
pub fn id_sampled(id: &str, fraction: f64) -> bool {
    unit_interval(hash_bytes(id.as_bytes())) < fraction
}

/// Whether the message at this partition and offset is in a sample of `fraction`: for
/// decisions about messages that need not carry an id (trace sampling).
#[inline]
pub fn position_sampled(partition: i32, offset: i64, fraction: f64) -> bool {
    unit_interval((offset as u64) ^ ((partition as u64) << 48) ^ 0x9e37_79b9_7f4a_7c15) < fraction
}

/// Whether a decoded transaction is in a sample of `fraction`: a hash of its id decides; without
/// an id column, a hash of the event's bytes (or, for rows of a file, of the row number), never
/// the account key: sampling by key would profile the same few accounts forever. Drift
/// profiling and shadow scoring both ask this.
#[inline]
pub fn in_sample(tx: &Transaction, fraction: f64) -> bool {
    unit_interval(sample_key(tx)) < fraction
}

/// What a transaction's sampling decisions hash: its id, or without one its content.
#[inline]
fn sample_key(tx: &Transaction) -> u64 {
    if tx.id.is_empty() {
        tx.content_hash
    } else {
        hash_bytes(tx.id.as_bytes())
    }
}

/// Whether a transaction's score is retained for its label (a sample of `fraction`): a hash of
/// its id (or content) salted differently from [`in_sample`], so the retained sample is
/// independent of the drift and shadow samples (a shadow-scored event is retained with the
/// same probability as any other, which the recall estimate's weights assume).
#[inline]
pub fn retained(tx: &Transaction, fraction: f64) -> bool {
    const SALT: u64 = 0x5851_f42d_4c95_7f2d;
    unit_interval(sample_key(tx) ^ SALT) < fraction
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_is_deterministic_and_near_the_fraction() {
        let n = 100_000;
        let hits = (0..n).filter(|i| id_sampled(&format!("tx-{i:08}"), 0.05)).count();
        assert!((4_500..5_500).contains(&hits), "{hits} of {n} at 5 %");
        assert_eq!(id_sampled("tx-1", 0.3), id_sampled("tx-1", 0.3));
        assert!(!id_sampled("tx-1", 0.0) && id_sampled("tx-1", 1.0));
        let by_position = (0..n).filter(|&o| position_sampled(3, o, 0.1)).count();
        assert!((9_000..11_000).contains(&by_position), "{by_position} of {n} at 10 %");
    }

    #[test]
    fn without_an_id_every_account_is_sampled_at_the_fraction() {
        // 200 accounts, 100 events each, no id: a key-based sample would take whole accounts.
        let mut per_account = vec![0u32; 200];
        let mut tx = Transaction::default();
        for e in 0..20_000u64 {
            let account = (e % 200) as usize;
            tx.key = format!("acct-{account}");
            tx.content_hash = hash_bytes(format!(r#"{{"account_id":"acct-{account}","amount":{e}}}"#).as_bytes());
            if in_sample(&tx, 0.1) {
                per_account[account] += 1;
            }
        }
        let sampled_accounts = per_account.iter().filter(|&&c| c > 0).count();
        assert!(sampled_accounts > 190, "{sampled_accounts} of 200 accounts sampled");
        let total: u32 = per_account.iter().sum();
        assert!((1_800..2_200).contains(&total), "{total} of 20,000 at 10 %");
    }
}
