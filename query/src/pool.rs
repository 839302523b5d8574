//! `DB_POOL_MIN_SIZE`: PostgreSQL connections opened at start and kept
//! open, so that the first requests after a start or a quiet spell do not
//! pay for connecting. (`DB_POOL_MAX_SIZE` is the pool's own bound.)

use deadpool_postgres::Pool;
use std::time::Duration;

/// How often the pool is topped up to its minimum.
const CHECK_EVERY: Duration = Duration::from_secs(30);

/// Opens connections until the pool holds `min`, now and every
/// [`CHECK_EVERY`] (connections closed by the server or a failover are
/// replaced). Errors are logged; requests open connections as needed.
pub fn keep_min_open(pool: Pool, min: usize) {
    if min == 0 {
        return;
    }
    tokio::spawn(async move {
        loop {
            let missing = min.saturating_sub(pool.status().size);
            if missing > 0 {
                let opened = futures::future::join_all((0..missing).map(|_| pool.get())).await;
                let failed = opened.iter().filter(|c| c.is_err()).count();
                if failed > 0 {
                    tracing::warn!(
                        failed,
                        min,
                        "DB_POOL_MIN_SIZE: cannot open every connection yet"
                    );
                }
                drop(opened);
            }
            tokio::time::sleep(CHECK_EVERY).await;
        }
    });
}
