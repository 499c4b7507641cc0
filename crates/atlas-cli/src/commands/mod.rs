//! Command implementations: each turns parsed arguments plus settings into core calls and
//! printed results, and returns the exit status.

mod backup;
mod browse;
mod context;
mod demo;
mod generate;
mod key;
mod repair;
mod replicate;
mod report;
mod restore;
mod retention;
mod sim;
mod status;
mod storage;
mod unlock;
mod v1;

use anyhow::Context as _;

use crate::cli::{Cli, Command, GlobalArgs, KeyCommand, SimCommand};
use crate::config::{Config, Inputs};
use crate::exit::Exit;
use crate::output::{Output, sanitize};

/// Run the parsed command line.
pub async fn run(mut cli: Cli, output: Output) -> anyhow::Result<Exit> {
    // `-s <Atlas 1.x snapshot id>` on a v1 repository names its converted snapshot.
    v1::map_snapshot_args(&cli.global, &mut cli.command).await?;
    match &cli.command {
        // A TypeScript Atlas 1.x repository is only ever read (or migrated): `init` would
        // add a v2 config into it and `key passwd` would rewrite its key.
        Command::Init(args) => {
            v1::refuse_writes(&cli.global).await?;
            key::init(&cli.global, args, output).await
        }
        Command::Key(KeyCommand::Passwd(args)) => {
            v1::refuse_writes(&cli.global).await?;
            key::passwd(&cli.global, args, output).await
        }
        Command::Mailboxes(args) => backup::mailboxes(&cli.global, args, output).await,
        Command::Backup(args) => backup::backup(&cli.global, args, output).await,
        Command::Status(args) => status::status(&cli.global, args, output).await,
        Command::List(args) => browse::list(&cli.global, args, output).await,
        Command::Read(args) => browse::read(&cli.global, args, output).await,
        Command::Verify(args) => browse::verify(&cli.global, args, output).await,
        Command::Repair(args) => repair::repair(&cli.global, args, output).await,
        Command::Save(args) => browse::save(&cli.global, args, output).await,
        Command::Stats(args) => browse::stats(&cli.global, args, output).await,
        Command::Restore(args) => restore::restore(&cli.global, args, output).await,
        Command::Delete(args) => {
            v1::refuse_writes(&cli.global).await?;
            retention::delete(&cli.global, args, output).await
        }
        Command::Forget(args) => {
            v1::refuse_writes(&cli.global).await?;
            retention::forget(&cli.global, args, output).await
        }
        Command::Unlock(args) => {
            v1::refuse_writes(&cli.global).await?;
            unlock::unlock(&cli.global, args, output).await
        }
        Command::Migrate(args) => v1::migrate(&cli.global, args, output).await,
        Command::StorageCheck(args) => {
            storage::storage_check_command(&cli.global, args, output).await
        }
        Command::Replicate(args) => replicate::replicate(&cli.global, args, output).await,
        Command::Rehydrate(args) => replicate::rehydrate(&cli.global, args, output).await,
        Command::Demo(args) => demo::demo(&cli.global, args, output).await,
        Command::Sim(SimCommand::Serve(args)) => sim::serve(args, output).await,
        Command::Report(args) => report::report(&cli.global, args, output).await,
        Command::Completions(args) => generate::completions(args, output),
        Command::Man(args) => generate::man_pages(args, output),
    }
}

/// Load configuration for the invocation and log the load-time warnings.
fn load_config(global: &GlobalArgs) -> anyhow::Result<Config> {
    let inputs = Inputs::from_process(global.tenant.clone())?;
    let config = Config::load(&inputs).context("loading configuration")?;
    for warning in config.warnings() {
        tracing::warn!("{}", sanitize(warning));
    }
    Ok(config)
}
