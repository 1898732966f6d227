//! Command-line interface.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::roles::{parse_roles, Role};

#[derive(Parser, Debug)]
#[command(
    name = "tasklane",
    version,
    about = "Tasklane: real-time task management"
)]
pub struct Cli {
    /// TOML settings file; TASKLANE_* environment variables (`__` between levels) override it.
    #[arg(long, global = true, env = "TASKLANE_CONFIG")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run one or more roles in this process until interrupted.
    Run(RunArgs),
    /// Apply database migrations and exit.
    Migrate,
    /// Upload a Jira or CSV export to a running API and follow the import job.
    Import(ImportArgs),
}

const ROLES_HELP: &str = "Roles to run, comma-separated, or `all`:
  api     REST API under /api/v1, /healthz, /readyz, /metrics and the web page
  hub     SignalR hub at /hubs/tasks; receives messages from the Redis backplane
  relay   publishes committed outbox events to RabbitMQ, Kafka and the hub, in order
  bulk    runs import jobs from the Kafka topic bulk-operations
  notify  turns @mentions from RabbitMQ into notifications
  email   sends account mail (verification, password reset) to the SMTP server in [mail]";

#[derive(Args, Debug)]
pub struct RunArgs {
    #[arg(long, default_value = "all", long_help = ROLES_HELP)]
    pub roles: String,
}

impl RunArgs {
    pub fn roles(&self) -> anyhow::Result<Vec<Role>> {
        parse_roles(&self.roles).map_err(anyhow::Error::msg)
    }
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// The file to import.
    pub file: PathBuf,
    /// Key of the project to import into; without it, each row's Jira project key picks one.
    #[arg(long)]
    pub project: Option<String>,
    /// Format of the file.
    #[arg(long, default_value = "jira", value_parser = ["jira", "csv"])]
    pub format: String,
    /// Base URL of the running API.
    #[arg(
        long,
        env = "TASKLANE_API_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub api_url: String,
    /// Return once the job is queued instead of following it to the end.
    #[arg(long)]
    pub no_wait: bool,
}
