//! The InfluxDB 3 copy tasks (layout facts: `shared/reference/influxdb3-layout.md`).

use std::collections::HashMap;

use bk_proto::model::{ExcludeRule, ExclusionReport, TaskReport};
use futures::{stream, StreamExt, TryStreamExt};
use object_store::ObjectMeta;

use super::copy::{copy_objects, head_if_exists, list_prefix, CopyTotals};
use super::TaskContext;
use crate::error::TaskError;
use crate::repository::manifest::ObjectEntry;
use crate::repository::staging::{read_earlier_entries, PartWriter};

/// The licence objects of an Enterprise cluster (absent ones are fine).
const LICENCE_FILES: [&str; 2] = ["commercial_license", "trial_or_home_license"];

/// Copies every object under `prefix` except the excluded prefixes, counting recorded ones.
///
/// # Errors
/// The first copy failure.
pub async fn copy_prefix(
    context: &TaskContext,
    phase: &str,
    node: &str,
    prefix: &str,
    exclude: &[ExcludeRule],
) -> Result<TaskReport, TaskError> {
    let mut excluded_counts = vec![0u64; exclude.len()];
    let listed: Vec<ObjectMeta> = list_prefix(context, prefix).try_collect().await?;
    let mut selected = Vec::with_capacity(listed.len());
    for meta in listed {
        let key = meta.location.as_ref();
        match exclude
            .iter()
            .position(|rule| key.starts_with(&rule.prefix))
        {
            Some(index) => excluded_counts[index] += 1,
            None => selected.push(meta),
        }
    }
    let mut exclusions: Vec<ExclusionReport> = exclude
        .iter()
        .zip(excluded_counts)
        .filter(|(rule, _)| rule.record)
        .map(|(rule, num_objects)| ExclusionReport {
            prefix: rule.prefix.clone(),
            reason: rule.reason.clone(),
            num_objects,
        })
        .collect();
    let (totals, writer) = copy_listed(context, selected, node, phase).await?;
    exclusions.extend(totals.vanished_exclusions());
    let report = TaskReport {
        num_objects: totals.num_objects,
        num_bytes: totals.num_bytes,
        exclusions,
        ..TaskReport::default()
    };
    writer.finish(&report).await?;
    Ok(report)
}

/// Detects the catalog layout under `catalog_prefix` and copies it: the image before the logs
/// (the logs after the image's sequence are what make it current), older layouts if present,
/// and the cluster's `enterprise` config.
///
/// # Errors
/// [`TaskError::NoCatalog`] when no catalog layout exists under the prefix: a backup without a
/// catalog cannot be restored, so it must not succeed.
pub async fn copy_catalog(
    context: &TaskContext,
    catalog_prefix: &str,
    phase: &str,
) -> Result<TaskReport, TaskError> {
    let mut objects: Vec<ObjectMeta> = list_prefix(context, &format!("{catalog_prefix}catalog/"))
        .try_collect()
        .await?;
    let v1_logs: Vec<ObjectMeta> = list_prefix(context, &format!("{catalog_prefix}catalogs/"))
        .try_collect()
        .await?;
    let v1_checkpoint =
        head_if_exists(context, &format!("{catalog_prefix}_catalog_checkpoint")).await?;
    let has = |objects: &[ObjectMeta], infix: &str| {
        objects.iter().any(|meta| {
            meta.location
                .as_ref()
                .starts_with(&format!("{catalog_prefix}{infix}"))
        })
    };
    let format = if has(&objects, "catalog/v3/") {
        "v3"
    } else if has(&objects, "catalog/v2/") {
        "v2"
    } else if !v1_logs.is_empty() || v1_checkpoint.is_some() {
        "v1"
    } else {
        return Err(TaskError::NoCatalog {
            prefix: catalog_prefix.to_string(),
        });
    };
    objects.extend(v1_logs);
    objects.extend(v1_checkpoint);
    objects.extend(head_if_exists(context, &format!("{catalog_prefix}enterprise")).await?);
    // Images first (`…/snapshot`, `_catalog_checkpoint`), then everything else in key order.
    objects.sort_by_key(|meta| {
        let key = meta.location.as_ref();
        let is_image = key.ends_with("/snapshot") || key.ends_with("_catalog_checkpoint");
        (!is_image, key.to_string())
    });
    let (images, rest): (Vec<ObjectMeta>, Vec<ObjectMeta>) =
        objects.into_iter().partition(|meta| {
            let key = meta.location.as_ref();
            key.ends_with("/snapshot") || key.ends_with("_catalog_checkpoint")
        });
    let earlier = read_earlier_entries(
        context.repository.as_ref(),
        context.spec.task_id,
        context.attempt,
    )
    .await?;
    let mut writer = PartWriter::new(
        context.repository.as_ref(),
        context.spec.task_id,
        context.attempt,
    );
    let image_totals = copy_objects(
        context,
        stream::iter(images.into_iter().map(Ok)),
        "",
        phase,
        &earlier,
        &mut writer,
    )
    .await?;
    let rest_totals = copy_objects(
        context,
        stream::iter(rest.into_iter().map(Ok)),
        "",
        phase,
        &earlier,
        &mut writer,
    )
    .await?;
    let mut exclusions = image_totals.vanished_exclusions();
    exclusions.extend(rest_totals.vanished_exclusions());
    let report = TaskReport {
        num_objects: image_totals.num_objects + rest_totals.num_objects,
        num_bytes: image_totals.num_bytes + rest_totals.num_bytes,
        exclusions,
        catalog_format: Some(format.to_string()),
        ..TaskReport::default()
    };
    writer.finish(&report).await?;
    Ok(report)
}

/// Copies the licence objects that exist under `cluster_prefix`.
///
/// # Errors
/// The first copy failure.
pub async fn copy_licence(
    context: &TaskContext,
    cluster_prefix: &str,
    phase: &str,
) -> Result<TaskReport, TaskError> {
    let mut present = Vec::new();
    for name in LICENCE_FILES {
        present.extend(head_if_exists(context, &format!("{cluster_prefix}{name}")).await?);
    }
    let (totals, writer) = copy_listed(context, present, "", phase).await?;
    let report = TaskReport {
        num_objects: totals.num_objects,
        num_bytes: totals.num_bytes,
        exclusions: totals.vanished_exclusions(),
        ..TaskReport::default()
    };
    writer.finish(&report).await?;
    Ok(report)
}

async fn copy_listed<'a>(
    context: &'a TaskContext,
    objects: Vec<ObjectMeta>,
    node: &str,
    phase: &str,
) -> Result<(CopyTotals, PartWriter<'a>), TaskError> {
    let earlier: HashMap<String, ObjectEntry> = read_earlier_entries(
        context.repository.as_ref(),
        context.spec.task_id,
        context.attempt,
    )
    .await?;
    let mut writer = PartWriter::new(
        context.repository.as_ref(),
        context.spec.task_id,
        context.attempt,
    );
    let totals = copy_objects(
        context,
        stream::iter(objects).map(Ok),
        node,
        phase,
        &earlier,
        &mut writer,
    )
    .await?;
    Ok((totals, writer))
}
