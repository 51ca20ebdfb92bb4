//! Synthetic card transactions with a ground-truth fraud label and drift scenarios.
//!
//! The demo, the tests and the benchmarks all need realistic traffic whose truth is known.
//! Accounts are drawn once (home country, spending level, device, age); each transaction is
//! then drawn for an account, and its label from a non-linear function of several of its
//! features plus noise, so no single feature gives fraud away. A [`Scenario`] changes the
//! traffic from `onset` onwards; [`Scenario::drifted_features`] says which features it moves,
//! which is what the drift tests check detection against. Same seed, same bytes.

use std::fmt;
use std::io::Write;
use std::str::FromStr;

use rand::{Rng, RngCore, SeedableRng};
use rand_distr::{Distribution, Exp, LogNormal, Normal, Poisson};
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::Serialize;

use crate::time::format_rfc3339_ms;

/// A change injected into the traffic, from the onset onwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scenario {
    /// Stationary traffic.
    #[default]
    None,
    /// Amounts grow gradually, to +150 % by the end of the stream.
    AmountInflation,
    /// A country never seen before (BR, paying in BRL) takes 15 % of traffic.
    NewCountry,
    /// E-commerce doubles its share at the expense of point-of-sale.
    ChannelShift,
    /// Most e-commerce payments come from device ids never seen before.
    DeviceBurst,
    /// Far younger accounts; fraud still follows the same function of the features.
    CovariateShift,
    /// The fraud rule changes (daytime in-store payments far below the account's usual amount,
    /// on old accounts near home); every feature is drawn exactly as in `none` (the same bytes
    /// but for `is_fraud`), so only labels can show it.
    ConceptShift,
}

impl Scenario {
    /// All scenarios, in documentation order.
    pub const ALL: [Scenario; 7] = [
        Scenario::None,
        Scenario::AmountInflation,
        Scenario::NewCountry,
        Scenario::ChannelShift,
        Scenario::DeviceBurst,
        Scenario::CovariateShift,
        Scenario::ConceptShift,
    ];

    /// The scenario's CLI name.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::None => "none",
            Scenario::AmountInflation => "amount_inflation",
            Scenario::NewCountry => "new_country",
            Scenario::ChannelShift => "channel_shift",
            Scenario::DeviceBurst => "device_burst",
            Scenario::CovariateShift => "covariate_shift",
            Scenario::ConceptShift => "concept_shift",
        }
    }

    /// The features this scenario changes strongly: drift detection must turn these, and
    /// only these, red.
    pub fn drifted_features(self) -> &'static [&'static str] {
        match self {
            Scenario::None | Scenario::ConceptShift => &[],
            Scenario::AmountInflation => &["amount"],
            Scenario::NewCountry => &["country", "currency"],
            Scenario::ChannelShift => &["channel", "merchant_category", "device_id"],
            Scenario::DeviceBurst => &["device_id", "is_new_device"],
            Scenario::CovariateShift => &["account_age_days"],
        }
    }

    /// Features the scenario moves as a side effect, weakly (they may turn amber, not red):
    /// foreign transactions are far from home; more e-commerce means a few more new devices;
    /// new devices raise fraud scores.
    pub fn side_effects(self) -> &'static [&'static str] {
        match self {
            Scenario::NewCountry => &["distance_from_home_km"],
            Scenario::ChannelShift => &["is_new_device"],
            Scenario::DeviceBurst => &["model_score"],
            Scenario::AmountInflation => &["model_score"],
            _ => &[],
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Scenario {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scenario::ALL.into_iter().find(|sc| sc.name() == s).ok_or_else(|| {
            let names: Vec<_> = Scenario::ALL.iter().map(|s| s.name()).collect();
            format!("unknown scenario `{s}`; expected one of: {}", names.join(", "))
        })
    }
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct GeneratorConfig {
    /// Seed of the whole stream: same seed and settings, same bytes.
    pub seed: u64,
    /// Injected drift.
    pub scenario: Scenario,
    /// Rows in the stream, used to place the onset and ramps (a fraction of this).
    pub rows: u64,
    /// Fraction of the stream after which the scenario starts.
    pub onset: f64,
    /// Event time of the first transaction, milliseconds since the Unix epoch.
    pub start_ms: i64,
    /// Mean arrival rate in event time (transactions per second); gaps are exponential.
    pub rate_per_sec: f64,
    /// Number of card accounts.
    pub accounts: usize,
    /// Number of merchants (high cardinality on purpose).
    pub merchants: u64,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        GeneratorConfig {
            seed: 42,
            scenario: Scenario::None,
            rows: 10_000,
            onset: 0.5,
            start_ms: 1_767_571_200_000, // 2026-01-05T00:00:00Z
            rate_per_sec: 100.0,
            accounts: 5_000,
            merchants: 25_000,
        }
    }
}

/// One generated card transaction; field order is the JSON and CSV column order.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GeneratedTransaction {
    /// Unique id.
    pub transaction_id: String,
    /// RFC 3339 UTC event time with milliseconds.
    pub event_time: String,
    /// Card account; alerts are keyed by it.
    pub account_id: String,
    /// Amount in the transaction currency.
    pub amount: f64,
    /// ISO 4217 code.
    pub currency: &'static str,
    /// Merchant id, ~25,000 distinct.
    pub merchant_id: String,
    /// Merchant category.
    pub merchant_category: &'static str,
    /// ISO 3166 country of the merchant.
    pub country: &'static str,
    /// pos, ecom, atm or moto.
    pub channel: &'static str,
    /// Device fingerprint for card-not-present payments; null otherwise.
    pub device_id: Option<String>,
    /// The account has not used this device before.
    pub is_new_device: bool,
    /// Distance between merchant and the cardholder's home.
    pub distance_from_home_km: f64,
    /// Hour of day at the merchant, 0–23.
    pub hour_local: u8,
    /// Transactions on the account in the previous 24 hours.
    pub txn_count_24h: u32,
    /// Days since the account was opened.
    pub account_age_days: u32,
    /// The account's average amount over 30 days.
    pub avg_amount_30d: f64,
    /// Ground truth: 1 for fraud.
    pub is_fraud: u8,
}

const COUNTRIES: [(&str, &str, f64); 12] = [
    ("US", "USD", 0.34),
    ("GB", "GBP", 0.12),
    ("DE", "EUR", 0.11),
    ("FR", "EUR", 0.09),
    ("CA", "CAD", 0.07),
    ("ES", "EUR", 0.06),
    ("IT", "EUR", 0.05),
    ("NL", "EUR", 0.04),
    ("MX", "MXN", 0.04),
    ("JP", "JPY", 0.03),
    ("AU", "AUD", 0.03),
    ("IN", "INR", 0.02),
];
const NEW_COUNTRY: (&str, &str) = ("BR", "BRL");

/// (category, log-amount offset, is high risk)
const POS_CATEGORIES: [(&str, f64, bool); 8] = [
    ("grocery", 0.0, false),
    ("restaurant", -0.2, false),
    ("gas", 0.1, false),
    ("retail", 0.3, false),
    ("pharmacy", -0.3, false),
    ("entertainment", 0.2, false),
    ("electronics", 1.2, true),
    ("jewelry", 1.6, true),
];
const ECOM_CATEGORIES: [(&str, f64, bool); 5] = [
    ("online_retail", 0.3, false),
    ("travel", 1.4, false),
    ("subscriptions", -0.6, false),
    ("digital_goods", -0.2, true),
    ("gambling", 0.5, true),
];

struct Account {
    id: String,
    home: usize,
    avg_amount: f64,
    device: String,
    age_days: u32,
    activity: f64,
}

/// Draws transactions one at a time; an iterator so producers can pace it.
pub struct Generator {
    cfg: GeneratorConfig,
    rng: Xoshiro256PlusPlus,
    accounts: Vec<Account>,
    index: u64,
    clock_ms: f64,
}

impl Generator {
    /// A generator for this configuration (accounts are drawn here).
    pub fn new(cfg: GeneratorConfig) -> Generator {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(cfg.seed);
        let spend = LogNormal::new(3.6, 0.7).expect("valid parameters");
        let age = Exp::new(1.0 / 1400.0).expect("valid parameters");
        let accounts = (0..cfg.accounts)
            .map(|i| Account {
                id: format!("acct-{i:06}"),
                home: pick_weighted(&mut rng, COUNTRIES.iter().map(|c| c.2)),
                avg_amount: round_to(spend.sample(&mut rng), 2),
                device: random_device(&mut rng),
                age_days: 1 + age.sample(&mut rng) as u32,
                activity: 1.0 + 4.0 * rng.gen::<f64>().powi(3),
            })
            .collect();
        let clock_ms = cfg.start_ms as f64;
        Generator { cfg, rng, accounts, index: 0, clock_ms }
    }

    /// How far the scenario has progressed at the current row: 0 before the onset, then up to 1.
    fn drift_level(&self) -> f64 {
        let t = self.index as f64 / self.cfg.rows.max(1) as f64;
        if t < self.cfg.onset {
            0.0
        } else {
            ((t - self.cfg.onset) / (1.0 - self.cfg.onset).max(1e-9)).clamp(0.0, 1.0)
        }
    }

    fn next_transaction(&mut self) -> GeneratedTransaction {
        let level = self.drift_level();
        let active = self.index as f64 >= self.cfg.onset * self.cfg.rows as f64;
        let scenario = if active { self.cfg.scenario } else { Scenario::None };
        let rng = &mut self.rng;
        self.clock_ms += Exp::new(self.cfg.rate_per_sec / 1000.0).expect("positive rate").sample(rng);
        let account = &self.accounts[(rng.gen::<f64>().powi(2) * self.accounts.len() as f64) as usize];

        let ecom_share = if scenario == Scenario::ChannelShift { 0.66 } else { 0.33 };
        let channel = match rng.gen::<f64>() {
            u if u < ecom_share => "ecom",
            u if u < ecom_share + 0.07 => "atm",
            u if u < ecom_share + 0.12 => "moto",
            _ => "pos",
        };
        let (category, offset, high_risk) = match channel {
            "atm" => ("cash_withdrawal", 0.4, false),
            "ecom" | "moto" => ECOM_CATEGORIES[pick_weighted(rng, [0.45, 0.15, 0.2, 0.12, 0.08])],
            _ => POS_CATEGORIES[pick_weighted(rng, [0.3, 0.2, 0.15, 0.15, 0.08, 0.06, 0.04, 0.02])],
        };
        let merchant_id = if channel == "atm" {
            format!("ATM-{:04}", rng.gen_range(0..3000))
        } else {
            format!("M{:06}", (rng.gen::<f64>().powi(3) * self.cfg.merchants as f64) as u64)
        };

        let (country, currency, foreign) = if scenario == Scenario::NewCountry && rng.gen::<f64>() < 0.15 {
            (NEW_COUNTRY.0, NEW_COUNTRY.1, true)
        } else {
            let travel = if category == "travel" { 0.35 } else { 0.06 };
            let c = if rng.gen::<f64>() < travel {
                pick_weighted(rng, COUNTRIES.iter().map(|c| c.2))
            } else {
                account.home
            };
            (COUNTRIES[c].0, COUNTRIES[c].1, c != account.home)
        };

        let card_not_present = matches!(channel, "ecom" | "moto");
        let fresh_device_rate = if scenario == Scenario::DeviceBurst { 0.7 } else { 0.08 };
        let is_new_device = card_not_present && rng.gen::<f64>() < fresh_device_rate;
        let device_id = match (card_not_present, is_new_device) {
            (false, _) => None,
            (true, true) => Some(random_device(rng)),
            (true, false) => Some(account.device.clone()),
        };

        let inflation = if scenario == Scenario::AmountInflation { 1.0 + 1.5 * level } else { 1.0 };
        let amount_dist = LogNormal::new(account.avg_amount.ln() + offset - 0.3, 0.8).expect("valid parameters");
        let amount = round_to((amount_dist.sample(rng) * inflation).max(0.5), 2);
        let distance = if foreign {
            LogNormal::new(2500f64.ln(), 0.6).expect("valid parameters").sample(rng)
        } else {
            LogNormal::new(8f64.ln(), 1.1).expect("valid parameters").sample(rng)
        };
        let distance_from_home_km = round_to(distance, 1);
        let hour_local = if rng.gen::<f64>() < 0.08 {
            rng.gen_range(0..6)
        } else {
            Normal::new(14.5f64, 4.0).expect("valid parameters").sample(rng).rem_euclid(24.0) as u8
        };
        let txn_count_24h = Poisson::new(account.activity).expect("positive rate").sample(rng) as u32;
        let account_age_days = if scenario == Scenario::CovariateShift && rng.gen::<f64>() < 0.7 {
            1 + Exp::new(1.0 / 90.0).expect("valid parameters").sample(rng) as u32
        } else {
            account.age_days
        };

        // Fraud: non-linear in several features at once, plus noise.
        let ratio = amount / account.avg_amount;
        let mut logit = -6.3;
        logit += 2.0 * f64::from(hour_local < 5 && matches!(channel, "ecom" | "atm"));
        logit += 1.6 * f64::from(foreign) * (1.0 + distance_from_home_km).ln() / 9000f64.ln();
        logit += 2.4 / (1.0 + (-(ratio - 3.0) * 2.0).exp());
        logit += 0.35 * (f64::from(txn_count_24h) - 4.0).max(0.0).powf(1.3);
        logit += 1.7 * f64::from(is_new_device) * f64::from(channel == "ecom");
        logit += 1.1 * f64::from(high_risk);
        logit += 1.0 * f64::from(account_age_days < 30);
        if scenario == Scenario::ConceptShift {
            // A new rule on the same features: the old signals no longer matter.
            logit = -7.3;
            logit += 2.6 * f64::from(channel == "pos" && (10..=16).contains(&hour_local));
            logit += 2.2 * f64::from(ratio < 0.6);
            logit += 1.2 * f64::from(!foreign && distance_from_home_km < 5.0);
            logit += 1.0 * f64::from(account_age_days > 1500);
        }
        logit += Normal::new(0.0, 0.8).expect("valid parameters").sample(rng);
        let is_fraud = u8::from(rng.gen::<f64>() < 1.0 / (1.0 + (-logit).exp()));

        let event_time = format_rfc3339_ms(self.clock_ms as i64);
        let tx = GeneratedTransaction {
            transaction_id: format!("tx-{:016x}", rng.next_u64()),
            event_time,
            account_id: account.id.clone(),
            amount,
            currency,
            merchant_id,
            merchant_category: category,
            country,
            channel,
            device_id,
            is_new_device,
            distance_from_home_km,
            hour_local,
            txn_count_24h,
            account_age_days,
            avg_amount_30d: account.avg_amount,
            is_fraud,
        };
        self.index += 1;
        tx
    }
}

impl Iterator for Generator {
    type Item = GeneratedTransaction;
    fn next(&mut self) -> Option<GeneratedTransaction> {
        Some(self.next_transaction())
    }
}

/// Output formats of `driftwatch generate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// One JSON object per line.
    JsonLines,
    /// CSV with a header; missing values are empty fields.
    Csv,
}

/// Writes `cfg.rows` transactions to `out`.
pub fn write(cfg: &GeneratorConfig, format: OutputFormat, out: impl Write) -> std::io::Result<()> {
    write_with_progress(cfg, format, out, &mut |_| {})
}

/// [`write`], calling `on_row` with the number of rows written so far every 4,096 rows.
pub fn write_with_progress(cfg: &GeneratorConfig, format: OutputFormat, out: impl Write, on_row: &mut dyn FnMut(u64)) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(out);
    let mut written = 0u64;
    let rows = Generator::new(cfg.clone()).take(cfg.rows as usize).inspect(|_| {
        written += 1;
        if written % 4096 == 0 {
            on_row(written);
        }
    });
    match format {
        OutputFormat::JsonLines => {
            for tx in rows {
                serde_json::to_writer(&mut out, &tx)?;
                out.write_all(b"\n")?;
            }
        }
        OutputFormat::Csv => {
            let mut w = csv::Writer::from_writer(&mut out);
            for tx in rows {
                w.serialize(&tx).map_err(std::io::Error::other)?;
            }
            w.flush()?;
        }
    }
    out.flush()
}

/// When the labels of generated transactions become known.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LabelDelays {
    /// Share of frauds an analyst confirms (the rest are found by chargebacks).
    pub analyst_share: f64,
    /// Mean analyst delay (exponential), hours.
    pub analyst_mean_hours: f64,
    /// Chargeback delays, uniform between these, days.
    pub chargeback_days: (f64, f64),
    /// A legitimate transaction is `cleared` after this many days (plus up to one day).
    pub cleared_days: f64,
    /// Every delay times this (e.g. 1/1440: a day of delay becomes a minute).
    pub scale: f64,
}

impl Default for LabelDelays {
    fn default() -> Self {
        LabelDelays { analyst_share: 0.4, analyst_mean_hours: 6.0, chargeback_days: (3.0, 45.0), cleared_days: 30.0, scale: 1.0 }
    }
}

impl LabelDelays {
    /// The delay (ms) and source of one transaction's label.
    pub fn draw(&self, rng: &mut impl Rng, is_fraud: bool) -> (i64, &'static str) {
        let day = 86_400_000.0;
        let (delay, source) = if is_fraud {
            if rng.gen::<f64>() < self.analyst_share {
                (Exp::new(1.0 / (self.analyst_mean_hours * 3_600_000.0)).expect("positive mean").sample(rng), "analyst")
            } else {
                (rng.gen_range(self.chargeback_days.0..=self.chargeback_days.1) * day, "chargeback")
            }
        } else {
            ((self.cleared_days + rng.gen::<f64>()) * day, "cleared")
        };
        ((delay * self.scale).round() as i64, source)
    }

    /// The random stream the delays of seed `seed`'s transactions are drawn from (apart from the
    /// transactions' own, so they are the same bytes with or without labels).
    pub fn rng(seed: u64) -> Xoshiro256PlusPlus {
        Xoshiro256PlusPlus::seed_from_u64(seed ^ 0x1abe_15ed_0000_0001)
    }
}

/// The labels of `cfg`'s transactions (every one gets one), in label-time order: frauds are
/// confirmed by an analyst within hours or by a chargeback within weeks, legitimate ones are
/// cleared after a month.
pub fn labels(cfg: &GeneratorConfig, delays: &LabelDelays) -> Vec<crate::message::performance::Label> {
    let mut rng = LabelDelays::rng(cfg.seed);
    let mut out: Vec<(i64, crate::message::performance::Label)> = Generator::new(cfg.clone())
        .take(cfg.rows as usize)
        .map(|tx| {
            let event_ms = crate::time::parse_rfc3339_ms(&tx.event_time).expect("generated times parse");
            let (delay, source) = delays.draw(&mut rng, tx.is_fraud == 1);
            let label_ms = event_ms + delay;
            (label_ms, crate::message::performance::Label { transaction_id: tx.transaction_id, label: tx.is_fraud, label_time: format_rfc3339_ms(label_ms), source: source.into() })
        })
        .collect();
    out.sort_by_key(|(t, _)| *t);
    out.into_iter().map(|(_, l)| l).collect()
}

fn random_device(rng: &mut impl RngCore) -> String {
    format!("dev-{:012x}", rng.next_u64() >> 16)
}

fn round_to(v: f64, decimals: i32) -> f64 {
    let f = 10f64.powi(decimals);
    (v * f).round() / f
}

fn pick_weighted<R: Rng>(rng: &mut R, weights: impl IntoIterator<Item = f64> + Clone) -> usize {
    let total: f64 = weights.clone().into_iter().sum();
    let mut u = rng.gen::<f64>() * total;
    let mut last = 0;
    for (i, w) in weights.into_iter().enumerate() {
        if u < w {
            return i;
        }
        u -= w;
        last = i;
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(cfg: &GeneratorConfig) -> Vec<u8> {
        let mut v = Vec::new();
        write(cfg, OutputFormat::JsonLines, &mut v).unwrap();
        v
    }

    #[test]
    fn same_seed_same_bytes_other_seed_other_bytes() {
        let cfg = GeneratorConfig { rows: 500, ..Default::default() };
        assert_eq!(bytes(&cfg), bytes(&cfg));
        assert_ne!(bytes(&cfg), bytes(&GeneratorConfig { seed: 7, ..cfg }));
    }

    #[test]
    fn fraud_rate_is_realistic_and_not_given_away_by_one_feature() {
        let rows: Vec<_> = Generator::new(GeneratorConfig { rows: 40_000, ..Default::default() }).take(40_000).collect();
        let fraud: Vec<_> = rows.iter().filter(|t| t.is_fraud == 1).collect();
        let rate = fraud.len() as f64 / rows.len() as f64;
        assert!((0.005..=0.02).contains(&rate), "fraud rate {rate}");
        // No single categorical level catches most fraud with high precision.
        for channel in ["pos", "ecom", "atm", "moto"] {
            let in_level = rows.iter().filter(|t| t.channel == channel).count() as f64;
            let fraud_in_level = fraud.iter().filter(|t| t.channel == channel).count() as f64;
            assert!(fraud_in_level / in_level < 0.2, "channel {channel} gives fraud away");
        }
    }

    #[test]
    fn scenarios_move_their_features_after_onset_only() {
        let cfg = GeneratorConfig { rows: 20_000, scenario: Scenario::NewCountry, ..Default::default() };
        let rows: Vec<_> = Generator::new(cfg).take(20_000).collect();
        let (before, after) = rows.split_at(10_000);
        assert!(before.iter().all(|t| t.country != "BR"));
        let br = after.iter().filter(|t| t.country == "BR").count();
        assert!((1000..2000).contains(&br), "BR rows after onset: {br}");
        assert!(after.iter().filter(|t| t.country == "BR").all(|t| t.currency == "BRL"));
    }

    #[test]
    fn event_time_is_increasing_rfc3339() {
        let rows: Vec<_> = Generator::new(GeneratorConfig::default()).take(100).collect();
        assert_eq!(rows[0].event_time.len(), "2026-01-05T00:00:00.000Z".len());
        assert!(rows.windows(2).all(|w| w[0].event_time <= w[1].event_time));
        assert!("bogus".parse::<Scenario>().unwrap_err().contains("amount_inflation"));
    }
}
