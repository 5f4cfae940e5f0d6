//! Image assembly: verified package data and generated files → layer entries → a deterministic
//! layer → OCI config, manifests, index and layout.

pub mod entry;
pub mod pgzip;
pub mod guard;
pub mod layer;
pub mod tree;
pub mod install;
