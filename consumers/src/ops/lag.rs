//! `observatory-consumer lag --group G`: how far any consumer group is
//! behind, per partition: the log end minus the group's committed offset,
//! the same number a running sink exports as
//! `observatory_consumer_lag_messages{group,topic,partition}`.
//!
//! It only reads (OffsetFetch, ListOffsets), so it is safe against a running
//! group, and works for groups that are not ours.

use crate::ops::args::LagArgs;
use crate::ops::group::{GroupClient, PartitionOffsets};
use crate::ops::OpsError;
use std::fmt::Write as _;

/// Runs `lag`; returns what to print.
pub fn run(args: &LagArgs) -> Result<String, OpsError> {
    let g = &args.group;
    let client = GroupClient::new(g)?;
    let rows = client.offsets(&g.topic)?;
    Ok(format_lag(&g.group, &g.topic, &rows, &client.describe()))
}

/// One line per partition, then the total.
pub fn format_lag(group: &str, topic: &str, rows: &[PartitionOffsets], membership: &str) -> String {
    let mut out = format!(
        "{:<30} {:<30} {:>9} {:>16} {:>16} {:>12}\n",
        "GROUP", "TOPIC", "PARTITION", "COMMITTED", "LOG-END", "LAG"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{:<30} {:<30} {:>9} {:>16} {:>16} {:>12}",
            group,
            topic,
            r.partition,
            r.committed.map_or_else(|| "-".into(), |c| c.to_string()),
            r.log_end,
            r.lag().map_or_else(|| "-".into(), |l| l.to_string()),
        );
    }
    let total: i64 = rows.iter().filter_map(PartitionOffsets::lag).sum();
    let uncommitted = rows.iter().filter(|r| r.committed.is_none()).count();
    let _ = write!(out, "total lag {total}");
    if uncommitted > 0 {
        let _ = write!(
            out,
            " ({uncommitted} partition(s) with no committed offset, not counted)"
        );
    }
    let _ = writeln!(out, "; group {group}: {membership}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_total_counts_committed_partitions_only() {
        let rows = [
            PartitionOffsets {
                partition: 0,
                committed: Some(5),
                log_start: 0,
                log_end: 8,
            },
            PartitionOffsets {
                partition: 1,
                committed: Some(2),
                log_start: 0,
                log_end: 2,
            },
            PartitionOffsets {
                partition: 2,
                committed: None,
                log_start: 0,
                log_end: 7,
            },
        ];
        let text = format_lag("g", "t", &rows, "2 live member(s), state Stable");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[1].split_whitespace().collect::<Vec<_>>(),
            ["g", "t", "0", "5", "8", "3"]
        );
        assert_eq!(
            lines[3].split_whitespace().collect::<Vec<_>>(),
            ["g", "t", "2", "-", "7", "-"]
        );
        assert!(
            lines[4].starts_with("total lag 3 (1 partition(s)"),
            "{}",
            lines[4]
        );
        assert!(lines[4].ends_with("2 live member(s), state Stable"));
    }
}
