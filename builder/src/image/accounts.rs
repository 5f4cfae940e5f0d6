//! The `accounts:` step: configured users and groups appended to the `/etc/passwd` and
//! `/etc/group` the packages installed, home directories created, and `run-as` turned into the
//! OCI `User` value.
//!
//! Follows apko: existing entries are kept in order and configured ones appended after them
//! (primary group defaulting to the UID, shell `/bin/sh`, home `/home/<name>`, password `x`); every
//! account's missing home directory is created owned by the account with mode 0700 (parents
//! 0755), except `/dev/null`; a `run-as` user name becomes its numeric UID. Unlike apko, a
//! configured account that clashes with an existing one by name or ID is an error rather than a
//! second line, and a `run-as` name that no account has is an error. `/etc/shadow` is not
//! touched.

use std::io;

use securebuild_crds::image_config::{Group, ImageAccounts, User};

use super::entry::{EntryKind, LayerEntry};
use super::paths::{self, TreePathError};
use super::tree::{Content, ContentSource, Node, Tree};
use crate::apk::index::quote;

/// Tree path of the user database.
pub const PASSWD_PATH: &str = "etc/passwd";
/// Tree path of the group database.
pub const GROUP_PATH: &str = "etc/group";
/// Login shell of a configured user without `shell`.
pub const DEFAULT_SHELL: &str = "/bin/sh";
/// Home directories of configured users without `homedir` live here.
pub const HOME_PARENT: &str = "/home";
/// Password field of configured accounts: the password lives (or not) in the shadow file.
pub const PASSWORD_PLACEHOLDER: &str = "x";
/// GECOS field of configured users.
pub const ACCOUNT_GECOS: &str = "Account created by securebuild";
/// A home directory that is never created.
pub const NO_HOME: &str = "/dev/null";
/// Mode of a created home directory.
pub const HOME_MODE: u32 = 0o700;
/// Mode of `/etc/passwd` and `/etc/group` when they are created.
pub const ACCOUNT_FILE_MODE: u32 = 0o644;
/// Largest account file read, in bytes.
pub const MAX_ACCOUNT_FILE_SIZE: u64 = 16 << 20;

/// Number of `:`-separated fields of a passwd line.
const PASSWD_FIELDS: usize = 7;
/// Number of `:`-separated fields of a group line.
const GROUP_FIELDS: usize = 4;

/// One line of `/etc/passwd`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PasswdEntry {
    /// Login name.
    pub name: String,
    /// Password field (usually `x`).
    pub password: String,
    /// User ID.
    pub uid: u32,
    /// Primary group ID.
    pub gid: u32,
    /// GECOS (comment) field.
    pub gecos: String,
    /// Home directory.
    pub home: String,
    /// Login shell.
    pub shell: String,
}

/// One line of `/etc/group`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupEntry {
    /// Group name.
    pub name: String,
    /// Password field (usually `x`).
    pub password: String,
    /// Group ID.
    pub gid: u32,
    /// Member user names.
    pub members: Vec<String>,
}

/// What is wrong with the accounts or the account files.
#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    /// An account file could not be read from its package.
    #[error("reading /{path} failed")]
    Read {
        /// Tree path of the file.
        path: String,
        /// The content source's error.
        #[source]
        source: io::Error,
    },
    /// An account file is larger than [`MAX_ACCOUNT_FILE_SIZE`].
    #[error("/{path} is {size} bytes, over the limit of 16 MiB")]
    TooLarge {
        /// Tree path of the file.
        path: String,
        /// Its size.
        size: u64,
    },
    /// An account file is not UTF-8 text.
    #[error("/{path} is not UTF-8 text")]
    NotText {
        /// Tree path of the file.
        path: String,
    },
    /// An account file's path holds something other than a regular file.
    #[error("/{path} is a {existing}, not a regular file")]
    NotAFile {
        /// Tree path of the file.
        path: String,
        /// What is there.
        existing: &'static str,
    },
    /// A line without the expected number of fields.
    #[error(
        "/{path} line {line}: expected {expected} fields separated by `:`, found {found}: `{text}`"
    )]
    FieldCount {
        /// Tree path of the file.
        path: String,
        /// 1-based line number.
        line: usize,
        /// Fields a line must have.
        expected: usize,
        /// Fields found.
        found: usize,
        /// The line (shortened when long).
        text: String,
    },
    /// A UID or GID field that is not a decimal number that fits 32 bits.
    #[error("/{path} line {line}: invalid {field} `{value}`: `{text}`")]
    InvalidId {
        /// Tree path of the file.
        path: String,
        /// 1-based line number.
        line: usize,
        /// `uid` or `gid`.
        field: &'static str,
        /// The field's value.
        value: String,
        /// The line (shortened when long).
        text: String,
    },
    /// A configured name, home, shell or member that cannot be written into an account file.
    #[error("invalid {what} `{value}`: it must be non-empty and contain no `:`, `,` or line break")]
    InvalidField {
        /// Which field, e.g. `user name`.
        what: &'static str,
        /// The value as configured.
        value: String,
    },
    /// The same user name configured twice.
    #[error("user {name} is configured twice")]
    DuplicateUser {
        /// The user name.
        name: String,
    },
    /// Two configured users with the same UID.
    #[error("users {first} and {second} are both configured with uid {uid}")]
    DuplicateUid {
        /// The UID.
        uid: u32,
        /// The first user.
        first: String,
        /// The second user.
        second: String,
    },
    /// A configured user whose name is already in `/etc/passwd` with other IDs.
    #[error(
        "user {name} already exists in /etc/passwd as {existing_uid}:{existing_gid}; it cannot be added as {uid}:{gid}"
    )]
    UserExists {
        /// The user name.
        name: String,
        /// Configured UID.
        uid: u32,
        /// Configured primary GID.
        gid: u32,
        /// UID in the file.
        existing_uid: u32,
        /// GID in the file.
        existing_gid: u32,
    },
    /// A configured user whose UID another account already has.
    #[error("uid {uid} of user {name} is already used by {existing} in /etc/passwd")]
    UidTaken {
        /// The UID.
        uid: u32,
        /// The configured user.
        name: String,
        /// The account that has it.
        existing: String,
    },
    /// The same group name configured twice.
    #[error("group {name} is configured twice")]
    DuplicateGroup {
        /// The group name.
        name: String,
    },
    /// Two configured groups with the same GID.
    #[error("groups {first} and {second} are both configured with gid {gid}")]
    DuplicateGid {
        /// The GID.
        gid: u32,
        /// The first group.
        first: String,
        /// The second group.
        second: String,
    },
    /// A configured group whose name is already in `/etc/group` with another GID.
    #[error(
        "group {name} already exists in /etc/group with gid {existing_gid}; it cannot be added with gid {gid}"
    )]
    GroupExists {
        /// The group name.
        name: String,
        /// Configured GID.
        gid: u32,
        /// GID in the file.
        existing_gid: u32,
    },
    /// A configured group whose GID another group already has.
    #[error("gid {gid} of group {name} is already used by {existing} in /etc/group")]
    GidTaken {
        /// The GID.
        gid: u32,
        /// The configured group.
        name: String,
        /// The group that has it.
        existing: String,
    },
    /// A home directory path that exists but is not a directory.
    #[error("home directory {home} of user {user} exists but is a {existing}")]
    HomeNotDirectory {
        /// The user.
        user: String,
        /// The home directory as written in `/etc/passwd`.
        home: String,
        /// What is there.
        existing: &'static str,
    },
    /// A path involved (account file or home directory) could not be resolved or created.
    #[error("cannot use {path}")]
    Path {
        /// The path as written.
        path: String,
        /// Why.
        #[source]
        source: TreePathError,
    },
    /// `run-as` is not `user`, `uid`, `user:group` or `uid:gid`.
    #[error(
        "invalid run-as `{run_as}`; use a user name or UID, optionally followed by `:` and a group name or GID"
    )]
    InvalidRunAs {
        /// The value as configured.
        run_as: String,
    },
    /// `run-as` names a user that no account has.
    #[error(
        "run-as `{run_as}` names user {user}, which is not in /etc/passwd; add it under accounts.users or use a numeric uid"
    )]
    UnknownRunAsUser {
        /// The value as configured.
        run_as: String,
        /// The unknown user name.
        user: String,
    },
    /// `run-as` names a group that no group has.
    #[error(
        "run-as `{run_as}` names group {group}, which is not in /etc/group; add it under accounts.groups or use a numeric gid"
    )]
    UnknownRunAsGroup {
        /// The value as configured.
        run_as: String,
        /// The unknown group name.
        group: String,
    },
}

impl PasswdEntry {
    /// The entry apko writes for a configured user.
    pub fn from_config(user: &User) -> Self {
        Self {
            name: user.username.clone(),
            password: PASSWORD_PLACEHOLDER.to_string(),
            uid: user.uid,
            gid: user.gid.unwrap_or(user.uid),
            gecos: ACCOUNT_GECOS.to_string(),
            home: user
                .homedir
                .clone()
                .unwrap_or_else(|| format!("{HOME_PARENT}/{}", user.username)),
            shell: user
                .shell
                .clone()
                .unwrap_or_else(|| DEFAULT_SHELL.to_string()),
        }
    }
}

impl GroupEntry {
    /// The entry apko writes for a configured group.
    pub fn from_config(group: &Group) -> Self {
        Self {
            name: group.groupname.clone(),
            password: PASSWORD_PLACEHOLDER.to_string(),
            gid: group.gid,
            members: group.members.clone(),
        }
    }
}

/// Parses `/etc/passwd` text. Blank lines are skipped; every other line must have seven fields
/// with numeric UID and GID. `path` names the file in errors.
pub fn parse_passwd(path: &str, text: &str) -> Result<Vec<PasswdEntry>, AccountsError> {
    let mut entries = Vec::new();
    for Line {
        number,
        fields,
        text,
    } in split_lines(path, text, PASSWD_FIELDS)?
    {
        entries.push(PasswdEntry {
            name: fields[0].to_string(),
            password: fields[1].to_string(),
            uid: parse_id(path, number, "uid", fields[2], text)?,
            gid: parse_id(path, number, "gid", fields[3], text)?,
            gecos: fields[4].to_string(),
            home: fields[5].to_string(),
            shell: fields[6].to_string(),
        });
    }
    Ok(entries)
}

/// Parses `/etc/group` text. Blank lines are skipped; every other line must have four fields
/// with a numeric GID. `path` names the file in errors.
pub fn parse_group(path: &str, text: &str) -> Result<Vec<GroupEntry>, AccountsError> {
    let mut entries = Vec::new();
    for Line {
        number,
        fields,
        text,
    } in split_lines(path, text, GROUP_FIELDS)?
    {
        entries.push(GroupEntry {
            name: fields[0].to_string(),
            password: fields[1].to_string(),
            gid: parse_id(path, number, "gid", fields[2], text)?,
            members: fields[3]
                .split(',')
                .filter(|m| !m.is_empty())
                .map(str::to_string)
                .collect(),
        });
    }
    Ok(entries)
}

/// Writes passwd entries, one line each.
pub fn format_passwd(entries: &[PasswdEntry]) -> String {
    entries
        .iter()
        .map(|e| {
            format!(
                "{}:{}:{}:{}:{}:{}:{}\n",
                e.name, e.password, e.uid, e.gid, e.gecos, e.home, e.shell
            )
        })
        .collect()
}

/// Writes group entries, one line each.
pub fn format_group(entries: &[GroupEntry]) -> String {
    entries
        .iter()
        .map(|e| {
            format!(
                "{}:{}:{}:{}\n",
                e.name,
                e.password,
                e.gid,
                e.members.join(",")
            )
        })
        .collect()
}

/// A non-blank line of an account file.
struct Line<'a> {
    /// 1-based line number.
    number: usize,
    /// The `:`-separated fields.
    fields: Vec<&'a str>,
    /// The trimmed line.
    text: &'a str,
}

/// The non-blank lines, checking the field count.
fn split_lines<'a>(
    path: &str,
    text: &'a str,
    expected: usize,
) -> Result<Vec<Line<'a>>, AccountsError> {
    let mut lines = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() != expected {
            return Err(AccountsError::FieldCount {
                path: path.to_string(),
                line: index + 1,
                expected,
                found: fields.len(),
                text: quote(line),
            });
        }
        lines.push(Line {
            number: index + 1,
            fields,
            text: line,
        });
    }
    Ok(lines)
}

fn parse_id(
    path: &str,
    line: usize,
    field: &'static str,
    value: &str,
    text: &str,
) -> Result<u32, AccountsError> {
    let parsed = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        value.parse::<u32>().ok()
    } else {
        None
    };
    parsed.ok_or_else(|| AccountsError::InvalidId {
        path: path.to_string(),
        line,
        field,
        value: quote(value),
        text: quote(text),
    })
}

/// Applies the accounts configuration to the tree and returns the OCI `User` value (`run-as`
/// with user and group names replaced by their IDs), if any.
///
/// `/etc/passwd` is always rewritten (created empty when missing, as apko does) and home
/// directories are created for every account; `/etc/group` is rewritten only when groups are
/// configured. Written files keep their mode and owner and get modification time `mtime`.
pub fn apply_accounts(
    tree: &mut Tree,
    source: &dyn ContentSource,
    accounts: Option<&ImageAccounts>,
    mtime: i64,
) -> Result<Option<String>, AccountsError> {
    let default = ImageAccounts::default();
    let accounts = accounts.unwrap_or(&default);
    validate(accounts)?;

    let passwd_path = resolve_file(tree, PASSWD_PATH)?;
    let mut users = match read_text(tree, source, &passwd_path)? {
        Some(text) => parse_passwd(&passwd_path, &text)?,
        None => Vec::new(),
    };
    add_users(&mut users, &accounts.users)?;

    let group_path = resolve_file(tree, GROUP_PATH)?;
    let mut groups = match read_text(tree, source, &group_path)? {
        Some(text) => parse_group(&group_path, &text)?,
        None => Vec::new(),
    };
    if !accounts.groups.is_empty() {
        add_groups(&mut groups, &accounts.groups)?;
    }

    write_text(tree, &passwd_path, format_passwd(&users), mtime)?;
    if !accounts.groups.is_empty() {
        write_text(tree, &group_path, format_group(&groups), mtime)?;
    }
    for user in &users {
        create_home(tree, user, mtime)?;
    }

    match accounts.run_as.as_deref() {
        None | Some("") => Ok(None),
        Some(run_as) => resolve_run_as(run_as, &users, &groups).map(Some),
    }
}

/// Rejects configured values that would corrupt the account files.
fn validate(accounts: &ImageAccounts) -> Result<(), AccountsError> {
    let check = |what: &'static str, value: &str, allow_empty: bool| {
        let bad = (value.is_empty() && !allow_empty)
            || value.contains([':', ',', '\n', '\r'])
            || value.trim() != value;
        if bad {
            Err(AccountsError::InvalidField {
                what,
                value: value.to_string(),
            })
        } else {
            Ok(())
        }
    };
    for user in &accounts.users {
        check("user name", &user.username, false)?;
        if let Some(home) = &user.homedir {
            check("home directory", home, false)?;
        }
        if let Some(shell) = &user.shell {
            check("shell", shell, false)?;
        }
    }
    for group in &accounts.groups {
        check("group name", &group.groupname, false)?;
        for member in &group.members {
            check("group member", member, false)?;
        }
    }
    Ok(())
}

fn add_users(entries: &mut Vec<PasswdEntry>, users: &[User]) -> Result<(), AccountsError> {
    for (position, user) in users.iter().enumerate() {
        for earlier in &users[..position] {
            if earlier.username == user.username {
                return Err(AccountsError::DuplicateUser {
                    name: user.username.clone(),
                });
            }
            if earlier.uid == user.uid {
                return Err(AccountsError::DuplicateUid {
                    uid: user.uid,
                    first: earlier.username.clone(),
                    second: user.username.clone(),
                });
            }
        }
        let entry = PasswdEntry::from_config(user);
        if let Some(existing) = entries.iter().find(|e| e.name == entry.name) {
            if existing.uid == entry.uid && existing.gid == entry.gid {
                continue;
            }
            return Err(AccountsError::UserExists {
                name: entry.name,
                uid: entry.uid,
                gid: entry.gid,
                existing_uid: existing.uid,
                existing_gid: existing.gid,
            });
        }
        if let Some(existing) = entries.iter().find(|e| e.uid == entry.uid) {
            return Err(AccountsError::UidTaken {
                uid: entry.uid,
                name: entry.name,
                existing: existing.name.clone(),
            });
        }
        entries.push(entry);
    }
    Ok(())
}

fn add_groups(entries: &mut Vec<GroupEntry>, groups: &[Group]) -> Result<(), AccountsError> {
    for (position, group) in groups.iter().enumerate() {
        for earlier in &groups[..position] {
            if earlier.groupname == group.groupname {
                return Err(AccountsError::DuplicateGroup {
                    name: group.groupname.clone(),
                });
            }
            if earlier.gid == group.gid {
                return Err(AccountsError::DuplicateGid {
                    gid: group.gid,
                    first: earlier.groupname.clone(),
                    second: group.groupname.clone(),
                });
            }
        }
        let entry = GroupEntry::from_config(group);
        if let Some(existing) = entries.iter_mut().find(|e| e.name == entry.name) {
            if existing.gid != entry.gid {
                return Err(AccountsError::GroupExists {
                    name: entry.name,
                    gid: entry.gid,
                    existing_gid: existing.gid,
                });
            }
            for member in entry.members {
                if !existing.members.contains(&member) {
                    existing.members.push(member);
                }
            }
            continue;
        }
        if let Some(existing) = entries.iter().find(|e| e.gid == entry.gid) {
            return Err(AccountsError::GidTaken {
                gid: entry.gid,
                name: entry.name,
                existing: existing.name.clone(),
            });
        }
        entries.push(entry);
    }
    Ok(())
}

/// The tree path an account file is read from and written to (symlinks followed).
fn resolve_file(tree: &Tree, path: &str) -> Result<String, AccountsError> {
    let resolved = paths::resolve(tree, path, true).map_err(|source| AccountsError::Path {
        path: format!("/{path}"),
        source,
    })?;
    if resolved.is_empty() {
        return Err(AccountsError::NotAFile {
            path: path.to_string(),
            existing: "directory",
        });
    }
    Ok(resolved)
}

/// Reads a regular file (or the file a hard link names) as text; `None` when it does not exist.
fn read_text(
    tree: &Tree,
    source: &dyn ContentSource,
    path: &str,
) -> Result<Option<String>, AccountsError> {
    let Some(node) = tree.get(path) else {
        return Ok(None);
    };
    let Some(holder) = tree.file_node(path) else {
        return Err(AccountsError::NotAFile {
            path: path.to_string(),
            existing: paths::kind_name(&node.entry.kind),
        });
    };
    let size = holder.content.len();
    if size > MAX_ACCOUNT_FILE_SIZE {
        return Err(AccountsError::TooLarge {
            path: path.to_string(),
            size,
        });
    }
    let bytes = tree
        .read(&holder.entry.path, source)
        .map_err(|source| AccountsError::Read {
            path: path.to_string(),
            source,
        })?
        .unwrap_or_default();
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| AccountsError::NotText {
            path: path.to_string(),
        })
}

/// Replaces (or creates) a regular file's content, keeping an existing file's mode and owner.
fn write_text(tree: &mut Tree, path: &str, text: String, mtime: i64) -> Result<(), AccountsError> {
    let bytes = text.into_bytes();
    let size = bytes.len() as u64;
    if let Some(node) = tree.get_mut(path) {
        node.entry.kind = EntryKind::File { size };
        node.entry.mtime = mtime;
        node.content = Content::inline(bytes);
        return Ok(());
    }
    paths::make_dirs(
        tree,
        paths::parent(path),
        paths::DEFAULT_DIRECTORY_MODE,
        mtime,
    )
    .map_err(|source| AccountsError::Path {
        path: format!("/{path}"),
        source,
    })?;
    tree.insert(Node {
        entry: LayerEntry::file(path, size, ACCOUNT_FILE_MODE, mtime),
        content: Content::inline(bytes),
        owner: None,
    });
    Ok(())
}

/// Creates a user's home directory when it is missing; an existing one is left as it is.
fn create_home(tree: &mut Tree, user: &PasswdEntry, mtime: i64) -> Result<(), AccountsError> {
    if user.home.is_empty() || user.home == NO_HOME {
        return Ok(());
    }
    let path_error = |source| AccountsError::Path {
        path: user.home.clone(),
        source,
    };
    let home = paths::resolve(tree, &user.home, true).map_err(path_error)?;
    if home.is_empty() {
        return Ok(());
    }
    match tree.get(&home).map(|n| &n.entry.kind) {
        Some(EntryKind::Directory) => return Ok(()),
        Some(other) => {
            return Err(AccountsError::HomeNotDirectory {
                user: user.name.clone(),
                home: user.home.clone(),
                existing: paths::kind_name(other),
            });
        }
        None => {}
    }
    paths::make_dirs(
        tree,
        paths::parent(&home),
        paths::DEFAULT_DIRECTORY_MODE,
        mtime,
    )
    .map_err(path_error)?;
    paths::check_storable(&home).map_err(path_error)?;
    let mut entry = LayerEntry::directory(home.as_str(), HOME_MODE, mtime);
    entry.uid = user.uid;
    entry.gid = user.gid;
    tree.insert(Node {
        entry,
        content: Content::Empty,
        owner: None,
    });
    Ok(())
}

/// Turns `user[:group]` into `uid[:gid]` using the account files.
fn resolve_run_as(
    run_as: &str,
    users: &[PasswdEntry],
    groups: &[GroupEntry],
) -> Result<String, AccountsError> {
    let invalid = || AccountsError::InvalidRunAs {
        run_as: run_as.to_string(),
    };
    let (user, group) = match run_as.split_once(':') {
        Some((user, group)) => (user, Some(group)),
        None => (run_as, None),
    };
    if user.is_empty() || group.is_some_and(|g| g.is_empty() || g.contains(':')) {
        return Err(invalid());
    }
    let uid = match numeric_id(user) {
        Some(uid) => uid,
        None => users
            .iter()
            .find(|u| u.name == user)
            .map(|u| u.uid)
            .ok_or_else(|| AccountsError::UnknownRunAsUser {
                run_as: run_as.to_string(),
                user: user.to_string(),
            })?,
    };
    let Some(group) = group else {
        return Ok(uid.to_string());
    };
    let gid = match numeric_id(group) {
        Some(gid) => gid,
        None => groups
            .iter()
            .find(|g| g.name == group)
            .map(|g| g.gid)
            .ok_or_else(|| AccountsError::UnknownRunAsGroup {
                run_as: run_as.to_string(),
                group: group.to_string(),
            })?,
    };
    Ok(format!("{uid}:{gid}"))
}

fn numeric_id(text: &str) -> Option<u32> {
    if text.bytes().all(|b| b.is_ascii_digit()) {
        text.parse().ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Spools hold `(bytes)` by index; offsets index into them.
    struct Spools(Vec<Vec<u8>>);

    impl ContentSource for Spools {
        fn read_spool(&self, spool: usize, offset: u64, len: u64) -> io::Result<Vec<u8>> {
            let bytes = self
                .0
                .get(spool)
                .ok_or_else(|| io::Error::other("no spool"))?;
            let start = offset as usize;
            Ok(bytes[start..start + len as usize].to_vec())
        }
    }

    const BASE_PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
        nobody:x:65534:65534:nobody:/:/sbin/nologin\n";
    const BASE_GROUP: &str = "root:x:0:\nnobody:x:65534:\nwheel:x:10:root\n";

    /// A tree where `etc/passwd` comes from a package spool and `etc/group` is inline.
    fn base() -> (Tree, Spools) {
        let mut tree = Tree::new();
        tree.insert(Node {
            entry: LayerEntry::directory("etc", 0o755, 1),
            content: Content::Empty,
            owner: Some(0),
        });
        tree.insert(Node {
            entry: LayerEntry::directory("root", 0o700, 1),
            content: Content::Empty,
            owner: Some(0),
        });
        let mut passwd = LayerEntry::file("etc/passwd", BASE_PASSWD.len() as u64, 0o644, 1);
        passwd.uname = Some("root".into());
        tree.insert(Node {
            entry: passwd,
            content: Content::Spool {
                spool: 0,
                offset: 3,
                len: BASE_PASSWD.len() as u64,
            },
            owner: Some(0),
        });
        tree.put_file("etc/group", BASE_GROUP.as_bytes().to_vec(), 0o644, 0, 0, 1);
        let mut spool = b"xyz".to_vec();
        spool.extend_from_slice(BASE_PASSWD.as_bytes());
        (tree, Spools(vec![spool]))
    }

    fn user(name: &str, uid: u32) -> User {
        User {
            username: name.to_string(),
            uid,
            ..User::default()
        }
    }

    fn group(name: &str, gid: u32, members: &[&str]) -> Group {
        Group {
            groupname: name.to_string(),
            gid,
            members: members.iter().map(|m| m.to_string()).collect(),
        }
    }

    fn text(tree: &Tree, path: &str) -> String {
        String::from_utf8(tree.read(path, &Spools(vec![])).unwrap().unwrap()).unwrap()
    }

    #[test]
    fn users_and_groups_are_appended_with_apko_defaults() {
        let (mut tree, spools) = base();
        let accounts = ImageAccounts {
            run_as: Some("nonroot".into()),
            users: vec![
                User {
                    gid: Some(65532),
                    ..user("nonroot", 65532)
                },
                User {
                    shell: Some("/bin/bash".into()),
                    homedir: Some("/srv/app".into()),
                    ..user("app", 1000)
                },
            ],
            groups: vec![group("nonroot", 65532, &[]), group("wheel", 10, &["app"])],
        };
        let run_as = apply_accounts(&mut tree, &spools, Some(&accounts), 7).unwrap();
        assert_eq!(run_as.as_deref(), Some("65532"));
        assert_eq!(
            text(&tree, "etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\n\
             nobody:x:65534:65534:nobody:/:/sbin/nologin\n\
             nonroot:x:65532:65532:Account created by securebuild:/home/nonroot:/bin/sh\n\
             app:x:1000:1000:Account created by securebuild:/srv/app:/bin/bash\n"
        );
        assert_eq!(
            text(&tree, "etc/group"),
            "root:x:0:\nnobody:x:65534:\nwheel:x:10:root,app\nnonroot:x:65532:\n"
        );
        let passwd = tree.get("etc/passwd").unwrap();
        assert_eq!(passwd.entry.mtime, 7);
        assert_eq!(passwd.entry.uname.as_deref(), Some("root"));
        let home = tree.get("home/nonroot").unwrap();
        assert_eq!(
            (home.entry.mode, home.entry.uid, home.entry.gid),
            (0o700, 65532, 65532)
        );
        let parent = tree.get("home").unwrap();
        assert_eq!((parent.entry.mode, parent.entry.uid), (0o755, 0));
        assert_eq!(tree.get("srv/app").unwrap().entry.uid, 1000);
        // Existing homes are left alone.
        assert_eq!(tree.get("root").unwrap().entry.mode, 0o700);
    }

    #[test]
    fn missing_files_are_created_and_group_is_left_alone_without_groups() {
        let mut tree = Tree::new();
        let accounts = ImageAccounts {
            users: vec![user("build", 1001)],
            ..ImageAccounts::default()
        };
        apply_accounts(&mut tree, &Spools(vec![]), Some(&accounts), 3).unwrap();
        assert_eq!(
            text(&tree, "etc/passwd"),
            "build:x:1001:1001:Account created by securebuild:/home/build:/bin/sh\n"
        );
        assert_eq!(tree.get("etc/passwd").unwrap().entry.mode, 0o644);
        assert!(!tree.contains("etc/group"));
        let mut empty = Tree::new();
        assert_eq!(
            apply_accounts(&mut empty, &Spools(vec![]), None, 3).unwrap(),
            None
        );
        assert_eq!(text(&empty, "etc/passwd"), "");
    }

    #[test]
    fn run_as_forms() {
        let check = |run_as: &str, expected: Result<&str, &str>| {
            let (mut tree, spools) = base();
            let accounts = ImageAccounts {
                run_as: Some(run_as.to_string()),
                users: vec![user("nonroot", 65532)],
                groups: vec![group("nonroot", 65532, &[])],
            };
            let got = apply_accounts(&mut tree, &spools, Some(&accounts), 1);
            match expected {
                Ok(want) => assert_eq!(got.unwrap().as_deref(), Some(want), "{run_as}"),
                Err(fragment) => {
                    let message = got.unwrap_err().to_string();
                    assert!(message.contains(fragment), "{run_as}: {message}");
                }
            }
        };
        check("65532", Ok("65532"));
        check("nonroot", Ok("65532"));
        check("root", Ok("0"));
        check("1234", Ok("1234"));
        check("nonroot:nonroot", Ok("65532:65532"));
        check("nonroot:wheel", Ok("65532:10"));
        check("0:0", Ok("0:0"));
        check(
            "ghost",
            Err("names user ghost, which is not in /etc/passwd"),
        );
        check("nonroot:ghosts", Err("names group ghosts"));
        check(":1", Err("invalid run-as"));
        check("1:", Err("invalid run-as"));
        check("1:2:3", Err("invalid run-as"));
        check("99999999999", Err("names user 99999999999"));
    }

    #[test]
    fn conflicts_are_errors() {
        let check = |users: Vec<User>, groups: Vec<Group>, fragment: &str| {
            let (mut tree, spools) = base();
            let accounts = ImageAccounts {
                run_as: None,
                users,
                groups,
            };
            let message = apply_accounts(&mut tree, &spools, Some(&accounts), 1)
                .unwrap_err()
                .to_string();
            assert!(message.contains(fragment), "{message} lacks {fragment}");
        };
        check(
            vec![user("a", 1), user("a", 2)],
            vec![],
            "user a is configured twice",
        );
        check(
            vec![user("a", 5), user("b", 5)],
            vec![],
            "users a and b are both configured with uid 5",
        );
        check(
            vec![user("nobody", 99)],
            vec![],
            "user nobody already exists in /etc/passwd as 65534:65534",
        );
        check(
            vec![user("admin", 0)],
            vec![],
            "uid 0 of user admin is already used by root",
        );
        check(
            vec![],
            vec![group("g", 1, &[]), group("g", 2, &[])],
            "group g is configured twice",
        );
        check(
            vec![],
            vec![group("g", 1, &[]), group("h", 1, &[])],
            "groups g and h are both configured with gid 1",
        );
        check(
            vec![],
            vec![group("wheel", 11, &[])],
            "group wheel already exists in /etc/group with gid 10",
        );
        check(
            vec![],
            vec![group("staff", 10, &[])],
            "gid 10 of group staff is already used by wheel",
        );
        check(vec![user("a:b", 5)], vec![], "invalid user name `a:b`");
        check(
            vec![],
            vec![group("g", 5, &["x,y"])],
            "invalid group member `x,y`",
        );
    }

    #[test]
    fn an_identical_existing_user_is_not_added_twice() {
        let (mut tree, spools) = base();
        let accounts = ImageAccounts {
            users: vec![User {
                gid: Some(65534),
                ..user("nobody", 65534)
            }],
            ..ImageAccounts::default()
        };
        apply_accounts(&mut tree, &spools, Some(&accounts), 1).unwrap();
        assert_eq!(text(&tree, "etc/passwd"), BASE_PASSWD);
    }

    #[test]
    fn malformed_files_name_the_line() {
        let check = |passwd: &str, fragment: &str| {
            let mut tree = Tree::new();
            tree.put_file("etc/passwd", passwd.as_bytes().to_vec(), 0o644, 0, 0, 1);
            let message = apply_accounts(&mut tree, &Spools(vec![]), None, 1)
                .unwrap_err()
                .to_string();
            assert!(message.contains(fragment), "{message} lacks {fragment}");
        };
        check(
            "root:x:0:0:root:/root:/bin/sh\n\nbroken line\n",
            "/etc/passwd line 3: expected 7 fields separated by `:`, found 1: `broken line`",
        );
        check(
            "root:x:zero:0:root:/root:/bin/sh\n",
            "line 1: invalid uid `zero`",
        );
        check("root:x:0:-1:root:/root:/bin/sh\n", "invalid gid `-1`");
        check("root:x:4294967296:0:r:/:/bin/sh\n", "invalid uid");
        let mut tree = Tree::new();
        tree.put_file("etc/passwd", vec![0xff, 0xfe], 0o644, 0, 0, 1);
        let message = apply_accounts(&mut tree, &Spools(vec![]), None, 1)
            .unwrap_err()
            .to_string();
        assert_eq!(message, "/etc/passwd is not UTF-8 text");
    }

    #[test]
    fn home_that_is_a_file_is_an_error() {
        let (mut tree, spools) = base();
        tree.put_file("home/app", b"oops".to_vec(), 0o644, 0, 0, 1);
        let accounts = ImageAccounts {
            users: vec![user("app", 1000)],
            ..ImageAccounts::default()
        };
        let message = apply_accounts(&mut tree, &spools, Some(&accounts), 1)
            .unwrap_err()
            .to_string();
        assert_eq!(
            message,
            "home directory /home/app of user app exists but is a regular file"
        );
    }

    #[test]
    fn group_lines_round_trip() {
        let groups = parse_group("etc/group", "a:x:1:\nb:x:2:u1,u2\n").unwrap();
        assert_eq!(groups[1].members, ["u1", "u2"]);
        assert_eq!(format_group(&groups), "a:x:1:\nb:x:2:u1,u2\n");
        let users = parse_passwd("etc/passwd", BASE_PASSWD).unwrap();
        assert_eq!(format_passwd(&users), BASE_PASSWD);
    }
}
