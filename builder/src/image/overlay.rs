//! Layer stacking as container runtimes apply it, and the last layer that makes a stack equal
//! to the installed filesystem.
//!
//! A [`Stack`] applies layers' entries in order, as containerd and umoci do: a directory over a
//! directory updates its mode, owner, mtime and extended attributes; anything else at a path
//! first removes what is there (with everything below it); missing parents are created with
//! metadata the stack treats as unknown; a hard link shares the file its target names at that
//! moment. [`Stack::fix_layer`] compares the stack with the target [`Tree`] and returns what a
//! last layer must hold for the two to be equal: every path whose kind, mode, owner, mtime,
//! extended attributes, link target or content differs (with its parent directories), hard
//! links whose file changed, and a `.wh.<name>` whiteout for what must disappear. The result
//! is equal to the target by construction; what the stack cannot predict (an entry under a
//! non-directory, a hard link to something that is not a file) is an error, and the caller
//! writes that package's layer itself instead.
//!
//! [`standalone_issue`] says which data tars cannot be used as they are whatever sits below
//! them. File contents are compared by where they live (spool range or inline bytes), never
//! read. This module is pure.

use std::collections::{BTreeMap, BTreeSet};

use super::entry::{EntryKind, LayerEntry};
use super::tree::{Content, Node, Tree};

/// Prefix of a whiteout's name: `.wh.<name>` removes `<name>` from the layers below.
pub const WHITEOUT_PREFIX: &str = ".wh.";

/// Why a layer's entry cannot be stacked predictably.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StackError {
    /// An entry lies under something that is not a directory in the layers below.
    #[error("{path} lies under {parent}, which is not a directory in the layers below")]
    UnderNonDirectory {
        /// The entry.
        path: String,
        /// The ancestor that is not a directory.
        parent: String,
    },
    /// A hard link names something that is not a regular file when it is applied.
    #[error("hard link {path} names {target}, which is not a regular file at that point")]
    LinkTarget {
        /// The hard link.
        path: String,
        /// Its target.
        target: String,
    },
}

/// What the stack knows about one path.
#[derive(Clone, Debug)]
struct State {
    node: Node,
    /// Changes whenever a non-directory is written at the path: hard links remember the
    /// version of the file they share.
    version: u64,
    /// For a hard link: the version of its target when it was linked.
    linked: Option<u64>,
    /// Whether the metadata is known (false for parents a runtime creates on its own, and for
    /// directories whose extended attributes runtimes merge differently).
    known: bool,
    /// Whether runtimes may disagree on a directory's extended attributes.
    xattrs_uncertain: bool,
}

/// Layers applied so far, as metadata and content locations per path.
#[derive(Clone, Debug, Default)]
pub struct Stack {
    paths: BTreeMap<String, State>,
    next_version: u64,
}

/// An item of the last layer: an entry to write (with its content), or a whiteout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FixItem {
    /// Write this node as the target has it.
    Entry(Node),
    /// Remove the path (written as `<dir>/.wh.<name>`).
    Whiteout(String),
}

impl Stack {
    /// An empty stack.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one layer's entries, in the layer's order. On error the stack is left as it
    /// was before the failing entry.
    ///
    /// A directory from an earlier layer in which this layer creates, replaces or removes
    /// something, without carrying an entry for the directory itself, gets a new mtime from the
    /// runtime (the time the layer is applied): its metadata becomes unknown. So does a
    /// directory in which the runtime creates a missing parent, even when the layer has an
    /// entry for it: umoci restores the metadata of an entry's own parent after writing the
    /// entry, not of the directories above the parents it had to create.
    pub fn apply<'a>(
        &mut self,
        entries: impl IntoIterator<Item = &'a Node>,
    ) -> Result<(), StackError> {
        let mut touched: BTreeSet<String> = BTreeSet::new();
        let mut gained_parent: BTreeSet<String> = BTreeSet::new();
        let mut own: BTreeSet<String> = BTreeSet::new();
        for node in entries {
            let path = node.entry.path.as_str();
            let is_dir = node.entry.kind == EntryKind::Directory;
            if is_dir {
                own.insert(path.to_string());
            }
            let updates_dir = is_dir
                && self
                    .paths
                    .get(path)
                    .is_some_and(|s| s.node.entry.kind == EntryKind::Directory);
            if !updates_dir {
                // The directory that gains the entry, or the one that gains the outermost
                // parent the runtime creates for it.
                if let Some(parent) = parent_of(path) {
                    touched.insert(parent.to_string());
                }
                if let Some(missing) = ancestors(path).find(|a| !self.paths.contains_key(*a))
                    && let Some(gains) = parent_of(missing)
                {
                    gained_parent.insert(gains.to_string());
                }
            }
            self.apply_one(node)?;
        }
        for changed in touched.difference(&own).chain(gained_parent.iter()) {
            if let Some(state) = self.paths.get_mut(changed)
                && state.node.entry.kind == EntryKind::Directory
            {
                state.known = false;
            }
        }
        Ok(())
    }

    fn apply_one(&mut self, node: &Node) -> Result<(), StackError> {
        let path = node.entry.path.as_str();
        for parent in ancestors(path) {
            match self.paths.get(parent) {
                Some(state) if state.node.entry.kind == EntryKind::Directory => {}
                Some(_) => {
                    return Err(StackError::UnderNonDirectory {
                        path: path.to_string(),
                        parent: parent.to_string(),
                    });
                }
                None => {
                    let implicit = Node {
                        entry: LayerEntry::directory(parent, 0o755, 0),
                        content: Content::Empty,
                        owner: None,
                    };
                    self.paths.insert(
                        parent.to_string(),
                        State {
                            node: implicit,
                            version: 0,
                            linked: None,
                            known: false,
                            xattrs_uncertain: false,
                        },
                    );
                }
            }
        }
        let linked = match &node.entry.kind {
            EntryKind::Hardlink { target } => match self.paths.get(target.as_str()) {
                Some(state) if matches!(state.node.entry.kind, EntryKind::File { .. }) => {
                    Some(state.version)
                }
                _ => {
                    return Err(StackError::LinkTarget {
                        path: path.to_string(),
                        target: target.clone(),
                    });
                }
            },
            _ => None,
        };
        if node.entry.kind == EntryKind::Directory
            && let Some(existing) = self.paths.get_mut(path)
            && existing.node.entry.kind == EntryKind::Directory
        {
            // A directory over a directory: its children stay, its metadata changes. Runtimes
            // differ on extended attributes the new entry does not name (containerd keeps
            // them, umoci drops them): then the result is unknown.
            let dropped = existing
                .node
                .entry
                .xattrs
                .keys()
                .any(|name| !node.entry.xattrs.contains_key(name));
            existing.node = node.clone();
            existing.xattrs_uncertain |= dropped;
            existing.known = !existing.xattrs_uncertain;
            return Ok(());
        }
        self.remove_below(path);
        self.next_version += 1;
        self.paths.insert(
            path.to_string(),
            State {
                node: node.clone(),
                version: self.next_version,
                linked,
                known: true,
                xattrs_uncertain: false,
            },
        );
        Ok(())
    }

    /// Removes everything strictly below `path`.
    fn remove_below(&mut self, path: &str) {
        let prefix = format!("{path}/");
        let below: Vec<String> = self
            .paths
            .range(prefix.clone()..)
            .take_while(|(p, _)| p.starts_with(&prefix))
            .map(|(p, _)| p.clone())
            .collect();
        for path in below {
            self.paths.remove(&path);
        }
    }

    /// Whether the stack holds exactly what `node` describes (before any last layer).
    fn matches(&self, node: &Node) -> bool {
        let Some(state) = self.paths.get(&node.entry.path) else {
            return false;
        };
        state.known && same_metadata(&state.node, node)
    }

    /// What a last layer must hold for the stack to equal `target`: entries in path order,
    /// then the hard links that must be made again (each after the file it names).
    pub fn fix_layer(&self, target: &Tree) -> Vec<FixItem> {
        let mut emitted: BTreeSet<&str> = BTreeSet::new();
        let mut items: Vec<FixItem> = Vec::new();
        let mut links: Vec<&Node> = Vec::new();
        // Non-links first: they decide which files change under the links.
        for node in target.iter() {
            if matches!(node.entry.kind, EntryKind::Hardlink { .. }) {
                continue;
            }
            if !self.matches(node) {
                emitted.insert(node.entry.path.as_str());
            }
        }
        for node in target.iter() {
            let EntryKind::Hardlink { target: file } = &node.entry.kind else {
                continue;
            };
            let intact = self.matches(node)
                && !emitted.contains(file.as_str())
                && match (self.paths.get(&node.entry.path), self.paths.get(file)) {
                    (Some(link), Some(file)) => link.linked == Some(file.version),
                    _ => false,
                };
            if !intact {
                links.push(node);
            }
        }
        // Parents of everything written or removed are written too, so that their metadata
        // (mtime included) is the target's once the layer is applied.
        let mut removed: Vec<&str> = Vec::new();
        for path in self.paths.keys() {
            if target.contains(path) {
                continue;
            }
            // Already gone with an ancestor that is removed or replaced by a non-directory.
            let covered = ancestors(path).any(|ancestor| {
                removed.binary_search(&ancestor).is_ok()
                    || (emitted.contains(ancestor)
                        && target
                            .get(ancestor)
                            .is_some_and(|n| n.entry.kind != EntryKind::Directory))
            });
            if !covered {
                removed.push(path.as_str());
                removed.sort_unstable();
            }
        }
        let mut with_parents: BTreeSet<&str> = emitted.clone();
        for path in emitted
            .iter()
            .copied()
            .chain(links.iter().map(|n| n.entry.path.as_str()))
            .chain(removed.iter().copied())
        {
            with_parents.extend(ancestors(path).filter(|p| target.contains(p)));
        }
        let whiteouts: BTreeMap<String, &str> = removed
            .iter()
            .map(|path| (whiteout_path(path), *path))
            .collect();
        // Entries and whiteouts in one path order.
        let mut ordered: BTreeMap<String, FixItem> = BTreeMap::new();
        for path in with_parents {
            if let Some(node) = target.get(path) {
                ordered.insert(path.to_string(), FixItem::Entry(node.clone()));
            }
        }
        for (name, path) in whiteouts {
            ordered.insert(name, FixItem::Whiteout(path.to_string()));
        }
        items.extend(ordered.into_values());
        items.extend(links.into_iter().map(|n| FixItem::Entry(n.clone())));
        items
    }

    /// Applies a last layer computed by [`Self::fix_layer`].
    pub fn apply_fix(&mut self, items: &[FixItem]) -> Result<(), StackError> {
        for item in items {
            match item {
                FixItem::Entry(node) => self.apply_one(node)?,
                FixItem::Whiteout(path) => {
                    self.remove_below(path);
                    self.paths.remove(path);
                }
            }
        }
        Ok(())
    }

    /// Paths the stack holds whose state differs from `target`, and target paths it lacks
    /// (empty when the stack equals the target).
    pub fn differences(&self, target: &Tree) -> Vec<String> {
        let mut differences: Vec<String> = target
            .iter()
            .filter(|node| {
                !self.matches(node)
                    || match &node.entry.kind {
                        EntryKind::Hardlink { target: file } => {
                            match (self.paths.get(&node.entry.path), self.paths.get(file)) {
                                (Some(link), Some(file)) => link.linked != Some(file.version),
                                _ => true,
                            }
                        }
                        _ => false,
                    }
            })
            .map(|node| node.entry.path.clone())
            .collect();
        differences.extend(
            self.paths
                .keys()
                .filter(|path| !target.contains(path))
                .cloned(),
        );
        differences
    }
}

/// Whether two nodes describe the same filesystem object: kind (with link target and size),
/// mode, owner IDs, mtime, extended attributes and content. User and group names are not
/// compared: runtimes apply the numeric IDs.
fn same_metadata(a: &Node, b: &Node) -> bool {
    let (x, y) = (&a.entry, &b.entry);
    x.kind == y.kind
        && x.mode == y.mode
        && x.uid == y.uid
        && x.gid == y.gid
        && x.mtime == y.mtime
        && x.xattrs == y.xattrs
        && (!matches!(x.kind, EntryKind::File { .. }) || a.content == b.content)
}

/// The whiteout entry's path for `path`: `<dir>/.wh.<name>`.
pub fn whiteout_path(path: &str) -> String {
    match path.rsplit_once('/') {
        Some((dir, name)) => format!("{dir}/{WHITEOUT_PREFIX}{name}"),
        None => format!("{WHITEOUT_PREFIX}{path}"),
    }
}

/// The parent of a normalized path, `None` at the top.
fn parent_of(path: &str) -> Option<&str> {
    path.rfind('/').map(|at| &path[..at])
}

/// Strict ancestors of a normalized path, outermost first.
fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/').map(move |(at, _)| &path[..at])
}

/// Why a package's data tar (its entries in tar order) cannot be a layer whatever lies below
/// it, or `None`: a name a runtime reads as a whiteout, extended attributes on a directory
/// (runtimes merge those differently), or a hard link that does not name a regular file
/// earlier in the same tar with the same mode, owner, mtime and attributes (runtimes apply a
/// link's header to the file it shares).
pub fn standalone_issue(entries: &[Node]) -> Option<String> {
    let mut files: BTreeMap<&str, &LayerEntry> = BTreeMap::new();
    for node in entries {
        let entry = &node.entry;
        if entry
            .path
            .split('/')
            .any(|component| component.starts_with(WHITEOUT_PREFIX))
        {
            return Some(format!("{} would be read as a whiteout", entry.path));
        }
        match &entry.kind {
            EntryKind::Directory if !entry.xattrs.is_empty() => {
                return Some(format!("directory {} has extended attributes", entry.path));
            }
            EntryKind::File { .. } => {
                files.insert(&entry.path, entry);
            }
            EntryKind::Hardlink { target } => {
                let same = files.get(target.as_str()).is_some_and(|file| {
                    file.mode == entry.mode
                        && file.uid == entry.uid
                        && file.gid == entry.gid
                        && file.mtime == entry.mtime
                        && file.xattrs == entry.xattrs
                });
                if !same {
                    return Some(format!(
                        "hard link {} does not share its file's metadata within the package",
                        entry.path
                    ));
                }
            }
            _ => {
                files.remove(entry.path.as_str());
            }
        }
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn dir(path: &str, mode: u32, mtime: i64) -> Node {
        Node {
            entry: LayerEntry::directory(path, mode, mtime),
            content: Content::Empty,
            owner: None,
        }
    }

    fn file(path: &str, bytes: &[u8], mtime: i64) -> Node {
        Node {
            entry: LayerEntry::file(path, bytes.len() as u64, 0o644, mtime),
            content: Content::inline(bytes.to_vec()),
            owner: None,
        }
    }

    fn symlink(path: &str, target: &str) -> Node {
        Node {
            entry: LayerEntry::symlink(path, target, 1),
            content: Content::Empty,
            owner: None,
        }
    }

    fn hardlink(path: &str, target: &str, mtime: i64) -> Node {
        let mut entry = LayerEntry::file(path, 0, 0o644, mtime);
        entry.kind = EntryKind::Hardlink {
            target: target.to_string(),
        };
        Node {
            entry,
            content: Content::Empty,
            owner: None,
        }
    }

    fn tree(nodes: &[Node]) -> Tree {
        let mut tree = Tree::new();
        for node in nodes {
            tree.insert(node.clone());
        }
        tree
    }

    /// Stacks `layers`, computes the last layer for `target`, applies it and checks equality;
    /// returns the last layer.
    fn check(layers: &[Vec<Node>], target: &[Node]) -> Vec<FixItem> {
        let target = tree(target);
        let mut stack = Stack::new();
        for layer in layers {
            stack.apply(layer).unwrap();
        }
        let fix = stack.fix_layer(&target);
        stack.apply_fix(&fix).unwrap();
        assert_eq!(stack.differences(&target), Vec::<String>::new(), "{fix:?}");
        fix
    }

    fn names(items: &[FixItem]) -> Vec<String> {
        items
            .iter()
            .map(|item| match item {
                FixItem::Entry(node) => node.entry.path.clone(),
                FixItem::Whiteout(path) => format!("-{path}"),
            })
            .collect()
    }

    #[test]
    fn an_exact_stack_needs_nothing() {
        let a = vec![dir("usr", 0o755, 1), file("usr/a", b"a", 1)];
        let b = vec![dir("usr", 0o755, 1), file("usr/b", b"b", 1)];
        let fix = check(
            &[a, b],
            &[
                dir("usr", 0o755, 1),
                file("usr/a", b"a", 1),
                file("usr/b", b"b", 1),
            ],
        );
        assert!(fix.is_empty(), "{fix:?}");
    }

    #[test]
    fn differences_are_written_with_their_parents_and_the_rest_whited_out() {
        let a = vec![
            dir("usr", 0o755, 1),
            dir("usr/bin", 0o755, 1),
            file("usr/bin/x", b"old", 1),
            file("usr/bin/gone", b"g", 1),
            dir("opt", 0o755, 1),
            file("opt/deep", b"d", 1),
        ];
        let b = vec![dir("usr", 0o700, 2), file("usr/bin/x", b"new", 2)];
        // The target keeps the first x, the first directory metadata, and neither `gone` nor
        // `opt`.
        let fix = check(
            &[a, b],
            &[
                dir("usr", 0o755, 1),
                dir("usr/bin", 0o755, 1),
                file("usr/bin/x", b"old", 1),
            ],
        );
        assert_eq!(
            names(&fix),
            ["-opt", "usr", "usr/bin", "-usr/bin/gone", "usr/bin/x"]
        );
    }

    #[test]
    fn types_replace_each_other_and_parents_are_created() {
        // A file becomes a directory, a directory becomes a symlink (taking its children).
        let a = vec![
            file("etc", b"x", 1),
            dir("lib", 0o755, 1),
            file("lib/libc.so", b"c", 1),
        ];
        let b = vec![file("srv/www/index", b"i", 1)];
        check(
            &[a, b],
            &[
                dir("etc", 0o755, 1),
                symlink("lib", "usr/lib"),
                dir("srv", 0o755, 1),
                dir("srv/www", 0o755, 1),
                file("srv/www/index", b"i", 1),
            ],
        );
    }

    /// A runtime gives a directory a new mtime when a later layer adds to it without an entry
    /// for the directory: the last layer must write the directory again.
    #[test]
    fn directories_a_later_layer_adds_to_are_written_again() {
        let base = vec![dir("opt", 0o755, 5), dir("opt/a", 0o755, 5)];
        let adds = vec![file("opt/a/new", b"new", 9)];
        let target = [
            dir("opt", 0o755, 5),
            dir("opt/a", 0o755, 5),
            file("opt/a/new", b"new", 9),
        ];
        // (with its parent, as every written path's parents are written)
        assert_eq!(
            names(&check(&[base.clone(), adds], &target)),
            ["opt", "opt/a"]
        );
        // With its own entry for the directory, the layer leaves nothing to fix.
        let adds_with_dir = vec![dir("opt/a", 0o755, 5), file("opt/a/new", b"new", 9)];
        assert!(check(&[base.clone(), adds_with_dir], &target).is_empty());
        // Unless the runtime creates a missing parent in it.
        let creates_parent = vec![dir("opt/a", 0o755, 5), file("opt/a/b/new", b"new", 9)];
        let target_deeper = [
            dir("opt", 0o755, 5),
            dir("opt/a", 0o755, 5),
            dir("opt/a/b", 0o755, 9),
            file("opt/a/b/new", b"new", 9),
        ];
        assert_eq!(
            names(&check(&[base.clone(), creates_parent], &target_deeper)),
            ["opt", "opt/a", "opt/a/b"]
        );
        // A parent the runtime creates changes the directory that gains it.
        let deep = vec![file("opt/b/c/new", b"new", 9)];
        let target = [
            dir("opt", 0o755, 5),
            dir("opt/a", 0o755, 5),
            dir("opt/b", 0o755, 9),
            dir("opt/b/c", 0o755, 9),
            file("opt/b/c/new", b"new", 9),
        ];
        assert_eq!(
            names(&check(&[base, deep], &target)),
            ["opt", "opt/b", "opt/b/c"]
        );
    }

    #[test]
    fn hard_links_follow_the_file_they_share() {
        let a = vec![file("bin/a", b"1", 1), hardlink("bin/b", "bin/a", 1)];
        let b = vec![file("bin/a", b"2", 2)];
        // The target's a is b's; the link must be made again after it.
        let fix = check(
            &[a, b],
            &[
                dir("bin", 0o755, 1),
                file("bin/a", b"2", 2),
                hardlink("bin/b", "bin/a", 2),
            ],
        );
        assert_eq!(names(&fix).last().map(String::as_str), Some("bin/b"));
    }

    #[test]
    fn unpredictable_stacks_are_refused() {
        let mut stack = Stack::new();
        stack.apply(&[symlink("bin", "usr/bin")]).unwrap();
        assert_eq!(
            stack.apply(&[file("bin/x", b"x", 1)]),
            Err(StackError::UnderNonDirectory {
                path: "bin/x".into(),
                parent: "bin".into()
            })
        );
        assert!(matches!(
            stack.apply(&[hardlink("y", "missing", 1)]),
            Err(StackError::LinkTarget { .. })
        ));
    }

    #[test]
    fn standalone_issues() {
        assert_eq!(standalone_issue(&[file("a", b"a", 1)]), None);
        assert!(standalone_issue(&[file("etc/.wh.passwd", b"", 1)]).is_some());
        let mut with_xattr = dir("etc", 0o755, 1);
        with_xattr
            .entry
            .xattrs
            .insert("user.a".into(), b"1".to_vec());
        assert!(standalone_issue(&[with_xattr]).is_some());
        assert_eq!(
            standalone_issue(&[file("a", b"a", 1), hardlink("b", "a", 1)]),
            None
        );
        assert!(standalone_issue(&[hardlink("b", "a", 1), file("a", b"a", 1)]).is_some());
        assert!(standalone_issue(&[file("a", b"a", 1), hardlink("b", "a", 2)]).is_some());
    }
}
