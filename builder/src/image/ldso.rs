//! `/etc/ld.so.cache` for glibc images, generated the way `ldconfig -r <root>` would (without
//! creating soname links): only when `/etc/ld.so.conf` exists, as apko does.
//!
//! Directories come from `ld.so.conf` (comments, `include` globs relative to the including
//! file, `hwcap` lines ignored, `dir=TYPE` suffixes dropped) followed by the trusted `/lib` and
//! `/usr/lib`; a directory reached twice (through symlinks) is scanned once. In each, files
//! named like shared objects (`lib*.so*`, `ld-*.so*`, `ld.so.*`, `ld64.so.*`) that are ELF
//! shared objects of the image's byte order give one entry per soname (`DT_SONAME`, or the file
//! name), keeping ldconfig's preference between a file and a link and between versions. The
//! cache is glibc's `glibc-ld.so.cache1.1` format with no old-format prefix and no extension
//! section; entries are sorted with `_dl_cache_libcmp` as the loader's binary search requires.
//! ELF parsing is [`crate::elf`]'s, reading only the header, program headers, interpreter,
//! dynamic segment and names through [`ContentSource`] ranges; anything malformed or foreign is
//! skipped, never trusted.

use std::cmp::Ordering;
use std::collections::HashSet;
use std::io;

use securebuild_crds::image_config::Architecture;

use super::entry::{EntryKind, LayerEntry};
use super::paths::{self, TreePathError};
use super::tree::{Content, ContentSource, Node, Tree};
use crate::elf::{
    self, EM_386, EM_AARCH64, EM_ARM, EM_LOONGARCH, EM_PPC64, EM_RISCV, EM_S390, EM_X86_64, ET_DYN,
    ElfSource,
};

/// The configuration file whose presence turns this step on.
pub const LD_SO_CONF: &str = "/etc/ld.so.conf";
/// Where the cache is written.
pub const LD_SO_CACHE: &str = "etc/ld.so.cache";
/// Directories ldconfig always scans after the configured ones.
pub const TRUSTED_DIRS: [&str; 2] = ["/lib", "/usr/lib"];
/// Mode of the cache file.
pub const CACHE_MODE: u32 = 0o644;
/// The cache's magic and version.
pub const CACHE_MAGIC: &[u8; 20] = b"glibc-ld.so.cache1.1";
/// Size of the cache header.
pub const HEADER_SIZE: usize = 48;
/// Size of one cache entry.
pub const ENTRY_SIZE: usize = 24;

/// Entry flag: an ELF object for libc6.
pub const FLAG_ELF_LIBC6: u32 = 0x0003;
/// Entry flag: x86-64.
pub const FLAG_X8664_LIB64: u32 = 0x0300;
/// Entry flag: 64-bit s390.
pub const FLAG_S390_LIB64: u32 = 0x0400;
/// Entry flag: 64-bit PowerPC.
pub const FLAG_POWERPC_LIB64: u32 = 0x0500;
/// Entry flag: x32.
pub const FLAG_X8664_LIBX32: u32 = 0x0800;
/// Entry flag: ARM hard float.
pub const FLAG_ARM_LIBHF: u32 = 0x0900;
/// Entry flag: AArch64.
pub const FLAG_AARCH64_LIB64: u32 = 0x0a00;
/// Entry flag: ARM soft float.
pub const FLAG_ARM_LIBSF: u32 = 0x0b00;
/// Entry flag: RISC-V soft float.
pub const FLAG_RISCV_FLOAT_ABI_SOFT: u32 = 0x0f00;
/// Entry flag: RISC-V double float.
pub const FLAG_RISCV_FLOAT_ABI_DOUBLE: u32 = 0x1000;
/// Entry flag: LoongArch soft float.
pub const FLAG_LARCH_FLOAT_ABI_SOFT: u32 = 0x1100;
/// Entry flag: LoongArch double float.
pub const FLAG_LARCH_FLOAT_ABI_DOUBLE: u32 = 0x1200;

/// Header flags value: little-endian cache.
const HEADER_FLAGS_LITTLE: u8 = 2;
/// Header flags value: big-endian cache.
const HEADER_FLAGS_BIG: u8 = 3;

/// Largest configuration file read.
const MAX_CONF_SIZE: u64 = 1 << 20;
/// Deepest `include` nesting followed.
const MAX_INCLUDE_DEPTH: usize = 8;
/// Most configuration files read in total.
const MAX_CONF_FILES: usize = 1024;
/// ELF `e_flags` ABI bits, for the cache flags.
const EF_ARM_ABI_FLOAT_SOFT: u32 = 0x200;
const EF_ARM_ABI_FLOAT_HARD: u32 = 0x400;
const EF_RISCV_FLOAT_ABI_MASK: u32 = 0x6;
const EF_RISCV_FLOAT_ABI_SOFT: u32 = 0x0;
const EF_RISCV_FLOAT_ABI_DOUBLE: u32 = 0x4;
const EF_LARCH_ABI_MODIFIER_MASK: u32 = 0x7;
const EF_LARCH_ABI_SOFT_FLOAT: u32 = 0x1;
const EF_LARCH_ABI_DOUBLE_FLOAT: u32 = 0x3;

/// What the ld.so.cache step did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LdsoOutcome {
    /// There is no `/etc/ld.so.conf`; nothing was written.
    NoConfig,
    /// The cache was written.
    Written {
        /// Number of cache entries.
        entries: usize,
        /// The directories scanned, in order, as written.
        directories: Vec<String>,
    },
}

/// One cache entry: a soname and the path the loader should open for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheEntry {
    /// `FLAG_*` bits: the library type and ABI.
    pub flags: u32,
    /// The soname looked up.
    pub key: String,
    /// Absolute path of the library.
    pub value: String,
}

/// Why the cache could not be generated.
#[derive(Debug, thiserror::Error)]
pub enum LdsoError {
    /// A file could not be read from its package.
    #[error("reading {path} failed")]
    Read {
        /// The file.
        path: String,
        /// The content source's error.
        #[source]
        source: io::Error,
    },
    /// A configuration file is larger than 1 MiB.
    #[error("{path} is {size} bytes, over the limit of 1 MiB")]
    ConfigTooLarge {
        /// The file.
        path: String,
        /// Its size.
        size: u64,
    },
    /// A configuration file is not UTF-8 text.
    #[error("{path} is not UTF-8 text")]
    ConfigNotText {
        /// The file.
        path: String,
    },
    /// `include` directives nest deeper than 8 levels or name more than 1024 files.
    #[error("{path}: include directives nest too deep or name too many files")]
    TooManyIncludes {
        /// The file whose include was refused.
        path: String,
    },
    /// A path could not be resolved.
    #[error("cannot resolve {path}")]
    Path {
        /// The path.
        path: String,
        /// Why.
        #[source]
        source: TreePathError,
    },
    /// Something other than a regular file is where the cache goes.
    #[error("cannot write /{LD_SO_CACHE}: a {existing} is there")]
    Occupied {
        /// What is there.
        existing: &'static str,
    },
    /// The cache would not fit its 32-bit offsets.
    #[error(
        "the ld.so.cache would hold {entries} entries and {strings} bytes of strings, more than its format allows"
    )]
    TooLarge {
        /// Entries.
        entries: usize,
        /// String table size.
        strings: usize,
    },
}

/// Generates `/etc/ld.so.cache` when `/etc/ld.so.conf` exists. `arch` decides the cache's byte
/// order; libraries of the other byte order are left out.
pub fn generate_ld_so_cache(
    tree: &mut Tree,
    source: &dyn ContentSource,
    arch: &Architecture,
    mtime: i64,
) -> Result<LdsoOutcome, LdsoError> {
    let conf = resolve(tree, LD_SO_CONF)?;
    if !matches!(
        tree.get(&conf).map(|n| &n.entry.kind),
        Some(EntryKind::File { .. } | EntryKind::Hardlink { .. })
    ) {
        return Ok(LdsoOutcome::NoConfig);
    }
    let target = Target::of(arch);

    let mut reader = ConfReader {
        tree,
        source,
        dirs: Vec::new(),
        files_read: 0,
    };
    reader.parse(LD_SO_CONF, 0)?;
    let mut dirs = reader.dirs;
    dirs.extend(TRUSTED_DIRS.iter().map(|d| d.to_string()));

    let mut seen_real = HashSet::new();
    let mut scanned = Vec::new();
    let mut entries = Vec::new();
    for dir in dirs {
        let real = resolve(tree, &dir)?;
        let is_dir = real.is_empty()
            || tree.get(&real).map(|n| &n.entry.kind) == Some(&EntryKind::Directory);
        if !is_dir || !seen_real.insert(real.clone()) {
            continue;
        }
        entries.extend(scan_dir(tree, source, &dir, &real, &target)?);
        scanned.push(dir);
    }
    let count = entries.len();
    let bytes = encode_cache(&entries, target.big_endian)?;
    write_cache(tree, bytes, mtime)?;
    Ok(LdsoOutcome::Written {
        entries: count,
        directories: scanned,
    })
}

fn resolve(tree: &Tree, path: &str) -> Result<String, LdsoError> {
    paths::resolve(tree, path, true).map_err(|source| LdsoError::Path {
        path: path.to_string(),
        source,
    })
}

/// Reads `ld.so.conf` and its includes, collecting directories in order.
struct ConfReader<'a> {
    tree: &'a Tree,
    source: &'a dyn ContentSource,
    dirs: Vec<String>,
    files_read: usize,
}

impl ConfReader<'_> {
    fn parse(&mut self, path: &str, depth: usize) -> Result<(), LdsoError> {
        self.files_read += 1;
        let Some(text) = read_conf(self.tree, self.source, path)? else {
            return Ok(());
        };
        for raw in text.lines() {
            let line = raw.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            if let Some(patterns) = directive(line, "include") {
                for pattern in patterns.split([' ', '\t']).filter(|p| !p.is_empty()) {
                    self.include(path, pattern, depth)?;
                }
            } else if directive(line, "hwcap").is_some() {
                continue;
            } else {
                self.add_dir(line);
            }
        }
        Ok(())
    }

    fn include(&mut self, from: &str, pattern: &str, depth: usize) -> Result<(), LdsoError> {
        let pattern = if pattern.starts_with('/') {
            pattern.to_string()
        } else {
            let dir = from.rfind('/').map_or("", |i| &from[..i]);
            format!("{dir}/{pattern}")
        };
        let matches = glob(self.tree, &pattern)?;
        if depth + 1 > MAX_INCLUDE_DEPTH || self.files_read + matches.len() > MAX_CONF_FILES {
            return Err(LdsoError::TooManyIncludes {
                path: from.to_string(),
            });
        }
        for file in matches {
            self.parse(&file, depth + 1)?;
        }
        Ok(())
    }

    /// Adds a directory line: `=TYPE` dropped, trailing slashes removed, absolute.
    fn add_dir(&mut self, line: &str) {
        let dir = line.split('=').next().unwrap_or_default().trim_end();
        let trimmed = dir.trim_end_matches('/');
        let dir = if trimmed.is_empty() { "/" } else { trimmed };
        if dir.is_empty() {
            return;
        }
        let absolute = if dir.starts_with('/') {
            dir.to_string()
        } else {
            format!("/{dir}")
        };
        if !self.dirs.contains(&absolute) {
            self.dirs.push(absolute);
        }
    }
}

/// `rest` when `line` is `keyword` followed by a blank.
fn directive<'a>(line: &'a str, keyword: &str) -> Option<&'a str> {
    let rest = line.get(keyword.len()..)?;
    let matches = line[..keyword.len()].eq_ignore_ascii_case(keyword)
        && (keyword == "hwcap" || &line[..keyword.len()] == keyword);
    (matches && rest.starts_with([' ', '\t'])).then(|| rest.trim())
}

fn read_conf(
    tree: &Tree,
    source: &dyn ContentSource,
    path: &str,
) -> Result<Option<String>, LdsoError> {
    let resolved = resolve(tree, path)?;
    let Some(node) = tree.file_node(&resolved) else {
        return Ok(None);
    };
    let size = node.content.len();
    if size > MAX_CONF_SIZE {
        return Err(LdsoError::ConfigTooLarge {
            path: path.to_string(),
            size,
        });
    }
    let bytes = FileBytes::new(node, source)
        .read(0, size)
        .map_err(|source| LdsoError::Read {
            path: path.to_string(),
            source,
        })?;
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| LdsoError::ConfigNotText {
            path: path.to_string(),
        })
}

/// Paths in the tree matching a glob pattern (`*`, `?`, `[…]` per component), sorted, written
/// absolute.
fn glob(tree: &Tree, pattern: &str) -> Result<Vec<String>, LdsoError> {
    let mut current: Vec<String> = vec![String::new()];
    for component in pattern.split('/').filter(|c| !c.is_empty() && *c != ".") {
        let mut next = Vec::new();
        for base in &current {
            if !component.contains(['*', '?', '[']) {
                next.push(format!("{base}/{component}"));
                continue;
            }
            let dir = resolve(tree, if base.is_empty() { "/" } else { base })?;
            for name in children(tree, &dir) {
                if fnmatch(component.as_bytes(), name.as_bytes()) {
                    next.push(format!("{base}/{name}"));
                }
            }
        }
        current = next;
    }
    let mut found = Vec::new();
    for candidate in current {
        let resolved = resolve(tree, &candidate)?;
        if !resolved.is_empty() && tree.contains(&resolved) {
            found.push(candidate);
        }
    }
    found.sort();
    found.dedup();
    Ok(found)
}

/// Names of the direct children of a tree directory (`""` is the root), in tree order.
fn children(tree: &Tree, dir: &str) -> Vec<String> {
    if dir.is_empty() {
        return tree
            .iter()
            .filter(|n| !n.entry.path.contains('/'))
            .map(|n| n.entry.path.clone())
            .collect();
    }
    let prefix = format!("{dir}/");
    tree.subtree(dir)
        .filter_map(|n| n.entry.path.strip_prefix(&prefix))
        .filter(|rest| !rest.contains('/'))
        .map(str::to_string)
        .collect()
}

/// `fnmatch(3)` for one path component, without flags except that a leading `.` must be
/// matched literally.
fn fnmatch(pattern: &[u8], name: &[u8]) -> bool {
    if name.first() == Some(&b'.') && pattern.first() != Some(&b'.') {
        return false;
    }
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < name.len() {
        if pattern.get(pi) == Some(&b'*') {
            star = Some((pi, ni));
            pi += 1;
            continue;
        }
        if pi < pattern.len()
            && let Some(next) = match_one(pattern, pi, name[ni])
        {
            pi = next;
            ni += 1;
            continue;
        }
        match star {
            Some((star_pi, star_ni)) => {
                pi = star_pi + 1;
                ni = star_ni + 1;
                star = Some((star_pi, star_ni + 1));
            }
            None => return false,
        }
    }
    pattern[pi..].iter().all(|&b| b == b'*')
}

/// Matches one byte against the pattern token at `pi`; the index after the token on success.
fn match_one(pattern: &[u8], pi: usize, byte: u8) -> Option<usize> {
    match pattern[pi] {
        b'?' => Some(pi + 1),
        b'[' => match bracket(pattern, pi, byte) {
            Some((true, next)) => Some(next),
            Some((false, _)) => None,
            None => (byte == b'[').then_some(pi + 1),
        },
        b'\\' if pi + 1 < pattern.len() => (pattern[pi + 1] == byte).then_some(pi + 2),
        other => (other == byte).then_some(pi + 1),
    }
}

/// A bracket expression at `start`: whether `byte` matches and the index after `]`; `None`
/// when the bracket is not closed.
fn bracket(pattern: &[u8], start: usize, byte: u8) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negate = matches!(pattern.get(i), Some(b'!' | b'^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let c = *pattern.get(i)?;
        if c == b']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        if pattern.get(i + 1) == Some(&b'-') && pattern.get(i + 2).is_some_and(|&e| e != b']') {
            let end = pattern[i + 2];
            matched |= c <= byte && byte <= end;
            i += 3;
        } else {
            matched |= c == byte;
            i += 1;
        }
    }
}

/// Temporary files of the prelink program, which ldconfig skips.
fn is_prelink_temporary(name: &str) -> bool {
    name.ends_with(".#prelink#") || name.contains(".#prelink#.")
}

/// The image's byte order and the ELF machines its ldconfig understands.
struct Target {
    big_endian: bool,
    machines: &'static [u16],
}

impl Target {
    fn of(arch: &Architecture) -> Self {
        let platform = arch.platform();
        let machines: &'static [u16] = match platform.architecture {
            "amd64" | "386" => &[EM_X86_64, EM_386],
            "arm64" => &[EM_AARCH64, EM_ARM],
            "arm" => &[EM_ARM],
            "ppc64le" => &[EM_PPC64],
            "s390x" => &[EM_S390],
            "riscv64" => &[EM_RISCV],
            "loong64" => &[EM_LOONGARCH],
            _ => &[],
        };
        Self {
            big_endian: platform.architecture == "s390x",
            machines,
        }
    }
}

/// Whether ldconfig looks at a file of this name (`_dl_is_dso`).
fn is_dso_name(name: &str) -> bool {
    ((name.starts_with("lib") || name.starts_with("ld-")) && name.contains(".so"))
        || name.starts_with("ld.so.")
        || name.starts_with("ld64.so.")
}

/// A library found in a directory.
struct Library {
    /// The directory entry's name.
    name: String,
    soname: String,
    flags: u32,
    is_link: bool,
}

/// The cache entries for one directory. `dir` is the directory as written, `real` its tree
/// path.
fn scan_dir(
    tree: &Tree,
    source: &dyn ContentSource,
    dir: &str,
    real: &str,
    target: &Target,
) -> Result<Vec<CacheEntry>, LdsoError> {
    let mut libraries: Vec<Library> = Vec::new();
    for name in children(tree, real) {
        if !is_dso_name(&name) || is_prelink_temporary(&name) {
            continue;
        }
        let path = if real.is_empty() {
            name.clone()
        } else {
            format!("{real}/{name}")
        };
        let Some(library) = examine(tree, source, &path, &name, target)? else {
            continue;
        };
        match libraries.iter_mut().find(|l| l.soname == library.soname) {
            Some(known) => {
                let prefer = (!library.is_link && known.is_link)
                    || (library.is_link == known.is_link
                        && libcmp(known.name.as_bytes(), library.name.as_bytes())
                            == Ordering::Less);
                if prefer {
                    *known = library;
                }
            }
            None => libraries.push(library),
        }
    }
    let prefix = dir.trim_end_matches('/');
    Ok(libraries
        .into_iter()
        .map(|library| {
            let soname_path = format!("{}/{}", real, library.soname);
            let soname_exists = paths::resolve(tree, &soname_path, true)
                .map(|p| tree.file_node(&p).is_some())
                .unwrap_or(false);
            let file = if soname_exists {
                &library.soname
            } else {
                &library.name
            };
            CacheEntry {
                flags: library.flags,
                key: library.soname.clone(),
                value: format!("{prefix}/{file}"),
            }
        })
        .collect())
}

/// Reads the directory entry `path`: `None` when it is not an ELF shared object ldconfig would
/// list.
fn examine(
    tree: &Tree,
    source: &dyn ContentSource,
    path: &str,
    name: &str,
    target: &Target,
) -> Result<Option<Library>, LdsoError> {
    let Some(node) = tree.get(path) else {
        return Ok(None);
    };
    let (real, is_link) = match &node.entry.kind {
        EntryKind::Symlink { .. } => match paths::resolve(tree, path, true) {
            Ok(real) => (real, true),
            Err(_) => return Ok(None),
        },
        EntryKind::File { .. } | EntryKind::Hardlink { .. } => (path.to_string(), false),
        _ => return Ok(None),
    };
    let Some(file) = tree.file_node(&real) else {
        return Ok(None);
    };
    let elf = read_elf(&FileBytes::new(file, source), target.big_endian).map_err(|source| {
        LdsoError::Read {
            path: format!("/{path}"),
            source,
        }
    })?;
    let Some(elf) = elf.filter(|elf| target.machines.contains(&elf.machine)) else {
        return Ok(None);
    };
    let mut soname = elf.soname.unwrap_or_else(|| name.to_string());
    // As ldconfig: a link counts as one only when it is named after the soname, or is the
    // `.so` development link of it; otherwise it is treated as another copy of the library.
    let is_link =
        is_link && (name == soname || (name.ends_with(".so") && soname.starts_with(name)));
    if is_link {
        soname = name.to_string();
    }
    if !valid_soname(&soname) {
        return Ok(None);
    }
    Ok(Some(Library {
        name: name.to_string(),
        soname,
        flags: elf.flags,
        is_link,
    }))
}

fn valid_soname(soname: &str) -> bool {
    !soname.is_empty() && soname.bytes().all(|b| b.is_ascii_graphic() && b != b'/')
}

/// What the cache needs from an ELF object.
#[derive(Debug, PartialEq, Eq)]
struct ElfInfo {
    machine: u16,
    flags: u32,
    soname: Option<String>,
}

/// Byte ranges of a regular file's content.
struct FileBytes<'a> {
    content: &'a Content,
    source: &'a dyn ContentSource,
}

impl<'a> FileBytes<'a> {
    fn new(node: &'a Node, source: &'a dyn ContentSource) -> Self {
        Self {
            content: &node.content,
            source,
        }
    }

    /// Up to `len` bytes at `offset` (fewer at the end of the file).
    fn read(&self, offset: u64, len: u64) -> io::Result<Vec<u8>> {
        let total = self.content.len();
        if offset >= total {
            return Ok(Vec::new());
        }
        let len = len.min(total - offset);
        match self.content {
            Content::Empty => Ok(Vec::new()),
            Content::Inline(bytes) => {
                let start = usize::try_from(offset).map_err(io::Error::other)?;
                let end = usize::try_from(offset + len).map_err(io::Error::other)?;
                Ok(bytes[start..end].to_vec())
            }
            Content::Spool {
                spool,
                offset: base,
                ..
            } => self.source.read_spool(*spool, base + offset, len),
        }
    }
}

impl ElfSource for FileBytes<'_> {
    fn len(&self) -> u64 {
        self.content.len()
    }

    fn read_at(&self, offset: u64, len: u64) -> io::Result<Vec<u8>> {
        self.read(offset, len)
    }
}

/// Parses what the cache needs; `Ok(None)` for anything that is not a well-formed shared
/// object of the expected byte order and a known machine.
fn read_elf(file: &FileBytes<'_>, big_endian: bool) -> io::Result<Option<ElfInfo>> {
    let Some(object) = elf::read_elf(file)? else {
        return Ok(None);
    };
    if object.big_endian != big_endian || object.e_type != ET_DYN {
        return Ok(None);
    }
    let Some(flags) = cache_flags(object.machine, object.wide, object.flags) else {
        return Ok(None);
    };
    Ok(Some(ElfInfo {
        machine: object.machine,
        flags,
        soname: object.soname,
    }))
}

/// ldconfig's flags for an object of this machine, class and `e_flags`.
fn cache_flags(machine: u16, wide: bool, e_flags: u32) -> Option<u32> {
    let abi = match (machine, wide) {
        (EM_X86_64, true) => FLAG_X8664_LIB64,
        (EM_X86_64, false) => FLAG_X8664_LIBX32,
        (EM_386, false) => 0,
        (EM_AARCH64, true) => FLAG_AARCH64_LIB64,
        (EM_ARM, false) if e_flags & EF_ARM_ABI_FLOAT_HARD != 0 => FLAG_ARM_LIBHF,
        (EM_ARM, false) if e_flags & EF_ARM_ABI_FLOAT_SOFT != 0 => FLAG_ARM_LIBSF,
        (EM_ARM, false) => 0,
        (EM_PPC64, true) => FLAG_POWERPC_LIB64,
        (EM_S390, true) => FLAG_S390_LIB64,
        (EM_S390, false) => 0,
        (EM_RISCV, true) => match e_flags & EF_RISCV_FLOAT_ABI_MASK {
            EF_RISCV_FLOAT_ABI_SOFT => FLAG_RISCV_FLOAT_ABI_SOFT,
            EF_RISCV_FLOAT_ABI_DOUBLE => FLAG_RISCV_FLOAT_ABI_DOUBLE,
            _ => return None,
        },
        (EM_LOONGARCH, true) => match e_flags & EF_LARCH_ABI_MODIFIER_MASK {
            EF_LARCH_ABI_SOFT_FLOAT => FLAG_LARCH_FLOAT_ABI_SOFT,
            EF_LARCH_ABI_DOUBLE_FLOAT => FLAG_LARCH_FLOAT_ABI_DOUBLE,
            _ => return None,
        },
        _ => return None,
    };
    Some(abi | FLAG_ELF_LIBC6)
}

/// glibc's `_dl_cache_libcmp`: digit runs compare numerically, everything else bytewise.
pub fn libcmp(a: &[u8], b: &[u8]) -> Ordering {
    let (mut i, mut j) = (0, 0);
    while i < a.len() {
        let x = a[i];
        let y = b.get(j).copied().unwrap_or(0);
        if x.is_ascii_digit() {
            if !y.is_ascii_digit() {
                return Ordering::Greater;
            }
            let start_a = i;
            while i < a.len() && a[i].is_ascii_digit() {
                i += 1;
            }
            let start_b = j;
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            let order = compare_numbers(&a[start_a..i], &b[start_b..j]);
            if order != Ordering::Equal {
                return order;
            }
        } else if y.is_ascii_digit() {
            return Ordering::Less;
        } else if x != y {
            return x.cmp(&y);
        } else {
            i += 1;
            j += 1;
        }
    }
    0u8.cmp(&b.get(j).copied().unwrap_or(0))
}

/// Compares two runs of decimal digits by value, whatever their length.
fn compare_numbers(a: &[u8], b: &[u8]) -> Ordering {
    let trim = |digits: &[u8]| -> usize { digits.iter().take_while(|&&d| d == b'0').count() };
    let a = &a[trim(a)..];
    let b = &b[trim(b)..];
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// The order of cache entries: keys descending by [`libcmp`], then flags descending; equal
/// entries keep their order (earlier directories first).
fn cache_order(a: &CacheEntry, b: &CacheEntry) -> Ordering {
    libcmp(b.key.as_bytes(), a.key.as_bytes()).then(b.flags.cmp(&a.flags))
}

/// Encodes entries as a `glibc-ld.so.cache1.1` file (sorted as the loader expects).
pub fn encode_cache(entries: &[CacheEntry], big_endian: bool) -> Result<Vec<u8>, LdsoError> {
    let mut sorted: Vec<&CacheEntry> = entries.iter().collect();
    sorted.sort_by(|a, b| cache_order(a, b));

    let strings_start = HEADER_SIZE + ENTRY_SIZE * sorted.len();
    let mut strings: Vec<u8> = Vec::new();
    let mut offsets: Vec<(String, usize)> = Vec::new();
    let mut intern = |text: &str, strings: &mut Vec<u8>| -> usize {
        if let Some((_, offset)) = offsets.iter().find(|(s, _)| s == text) {
            return *offset;
        }
        let offset = strings_start + strings.len();
        strings.extend_from_slice(text.as_bytes());
        strings.push(0);
        offsets.push((text.to_string(), offset));
        offset
    };
    let mut records = Vec::with_capacity(sorted.len());
    for entry in &sorted {
        let value = intern(&entry.value, &mut strings);
        let key = match entry.value.strip_suffix(entry.key.as_str()) {
            Some(dir) if dir.ends_with('/') => value + dir.len(),
            _ => intern(&entry.key, &mut strings),
        };
        records.push((entry.flags, key, value));
    }
    let too_large = || LdsoError::TooLarge {
        entries: sorted.len(),
        strings: strings.len(),
    };
    let count = u32::try_from(sorted.len()).map_err(|_| too_large())?;
    let strings_len = u32::try_from(strings.len()).map_err(|_| too_large())?;
    if u32::try_from(strings_start + strings.len()).is_err() {
        return Err(too_large());
    }

    let u32_bytes = |v: u32| {
        if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let mut out = Vec::with_capacity(strings_start + strings.len());
    out.extend_from_slice(CACHE_MAGIC);
    out.extend_from_slice(&u32_bytes(count));
    out.extend_from_slice(&u32_bytes(strings_len));
    out.push(if big_endian {
        HEADER_FLAGS_BIG
    } else {
        HEADER_FLAGS_LITTLE
    });
    out.extend_from_slice(&[0; 3]);
    // Extension offset (none) and three unused words.
    out.extend_from_slice(&[0; 16]);
    for (flags, key, value) in records {
        out.extend_from_slice(&u32_bytes(flags));
        // Offsets fit: the whole file was checked against u32 above.
        out.extend_from_slice(&u32_bytes(key as u32));
        out.extend_from_slice(&u32_bytes(value as u32));
        // osversion and hwcap.
        out.extend_from_slice(&[0; 12]);
    }
    out.extend_from_slice(&strings);
    Ok(out)
}

fn write_cache(tree: &mut Tree, bytes: Vec<u8>, mtime: i64) -> Result<(), LdsoError> {
    let path_error = |source| LdsoError::Path {
        path: format!("/{LD_SO_CACHE}"),
        source,
    };
    let path = paths::resolve(tree, LD_SO_CACHE, true).map_err(path_error)?;
    paths::check_storable(&path).map_err(path_error)?;
    if let Some(node) = tree.get(&path)
        && !matches!(
            node.entry.kind,
            EntryKind::File { .. } | EntryKind::Hardlink { .. }
        )
    {
        return Err(LdsoError::Occupied {
            existing: paths::kind_name(&node.entry.kind),
        });
    }
    paths::make_dirs(
        tree,
        paths::parent(&path),
        paths::DEFAULT_DIRECTORY_MODE,
        mtime,
    )
    .map_err(path_error)?;
    tree.insert(Node {
        entry: LayerEntry::file(path.as_str(), bytes.len() as u64, CACHE_MODE, mtime),
        content: Content::inline(bytes),
        owner: None,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elf::fixture::{Spec, build};

    /// Serves spool 0 from a byte vector.
    struct OneSpool(Vec<u8>);

    impl ContentSource for OneSpool {
        fn read_spool(&self, spool: usize, offset: u64, len: u64) -> io::Result<Vec<u8>> {
            if spool != 0 {
                return Err(io::Error::other("no such spool"));
            }
            let start = offset as usize;
            self.0
                .get(start..start + len as usize)
                .map(<[u8]>::to_vec)
                .ok_or_else(|| io::Error::other("out of range"))
        }
    }

    /// A minimal ELF shared object (`ET_DYN`, no interpreter, no `DT_NEEDED`).
    fn elf(wide: bool, big: bool, machine: u16, e_flags: u32, soname: Option<&str>) -> Vec<u8> {
        build(&Spec {
            wide,
            big,
            machine,
            flags: e_flags,
            soname: soname.map(str::as_bytes),
            ..Spec::default()
        })
        .bytes
    }

    fn x86_64_lib(soname: Option<&str>) -> Vec<u8> {
        elf(true, false, EM_X86_64, 0, soname)
    }

    fn add_file(tree: &mut Tree, path: &str, bytes: Vec<u8>) {
        tree.put_file(path, bytes, 0o755, 0, 0, 1);
    }

    fn add_link(tree: &mut Tree, path: &str, target: &str) {
        tree.insert(Node {
            entry: LayerEntry::symlink(path, target, 1),
            content: Content::Empty,
            owner: None,
        });
    }

    #[test]
    fn elf_parsing() {
        let check = |bytes: Vec<u8>, big: bool, expected: Option<(u32, Option<&str>)>| {
            let node = Node {
                entry: LayerEntry::file("x", bytes.len() as u64, 0o644, 0),
                content: Content::inline(bytes),
                owner: None,
            };
            let got = read_elf(&FileBytes::new(&node, &OneSpool(vec![])), big).unwrap();
            let got = got.map(|info| (info.flags, info.soname));
            let want = expected.map(|(flags, soname)| (flags, soname.map(str::to_string)));
            assert_eq!(got, want);
        };
        check(
            x86_64_lib(Some("libz.so.1")),
            false,
            Some((0x303, Some("libz.so.1"))),
        );
        check(x86_64_lib(None), false, Some((0x303, None)));
        check(
            elf(true, false, EM_AARCH64, 0, Some("liba.so")),
            false,
            Some((0xa03, Some("liba.so"))),
        );
        check(
            elf(false, false, EM_386, 0, Some("lib32.so.1")),
            false,
            Some((0x3, Some("lib32.so.1"))),
        );
        check(
            elf(false, false, EM_ARM, 0x0500_0400, Some("libhf.so")),
            false,
            Some((0x903, Some("libhf.so"))),
        );
        check(
            elf(false, false, EM_ARM, 0x0500_0200, Some("libsf.so")),
            false,
            Some((0xb03, Some("libsf.so"))),
        );
        check(
            elf(true, true, EM_S390, 0, Some("libs390.so.1")),
            true,
            Some((0x403, Some("libs390.so.1"))),
        );
        check(
            elf(true, false, EM_PPC64, 2, Some("libp.so")),
            false,
            Some((0x503, Some("libp.so"))),
        );
        check(
            elf(true, false, EM_RISCV, 0x5, Some("librv.so")),
            false,
            Some((0x1003, Some("librv.so"))),
        );
        check(
            elf(true, false, EM_RISCV, 0x2, Some("librv.so")),
            false,
            None,
        );
        check(
            elf(true, false, EM_LOONGARCH, 0x43, Some("libla.so")),
            false,
            Some((0x1203, Some("libla.so"))),
        );
        // Wrong byte order, unknown machine, not ELF, truncated.
        check(elf(true, true, EM_S390, 0, Some("x")), false, None);
        check(elf(true, false, 0x1234, 0, Some("x")), false, None);
        check(
            b"#!/bin/sh\necho not an elf file at all, long enough to be read\n".to_vec(),
            false,
            None,
        );
        let mut truncated = x86_64_lib(Some("libz.so.1"));
        truncated.truncate(130);
        check(truncated, false, None);
        let mut executable = x86_64_lib(Some("libz.so.1"));
        executable[16] = 2;
        check(executable, false, None);
        // A soname offset past the string table (DT_SONAME is the first dynamic entry).
        let mut bad = build(&Spec {
            soname: Some(b"libz.so.1"),
            ..Spec::default()
        });
        bad.set_dynamic_value(0, 1000);
        check(bad.bytes, false, None);
    }

    #[test]
    fn libcmp_matches_glibc() {
        let check = |a: &str, b: &str, expected: Ordering| {
            assert_eq!(libcmp(a.as_bytes(), b.as_bytes()), expected, "{a} vs {b}");
            assert_eq!(
                libcmp(b.as_bytes(), a.as_bytes()),
                expected.reverse(),
                "{b} vs {a}"
            );
        };
        check("libc.so.6", "libc.so.6", Ordering::Equal);
        check("libz.so.1", "libz.so.10", Ordering::Less);
        check("libz.so.2", "libz.so.10", Ordering::Less);
        check("libz.so.1", "libz.so.1.3", Ordering::Less);
        check("libz.so", "libz.so.1", Ordering::Less);
        check("lib9", "liba", Ordering::Greater);
        check("libfoo-1.so", "libfoo.so", Ordering::Less);
        check("libx.so.007", "libx.so.7", Ordering::Equal);
        check(
            "libx.so.99999999999999999999",
            "libx.so.99999999999999999998",
            Ordering::Greater,
        );
        check("libA.so", "liba.so", Ordering::Less);
    }

    #[test]
    fn glob_and_fnmatch() {
        let check = |pattern: &str, name: &str, expected: bool| {
            assert_eq!(
                fnmatch(pattern.as_bytes(), name.as_bytes()),
                expected,
                "{pattern} {name}"
            );
        };
        check("*.conf", "libc.conf", true);
        check("*.conf", "libc.conf.bak", false);
        check("*.conf", ".hidden.conf", false);
        check(".*.conf", ".hidden.conf", true);
        check("lib?.conf", "libc.conf", true);
        check("[a-c]*", "b.conf", true);
        check("[!a-c]*", "b.conf", false);
        check("[^a-c]*", "d.conf", true);
        check("[]x]", "]", true);
        check("[x", "[x", true);
        check("a\\*", "a*", true);
        check("a\\*", "ab", false);
        check("*", "", true);
        check("**x*", "abxcd", true);

        let mut tree = Tree::new();
        for name in ["b.conf", "a.conf", "c.txt", ".d.conf"] {
            add_file(&mut tree, &format!("etc/ld.so.conf.d/{name}"), Vec::new());
        }
        add_link(&mut tree, "conf", "etc/ld.so.conf.d");
        let found = glob(&tree, "/etc/ld.so.conf.d/*.conf").unwrap();
        assert_eq!(
            found,
            ["/etc/ld.so.conf.d/a.conf", "/etc/ld.so.conf.d/b.conf"]
        );
        assert_eq!(glob(&tree, "/conf/b*").unwrap(), ["/conf/b.conf"]);
        assert_eq!(
            glob(&tree, "/e*/ld.so.conf.d/c.txt").unwrap(),
            ["/etc/ld.so.conf.d/c.txt"]
        );
        assert!(glob(&tree, "/etc/missing/*.conf").unwrap().is_empty());
    }

    /// A glibc-style tree with libraries in several directories, one of them from a spool.
    fn glibc_tree() -> (Tree, OneSpool) {
        let mut tree = Tree::new();
        add_file(
            &mut tree,
            "etc/ld.so.conf",
            b"# comment\ninclude ld.so.conf.d/*.conf\n/opt/lib/ # trailing\nhwcap 0 x\n/usr/lib\n"
                .to_vec(),
        );
        add_file(
            &mut tree,
            "etc/ld.so.conf.d/local.conf",
            b"/usr/local/lib=libc6\n/missing\n".to_vec(),
        );
        add_file(
            &mut tree,
            "etc/ld.so.conf.d/loop.conf",
            b"include /etc/ld.so.conf.d/none-*.conf\n".to_vec(),
        );
        // usr/lib: libc from a spool, zlib with soname and dev links, a non-ELF, an executable name.
        let libc = x86_64_lib(Some("libc.so.6"));
        let mut spool = b"padding".to_vec();
        spool.extend_from_slice(&libc);
        tree.put_file("usr/lib/libc.so.6", Vec::new(), 0o755, 0, 0, 1);
        if let Some(node) = tree.get_mut("usr/lib/libc.so.6") {
            node.entry.kind = EntryKind::File {
                size: libc.len() as u64,
            };
            node.content = Content::Spool {
                spool: 0,
                offset: 7,
                len: libc.len() as u64,
            };
        }
        add_file(
            &mut tree,
            "usr/lib/libz.so.1.3.1",
            x86_64_lib(Some("libz.so.1")),
        );
        add_link(&mut tree, "usr/lib/libz.so.1", "libz.so.1.3.1");
        add_link(&mut tree, "usr/lib/libz.so", "libz.so.1.3.1");
        add_file(
            &mut tree,
            "usr/lib/libnotelf.so.1",
            b"INPUT(libz.so.1)\n".to_vec(),
        );
        add_file(&mut tree, "usr/lib/bash", x86_64_lib(Some("libbash.so")));
        add_file(
            &mut tree,
            "usr/lib/libarm.so.1",
            elf(true, false, EM_AARCH64, 0, Some("libarm.so.1")),
        );
        add_file(
            &mut tree,
            "usr/lib/libs390.so.1",
            elf(true, true, EM_S390, 0, Some("libs390.so.1")),
        );
        add_file(
            &mut tree,
            "usr/lib/ld-linux-x86-64.so.2",
            x86_64_lib(Some("ld-linux-x86-64.so.2")),
        );
        // opt/lib: a library without soname, and one whose soname file is missing.
        add_file(&mut tree, "opt/lib/libnoname.so", x86_64_lib(None));
        add_file(
            &mut tree,
            "opt/lib/libfoo.so.2.0",
            x86_64_lib(Some("libfoo.so.2")),
        );
        add_file(
            &mut tree,
            "opt/lib/libz.so.1",
            x86_64_lib(Some("libz.so.1")),
        );
        // usr/local/lib reached through a symlinked parent; lib -> usr/lib (merged).
        add_file(
            &mut tree,
            "usr/local/lib/libbar.so.5",
            x86_64_lib(Some("libbar.so.5")),
        );
        add_link(&mut tree, "lib", "usr/lib");
        (tree, OneSpool(spool))
    }

    /// Reads a cache back: (flags, key, value) in file order.
    fn decode(bytes: &[u8]) -> Vec<(u32, String, String)> {
        assert_eq!(&bytes[..20], CACHE_MAGIC);
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
        let count = u32_at(20) as usize;
        let strings = u32_at(24) as usize;
        assert_eq!(bytes[28], HEADER_FLAGS_LITTLE);
        assert_eq!(bytes.len(), HEADER_SIZE + count * ENTRY_SIZE + strings);
        let string_at = |at: usize| {
            let end = bytes[at..].iter().position(|&b| b == 0).unwrap();
            String::from_utf8(bytes[at..at + end].to_vec()).unwrap()
        };
        (0..count)
            .map(|i| {
                let at = HEADER_SIZE + i * ENTRY_SIZE;
                (
                    u32_at(at),
                    string_at(u32_at(at + 4) as usize),
                    string_at(u32_at(at + 8) as usize),
                )
            })
            .collect()
    }

    #[test]
    fn cache_for_a_glibc_tree() {
        let (mut tree, spool) = glibc_tree();
        let arch = Architecture::parse("amd64").unwrap();
        let outcome = generate_ld_so_cache(&mut tree, &spool, &arch, 9).unwrap();
        assert_eq!(
            outcome,
            LdsoOutcome::Written {
                entries: 8,
                directories: vec![
                    "/usr/local/lib".into(),
                    "/opt/lib".into(),
                    "/usr/lib".into()
                ],
            }
        );
        let node = tree.get(LD_SO_CACHE).unwrap();
        assert_eq!((node.entry.mode, node.entry.mtime), (0o644, 9));
        let Content::Inline(bytes) = &node.content else {
            panic!("inline cache expected");
        };
        let x = 0x303;
        let expected: Vec<(u32, String, String)> = [
            (x, "libz.so.1", "/opt/lib/libz.so.1"),
            (x, "libz.so.1", "/usr/lib/libz.so.1"),
            (x, "libz.so", "/usr/lib/libz.so"),
            (x, "libnoname.so", "/opt/lib/libnoname.so"),
            (x, "libfoo.so.2", "/opt/lib/libfoo.so.2.0"),
            (x, "libc.so.6", "/usr/lib/libc.so.6"),
            (x, "libbar.so.5", "/usr/local/lib/libbar.so.5"),
            (x, "ld-linux-x86-64.so.2", "/usr/lib/ld-linux-x86-64.so.2"),
        ]
        .into_iter()
        .map(|(f, k, v)| (f, k.to_string(), v.to_string()))
        .collect();
        assert_eq!(decode(bytes), expected);
        // The same tree gives the same bytes.
        let (mut again, spool) = glibc_tree();
        generate_ld_so_cache(&mut again, &spool, &arch, 9).unwrap();
        assert_eq!(again.get(LD_SO_CACHE).unwrap().content, node.content);
    }

    #[test]
    fn no_config_means_no_cache() {
        let mut tree = Tree::new();
        add_file(
            &mut tree,
            "usr/lib/libc.so.6",
            x86_64_lib(Some("libc.so.6")),
        );
        let arch = Architecture::parse("amd64").unwrap();
        let outcome = generate_ld_so_cache(&mut tree, &OneSpool(vec![]), &arch, 0).unwrap();
        assert_eq!(outcome, LdsoOutcome::NoConfig);
        assert!(!tree.contains(LD_SO_CACHE));
    }

    #[test]
    fn big_endian_cache_and_include_limits() {
        let mut tree = Tree::new();
        add_file(&mut tree, "etc/ld.so.conf", Vec::new());
        add_file(
            &mut tree,
            "lib/libs390.so.1",
            elf(true, true, EM_S390, 0, Some("libs390.so.1")),
        );
        add_file(
            &mut tree,
            "lib/libx86.so.1",
            x86_64_lib(Some("libx86.so.1")),
        );
        let arch = Architecture::parse("s390x").unwrap();
        generate_ld_so_cache(&mut tree, &OneSpool(vec![]), &arch, 0).unwrap();
        let Content::Inline(bytes) = &tree.get(LD_SO_CACHE).unwrap().content else {
            panic!("inline cache expected");
        };
        assert_eq!(bytes[28], HEADER_FLAGS_BIG);
        assert_eq!(u32::from_be_bytes(bytes[20..24].try_into().unwrap()), 1);
        assert_eq!(u32::from_be_bytes(bytes[48..52].try_into().unwrap()), 0x403);

        let mut looping = Tree::new();
        add_file(
            &mut looping,
            "etc/ld.so.conf",
            b"include /etc/ld.so.conf\n".to_vec(),
        );
        let err = generate_ld_so_cache(&mut looping, &OneSpool(vec![]), &arch, 0).unwrap_err();
        assert!(
            err.to_string().contains("include directives nest too deep"),
            "{err}"
        );
    }

    #[test]
    fn host_ldconfig_reads_the_cache() {
        let ldconfig = ["/sbin/ldconfig", "/usr/sbin/ldconfig"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists());
        let Some(ldconfig) = ldconfig else {
            return;
        };
        if !cfg!(all(target_arch = "x86_64", target_os = "linux")) {
            return;
        }
        let (mut tree, spool) = glibc_tree();
        let arch = Architecture::parse("amd64").unwrap();
        generate_ld_so_cache(&mut tree, &spool, &arch, 0).unwrap();
        let Content::Inline(bytes) = &tree.get(LD_SO_CACHE).unwrap().content else {
            panic!("inline cache expected");
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ld.so.cache");
        std::fs::write(&path, bytes.as_ref()).unwrap();
        let output = std::process::Command::new(ldconfig)
            .arg("-p")
            .arg("-C")
            .arg(&path)
            .output()
            .unwrap();
        let stdout = String::from_utf8(output.stdout).unwrap();
        assert!(output.status.success(), "{stdout}");
        assert!(stdout.starts_with("8 libs found in cache"), "{stdout}");
        assert!(
            stdout.contains("\tlibc.so.6 (libc6,x86-64) => /usr/lib/libc.so.6\n"),
            "{stdout}"
        );
        assert!(
            stdout.contains("\tlibz.so (libc6,x86-64) => /usr/lib/libz.so\n"),
            "{stdout}"
        );
        assert!(!stdout.contains("libarm"), "{stdout}");
    }

    /// Writes the tree's directories, files and symlinks under `root`.
    fn materialize(tree: &Tree, source: &dyn ContentSource, root: &std::path::Path) {
        for node in tree.iter() {
            let path = root.join(&node.entry.path);
            match &node.entry.kind {
                EntryKind::Directory => std::fs::create_dir_all(&path).unwrap(),
                EntryKind::Symlink { target } => {
                    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                    std::os::unix::fs::symlink(target, &path).unwrap();
                }
                EntryKind::File { .. } => {
                    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                    let bytes = FileBytes::new(node, source)
                        .read(0, node.content.len())
                        .unwrap();
                    std::fs::write(&path, bytes).unwrap();
                }
                _ => {}
            }
        }
    }

    /// The `ldconfig -p` listing of a cache file, without its header and trailer.
    fn listing(ldconfig: &str, cache: &std::path::Path) -> Vec<String> {
        let output = std::process::Command::new(ldconfig)
            .arg("-p")
            .arg("-C")
            .arg(cache)
            .output()
            .unwrap();
        assert!(output.status.success());
        String::from_utf8(output.stdout)
            .unwrap()
            .lines()
            .filter(|line| line.starts_with('\t'))
            .map(str::to_string)
            .collect()
    }

    /// Where the host can run `ldconfig -r` (x86-64 glibc, as root), its cache for the same
    /// tree lists the same libraries in the same order.
    #[test]
    fn same_entries_as_host_ldconfig() {
        let Some(ldconfig) = ["/sbin/ldconfig", "/usr/sbin/ldconfig"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
        else {
            return;
        };
        if !cfg!(all(target_arch = "x86_64", target_os = "linux")) {
            return;
        }
        let (mut tree, spool) = glibc_tree();
        add_link(&mut tree, "opt/lib/libfoo.so.2", "libfoo.so.2.0");
        let arch = Architecture::parse("amd64").unwrap();
        generate_ld_so_cache(&mut tree, &spool, &arch, 0).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        materialize(&tree, &spool, &root);
        let ours = dir.path().join("ours.cache");
        std::fs::rename(root.join(LD_SO_CACHE), &ours).unwrap();
        let status = std::process::Command::new(ldconfig)
            .arg("-r")
            .arg(&root)
            .arg("-X")
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        let theirs = root.join(LD_SO_CACHE);
        if !status.success() || !theirs.exists() {
            // Not permitted here (ldconfig -r needs chroot).
            return;
        }
        let expected = listing(ldconfig, &theirs);
        assert_eq!(expected.len(), 8, "{expected:?}");
        assert_eq!(listing(ldconfig, &ours), expected);
    }
}
