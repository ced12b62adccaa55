//! The InfluxDB 3 copy tasks (layout facts: `shared/reference/influxdb3-layout.md`).

use std::collections::HashSet;

use bk_proto::influxdb3_layout::{LICENCE_FILES, V1_CATALOG_CHECKPOINT, V1_CATALOG_LOGS};
use bk_proto::model::{
    CatalogFormat, CopyPhase, CorruptObject, ExcludeRule, ExclusionReport, TaskReport,
};
use futures::TryStreamExt;
use object_store::ObjectMeta;

use super::context::TaskContext;
use super::copy::listing::spawn_listing;
use super::copy::{copy_listing, head_if_exists, list_prefix, ScopeTarget, SetCopier};
use crate::error::TaskError;
use crate::repository::list::ObjectEntry;
use crate::repository::manifest::Scope;

/// Rounds of re-listing the catalog logs when their sequence has a gap.
const CATALOG_ROUNDS: u32 = 5;

/// Copies every object under `prefix` except the excluded prefixes, counting recorded ones,
/// streaming the listing against the parent's list of the same scope.
///
/// # Errors
/// The first copy failure.
pub async fn copy_prefix(
    context: &TaskContext,
    phase: CopyPhase,
    node: &str,
    prefix: &str,
    exclude: &[ExcludeRule],
) -> Result<TaskReport, TaskError> {
    let listing = spawn_listing(context, prefix, exclude);
    let excluded = exclude.iter().map(|rule| rule.prefix.clone()).collect();
    let scope = Scope { prefix: prefix.to_string(), excluded };
    let target = ScopeTarget { phase, node: node.to_string(), scope };
    let copied = copy_listing(context, target, listing.objects).await?;
    let excluded_counts = listing.excluded.await.map_err(|error| {
        TaskError::Retryable(format!("the listing of `{prefix}` was interrupted: {error}"))
    })?;
    let exclusions: Vec<ExclusionReport> = exclude
        .iter()
        .zip(excluded_counts)
        .filter(|(rule, _)| rule.record)
        .map(|(rule, num_objects)| ExclusionReport {
            prefix: rule.prefix.clone(),
            reason: rule.reason.clone(),
            num_objects,
        })
        .collect();
    let mut report = TaskReport { exclusions, ..TaskReport::default() };
    copied.totals.add_to(&mut report);
    copied.finish(report).await
}

/// Detects the catalog layout under `catalog_prefix` and copies it consistently.
///
/// The image is copied first, then the logs are listed and copied: logs are never deleted and
/// an image is only ever replaced by a newer one, so the copied image plus every log after its
/// sequence is a catalog InfluxDB can load, even while it changes. The logs after the image must
/// be contiguous (InfluxDB refuses gaps on replay); a gap is re-listed a few times, then fails.
/// Older layouts (v2, v1) and the cluster's `enterprise` config are copied when present.
///
/// # Errors
/// [`TaskError::NoCatalog`] when no catalog layout exists under the prefix: a backup without a
/// catalog cannot be restored, so it must not succeed.
pub async fn copy_catalog(
    context: &TaskContext,
    catalog_prefix: &str,
    phase: CopyPhase,
) -> Result<TaskReport, TaskError> {
    let target = ScopeTarget { phase, node: String::new(), scope: Scope::prefix(catalog_prefix) };
    let mut copier = SetCopier::start(context, target, true).await?;
    let mut report = TaskReport::default();
    let mut copied_logs: HashSet<String> = HashSet::new();
    let mut format = None;
    for (version, layout) in [("v3", CatalogFormat::V3), ("v2", CatalogFormat::V2)] {
        let image_key = format!("{catalog_prefix}catalog/{version}/snapshot");
        let image = head_if_exists(context, &image_key).await?;
        let logs_prefix = format!("{catalog_prefix}catalog/{version}/logs/");
        let image_totals = copier.copy(image.into_iter().collect()).await?;
        let image_sequence = match image_totals.entries.first() {
            Some(entry) => image_sequence(&copier, entry).await?,
            None => None,
        };
        image_totals.add_to(&mut report);
        let mut uuids = image_totals.catalog_uuids.clone();
        let mut logs_copied_any = false;
        for round in 0..=CATALOG_ROUNDS {
            let logs: Vec<ObjectMeta> = list_prefix(context, &logs_prefix)
                .try_filter(|meta| {
                    futures::future::ready(!copied_logs.contains(meta.location.as_ref()))
                })
                .try_collect()
                .await?;
            let totals = copier.copy(logs).await?;
            copied_logs.extend(totals.entries.iter().map(|entry| entry.key.clone()));
            uuids.extend(totals.catalog_uuids.iter().cloned());
            logs_copied_any |= totals.num_objects > 0;
            totals.add_to(&mut report);
            let sequences =
                log_sequences(copied_logs.iter().filter(|key| key.starts_with(&logs_prefix)));
            match log_gap(image_sequence.unwrap_or(0), &sequences) {
                None => {
                    let newest =
                        sequences.last().copied().unwrap_or(0).max(image_sequence.unwrap_or(0));
                    if format.is_none() && (image_totals.num_objects > 0 || logs_copied_any) {
                        format = Some(layout);
                        report.catalog_sequence = Some(newest);
                    }
                    break;
                }
                Some(gap) if round == CATALOG_ROUNDS => {
                    return Err(TaskError::Invalid(format!(
                        "catalog logs under `{logs_prefix}` have a gap: {gap}"
                    )));
                }
                Some(gap) => {
                    report.events.push(format!("catalog logs re-listed after a gap ({gap})"))
                }
            }
        }
        report.corrupt.extend(mixed_catalog_uuids(&uuids));
    }
    let v1_logs: Vec<ObjectMeta> =
        list_prefix(context, &format!("{catalog_prefix}{V1_CATALOG_LOGS}")).try_collect().await?;
    let v1_checkpoint =
        head_if_exists(context, &format!("{catalog_prefix}{V1_CATALOG_CHECKPOINT}")).await?;
    if format.is_none() && (!v1_logs.is_empty() || v1_checkpoint.is_some()) {
        format = Some(CatalogFormat::V1);
        // v1 logs carry their sequence in their names too (`catalogs/<seq:020>.catalog`).
        let keys: Vec<String> = v1_logs.iter().map(|meta| meta.location.to_string()).collect();
        report.catalog_sequence = log_sequences(keys.iter()).last().copied();
    }
    let Some(format) = format else {
        return Err(TaskError::NoCatalog { prefix: catalog_prefix.to_string() });
    };
    let mut rest: Vec<ObjectMeta> = v1_checkpoint.into_iter().collect();
    rest.extend(v1_logs);
    rest.extend(head_if_exists(context, &format!("{catalog_prefix}enterprise")).await?);
    copier.copy(rest).await?.add_to(&mut report);
    report.catalog_format = Some(format);
    copier.finish(report, true).await
}

/// Copies the licence objects that exist under `cluster_prefix`.
///
/// # Errors
/// The first copy failure.
pub async fn copy_licence(
    context: &TaskContext,
    cluster_prefix: &str,
    phase: CopyPhase,
) -> Result<TaskReport, TaskError> {
    let mut present = Vec::new();
    for name in LICENCE_FILES {
        present.extend(head_if_exists(context, &format!("{cluster_prefix}{name}")).await?);
    }
    let target = ScopeTarget { phase, node: String::new(), scope: Scope::prefix(cluster_prefix) };
    let mut copier = SetCopier::start(context, target, true).await?;
    let mut report = TaskReport::default();
    copier.copy(present).await?.add_to(&mut report);
    copier.finish(report, true).await
}

/// The sequence number in a copied catalog image's 64-byte header (`IDB3` magic, sequence as a
/// little-endian u64 at offset 32); `None` when the header is not one bk can read.
async fn image_sequence(
    copier: &SetCopier<'_>,
    entry: &ObjectEntry,
) -> Result<Option<u64>, TaskError> {
    let mut first = entry.clone();
    first.blobs.truncate(1);
    let bytes = copier.read_back(&first, &Default::default()).await?;
    if bytes.len() < 40 || &bytes[..4] != b"IDB3" {
        return Ok(None);
    }
    Ok(bytes[32..40].try_into().ok().map(u64::from_le_bytes))
}

/// Files of one catalog whose catalog UUID is not the catalog's (the image's, or the first
/// log's without an image): InfluxDB refuses to load a catalog whose logs carry another UUID.
pub(crate) fn mixed_catalog_uuids(uuids: &[(String, u128)]) -> Vec<CorruptObject> {
    let reference = uuids
        .iter()
        .find(|(key, _)| key.ends_with("/snapshot"))
        .or_else(|| uuids.iter().min_by(|a, b| a.0.cmp(&b.0)));
    let Some((reference_key, reference_uuid)) = reference else { return Vec::new() };
    uuids
        .iter()
        .filter(|(_, uuid)| uuid != reference_uuid)
        .map(|(key, uuid)| CorruptObject {
            key: key.clone(),
            reason: format!(
                "catalog file `{key}`: its catalog UUID {uuid:032x} is not the catalog's ({reference_uuid:032x}, from \
                 `{reference_key}`); InfluxDB refuses to load a catalog that mixes two"
            ),
        })
        .collect()
}

/// Sequence numbers of catalog log keys (`…/logs/<seq:020>.catalog`), sorted.
pub(crate) fn log_sequences<'a>(keys: impl Iterator<Item = &'a String>) -> Vec<u64> {
    let mut sequences: Vec<u64> = keys
        .filter_map(|key| key.rsplit('/').next()?.strip_suffix(".catalog")?.parse().ok())
        .collect();
    sequences.sort_unstable();
    sequences
}

/// The first gap in the logs after the image's sequence, if any.
pub(crate) fn log_gap(image_sequence: u64, sequences: &[u64]) -> Option<String> {
    let following = sequences.iter().copied().filter(|sequence| *sequence > image_sequence);
    (image_sequence + 1..).zip(following).find(|(expected, found)| expected != found).map(
        |(expected, found)| format!("after sequence {}, the next log is {found}", expected - 1),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_catalog_log_gaps_after_the_image_are_found() {
        let cases: Vec<(u64, Vec<u64>, bool)> = vec![
            (5, vec![1, 2, 3, 4, 5, 6, 7], false),
            (5, vec![6, 7, 8], false),
            (5, vec![], false),
            (5, vec![7, 8], true),
            (5, vec![6, 8], true),
            (0, vec![2], true),
            (9, vec![1, 3], false), // Gaps before the image do not matter.
        ];
        for (image, logs, gap) in cases {
            assert_eq!(log_gap(image, &logs).is_some(), gap, "image {image}, logs {logs:?}");
        }
    }

    #[test]
    fn test_a_log_of_another_catalog_is_named() {
        let uuids = vec![
            ("c/catalog/v3/logs/00000000000000000002.catalog".to_string(), 7u128),
            ("c/catalog/v3/snapshot".to_string(), 7u128),
            ("c/catalog/v3/logs/00000000000000000003.catalog".to_string(), 9u128),
        ];
        let mixed = mixed_catalog_uuids(&uuids);
        assert_eq!(mixed.len(), 1);
        assert_eq!(mixed[0].key, "c/catalog/v3/logs/00000000000000000003.catalog");
        assert!(mixed[0].reason.contains("from `c/catalog/v3/snapshot`"), "{}", mixed[0].reason);
        assert!(mixed_catalog_uuids(&uuids[..2]).is_empty());
    }

    #[test]
    fn test_log_sequences_are_read_from_names() {
        let keys = [
            "c/catalog/v3/logs/00000000000000000012.catalog".to_string(),
            "c/catalog/v3/logs/x".to_string(),
        ];
        assert_eq!(log_sequences(keys.iter()), vec![12]);
    }
}
