//! The per-minute and hourly rollups of the LLM calls a batch **inserted**,
//! summed here and added to `llm_rollup_1m` / `llm_latency_1m` and
//! `llm_rollup_1h` / `llm_latency_1h` in the same transaction as the rows
//! themselves (`writer.rs`).
//!
//! The writer hands in only the calls that its insert really added, so a
//! call that was already stored (re-delivery, replay) adds nothing: the
//! rollups stay exact, and each hourly row equals the per-minute rows of its
//! hour summed. This file is pure: it groups and sums at a [`Resolution`],
//! and renders the groups, sorted by key, as the array parameters of one
//! upsert per table.

use super::rows::CallRecord;
type HashMap<K, V> = std::collections::HashMap<K, V, super::FastHash>;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The width of a rollup bucket, and so which pair of tables it goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// `llm_rollup_1m`, `llm_latency_1m`.
    Minute,
    /// `llm_rollup_1h`, `llm_latency_1h`.
    Hour,
}

impl Resolution {
    /// Every resolution, in the order the writer upserts them: all writers
    /// lock the tables in this same order (see [`Rollups::rollup_columns`]).
    pub const ALL: [Resolution; 2] = [Resolution::Minute, Resolution::Hour];

    fn seconds(self) -> u64 {
        match self {
            Resolution::Minute => 60,
            Resolution::Hour => 3600,
        }
    }

    /// The start of the bucket `t` falls in (UTC; a time before the epoch
    /// counts as the epoch).
    pub fn bucket(self, t: SystemTime) -> SystemTime {
        let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        UNIX_EPOCH + Duration::from_secs(secs - secs % self.seconds())
    }

    /// The upsert that adds [`RollupColumns`] to this resolution's rollup table.
    pub fn upsert_rollup(self) -> &'static str {
        match self {
            Resolution::Minute => UPSERT_ROLLUP_1M,
            Resolution::Hour => UPSERT_ROLLUP_1H,
        }
    }

    /// The upsert that adds [`LatencyColumns`] to this resolution's histogram table.
    pub fn upsert_latency(self) -> &'static str {
        match self {
            Resolution::Minute => UPSERT_LATENCY_1M,
            Resolution::Hour => UPSERT_LATENCY_1H,
        }
    }
}

/// The group of a rollup row: tenant, bucket (minute or hour), service,
/// provider, model, environment.
type Group<'a> = (&'a str, SystemTime, &'a str, &'a str, &'a str, &'a str);

/// The sums of one rollup row.
#[derive(Debug, Default, Clone, PartialEq)]
struct Sums {
    calls: i64,
    errors: i64,
    input_tokens: i64,
    output_tokens: i64,
    cache_read_tokens: i64,
    cache_write_tokens: i64,
    reasoning_tokens: i64,
    cost_usd: f64,
    unpriced_calls: i64,
    duration_ms_sum: f64,
}

/// The rollup increments of a set of calls at one resolution.
#[derive(Debug, Default)]
pub struct Rollups<'a> {
    sums: HashMap<Group<'a>, Sums>,
    /// (group, metric, le) -> count; metric 0 is duration, 1 time to first token.
    latency: HashMap<(Group<'a>, i16, i16), i64>,
}

impl<'a> Rollups<'a> {
    /// Sums `calls` by group, in buckets of `resolution`.
    pub fn of(
        calls: impl IntoIterator<Item = &'a CallRecord>,
        resolution: Resolution,
    ) -> Rollups<'a> {
        let mut r = Rollups::default();
        for c in calls {
            let group = (
                c.tenant.as_str(),
                resolution.bucket(c.start),
                c.service.as_str(),
                c.provider.as_str(),
                c.model.as_str(),
                c.environment.as_str(),
            );
            let s = r.sums.entry(group).or_default();
            s.calls += 1;
            s.errors += i64::from(c.is_error);
            s.input_tokens += c.input_tokens.unwrap_or(0);
            s.output_tokens += c.output_tokens.unwrap_or(0);
            s.cache_read_tokens += c.cache_read_tokens.unwrap_or(0);
            s.cache_write_tokens += c.cache_write_tokens.unwrap_or(0);
            s.reasoning_tokens += c.reasoning_tokens.unwrap_or(0);
            match c.cost_usd {
                Some(cost) => s.cost_usd += cost,
                None => s.unpriced_calls += 1,
            }
            s.duration_ms_sum += c.duration_ms;
            *r.latency.entry((group, 0, c.latency_bucket)).or_default() += 1;
            if let Some(le) = c.ttft_bucket {
                *r.latency.entry((group, 1, le)).or_default() += 1;
            }
        }
        r
    }

    /// No call, nothing to add.
    pub fn is_empty(&self) -> bool {
        self.sums.is_empty()
    }

    /// The rollup table's increments as one array per column, in the order
    /// of [`UPSERT_ROLLUP_1M`] / [`UPSERT_ROLLUP_1H`], sorted by group:
    /// concurrent writers then lock rollup rows in the same order (table by
    /// table in the order of [`Resolution::ALL`], key by key within a table)
    /// and never deadlock.
    pub fn rollup_columns(&self) -> RollupColumns<'a> {
        let mut c = RollupColumns::default();
        let mut sums: Vec<_> = self.sums.iter().collect();
        sums.sort_by(|a, b| a.0.cmp(b.0));
        for (g, s) in sums {
            c.group.push(*g);
            c.counts[0].push(s.calls);
            c.counts[1].push(s.errors);
            c.counts[2].push(s.input_tokens);
            c.counts[3].push(s.output_tokens);
            c.counts[4].push(s.cache_read_tokens);
            c.counts[5].push(s.cache_write_tokens);
            c.counts[6].push(s.reasoning_tokens);
            c.counts[7].push(s.unpriced_calls);
            c.cost_usd.push(s.cost_usd);
            c.duration_ms_sum.push(s.duration_ms_sum);
        }
        c
    }

    /// The histogram table's increments, in the order of
    /// [`UPSERT_LATENCY_1M`] / [`UPSERT_LATENCY_1H`], sorted by key as the
    /// rollups are.
    pub fn latency_columns(&self) -> LatencyColumns<'a> {
        let mut c = LatencyColumns::default();
        let mut latency: Vec<_> = self.latency.iter().collect();
        latency.sort_by(|a, b| a.0.cmp(b.0));
        for ((g, metric, le), count) in latency {
            c.group.push(*g);
            c.metric.push(*metric);
            c.le.push(*le);
            c.count.push(*count);
        }
        c
    }
}

/// Group columns as arrays.
#[derive(Debug, Default)]
pub struct GroupColumns<'a> {
    /// Tenant.
    pub tenant: Vec<&'a str>,
    /// Start of the minute or hour.
    pub bucket: Vec<SystemTime>,
    /// Service.
    pub service: Vec<&'a str>,
    /// Provider.
    pub provider: Vec<&'a str>,
    /// Model.
    pub model: Vec<&'a str>,
    /// Environment.
    pub environment: Vec<&'a str>,
}

impl<'a> GroupColumns<'a> {
    fn push(&mut self, (tenant, bucket, service, provider, model, environment): Group<'a>) {
        self.tenant.push(tenant);
        self.bucket.push(bucket);
        self.service.push(service);
        self.provider.push(provider);
        self.model.push(model);
        self.environment.push(environment);
    }
}

/// Rollup table increments as arrays.
#[derive(Debug, Default)]
pub struct RollupColumns<'a> {
    /// The groups.
    pub group: GroupColumns<'a>,
    /// calls, errors, input, output, cache-read, cache-write and reasoning
    /// tokens, unpriced calls.
    pub counts: [Vec<i64>; 8],
    /// Cost.
    pub cost_usd: Vec<f64>,
    /// Summed duration.
    pub duration_ms_sum: Vec<f64>,
}

/// Histogram table increments as arrays.
#[derive(Debug, Default)]
pub struct LatencyColumns<'a> {
    /// The groups.
    pub group: GroupColumns<'a>,
    /// 0 duration, 1 time to first token.
    pub metric: Vec<i16>,
    /// Histogram bucket.
    pub le: Vec<i16>,
    /// Calls in it.
    pub count: Vec<i64>,
}

/// The upsert of [`RollupColumns`] into the rollup table `$table`
/// ($1..$6 the group, $7..$14 the counts, $15 cost, $16 duration).
macro_rules! upsert_rollup {
    ($table:literal) => {
        concat!(
            "
INSERT INTO ", $table, " AS r (tenant, bucket, service, provider, model, environment, calls, errors,
    input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens, unpriced_calls,
    cost_usd, duration_ms_sum)
SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::text[],
    $7::int8[], $8::int8[], $9::int8[], $10::int8[], $11::int8[], $12::int8[], $13::int8[], $14::int8[],
    $15::float8[], $16::float8[])
ON CONFLICT (tenant, bucket, service, provider, model, environment) DO UPDATE SET
    calls = r.calls + excluded.calls,
    errors = r.errors + excluded.errors,
    input_tokens = r.input_tokens + excluded.input_tokens,
    output_tokens = r.output_tokens + excluded.output_tokens,
    cache_read_tokens = r.cache_read_tokens + excluded.cache_read_tokens,
    cache_write_tokens = r.cache_write_tokens + excluded.cache_write_tokens,
    reasoning_tokens = r.reasoning_tokens + excluded.reasoning_tokens,
    unpriced_calls = r.unpriced_calls + excluded.unpriced_calls,
    cost_usd = r.cost_usd + excluded.cost_usd,
    duration_ms_sum = r.duration_ms_sum + excluded.duration_ms_sum"
        )
    };
}

/// The upsert of [`LatencyColumns`] into the histogram table `$table`
/// ($1..$6 the group, $7 metric, $8 le, $9 count).
macro_rules! upsert_latency {
    ($table:literal) => {
        concat!(
            "
INSERT INTO ", $table, " AS l (tenant, bucket, service, provider, model, environment, metric, le, count)
SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::text[],
    $7::int2[], $8::int2[], $9::int8[])
ON CONFLICT (tenant, bucket, service, provider, model, environment, metric, le) DO UPDATE SET
    count = l.count + excluded.count"
        )
    };
}

/// Adds [`RollupColumns`] of [`Resolution::Minute`] to `llm_rollup_1m`.
pub const UPSERT_ROLLUP_1M: &str = upsert_rollup!("llm_rollup_1m");

/// Adds [`RollupColumns`] of [`Resolution::Hour`] to `llm_rollup_1h`.
pub const UPSERT_ROLLUP_1H: &str = upsert_rollup!("llm_rollup_1h");

/// Adds [`LatencyColumns`] of [`Resolution::Minute`] to `llm_latency_1m`.
pub const UPSERT_LATENCY_1M: &str = upsert_latency!("llm_latency_1m");

/// Adds [`LatencyColumns`] of [`Resolution::Hour`] to `llm_latency_1h`.
pub const UPSERT_LATENCY_1H: &str = upsert_latency!("llm_latency_1h");

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn call(model: &str, start_s: u64, cost: Option<f64>, ttft: Option<i16>) -> CallRecord {
        CallRecord {
            tenant: "t".into(),
            trace_id: [1; 16],
            span_id: [2; 8],
            start: UNIX_EPOCH + Duration::from_millis(start_s * 1000 + 500),
            service: "svc".into(),
            environment: "prod".into(),
            provider: "openai".into(),
            model: model.into(),
            request_model: None,
            operation: "chat".into(),
            duration_ms: 100.0,
            is_error: cost.is_none(),
            input_tokens: Some(10),
            output_tokens: None,
            cache_read_tokens: Some(4),
            cache_write_tokens: None,
            reasoning_tokens: Some(1),
            cost_usd: cost,
            computed_cost_usd: cost,
            client_cost_usd: None,
            time_to_first_token_ms: None,
            finish_reasons: vec![],
            user_id: None,
            session_id: None,
            agent: None,
            tool: None,
            prompt: None,
            completion: None,
            latency_bucket: 7,
            ttft_bucket: ttft,
        }
    }

    #[test]
    fn sums_by_minute_and_group() {
        let calls = [
            call("a", 60, Some(0.5), Some(3)),
            call("a", 119, None, None), // same minute
            call("a", 120, Some(1.0), None),
            call("b", 60, Some(2.0), None),
        ];
        let r = Rollups::of(&calls, Resolution::Minute);
        let c = r.rollup_columns();
        assert_eq!(c.group.tenant.len(), 3);
        let i = (0..3)
            .find(|&i| {
                c.group.model[i] == "a" && c.group.bucket[i] == UNIX_EPOCH + Duration::from_secs(60)
            })
            .expect("group a, minute 1");
        assert_eq!(c.counts[0][i], 2, "calls");
        assert_eq!(c.counts[1][i], 1, "errors");
        assert_eq!(c.counts[2][i], 20, "input tokens");
        assert_eq!(c.counts[3][i], 0, "output tokens: unknown counts as 0");
        assert_eq!(c.counts[4][i], 8, "cache reads");
        assert_eq!(c.counts[7][i], 1, "unpriced");
        assert_eq!(c.cost_usd[i], 0.5);
        assert_eq!(c.duration_ms_sum[i], 200.0);

        let l = r.latency_columns();
        let latency: i64 = (0..l.count.len())
            .filter(|&i| l.metric[i] == 0)
            .map(|i| l.count[i])
            .sum();
        assert_eq!(latency, 4, "every call has a duration bucket");
        let ttft: Vec<_> = (0..l.count.len()).filter(|&i| l.metric[i] == 1).collect();
        assert_eq!(ttft.len(), 1);
        assert_eq!((l.le[ttft[0]], l.count[ttft[0]]), (3, 1));
    }

    #[test]
    fn buckets_start_at_the_minute_or_the_utc_hour() {
        let t = UNIX_EPOCH + Duration::from_millis(1_780_003_723_456); // 21:28:43.456 UTC
        let at = |s| UNIX_EPOCH + Duration::from_secs(s);
        assert_eq!(Resolution::Minute.bucket(t), at(1_780_003_680));
        assert_eq!(Resolution::Hour.bucket(t), at(1_780_002_000));
        assert_eq!(
            Resolution::Hour.bucket(at(1_780_002_000)),
            at(1_780_002_000)
        );
        assert_eq!(
            Resolution::Hour.bucket(at(1_780_005_599)),
            at(1_780_002_000)
        );
        assert_eq!(
            Resolution::Hour.bucket(at(1_780_005_600)),
            at(1_780_005_600)
        );
        assert_eq!(
            Resolution::Hour.bucket(UNIX_EPOCH - Duration::from_secs(1)),
            UNIX_EPOCH
        );
    }

    /// Calls over three hours, two models, with and without a price and a
    /// time to first token.
    fn spread_calls() -> Vec<CallRecord> {
        (0..200u64)
            .map(|i| {
                let start = 3_600 * 100 + i * 47 + (i % 3) * 900; // hours 100..103
                let cost = (i % 5 != 0).then_some(0.25 * (i % 4) as f64);
                let ttft = (i % 2 == 0).then_some((i % 6) as i16);
                let mut c = call(if i % 3 == 0 { "a" } else { "b" }, start, cost, ttft);
                c.latency_bucket = (i % 9) as i16;
                c.output_tokens = Some(i as i64);
                c
            })
            .collect()
    }

    type Row = (Vec<i64>, f64, f64);

    /// Rollup columns as key -> sums, with buckets made hours.
    fn by_hour(c: &RollupColumns) -> BTreeMap<(String, SystemTime, String), Row> {
        let mut out: BTreeMap<_, Row> = BTreeMap::new();
        for i in 0..c.group.tenant.len() {
            let key = (
                c.group.tenant[i].to_owned(),
                Resolution::Hour.bucket(c.group.bucket[i]),
                format!(
                    "{}/{}/{}/{}",
                    c.group.service[i],
                    c.group.provider[i],
                    c.group.model[i],
                    c.group.environment[i]
                ),
            );
            let row = out.entry(key).or_insert((vec![0; 8], 0.0, 0.0));
            for (sum, counts) in row.0.iter_mut().zip(&c.counts) {
                *sum += counts[i];
            }
            row.1 += c.cost_usd[i];
            row.2 += c.duration_ms_sum[i];
        }
        out
    }

    /// Histogram columns as key -> count, with buckets made hours.
    fn latency_by_hour(l: &LatencyColumns) -> BTreeMap<(SystemTime, String, i16, i16), i64> {
        let mut out = BTreeMap::new();
        for i in 0..l.count.len() {
            let key = (
                Resolution::Hour.bucket(l.group.bucket[i]),
                format!("{}/{}", l.group.tenant[i], l.group.model[i]),
                l.metric[i],
                l.le[i],
            );
            *out.entry(key).or_default() += l.count[i];
        }
        out
    }

    #[test]
    fn hourly_sums_are_the_minute_sums_regrouped() {
        let calls = spread_calls();
        let minutes = Rollups::of(&calls, Resolution::Minute);
        let hours = Rollups::of(&calls, Resolution::Hour);
        let (m, h) = (minutes.rollup_columns(), hours.rollup_columns());
        assert!(m.group.tenant.len() > 100, "many minutes");
        let distinct: std::collections::BTreeSet<_> = h.group.bucket.iter().collect();
        assert_eq!(distinct.len(), 4, "hours 100 to 103");
        assert!(h
            .group
            .bucket
            .iter()
            .all(|b| *b == Resolution::Hour.bucket(*b)));
        assert_eq!(by_hour(&m), by_hour(&h));
        assert_eq!(h.counts[0].iter().sum::<i64>(), calls.len() as i64);

        let (ml, hl) = (minutes.latency_columns(), hours.latency_columns());
        assert_eq!(latency_by_hour(&ml), latency_by_hour(&hl));
        assert!(hl.count.len() < ml.count.len());
    }

    #[test]
    fn rows_come_sorted_by_key_at_every_resolution() {
        let calls = spread_calls();
        for resolution in Resolution::ALL {
            let r = Rollups::of(&calls, resolution);
            let c = r.rollup_columns();
            let keys: Vec<_> = (0..c.group.tenant.len())
                .map(|i| (c.group.tenant[i], c.group.bucket[i], c.group.model[i]))
                .collect();
            assert!(keys.windows(2).all(|w| w[0] < w[1]), "{resolution:?}");
            let l = r.latency_columns();
            let keys: Vec<_> = (0..l.count.len())
                .map(|i| (l.group.bucket[i], l.group.model[i], l.metric[i], l.le[i]))
                .collect();
            assert!(keys.windows(2).all(|w| w[0] < w[1]), "{resolution:?}");
        }
    }

    #[test]
    fn each_resolution_upserts_its_own_tables() {
        let tables = |sql: &str| sql.split_whitespace().nth(2).map(str::to_owned);
        let m = Resolution::Minute;
        let h = Resolution::Hour;
        assert_eq!(tables(m.upsert_rollup()).as_deref(), Some("llm_rollup_1m"));
        assert_eq!(tables(h.upsert_rollup()).as_deref(), Some("llm_rollup_1h"));
        assert_eq!(
            tables(m.upsert_latency()).as_deref(),
            Some("llm_latency_1m")
        );
        assert_eq!(
            tables(h.upsert_latency()).as_deref(),
            Some("llm_latency_1h")
        );
        // Same statement otherwise.
        assert_eq!(m.upsert_rollup().replace("_1m", "_1h"), h.upsert_rollup(),);
        assert_eq!(m.upsert_latency().replace("_1m", "_1h"), h.upsert_latency(),);
    }

    #[test]
    fn no_calls_no_rows() {
        for resolution in Resolution::ALL {
            assert!(Rollups::of(&[], resolution).is_empty());
        }
    }
}
