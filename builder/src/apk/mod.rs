//! The APK engine: everything between a repository URL and verified package bytes.
//!
//! Pure modules ([`version`], [`constraint`], [`index`], [`solver`]) do no IO; [`archive`] and
//! [`signature`] work on bytes and readers; [`repository`] and [`package`] are the IO edges.

pub mod archive;
pub mod constraint;
pub mod index;
pub mod package;
pub mod repository;
pub mod signature;
pub mod solver;
pub mod version;
pub mod world;
