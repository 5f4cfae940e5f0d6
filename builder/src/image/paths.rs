//! The `paths:` step of the image configuration (directories, empty files, hard links, symlinks
//! and permission changes applied to the [`Tree`] in order), and the in-tree path resolution the
//! other content steps share: symlinks are followed as the kernel would, but never out of the
//! image root.
//!
//! Nothing here reads file contents or touches the host filesystem. apko's quirks that would
//! damage the image are deliberately not reproduced: a mutation without `permissions` keeps the
//! mode it has (apko would set mode 0), and a symlink's permissions and ownership apply to the
//! link itself, never to what it points at.

use std::collections::{HashMap, VecDeque};

use securebuild_crds::image_config::{PathMutation, PathType};

use super::entry::{EntryKind, LayerEntry};
use super::guard::{self, GuardError};
use super::tree::{Content, Node, Tree};

/// Most symlinks followed while resolving one path (Linux `MAXSYMLINKS`).
pub const MAX_SYMLINK_HOPS: usize = 40;

/// Mode of directories created implicitly (missing parents).
pub const DEFAULT_DIRECTORY_MODE: u32 = 0o755;

/// Mode of a regular file created by `empty-file` (Go's `os.Create` with the usual umask).
pub const DEFAULT_FILE_MODE: u32 = 0o644;

/// Bits of a mode that a path mutation may set.
const MODE_BITS: u32 = 0o7777;

/// Why a path could not be resolved or created inside the tree.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TreePathError {
    /// The path cannot be stored in a layer (NUL byte, over-long component, …).
    #[error("path {path:?} cannot be stored in the image")]
    Invalid {
        /// The path as given.
        path: String,
        /// What the layer guard objects to.
        #[source]
        source: GuardError,
    },
    /// More than [`MAX_SYMLINK_HOPS`] symlinks were followed.
    #[error("resolving {path:?} followed more than 40 symbolic links")]
    TooManyLinks {
        /// The path as given.
        path: String,
    },
    /// A component that must be a directory is a file, device or FIFO.
    #[error("resolving {path:?}: {component:?} is not a directory")]
    NotADirectory {
        /// The path as given.
        path: String,
        /// The offending component, as a tree path.
        component: String,
    },
}

/// Resolves `path` (absolute, or relative to the image root) to a tree path.
///
/// Symlinks in every component but the last are followed; the last is followed only when
/// `follow_final` is set. Absolute link targets restart at the image root and `..` never climbs
/// above it. Components that do not exist are kept as written, so the result may name a path
/// that is still to be created. The root itself resolves to the empty string.
pub fn resolve(tree: &Tree, path: &str, follow_final: bool) -> Result<String, TreePathError> {
    if path.contains('\0') {
        return Err(TreePathError::Invalid {
            path: path.to_string(),
            source: GuardError::ContainsNul {
                path: path.to_string(),
            },
        });
    }
    let mut pending: VecDeque<String> = components(path);
    let mut resolved: Vec<String> = Vec::new();
    let mut hops = 0usize;
    while let Some(component) = pending.pop_front() {
        if component == ".." {
            resolved.pop();
            continue;
        }
        let is_final = pending.is_empty();
        resolved.push(component);
        let candidate = resolved.join("/");
        let Some(node) = tree.get(&candidate) else {
            continue;
        };
        match &node.entry.kind {
            EntryKind::Symlink { target } if !is_final || follow_final => {
                hops += 1;
                if hops > MAX_SYMLINK_HOPS {
                    return Err(TreePathError::TooManyLinks {
                        path: path.to_string(),
                    });
                }
                resolved.pop();
                if target.starts_with('/') {
                    resolved.clear();
                }
                let mut next = components(target);
                next.extend(pending.drain(..));
                pending = next;
            }
            EntryKind::Directory => {}
            _ if is_final => {}
            _ => {
                return Err(TreePathError::NotADirectory {
                    path: path.to_string(),
                    component: candidate,
                });
            }
        }
    }
    Ok(resolved.join("/"))
}

/// Splits a path into its components, dropping empty ones and `.`.
fn components(path: &str) -> VecDeque<String> {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .map(str::to_string)
        .collect()
}

/// Checks that a resolved, non-root tree path can be stored in a layer.
pub fn check_storable(path: &str) -> Result<(), TreePathError> {
    guard::normalize(path)
        .map(|_| ())
        .map_err(|source| TreePathError::Invalid {
            path: path.to_string(),
            source,
        })
}

/// The parent of a tree path (`""` for top-level paths).
pub fn parent(path: &str) -> &str {
    path.rfind('/').map_or("", |i| &path[..i])
}

/// The last component of a tree path.
pub fn base_name(path: &str) -> &str {
    path.rfind('/').map_or(path, |i| &path[i + 1..])
}

/// Makes sure every component of the resolved tree path `dir` is a directory, creating missing
/// ones owned by root: `final_mode` for `dir` itself, [`DEFAULT_DIRECTORY_MODE`] for the others.
/// The empty path (the root) needs nothing. Returns whether `dir` itself was created.
pub fn make_dirs(
    tree: &mut Tree,
    dir: &str,
    final_mode: u32,
    mtime: i64,
) -> Result<bool, TreePathError> {
    if dir.is_empty() {
        return Ok(false);
    }
    check_storable(dir)?;
    let mut end = 0;
    loop {
        let next = dir[end..].find('/').map(|i| end + i);
        let prefix = &dir[..next.unwrap_or(dir.len())];
        let mut created = false;
        match tree.get(prefix).map(|node| &node.entry.kind) {
            Some(EntryKind::Directory) => {}
            Some(_) => {
                return Err(TreePathError::NotADirectory {
                    path: dir.to_string(),
                    component: prefix.to_string(),
                });
            }
            None => {
                let mode = if next.is_none() {
                    final_mode
                } else {
                    DEFAULT_DIRECTORY_MODE
                };
                tree.insert(Node {
                    entry: LayerEntry::directory(prefix, mode, mtime),
                    content: Content::Empty,
                    owner: None,
                });
                created = true;
            }
        }
        match next {
            Some(i) => end = i + 1,
            None => return Ok(created),
        }
    }
}

/// A short name for the kind of an entry, for messages.
pub fn kind_name(kind: &EntryKind) -> &'static str {
    match kind {
        EntryKind::Directory => "directory",
        EntryKind::File { .. } => "regular file",
        EntryKind::Symlink { .. } => "symlink",
        EntryKind::Hardlink { .. } => "hard link",
        EntryKind::CharDevice { .. } => "character device",
        EntryKind::Fifo => "fifo",
    }
}

/// The configuration's name for a mutation type.
fn mutation_name(kind: PathType) -> &'static str {
    match kind {
        PathType::Directory => "directory",
        PathType::EmptyFile => "empty-file",
        PathType::Hardlink => "hardlink",
        PathType::Symlink => "symlink",
        PathType::Permissions => "permissions",
    }
}

/// Why a path mutation failed; every variant names the mutation's index in `paths` and its path.
#[derive(Debug, thiserror::Error)]
pub enum PathError {
    /// The path (or a hard link source) cannot be resolved or stored.
    #[error("paths[{index}]: cannot use {path:?}")]
    Invalid {
        /// Index of the mutation in `paths`.
        index: usize,
        /// The path as configured.
        path: String,
        /// Why resolution failed.
        #[source]
        source: TreePathError,
    },
    /// The path is the image root, which has no entry to change.
    #[error("paths[{index}]: {path:?} names the image root, which cannot be created or changed")]
    Root {
        /// Index of the mutation in `paths`.
        index: usize,
        /// The path as configured.
        path: String,
    },
    /// A `symlink` or `hardlink` mutation without `source`.
    #[error("paths[{index}]: {kind} {path:?} needs a source")]
    MissingSource {
        /// Index of the mutation in `paths`.
        index: usize,
        /// The path as configured.
        path: String,
        /// The mutation type.
        kind: &'static str,
    },
    /// A hard link source that does not exist.
    #[error("paths[{index}]: hard link source {link_source:?} of {path:?} does not exist")]
    SourceNotFound {
        /// Index of the mutation in `paths`.
        index: usize,
        /// The path as configured.
        path: String,
        /// The source as configured.
        link_source: String,
    },
    /// A hard link source that is not a regular file.
    #[error(
        "paths[{index}]: hard link source {link_source:?} of {path:?} is a {existing}, not a regular file"
    )]
    SourceNotAFile {
        /// Index of the mutation in `paths`.
        index: usize,
        /// The path as configured.
        path: String,
        /// The source as configured.
        link_source: String,
        /// What the source is.
        existing: &'static str,
    },
    /// Something that cannot be replaced is already at the path.
    #[error("paths[{index}]: cannot create {kind} {path:?}: a {existing} is already there")]
    Exists {
        /// Index of the mutation in `paths`.
        index: usize,
        /// The path as configured.
        path: String,
        /// The mutation type.
        kind: &'static str,
        /// What is there.
        existing: &'static str,
    },
    /// A `permissions` mutation on a path that does not exist.
    #[error("paths[{index}]: cannot change permissions of {path:?}: it does not exist")]
    NotFound {
        /// Index of the mutation in `paths`.
        index: usize,
        /// The path as configured.
        path: String,
    },
    /// A hard link would replace a file that other hard links point at.
    #[error("paths[{index}]: cannot replace {path:?}: the hard link {linked_from:?} points at it")]
    LinkedTarget {
        /// Index of the mutation in `paths`.
        index: usize,
        /// The path as configured.
        path: String,
        /// A hard link pointing at the path.
        linked_from: String,
    },
}

/// Applies the image configuration's `paths` to the tree, in order. Entries created here are
/// root-owned with modification time `mtime`, then get the mutation's permissions and owner.
pub fn apply_path_mutations(
    tree: &mut Tree,
    mutations: &[PathMutation],
    mtime: i64,
) -> Result<(), PathError> {
    for (index, mutation) in mutations.iter().enumerate() {
        Mutator {
            tree: &mut *tree,
            index,
            mutation,
            mtime,
        }
        .apply()?;
    }
    Ok(())
}

/// One mutation being applied.
struct Mutator<'a> {
    tree: &'a mut Tree,
    index: usize,
    mutation: &'a PathMutation,
    mtime: i64,
}

impl Mutator<'_> {
    fn apply(self) -> Result<(), PathError> {
        match self.mutation.kind {
            PathType::Directory => self.directory(),
            PathType::EmptyFile => self.empty_file(),
            PathType::Hardlink => self.hardlink(),
            PathType::Symlink => self.symlink(),
            PathType::Permissions => self.permissions(),
        }
    }

    fn kind(&self) -> &'static str {
        mutation_name(self.mutation.kind)
    }

    fn invalid(&self, source: TreePathError) -> PathError {
        PathError::Invalid {
            index: self.index,
            path: self.mutation.path.clone(),
            source,
        }
    }

    fn exists(&self, existing: &EntryKind) -> PathError {
        PathError::Exists {
            index: self.index,
            path: self.mutation.path.clone(),
            kind: self.kind(),
            existing: kind_name(existing),
        }
    }

    /// Resolves the mutation's own path; the root is refused.
    fn target(&self, follow_final: bool) -> Result<String, PathError> {
        let target =
            resolve(self.tree, &self.mutation.path, follow_final).map_err(|e| self.invalid(e))?;
        if target.is_empty() {
            return Err(PathError::Root {
                index: self.index,
                path: self.mutation.path.clone(),
            });
        }
        check_storable(&target).map_err(|e| self.invalid(e))?;
        Ok(target)
    }

    fn make_parents(&mut self, target: &str) -> Result<(), PathError> {
        make_dirs(
            self.tree,
            parent(target),
            DEFAULT_DIRECTORY_MODE,
            self.mtime,
        )
        .map(|_| ())
        .map_err(|e| self.invalid(e))
    }

    fn directory(self) -> Result<(), PathError> {
        let target = self.target(true)?;
        match self.tree.get(&target).map(|n| n.entry.kind.clone()) {
            Some(EntryKind::Directory) => {}
            Some(other) => return Err(self.exists(&other)),
            None => {
                make_dirs(self.tree, &target, DEFAULT_DIRECTORY_MODE, self.mtime)
                    .map_err(|e| self.invalid(e))?;
            }
        }
        self.set_attributes(&target);
        Ok(())
    }

    fn empty_file(mut self) -> Result<(), PathError> {
        let target = self.target(true)?;
        self.make_parents(&target)?;
        match self.tree.get_mut(&target) {
            Some(node) if matches!(node.entry.kind, EntryKind::File { .. }) => {
                node.entry.kind = EntryKind::File { size: 0 };
                node.entry.mtime = self.mtime;
                node.content = Content::Empty;
                node.owner = None;
            }
            Some(node) => {
                let existing = node.entry.kind.clone();
                return Err(self.exists(&existing));
            }
            None => {
                self.tree.insert(Node {
                    entry: LayerEntry::file(target.as_str(), 0, DEFAULT_FILE_MODE, self.mtime),
                    content: Content::Empty,
                    owner: None,
                });
            }
        }
        self.set_attributes(&target);
        Ok(())
    }

    fn source(&self) -> Result<&str, PathError> {
        match self.mutation.source.as_deref() {
            Some(source) if !source.is_empty() => Ok(source),
            _ => Err(PathError::MissingSource {
                index: self.index,
                path: self.mutation.path.clone(),
                kind: self.kind(),
            }),
        }
    }

    fn hardlink(mut self) -> Result<(), PathError> {
        let link_source = self.source()?.to_string();
        // link(2) does not follow a symlink given as the source.
        let source = resolve(self.tree, &link_source, false).map_err(|e| self.invalid(e))?;
        let holder = match self.tree.get(&source).map(|n| &n.entry.kind) {
            Some(EntryKind::File { .. }) => source.clone(),
            Some(EntryKind::Hardlink { target }) => target.clone(),
            Some(other) => {
                return Err(PathError::SourceNotAFile {
                    index: self.index,
                    path: self.mutation.path.clone(),
                    link_source,
                    existing: kind_name(other),
                });
            }
            None => {
                return Err(PathError::SourceNotFound {
                    index: self.index,
                    path: self.mutation.path.clone(),
                    link_source,
                });
            }
        };
        if !matches!(
            self.tree.get(&holder).map(|n| &n.entry.kind),
            Some(EntryKind::File { .. })
        ) {
            return Err(PathError::SourceNotFound {
                index: self.index,
                path: self.mutation.path.clone(),
                link_source,
            });
        }
        let target = self.target(false)?;
        if target == source || target == holder {
            return Err(self.exists(&EntryKind::File { size: 0 }));
        }
        self.make_parents(&target)?;
        if let Some(existing) = self.tree.get(&target).map(|n| n.entry.kind.clone()) {
            if existing == EntryKind::Directory {
                return Err(self.exists(&existing));
            }
            if let Some(linked_from) = links_to(self.tree, &target).into_iter().next() {
                return Err(PathError::LinkedTarget {
                    index: self.index,
                    path: self.mutation.path.clone(),
                    linked_from,
                });
            }
            self.tree.remove(&target);
        }
        link(self.tree, &holder, &target, self.mtime);
        self.set_attributes(&target);
        Ok(())
    }

    fn symlink(mut self) -> Result<(), PathError> {
        let link_target = self.source()?.to_string();
        let target = self.target(false)?;
        if let Some(node) = self.tree.get(&target) {
            let existing = node.entry.kind.clone();
            return Err(self.exists(&existing));
        }
        self.make_parents(&target)?;
        self.tree.insert(Node {
            entry: LayerEntry::symlink(target.as_str(), link_target, self.mtime),
            content: Content::Empty,
            owner: None,
        });
        self.set_attributes(&target);
        Ok(())
    }

    fn permissions(self) -> Result<(), PathError> {
        let target = self.target(true)?;
        if !self.tree.contains(&target) {
            return Err(PathError::NotFound {
                index: self.index,
                path: self.mutation.path.clone(),
            });
        }
        self.set_attributes(&target);
        Ok(())
    }

    /// Applies `permissions`, `uid` and `gid` to the path (and everything below it when
    /// `recursive`). Ownership changes only when `uid` or `gid` is given; the other defaults to 0.
    fn set_attributes(self, target: &str) {
        let mode = self.mutation.permissions.map(|p| p.0 & MODE_BITS);
        let owner = match (self.mutation.uid, self.mutation.gid) {
            (None, None) => None,
            (uid, gid) => Some((uid.unwrap_or(0), gid.unwrap_or(0))),
        };
        if mode.is_none() && owner.is_none() {
            return;
        }
        let paths = if self.mutation.recursive {
            self.tree.subtree_paths(target)
        } else {
            vec![target.to_string()]
        };
        let links = hard_links(self.tree);
        for path in paths {
            set_inode_attributes(self.tree, &links, &path, mode, owner);
        }
    }
}

/// For every file that hard links point at, the paths of those links (in layer order).
fn hard_links(tree: &Tree) -> HashMap<String, Vec<String>> {
    let mut links: HashMap<String, Vec<String>> = HashMap::new();
    for node in tree.iter() {
        if let EntryKind::Hardlink { target } = &node.entry.kind {
            links
                .entry(target.clone())
                .or_default()
                .push(node.entry.path.clone());
        }
    }
    links
}

/// Paths of the hard links that point at `path`, in layer order.
fn links_to(tree: &Tree, path: &str) -> Vec<String> {
    tree.iter()
        .filter(|node| matches!(&node.entry.kind, EntryKind::Hardlink { target } if target == path))
        .map(|node| node.entry.path.clone())
        .collect()
}

/// Adds `new_path` as another name of the regular file at `holder`.
///
/// A tar hard link must come after the file it names, so when `new_path` sorts before `holder`
/// the file moves to `new_path` and `holder` (and every other link to it) becomes the link.
fn link(tree: &mut Tree, holder: &str, new_path: &str, mtime: i64) {
    let Some(file) = tree.get(holder).cloned() else {
        return;
    };
    let link_entry = |path: &str, target: &str, template: &LayerEntry| LayerEntry {
        path: path.to_string(),
        kind: EntryKind::Hardlink {
            target: target.to_string(),
        },
        ..template.clone()
    };
    if new_path < holder {
        let others = links_to(tree, holder);
        let mut moved = file.clone();
        moved.entry.path = new_path.to_string();
        moved.entry.mtime = mtime;
        moved.owner = None;
        tree.insert(moved);
        tree.insert(Node {
            entry: link_entry(holder, new_path, &file.entry),
            content: Content::Empty,
            owner: file.owner,
        });
        for other in others {
            if let Some(node) = tree.get_mut(&other) {
                node.entry.kind = EntryKind::Hardlink {
                    target: new_path.to_string(),
                };
            }
        }
    } else {
        let mut entry = link_entry(new_path, holder, &file.entry);
        entry.mtime = mtime;
        tree.insert(Node {
            entry,
            content: Content::Empty,
            owner: None,
        });
    }
}

/// Sets mode and owner on a path; for files and hard links, on every name of the same file. A
/// symlink keeps its 0777 mode and only changes owner.
fn set_inode_attributes(
    tree: &mut Tree,
    links: &HashMap<String, Vec<String>>,
    path: &str,
    mode: Option<u32>,
    owner: Option<(u32, u32)>,
) {
    let Some(kind) = tree.get(path).map(|n| n.entry.kind.clone()) else {
        return;
    };
    let holder = match &kind {
        EntryKind::File { .. } => Some(path),
        EntryKind::Hardlink { target } => Some(target.as_str()),
        _ => None,
    };
    let names: Vec<String> = match holder {
        Some(holder) => std::iter::once(holder.to_string())
            .chain(links.get(holder).into_iter().flatten().cloned())
            .collect(),
        None => vec![path.to_string()],
    };
    for name in names {
        let Some(node) = tree.get_mut(&name) else {
            continue;
        };
        let is_symlink = matches!(node.entry.kind, EntryKind::Symlink { .. });
        if let (Some(mode), false) = (mode, is_symlink) {
            node.entry.mode = mode;
        }
        if let Some((uid, gid)) = owner {
            node.entry.uid = uid;
            node.entry.gid = gid;
            node.entry.uname = None;
            node.entry.gname = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use securebuild_crds::image_config::FileMode;

    fn dir(tree: &mut Tree, path: &str) {
        tree.insert(Node {
            entry: LayerEntry::directory(path, 0o755, 1),
            content: Content::Empty,
            owner: Some(0),
        });
    }

    fn file(tree: &mut Tree, path: &str, bytes: &[u8]) {
        tree.insert(Node {
            entry: LayerEntry::file(path, bytes.len() as u64, 0o644, 1),
            content: Content::inline(bytes.to_vec()),
            owner: Some(0),
        });
    }

    fn symlink(tree: &mut Tree, path: &str, target: &str) {
        tree.insert(Node {
            entry: LayerEntry::symlink(path, target, 1),
            content: Content::Empty,
            owner: Some(0),
        });
    }

    /// A merged-usr layout: `bin -> usr/bin`, `lib -> usr/lib`, a file and a link chain.
    fn base() -> Tree {
        let mut tree = Tree::new();
        dir(&mut tree, "usr");
        dir(&mut tree, "usr/bin");
        dir(&mut tree, "usr/lib");
        dir(&mut tree, "etc");
        symlink(&mut tree, "bin", "usr/bin");
        symlink(&mut tree, "lib", "/usr/lib");
        file(&mut tree, "usr/bin/busybox", b"bb");
        symlink(&mut tree, "usr/bin/sh", "busybox");
        symlink(&mut tree, "loop1", "loop2");
        symlink(&mut tree, "loop2", "loop1");
        symlink(&mut tree, "escape", "../../../../etc");
        tree
    }

    #[test]
    fn resolution() {
        let tree = base();
        let check = |path: &str, follow: bool, expected: Result<&str, &str>| {
            let got = resolve(&tree, path, follow);
            match expected {
                Ok(want) => assert_eq!(got.as_deref(), Ok(want), "{path}"),
                Err(kind) => {
                    let err = got.expect_err(path);
                    let name = match err {
                        TreePathError::Invalid { .. } => "invalid",
                        TreePathError::TooManyLinks { .. } => "loop",
                        TreePathError::NotADirectory { .. } => "notdir",
                    };
                    assert_eq!(name, kind, "{path}");
                }
            }
        };
        check("/bin/sh", false, Ok("usr/bin/sh"));
        check("/bin/sh", true, Ok("usr/bin/busybox"));
        check("bin", false, Ok("bin"));
        check("bin", true, Ok("usr/bin"));
        check("/lib/libc.so.6", false, Ok("usr/lib/libc.so.6"));
        check("/usr/./bin//busybox", true, Ok("usr/bin/busybox"));
        check("/../../etc/passwd", false, Ok("etc/passwd"));
        check("/escape/passwd", false, Ok("etc/passwd"));
        check("/new/dir/x", false, Ok("new/dir/x"));
        check("/new/../etc", false, Ok("etc"));
        check("/", true, Ok(""));
        check("/loop1", true, Err("loop"));
        check("/loop1", false, Ok("loop1"));
        check("/loop1/x", false, Err("loop"));
        check("/usr/bin/busybox/x", false, Err("notdir"));
        check("/a\0b", false, Err("invalid"));
    }

    fn mutation(kind: PathType, path: &str) -> PathMutation {
        PathMutation {
            path: path.to_string(),
            kind,
            ..PathMutation::default()
        }
    }

    fn with(mut m: PathMutation, f: impl FnOnce(&mut PathMutation)) -> PathMutation {
        f(&mut m);
        m
    }

    fn attrs(tree: &Tree, path: &str) -> (EntryKind, u32, u32, u32) {
        let node = tree.get(path).unwrap_or_else(|| panic!("{path} missing"));
        (
            node.entry.kind.clone(),
            node.entry.mode,
            node.entry.uid,
            node.entry.gid,
        )
    }

    #[test]
    fn directories_are_created_with_parents_and_attributes() {
        let mut tree = base();
        let m = with(mutation(PathType::Directory, "/home/build/cache"), |m| {
            m.permissions = Some(FileMode(0o700));
            m.uid = Some(65532);
            m.gid = Some(65532);
        });
        apply_path_mutations(&mut tree, &[m], 9).unwrap();
        assert_eq!(attrs(&tree, "home"), (EntryKind::Directory, 0o755, 0, 0));
        assert_eq!(
            attrs(&tree, "home/build"),
            (EntryKind::Directory, 0o755, 0, 0)
        );
        assert_eq!(
            attrs(&tree, "home/build/cache"),
            (EntryKind::Directory, 0o700, 65532, 65532)
        );
        assert_eq!(tree.get("home/build/cache").unwrap().entry.mtime, 9);
        // Through a symlinked parent, and on an existing directory: no error, attributes set.
        let m = with(mutation(PathType::Directory, "/bin"), |m| m.gid = Some(5));
        apply_path_mutations(&mut tree, &[m], 9).unwrap();
        assert_eq!(attrs(&tree, "usr/bin"), (EntryKind::Directory, 0o755, 0, 5));
        let m = mutation(PathType::Directory, "/lib/extra");
        apply_path_mutations(&mut tree, &[m], 9).unwrap();
        assert!(tree.contains("usr/lib/extra"));
        assert!(!tree.contains("lib/extra"));
    }

    #[test]
    fn recursive_attributes_reach_every_name_of_a_file() {
        let mut tree = base();
        dir(&mut tree, "data");
        file(&mut tree, "data/a", b"a");
        symlink(&mut tree, "data/l", "/etc");
        let steps = [
            with(mutation(PathType::Hardlink, "/zz-outside"), |m| {
                m.source = Some("/data/a".into())
            }),
            with(mutation(PathType::Permissions, "/data"), |m| {
                m.permissions = Some(FileMode(0o750));
                m.uid = Some(10);
                m.recursive = true;
            }),
        ];
        apply_path_mutations(&mut tree, &steps, 9).unwrap();
        assert_eq!(attrs(&tree, "data"), (EntryKind::Directory, 0o750, 10, 0));
        assert_eq!(attrs(&tree, "data/a").1, 0o750);
        assert_eq!(attrs(&tree, "zz-outside").1, 0o750);
        assert_eq!(attrs(&tree, "zz-outside").2, 10);
        let link = attrs(&tree, "data/l");
        assert_eq!((link.1, link.2), (0o777, 10));
        // The symlink's target is untouched.
        assert_eq!(attrs(&tree, "etc"), (EntryKind::Directory, 0o755, 0, 0));
    }

    #[test]
    fn empty_files_symlinks_and_hardlinks() {
        let mut tree = base();
        let steps = [
            with(mutation(PathType::EmptyFile, "/etc/app/app.conf"), |m| {
                m.permissions = Some(FileMode(0o640))
            }),
            with(mutation(PathType::Symlink, "/usr/local/bin/sh2"), |m| {
                m.source = Some("/bin/sh".into())
            }),
            with(mutation(PathType::Hardlink, "/usr/bin/zz-busybox"), |m| {
                m.source = Some("/bin/busybox".into())
            }),
            with(mutation(PathType::Hardlink, "/aa-busybox"), |m| {
                m.source = Some("/usr/bin/busybox".into());
                m.uid = Some(3);
            }),
        ];
        apply_path_mutations(&mut tree, &steps, 9).unwrap();
        assert_eq!(
            attrs(&tree, "etc/app/app.conf"),
            (EntryKind::File { size: 0 }, 0o640, 0, 0)
        );
        assert_eq!(
            tree.get("usr/local/bin/sh2").unwrap().entry.kind,
            EntryKind::Symlink {
                target: "/bin/sh".into()
            }
        );
        // `aa-busybox` sorts first, so it now holds the data and the others link to it.
        assert_eq!(
            tree.get("aa-busybox").unwrap().content,
            Content::inline(b"bb".to_vec())
        );
        for name in ["usr/bin/busybox", "usr/bin/zz-busybox"] {
            assert_eq!(
                attrs(&tree, name),
                (
                    EntryKind::Hardlink {
                        target: "aa-busybox".into()
                    },
                    0o644,
                    3,
                    0
                ),
                "{name}"
            );
        }
        assert_eq!(attrs(&tree, "aa-busybox").2, 3);
    }

    #[test]
    fn empty_file_truncates_an_existing_file() {
        let mut tree = base();
        file(&mut tree, "etc/motd", b"hello");
        apply_path_mutations(&mut tree, &[mutation(PathType::EmptyFile, "/etc/motd")], 9).unwrap();
        let node = tree.get("etc/motd").unwrap();
        assert_eq!(node.entry.kind, EntryKind::File { size: 0 });
        assert_eq!(node.content, Content::Empty);
        assert_eq!(node.entry.mode, 0o644);
    }

    #[test]
    fn errors_name_the_mutation() {
        let check = |m: PathMutation, expected: &str| {
            let mut tree = base();
            file(&mut tree, "etc/passwd", b"root");
            dir(&mut tree, "srv");
            let steps = [mutation(PathType::Directory, "/ok"), m];
            let err = apply_path_mutations(&mut tree, &steps, 9).unwrap_err();
            let message = err.to_string();
            assert!(message.starts_with("paths[1]"), "{message}");
            assert!(message.contains(expected), "{message} lacks {expected}");
        };
        check(
            mutation(PathType::Symlink, "/x"),
            "symlink \"/x\" needs a source",
        );
        check(
            mutation(PathType::Hardlink, "/x"),
            "hardlink \"/x\" needs a source",
        );
        check(
            with(mutation(PathType::Hardlink, "/x"), |m| {
                m.source = Some("/nope".into())
            }),
            "source \"/nope\" of \"/x\" does not exist",
        );
        check(
            with(mutation(PathType::Hardlink, "/x"), |m| {
                m.source = Some("/etc".into())
            }),
            "is a directory, not a regular file",
        );
        check(
            with(mutation(PathType::Hardlink, "/srv"), |m| {
                m.source = Some("/etc/passwd".into())
            }),
            "a directory is already there",
        );
        check(
            with(mutation(PathType::Symlink, "/etc/passwd"), |m| {
                m.source = Some("/x".into())
            }),
            "cannot create symlink \"/etc/passwd\": a regular file is already there",
        );
        check(
            mutation(PathType::Directory, "/etc/passwd"),
            "a regular file is already there",
        );
        check(
            mutation(PathType::EmptyFile, "/srv"),
            "a directory is already there",
        );
        check(
            mutation(PathType::Directory, "/etc/passwd/sub"),
            "cannot use \"/etc/passwd/sub\"",
        );
        check(mutation(PathType::Permissions, "/nope"), "does not exist");
        check(mutation(PathType::Permissions, "/"), "names the image root");
        check(mutation(PathType::Directory, "/loop1/x"), "cannot use");
        check(
            mutation(PathType::Directory, &format!("/{}", "x".repeat(300))),
            "cannot use",
        );
    }

    #[test]
    fn replacing_a_linked_file_is_refused() {
        let mut tree = base();
        file(&mut tree, "etc/a", b"a");
        file(&mut tree, "etc/b", b"b");
        let steps = [
            with(mutation(PathType::Hardlink, "/etc/c"), |m| {
                m.source = Some("/etc/b".into())
            }),
            with(mutation(PathType::Hardlink, "/etc/b"), |m| {
                m.source = Some("/etc/a".into())
            }),
        ];
        let err = apply_path_mutations(&mut tree, &steps, 9).unwrap_err();
        assert!(
            err.to_string()
                .contains("the hard link \"etc/c\" points at it"),
            "{err}"
        );
    }
}
