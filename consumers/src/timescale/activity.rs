//! Sessions and end users of the model calls a batch **inserted**, merged
//! here and added to `session_summaries` and `user_summaries` (with their
//! pair tables and a user's calls per day) in the same transaction as the
//! rows themselves (`writer.rs`).
//!
//! What it guarantees: every row is the same whatever order, grouping and
//! repetition the calls arrive in. The writer hands in only the calls its
//! insert really added, so a re-delivered or replayed call adds nothing;
//! counts and sums are added, times take the least first and the greatest
//! last, sets are unioned. A trace counts once in a session, and a session
//! once for a user: the pairs are inserted first ([`SESSIONS_UPSERT`],
//! [`USERS_UPSERT`]) and only a pair the database did not hold yet adds
//! one. This file is pure: it merges and renders the rows as the array
//! parameters of three statements, each of which locks its rows in key
//! order (concurrent writers never deadlock).

use super::rows::CallRecord;
use super::summaries::{add, micros, SEPARATOR};
use observatory_schemas::histogram::MAX_BUCKET;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Latency buckets in a user's histogram.
const BUCKETS: usize = MAX_BUCKET as usize + 1;

/// The pairs (session, trace), then the sessions: a trace new to a
/// session (`xmax = 0`: inserted, not updated) adds one to its `traces`.
pub const SESSIONS_UPSERT: &str = "
WITH pairs AS (
    INSERT INTO session_traces AS p (tenant, session_id, trace_id, start_time)
    SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[], $4::timestamptz[])
    ORDER BY 1, 2, 3
    ON CONFLICT (tenant, session_id, trace_id) DO UPDATE SET start_time = EXCLUDED.start_time
        WHERE EXCLUDED.start_time < p.start_time
    RETURNING p.tenant, p.session_id, (p.xmax = 0) AS inserted
), added AS (
    SELECT tenant, session_id, count(*) FILTER (WHERE inserted) AS traces FROM pairs GROUP BY 1, 2
)
INSERT INTO session_summaries AS s (tenant, session_id, first_time, last_time, traces, llm_calls, errors,
    input_tokens, output_tokens, total_tokens, cost_usd, users, services, models)
SELECT d.tenant, d.session_id, d.first_time, d.last_time, coalesce(a.traces, 0), d.llm_calls, d.errors,
       d.input_tokens, d.output_tokens, d.input_tokens + d.output_tokens, d.cost_usd,
       string_to_array(d.users, E'\\x1f'), string_to_array(d.services, E'\\x1f'),
       string_to_array(d.models, E'\\x1f')
FROM unnest($5::text[], $6::text[], $7::timestamptz[], $8::timestamptz[], $9::int8[], $10::int8[],
            $11::int8[], $12::int8[], $13::float8[], $14::text[], $15::text[], $16::text[])
  AS d(tenant, session_id, first_time, last_time, llm_calls, errors, input_tokens, output_tokens,
       cost_usd, users, services, models)
LEFT JOIN added a ON a.tenant = d.tenant AND a.session_id = d.session_id
ORDER BY d.tenant, d.session_id
ON CONFLICT (tenant, session_id) DO UPDATE SET
    first_time = least(s.first_time, EXCLUDED.first_time),
    last_time = greatest(s.last_time, EXCLUDED.last_time),
    traces = s.traces + EXCLUDED.traces,
    llm_calls = s.llm_calls + EXCLUDED.llm_calls,
    errors = s.errors + EXCLUDED.errors,
    input_tokens = s.input_tokens + EXCLUDED.input_tokens,
    output_tokens = s.output_tokens + EXCLUDED.output_tokens,
    total_tokens = s.total_tokens + EXCLUDED.total_tokens,
    cost_usd = s.cost_usd + EXCLUDED.cost_usd,
    users = observatory_union(s.users, EXCLUDED.users),
    services = observatory_union(s.services, EXCLUDED.services),
    models = observatory_union(s.models, EXCLUDED.models)";

/// The pairs (user, session), then the users: a session new to a user
/// adds one to their `sessions`.
pub const USERS_UPSERT: &str = "
WITH pairs AS (
    INSERT INTO user_sessions AS p (tenant, user_id, session_id, first_time)
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[])
    ORDER BY 1, 2, 3
    ON CONFLICT (tenant, user_id, session_id) DO UPDATE SET first_time = EXCLUDED.first_time
        WHERE EXCLUDED.first_time < p.first_time
    RETURNING p.tenant, p.user_id, (p.xmax = 0) AS inserted
), added AS (
    SELECT tenant, user_id, count(*) FILTER (WHERE inserted) AS sessions FROM pairs GROUP BY 1, 2
)
INSERT INTO user_summaries AS u (tenant, user_id, first_seen, last_seen, llm_calls, errors, input_tokens,
    output_tokens, total_tokens, cost_usd, duration_ms_sum, sessions, latency)
SELECT d.tenant, d.user_id, d.first_seen, d.last_seen, d.llm_calls, d.errors, d.input_tokens,
       d.output_tokens, d.input_tokens + d.output_tokens, d.cost_usd, d.duration_ms_sum,
       coalesce(a.sessions, 0), string_to_array(d.latency, ',')::int8[]
FROM unnest($5::text[], $6::text[], $7::timestamptz[], $8::timestamptz[], $9::int8[], $10::int8[],
            $11::int8[], $12::int8[], $13::float8[], $14::float8[], $15::text[])
  AS d(tenant, user_id, first_seen, last_seen, llm_calls, errors, input_tokens, output_tokens,
       cost_usd, duration_ms_sum, latency)
LEFT JOIN added a ON a.tenant = d.tenant AND a.user_id = d.user_id
ORDER BY d.tenant, d.user_id
ON CONFLICT (tenant, user_id) DO UPDATE SET
    first_seen = least(u.first_seen, EXCLUDED.first_seen),
    last_seen = greatest(u.last_seen, EXCLUDED.last_seen),
    llm_calls = u.llm_calls + EXCLUDED.llm_calls,
    errors = u.errors + EXCLUDED.errors,
    input_tokens = u.input_tokens + EXCLUDED.input_tokens,
    output_tokens = u.output_tokens + EXCLUDED.output_tokens,
    total_tokens = u.total_tokens + EXCLUDED.total_tokens,
    cost_usd = u.cost_usd + EXCLUDED.cost_usd,
    duration_ms_sum = u.duration_ms_sum + EXCLUDED.duration_ms_sum,
    sessions = u.sessions + EXCLUDED.sessions,
    latency = observatory_add_counts(u.latency, EXCLUDED.latency)";

/// A user's calls per UTC day and model.
pub const USER_DAYS_UPSERT: &str = "
INSERT INTO user_calls_1d AS u (tenant, user_id, day, model, llm_calls, errors, input_tokens,
    output_tokens, cost_usd)
SELECT d.tenant, d.user_id, date '1970-01-01' + d.day, d.model, d.llm_calls, d.errors,
       d.input_tokens, d.output_tokens, d.cost_usd
FROM unnest($1::text[], $2::text[], $3::int4[], $4::text[], $5::int8[], $6::int8[], $7::int8[],
            $8::int8[], $9::float8[])
  AS d(tenant, user_id, day, model, llm_calls, errors, input_tokens, output_tokens, cost_usd)
ORDER BY d.tenant, d.user_id, d.day, d.model
ON CONFLICT (tenant, user_id, day, model) DO UPDATE SET
    llm_calls = u.llm_calls + EXCLUDED.llm_calls,
    errors = u.errors + EXCLUDED.errors,
    input_tokens = u.input_tokens + EXCLUDED.input_tokens,
    output_tokens = u.output_tokens + EXCLUDED.output_tokens,
    cost_usd = u.cost_usd + EXCLUDED.cost_usd";

/// Counts shared by a session's, a user's and a user-day's increment.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Totals {
    calls: i64,
    errors: i64,
    input: i64,
    output: i64,
    cost: f64,
}

impl Totals {
    fn add(&mut self, c: &CallRecord) {
        self.calls += 1;
        self.errors += i64::from(c.is_error);
        self.input += c.input_tokens.unwrap_or(0);
        self.output += c.output_tokens.unwrap_or(0);
        self.cost += c.cost_usd.unwrap_or(0.0);
    }
}

#[derive(Debug)]
struct Session<'a> {
    first: SystemTime,
    last: SystemTime,
    totals: Totals,
    users: Vec<&'a str>,
    services: Vec<&'a str>,
    models: Vec<&'a str>,
}

#[derive(Debug)]
struct User {
    first: SystemTime,
    last: SystemTime,
    totals: Totals,
    duration_ms: f64,
    latency: [i64; BUCKETS],
}

/// What a set of inserted calls adds to sessions and users.
#[derive(Debug, Default)]
pub struct Activity<'a> {
    session_traces: BTreeMap<(&'a str, &'a str, [u8; 16]), SystemTime>,
    sessions: BTreeMap<(&'a str, &'a str), Session<'a>>,
    user_sessions: BTreeMap<(&'a str, &'a str, &'a str), SystemTime>,
    users: BTreeMap<(&'a str, &'a str), User>,
    user_days: BTreeMap<(&'a str, &'a str, i32, &'a str), Totals>,
}

fn least(map_value: &mut SystemTime, at: SystemTime) {
    *map_value = (*map_value).min(at);
}

impl<'a> Activity<'a> {
    /// Merges `calls` (each inserted by this transaction) by session and user.
    pub fn of(calls: impl IntoIterator<Item = &'a CallRecord>) -> Activity<'a> {
        let mut out = Activity::default();
        for c in calls {
            let start = micros(c.start);
            let end =
                start + Duration::from_micros((c.duration_ms.max(0.0) * 1000.0).round() as u64);
            let tenant = c.tenant.as_str();
            if let Some(session) = c.session_id.as_deref() {
                out.session_traces
                    .entry((tenant, session, c.trace_id))
                    .and_modify(|t| least(t, start))
                    .or_insert(start);
                let s = out
                    .sessions
                    .entry((tenant, session))
                    .or_insert_with(|| Session {
                        first: start,
                        last: end,
                        totals: Totals::default(),
                        users: Vec::new(),
                        services: Vec::new(),
                        models: Vec::new(),
                    });
                s.first = s.first.min(start);
                s.last = s.last.max(end);
                s.totals.add(c);
                if let Some(user) = c.user_id.as_deref() {
                    add(&mut s.users, user);
                }
                add(&mut s.services, &c.service);
                add(&mut s.models, &c.model);
            }
            let Some(user) = c.user_id.as_deref() else {
                continue;
            };
            if let Some(session) = c.session_id.as_deref() {
                out.user_sessions
                    .entry((tenant, user, session))
                    .and_modify(|t| least(t, start))
                    .or_insert(start);
            }
            let u = out.users.entry((tenant, user)).or_insert_with(|| User {
                first: start,
                last: end,
                totals: Totals::default(),
                duration_ms: 0.0,
                latency: [0; BUCKETS],
            });
            u.first = u.first.min(start);
            u.last = u.last.max(end);
            u.totals.add(c);
            u.duration_ms += c.duration_ms;
            u.latency[(c.latency_bucket.clamp(0, MAX_BUCKET)) as usize] += 1;
            let day = start
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| (d.as_secs() / 86_400) as i32);
            out.user_days
                .entry((tenant, user, day, c.model.as_str()))
                .or_default()
                .add(c);
        }
        out
    }

    /// Whether any call named a session.
    pub fn has_sessions(&self) -> bool {
        !self.sessions.is_empty()
    }

    /// Whether any call named a user.
    pub fn has_users(&self) -> bool {
        !self.users.is_empty()
    }

    /// The parameters of [`SESSIONS_UPSERT`].
    pub fn session_columns(&self) -> SessionColumns<'_> {
        let mut c = SessionColumns::default();
        for ((tenant, session, trace), start) in &self.session_traces {
            c.pair_tenant.push(tenant);
            c.pair_session.push(session);
            c.pair_trace.push(&trace[..]);
            c.pair_start.push(*start);
        }
        for ((tenant, session), s) in &self.sessions {
            c.tenant.push(tenant);
            c.session.push(session);
            c.first.push(s.first);
            c.last.push(s.last);
            c.totals.push(&s.totals);
            c.users.push(joined(&s.users));
            c.services.push(joined(&s.services));
            c.models.push(joined(&s.models));
        }
        c
    }

    /// The parameters of [`USERS_UPSERT`].
    pub fn user_columns(&self) -> UserColumns<'_> {
        let mut c = UserColumns::default();
        for ((tenant, user, session), first) in &self.user_sessions {
            c.pair_tenant.push(tenant);
            c.pair_user.push(user);
            c.pair_session.push(session);
            c.pair_first.push(*first);
        }
        for ((tenant, user), u) in &self.users {
            c.tenant.push(tenant);
            c.user.push(user);
            c.first.push(u.first);
            c.last.push(u.last);
            c.totals.push(&u.totals);
            c.duration_ms.push(u.duration_ms);
            let latency: Vec<String> = u.latency.iter().map(i64::to_string).collect();
            c.latency.push(latency.join(","));
        }
        c
    }

    /// The parameters of [`USER_DAYS_UPSERT`].
    pub fn user_day_columns(&self) -> UserDayColumns<'_> {
        let mut c = UserDayColumns::default();
        for ((tenant, user, day, model), t) in &self.user_days {
            c.tenant.push(tenant);
            c.user.push(user);
            c.day.push(*day);
            c.model.push(model);
            c.totals.push(t);
        }
        c
    }
}

fn joined(set: &[&str]) -> String {
    let mut set = set.to_vec();
    set.sort_unstable();
    set.join(&SEPARATOR.to_string())
}

/// Counts as one array per column.
#[derive(Debug, Default)]
pub struct TotalColumns {
    /// Calls.
    pub calls: Vec<i64>,
    /// Calls with an error status.
    pub errors: Vec<i64>,
    /// Input tokens.
    pub input: Vec<i64>,
    /// Output tokens.
    pub output: Vec<i64>,
    /// Cost, USD.
    pub cost: Vec<f64>,
}

impl TotalColumns {
    fn push(&mut self, t: &Totals) {
        self.calls.push(t.calls);
        self.errors.push(t.errors);
        self.input.push(t.input);
        self.output.push(t.output);
        self.cost.push(t.cost);
    }
}

/// The parameters of [`SESSIONS_UPSERT`], in its order.
#[derive(Debug, Default)]
pub struct SessionColumns<'a> {
    /// Pairs: tenant.
    pub pair_tenant: Vec<&'a str>,
    /// Pairs: session.
    pub pair_session: Vec<&'a str>,
    /// Pairs: trace.
    pub pair_trace: Vec<&'a [u8]>,
    /// Pairs: the trace's first call in the session.
    pub pair_start: Vec<SystemTime>,
    /// Tenant.
    pub tenant: Vec<&'a str>,
    /// Session.
    pub session: Vec<&'a str>,
    /// First call's start.
    pub first: Vec<SystemTime>,
    /// Last call's end.
    pub last: Vec<SystemTime>,
    /// Counts.
    pub totals: TotalColumns,
    /// Users, joined.
    pub users: Vec<String>,
    /// Services, joined.
    pub services: Vec<String>,
    /// Models, joined.
    pub models: Vec<String>,
}

/// The parameters of [`USERS_UPSERT`], in its order.
#[derive(Debug, Default)]
pub struct UserColumns<'a> {
    /// Pairs: tenant.
    pub pair_tenant: Vec<&'a str>,
    /// Pairs: user.
    pub pair_user: Vec<&'a str>,
    /// Pairs: session.
    pub pair_session: Vec<&'a str>,
    /// Pairs: the user's first call in the session.
    pub pair_first: Vec<SystemTime>,
    /// Tenant.
    pub tenant: Vec<&'a str>,
    /// User.
    pub user: Vec<&'a str>,
    /// First call's start.
    pub first: Vec<SystemTime>,
    /// Last call's end.
    pub last: Vec<SystemTime>,
    /// Counts.
    pub totals: TotalColumns,
    /// Summed call durations, ms.
    pub duration_ms: Vec<f64>,
    /// Latency histograms, comma-separated counts.
    pub latency: Vec<String>,
}

/// The parameters of [`USER_DAYS_UPSERT`], in its order.
#[derive(Debug, Default)]
pub struct UserDayColumns<'a> {
    /// Tenant.
    pub tenant: Vec<&'a str>,
    /// User.
    pub user: Vec<&'a str>,
    /// Days since the epoch (UTC).
    pub day: Vec<i32>,
    /// Model.
    pub model: Vec<&'a str>,
    /// Counts.
    pub totals: TotalColumns,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(
        trace: u8,
        span: u8,
        session: Option<&str>,
        user: Option<&str>,
        at_s: u64,
    ) -> CallRecord {
        CallRecord {
            tenant: "t".into(),
            trace_id: [trace; 16],
            span_id: [span; 8],
            start: UNIX_EPOCH + Duration::from_secs(at_s),
            service: "chat".into(),
            environment: String::new(),
            provider: "openai".into(),
            model: "gpt-4o".into(),
            request_model: None,
            operation: "chat".into(),
            duration_ms: 1500.0,
            is_error: span == 3,
            input_tokens: Some(10),
            output_tokens: Some(5),
            cache_read_tokens: None,
            cache_write_tokens: None,
            reasoning_tokens: None,
            cost_usd: Some(0.5),
            computed_cost_usd: Some(0.5),
            client_cost_usd: None,
            time_to_first_token_ms: None,
            finish_reasons: Vec::new(),
            user_id: user.map(str::to_owned),
            session_id: session.map(str::to_owned),
            agent: None,
            tool: None,
            prompt: None,
            completion: None,
            latency_bucket: observatory_schemas::histogram::bucket(1500.0),
            ttft_bucket: None,
        }
    }

    #[test]
    fn a_session_counts_each_trace_once_and_merges_in_any_order() {
        let calls = [
            call(1, 1, Some("s"), Some("u"), 200),
            call(1, 2, Some("s"), Some("u"), 100),
            call(2, 3, Some("s"), Some("v"), 300),
            call(3, 4, None, Some("u"), 50),
            call(4, 5, None, None, 10),
        ];
        let forward = Activity::of(&calls);
        let mut reversed = calls.to_vec();
        reversed.reverse();
        let backward = Activity::of(&reversed);
        for a in [&forward, &backward] {
            let s = a.session_columns();
            assert_eq!(s.pair_trace.len(), 2, "two traces in the session");
            assert_eq!(s.pair_start[0], UNIX_EPOCH + Duration::from_secs(100));
            assert_eq!(s.session, ["s"]);
            assert_eq!(s.totals.calls, [3]);
            assert_eq!(s.totals.errors, [1]);
            assert_eq!(s.users, [format!("u{SEPARATOR}v")]);
            assert_eq!(s.last, [UNIX_EPOCH + Duration::from_millis(301_500)]);
            let u = a.user_columns();
            assert_eq!(u.user, ["u", "v"]);
            assert_eq!(u.totals.calls, [3, 1]);
            assert_eq!(u.pair_user, ["u", "v"], "a session once per user");
            assert_eq!(u.first[0], UNIX_EPOCH + Duration::from_secs(50));
            let bucket = observatory_schemas::histogram::bucket(1500.0) as usize;
            assert_eq!(u.latency[0].split(',').nth(bucket), Some("3"));
            assert_eq!(u.latency[0].split(',').count(), BUCKETS);
            let d = a.user_day_columns();
            assert_eq!(d.user, ["u", "v"]);
            assert_eq!(d.totals.cost, [1.5, 0.5]);
        }
    }
}
