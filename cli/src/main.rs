//! `bkctl`: the bk command line. Talks to the coordinator's Control API only.

mod call_error;
mod cli;
mod client;
mod commands;
mod demo;
mod keys;
mod output;
mod render;
mod render_drill;
mod status;
mod watch;

use clap::Parser;

#[tokio::main]
async fn main() {
    exit_quietly_on_broken_pipe();
    let cli = cli::Cli::parse();
    if let Err(error) = commands::run(cli).await {
        eprintln!("error: {error}");
        for cause in error.chain().skip(1) {
            eprintln!("caused by: {cause}");
        }
        std::process::exit(1);
    }
}

/// `bkctl jobs | head` closes the pipe early; printing then fails. Exit as a killed-by-SIGPIPE
/// process would (status 141), without a panic message, instead of panicking.
fn exit_quietly_on_broken_pipe() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.contains("Broken pipe") {
            std::process::exit(141);
        }
        default_hook(info);
    }));
}
