//! `bkctl`: the bk command line. Talks to the coordinator's Control API only.

mod call_error;
mod cli;
mod client;
mod commands;
mod demo;
mod render;
mod status;
mod watch;

use clap::Parser;

#[tokio::main]
async fn main() {
    let cli = cli::Cli::parse();
    if let Err(error) = commands::run(cli).await {
        eprintln!("error: {error}");
        for cause in error.chain().skip(1) {
            eprintln!("caused by: {cause}");
        }
        std::process::exit(1);
    }
}
