//! `atlas completions` and `atlas man`: documents generated from the clap definitions
//! themselves, so they can never disagree with the binary that prints them. The release
//! script (scripts/release.sh) runs both to fill the archive.

use std::io::Write as _;

use anyhow::Context as _;
use clap::CommandFactory as _;
use serde::Serialize;

use crate::cli::{Cli, CompletionsArgs, ManArgs};
use crate::exit::Exit;
use crate::output::Output;

/// The binary's name as users type it (what the completion scripts complete).
const BIN: &str = "atlas";

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct CompletionsReport {
    shell: String,
    script: String,
}

/// `atlas completions SHELL`: the script on stdout (inside the document with `--json`).
pub fn completions(args: &CompletionsArgs, output: Output) -> anyhow::Result<Exit> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), BIN, &mut script);
    if output.is_json() {
        let report = CompletionsReport {
            shell: args.shell.to_string(),
            script: String::from_utf8(script).context("the completion script is not UTF-8")?,
        };
        output.result(&report, String::new)?;
    } else {
        let mut stdout = std::io::stdout().lock();
        crate::console::reader_gone_is_ok(stdout.write_all(&script).and_then(|()| stdout.flush()))
            .context("writing the completion script")?;
    }
    Ok(Exit::Success)
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ManReport {
    directory: String,
    pages: Vec<String>,
}

/// `atlas man DIR`: `atlas.1` plus `atlas-<command>.1` for every (sub)command.
pub fn man_pages(args: &ManArgs, output: Output) -> anyhow::Result<Exit> {
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    let mut pages = Vec::new();
    // Subcommands get their full names (`atlas-key-passwd`) and inherited global options
    // only once the command is built.
    let mut cmd = Cli::command();
    cmd.build();
    write_page(&cmd, &args.dir, &mut pages)?;
    pages.sort();
    let report = ManReport {
        directory: args.dir.display().to_string(),
        pages,
    };
    output.result(&report, || {
        format!(
            "{} manual pages written to {}",
            report.pages.len(),
            crate::output::sanitize(&report.directory)
        )
    })?;
    Ok(Exit::Success)
}

/// One page for `cmd` and, recursively, one per visible subcommand, named as `git` and
/// `cargo` name theirs (`atlas-key-passwd.1`).
fn write_page(
    cmd: &clap::Command,
    dir: &std::path::Path,
    pages: &mut Vec<String>,
) -> anyhow::Result<()> {
    let name = cmd
        .get_display_name()
        .unwrap_or_else(|| cmd.get_name())
        .to_owned();
    let file = format!("{name}.1");
    let mut text = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .title(name.to_uppercase())
        .render(&mut text)
        .with_context(|| format!("rendering {file}"))?;
    let path = dir.join(&file);
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    pages.push(file);
    // clap's generated `help` subcommands would only repeat the pages.
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        write_page(sub, dir, pages)?;
    }
    Ok(())
}
