//! `faceid`: zero-shot face personalisation of Stable Diffusion, from the command line.

mod draw;
mod face_cmds;
mod fetch;
mod generate;
mod model_args;
mod serve;
mod worker;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Stable Diffusion with IP-Adapter FaceID, on burn.
#[derive(Parser)]
#[command(name = "faceid", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate images from a prompt.
    Generate(generate::GenerateArgs),
    /// Detect faces in an image.
    Detect(face_cmds::DetectArgs),
    /// Compute the (averaged) ArcFace embedding of one or more face images.
    Embed(face_cmds::EmbedArgs),
    /// Download what a model type needs into the Hugging Face and insightface caches.
    Fetch(fetch::FetchArgs),
    /// Serve the API of fal's `fal-ai/ip-adapter-face-id` endpoint.
    Serve(serve::ServeArgs),
    /// Run requests from a queue shared through Redis, on this machine's models.
    Worker(worker::WorkerArgs),
}

fn main() -> ExitCode {
    faceid_core::allocator::retain_freed_memory();
    let cli = Cli::parse();
    // `serve` logs requests at info level by default; FACEID_LOG overrides (e.g. `debug`), and
    // FACEID_LOG_FORMAT=json writes one JSON object per line.
    let default_level = if matches!(cli.command, Command::Serve(_) | Command::Worker(_)) {
        "info"
    } else {
        "warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("FACEID_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("FACEID_LOG_FORMAT").is_ok_and(|f| f == "json") {
        logs.json().init();
    } else {
        logs.init();
    }
    let result = match cli.command {
        Command::Generate(args) => generate::run(args),
        Command::Detect(args) => face_cmds::detect(args),
        Command::Embed(args) => face_cmds::embed(args),
        Command::Fetch(args) => fetch::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Worker(args) => worker::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            let mut source = err.source();
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            ExitCode::FAILURE
        }
    }
}

/// Any error a command reports.
pub type CliError = Box<dyn std::error::Error + Send + Sync>;
