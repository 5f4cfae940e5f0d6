//! SecureBuild's OCI registry client: it pushes an OCI image layout to a registry (the blobs
//! the registry lacks, then manifests, the index and tags, each digest checked) and reads
//! manifests and blobs back, for the `securebuild` CLI, the operator and the pull-through proxy.
//!
//! Start at [`Registry`]. Blob existence checks, uploads (streamed from disk) and the token
//! handshake go through `oci-client`; manifests and blob downloads are plain HTTP requests with
//! the same authorization, because they need what `oci-client` does not expose: the
//! `Content-Type` and `Docker-Content-Digest` headers, the HTTP status of failures and a size
//! cap on what a registry sends back. Requests whose responses the caller streams on (the
//! proxy's, [`pull`]) go over [`transport`], which bounds each connection's read buffer.
//! Credentials come from a docker `config.json`
//! ([`auth`]); loopback registries and the `insecure` list are spoken to over plain HTTP, as
//! docker does.
//!
//! Blob digests are checked twice on a push: on the local file before upload, and by the
//! registry when the upload is committed with `?digest=`. Manifest digests are checked against
//! the header of every `PUT`, `GET` and `HEAD`.
//!
//! It does not build images, sign anything, delete from a registry or copy between registries.

pub mod auth;
pub mod blob_record;
pub mod blobs;
pub mod client;
pub mod digest;
pub mod error;
pub mod layout;
pub mod manifests;
pub mod pull;
pub mod push;
pub mod reference;
mod session;
pub mod token;
pub mod transport;

pub use client::{Registry, RegistryOptions, init_tls};
pub use digest::sha256_digest;
pub use error::{Action, RegistryError, RequestContext, ResponseDetail};
pub use layout::LayoutError;
pub use manifests::{
    DOCKER_CONTENT_DIGEST_HEADER, FetchedManifest, MANIFEST_MEDIA_TYPES, MAX_MANIFEST_BYTES,
    OCI_INDEX_MEDIA_TYPE, OCI_MANIFEST_MEDIA_TYPE,
};
pub use push::PushReport;
pub use reference::{
    PLACEHOLDER_TAG, Reference, check_digest, check_tag, parse_reference, tag_or_digest,
    uses_plain_http,
};
