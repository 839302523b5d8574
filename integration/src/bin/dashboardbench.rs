//! How long the "LLM usage and cost" dashboard's queries take on a large
//! tenant, as Grafana sends them (`observatory_integration::grafana`).
//!
//! A fresh database on the stack's PostgreSQL is migrated and filled, in
//! SQL, with `--days` of one tenant's rollups, as the PostgreSQL sink writes
//! them: every minute, `--services` × `--models` groups in `llm_rollup_1m`
//! (and their hours in `llm_rollup_1h`), seven latency and time-to-first-
//! token buckets per group and minute in `llm_latency_1m`/`_1h`, `--users`
//! users a day in `user_calls_1d`, and two budgets. Then every query of the
//! dashboard (its variables first) runs `--repeats` times for the ranges
//! Grafana users pick, with the interval Grafana gives a full-width panel:
//!
//! ```text
//! dashboardbench --days 30 --services 8 --models 6 --users 20000
//! ```
//!
//! Prints, per range and panel, the median and worst time and the rows
//! returned, and the slowest query of each range. The database is dropped
//! at the end (`--keep` keeps it).

use clap::Parser;
use observatory_integration::grafana::{dashboard, panel_queries, rows, Grafana};
use observatory_integration::postgres::{connect, TestDb};
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
struct Args {
    /// Days of rollups.
    #[arg(long, default_value_t = 30)]
    days: u32,
    /// Services of the tenant.
    #[arg(long, default_value_t = 8)]
    services: u32,
    /// Models (over three providers).
    #[arg(long, default_value_t = 6)]
    models: u32,
    /// Users calling each day.
    #[arg(long, default_value_t = 20_000)]
    users: u32,
    /// Runs of each query (the median and the worst are printed).
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Keep the database.
    #[arg(long)]
    keep: bool,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let db = TestDb::create().await;
    let mut client = db.client().await;
    observatory_consumer::timescale::migrate::migrate(&mut client)
        .await
        .expect("migrate");
    let today = observatory_consumer::timescale::partitions::Partitions::today();
    let days: Vec<i64> = (today - i64::from(args.days) - 1..=today + 1).collect();
    observatory_consumer::timescale::partitions::Partitions::create(&mut client, &days)
        .await
        .expect("partitions");

    let started = Instant::now();
    fill(&client, &args).await;
    client.batch_execute("ANALYZE").await.expect("analyze");
    let sizes = rows(
        &client,
        "SELECT (SELECT count(*) FROM llm_rollup_1m), (SELECT count(*) FROM llm_latency_1m), \
         (SELECT count(*) FROM user_calls_1d), pg_size_pretty(pg_database_size(current_database()))",
    )
    .await;
    let s = &sizes[0];
    println!(
        "filled in {:.0?}: {} llm_rollup_1m rows, {} llm_latency_1m rows, {} user_calls_1d rows; database {}",
        started.elapsed(),
        s[0].as_deref().unwrap_or("?"),
        s[1].as_deref().unwrap_or("?"),
        s[2].as_deref().unwrap_or("?"),
        s[3].as_deref().unwrap_or("?"),
    );

    let usage = dashboard("llm-usage.json");
    let queries = panel_queries(&usage, "rawSql");
    // Ranges as users pick them, with the interval Grafana gives a panel
    // about 1 000 pixels wide (range / 1 000, rounded as Grafana rounds).
    let ranges: [(&str, u64, u64); 4] = [
        ("1h", 3_600, 5),
        ("24h", 86_400, 60),
        ("7d", 7 * 86_400, 600),
        ("30d", 30 * 86_400, 3_600),
    ];
    for (label, range, interval) in ranges {
        if range > u64::from(args.days) * 86_400 {
            continue;
        }
        let mut grafana = Grafana::last(Duration::from_secs(range), Duration::ZERO, interval);
        for var in usage["templating"]["list"].as_array().unwrap() {
            let Some(query) = var["query"].as_str().filter(|_| var["type"] == "query") else {
                continue;
            };
            let (took, listed) = timed(&client, &grafana.expand(query), args.repeats).await;
            println!(
                "{label:>4} variable {:<12} {:>8.1} ms median {:>8.1} ms worst {:>6} rows",
                var["name"].as_str().unwrap(),
                ms(took[took.len() / 2]),
                ms(took[took.len() - 1]),
                listed
            );
            grafana.variable(var, &rows(&client, &grafana.expand(query)).await);
        }
        let mut slowest = (Duration::ZERO, String::new());
        let mut total = Duration::ZERO;
        for (title, query) in &queries {
            let (took, n) = timed(&client, &grafana.expand(query), args.repeats).await;
            let median = took[took.len() / 2];
            total += median;
            if median > slowest.0 {
                slowest = (median, title.clone());
            }
            println!(
                "{label:>4} {title:<45} {:>8.1} ms median {:>8.1} ms worst {n:>6} rows",
                ms(median),
                ms(took[took.len() - 1])
            );
        }
        println!(
            "{label:>4} all {} panels: {:.0} ms (sum of medians); slowest: {} {:.0} ms",
            queries.len(),
            ms(total),
            slowest.1,
            ms(slowest.0)
        );
    }
    drop(client);
    if !args.keep {
        let admin = connect(
            &std::env::var("DATABASE_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned()),
        )
        .await;
        admin
            .batch_execute(&format!("DROP DATABASE {} WITH (FORCE)", db.name))
            .await
            .expect("drop the database");
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The sorted times of `repeats` runs, and the rows of the last.
async fn timed(
    client: &tokio_postgres::Client,
    sql: &str,
    repeats: usize,
) -> (Vec<Duration>, usize) {
    let mut took = Vec::new();
    let mut n = 0;
    for _ in 0..repeats.max(1) {
        let start = Instant::now();
        n = rows(client, sql).await.len();
        took.push(start.elapsed());
    }
    took.sort();
    (took, n)
}

/// One tenant's rollups as the sink writes them, for every minute of the
/// range and every group.
async fn fill(client: &tokio_postgres::Client, args: &Args) {
    let (days, services, models, users) = (args.days, args.services, args.models, args.users);
    let groups = format!("generate_series(1, {services}) s, generate_series(1, {models}) mo");
    let group_cols = "'service-' || s, 'provider-' || (mo % 3), 'model-' || mo, 'production'";
    for (table, step, scale) in [
        ("llm_rollup_1m", "minute", 1),
        ("llm_rollup_1h", "hour", 60),
    ] {
        client
            .batch_execute(&format!(
                "INSERT INTO {table} (bucket, tenant, service, provider, model, environment, calls, errors, \
                 input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens, \
                 cost_usd, unpriced_calls, duration_ms_sum) \
                 SELECT t, 'bench', {group_cols}, {scale} * (10 + (s + mo) % 7), {scale} * ((s * mo) % 2), \
                 {scale} * 5000, {scale} * 800, 0, 0, 0, {scale} * 0.05 * mo, 0, {scale} * 12000.0 \
                 FROM generate_series(date_trunc('{step}', now()) - interval '{days} days', now(), interval '1 {step}') t, {groups}"
            ))
            .await
            .unwrap_or_else(|e| panic!("fill {table}: {e}"));
    }
    // Seven buckets per group and minute: four of call duration, three of
    // time to first token.
    for (table, step, scale) in [
        ("llm_latency_1m", "minute", 1),
        ("llm_latency_1h", "hour", 60),
    ] {
        client
            .batch_execute(&format!(
                "INSERT INTO {table} (bucket, tenant, service, provider, model, environment, metric, le, count) \
                 SELECT t, 'bench', {group_cols}, b.metric, b.le + mo, {scale} * (1 + (s + b.le) % 5) \
                 FROM generate_series(date_trunc('{step}', now()) - interval '{days} days', now(), interval '1 {step}') t, {groups}, \
                 (VALUES (0::int2, 30::int2), (0, 34), (0, 38), (0, 42), (1, 26), (1, 30), (1, 34)) b(metric, le)"
            ))
            .await
            .unwrap_or_else(|e| panic!("fill {table}: {e}"));
    }
    client
        .batch_execute(&format!(
            "INSERT INTO user_calls_1d (tenant, user_id, day, model, llm_calls, errors, input_tokens, output_tokens, cost_usd) \
             SELECT 'bench', 'user-' || u, d::date, 'model-' || (u % {models} + 1), 1 + u % 20, u % 2, 5000, 800, 0.01 * (1 + u % 50) \
             FROM generate_series(current_date - {days}, current_date, interval '1 day') d, generate_series(1, {users}) u; \
             INSERT INTO budgets (tenant, scope, service, monthly_usd, updated_at, updated_by) VALUES \
             ('bench', 'tenant', '', 100000, now(), 'bench'), ('bench', 'service', 'service-1', 5000, now(), 'bench')"
        ))
        .await
        .expect("fill users and budgets");
}
