//! `observatory-consumer`: wires subcommands, logging and signals.

use clap::Parser;
use observatory_consumer::config::{Cli, Command, DlqAction};
use observatory_consumer::{compact, ops, replay, tempo, timescale};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// mimalloc: the sink allocates per row and per JSON document.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Blocking threads the runtime may start. A local-folder store does its
/// file I/O on them, and each thread keeps the memory its allocator freed:
/// with tokio's default of 512, a compactor on a local folder grew to about
/// 200 threads and a GiB of RSS. What holds one: a source loop waiting for
/// its consumer thread (at most four: traces, metrics, logs, scores), the
/// scores writer, and the local store's file operations of the moment;
/// none of them waits for another blocking task, so a full pool only
/// queues.
const MAX_BLOCKING_THREADS: usize = 16;

fn main() -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .build()?
        .block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    observatory_plumbing::logging::init_from(&cli.log_format)?;
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            observatory_plumbing::shutdown::signal().await;
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
