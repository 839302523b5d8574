//! The compactor's reads and writes of the bucket, each one step of the
//! block lifecycle Tempo's own compactor follows:
//!
//! - [`Tenant::load`]: one listing of a tenant folder, parsed into block
//!   folders ([`super::plan::Folder`]), and the metas of the blocks (read
//!   once per process: a block's meta never changes);
//! - [`mark_compacted`]: `meta.compacted.json` (the meta plus
//!   `compactedTime`) written, then `meta.json` deleted: a reader sees the
//!   block live or compacted, never neither;
//! - [`delete_block`]: every object of the folder, `meta.compacted.json`
//!   last, so a crash part way leaves a folder the next cycle deletes again;
//! - [`write_index`]: the tenant index (`index.pb.zst`, then
//!   `index.json.gz`) from the listing just made.

use super::plan::Folder;
use crate::tempo::store::BlockStore;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use observatory_schemas::civil::rfc3339_nanos;
use observatory_schemas::tempo::compaction::{parse_from, Record};
use observatory_schemas::tempo::meta::{BlockMeta, Source, CLAIM, META, META_COMPACTED};
use observatory_schemas::tempo::tenant_index::{CompactedMeta, TenantIndex, INDEX_JSON, INDEX_PB};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use uuid::Uuid;

/// Objects at the bucket root that are not tenants (Tempo's).
const NOT_TENANTS: [&str; 2] = ["tempo_cluster_seed.json", "work.json"];

/// The tenant folders of the bucket.
pub async fn tenants(store: &Arc<dyn ObjectStore>) -> Result<Vec<String>, object_store::Error> {
    let listing = store.list_with_delimiter(None).await?;
    Ok(listing
        .common_prefixes
        .iter()
        .map(|p| p.to_string())
        .filter(|t| !NOT_TENANTS.contains(&t.as_str()) && !t.starts_with('.'))
        .collect())
}

/// A tenant folder as one listing saw it.
pub struct Tenant {
    /// The folder.
    pub name: String,
    /// Block folders by id.
    pub folders: BTreeMap<Uuid, Folder>,
    /// Metas of the complete blocks (live and compacted).
    pub metas: HashMap<Uuid, BlockMeta>,
}

impl Tenant {
    /// Lists `name` and reads the metas not in `cache` (which it fills).
    pub async fn load(
        store: &Arc<dyn ObjectStore>,
        name: &str,
        cache: &mut HashMap<Uuid, BlockMeta>,
    ) -> Result<Tenant, object_store::Error> {
        let prefix = Path::from(name);
        let objects: Vec<object_store::ObjectMeta> =
            store.list(Some(&prefix)).try_collect().await?;
        let mut folders: BTreeMap<Uuid, Folder> = BTreeMap::new();
        let folder_prefix = format!("{name}/");
        for o in objects {
            let path = o.location.to_string();
            let Some(rest) = path.strip_prefix(&folder_prefix) else {
                continue;
            };
            let Some((id, inside)) = rest.split_once('/') else {
                continue;
            };
            let Ok(id) = Uuid::parse_str(id) else {
                continue;
            };
            let at = o.last_modified.timestamp_nanos_opt().unwrap_or(i64::MAX);
            let f = folders.entry(id).or_default();
            f.newest = f.newest.max(at);
            if inside == META {
                f.live = true;
            } else if inside == META_COMPACTED {
                f.compacted_at = Some(at);
            } else if let Some(s) = Source::parse(inside) {
                f.sources.push(s);
            } else if let Some(r) = Record::parse(inside) {
                f.record = Some(r);
            } else if let Some(input) = parse_from(inside) {
                f.from.push(input);
            }
            f.objects.push(path);
        }
        let mut metas = HashMap::new();
        let wanted: Vec<(Uuid, bool)> = folders
            .iter()
            .filter(|(_, f)| f.complete())
            .map(|(id, f)| (*id, f.live))
            .collect();
        let missing: Vec<(Uuid, bool)> = wanted
            .iter()
            .filter(|(id, _)| !cache.contains_key(id))
            .copied()
            .collect();
        let fetched: Vec<Option<(Uuid, BlockMeta)>> = futures::stream::iter(missing)
            .map(|(id, live)| {
                let store = store.clone();
                let name = name.to_owned();
                async move {
                    let file = if live { META } else { META_COMPACTED };
                    let path = Path::from(format!("{name}/{id}/{file}"));
                    let bytes = match store.get(&path).await {
                        Ok(r) => r.bytes().await?,
                        // Marked or deleted since the listing.
                        Err(object_store::Error::NotFound { .. }) => return Ok(None),
                        Err(e) => return Err(e),
                    };
                    match serde_json::from_slice::<BlockMeta>(&bytes) {
                        Ok(meta) => Ok(Some((id, meta))),
                        Err(e) => {
                            tracing::warn!(tenant = %name, block = %id, error = %e, "unreadable block meta; block left alone");
                            Ok(None)
                        }
                    }
                }
            })
            .buffer_unordered(16)
            .try_collect()
            .await?;
        for (id, meta) in fetched.into_iter().flatten() {
            cache.insert(id, meta);
        }
        for (id, _) in wanted {
            if let Some(m) = cache.get(&id) {
                metas.insert(id, m.clone());
            }
        }
        Ok(Tenant {
            name: name.to_owned(),
            folders,
            metas,
        })
    }
}

/// Marks block `id` compacted at `now_ns`, as Tempo does.
pub async fn mark_compacted(
    store: &Arc<dyn ObjectStore>,
    tenant: &str,
    meta: &BlockMeta,
    now_ns: i64,
) -> Result<(), object_store::Error> {
    let folder = format!("{tenant}/{}", meta.block_id);
    let compacted = CompactedMeta {
        meta: meta.clone(),
        compacted_time: rfc3339_nanos(now_ns - now_ns.rem_euclid(1_000_000_000)),
    };
    store
        .put(
            &Path::from(format!("{folder}/{META_COMPACTED}")),
            PutPayload::from(compacted.to_json()),
        )
        .await?;
    match store.delete(&Path::from(format!("{folder}/{META}"))).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Deletes every object of a block folder, `meta.compacted.json` (and a
/// stray `meta.json` or claim) last; with `first_half` (a test's crash
/// point) only the objects before those.
pub async fn delete_block(
    store: &Arc<dyn ObjectStore>,
    folder: &Folder,
    first_half: bool,
) -> Result<(), object_store::Error> {
    let last = |p: &String| p.ends_with(META_COMPACTED) || p.ends_with(META) || p.ends_with(CLAIM);
    let (tail, head): (Vec<&String>, Vec<&String>) = folder.objects.iter().partition(|p| last(p));
    let groups = if first_half {
        vec![head]
    } else {
        vec![head, tail]
    };
    for group in groups {
        futures::stream::iter(group)
            .map(|p| {
                let store = store.clone();
                async move {
                    match store.delete(&Path::from(p.as_str())).await {
                        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                        Err(e) => Err(e),
                    }
                }
            })
            .buffer_unordered(16)
            .try_collect::<Vec<()>>()
            .await?;
    }
    Ok(())
}

/// Writes the tenant index of what `tenant` holds (both encodings; Tempo
/// reads the protobuf first).
pub async fn write_index(
    store: &Arc<dyn ObjectStore>,
    tenant: &Tenant,
    now_ns: i64,
) -> Result<(), object_store::Error> {
    let mut live = Vec::new();
    let mut compacted = Vec::new();
    for (id, f) in &tenant.folders {
        let Some(meta) = tenant.metas.get(id) else {
            continue;
        };
        if f.live {
            live.push(meta.clone());
        } else if let Some(at) = f.compacted_at {
            compacted.push(CompactedMeta {
                meta: meta.clone(),
                compacted_time: rfc3339_nanos(at - at.rem_euclid(1_000_000_000)),
            });
        }
    }
    let index = TenantIndex::new(now_ns, live, compacted);
    store
        .put(
            &Path::from(format!("{}/{INDEX_PB}", tenant.name)),
            PutPayload::from(index.to_pb_zst()),
        )
        .await?;
    store
        .put(
            &Path::from(format!("{}/{INDEX_JSON}", tenant.name)),
            PutPayload::from(index.to_json_gz()),
        )
        .await?;
    Ok(())
}

/// The store under a [`BlockStore`].
pub fn raw(store: &BlockStore) -> Arc<dyn ObjectStore> {
    store.object_store()
}
