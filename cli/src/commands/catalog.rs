//! Sources and repositories.

use std::collections::HashMap;

use anyhow::{bail, Context as _};
use bk_proto::pb;
use serde_json::Value;

use super::context::CommandContext;
use crate::cli::{RepoCommand, SourceAddArgs, SourceCommand, SourceKind};
use crate::output::emit;
use crate::render;

/// `bkctl source …`.
pub(super) async fn source(ctx: &CommandContext, command: SourceCommand) -> anyhow::Result<()> {
    let (client, output) = (&ctx.client, ctx.output);
    let failed = |status: tonic::Status| ctx.failed(status);
    match command {
        SourceCommand::Add(args) => {
            let source = source_from_args(args)?;
            let name = source.name.clone();
            client
                .add_source(pb::AddSourceRequest { source: Some(source) })
                .await
                .map_err(failed)?;
            emit(output, serde_json::json!({"source": name, "added": true}), || {
                println!("source `{name}` registered")
            });
        }
    }
    Ok(())
}

/// `bkctl sources`.
pub(super) async fn sources(ctx: &CommandContext) -> anyhow::Result<()> {
    let (client, output) = (&ctx.client, ctx.output);
    let failed = |status: tonic::Status| ctx.failed(status);
    let sources = client.list_sources(pb::ListSourcesRequest {}).await.map_err(failed)?.sources;
    let documents: Vec<Value> = sources.iter().map(render::source_json).collect();
    emit(output, Value::Array(documents.clone()), || {
        for document in &documents {
            println!("{document}");
        }
    });
    Ok(())
}

/// `bkctl repo …`.
pub(super) async fn repo(ctx: &CommandContext, command: RepoCommand) -> anyhow::Result<()> {
    let (client, output) = (&ctx.client, ctx.output);
    let failed = |status: tonic::Status| ctx.failed(status);
    match command {
        RepoCommand::Key(command) => {
            crate::keys::run(client, output, command, failed).await?;
        }
        RepoCommand::Check { repository, read_data } => {
            crate::keys::check(client, output, repository, read_data, failed).await?;
        }
        RepoCommand::Add { name, url, chunk_size, pack_size, compression_level } => {
            let repository = pb::Repository {
                name: name.clone(),
                url,
                chunk_size_bytes: chunk_size.unwrap_or(0),
                pack_size_bytes: pack_size.unwrap_or(0),
                compression_level,
                config_id: String::new(),
            };
            client
                .add_repository(pb::AddRepositoryRequest { repository: Some(repository) })
                .await
                .map_err(failed)?;
            emit(output, serde_json::json!({"repository": name, "added": true}), || {
                println!("repository `{name}` registered")
            });
        }
    }
    Ok(())
}

/// `bkctl repos`.
pub(super) async fn repos(ctx: &CommandContext) -> anyhow::Result<()> {
    let (client, output) = (&ctx.client, ctx.output);
    let failed = |status: tonic::Status| ctx.failed(status);
    let repositories = client
        .list_repositories(pb::ListRepositoriesRequest {})
        .await
        .map_err(failed)?
        .repositories;
    emit(output, Value::Array(repositories.iter().map(render::repository_json).collect()), || {
        for repository in &repositories {
            println!("{:<20} {}", repository.name, repository.url);
        }
    });
    Ok(())
}

fn source_from_args(args: SourceAddArgs) -> anyhow::Result<pb::Source> {
    let mut http_endpoints = HashMap::new();
    for pair in &args.http_endpoints {
        let (node, url) =
            pair.split_once('=').with_context(|| format!("`--http {pair}` must be NODE=URL"))?;
        http_endpoints.insert(node.to_string(), url.to_string());
    }
    let kind = match args.kind {
        SourceKind::Influxdb3Enterprise => {
            let cluster_id =
                args.cluster_id.context("--kind influxdb3-enterprise needs --cluster-id")?;
            let compactor_node =
                args.compactor.context("--kind influxdb3-enterprise needs --compactor NODE")?;
            if args.nodes.is_empty() {
                bail!("--kind influxdb3-enterprise needs --nodes node1,node2,… (the data nodes)");
            }
            pb::source::Kind::Influxdb3Enterprise(pb::InfluxDb3Enterprise {
                cluster_id,
                compactor_node,
                data_nodes: args.nodes,
                http_endpoints,
            })
        }
        SourceKind::Questdb => {
            let [node] = args.nodes.as_slice() else {
                bail!("--kind questdb needs exactly one --nodes NODE (the node id its worker registers under)");
            };
            let pg_addr = args.pg_addr.context(
                "--kind questdb needs --pg HOST:PORT (QuestDB's PostgreSQL wire endpoint)",
            )?;
            pb::source::Kind::Questdb(pb::QuestDb { node: node.clone(), pg_addr })
        }
        SourceKind::Influxdb3Core => {
            let [node] = args.nodes.as_slice() else {
                bail!("--kind influxdb3-core needs exactly one --nodes NODE");
            };
            let http_endpoint = http_endpoints.remove(node).unwrap_or_default();
            pb::source::Kind::Influxdb3Core(pb::InfluxDb3Core { node: node.clone(), http_endpoint })
        }
    };
    Ok(pb::Source { name: args.name, kind: Some(kind) })
}
