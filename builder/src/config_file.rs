//! Reading an image configuration file from disk, with its `include`s
//! (`securebuild_crds::include`): a relative include is looked up next to the including file,
//! then in the working directory, where apko looks.

use std::path::{Path, PathBuf};

use securebuild_crds::ImageConfiguration;
use securebuild_crds::include::{self, ConfigSource};

use crate::error::Result;

/// Configuration files on the local filesystem; a file's identity is its canonical path.
#[derive(Clone, Copy, Debug, Default)]
pub struct DiskSource;

impl ConfigSource for DiskSource {
    fn read(&self, path: &Path) -> std::io::Result<Option<(PathBuf, String)>> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(Some((std::fs::canonicalize(path)?, text))),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error),
        }
    }
}

/// Reads the configuration at `path`, merges its includes and validates the result.
pub fn read_config(path: &Path) -> Result<ImageConfiguration> {
    let search: Vec<PathBuf> = std::env::current_dir().into_iter().collect();
    let config = include::load(path, &search, &DiskSource)?;
    config.validate()?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn includes_are_read_relative_to_the_including_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("base")).unwrap();
        std::fs::write(
            dir.path().join("base/base.yaml"),
            "contents: {packages: [a]}\ncmd: base\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("top.yaml"),
            "include: base/base.yaml\ncontents: {packages: [b]}\n",
        )
        .unwrap();
        let config = read_config(&dir.path().join("top.yaml")).unwrap();
        assert_eq!(config.contents.packages, ["a", "b"]);
        assert_eq!(config.cmd.as_deref(), Some("base"));

        std::fs::write(dir.path().join("loop.yaml"), "include: ./loop.yaml\n").unwrap();
        let error = crate::error::chain(&read_config(&dir.path().join("loop.yaml")).unwrap_err());
        assert!(error.starts_with("include cycle: "), "{error}");
        assert!(error.contains("loop.yaml includes "), "{error}");
    }
}
