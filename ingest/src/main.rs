//! `observatory-collector`: wires configuration, logging, signals and the
//! collector together. All behaviour lives in the library.

use anyhow::Context as _;
use clap::Parser;
use observatory_collector::config::{Args, LogFormat};
use tokio::sync::watch;
use tracing_subscriber::EnvFilter;

/// mimalloc: the hot path allocates per span and per message, and glibc's
/// allocator showed up at ~15% of the collector's CPU in profiles.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let config = Args::parse().into_config()?;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    match config.log_format {
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init(),
        LogFormat::Text => tracing_subscriber::fmt().with_env_filter(filter).init(),
    }
    tracing::info!(?config, "configuration");

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.num_workers)
        .thread_name("collector-worker")
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let bound = observatory_collector::bind(config).await?;
        let (stop_tx, stop_rx) = watch::channel(false);
        tokio::spawn(async move {
            wait_for_signal().await;
            let _ = stop_tx.send(true);
        });
        bound.run(stop_rx).await?;
        Ok(())
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}
