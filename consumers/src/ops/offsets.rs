//! `observatory-consumer offsets show|reset`: a group's committed offsets,
//! and moving them, like Kafka's `kafka-consumer-groups --reset-offsets`.
//!
//! Guarantees of `reset`:
//! - it refuses while the group has a live member (a running sink would
//!   overwrite the new offsets with its next commit, or have its batch
//!   committed under it); stop the sink's replicas first;
//! - the plan is printed before anything moves, and `--dry-run` stops there;
//! - every new offset is clamped into the log (`[log start, log end]`), as
//!   Kafka's tool does, so a reset never points at messages that are gone;
//! - after the commit the offsets are read back and compared.
//!
//! Moving a sink's group back is safe for the stores. The PostgreSQL sink
//! writes idempotently, so what is read again is deduplicated (rollups
//! included). The Tempo sink skips what a complete block holds when it
//! reads again from a cut's first offset (committed offsets and the log's
//! start always are); from any other offset it may write messages up to
//! the next cut into a second block, so a range is rewritten with `replay`
//! instead (docs/operations.md, "The Tempo sink").

use crate::ops::args::{GroupArgs, OffsetsAction, OffsetsArgs, ResetArgs, Target};
use crate::ops::group::{GroupClient, PartitionOffsets};
use crate::ops::OpsError;
use std::fmt::Write as _;

/// One line of a reset plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Move {
    /// The partition and where it is now.
    pub now: PartitionOffsets,
    /// The committed offset it gets.
    pub new: i64,
}

/// Runs `offsets show` or `offsets reset`; returns what to print.
pub fn run(args: &OffsetsArgs) -> Result<String, OpsError> {
    match &args.action {
        OffsetsAction::Show(group) => show(group),
        OffsetsAction::Reset(reset) => self::reset(reset),
    }
}

fn show(args: &GroupArgs) -> Result<String, OpsError> {
    let client = GroupClient::new(args)?;
    let rows = client.offsets(&args.topic)?;
    Ok(format_show(
        &args.group,
        &args.topic,
        &rows,
        &client.describe(),
    ))
}

fn reset(args: &ResetArgs) -> Result<String, OpsError> {
    let g = &args.group;
    let client = GroupClient::new(g)?;
    // Not knowing is a refusal too: a reset under a running group is never
    // a guess.
    let (members, _) = client.members().map_err(|e| OpsError::CannotDescribe {
        group: g.group.clone(),
        reason: e.to_string(),
    })?;
    if !members.is_empty() && !args.dry_run {
        return Err(OpsError::GroupActive {
            group: g.group.clone(),
            members: members.len(),
        });
    }
    let rows = client.offsets(&g.topic)?;
    let target = args.target();
    let mut moves = Vec::with_capacity(rows.len());
    for row in &rows {
        let wanted = match target {
            Target::Datetime(at) => client.offset_at(&g.topic, row, at)?,
            other => wanted_offset(row, other)?,
        };
        moves.push(Move {
            now: *row,
            new: wanted.clamp(row.log_start, row.log_end),
        });
    }
    let mut out = format_plan(client.group(), &g.topic, &moves);
    if args.dry_run {
        if !members.is_empty() {
            let _ = writeln!(
                out,
                "note: the group has {} live member(s); without --dry-run this reset is refused",
                members.len()
            );
        }
        out.push_str("dry run: nothing was changed\n");
        return Ok(out);
    }
    let offsets: Vec<(i32, i64)> = moves.iter().map(|m| (m.now.partition, m.new)).collect();
    client.commit(&g.topic, &offsets)?;
    let _ = writeln!(
        out,
        "committed {} offset(s) for group {}",
        offsets.len(),
        client.group()
    );
    Ok(out)
}

/// Where `target` puts a partition (before clamping into the log); every
/// target but a time, which needs the broker.
pub fn wanted_offset(row: &PartitionOffsets, target: Target) -> Result<i64, OpsError> {
    match target {
        Target::Earliest => Ok(row.log_start),
        Target::Latest => Ok(row.log_end),
        Target::ShiftBy(n) => row
            .committed
            .map(|c| c.saturating_add(n))
            .ok_or(OpsError::NothingToShift(row.partition)),
        Target::Datetime(_) => Err(OpsError::Unexpected(
            "a time is resolved by the broker".into(),
        )),
    }
}

fn offset_text(o: Option<i64>) -> String {
    o.map_or_else(|| "-".to_owned(), |o| o.to_string())
}

/// The table `offsets show` prints: one line per partition.
pub fn format_show(
    group: &str,
    topic: &str,
    rows: &[PartitionOffsets],
    membership: &str,
) -> String {
    let mut out = format!(
        "{:<30} {:<30} {:>9} {:>16} {:>16} {:>16} {:>12}\n",
        "GROUP", "TOPIC", "PARTITION", "COMMITTED", "LOG-START", "LOG-END", "LAG"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{:<30} {:<30} {:>9} {:>16} {:>16} {:>16} {:>12}",
            group,
            topic,
            r.partition,
            offset_text(r.committed),
            r.log_start,
            r.log_end,
            offset_text(r.lag()),
        );
    }
    let _ = writeln!(out, "group {group}: {membership}");
    out
}

/// The plan `offsets reset` prints: one line per partition.
pub fn format_plan(group: &str, topic: &str, moves: &[Move]) -> String {
    let mut out = format!(
        "{:<30} {:<30} {:>9} {:>16} {:>16} {:>16} {:>16}\n",
        "GROUP", "TOPIC", "PARTITION", "CURRENT", "NEW", "LOG-START", "LOG-END"
    );
    for m in moves {
        let _ = writeln!(
            out,
            "{:<30} {:<30} {:>9} {:>16} {:>16} {:>16} {:>16}",
            group,
            topic,
            m.now.partition,
            offset_text(m.now.committed),
            m.new,
            m.now.log_start,
            m.now.log_end,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(committed: Option<i64>, log_start: i64, log_end: i64) -> PartitionOffsets {
        PartitionOffsets {
            partition: 3,
            committed,
            log_start,
            log_end,
        }
    }

    #[test]
    fn targets_land_in_the_log() {
        let r = row(Some(40), 10, 100);
        assert_eq!(wanted_offset(&r, Target::Earliest).unwrap(), 10);
        assert_eq!(wanted_offset(&r, Target::Latest).unwrap(), 100);
        assert_eq!(wanted_offset(&r, Target::ShiftBy(-15)).unwrap(), 25);
        // Clamping happens in the plan: past either end lands on that end.
        assert_eq!(
            wanted_offset(&r, Target::ShiftBy(-100))
                .unwrap()
                .clamp(r.log_start, r.log_end),
            10
        );
        assert_eq!(
            wanted_offset(&r, Target::ShiftBy(i64::MAX))
                .unwrap()
                .clamp(r.log_start, r.log_end),
            100
        );
    }

    #[test]
    fn a_shift_needs_a_committed_offset() {
        assert!(matches!(
            wanted_offset(&row(None, 0, 5), Target::ShiftBy(1)),
            Err(OpsError::NothingToShift(3))
        ));
    }

    #[test]
    fn lag_is_log_end_minus_committed() {
        assert_eq!(row(Some(40), 0, 100).lag(), Some(60));
        assert_eq!(row(Some(100), 0, 100).lag(), Some(0));
        assert_eq!(row(None, 0, 100).lag(), None);
    }

    #[test]
    fn tables_have_one_line_per_partition() {
        let text = format_show(
            "g",
            "t",
            &[row(Some(4), 0, 9), row(None, 0, 2)],
            "0 live member(s), state Empty",
        );
        let lines: Vec<Vec<&str>> = text
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(lines[0][3], "COMMITTED");
        assert_eq!(lines[1], ["g", "t", "3", "4", "0", "9", "5"]);
        assert_eq!(lines[2], ["g", "t", "3", "-", "0", "2", "-"]);
        let plan = format_plan(
            "g",
            "t",
            &[Move {
                now: row(Some(4), 0, 9),
                new: 0,
            }],
        );
        assert_eq!(
            plan.lines()
                .nth(1)
                .unwrap()
                .split_whitespace()
                .collect::<Vec<_>>(),
            ["g", "t", "3", "4", "0", "0", "9"]
        );
    }
}
