//! `tasklane`: runs any set of roles, applies migrations, or imports a file through the API.

use std::process::ExitCode;

use clap::Parser;
use tasklane::cli::{Cli, Command};
use tasklane_config::Settings;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Import(args) => tasklane::import_client::run(args).await,
        command => {
            let settings = Settings::load(cli.config.as_deref())?;
            tasklane_telemetry::init_logging(&settings.log);
            match command {
                Command::Run(args) => {
                    tasklane::app::run_until_signal(settings, args.roles()?).await
                }
                Command::Migrate => tasklane::app::migrate(&settings).await,
                Command::Import(_) => unreachable!("handled above"),
            }
        }
    }
}
