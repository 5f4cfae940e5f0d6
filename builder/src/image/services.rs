//! `entrypoint.services`: the s6 supervision tree apko's `WriteSupervisionTree`
//! (`pkg/s6/supervision_tree.go`) writes: `/sv/<name>/run`, an execline script running the
//! service's command. The `service-bundle` entrypoint itself (`/bin/s6-svscan /sv` and the `s6`
//! package) is set up before resolution by [`prepare_service_bundle`].

use std::collections::BTreeMap;

use securebuild_crds::ImageConfiguration;

use super::entry::LayerEntry;
use super::tree::{Content, Node, Tree};

/// The supervision directory.
pub const SERVICES_DIR: &str = "sv";

/// The command a service bundle runs.
pub const SERVICE_BUNDLE_COMMAND: &str = "/bin/s6-svscan /sv";

/// The package a service bundle needs.
pub const S6_PACKAGE: &str = "s6";

/// apko creates the service directories with `MkdirAll(dir, 0777)` on its in-memory
/// filesystem, which applies no umask: they are world-writable in apko's images, and so here.
const DIRECTORY_MODE: u32 = 0o777;
const RUN_MODE: u32 = 0o755;

/// Why the supervision tree could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ServicesError {
    /// A service name that is not one plain path component.
    #[error(
        "service name `{name}` in entrypoint.services is not a plain directory name; use letters, digits, `_`, `-` and `.` without `/`"
    )]
    InvalidName {
        /// The name as written.
        name: String,
    },
}

/// What apko's `ValidateServiceBundle` does to a `service-bundle` configuration: the
/// entrypoint becomes `/bin/s6-svscan /sv` and `s6` is added to the packages (apko appends it
/// even when listed; here it is added once, which resolves the same). Other configurations are returned unchanged.
pub fn prepare_service_bundle(config: &ImageConfiguration) -> ImageConfiguration {
    let mut config = config.clone();
    if config.is_service_bundle() {
        if let Some(entrypoint) = config.entrypoint.as_mut() {
            entrypoint.command = Some(SERVICE_BUNDLE_COMMAND.to_string());
        }
        // Idempotent, so that preparing a prepared configuration changes nothing.
        if !config.contents.packages.iter().any(|p| p == S6_PACKAGE) {
            config.contents.packages.push(S6_PACKAGE.to_string());
        }
    }
    config
}

/// Writes `/sv/<name>/run` for every service. apko writes them whatever the entrypoint type,
/// so services without `type: service-bundle` are written too (and nothing runs them).
pub fn write_supervision_tree(
    tree: &mut Tree,
    services: &BTreeMap<String, String>,
    mtime: i64,
) -> Result<(), ServicesError> {
    for (name, command) in services {
        if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
            return Err(ServicesError::InvalidName { name: name.clone() });
        }
        let dir = format!("{SERVICES_DIR}/{name}");
        for path in [SERVICES_DIR, dir.as_str()] {
            if !tree.contains(path) {
                tree.insert(Node {
                    entry: LayerEntry::directory(path, DIRECTORY_MODE, mtime),
                    content: Content::Empty,
                    owner: None,
                });
            }
        }
        let script = format!("#!/bin/execlineb\n{command}\n");
        tree.put_file(
            &format!("{dir}/run"),
            script.into_bytes(),
            RUN_MODE,
            0,
            0,
            mtime,
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::tree::NoSpools;

    #[test]
    fn the_tree_is_apkos() {
        let mut tree = Tree::new();
        let services: BTreeMap<String, String> = [
            (
                "nginx".to_string(),
                "/usr/sbin/nginx -g \"daemon off;\"".to_string(),
            ),
            ("cron".to_string(), "crond -f".to_string()),
        ]
        .into();
        write_supervision_tree(&mut tree, &services, 3).unwrap();
        let paths: Vec<_> = tree
            .iter()
            .map(|n| (n.entry.path.as_str(), n.entry.mode))
            .collect();
        assert_eq!(
            paths,
            [
                ("sv", 0o777),
                ("sv/cron", 0o777),
                ("sv/cron/run", 0o755),
                ("sv/nginx", 0o777),
                ("sv/nginx/run", 0o755)
            ]
        );
        assert_eq!(
            tree.read("sv/nginx/run", &NoSpools).unwrap().unwrap(),
            b"#!/bin/execlineb\n/usr/sbin/nginx -g \"daemon off;\"\n"
        );
        for bad in ["", "..", "a/b"] {
            let services: BTreeMap<String, String> = [(bad.to_string(), "x".to_string())].into();
            assert!(write_supervision_tree(&mut Tree::new(), &services, 3).is_err());
        }
    }

    #[test]
    fn a_service_bundle_runs_s6() {
        let config = ImageConfiguration::from_yaml(
            "contents: {packages: [nginx]}\nentrypoint: {type: service-bundle, services: {nginx: /usr/sbin/nginx}}\n",
        )
        .unwrap();
        let prepared = prepare_service_bundle(&config);
        assert_eq!(prepared.contents.packages, ["nginx", "s6"]);
        assert_eq!(
            prepared.entrypoint.unwrap().command.as_deref(),
            Some(SERVICE_BUNDLE_COMMAND)
        );
        let plain = ImageConfiguration::from_yaml("contents: {packages: [a]}\n").unwrap();
        assert_eq!(prepare_service_bundle(&plain), plain);
    }
}
