//! The `securebuild` argument tree (clap). Only argument definitions live here; each subcommand's
//! behaviour is one thin function in its own file that calls the library.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub mod apk_version;

/// Build minimal, reproducible, signed container images from APK packages.
#[derive(Debug, Parser)]
#[command(name = "securebuild", version, about, long_about = None)]
pub struct Cli {
    /// Log filter (also `RUST_LOG`), e.g. `info` or `securebuild_builder=debug`.
    #[arg(long, global = true, env = "SECUREBUILD_LOG", default_value = "warn")]
    pub log: String,

    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

/// Every subcommand.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// apk-compatible utilities.
    Apk(ApkArgs),
}

/// `securebuild apk …`
#[derive(Debug, Args)]
pub struct ApkArgs {
    /// The apk utility.
    #[command(subcommand)]
    pub command: ApkCommand,
}

/// `securebuild apk` subcommands.
#[derive(Debug, Subcommand)]
pub enum ApkCommand {
    /// Compare or validate versions exactly as `apk version` does.
    Version(ApkVersionArgs),
}

/// `securebuild apk version --test V1 V2` | `--check V...`
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("mode").required(true).args(["test", "check"])))]
pub struct ApkVersionArgs {
    /// Compare two versions and print `<`, `=` or `>` (like `apk version -t`).
    #[arg(short = 't', long, num_args = 2, value_names = ["V1", "V2"])]
    pub test: Option<Vec<String>>,

    /// Validate versions; print every invalid one and exit non-zero if any (like
    /// `apk version -c`).
    #[arg(short = 'c', long, num_args = 1.., value_name = "V")]
    pub check: Option<Vec<String>>,
}

/// A path argument that may also be given through an environment variable.
pub type PathArg = PathBuf;
