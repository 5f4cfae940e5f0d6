//! Writes a [`Tree`] as one layer, in the tree's order, streaming file contents from the package
//! spools through the deterministic tar writer and compressor. Memory stays bounded whatever
//! the image size: only headers and one read buffer are held at a time.

use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

use super::entry::EntryKind;
use super::install::Spools;
use super::layer::{Compression, LayerDigests, LayerError, LayerSink, LayerWriter};
use super::tree::{Content, Tree};

/// Errors from writing a layer.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The layer file could not be created or written.
    #[error("cannot write layer {path}: {source}")]
    Io {
        /// The layer file.
        path: std::path::PathBuf,
        /// The IO error.
        #[source]
        source: io::Error,
    },
    /// A spool could not be read back.
    #[error("cannot read the content of {path} from spool {spool}: {source}")]
    Spool {
        /// The image path whose content was being read.
        path: String,
        /// The spool index.
        spool: usize,
        /// The IO error.
        #[source]
        source: io::Error,
    },
    /// The tar writer or compressor failed.
    #[error(transparent)]
    Layer(#[from] LayerError),
}

/// Writes `tree` as a layer file at `path`, returning its digests.
pub fn write_layer(
    tree: &Tree,
    spools: &Spools,
    path: &Path,
    compression: Compression,
) -> Result<LayerDigests, WriteError> {
    let io_error = |source| WriteError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = File::create(path).map_err(io_error)?;
    let sink = LayerSink::new(BufWriter::with_capacity(1024 * 1024, file), compression)?;
    let mut writer = LayerWriter::new(sink);
    let mut handles: Vec<Option<File>> = Vec::new();
    for node in tree.iter() {
        match (&node.entry.kind, &node.content) {
            (EntryKind::File { .. }, Content::Empty) => {
                writer.append_file(&node.entry, io::empty())?;
            }
            (EntryKind::File { .. }, Content::Inline(bytes)) => {
                writer.append_file(&node.entry, &bytes[..])?;
            }
            (EntryKind::File { .. }, Content::Spool { spool, offset, len }) => {
                let spool_error = |source| WriteError::Spool {
                    path: node.entry.path.clone(),
                    spool: *spool,
                    source,
                };
                let file = open_spool(&mut handles, spools, *spool).map_err(spool_error)?;
                file.seek(SeekFrom::Start(*offset)).map_err(spool_error)?;
                writer.append_file(&node.entry, (&mut *file).take(*len))?;
            }
            _ => writer.append(&node.entry)?,
        }
    }
    let sink = writer.finish()?;
    let (digests, mut out) = sink.finish_into_inner()?;
    out.flush().map_err(io_error)?;
    Ok(digests)
}

fn open_spool<'a>(
    handles: &'a mut Vec<Option<File>>,
    spools: &Spools,
    spool: usize,
) -> io::Result<&'a mut File> {
    if handles.len() <= spool {
        handles.resize_with(spool + 1, || None);
    }
    let slot = &mut handles[spool];
    if slot.is_none() {
        let path = spools
            .path(spool)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no spool {spool}")))?;
        *slot = Some(File::open(path)?);
    }
    slot.as_mut()
        .ok_or_else(|| io::Error::other("spool handle vanished"))
}
