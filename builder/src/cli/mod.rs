//! The `securebuild` argument tree (clap). Only argument definitions live here; each subcommand's
//! behaviour is one thin function in its own file that calls the library.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub mod apk_version;
pub mod build;
pub mod index;
pub mod lock;
pub mod package;
pub mod resolve;
pub mod sign;
pub mod verify;

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
    /// Build an image from an apko configuration into an OCI layout or a registry.
    Build(Box<BuildArgs>),
    /// Write a signed APKINDEX.tar.gz for APK packages (like `apk index`).
    Index(IndexArgs),
    /// Resolve an apko configuration for all its architectures and write a lockfile.
    Lock(LockArgs),
    /// Package a staged directory as a signed APK and re-index its repository.
    Package(PackageArgs),
    /// Print what `apk add PACKAGE...` would install, in install order.
    Resolve(ResolveArgs),
    /// Sign an image in a registry with a cosign key (appends to `sha256-<hex>.sig`).
    Sign(SignArgs),
    /// Verify an image's cosign signatures and attestations in a registry with a public key.
    Verify(VerifyArgs),
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

/// `securebuild build CONFIG.yaml [--output DIR] [--push REPO[:TAG]] [--tag TAG]...`
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The apko image configuration (YAML).
    #[arg(value_name = "CONFIG.yaml")]
    pub config: PathBuf,

    /// Write an OCI image layout to DIR (the default, as `<config name>.oci`, when nothing is
    /// pushed).
    #[arg(short = 'o', long, value_name = "DIR")]
    pub output: Option<PathBuf>,

    /// Push to REPO[:TAG]: blobs the registry lacks, the manifests, the index and every tag.
    #[arg(long, value_name = "REPO[:TAG]")]
    pub push: Option<String>,

    /// A tag template, e.g. `latest` or `{{ version "go" }}`. Repeatable.
    #[arg(short = 't', long, value_name = "TAG")]
    pub tag: Vec<String>,

    /// Build only this architecture (OCI or apk name). Repeatable.
    #[arg(long, value_name = "ARCH")]
    pub arch: Vec<String>,

    /// Build exactly the packages of this lockfile (from `securebuild lock`).
    #[arg(long, value_name = "LOCK.json")]
    pub lockfile: Option<PathBuf>,

    /// Write the compact JSON result (digests, tags, lock digest, package count) to FILE.
    #[arg(long, value_name = "FILE")]
    pub result: Option<PathBuf>,

    /// The docker `config.json` with registry credentials (default: `$DOCKER_CONFIG` or
    /// `~/.docker`).
    #[arg(long, value_name = "FILE")]
    pub registry_config: Option<PathBuf>,

    /// A registry host spoken to over plain HTTP; loopback registries always are. Repeatable.
    #[arg(long = "insecure-registry", value_name = "HOST")]
    pub insecure_registries: Vec<String>,

    /// Cache directory for indexes, keys and packages.
    #[arg(long, env = "SECUREBUILD_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,

    /// Directory for temporary files (default: next to the output).
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,

    /// Layer compression: `gzip` (default) or `zstd`.
    #[arg(long, default_value = "gzip", value_name = "ALGORITHM")]
    pub compression: String,

    /// Compression level (gzip 0-9, default 6; zstd 1-22, default 3).
    #[arg(long, value_name = "LEVEL")]
    pub compression_level: Option<i32>,

    /// Creation time in seconds since the epoch (default: `SOURCE_DATE_EPOCH`, else the newest
    /// package build time).
    #[arg(long, value_name = "SECONDS")]
    pub source_date_epoch: Option<i64>,

    /// Accept unsigned indexes and indexes signed by unknown keys.
    #[arg(long)]
    pub allow_untrusted: bool,

    /// Largest file a package may install, in bytes.
    #[arg(long, value_name = "BYTES")]
    pub max_entry_size: Option<u64>,

    /// Largest total installed size, in bytes.
    #[arg(long, value_name = "BYTES")]
    pub max_total_size: Option<u64>,

    /// Most paths in the image.
    #[arg(long, value_name = "COUNT")]
    pub max_entries: Option<u64>,

    /// Sign the pushed image with this cosign key (cosign's encrypted key, PKCS#8 or SEC1
    /// PEM); needs `--push`. The password comes from `--key-password-file`,
    /// `SECUREBUILD_KEY_PASSWORD` or `COSIGN_PASSWORD`.
    #[arg(long, value_name = "KEY", requires = "push")]
    pub sign_key: Option<PathBuf>,

    /// A file whose first line is the signing key's password.
    #[arg(long, value_name = "FILE", requires = "sign_key")]
    pub key_password_file: Option<PathBuf>,

    /// Attach an SPDX SBOM attestation (per platform and for the index); needs `--sign-key`.
    #[arg(long, requires = "sign_key")]
    pub sbom: bool,

    /// Attach a SLSA provenance v1 attestation; needs `--sign-key`.
    #[arg(long, requires = "sign_key")]
    pub provenance: bool,

    /// The builder identity recorded in provenance.
    #[arg(
        long,
        value_name = "URI",
        default_value = "https://securebuild.dev/cli"
    )]
    pub builder_id: String,
}

/// `securebuild lock CONFIG.yaml -o LOCK.json`
#[derive(Debug, Args)]
pub struct LockArgs {
    /// The apko image configuration (YAML).
    #[arg(value_name = "CONFIG.yaml")]
    pub config: PathBuf,

    /// Where to write the lockfile.
    #[arg(short = 'o', long, value_name = "LOCK.json")]
    pub output: PathBuf,

    /// Accept unsigned indexes and indexes signed by unknown keys.
    #[arg(long)]
    pub allow_untrusted: bool,

    /// Cache directory for indexes, keys and packages.
    #[arg(long, env = "SECUREBUILD_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
}

/// `securebuild resolve [--repository REPO]... [--keyring KEY]... [--arch ARCH]
/// [--allow-untrusted] [--json] PACKAGE...`
#[derive(Debug, Args)]
pub struct ResolveArgs {
    /// A repository: an http(s) URL, a local directory with the `<arch>/APKINDEX.tar.gz`
    /// layout, or a path to one `APKINDEX` or `APKINDEX.tar.gz`; prefix with `@tag ` for a
    /// tagged repository. Repeatable, in priority order.
    #[arg(short = 'X', long = "repository", value_name = "REPO")]
    pub repository: Vec<String>,

    /// A trusted public key (path or https URL). Repeatable.
    #[arg(short = 'k', long = "keyring", value_name = "KEY")]
    pub keyring: Vec<String>,

    /// The apk architecture to resolve for (default: this machine's).
    #[arg(long, value_name = "ARCH")]
    pub arch: Option<String>,

    /// Accept unsigned indexes and indexes signed by unknown keys.
    #[arg(long)]
    pub allow_untrusted: bool,

    /// Print JSON (name, version, arch, repository, checksum) instead of `name-version` lines.
    #[arg(long)]
    pub json: bool,

    /// Cache directory for indexes and keys.
    #[arg(long, env = "SECUREBUILD_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,

    /// Packages, with apk constraints: `name`, `name=1.2-r0`, `name~1.2`, `name>=1`, `!name`,
    /// `name@tag`, `so:libfoo.so.1`.
    #[arg(required = true, value_name = "PACKAGE")]
    pub packages: Vec<String>,
}

/// `securebuild sign IMAGE --key KEY [--key-password-file FILE] [--registry-config FILE]
/// [--insecure-registry HOST]... [-a KEY=VALUE]...`
#[derive(Debug, Args)]
pub struct SignArgs {
    /// The image to sign: `REPO:TAG`, `REPO@sha256:…` (a tag is resolved to its digest first).
    #[arg(value_name = "IMAGE")]
    pub image: String,

    /// The private key: cosign's encrypted key (password from `--key-password-file`,
    /// `SECUREBUILD_KEY_PASSWORD` or `COSIGN_PASSWORD`), or a PKCS#8 or SEC1 PEM.
    #[arg(long, value_name = "KEY")]
    pub key: PathBuf,

    /// A file whose first line is the key's password.
    #[arg(long, value_name = "FILE")]
    pub key_password_file: Option<PathBuf>,

    /// The docker `config.json` with registry credentials (default: `$DOCKER_CONFIG` or
    /// `~/.docker`).
    #[arg(long, value_name = "FILE")]
    pub registry_config: Option<PathBuf>,

    /// A registry (`host:port`) or CIDR range spoken to over plain HTTP; loopback registries
    /// always are. Repeatable.
    #[arg(long = "insecure-registry", value_name = "HOST")]
    pub insecure_registries: Vec<String>,

    /// An annotation signed into the payload's `optional` claims, as `cosign sign -a`.
    /// Repeatable.
    #[arg(
        short = 'a',
        long = "annotations",
        visible_alias = "annotation",
        value_name = "KEY=VALUE"
    )]
    pub annotations: Vec<String>,
}

/// `securebuild verify IMAGE --key PUB [--attestation TYPE]... [--registry-config FILE]
/// [--insecure-registry HOST]... [--output text|json]`
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The image to verify: `REPO:TAG` or `REPO@sha256:…`.
    #[arg(value_name = "IMAGE")]
    pub image: String,

    /// The public key (`cosign.pub`, an SPKI `PUBLIC KEY` PEM).
    #[arg(long, value_name = "PUB")]
    pub key: PathBuf,

    /// Also require a valid attestation of this type: `slsaprovenance` (SLSA provenance v1),
    /// `spdx` or `cyclonedx` (cosign's names; `slsaprovenance1` and `spdxjson` are accepted).
    /// Repeatable.
    #[arg(long = "attestation", value_name = "TYPE")]
    pub attestations: Vec<crate::attest::verify::AttestationType>,

    /// The docker `config.json` with registry credentials (default: `$DOCKER_CONFIG` or
    /// `~/.docker`).
    #[arg(long, value_name = "FILE")]
    pub registry_config: Option<PathBuf>,

    /// A registry (`host:port`) or CIDR range spoken to over plain HTTP; loopback registries
    /// always are. Repeatable.
    #[arg(long = "insecure-registry", value_name = "HOST")]
    pub insecure_registries: Vec<String>,

    /// How to print what was verified.
    #[arg(short = 'o', long, value_enum, default_value_t = VerifyOutput::Text)]
    pub output: VerifyOutput,

    /// Require a valid signature whose payload carries this annotation, as `cosign verify -a`.
    /// Repeatable; one signature must carry them all.
    #[arg(
        short = 'a',
        long = "annotations",
        visible_alias = "annotation",
        value_name = "KEY=VALUE"
    )]
    pub annotations: Vec<String>,
}

/// The output formats of `securebuild verify`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum VerifyOutput {
    /// One fact per line.
    Text,
    /// The full report as JSON.
    Json,
}

/// `securebuild package CONFIG.yaml --destdir DIR --signing-key KEY [--output DIR] [--arch ARCH]`
#[derive(Debug, Args)]
pub struct PackageArgs {
    /// The package description: a melange file's `package:` block.
    #[arg(value_name = "CONFIG.yaml")]
    pub config: PathBuf,

    /// The staged directory: the package's files, laid out from the root of the image.
    #[arg(long, value_name = "DIR")]
    pub destdir: PathBuf,

    /// The RSA private key (PEM) that signs the package and the index; its public half must
    /// be named after it plus `.pub` in keyrings.
    #[arg(short = 'k', long, value_name = "KEY")]
    pub signing_key: PathBuf,

    /// The repository directory; the package goes to `<DIR>/<ARCH>/`.
    #[arg(short = 'o', long, default_value = "packages", value_name = "DIR")]
    pub output: PathBuf,

    /// The apk architecture of the package (default: this machine's).
    #[arg(long, value_name = "ARCH")]
    pub arch: Option<String>,

    /// Build date and file times, seconds since the epoch (default: `SOURCE_DATE_EPOCH`, else 0).
    #[arg(long, value_name = "SECONDS")]
    pub source_date_epoch: Option<i64>,

    /// Do not rewrite `<DIR>/<ARCH>/APKINDEX.tar.gz`.
    #[arg(long)]
    pub no_index: bool,
}

/// `securebuild index PACKAGE.apk... -o APKINDEX.tar.gz --signing-key KEY`
#[derive(Debug, Args)]
pub struct IndexArgs {
    /// The packages to list.
    #[arg(required = true, value_name = "PACKAGE.apk")]
    pub packages: Vec<PathBuf>,

    /// The index file to write.
    #[arg(
        short = 'o',
        long,
        default_value = "APKINDEX.tar.gz",
        value_name = "FILE"
    )]
    pub output: PathBuf,

    /// The RSA private key (PEM) that signs the index.
    #[arg(short = 'k', long, value_name = "KEY")]
    pub signing_key: PathBuf,

    /// The index's `DESCRIPTION`.
    #[arg(short = 'd', long, default_value = "", value_name = "TEXT")]
    pub description: String,

    /// Time of the index's entries, seconds since the epoch (default: `SOURCE_DATE_EPOCH`,
    /// else 0).
    #[arg(long, value_name = "SECONDS")]
    pub source_date_epoch: Option<i64>,
}
