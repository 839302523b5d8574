//! The lines a replay prints: progress per partition (messages, spans,
//! rate, ETA) while it runs, and its summary at the end. Pure formatting.
//!
//! The summary's last line is `summary messages=<n> spans=<n>
//! dead_letters=<n> already_stored=<n> partitions=<n> seconds=<s>
//! complete=<bool>`: stable `key=value` pairs for scripts (`already_stored`:
//! messages a Tempo replay skipped because a block holds them).

use super::Outcome;
use crate::source::RangeProgress;
use std::collections::BTreeMap;
use std::time::Duration;

/// One line per partition not yet done: where it is, its rate and its ETA.
pub fn progress_lines(partitions: &BTreeMap<i32, RangeProgress>, elapsed: Duration) -> Vec<String> {
    let secs = elapsed.as_secs_f64().max(0.001);
    partitions
        .iter()
        .map(|(p, r)| {
            let total = (r.end - r.first).max(0);
            let read = (r.next - r.first).clamp(0, total);
            let rate = r.messages as f64 / secs;
            let left = (r.end - r.next).max(0);
            let eta = if r.done() {
                "done".to_owned()
            } else if rate > 0.0 {
                format!("eta {}", humantime::format_duration(round_secs(left as f64 / rate)))
            } else {
                "eta unknown".to_owned()
            };
            format!(
                "progress partition={p} offsets={read}/{total} ({pct:.0}%) messages={} spans={} rate={rate:.1}/s {eta}",
                r.messages,
                r.spans,
                pct = if total == 0 { 100.0 } else { read as f64 * 100.0 / total as f64 },
            )
        })
        .collect()
}

fn round_secs(secs: f64) -> Duration {
    Duration::from_secs(secs.ceil().clamp(0.0, 1e9) as u64)
}

/// The summary: one line per partition, then the totals.
pub fn summary_lines(title: &str, outcome: &Outcome) -> Vec<String> {
    let mut lines = vec![title.to_owned()];
    for (p, r) in &outcome.partitions {
        lines.push(format!(
            "partition={p} from={} to={} messages={} spans={}{}",
            r.first,
            r.end,
            r.messages,
            r.spans,
            if r.done() { "" } else { " (not finished)" }
        ));
    }
    let messages: u64 = outcome.partitions.values().map(|r| r.messages).sum();
    let spans: u64 = outcome.partitions.values().map(|r| r.spans).sum();
    lines.push(format!(
        "summary messages={messages} spans={spans} dead_letters={} already_stored={} partitions={} seconds={:.1} complete={}",
        outcome.dead_letters,
        outcome.already_stored,
        outcome.partitions.len(),
        outcome.elapsed.as_secs_f64(),
        outcome.complete
    ));
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(first: i64, end: i64, next: i64, messages: u64) -> RangeProgress {
        RangeProgress {
            first,
            end,
            next,
            messages,
            spans: messages * 3,
        }
    }

    #[test]
    fn progress_shows_rate_and_eta() {
        let mut parts = BTreeMap::new();
        parts.insert(0, part(100, 200, 150, 50));
        parts.insert(3, part(10, 10, 10, 0));
        let lines = progress_lines(&parts, Duration::from_secs(10));
        assert_eq!(
            lines[0],
            "progress partition=0 offsets=50/100 (50%) messages=50 spans=150 rate=5.0/s eta 10s"
        );
        assert_eq!(
            lines[1],
            "progress partition=3 offsets=0/0 (100%) messages=0 spans=0 rate=0.0/s done"
        );
    }

    #[test]
    fn summary_totals() {
        let mut partitions = BTreeMap::new();
        partitions.insert(1, part(0, 4, 4, 4));
        partitions.insert(2, part(5, 7, 7, 2));
        let outcome = Outcome {
            partitions,
            dead_letters: 1,
            already_stored: 0,
            elapsed: Duration::from_millis(2500),
            complete: true,
        };
        let lines = summary_lines("replay", &outcome);
        assert_eq!(lines[1], "partition=1 from=0 to=4 messages=4 spans=12");
        assert_eq!(
            lines.last().unwrap(),
            "summary messages=6 spans=18 dead_letters=1 already_stored=0 partitions=2 seconds=2.5 complete=true"
        );
    }
}
