//! Sources and repositories.

use super::*;

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
