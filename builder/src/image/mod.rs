//! Image assembly: verified package data and generated files → layer entries → a deterministic
//! layer → OCI config, manifests, index and layout.

pub mod entry;
pub mod pgzip;
pub mod guard;
pub mod layer;
pub mod tree;
pub mod install;
pub mod paths;
pub mod write;
pub mod accounts;
pub mod oci;
pub mod apkdb;
pub mod busybox;
pub mod ldso;
