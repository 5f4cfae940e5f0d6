//! SecureBuild's engine: APK resolution and verification, reproducible OCI images, signing and
//! attestations, and the `securebuild` CLI that drives them.

pub mod apk;
pub mod attest;
pub mod build;
pub mod cli;
pub mod config_file;
pub mod elf;
pub mod error;
pub mod image;
pub mod lock;
pub mod package;
pub mod resolve;
pub mod result;
pub mod tags;
