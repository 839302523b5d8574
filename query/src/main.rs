//! `observatory-api`: wires configuration, logging, the database pool and
//! the server; `observatory-api token` mints operator tokens.

use clap::Parser;
use observatory_api::audit::Auditor;
use observatory_api::blocks::Blocks;
use observatory_api::cache::Cache;
use observatory_api::config::{Cli, Command};
use observatory_api::metrics::Metrics;
use observatory_api::routes::{routes, State};
use std::sync::Arc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    observatory_plumbing::logging::init_from(&cli.log_format)?;
    let keys = cli.serve.jwt.keys()?;
    if let Some(Command::Token(t)) = &cli.command {
        println!("{}", keys.mint(&t.sub, &t.tenant, t.role()?, t.ttl)?);
        return Ok(());
    }
    let mut pg: tokio_postgres::Config = cli
        .serve
        .database_url
        .parse()
        .map_err(|e| anyhow::anyhow!("invalid DATABASE_URL: {e}"))?;
    if let Some(password) = &cli.serve.db_password {
        pg.password(password);
    }
    pg.options(format!(
        "-c statement_timeout={}",
        cli.serve.db_statement_timeout.as_millis().max(1)
    ));
    let root_pem = match &cli.serve.db_ssl_root_cert {
        Some(path) => Some(
            std::fs::read(path)
                .map_err(|e| anyhow::anyhow!("DB_SSL_ROOT_CERT {}: {e}", path.display()))?,
        ),
        None => None,
    };
    let tls = observatory_schemas::postgres_tls::configure(
        &mut pg,
        cli.serve.db_ssl_mode,
        root_pem.as_deref(),
    )?;
    let manager = deadpool_postgres::Manager::new(pg, tls);
    let max = cli.serve.db_pool_max_size.max(1);
    let min = cli.serve.db_pool_min_size;
    if min > max {
        anyhow::bail!("invalid DB_POOL_MIN_SIZE: {min} is more than DB_POOL_MAX_SIZE ({max})");
    }
    let db = deadpool_postgres::Pool::builder(manager)
        .max_size(max)
        .build()?;
    observatory_api::pool::keep_min_open(db.clone(), min);
    let metrics = Arc::new(Metrics::default());
    let audit_kafka = cli.serve.audit.kafka()?;
    if let Some(kafka) = audit_kafka.as_ref().filter(|_| cli.serve.audit.audit_log) {
        observatory_api::audit::ensure_topic(kafka);
    }
    let auditor = Auditor::with_switch(
        cli.serve.audit.audit_log,
        audit_kafka.as_ref(),
        metrics.clone(),
    )?;
    let scores = if cli.serve.kafka_scores_topic.trim().is_empty() {
        None
    } else {
        let extra = cli.serve.audit.producer_settings()?;
        let topic = cli.serve.kafka_scores_topic.trim();
        if !(1..=10_000).contains(&cli.serve.kafka_scores_partitions) {
            anyhow::bail!("invalid KAFKA_SCORES_PARTITIONS: 1 to 10000");
        }
        observatory_api::topics::ensure(
            &cli.serve.audit.kafka_brokers,
            topic,
            cli.serve.kafka_scores_partitions,
            &extra,
        );
        Some(Arc::new(observatory_api::scores::publish::Publisher::new(
            &cli.serve.audit.kafka_brokers,
            topic,
            &extra,
        )?))
    };
    keys.spawn_jwks_refresher(std::time::Duration::from_secs(10));
    let state = State {
        keys,
        db,
        cache: Cache::connect(&cli.serve.cache, metrics.clone()).await,
        blocks: Blocks::open(&cli.serve.blocks)?
            .map(|b| b.counting_reads(metrics.blocks_read_bytes.clone())),
        metrics,
        trace_max_spans: cli.serve.trace_max_spans.max(1),
        search_time_budget: cli.serve.search_time_budget,
        traces_retention: cli.serve.traces_retention()?,
        pipeline: Arc::new(cli.serve.pipeline_metrics.0),
        scores,
        pipeline_tenants: Arc::new(
            cli.serve
                .pipeline_tenants
                .iter()
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty())
                .collect(),
        ),
    };
    let listener = tokio::net::TcpListener::bind(cli.serve.api_addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on API_ADDR {}: {e}", cli.serve.api_addr))?;
    tracing::info!(addr = %cli.serve.api_addr, audit_kafka = audit_kafka.is_some(), "serving");
    observatory_api::server::serve(
        listener,
        routes(state),
        auditor,
        observatory_plumbing::shutdown::signal(),
    )
    .await;
    Ok(())
}
