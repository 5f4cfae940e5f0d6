//! Image assembly: verified package data and generated files → layer entries → package layers
//! and a deterministic final layer (or one single layer) → OCI config, manifests, index and
//! layout.

pub mod accounts;
pub mod apkdb;
pub mod busybox;
pub mod certificates;
pub mod config;
pub mod entry;
pub mod guard;
pub mod install;
pub mod jks;
pub mod layer;
pub mod layering;
pub mod layers;
pub mod layout;
pub mod ldso;
pub mod os_release;
pub mod overlay;
pub mod paths;
pub mod pem;
pub mod pgzip;
pub mod runtime_keyring;
pub mod services;
pub mod tree;
pub mod write;
