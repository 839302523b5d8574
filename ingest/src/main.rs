//! `observatory-collector`: wires configuration, logging, signals and the
//! collector together. All behaviour lives in the library.

use anyhow::Context as _;
use clap::Parser;
use observatory_collector::config::Args;
use tokio::sync::watch;

/// mimalloc: the hot path allocates per span and per message, and glibc's
/// allocator showed up at ~15% of the collector's CPU in profiles.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let config = Args::parse().into_config()?;
    observatory_plumbing::logging::init(config.log_format);
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
            observatory_plumbing::shutdown::signal().await;
            let _ = stop_tx.send(true);
        });
        bound.run(stop_rx).await?;
        Ok(())
    })
}
