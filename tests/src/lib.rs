//! Test support for SecureBuild's integration tests and benchmarks: real signed APK
//! repositories, a loopback HTTP file server with fault injection, a local OCI registry and
//! fault-injecting proxies, a headless browser through WebDriver, and — for the tests on a real
//! control plane — the operator's installation (CRD, the chart's RBAC), the operator as a
//! process, and a stand-in kubelet.
//!
//! Everything here produces artifacts independently of `securebuild-builder` (it never uses
//! the builder's parsers), so a test compares the engine against an outside producer. It binds
//! only to 127.0.0.1 and never reaches the network.

pub mod apkgen;
pub mod cluster;
pub mod example_repo;
pub mod kapi;
pub mod kubelet;
pub mod operator_process;
pub mod proxy;
pub mod registry;
pub mod serve;
pub mod skopeo;
pub mod tls_tunnel;
pub mod token_server;
pub mod webdriver;
