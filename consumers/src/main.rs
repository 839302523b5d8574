//! `observatory-consumer`: wires subcommands, logging and signals.

use clap::Parser;
use observatory_consumer::config::{Cli, Command, DlqAction};
use observatory_consumer::{compact, ops, replay, tempo, timescale};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tracing_subscriber::EnvFilter;

/// mimalloc: the sink allocates per row and per JSON document.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    match cli.log_format.as_str() {
        "json" => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init(),
        "text" => tracing_subscriber::fmt().with_env_filter(filter).init(),
        other => anyhow::bail!("invalid LOG_FORMAT: {other:?} (text or json)"),
    }
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM received"),
                _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
            }
            stop.store(true, Ordering::Relaxed);
        });
    }
    match cli.command {
        Command::Timescale(args) => timescale::run(*args, stop).await?,
        Command::Tempo(args) => tempo::run(*args, stop).await?,
        Command::Compact(args) => compact::run(*args, stop).await?,
        Command::Migrate(db) => {
            let mut writer = timescale::writer::Writer::new(db.check()?, true);
            let client = writer.client().await?;
            let flavor = timescale::migrate::migrate(client).await?;
            println!("migrations applied ({flavor:?})");
        }
        Command::Replay(args) => replay::replay::run(*args, stop).await?,
        Command::Dlq(args) => match args.action {
            DlqAction::List(list) => replay::dlq::list(list).await?,
            DlqAction::Replay(again) => replay::dlq::replay(again, stop).await?,
        },
        Command::Offsets(args) => {
            let out = tokio::task::spawn_blocking(move || ops::offsets::run(&args)).await??;
            print!("{out}");
        }
        Command::Lag(args) => {
            let out = tokio::task::spawn_blocking(move || ops::lag::run(&args)).await??;
            print!("{out}");
        }
    }
    Ok(())
}
