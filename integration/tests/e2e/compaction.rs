//! `observatory-consumer compact` against real buckets (the stack's S3
//! server and a local folder): a day of one-minute blocks compacts into a
//! few blocks and every span is then in exactly one block, found by our API
//! and by Grafana Tempo's own reading rules; a compactor killed at each
//! step leaves readers every span once; two compactors at once never write
//! overlapping blocks; retention removes exactly the expired blocks.

use object_store::ObjectStoreExt;
use observatory_consumer::tempo::coverage::Coverage;
use observatory_consumer::tempo::store::BlockStore;
use observatory_integration::api::{token, SECRET};
use observatory_integration::blocks::{find_all, placed, Sent};
use observatory_integration::bucket::{local_bucket, s3_bucket, s3_endpoint, Bucket};
use observatory_integration::minute_blocks::{self, Written};
use observatory_integration::postgres::TestDb;
use observatory_integration::process::Service;
use observatory_integration::{free_addr, now_ns, workspace_bin};
use observatory_schemas::tempo::bloom::{shard_of, Bloom};
use observatory_schemas::tempo::meta::{BlockMeta, SINGLE_TENANT};
use observatory_schemas::tempo::ranged::{Lookup, Step};
use observatory_schemas::tempo::tenant_index::TenantIndex;
use std::collections::HashSet;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);
const MINUTE: u64 = 60_000_000_000;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;

/// The start of the UTC day `days` days before today.
fn day_start(days: u64) -> u64 {
    let now = now_ns();
    now - now % DAY - days * DAY
}

/// Runs `observatory-consumer compact` with `COMPACTOR_ONCE` until it
/// exits; its exit status.
fn compact(bucket: &Bucket, env: &[(&str, &str)]) -> std::process::ExitStatus {
    compactor(bucket, env).wait().expect("the compactor runs")
}

fn compactor(bucket: &Bucket, env: &[(&str, &str)]) -> std::process::Child {
    let mut command = std::process::Command::new(workspace_bin("observatory-consumer"));
    command
        .arg("compact")
        .env("COMPACTOR_ONCE", "true")
        .env("CONSUMER_ADMIN_ADDR", free_addr().to_string())
        .env("TEMPO_COMPACTED_BLOCK_RETENTION", "0s")
        .env(
            "RUST_LOG",
            std::env::var("CONSUMER_LOG").unwrap_or_else(|_| "warn".into()),
        );
    for (k, v) in &bucket.env {
        command.env(k, v);
    }
    for (k, v) in env {
        command.env(k, v);
    }
    command
        .spawn()
        .expect("start observatory-consumer (cargo build --bins)")
}

/// The metas of the live blocks (`meta.json`) of `tenant`.
async fn live_metas(store: &BlockStore, tenant: &str) -> Vec<BlockMeta> {
    let mut out = Vec::new();
    for name in store.list(tenant).await.unwrap() {
        if name.ends_with("/meta.json") {
            out.push(serde_json::from_slice(&store.get(&name).await.unwrap()).unwrap());
        }
    }
    out.sort_by_key(|m: &BlockMeta| m.block_id);
    out
}

/// Every span sent is in the live blocks, and every copy found is the span
/// as sent; with `exactly_once`, in one block only. Nothing else is there.
fn assert_spans(found: &Sent, sent: &Sent, exactly_once: bool, when: &str) {
    let extra = found.keys().filter(|k| !sent.contains_key(*k)).count();
    assert_eq!(extra, 0, "{when}: spans nobody sent");
    let mut doubled = 0;
    for (key, want) in sent {
        let copies = found
            .get(key)
            .unwrap_or_else(|| panic!("{when}: span {key:02x?} lost"));
        assert!(
            copies.iter().all(|c| c == &want[0]),
            "{when}: a copy of span {key:02x?} differs from what was sent"
        );
        doubled += usize::from(copies.len() > 1);
    }
    if exactly_once {
        assert_eq!(doubled, 0, "{when}: spans in two live blocks");
    }
}

/// A trace looked up as Grafana Tempo does (tempo-blocks.md §5): blocks
/// whose meta time range overlaps the trace's, then the bloom shard, then
/// the row groups whose TraceID statistics allow it, by byte range; the
/// parts merged and duplicate span ids dropped, as its combiner does.
/// Returns the spans and the number of blocks holding the trace.
async fn tempo_find(
    store: &BlockStore,
    tenant: &str,
    metas: &[BlockMeta],
    id: [u8; 16],
    (start, end): (u64, u64),
) -> (Sent, usize) {
    let raw = store.object_store();
    let mut found = Sent::new();
    let mut holding = 0;
    for meta in metas {
        let from = observatory_schemas::civil::parse_rfc3339_nanos(&meta.start_time).unwrap();
        let to = observatory_schemas::civil::parse_rfc3339_nanos(&meta.end_time).unwrap();
        if (end as i64) < from || (start as i64) > to {
            continue;
        }
        let folder = format!("{tenant}/{}", meta.block_id);
        let shard = shard_of(&id, u64::from(meta.bloom_shards));
        let bloom = store.get(&format!("{folder}/bloom-{shard}")).await.unwrap();
        if !Bloom::from_bytes(&bloom).unwrap().may_contain(&id) {
            continue;
        }
        let path = object_store::path::Path::from(format!("{folder}/data.parquet"));
        let mut lookup = Lookup::new(id, meta.size);
        let spans = loop {
            match lookup.step().unwrap() {
                Step::Fetch(ranges) => {
                    for r in ranges {
                        let bytes = raw.get_range(&path, r.clone()).await.unwrap();
                        lookup.add(r.start, bytes);
                    }
                }
                Step::Done(spans) => break spans,
            }
        };
        if let Some(rs) = spans {
            holding += 1;
            let mut part = Sent::new();
            placed(&rs, &mut part);
            for (k, v) in part {
                found.entry(k).or_insert(v);
            }
        }
    }
    (found, holding)
}

/// Checks a sample of traces as Tempo finds them: all of their spans, once.
async fn assert_tempo_finds(store: &BlockStore, tenant: &str, written: &Written, sample: usize) {
    let metas = live_metas(store, tenant).await;
    let step = (written.traces.len() / sample).max(1);
    for (id, range) in written.traces.iter().step_by(step) {
        let (found, _) = tempo_find(store, tenant, &metas, *id, *range).await;
        let want: Sent = written
            .sent
            .range((id.to_vec(), vec![])..)
            .take_while(|((t, _), _)| t[..] == id[..])
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        assert_eq!(
            found.len(),
            want.len(),
            "spans of trace {id:02x?} by Tempo's rules"
        );
        assert!(found == want, "trace {id:02x?} by Tempo's rules differs");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_of_minute_blocks_compacts_into_a_few_and_each_span_is_found_once() {
    let bucket = local_bucket();
    let store = &bucket.store;
    let tenant = SINGLE_TENANT;
    let day = day_start(3);
    let written = minute_blocks::write(store, tenant, day, 1440, 12, 19).await;
    assert_eq!(live_metas(store, tenant).await.len(), 1440);

    let status = compact(&bucket, &[("TEMPO_COMPACTION_WINDOW", "6h")]);
    assert!(status.success(), "compactor: {status}");

    // Four 6-hour windows: four blocks, each past level 1.
    let metas = live_metas(store, tenant).await;
    assert_eq!(metas.len(), 4, "live blocks after compaction");
    assert!(metas.iter().all(|m| m.compaction_level >= 2), "{metas:?}");
    // One row per trace: the parts of a trace cut across blocks combined.
    let traces: i64 = metas.iter().map(|m| m.total_objects).sum();
    assert_eq!(traces as usize, written.traces.len());
    // The inputs are gone (grace 0), not merely marked.
    assert_eq!(block_folders(store, tenant).await.len(), 4);

    assert_spans(
        &find_all(store, tenant).await,
        &written.sent,
        true,
        "after compaction",
    );
    assert_tempo_finds(store, tenant, &written, 100).await;

    // Grafana Tempo's own reader, when it was built (TEMPO_CLI).
    if let Ok(cli) = std::env::var("TEMPO_CLI") {
        let dir = bucket.env[0].1.clone();
        let out = std::process::Command::new(&cli)
            .args([
                "list",
                "blocks",
                tenant,
                "--backend=local",
                &format!("--bucket={dir}"),
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        for m in live_metas(store, tenant).await {
            assert!(
                text.contains(&m.block_id.to_string()),
                "tempo-cli lists {}: {text}",
                m.block_id
            );
        }
        for id in written.traces.keys().step_by(written.traces.len() / 20) {
            let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
            let out = std::process::Command::new(&cli)
                .args([
                    "query",
                    "trace-id",
                    &hex,
                    tenant,
                    "--backend=local",
                    &format!("--bucket={dir}"),
                ])
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            let want = written.sent.keys().filter(|(t, _)| t[..] == id[..]).count();
            let combined = text.rsplit("combined:").next().unwrap_or_default();
            assert_eq!(
                combined.matches("\"spanId\"").count(),
                want,
                "tempo-cli trace {hex}: {text}"
            );
        }
    }

    // The tenant index lists exactly the live blocks.
    let index =
        TenantIndex::from_json_gz(&store.get(&format!("{tenant}/index.json.gz")).await.unwrap())
            .unwrap();
    let mut listed = index.meta.clone();
    listed.sort_by_key(|m| m.block_id);
    assert_eq!(listed, metas);
    assert!(index.compacted.is_empty());
    assert!(!store
        .get(&format!("{tenant}/index.pb.zst"))
        .await
        .unwrap()
        .is_empty());

    // The compacted blocks still tell a replay which offsets they hold.
    let coverage = Coverage::load(store, minute_blocks::TOPIC).await.unwrap();
    for s in &written.sources {
        for offset in [s.first, s.last] {
            assert!(
                coverage.covers(tenant, 0, offset),
                "offset {offset} uncovered"
            );
        }
    }

    // Our API finds the traces in the compacted blocks (PostgreSQL holds none).
    let db = TestDb::create().await;
    let migrate = std::process::Command::new(workspace_bin("observatory-consumer"))
        .arg("migrate")
        .env("DATABASE_URL", &db.url)
        .status()
        .unwrap();
    assert!(migrate.success());
    let mut api_env = vec![
        ("DATABASE_URL", db.url.clone()),
        ("JWT_SECRET", SECRET.to_owned()),
    ];
    api_env.extend(bucket.env.iter().map(|(k, v)| (*k, v.clone())));
    let api = Service::api(&api_env);
    api.wait_ready(WAIT).await;
    let viewer = token("default", "viewer", "1h");
    let client = reqwest::Client::new();
    let step = written.traces.len() / 20;
    for id in written.traces.keys().step_by(step) {
        let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
        let answer = client
            .get(format!("http://{}/api/v1/traces/{hex}", api.admin))
            .bearer_auth(&viewer)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200, "trace {hex}");
        let body: serde_json::Value =
            serde_json::from_slice(&answer.bytes().await.unwrap()).unwrap();
        let want = written.sent.keys().filter(|(t, _)| t[..] == id[..]).count();
        assert_eq!(
            body["span_count"].as_u64(),
            Some(want as u64),
            "spans of {hex}: {body}"
        );
    }
}

/// The block folders of `tenant`, whatever they hold.
async fn block_folders(store: &BlockStore, tenant: &str) -> HashSet<String> {
    store
        .list(tenant)
        .await
        .unwrap()
        .iter()
        .filter_map(|n| {
            let mut parts = n.split('/');
            let folder = parts.nth(1)?;
            parts.next().map(|_| folder.to_owned())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compactor_killed_at_each_step_leaves_readers_each_span_once() {
    let bucket = s3_bucket(&s3_endpoint());
    let store = &bucket.store;
    let tenant = SINGLE_TENANT;
    let written = minute_blocks::write(store, tenant, day_start(1), 90, 40, 23).await;
    let settings = [
        ("TEMPO_COMPACTION_WINDOW", "1h"),
        ("TEMPO_COMPACTION_MAX_INPUTS", "16"),
    ];

    for point in ["after-output", "after-mark", "during-delete"] {
        let mut env = settings.to_vec();
        env.push(("COMPACTOR_FAIL_AT", point));
        let status = compact(&bucket, &env);
        assert!(
            !status.success(),
            "the compactor stops at {point}: {status}"
        );
        let found = find_all(store, tenant).await;
        assert_spans(&found, &written.sent, false, &format!("killed {point}"));
        assert_tempo_finds(store, tenant, &written, 20).await;
    }
    let status = compact(&bucket, &settings);
    assert!(status.success(), "compactor: {status}");
    assert_spans(
        &find_all(store, tenant).await,
        &written.sent,
        true,
        "after the last run",
    );
    // 90 minutes ending in two hours: two blocks, nothing else left.
    assert_eq!(live_metas(store, tenant).await.len(), 2);
    assert_eq!(block_folders(store, tenant).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_compactors_at_once_never_write_overlapping_blocks() {
    let bucket = local_bucket();
    let store = &bucket.store;
    let tenant = "acme";
    // Eight one-hour windows of 20 one-minute blocks, three minutes apart.
    let mut sent = Sent::new();
    for w in 0..8u64 {
        let written = minute_blocks::write(
            store,
            tenant,
            day_start(2) + w * HOUR + 10 * MINUTE,
            20,
            30,
            40 + w,
        )
        .await;
        sent.extend(written.sent);
    }
    let mut children: Vec<std::process::Child> = (0..2)
        .map(|r| {
            let replica = r.to_string();
            compactor(
                &bucket,
                &[
                    ("COMPACTOR_REPLICAS", "2"),
                    ("COMPACTOR_REPLICA", &replica),
                    ("TEMPO_COMPACTION_WINDOW", "1h"),
                ],
            )
        })
        .collect();
    for c in &mut children {
        assert!(c.wait().unwrap().success());
    }
    let metas = live_metas(store, tenant).await;
    assert_eq!(metas.len(), 8, "one block per window");
    let windows: HashSet<i64> = metas
        .iter()
        .map(|m| {
            observatory_schemas::civil::parse_rfc3339_nanos(&m.end_time).unwrap() / HOUR as i64
        })
        .collect();
    assert_eq!(windows.len(), 8, "no two live blocks share a window");
    assert_spans(
        &find_all(store, tenant).await,
        &sent,
        true,
        "two compactors",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_removes_exactly_the_expired_blocks() {
    let bucket = local_bucket();
    let store = &bucket.store;
    let mut kept = Sent::new();
    let mut gone = Sent::new();
    for (seed, (tenant, days, expired)) in [
        ("alpha", 40, true),
        ("alpha", 10, false),
        ("beta", 10, true),
        ("beta", 2, false),
    ]
    .into_iter()
    .enumerate()
    {
        let written =
            minute_blocks::write(store, tenant, day_start(days), 5, 20, seed as u64).await;
        if expired {
            gone.extend(written.sent);
        } else {
            kept.extend(written.sent);
        }
    }
    let status = compact(
        &bucket,
        &[
            ("RETENTION_TRACES_DAYS", "30"),
            ("RETENTION_TRACES_TENANT_DAYS", "beta=5"),
        ],
    );
    assert!(status.success());
    let mut found = find_all(store, "alpha").await;
    found.extend(find_all(store, "beta").await);
    assert_spans(&found, &kept, true, "after retention");
    assert!(gone.keys().all(|k| !found.contains_key(k)));
    // Expired blocks are deleted, not merely hidden.
    for tenant in ["alpha", "beta"] {
        assert_eq!(block_folders(store, tenant).await.len(), 1, "{tenant}");
    }
}
