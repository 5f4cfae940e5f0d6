//! Test support for SecureBuild's integration tests and benchmarks: real signed APK
//! repositories, a loopback HTTP file server with fault injection, and a local OCI registry.
//!
//! Everything here produces artifacts independently of `securebuild-builder` (it never uses
//! the builder's parsers), so a test compares the engine against an outside producer. It binds
//! only to 127.0.0.1 and never reaches the network.

pub mod apkgen;
pub mod example_repo;
pub mod registry;
pub mod serve;
