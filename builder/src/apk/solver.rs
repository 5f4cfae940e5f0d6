//! The APK resolver: decides which packages `apk add WORLD...` selects into an empty root, and
//! in which order they install, making the choices apk-tools 3.0.6 makes (`src/solver.c`, with
//! the error report of `src/commit.c`).
//!
//! Pure: package records and world atoms in, an ordered selection or an apk-worded
//! "unable to select packages" report out. It does not fetch or verify anything, never sees an
//! installed database (the root is always empty, so there are no upgrades, removals or
//! "prefer installed" rules), and ignores file-level `replaces`.
//!
//! The algorithm is apk's deductive solver, reimplemented step for step rather than a generic
//! SAT or backtracking search, so that the same inputs select the same packages:
//!
//! 0. The package set is built the way apk's database loads repositories (`apk_db_pkg_add`):
//!    packages whose checksum starts with the same 20 bytes are one package held by several
//!    repositories (the first record read wins), every package is a provider of its own name
//!    and of each name it provides, and a package whose architecture is neither the root's nor
//!    `noarch` (nor absent), or that the index marks uninstallable, is never selectable. Reverse
//!    dependency and reverse install-if lists are filled in the order apk walks its name hash
//!    table (`apk_db_name_rdepends`), which also orders parts of the error report.
//! 1. The world is sorted by name and every name reachable from it is discovered
//!    (`discover_name`): dependencies of each provider first, then the names whose
//!    `install_if` mentions this name or a provider's name, then the names each provider
//!    provides; the name then gets its `order_id`, a discovery counter flagged with "named by
//!    the world" and "has a real (non-virtual) provider"; last the names in the providers'
//!    `install_if` atoms are discovered.
//! 2. World atoms are applied in name order (`apply_constraint`): each provider that fails an
//!    atom's version test, or matches a `!conflict`, is disqualified, and the disqualification
//!    propagates to every package whose dependencies can no longer be met
//!    (`disqualify_package`, `reconsider_name`). Dependencies common to every remaining
//!    candidate of a name are applied early ("merging"), and a name whose candidates all carry
//!    another name excludes that name's other providers ("provides transitivity"). Install-if
//!    packages are triggered once every atom of their `install_if` is decided and met; an
//!    undecided `!conflict` atom of an `install_if` makes its name wanted (`iif_needed`).
//! 3. The next name to decide is taken from three queues (`dequeue_next_name`): names with a
//!    single automatically selectable option, requirers and no undecided reverse dependencies,
//!    first come first served; then names with an automatically selectable option; then the
//!    rest. The last two are ordered by `order_id`: world names with a real provider first,
//!    then other world names, then other names with a real provider, then the remaining
//!    (purely virtual) names, each group latest discovered first.
//! 4. Among a name's providers the winner is decided by `compare_providers`: selectable (not
//!    disqualified), then candidates that took part in the last dependency merge, then fewest
//!    failed constraints, then an allowed repository tag, then the preferred tag, then the
//!    highest version of the requested name (an unversioned provide counts as the empty
//!    version, older than every valid one), then the highest version of the same package name,
//!    then the highest `provider_priority`, then the lowest repository. An unversioned provide
//!    without `provider_priority` is only chosen when its package's own name is required
//!    (`is_provider_auto_selectable`); an install-if package only when triggered.
//! 5. Choosing a package claims its name and every provided name (`assign_name`): other
//!    providers of those names are disqualified unless both provide the name unversioned, and
//!    a second claim on a name is an error (two packages providing the same versioned name).
//!    A triggered install-if package chosen for a name nobody requires also applies its
//!    `install_if` atoms on still undecided names.
//! 6. The install order is apk's changeset order (`generate_changeset`): world atoms sorted by
//!    name, each package emitted after its dependencies (depth first, in dependency order; a
//!    cycle is broken at the package reached first), install-if packages right after the last
//!    of their triggers.
//!
//! Repository tags follow apk's pinning: untagged repositories are always allowed; a package
//! from a tagged repository is allowed only when a world atom names the tag (`foo@edge`), and
//! the permission is inherited by everything that package depends on. Packages in an untagged
//! repository stay preferred for those dependencies; the world atom's own tag is preferred for
//! the atom itself. As in apk, a package with an installed size of zero (a meta package) is
//! allowed from any repository.
//!
//! A refusal is explained the way `apk_solver_print_errors` explains it, from the packages the
//! changeset holds: missing and undecidable names with who requires them, then each package's
//! uninstallability, masking, conflicting claims, broken and satisfied atoms, lists wrapped at
//! the 50 columns apk uses when its output is not a terminal.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;

use super::constraint::Dependency;
use super::index::PackageRecord;
use super::version;

/// Pinning masks are 16-bit sets of repository tags (apk's `APK_MAX_TAGS`), tag 0 being
/// "untagged".
const MAX_REPOSITORY_TAGS: usize = 16;
/// The tag of untagged repositories.
const DEFAULT_TAG: usize = 0;
/// Pinning mask allowing only untagged repositories.
const DEFAULT_PINNING: u32 = 1 << DEFAULT_TAG;
/// Prefix apk prints before a repository tag.
const TAG_PREFIX: char = '@';
/// Column at which the error report wraps its lists: apk's width when not writing to a
/// terminal.
const REPORT_WIDTH: usize = 50;
/// First line of the error report (apk prints it after `ERROR: `).
const REPORT_HEADING: &str = "unable to select packages:";
/// What apk prints when the report finds nothing to blame.
const REPORT_NOTHING_FOUND: &str = "Huh? Error reporter did not find the broken constraints.";
/// The note apk adds to a virtual name it could not choose a provider for.
const VIRTUAL_NOTE: &str = "please select one of the 'provided by' packages explicitly";
/// What apk prints under `error:` for an uninstallable package.
const UNINSTALLABLE: &str = "uninstallable";
/// The architecture every root accepts.
const NOARCH: &str = "noarch";
/// Bytes of the checksum that identify a package (apk's `APK_DIGEST_LENGTH_SHA1`).
const PACKAGE_ID_LENGTH: usize = 20;
/// Buckets of apk's name hash table, whose walk orders reverse dependency lists.
const NAME_HASH_BUCKETS: u32 = 20_000;
/// Seed of apk's name hash (`apk_blob_hash`).
const NAME_HASH_SEED: u32 = 5381;
/// `order_id` flag: the name is not in the world.
const ORDER_NOT_IN_WORLD: u32 = 1 << 31;
/// `order_id` flag: the name has a provider of the same name.
const ORDER_HAS_REAL_PROVIDER: u32 = 1 << 30;

/// One repository as the solver sees it.
#[derive(Clone, Debug)]
pub struct SolverRepository<'a> {
    /// URL or path of the repository, for messages.
    pub name: String,
    /// Pinning tag (`edge` or `@edge`); `None` for an untagged repository.
    pub tag: Option<String>,
    /// The repository's packages, in index order.
    pub packages: &'a [PackageRecord],
}

/// One package to install.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Selection<'a> {
    /// The chosen package.
    pub package: &'a PackageRecord,
    /// Index into the solver's repositories of the repository to fetch it from.
    pub repository: usize,
}

/// What `apk add` would install into an empty root.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Solution<'a> {
    /// Packages in install order: every package after its dependencies.
    pub packages: Vec<Selection<'a>>,
}

/// Why no selection exists.
#[derive(Debug, thiserror::Error)]
pub enum SolveError {
    /// A world atom names a tag no repository carries (apk's `apk_db_check_world`).
    #[error(
        "the repository tag for world dependency '{}' does not exist",
        tagged_name(.dependency)
    )]
    UnknownTag {
        /// The world atom.
        dependency: Dependency,
    },
    /// More distinct repository tags than a pinning mask holds.
    #[error("{count} repository tags are configured, at most {max} are supported")]
    TooManyRepositoryTags {
        /// Distinct tags configured.
        count: usize,
        /// Supported maximum.
        max: usize,
    },
    /// The world cannot be satisfied; the report is apk's "unable to select packages" block.
    #[error("{REPORT_HEADING}{}", ReportDisplay(.problems))]
    Unsatisfiable {
        /// One entry per name or package at fault, in apk's order.
        problems: Vec<Problem>,
    },
}

/// One entry of the "unable to select packages" report (apk's `apk_solver_print_errors`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The name or package the entry is about.
    pub subject: ProblemSubject,
    /// Labelled lists under the subject, in apk's order.
    pub details: Vec<ProblemDetail>,
}

/// The heading of a [`Problem`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProblemSubject {
    /// A required name nothing provides: `name (no such package)`.
    NoSuchPackage {
        /// The name.
        name: String,
    },
    /// A required name whose providers could not be chosen among: `name (virtual)`.
    Virtual {
        /// The name.
        name: String,
    },
    /// A chosen package that breaks a constraint, conflicts or is masked: `name-version`.
    Package {
        /// Package name.
        name: String,
        /// Package version.
        version: String,
    },
}

impl fmt::Display for ProblemSubject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProblemSubject::NoSuchPackage { name } => write!(f, "{name} (no such package)"),
            ProblemSubject::Virtual { name } => write!(f, "{name} (virtual)"),
            ProblemSubject::Package { name, version } => write!(f, "{name}-{version}"),
        }
    }
}

/// One labelled list of a [`Problem`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProblemDetail {
    /// Which list this is.
    pub kind: DetailKind,
    /// Entries, e.g. `world[go~1.26]`, `foo-1.0-r0[so:libbar.so.1]`, `@edge`, `busybox`.
    pub items: Vec<String>,
}

/// The labels apk uses in its report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DetailKind {
    /// `error:` what is wrong with the package itself (`uninstallable`).
    Error,
    /// `arch:` the architecture that makes a package uninstallable.
    Arch,
    /// `depends:` broken dependency atoms of an uninstallable package.
    Depends,
    /// `provides:` broken provides of an uninstallable package.
    Provides,
    /// `install_if:` broken install-if atoms of an uninstallable package.
    InstallIf,
    /// `note:` advice, one word per item.
    Note,
    /// `provided by:` the packages (or package names) providing a virtual name.
    ProvidedBy,
    /// `required by:` the atoms asking for a missing name.
    RequiredBy,
    /// `masked in:` the tags of the only repositories holding a package.
    MaskedIn,
    /// `conflicts:` other chosen packages claiming the same name.
    Conflicts,
    /// `breaks:` atoms the package fails.
    Breaks,
    /// `satisfies:` atoms the package meets.
    Satisfies,
}

impl DetailKind {
    /// The label as apk prints it.
    pub fn label(self) -> &'static str {
        match self {
            DetailKind::Error => "error:",
            DetailKind::Arch => "arch:",
            DetailKind::Depends => "depends:",
            DetailKind::Provides => "provides:",
            DetailKind::InstallIf => "install_if:",
            DetailKind::Note => "note:",
            DetailKind::ProvidedBy => "provided by:",
            DetailKind::RequiredBy => "required by:",
            DetailKind::MaskedIn => "masked in:",
            DetailKind::Conflicts => "conflicts:",
            DetailKind::Breaks => "breaks:",
            DetailKind::Satisfies => "satisfies:",
        }
    }
}

/// Renders problems below [`REPORT_HEADING`], wrapping lists like apk's `apk_print_indented`.
struct ReportDisplay<'p>(&'p [Problem]);

impl fmt::Display for ReportDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return write!(f, "\n{REPORT_NOTHING_FOUND}");
        }
        for problem in self.0 {
            write!(f, "\n  {}:", problem.subject)?;
            for detail in &problem.details {
                let label = detail.kind.label();
                write!(f, "\n    {label}")?;
                let indent = 4 + label.len() + 1;
                let mut column = indent - 1;
                for item in &detail.items {
                    if column <= indent {
                        write!(f, "{:pad$}{item}", "", pad = indent - column)?;
                        column = indent + item.len();
                    } else if column + item.len() + 1 >= REPORT_WIDTH {
                        write!(f, "\n{:indent$}{item}", "")?;
                        column = indent + item.len();
                    } else {
                        write!(f, " {item}")?;
                        column += item.len() + 1;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Resolves `world` against `repositories` into an empty root of architecture `arch`, the way
/// `apk add` would.
///
/// Repositories are listed in priority order (lower index wins a full tie). A package present
/// with the same checksum in several repositories is one candidate. Packages whose `A:` is
/// neither `arch` nor `noarch` (an empty architecture is compatible) are uninstallable.
pub fn solve<'a>(
    repositories: &[SolverRepository<'a>],
    world: &[Dependency],
    arch: &str,
) -> Result<Solution<'a>, SolveError> {
    let mut solver = Solver::new(repositories, world, arch)?;
    solver.run();
    if solver.errors > 0 {
        return Err(SolveError::Unsatisfiable {
            problems: solver.report(),
        });
    }
    Ok(solver.solution())
}

type NameId = usize;
type PkgId = usize;

/// A dependency atom with its name interned.
#[derive(Clone, Copy)]
struct DepRef<'n> {
    name: NameId,
    atom: &'n Dependency,
}

/// A `provides` entry with its name interned; `version` is `None` for an unversioned provide.
#[derive(Clone, Copy)]
struct ProvideRef<'n> {
    name: NameId,
    version: Option<&'n str>,
    atom: &'n Dependency,
}

/// A package offering a name, at a version (`None`: provided without version, apk's
/// `apk_atom_null`). This is apk's `struct apk_provider`; "no provider" is `Option::None`.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Provider<'n> {
    pkg: PkgId,
    version: Option<&'n str>,
}

/// The version of a provider as apk compares it: an unversioned provide, and no provider at
/// all, have the empty version.
fn provider_version(provider: Option<Provider<'_>>) -> Option<&str> {
    provider.and_then(|provider| provider.version)
}

/// A world atom with its repository tag resolved.
#[derive(Clone, Copy)]
struct WorldAtom<'n> {
    dep: DepRef<'n>,
    tag: usize,
}

/// Per-package solver state (apk's `struct apk_solver_package_state`).
#[derive(Default)]
struct PkgState {
    seen: bool,
    pinning_allowed: u32,
    pinning_preferred: u32,
    selectable: bool,
    iif_triggered: bool,
    iif_failed: bool,
    tag_ok: bool,
    tag_preferred: bool,
    dependencies_merged: bool,
    dependencies_used: bool,
    conflicts: u32,
    error: bool,
    in_changeset: bool,
    /// In the changeset, as the error report marks it.
    marked: bool,
    /// The error report's discovery state (`STATE_*` bits).
    report: u32,
}

struct Pkg<'a, 'n> {
    record: &'a PackageRecord,
    name: NameId,
    /// Repositories holding this exact package, ascending.
    repos: Vec<usize>,
    /// Tags of those repositories, as a pinning mask.
    tag_bits: u32,
    /// `provider_priority` as apk stores it (an unsigned short).
    priority: u16,
    /// Architecture neither the root's nor `noarch`.
    wrong_arch: bool,
    depends: Vec<DepRef<'n>>,
    provides: Vec<ProvideRef<'n>>,
    install_if: Vec<DepRef<'n>>,
    ss: PkgState,
}

impl Pkg<'_, '_> {
    fn first_repository(&self) -> usize {
        self.repos.first().copied().unwrap_or(usize::MAX)
    }

    fn label(&self) -> String {
        self.record.display_name()
    }

    fn uninstallable(&self) -> bool {
        self.wrong_arch || self.record.uninstallable.is_some()
    }
}

/// Which of apk's unresolved lists a name is on, with its sort key there.
#[derive(Clone, Copy)]
enum Queued {
    ResolveNow(u64),
    Selectable(QueueKey),
    Unresolved(QueueKey),
}

/// Position in a list kept by `queue_insert`: descending (signed) `order_id`, a name inserted
/// later going before an equal one.
type QueueKey = (Reverse<i32>, Reverse<u64>);

/// Per-name solver state (apk's `struct apk_solver_name_state`).
#[derive(Default)]
struct NameState<'n> {
    seen: bool,
    locked: bool,
    chosen: Option<Provider<'n>>,
    requirers: u32,
    merge_depends: u32,
    merge_provides: u32,
    has_virtual_provides: bool,
    has_options: bool,
    reverse_deps_done: bool,
    has_iif: bool,
    no_iif: bool,
    iif_needed: bool,
    has_auto_selectable: bool,
    resolvenow: bool,
    reevaluate_deps: bool,
    reevaluate_iif: bool,
    order_id: i32,
    /// Generation of this name's live entry in the dirty queue.
    dirty: Option<u64>,
    /// This name's entry in the unresolved lists.
    queued: Option<Queued>,
    changeset_processed: bool,
    /// The error report's discovery state (`STATE_*` bits).
    report: u32,
}

struct Name<'n> {
    text: &'n str,
    providers: Vec<Provider<'n>>,
    /// Names whose providers depend on this name, in apk's name hash order.
    rdepends: Vec<NameId>,
    /// Names whose providers list this name in `install_if`, in apk's name hash order.
    rinstall_if: Vec<NameId>,
    /// Named by the world (`apk add` set solver flags on it).
    in_world: bool,
    ss: NameState<'n>,
}

/// A step of the changeset walk (apk's `cset_gen_*` recursion, unrolled).
enum Step<'n> {
    /// `cset_gen_dep`: check the atom, then emit its name.
    Dep {
        owner: Option<PkgId>,
        dep: DepRef<'n>,
    },
    /// The rest of `cset_gen_dep` once the name is emitted: propagate errors up.
    DepDone {
        owner: Option<PkgId>,
        chosen: Option<PkgId>,
    },
    /// `cset_gen_name_change`: emit dependencies from `next` on, then the package.
    Change { pkg: PkgId, next: usize },
    /// `cset_check_by_reverse_iif`: the reverse install-if names of the package's name
    /// (`source` 0) and of each provided name (`source` n: provide n - 1), from `next` on.
    InstallIf {
        pkg: PkgId,
        source: usize,
        next: usize,
    },
}

/// Where a frame of the unrolled `discover_name` recursion is.
#[derive(Clone, Copy)]
enum DiscoverStage {
    /// Providers from `provider`; inside a newly seen one (`in_package`), its dependencies
    /// from `item`.
    Providers,
    /// The name's reverse install-if names.
    ReverseInstallIf,
    /// Each provider's own name's reverse install-if names, then the names it provides.
    ProviderNames,
    /// The names in each provider's `install_if`.
    InstallIf,
}

/// A frame of the unrolled `discover_name` recursion.
struct DiscoverFrame {
    name: NameId,
    stage: DiscoverStage,
    provider: usize,
    item: usize,
    in_package: bool,
    num_virtual: usize,
}

impl DiscoverFrame {
    fn new(name: NameId) -> Self {
        DiscoverFrame {
            name,
            stage: DiscoverStage::Providers,
            provider: 0,
            item: 0,
            in_package: false,
            num_virtual: 0,
        }
    }
}

/// A task of the error report's unrolled `discover_name` recursion (commit.c).
enum Mark {
    /// `discover_name`: the name's providers from `next` on.
    Name {
        name: NameId,
        state: u32,
        next: usize,
    },
    /// `discover_deps`: the package's dependencies from `next` on; then, for a package
    /// marked present (or present through install-if), the reverse install-if walk.
    Deps { pkg: PkgId, next: usize, state: u32 },
    /// `discover_reverse_iif` over the package's name (`source` 0) and provided names.
    ReverseInstallIf {
        pkg: PkgId,
        source: usize,
        name: usize,
        provider: usize,
    },
    /// A triggered install-if package: its own name, then its provided names.
    InstallIfNames { pkg: PkgId, next: usize },
}

/// The error report's name and package states (commit.c `STATE_*`).
const STATE_PRESENT: u32 = 0x8000_0000;
const STATE_MISSING: u32 = 0x4000_0000;
const STATE_VIRTUAL_ONLY: u32 = 0x2000_0000;
const STATE_INSTALLIF: u32 = 0x1000_0000;

/// How an atom relates to a package (apk's `apk_dep_analyze`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Analysis {
    Irrelevant,
    Satisfies,
    Conflicts,
}

struct Solver<'a, 'n> {
    tag_names: Vec<String>,
    /// Tag of each repository, by repository index.
    repo_tags: Vec<usize>,
    names: Vec<Name<'n>>,
    pkgs: Vec<Pkg<'a, 'n>>,
    world: Vec<WorldAtom<'n>>,
    dirty: VecDeque<(NameId, u64)>,
    resolvenow: BTreeMap<u64, NameId>,
    selectable: BTreeMap<QueueKey, NameId>,
    unresolved: BTreeMap<QueueKey, NameId>,
    queue_counter: u64,
    order_counter: u32,
    pinning_inherit: u32,
    errors: usize,
    changes: Vec<PkgId>,
}

/// A world atom's name and tag as apk names them in its missing-tag warning: `name@tag`.
fn tagged_name(dependency: &Dependency) -> String {
    let tag = dependency.tag.as_deref().map_or("", plain_tag);
    format!("{}{TAG_PREFIX}{tag}", dependency.name)
}

/// Strips the `@` apk writes before a tag.
fn plain_tag(tag: &str) -> &str {
    tag.strip_prefix(TAG_PREFIX).unwrap_or(tag)
}

/// apk's `apk_name_cmp_display`: case-insensitive, then byte order.
fn cmp_name_display(a: &str, b: &str) -> Ordering {
    let folded = |text: &str| text.bytes().map(|byte| byte.to_ascii_lowercase()).collect();
    let (fa, fb): (Vec<u8>, Vec<u8>) = (folded(a), folded(b));
    fa.cmp(&fb).then_with(|| a.as_bytes().cmp(b.as_bytes()))
}

/// The 32-bit MurmurHash3 apk hashes names with (`apk_blob_hash`).
fn murmur3_32(key: &[u8], seed: u32) -> u32 {
    const C1: u32 = 0xcc9e_2d51;
    const C2: u32 = 0x1b87_3593;
    let mut hash = seed;
    let mut blocks = key.chunks_exact(4);
    for block in blocks.by_ref() {
        let mut k = u32::from_le_bytes([block[0], block[1], block[2], block[3]]);
        k = k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
        hash ^= k;
        hash = hash
            .rotate_left(13)
            .wrapping_mul(5)
            .wrapping_add(0xe654_6b64);
    }
    let tail = blocks.remainder();
    if !tail.is_empty() {
        let mut k = 0u32;
        for (shift, &byte) in tail.iter().enumerate() {
            k ^= u32::from(byte) << (8 * shift);
        }
        k = k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
        hash ^= k;
    }
    // apk hashes lengths as 32 bits.
    hash ^= key.len() as u32;
    hash ^= hash >> 16;
    hash = hash.wrapping_mul(0x85eb_ca6b);
    hash ^= hash >> 13;
    hash = hash.wrapping_mul(0xc2b2_ae35);
    hash ^= hash >> 16;
    hash
}

/// The identity apk's database keys packages by: the first 20 bytes of the checksum (the
/// checksum text when it does not decode).
fn package_identity(record: &PackageRecord) -> Vec<u8> {
    match record.checksum_bytes() {
        Ok(mut bytes) if bytes.len() >= PACKAGE_ID_LENGTH => {
            bytes.truncate(PACKAGE_ID_LENGTH);
            bytes
        }
        _ => {
            let mut key = vec![0u8];
            key.extend_from_slice(record.checksum.as_bytes());
            key
        }
    }
}

/// apk's numeric operator (`APK_VERSION_*` bits), by which its report sorts atoms.
fn op_bits(atom: &Dependency) -> u32 {
    const EQUAL: u32 = 1;
    const LESS: u32 = 2;
    const GREATER: u32 = 4;
    const FUZZY: u32 = 8;
    const CONFLICT: u32 = 16;
    let symbols = atom.op.as_str();
    let mut bits = 0;
    for symbol in symbols.chars() {
        bits |= match symbol {
            '<' => LESS,
            '>' => GREATER,
            '=' => EQUAL,
            '~' => FUZZY | EQUAL,
            _ => 0,
        };
    }
    if symbols.is_empty() || atom.version.is_none() {
        bits = EQUAL | LESS | GREATER;
    }
    if atom.conflict {
        bits |= CONFLICT;
    }
    bits
}

/// An atom as apk's report prints it (`DEP_FMT`): `[!]name[op version]`, without a tag.
fn atom_text(atom: &Dependency) -> String {
    let bang = if atom.conflict { "!" } else { "" };
    match &atom.version {
        Some(version) => format!("{bang}{}{}{version}", atom.name, atom.op.as_str()),
        None => format!("{bang}{}", atom.name),
    }
}

impl<'a, 'n> Solver<'a, 'n>
where
    'a: 'n,
{
    /// Indexes names, packages and providers the way apk's database does when it loads the
    /// repositories (`apk_db_pkg_add`, `apk_db_name_rdepends`).
    fn new(
        repositories: &[SolverRepository<'a>],
        world: &'n [Dependency],
        arch: &str,
    ) -> Result<Self, SolveError> {
        let mut tag_names = vec![String::new()];
        let mut repo_tags = Vec::with_capacity(repositories.len());
        for repository in repositories {
            let tag = match repository.tag.as_deref().map(plain_tag) {
                None | Some("") => DEFAULT_TAG,
                Some(tag) => match tag_names.iter().position(|known| known == tag) {
                    Some(index) => index,
                    None => {
                        tag_names.push(tag.to_owned());
                        tag_names.len() - 1
                    }
                },
            };
            repo_tags.push(tag);
        }
        if tag_names.len() > MAX_REPOSITORY_TAGS {
            return Err(SolveError::TooManyRepositoryTags {
                count: tag_names.len() - 1,
                max: MAX_REPOSITORY_TAGS - 1,
            });
        }
        // apk refuses a world naming a tag no repository carries before solving; an empty tag
        // (`name@`) is one of those.
        let mut world_tags = Vec::with_capacity(world.len());
        for atom in world {
            let tag = match atom.tag.as_deref().map(plain_tag) {
                None => DEFAULT_TAG,
                Some(tag) => tag_names
                    .iter()
                    .skip(1)
                    .position(|known| known == tag)
                    .map(|index| index + 1)
                    .ok_or_else(|| SolveError::UnknownTag {
                        dependency: atom.clone(),
                    })?,
            };
            world_tags.push(tag);
        }

        let mut solver = Solver {
            tag_names,
            repo_tags: Vec::new(),
            names: Vec::new(),
            pkgs: Vec::new(),
            world: Vec::new(),
            dirty: VecDeque::new(),
            resolvenow: BTreeMap::new(),
            selectable: BTreeMap::new(),
            unresolved: BTreeMap::new(),
            queue_counter: 0,
            order_counter: 0,
            pinning_inherit: 0,
            errors: 0,
            changes: Vec::new(),
        };
        let mut interned: HashMap<&'n str, NameId> = HashMap::new();
        let mut identities: HashMap<Vec<u8>, PkgId> = HashMap::new();

        for (repo_index, (repository, &tag)) in repositories.iter().zip(&repo_tags).enumerate() {
            let tag_bit = 1u32 << tag;
            for record in repository.packages {
                let identity = package_identity(record);
                if let Some(&existing) = identities.get(&identity) {
                    let pkg = &mut solver.pkgs[existing];
                    if !pkg.repos.contains(&repo_index) {
                        pkg.repos.push(repo_index);
                    }
                    pkg.tag_bits |= tag_bit;
                    continue;
                }
                let id = solver.pkgs.len();
                identities.insert(identity, id);
                let name = solver.intern(&mut interned, &record.name);
                let depends = record
                    .depends
                    .iter()
                    .map(|atom| DepRef {
                        name: solver.intern(&mut interned, &atom.name),
                        atom,
                    })
                    .collect();
                let provides: Vec<ProvideRef<'n>> = record
                    .provides
                    .iter()
                    .map(|atom| ProvideRef {
                        name: solver.intern(&mut interned, &atom.name),
                        version: atom
                            .version
                            .as_deref()
                            .filter(|version| !version.is_empty()),
                        atom,
                    })
                    .collect();
                let install_if = record
                    .install_if
                    .iter()
                    .map(|atom| DepRef {
                        name: solver.intern(&mut interned, &atom.name),
                        atom,
                    })
                    .collect();
                solver.names[name].providers.push(Provider {
                    pkg: id,
                    version: Some(record.version.as_str()),
                });
                for provide in &provides {
                    solver.names[provide.name].providers.push(Provider {
                        pkg: id,
                        version: provide.version,
                    });
                }
                let wrong_arch =
                    !(record.arch.is_empty() || record.arch == arch || record.arch == NOARCH);
                // apk keeps provider_priority in an unsigned short.
                let priority = (record.provider_priority.unwrap_or(0) & 0xffff) as u16;
                solver.pkgs.push(Pkg {
                    record,
                    name,
                    repos: vec![repo_index],
                    tag_bits: tag_bit,
                    priority,
                    wrong_arch,
                    depends,
                    provides,
                    install_if,
                    ss: PkgState::default(),
                });
            }
        }

        // apk sorts the world by name before solving (`cmp_pkgname` in `apk_solver_solve`).
        let mut sorted: Vec<(&'n Dependency, usize)> = world.iter().zip(world_tags).collect();
        sorted.sort_by(|(a, _), (b, _)| cmp_name_display(&a.name, &b.name));
        for (atom, tag) in sorted {
            let name = solver.intern(&mut interned, &atom.name);
            solver.names[name].in_world = true;
            solver.world.push(WorldAtom {
                dep: DepRef { name, atom },
                tag,
            });
        }

        solver.repo_tags = repo_tags;
        solver.index_reverse_dependencies();
        Ok(solver)
    }

    fn intern(&mut self, interned: &mut HashMap<&'n str, NameId>, text: &'n str) -> NameId {
        if let Some(&id) = interned.get(text) {
            return id;
        }
        let id = self.names.len();
        interned.insert(text, id);
        self.names.push(Name {
            text,
            providers: Vec::new(),
            rdepends: Vec::new(),
            rinstall_if: Vec::new(),
            in_world: false,
            ss: NameState::default(),
        });
        id
    }

    /// apk's `apk_db_name_rdepends`, run over its name hash table: buckets in order, the name
    /// created last first within a bucket.
    fn index_reverse_dependencies(&mut self) {
        let mut order: Vec<(u32, Reverse<NameId>)> = (0..self.names.len())
            .map(|name| {
                let hash = murmur3_32(self.names[name].text.as_bytes(), NAME_HASH_SEED);
                (hash % NAME_HASH_BUCKETS, Reverse(name))
            })
            .collect();
        order.sort_unstable();
        let mut last_depender = vec![usize::MAX; self.names.len()];
        let mut last_installer = vec![usize::MAX; self.names.len()];
        for (_, Reverse(name)) in order {
            for index in 0..self.names[name].providers.len() {
                let pkg = self.names[name].providers[index].pkg;
                for dep in 0..self.pkgs[pkg].depends.len() {
                    let target = self.pkgs[pkg].depends[dep].name;
                    if last_depender[target] != name {
                        last_depender[target] = name;
                        self.names[target].rdepends.push(name);
                    }
                }
                for dep in 0..self.pkgs[pkg].install_if.len() {
                    let target = self.pkgs[pkg].install_if[dep].name;
                    if last_installer[target] != name {
                        last_installer[target] = name;
                        self.names[target].rinstall_if.push(name);
                    }
                }
            }
        }
    }

    /// apk's `apk_dep_is_provided`: whether `provider` meets `atom` declared by `owner` (for
    /// a conflict: does not violate it). A package never conflicts with itself. An unversioned
    /// provide has the empty version, which `apk_version_match` compares like any other; a
    /// checksum pin compares the package's checksum.
    fn is_provided(
        &self,
        owner: Option<PkgId>,
        atom: &Dependency,
        provider: Option<Provider<'_>>,
    ) -> bool {
        let Some(provider) = provider else {
            return atom.conflict;
        };
        if atom.conflict && owner == Some(provider.pkg) {
            return true;
        }
        let checksum = &self.pkgs[provider.pkg].record.checksum;
        atom.matches_package(provider.version.unwrap_or(""), checksum) != atom.conflict
    }

    /// apk's `apk_solver_solve`, without installed packages or solver flags.
    fn run(&mut self) {
        for index in 0..self.world.len() {
            self.discover(self.world[index].dep.name);
        }
        for index in 0..self.world.len() {
            let atom = self.world[index];
            self.pinning_inherit = 1 << atom.tag;
            self.apply_constraint(None, atom.dep);
        }
        self.pinning_inherit = 0;

        loop {
            while let Some(name) = self.pop_dirty() {
                self.reconsider_name(name);
            }
            let Some(name) = self.dequeue_next_name() else {
                break;
            };
            self.select_package(name);
        }
        self.generate_changeset();
    }

    /// apk's `discover_name`, unrolled so that deep dependency chains cannot exhaust the stack.
    fn discover(&mut self, root: NameId) {
        if self.names[root].ss.seen {
            return;
        }
        self.enter_name(root);
        let mut stack = vec![DiscoverFrame::new(root)];
        while let Some(frame) = stack.last_mut() {
            let name = frame.name;
            let child = match frame.stage {
                DiscoverStage::Providers => {
                    match self.names[name].providers.get(frame.provider).copied() {
                        None => {
                            frame.stage = DiscoverStage::ReverseInstallIf;
                            frame.item = 0;
                            None
                        }
                        Some(provider) => {
                            let pkg = provider.pkg;
                            if !frame.in_package && !self.pkgs[pkg].ss.seen {
                                self.enter_package(pkg);
                                frame.in_package = true;
                                frame.item = 0;
                            }
                            let dep = if frame.in_package {
                                self.pkgs[pkg].depends.get(frame.item).map(|dep| dep.name)
                            } else {
                                None
                            };
                            match dep {
                                Some(dep) => {
                                    frame.item += 1;
                                    Some(dep)
                                }
                                None => {
                                    frame.in_package = false;
                                    frame.provider += 1;
                                    let package = &self.pkgs[pkg];
                                    if package.name != name {
                                        frame.num_virtual += 1;
                                    }
                                    self.names[name].ss.no_iif &= package.ss.iif_failed;
                                    None
                                }
                            }
                        }
                    }
                }
                DiscoverStage::ReverseInstallIf => {
                    match self.names[name].rinstall_if.get(frame.item).copied() {
                        Some(child) => {
                            frame.item += 1;
                            Some(child)
                        }
                        None => {
                            frame.stage = DiscoverStage::ProviderNames;
                            frame.provider = 0;
                            frame.item = 0;
                            None
                        }
                    }
                }
                DiscoverStage::ProviderNames => {
                    match self.names[name].providers.get(frame.provider).copied() {
                        Some(provider) => {
                            let pkg = &self.pkgs[provider.pkg];
                            let reverse = &self.names[pkg.name].rinstall_if;
                            let child = match reverse.get(frame.item) {
                                Some(&child) => Some(child),
                                None => pkg
                                    .provides
                                    .get(frame.item - reverse.len())
                                    .map(|provide| provide.name),
                            };
                            if child.is_some() {
                                frame.item += 1;
                            } else {
                                frame.provider += 1;
                                frame.item = 0;
                            }
                            child
                        }
                        None => {
                            let mut flags = 0;
                            if !self.names[name].in_world {
                                flags |= ORDER_NOT_IN_WORLD;
                            }
                            if self.names[name].providers.len() != frame.num_virtual {
                                flags |= ORDER_HAS_REAL_PROVIDER;
                            }
                            self.order_counter = self.order_counter.wrapping_add(1);
                            // apk keeps order_id in an int: the flags make it negative.
                            self.names[name].ss.order_id =
                                i32::from_ne_bytes((flags | self.order_counter).to_ne_bytes());
                            frame.stage = DiscoverStage::InstallIf;
                            frame.provider = 0;
                            frame.item = 0;
                            None
                        }
                    }
                }
                DiscoverStage::InstallIf => {
                    match self.names[name].providers.get(frame.provider).copied() {
                        Some(provider) => {
                            let child = self.pkgs[provider.pkg]
                                .install_if
                                .get(frame.item)
                                .map(|dep| dep.name);
                            if child.is_some() {
                                frame.item += 1;
                            } else {
                                frame.provider += 1;
                                frame.item = 0;
                            }
                            child
                        }
                        None => {
                            stack.pop();
                            continue;
                        }
                    }
                }
            };
            if let Some(child) = child
                && !self.names[child].ss.seen
            {
                self.enter_name(child);
                stack.push(DiscoverFrame::new(child));
            }
        }
    }

    fn enter_name(&mut self, name: NameId) {
        let state = &mut self.names[name].ss;
        state.seen = true;
        state.no_iif = true;
    }

    /// The per-package part of `discover_name`: initial pinning and selectability.
    fn enter_package(&mut self, pkg: PkgId) {
        let package = &mut self.pkgs[pkg];
        let tag_preferred =
            package.record.installed_size == 0 || package.tag_bits & DEFAULT_PINNING != 0;
        let selectable = !package.uninstallable();
        let iif_failed = package.install_if.is_empty();
        let state = &mut package.ss;
        state.seen = true;
        state.pinning_allowed = DEFAULT_PINNING;
        state.pinning_preferred = DEFAULT_PINNING;
        state.selectable = selectable;
        state.iif_failed = iif_failed;
        state.tag_preferred = tag_preferred;
        state.tag_ok = tag_preferred;
    }

    fn next_generation(&mut self) -> u64 {
        self.queue_counter += 1;
        self.queue_counter
    }

    /// apk's `queue_dirty`: FIFO of names to reconsider.
    fn queue_dirty(&mut self, name: NameId) {
        let state = &self.names[name].ss;
        if state.dirty.is_some() || state.locked || (state.requirers == 0 && !state.reevaluate_iif)
        {
            return;
        }
        let generation = self.next_generation();
        self.names[name].ss.dirty = Some(generation);
        self.dirty.push_back((name, generation));
    }

    fn pop_dirty(&mut self) -> Option<NameId> {
        while let Some((name, generation)) = self.dirty.pop_front() {
            if self.names[name].ss.dirty == Some(generation) {
                self.names[name].ss.dirty = None;
                return Some(name);
            }
        }
        None
    }

    /// apk's `queue_resolvenow`: the name can be decided right away.
    fn can_resolve_now(&self, name: NameId) -> bool {
        let state = &self.names[name].ss;
        state.reverse_deps_done
            && state.requirers > 0
            && state.has_auto_selectable
            && !state.has_options
    }

    /// Takes `name` off whichever unresolved list it is on (`list_del`).
    fn unqueue(&mut self, name: NameId) {
        match self.names[name].ss.queued.take() {
            Some(Queued::ResolveNow(key)) => {
                self.resolvenow.remove(&key);
            }
            Some(Queued::Selectable(key)) => {
                self.selectable.remove(&key);
            }
            Some(Queued::Unresolved(key)) => {
                self.unresolved.remove(&key);
            }
            None => {}
        }
    }

    /// apk's `queue_unresolved`: files a wanted name on the resolve-now list, or by `order_id`
    /// on the selectable or the unresolved list; `reevaluate` re-files a queued name.
    fn queue_unresolved(&mut self, name: NameId, reevaluate: bool) {
        if self.names[name].ss.locked {
            return;
        }
        if self.names[name].ss.queued.is_some() {
            if self.names[name].ss.resolvenow {
                return;
            }
            if self.can_resolve_now(name) {
                self.names[name].ss.resolvenow = true;
            } else if !reevaluate {
                return;
            }
            self.unqueue(name);
        } else {
            let state = &self.names[name].ss;
            if state.requirers == 0 && !state.has_iif && !state.iif_needed {
                return;
            }
            self.names[name].ss.resolvenow = self.can_resolve_now(name);
        }

        let sequence = self.next_generation();
        let state = &mut self.names[name].ss;
        if state.resolvenow {
            state.queued = Some(Queued::ResolveNow(sequence));
            self.resolvenow.insert(sequence, name);
            return;
        }
        let key = (Reverse(state.order_id), Reverse(sequence));
        if state.has_auto_selectable {
            state.queued = Some(Queued::Selectable(key));
            self.selectable.insert(key, name);
        } else {
            state.queued = Some(Queued::Unresolved(key));
            self.unresolved.insert(key, name);
        }
    }

    /// apk's `dequeue_next_name`: resolve-now names first come first served, then the
    /// selectable list, then the unresolved list.
    fn dequeue_next_name(&mut self) -> Option<NameId> {
        let name = if let Some((_, name)) = self.resolvenow.pop_first() {
            name
        } else if let Some((_, name)) = self.selectable.pop_first() {
            name
        } else {
            self.unresolved.pop_first()?.1
        };
        self.names[name].ss.queued = None;
        Some(name)
    }

    fn reevaluate_reverse_deps(&mut self, name: NameId) {
        for index in 0..self.names[name].rdepends.len() {
            let other = self.names[name].rdepends[index];
            if !self.names[other].ss.seen {
                continue;
            }
            self.names[other].ss.reevaluate_deps = true;
            self.queue_dirty(other);
        }
    }

    fn reevaluate_reverse_installif(&mut self, name: NameId) {
        for index in 0..self.names[name].rinstall_if.len() {
            let other = self.names[name].rinstall_if[index];
            let state = &self.names[other].ss;
            if !state.seen || state.no_iif {
                continue;
            }
            self.names[other].ss.reevaluate_iif = true;
            self.queue_dirty(other);
        }
    }

    /// apk's `reevaluate_reverse_installif_pkg`: the package's name and provided names.
    fn reevaluate_reverse_installif_pkg(&mut self, pkg: PkgId) {
        self.reevaluate_reverse_installif(self.pkgs[pkg].name);
        for index in 0..self.pkgs[pkg].provides.len() {
            self.reevaluate_reverse_installif(self.pkgs[pkg].provides[index].name);
        }
    }

    /// apk's `disqualify_package`.
    fn disqualify(&mut self, pkg: PkgId) {
        self.pkgs[pkg].ss.selectable = false;
        self.reevaluate_reverse_deps(self.pkgs[pkg].name);
        for index in 0..self.pkgs[pkg].provides.len() {
            self.reevaluate_reverse_deps(self.pkgs[pkg].provides[index].name);
        }
        self.reevaluate_reverse_installif_pkg(pkg);
    }

    /// apk's `dependency_satisfiable`.
    fn dependency_satisfiable(&self, owner: PkgId, dep: DepRef<'n>) -> bool {
        let name = &self.names[dep.name];
        if name.ss.locked {
            return self.is_provided(Some(owner), dep.atom, name.ss.chosen);
        }
        if name.ss.requirers == 0 && self.is_provided(Some(owner), dep.atom, None) {
            return true;
        }
        name.providers.iter().any(|provider| {
            self.pkgs[provider.pkg].ss.selectable
                && self.is_provided(Some(owner), dep.atom, Some(*provider))
        })
    }

    fn name_requirers_changed(&mut self, name: NameId) {
        self.queue_unresolved(name, false);
        self.reevaluate_reverse_installif(name);
        self.queue_dirty(name);
    }

    /// apk's `inherit_pinning_and_flags`: a package pulled in by `parent` may come from any
    /// repository the parent may; one named by the world prefers the atom's own tag.
    fn inherit_pinning(&mut self, pkg: PkgId, parent: Option<PkgId>) {
        let parent_pinning = parent.map(|parent| self.pkgs[parent].ss.pinning_allowed);
        let inherit = self.pinning_inherit;
        let package = &mut self.pkgs[pkg];
        match parent_pinning {
            Some(pinning) => package.ss.pinning_allowed |= pinning,
            None => {
                package.ss.pinning_allowed |= inherit;
                package.ss.pinning_preferred = inherit;
                package.ss.tag_preferred = package.tag_bits & inherit != 0;
            }
        }
        package.ss.tag_ok |= package.tag_bits & package.ss.pinning_allowed != 0;
    }

    /// apk's `apply_constraint`.
    fn apply_constraint(&mut self, parent: Option<PkgId>, dep: DepRef<'n>) {
        let name = dep.name;
        if !dep.atom.conflict {
            self.names[name].ss.requirers += 1;
            if self.names[name].ss.requirers == 1 {
                self.name_requirers_changed(name);
            }
        }
        for index in 0..self.names[name].providers.len() {
            let provider = self.names[name].providers[index];
            let provided = self.is_provided(parent, dep.atom, Some(provider));
            let state = &mut self.pkgs[provider.pkg].ss;
            if !provided {
                state.conflicts += 1;
            }
            if state.selectable && state.conflicts > 0 {
                self.disqualify(provider.pkg);
            }
            if provided {
                self.inherit_pinning(provider.pkg, parent);
            }
        }
    }

    /// apk's `exclude_non_providers`: once every option of `must_provide` also carries `name`,
    /// providers of `name` that do not provide `must_provide` cannot be chosen.
    fn exclude_non_providers(&mut self, name: NameId, must_provide: NameId, skip_virtuals: bool) {
        if name == must_provide {
            return;
        }
        for index in 0..self.names[name].providers.len() {
            let provider = self.names[name].providers[index];
            let pkg = &self.pkgs[provider.pkg];
            if pkg.name == must_provide
                || !pkg.ss.selectable
                || (skip_virtuals && provider.version.is_none())
            {
                continue;
            }
            let keeps = pkg.provides.iter().any(|provide| {
                provide.name == must_provide || (skip_virtuals && provide.version.is_none())
            });
            if !keeps {
                self.disqualify(provider.pkg);
            }
        }
    }

    /// apk's `merge_index`: counts a name once per option that carries it.
    fn merge_index(counter: &mut u32, options: u32) -> bool {
        if *counter != options {
            return false;
        }
        *counter = options + 1;
        true
    }

    /// apk's `merge_index_complete`: whether every option carried the name; resets the count.
    fn merge_index_complete(counter: &mut u32, options: u32) -> bool {
        let complete = *counter == options;
        *counter = 0;
        complete
    }

    /// apk's `is_provider_auto_selectable`: an unversioned provide without provider priority
    /// is only chosen when its package's own name is required.
    fn is_auto_selectable(&self, provider: Provider<'n>) -> bool {
        let pkg = &self.pkgs[provider.pkg];
        provider.version.is_some() || pkg.priority != 0 || self.names[pkg.name].ss.requirers > 0
    }

    /// apk's install-if evaluation inside `reconsider_name`: triggered once every atom's name
    /// is decided and met, failed once one is decided and not met. An undecided `!conflict`
    /// atom makes its name wanted.
    fn evaluate_install_if(&mut self, pkg: PkgId) {
        let (mut triggered, mut failed) = (true, false);
        for index in 0..self.pkgs[pkg].install_if.len() {
            let dep = self.pkgs[pkg].install_if[index];
            if !self.names[dep.name].ss.locked {
                if dep.atom.conflict {
                    self.names[dep.name].ss.iif_needed = true;
                    self.queue_unresolved(dep.name, false);
                }
                triggered = false;
                break;
            }
            if !self.is_provided(Some(pkg), dep.atom, self.names[dep.name].ss.chosen) {
                (triggered, failed) = (false, true);
                break;
            }
        }
        self.pkgs[pkg].ss.iif_triggered = triggered;
        self.pkgs[pkg].ss.iif_failed = failed;
    }

    /// apk's `reconsider_name`: re-checks a name's candidates, evaluates install-if triggers,
    /// merges the candidates' common dependencies and applies provides transitivity.
    fn reconsider_name(&mut self, name: NameId) {
        let reevaluate_deps = std::mem::take(&mut self.names[name].ss.reevaluate_deps);
        let reevaluate_iif = std::mem::take(&mut self.names[name].ss.reevaluate_iif);
        let mut first_candidate: Option<PkgId> = None;
        let (mut options, mut tag_not_ok) = (0u32, 0u32);
        let (mut has_iif, mut no_iif, mut has_auto_selectable) = (false, true, false);

        for index in 0..self.names[name].providers.len() {
            let provider = self.names[name].providers[index];
            let pkg = provider.pkg;
            self.pkgs[pkg].ss.dependencies_merged = false;
            if reevaluate_deps {
                if !self.pkgs[pkg].ss.selectable {
                    continue;
                }
                let unsatisfiable = (0..self.pkgs[pkg].depends.len())
                    .any(|dep| !self.dependency_satisfiable(pkg, self.pkgs[pkg].depends[dep]));
                if unsatisfiable {
                    self.disqualify(pkg);
                }
            }
            if !self.pkgs[pkg].ss.selectable {
                continue;
            }

            if reevaluate_iif && !self.pkgs[pkg].ss.iif_triggered && !self.pkgs[pkg].ss.iif_failed {
                self.evaluate_install_if(pkg);
            }
            if reevaluate_iif && self.pkgs[pkg].ss.iif_triggered {
                for dep in 0..self.pkgs[pkg].install_if.len() {
                    let trigger = self.pkgs[pkg].install_if[dep].name;
                    let parent = self.names[trigger].ss.chosen.map(|chosen| chosen.pkg);
                    self.inherit_pinning(pkg, parent);
                }
            }
            let (triggered, failed) = (
                self.pkgs[pkg].ss.iif_triggered,
                self.pkgs[pkg].ss.iif_failed,
            );
            has_iif |= triggered;
            no_iif &= failed;
            has_auto_selectable |= triggered;

            if self.names[name].ss.requirers == 0 {
                continue;
            }

            self.pkgs[pkg].ss.dependencies_merged = true;
            if first_candidate.is_none() {
                first_candidate = Some(pkg);
            }
            for dep in 0..self.pkgs[pkg].depends.len() {
                let dep = self.pkgs[pkg].depends[dep];
                if !dep.atom.conflict {
                    Self::merge_index(&mut self.names[dep.name].ss.merge_depends, options);
                }
            }
            let own = self.pkgs[pkg].name;
            if Self::merge_index(&mut self.names[own].ss.merge_provides, options) {
                self.names[own].ss.has_virtual_provides |= provider.version.is_none();
            }
            for provide in 0..self.pkgs[pkg].provides.len() {
                let provide = self.pkgs[pkg].provides[provide];
                if Self::merge_index(&mut self.names[provide.name].ss.merge_provides, options) {
                    self.names[provide.name].ss.has_virtual_provides |= provide.version.is_none();
                }
            }
            tag_not_ok += u32::from(!self.pkgs[pkg].ss.tag_ok);
            options += 1;
            if !has_auto_selectable && self.is_auto_selectable(provider) {
                has_auto_selectable = true;
            }
        }

        let state = &mut self.names[name].ss;
        state.has_options = options > 1 || tag_not_ok > 0;
        state.has_iif = has_iif;
        state.no_iif = no_iif;
        let mut reevaluate = false;
        if has_auto_selectable != state.has_auto_selectable {
            state.has_auto_selectable = has_auto_selectable;
            reevaluate = true;
        }

        if let Some(candidate) = first_candidate {
            for index in 0..self.names[name].providers.len() {
                let pkg = self.names[name].providers[index].pkg;
                self.pkgs[pkg].ss.dependencies_used = self.pkgs[pkg].ss.dependencies_merged;
            }

            // Propagate down the dependencies every option shares.
            for index in 0..self.pkgs[candidate].depends.len() {
                let dep = self.pkgs[candidate].depends[index];
                let common =
                    Self::merge_index_complete(&mut self.names[dep.name].ss.merge_depends, options);
                if !common {
                    continue;
                }
                if options == 1 {
                    self.apply_constraint(Some(candidate), dep);
                } else if self.names[dep.name].ss.requirers == 0 {
                    self.names[dep.name].ss.requirers += 1;
                    self.name_requirers_changed(dep.name);
                    for provider in 0..self.names[dep.name].providers.len() {
                        let pkg = self.names[dep.name].providers[provider].pkg;
                        self.inherit_pinning(pkg, Some(candidate));
                    }
                }
            }

            // Provides transitivity.
            let own = self.pkgs[candidate].name;
            if Self::merge_index_complete(&mut self.names[own].ss.merge_provides, options) {
                let skip_virtuals = self.names[own].ss.has_virtual_provides;
                self.exclude_non_providers(own, name, skip_virtuals);
            }
            for index in 0..self.pkgs[candidate].provides.len() {
                let provided = self.pkgs[candidate].provides[index].name;
                if Self::merge_index_complete(&mut self.names[provided].ss.merge_provides, options)
                {
                    let skip_virtuals = self.names[provided].ss.has_virtual_provides;
                    self.exclude_non_providers(provided, name, skip_virtuals);
                }
            }
            self.names[own].ss.has_virtual_provides = false;
            for index in 0..self.pkgs[candidate].provides.len() {
                let provided = self.pkgs[candidate].provides[index].name;
                self.names[provided].ss.has_virtual_provides = false;
            }
        }

        let done = self.names[name].rdepends.iter().all(|&other| {
            let state = &self.names[other].ss;
            !state.seen || state.locked
        });
        self.names[name].ss.reverse_deps_done = done;
        self.queue_unresolved(name, reevaluate);
    }

    /// apk's `compare_providers` for an empty root without solver flags; `Greater` means `a`
    /// is preferred.
    fn compare_providers(&self, a: Option<Provider<'n>>, b: Option<Provider<'n>>) -> Ordering {
        let (a, b) = match (a, b) {
            (Some(a), Some(b)) => (a, b),
            (a, b) => return a.is_some().cmp(&b.is_some()),
        };
        let (pa, pb) = (&self.pkgs[a.pkg], &self.pkgs[b.pkg]);
        pa.ss
            .selectable
            .cmp(&pb.ss.selectable)
            .then(pa.ss.dependencies_used.cmp(&pb.ss.dependencies_used))
            .then(pb.ss.conflicts.cmp(&pa.ss.conflicts))
            .then(pa.ss.tag_ok.cmp(&pb.ss.tag_ok))
            .then(pa.ss.tag_preferred.cmp(&pb.ss.tag_preferred))
            .then_with(|| version::compare(a.version.unwrap_or(""), b.version.unwrap_or("")))
            .then_with(|| {
                if pa.name == pb.name {
                    version::compare(&pa.record.version, &pb.record.version)
                } else {
                    Ordering::Equal
                }
            })
            .then(pa.priority.cmp(&pb.priority))
            .then(pb.first_repository().cmp(&pa.first_repository()))
    }

    fn mark_error(&mut self, pkg: Option<PkgId>) {
        if let Some(pkg) = pkg
            && !self.pkgs[pkg].ss.error
        {
            self.pkgs[pkg].ss.error = true;
            self.errors += 1;
        }
    }

    /// apk's `assign_name`: `provider` claims `name`.
    fn assign_name(&mut self, name: NameId, provider: Option<Provider<'n>>) {
        let version = provider_version(provider);
        if self.names[name].ss.locked {
            let chosen = self.names[name].ss.chosen;
            if version.is_none() && provider_version(chosen).is_none() {
                return;
            }
            self.mark_error(provider.map(|provider| provider.pkg));
            self.mark_error(chosen.map(|chosen| chosen.pkg));
            return;
        }

        let state = &mut self.names[name].ss;
        state.locked = true;
        state.chosen = provider;
        state.dirty = None;
        self.unqueue(name);

        let chosen = provider.map(|provider| provider.pkg);
        if let Some(pkg) = chosen
            && self.names[name].ss.requirers == 0
            && self.pkgs[pkg].ss.iif_triggered
        {
            for index in 0..self.pkgs[pkg].install_if.len() {
                let dep = self.pkgs[pkg].install_if[index];
                if !self.names[dep.name].ss.locked {
                    self.apply_constraint(Some(pkg), dep);
                }
            }
        }

        for index in 0..self.names[name].providers.len() {
            let other = self.names[name].providers[index];
            if Some(other.pkg) == chosen {
                continue;
            }
            if version.is_none() && other.version.is_none() {
                continue;
            }
            self.disqualify(other.pkg);
        }
        self.reevaluate_reverse_deps(name);
        match chosen {
            Some(pkg) => self.reevaluate_reverse_installif_pkg(pkg),
            None => self.reevaluate_reverse_installif(name),
        }
    }

    /// apk's `select_package`: decides `name`.
    fn select_package(&mut self, name: NameId) {
        let mut chosen: Option<Provider<'n>> = None;
        let state = &self.names[name].ss;
        if state.requirers > 0 || state.has_iif {
            let requirers = state.requirers;
            for index in 0..self.names[name].providers.len() {
                let provider = self.names[name].providers[index];
                let pkg = &self.pkgs[provider.pkg];
                if requirers == 0 && (!pkg.ss.iif_triggered || !pkg.ss.tag_ok || !pkg.ss.selectable)
                {
                    continue;
                }
                if !self.is_auto_selectable(provider) {
                    continue;
                }
                if self.compare_providers(Some(provider), chosen) == Ordering::Greater {
                    chosen = Some(provider);
                }
            }
        }

        let Some(chosen) = chosen else {
            self.assign_name(name, None);
            if self.names[name].ss.requirers > 0 {
                self.errors += 1;
            }
            return;
        };
        let pkg = chosen.pkg;
        if !self.pkgs[pkg].ss.selectable || !self.pkgs[pkg].ss.tag_ok {
            self.mark_error(Some(pkg));
        }
        let own = self.pkgs[pkg].name;
        let own_version = Some(self.pkgs[pkg].record.version.as_str());
        self.assign_name(
            own,
            Some(Provider {
                pkg,
                version: own_version,
            }),
        );
        for index in 0..self.pkgs[pkg].provides.len() {
            let provide = self.pkgs[pkg].provides[index];
            self.assign_name(
                provide.name,
                Some(Provider {
                    pkg,
                    version: provide.version,
                }),
            );
        }
        for index in 0..self.pkgs[pkg].depends.len() {
            let dep = self.pkgs[pkg].depends[index];
            self.apply_constraint(Some(pkg), dep);
        }
    }

    /// apk's `generate_changeset` for an empty root: the install order.
    fn generate_changeset(&mut self) {
        let mut stack: Vec<Step<'n>> = Vec::new();
        for index in 0..self.world.len() {
            stack.push(Step::Dep {
                owner: None,
                dep: self.world[index].dep,
            });
            while let Some(step) = stack.pop() {
                match step {
                    Step::Dep { owner, dep } => {
                        let chosen = self.names[dep.name].ss.chosen;
                        if !self.is_provided(owner, dep.atom, chosen) {
                            self.mark_error(owner);
                        }
                        stack.push(Step::DepDone {
                            owner,
                            chosen: chosen.map(|chosen| chosen.pkg),
                        });
                        self.start_name_change(dep.name, &mut stack);
                    }
                    Step::DepDone { owner, chosen } => {
                        if chosen.is_some_and(|pkg| self.pkgs[pkg].ss.error) {
                            self.mark_error(owner);
                        }
                    }
                    Step::Change { pkg, next } => {
                        if let Some(dep) = self.pkgs[pkg].depends.get(next).copied() {
                            stack.push(Step::Change {
                                pkg,
                                next: next + 1,
                            });
                            stack.push(Step::Dep {
                                owner: Some(pkg),
                                dep,
                            });
                        } else {
                            self.changes.push(pkg);
                            stack.push(Step::InstallIf {
                                pkg,
                                source: 0,
                                next: 0,
                            });
                        }
                    }
                    Step::InstallIf { pkg, source, next } => {
                        let package = &self.pkgs[pkg];
                        let source_name = match source {
                            0 => package.name,
                            n => match package.provides.get(n - 1) {
                                Some(provide) => provide.name,
                                None => continue,
                            },
                        };
                        match self.names[source_name].rinstall_if.get(next).copied() {
                            Some(other) => {
                                stack.push(Step::InstallIf {
                                    pkg,
                                    source,
                                    next: next + 1,
                                });
                                if self.install_if_met(other) {
                                    self.start_name_change(other, &mut stack);
                                }
                            }
                            None => stack.push(Step::InstallIf {
                                pkg,
                                source: source + 1,
                                next: 0,
                            }),
                        }
                    }
                }
            }
        }
    }

    /// The entry of apk's `cset_gen_name_change`: marks the name and its chosen package's
    /// names processed and schedules the package's dependencies.
    fn start_name_change(&mut self, name: NameId, stack: &mut Vec<Step<'n>>) {
        if self.names[name].ss.changeset_processed {
            return;
        }
        self.names[name].ss.changeset_processed = true;
        let Some(chosen) = self.names[name].ss.chosen else {
            return;
        };
        let pkg = chosen.pkg;
        if self.pkgs[pkg].ss.in_changeset {
            return;
        }
        self.pkgs[pkg].ss.in_changeset = true;
        let own = self.pkgs[pkg].name;
        self.names[own].ss.changeset_processed = true;
        for index in 0..self.pkgs[pkg].provides.len() {
            let provided = self.pkgs[pkg].provides[index].name;
            self.names[provided].ss.changeset_processed = true;
        }
        stack.push(Step::Change { pkg, next: 0 });
    }

    /// apk's `cset_check_install_by_iif`: every trigger met, and every non-conflict trigger
    /// already processed.
    fn install_if_met(&self, name: NameId) -> bool {
        let state = &self.names[name].ss;
        let Some(chosen) = state.chosen else {
            return false;
        };
        if !state.seen || state.changeset_processed {
            return false;
        }
        self.pkgs[chosen.pkg].install_if.iter().all(|dep| {
            let trigger = &self.names[dep.name].ss;
            (dep.atom.conflict || trigger.changeset_processed)
                && self.is_provided(Some(chosen.pkg), dep.atom, trigger.chosen)
        })
    }

    /// apk's `get_tag`: the first allowed tag whose repositories hold the package.
    fn package_tag(&self, pkg: PkgId) -> usize {
        let package = &self.pkgs[pkg];
        (0..self.tag_names.len())
            .find(|&tag| package.ss.pinning_allowed & package.tag_bits & (1 << tag) != 0)
            .unwrap_or(DEFAULT_TAG)
    }

    fn solution(&self) -> Solution<'a> {
        let packages = self
            .changes
            .iter()
            .map(|&pkg| {
                let tag = self.package_tag(pkg);
                let package = &self.pkgs[pkg];
                let repository = package
                    .repos
                    .iter()
                    .copied()
                    .find(|&repo| self.repo_tags.get(repo) == Some(&tag))
                    .unwrap_or(package.first_repository());
                Selection {
                    package: package.record,
                    repository,
                }
            })
            .collect();
        Solution { packages }
    }

    /// apk's `apk_solver_print_errors`: explains a failed selection from the packages the
    /// solver did choose.
    fn report(&mut self) -> Vec<Problem> {
        for index in 0..self.changes.len() {
            let pkg = self.changes[index];
            self.pkgs[pkg].ss.marked = true;
        }
        for index in 0..self.world.len() {
            let dep = self.world[index].dep;
            if !dep.atom.conflict {
                self.report_discover(dep.name, STATE_PRESENT);
            }
        }
        let mut problems = Vec::new();
        let world: Vec<DepRef<'n>> = self.world.iter().map(|atom| atom.dep).collect();
        self.analyze_deps(&world, &mut problems);
        for index in 0..self.changes.len() {
            let pkg = self.changes[index];
            if let Some(problem) = self.analyze_package(pkg) {
                problems.push(problem);
            }
            let depends = self.pkgs[pkg].depends.clone();
            self.analyze_deps(&depends, &mut problems);
        }
        problems
    }

    /// commit.c's `is_name_concrete`: the package is the name, or provides it with a version.
    fn is_name_concrete(&self, pkg: PkgId, name: NameId) -> bool {
        let package = &self.pkgs[pkg];
        package.name == name
            || package
                .provides
                .iter()
                .any(|provide| provide.name == name && provide.version.is_some())
    }

    /// commit.c's `discover_name` (with `discover_deps` and `discover_reverse_iif`), unrolled:
    /// marks which names the chosen packages make present, or present through install-if.
    fn report_discover(&mut self, root: NameId, root_state: u32) {
        enum Action {
            Pop,
            Push(Mark),
            Stay,
        }
        let mut stack = vec![Mark::Name {
            name: root,
            state: root_state,
            next: 0,
        }];
        while let Some(top) = stack.last_mut() {
            let action = match top {
                Mark::Name { name, state, next } => {
                    let (name, state) = (*name, *state);
                    let mut action = Action::Pop;
                    while let Some(provider) = self.names[name].providers.get(*next).copied() {
                        *next += 1;
                        let pkg = provider.pkg;
                        if !self.pkgs[pkg].ss.marked {
                            continue;
                        }
                        let mut pkg_state = state;
                        if (pkg_state == STATE_PRESENT || pkg_state == STATE_INSTALLIF)
                            && self.pkgs[pkg].priority == 0
                            && !self.is_name_concrete(pkg, name)
                        {
                            pkg_state = STATE_VIRTUAL_ONLY;
                        }
                        if self.pkgs[pkg].ss.report & pkg_state != 0 {
                            continue;
                        }
                        self.pkgs[pkg].ss.report |= pkg_state;
                        let own = self.pkgs[pkg].name;
                        self.names[own].ss.report |= pkg_state;
                        for index in 0..self.pkgs[pkg].provides.len() {
                            let provide = self.pkgs[pkg].provides[index];
                            let provide_state =
                                if pkg_state == STATE_INSTALLIF && provide.version.is_none() {
                                    STATE_VIRTUAL_ONLY
                                } else {
                                    pkg_state
                                };
                            self.names[provide.name].ss.report |= provide_state;
                        }
                        action = Action::Push(Mark::Deps {
                            pkg,
                            next: 0,
                            state: pkg_state,
                        });
                        break;
                    }
                    action
                }
                Mark::Deps { pkg, next, state } => {
                    let (pkg, state) = (*pkg, *state);
                    let depends = &self.pkgs[pkg].depends;
                    while depends.get(*next).is_some_and(|dep| dep.atom.conflict) {
                        *next += 1;
                    }
                    match depends.get(*next) {
                        Some(dep) => {
                            *next += 1;
                            Action::Push(Mark::Name {
                                name: dep.name,
                                state: STATE_PRESENT,
                                next: 0,
                            })
                        }
                        None if state == STATE_PRESENT || state == STATE_INSTALLIF => {
                            *top = Mark::ReverseInstallIf {
                                pkg,
                                source: 0,
                                name: 0,
                                provider: 0,
                            };
                            Action::Stay
                        }
                        None => Action::Pop,
                    }
                }
                Mark::ReverseInstallIf {
                    pkg,
                    source,
                    name,
                    provider,
                } => {
                    let pkg = *pkg;
                    loop {
                        let package = &self.pkgs[pkg];
                        let source_name = match *source {
                            0 => package.name,
                            n => match package.provides.get(n - 1) {
                                Some(provide) => provide.name,
                                None => break Action::Pop,
                            },
                        };
                        let Some(&other) = self.names[source_name].rinstall_if.get(*name) else {
                            *source += 1;
                            (*name, *provider) = (0, 0);
                            continue;
                        };
                        let Some(candidate) = self.names[other].providers.get(*provider) else {
                            *name += 1;
                            *provider = 0;
                            continue;
                        };
                        *provider += 1;
                        let candidate = &self.pkgs[candidate.pkg];
                        if !candidate.ss.marked || candidate.install_if.is_empty() {
                            continue;
                        }
                        let triggered = candidate.install_if.iter().all(|dep| {
                            let present = self.names[dep.name].ss.report
                                & (STATE_PRESENT | STATE_INSTALLIF)
                                != 0;
                            dep.atom.conflict != present
                        });
                        if triggered {
                            let pkg = self.names[other].providers[*provider - 1].pkg;
                            break Action::Push(Mark::InstallIfNames { pkg, next: 0 });
                        }
                    }
                }
                Mark::InstallIfNames { pkg, next } => {
                    let package = &self.pkgs[*pkg];
                    let target = match *next {
                        0 => Some(package.name),
                        n => package.provides.get(n - 1).map(|provide| provide.name),
                    };
                    *next += 1;
                    match target {
                        Some(name) => Action::Push(Mark::Name {
                            name,
                            state: STATE_INSTALLIF,
                            next: 0,
                        }),
                        None => Action::Pop,
                    }
                }
            };
            match action {
                Action::Pop => {
                    stack.pop();
                }
                Action::Push(mark) => stack.push(mark),
                Action::Stay => {}
            }
        }
    }

    /// apk's `analyze_deps`: reports each required name nothing present provides, once.
    fn analyze_deps(&mut self, deps: &[DepRef<'n>], problems: &mut Vec<Problem>) {
        for dep in deps {
            if dep.atom.conflict {
                continue;
            }
            let state = &mut self.names[dep.name].ss;
            if state.report & (STATE_INSTALLIF | STATE_PRESENT | STATE_MISSING) != 0 {
                continue;
            }
            state.report |= STATE_MISSING;
            problems.push(self.analyze_missing_name(dep.name));
        }
    }

    /// How a world atom is printed: `world[atom@tag]`.
    fn world_item(&self, atom: WorldAtom<'n>) -> String {
        let tag = match atom.tag {
            DEFAULT_TAG => String::new(),
            tag => format!(
                "{TAG_PREFIX}{}",
                self.tag_names.get(tag).map_or("", String::as_str)
            ),
        };
        format!("world[{}{tag}]", atom_text(atom.dep.atom))
    }

    /// apk's `analyze_missing_name`: a missing or undecidable name and who required it.
    fn analyze_missing_name(&self, name: NameId) -> Problem {
        let entry = &self.names[name];
        let mut details = Vec::new();
        let subject = if entry.providers.is_empty() {
            ProblemSubject::NoSuchPackage {
                name: entry.text.to_owned(),
            }
        } else {
            details.push(ProblemDetail {
                kind: DetailKind::Note,
                items: VIRTUAL_NOTE.split_whitespace().map(str::to_owned).collect(),
            });
            // A package name whose every version provides this name is listed once, by name.
            let mut counts: HashMap<NameId, usize> = HashMap::new();
            for provider in &entry.providers {
                *counts.entry(self.pkgs[provider.pkg].name).or_default() += 1;
            }
            let mut items = Vec::new();
            for provider in &entry.providers {
                let pkg = &self.pkgs[provider.pkg];
                let Some(refs) = counts.get_mut(&pkg.name) else {
                    continue;
                };
                if *refs == self.names[pkg.name].providers.len() {
                    items.push(self.names[pkg.name].text.to_owned());
                    *refs = 0;
                } else if *refs > 0 {
                    items.push(pkg.label());
                    *refs -= 1;
                }
            }
            details.push(ProblemDetail {
                kind: DetailKind::ProvidedBy,
                items,
            });
            ProblemSubject::Virtual {
                name: entry.text.to_owned(),
            }
        };

        let mut required = Vec::new();
        for atom in &self.world {
            if atom.dep.name == name && !atom.dep.atom.conflict {
                required.push(self.world_item(*atom));
            }
        }
        let mut visited = vec![false; self.pkgs.len()];
        for &other in &entry.rdepends {
            'providers: for provider in &self.names[other].providers {
                let pkg = &self.pkgs[provider.pkg];
                if !pkg.ss.marked || visited[provider.pkg] {
                    continue;
                }
                visited[provider.pkg] = true;
                for dep in &pkg.depends {
                    if dep.name == name && !dep.atom.conflict {
                        required.push(format!("{}[{}]", pkg.label(), atom_text(dep.atom)));
                        break 'providers;
                    }
                }
            }
        }
        details.push(ProblemDetail {
            kind: DetailKind::RequiredBy,
            items: required,
        });
        Problem { subject, details }
    }

    /// apk's `analyze_package`: what is wrong with a chosen package, its pinning, conflicting
    /// claims and broken atoms; `None` when it is not at fault.
    fn analyze_package(&self, pkg: PkgId) -> Option<Problem> {
        let package = &self.pkgs[pkg];
        let mut details = Vec::new();

        if package.uninstallable() {
            details.push(ProblemDetail {
                kind: DetailKind::Error,
                items: vec![UNINSTALLABLE.to_owned()],
            });
            if package.wrong_arch {
                details.push(ProblemDetail {
                    kind: DetailKind::Arch,
                    items: vec![package.record.arch.clone()],
                });
            }
            let record = package.record;
            for (kind, atoms) in [
                (DetailKind::Depends, &record.depends),
                (DetailKind::Provides, &record.provides),
                (DetailKind::InstallIf, &record.install_if),
            ] {
                let items: Vec<String> = atoms
                    .iter()
                    .filter(|atom| atom.is_broken())
                    .map(atom_text)
                    .collect();
                if !items.is_empty() {
                    details.push(ProblemDetail { kind, items });
                }
            }
        }

        let tag = self.package_tag(pkg);
        if package.tag_bits & (DEFAULT_PINNING | 1 << tag) == 0 {
            let items: Vec<String> = (0..self.tag_names.len())
                .filter(|&tag| package.tag_bits & (1 << tag) != 0)
                .map(|tag| format!("{TAG_PREFIX}{}", self.tag_names[tag]))
                .collect();
            if !items.is_empty() {
                details.push(ProblemDetail {
                    kind: DetailKind::MaskedIn,
                    items,
                });
            }
        }

        let mut conflicts = Vec::new();
        for provider in &self.names[package.name].providers {
            if provider.pkg != pkg && self.pkgs[provider.pkg].ss.marked {
                conflicts.push(self.pkgs[provider.pkg].label());
            }
        }
        for provide in &package.provides {
            let mut skipped_self = false;
            for provider in &self.names[provide.name].providers {
                if !self.pkgs[provider.pkg].ss.marked
                    || (provide.version.is_none() && provider.version.is_none())
                {
                    continue;
                }
                if !skipped_self && provider.pkg == pkg && provider.version == provide.version {
                    skipped_self = true;
                    continue;
                }
                conflicts.push(format!(
                    "{}[{}]",
                    self.pkgs[provider.pkg].label(),
                    atom_text(provide.atom)
                ));
            }
        }
        if !conflicts.is_empty() {
            details.push(ProblemDetail {
                kind: DetailKind::Conflicts,
                items: conflicts,
            });
        }

        let breaks = self.matching_atoms(pkg, Analysis::Conflicts);
        if !breaks.is_empty() {
            details.push(ProblemDetail {
                kind: DetailKind::Breaks,
                items: breaks,
            });
        }
        if details.is_empty() {
            return None;
        }
        let satisfies = self.matching_atoms(pkg, Analysis::Satisfies);
        if !satisfies.is_empty() {
            details.push(ProblemDetail {
                kind: DetailKind::Satisfies,
                items: satisfies,
            });
        }
        Some(Problem {
            subject: ProblemSubject::Package {
                name: package.record.name.clone(),
                version: package.record.version.clone(),
            },
            details,
        })
    }

    /// apk's `apk_pkg_cmp_display`: by name, then by version.
    fn cmp_pkg_display(&self, a: PkgId, b: PkgId) -> Ordering {
        let (pa, pb) = (&self.pkgs[a], &self.pkgs[b]);
        if pa.name != pb.name {
            return cmp_name_display(self.names[pa.name].text, self.names[pb.name].text);
        }
        if pa.record.version == pb.record.version {
            return Ordering::Equal;
        }
        version::compare(&pa.record.version, &pb.record.version)
    }

    /// apk's `print_deps`: the world atoms, then the atoms of chosen packages (through the
    /// reverse dependencies of the package's name and provided names), that relate to `pkg`
    /// as `wanted`, each group sorted as apk sorts it (`matched_dep_sort`).
    fn matching_atoms(&self, pkg: PkgId, wanted: Analysis) -> Vec<String> {
        let mut world: Vec<WorldAtom<'n>> = self
            .world
            .iter()
            .copied()
            .filter(|atom| self.analyze(None, atom.dep, pkg) == wanted)
            .collect();
        world.sort_by_key(|atom| op_bits(atom.dep.atom));
        let mut items: Vec<String> = world
            .into_iter()
            .map(|atom| self.world_item(atom))
            .collect();

        let mut reverse: Vec<(PkgId, DepRef<'n>)> = Vec::new();
        let mut visited = vec![false; self.pkgs.len()];
        let package = &self.pkgs[pkg];
        let sources = std::iter::once(package.name).chain(package.provides.iter().map(|p| p.name));
        for source in sources {
            for &other in &self.names[source].rdepends {
                for provider in &self.names[other].providers {
                    let owner = provider.pkg;
                    if !self.pkgs[owner].ss.marked || visited[owner] {
                        continue;
                    }
                    visited[owner] = true;
                    for &dep in &self.pkgs[owner].depends {
                        if self.analyze(Some(owner), dep, pkg) == wanted {
                            reverse.push((owner, dep));
                        }
                    }
                }
            }
        }
        reverse.sort_by(|(a, da), (b, db)| {
            self.cmp_pkg_display(*a, *b)
                .then_with(|| op_bits(da.atom).cmp(&op_bits(db.atom)))
        });
        items.extend(
            reverse.into_iter().map(|(owner, dep)| {
                format!("{}[{}]", self.pkgs[owner].label(), atom_text(dep.atom))
            }),
        );
        items
    }

    /// apk's `apk_dep_analyze`: how atom `dep` (declared by `owner`) relates to `pkg`.
    fn analyze(&self, owner: Option<PkgId>, dep: DepRef<'n>, pkg: PkgId) -> Analysis {
        let package = &self.pkgs[pkg];
        let verdict = |provided: bool| {
            if provided {
                Analysis::Satisfies
            } else {
                Analysis::Conflicts
            }
        };
        if dep.name == package.name {
            let own = Provider {
                pkg,
                version: Some(package.record.version.as_str()),
            };
            return verdict(self.is_provided(None, dep.atom, Some(own)));
        }
        match package
            .provides
            .iter()
            .find(|provide| provide.name == dep.name)
        {
            Some(provide) => verdict(self.is_provided(
                owner,
                dep.atom,
                Some(Provider {
                    pkg,
                    version: provide.version,
                }),
            )),
            None => Analysis::Irrelevant,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// The root architecture of every test.
    const ARCH: &str = "x86_64";

    fn atom(text: &str) -> Dependency {
        Dependency::parse(text).expect("valid atom")
    }

    fn atoms(texts: &[&str]) -> Vec<Dependency> {
        texts.iter().map(|text| atom(text)).collect()
    }

    /// A package with a distinct checksum and a non-zero installed size.
    fn pkg(name: &str, version: &str) -> PackageRecord {
        PackageRecord {
            name: name.to_owned(),
            version: version.to_owned(),
            checksum: format!("Q1{name}-{version}"),
            installed_size: 4096,
            ..PackageRecord::default()
        }
    }

    trait Build {
        fn depends(self, texts: &[&str]) -> Self;
        fn provides(self, texts: &[&str]) -> Self;
        fn install_if(self, texts: &[&str]) -> Self;
        fn priority(self, priority: u64) -> Self;
        fn installed_size(self, size: u64) -> Self;
        fn arch(self, arch: &str) -> Self;
    }

    impl Build for PackageRecord {
        fn depends(mut self, texts: &[&str]) -> Self {
            self.depends = atoms(texts);
            self
        }
        fn provides(mut self, texts: &[&str]) -> Self {
            self.provides = atoms(texts);
            self
        }
        fn install_if(mut self, texts: &[&str]) -> Self {
            self.install_if = atoms(texts);
            self
        }
        fn priority(mut self, priority: u64) -> Self {
            self.provider_priority = Some(priority);
            self
        }
        fn installed_size(mut self, size: u64) -> Self {
            self.installed_size = size;
            self
        }
        fn arch(mut self, arch: &str) -> Self {
            self.arch = arch.to_owned();
            self
        }
    }

    struct Repo {
        tag: Option<&'static str>,
        packages: Vec<PackageRecord>,
    }

    fn main_repo(packages: Vec<PackageRecord>) -> Repo {
        Repo {
            tag: None,
            packages,
        }
    }

    fn tagged(tag: &'static str, packages: Vec<PackageRecord>) -> Repo {
        Repo {
            tag: Some(tag),
            packages,
        }
    }

    fn repositories(repos: &[Repo]) -> Vec<SolverRepository<'_>> {
        repos
            .iter()
            .enumerate()
            .map(|(index, repo)| SolverRepository {
                name: format!("https://packages.example/{index}"),
                tag: repo.tag.map(str::to_owned),
                packages: &repo.packages,
            })
            .collect()
    }

    enum Expect {
        /// `name-version` in install order.
        Installs(&'static [&'static str]),
        /// The full error text.
        Fails(&'static str),
    }

    struct Case {
        name: &'static str,
        repos: Vec<Repo>,
        world: &'static [&'static str],
        expect: Expect,
    }

    fn labels(solution: &Solution<'_>) -> Vec<String> {
        solution
            .packages
            .iter()
            .map(|selection| format!("{}-{}", selection.package.name, selection.package.version))
            .collect()
    }

    fn check(cases: Vec<Case>) {
        for case in cases {
            let repositories = repositories(&case.repos);
            let world = crate::apk::world::from_atoms(case.world).expect("valid world");
            let result = solve(&repositories, &world, ARCH);
            match (case.expect, result) {
                (Expect::Installs(expected), Ok(solution)) => {
                    assert_eq!(labels(&solution), expected, "case `{}`", case.name);
                }
                (Expect::Fails(expected), Err(error)) => {
                    assert_eq!(error.to_string(), expected, "case `{}`", case.name);
                }
                (Expect::Installs(expected), Err(error)) => {
                    panic!(
                        "case `{}`: expected {expected:?}, got error:\n{error}",
                        case.name
                    )
                }
                (Expect::Fails(expected), Ok(solution)) => panic!(
                    "case `{}`: expected error:\n{expected}\ngot {:?}",
                    case.name,
                    labels(&solution)
                ),
            }
        }
    }

    fn foo_versions() -> Vec<PackageRecord> {
        vec![
            pkg("foo", "1.2-r0"),
            pkg("foo", "2.0-r0"),
            pkg("foo", "1.0-r0"),
            pkg("foo", "1.20-r0"),
            pkg("foo", "1.2.5-r1"),
        ]
    }

    fn go_versions() -> Vec<PackageRecord> {
        vec![
            pkg("go", "1.25.1-r0"),
            pkg("go", "1.26.0-r0"),
            pkg("go", "1.25.8-r2"),
        ]
    }

    #[test]
    fn versions_and_operators() {
        let case = |name, world, expect| Case {
            name,
            repos: vec![main_repo(foo_versions()), main_repo(go_versions())],
            world,
            expect,
        };
        check(vec![
            case(
                "highest version",
                &["foo"],
                Expect::Installs(&["foo-2.0-r0"]),
            ),
            case("equal", &["foo=1.2-r0"], Expect::Installs(&["foo-1.2-r0"])),
            case("less", &["foo<1.2-r0"], Expect::Installs(&["foo-1.0-r0"])),
            case(
                "less or equal",
                &["foo<=1.2-r0"],
                Expect::Installs(&["foo-1.2-r0"]),
            ),
            case(
                "greater and less together",
                &["foo>1.2-r0", "foo<1.20"],
                Expect::Installs(&["foo-1.2.5-r1"]),
            ),
            case(
                "greater or equal",
                &["foo>=1.20-r0", "foo<2"],
                Expect::Installs(&["foo-1.20-r0"]),
            ),
            case(
                "greater",
                &["foo>1.20-r0"],
                Expect::Installs(&["foo-2.0-r0"]),
            ),
            case(
                "fuzzy stays on the prefix",
                &["foo~1.2"],
                Expect::Installs(&["foo-1.2.5-r1"]),
            ),
            case(
                "go fuzzy 1.25",
                &["go~1.25"],
                Expect::Installs(&["go-1.25.8-r2"]),
            ),
            case(
                "go fuzzy 1.26",
                &["go~1.26"],
                Expect::Installs(&["go-1.26.0-r0"]),
            ),
            case("go latest", &["go"], Expect::Installs(&["go-1.26.0-r0"])),
            case(
                "no version satisfies",
                &["go~1.27"],
                Expect::Fails(
                    "unable to select packages:\n  go-1.26.0-r0:\n    breaks: world[go~1.27]",
                ),
            ),
            case(
                "a later atom for the same name replaces the earlier",
                &["foo<1.2", "foo>1.20"],
                Expect::Installs(&["foo-2.0-r0"]),
            ),
        ]);
        check(vec![Case {
            name: "world and dependency contradict",
            repos: vec![main_repo(vec![
                pkg("app", "1.0-r0").depends(&["foo>1.20"]),
                pkg("foo", "1.0-r0"),
                pkg("foo", "2.0-r0"),
            ])],
            world: &["foo<1.2", "app"],
            expect: Expect::Fails(
                "unable to select packages:\n  foo-1.0-r0:\n    breaks: app-1.0-r0[foo>1.20]\n    \
                 satisfies: world[foo<1.2]",
            ),
        }]);
        check(vec![Case {
            name: "version beats repository order",
            repos: vec![
                main_repo(vec![pkg("go", "1.25.8-r0")]),
                main_repo(vec![pkg("go", "1.26.0-r0")]),
            ],
            world: &["go"],
            expect: Expect::Installs(&["go-1.26.0-r0"]),
        }]);
    }

    #[test]
    fn provides_and_virtuals() {
        let case = |name, packages, world, expect| Case {
            name,
            repos: vec![main_repo(packages)],
            world,
            expect,
        };
        check(vec![
            case(
                "cmd virtual",
                vec![pkg("bash", "5.2.37-r0").provides(&["cmd:bash=5.2.37-r0"])],
                &["cmd:bash"],
                Expect::Installs(&["bash-5.2.37-r0"]),
            ),
            case(
                "highest provided so version wins",
                vec![
                    pkg("app", "1.0-r0").depends(&["so:libfoo.so.1"]),
                    pkg("libfoo-compat", "9.0-r0").provides(&["so:libfoo.so.1=1.0.0"]),
                    pkg("libfoo", "1.2-r0").provides(&["so:libfoo.so.1=1.2.3"]),
                ],
                &["app"],
                Expect::Installs(&["libfoo-1.2-r0", "app-1.0-r0"]),
            ),
            case(
                "versioned provide satisfies a versioned atom",
                vec![pkg("bar", "1.0-r0").provides(&["foo-virtual=2.0"])],
                &["foo-virtual>=1"],
                Expect::Installs(&["bar-1.0-r0"]),
            ),
            case(
                "unversioned provide does not satisfy a versioned atom",
                vec![pkg("bar", "1.0-r0").provides(&["foo-virtual"])],
                &["foo-virtual>=1"],
                Expect::Fails(
                    "unable to select packages:\n  foo-virtual (virtual):\n    note: please select \
                     one of the 'provided by'\n          packages explicitly\n    provided by: bar\n    \
                     required by: world[foo-virtual>=1]",
                ),
            ),
            case(
                "real package beats an unversioned provider",
                vec![
                    pkg("bar", "2.0-r0").provides(&["foo"]),
                    pkg("foo", "1.0-r0"),
                ],
                &["foo"],
                Expect::Installs(&["foo-1.0-r0"]),
            ),
            case(
                "higher versioned provide beats the real package",
                vec![
                    pkg("foo", "1.0-r0"),
                    pkg("foo-ng", "2.0-r0").provides(&["foo=2.0"]),
                ],
                &["foo"],
                Expect::Installs(&["foo-ng-2.0-r0"]),
            ),
            case(
                "provider priority",
                vec![
                    pkg("openssh-client-krb5", "9.9-r0")
                        .provides(&["openssh-client"])
                        .priority(50),
                    pkg("openssh-client-default", "9.9-r0")
                        .provides(&["openssh-client"])
                        .priority(100),
                ],
                &["openssh-client"],
                Expect::Installs(&["openssh-client-default-9.9-r0"]),
            ),
            case(
                "a versioned provide beats an unversioned one with priority",
                vec![
                    pkg("app", "1.0-r0").depends(&["v"]),
                    pkg("a", "1").provides(&["v"]).priority(1),
                    pkg("b", "1").provides(&["v=1"]),
                ],
                &["app"],
                Expect::Installs(&["b-1", "app-1.0-r0"]),
            ),
            case(
                "provider priority breaks a version tie",
                vec![
                    pkg("app", "1.0-r0").depends(&["so:libx.so.1"]),
                    pkg("libx-a", "1.0-r0").provides(&["so:libx.so.1=1"]),
                    pkg("libx-b", "1.0-r0")
                        .provides(&["so:libx.so.1=1"])
                        .priority(10),
                ],
                &["app"],
                Expect::Installs(&["libx-b-1.0-r0", "app-1.0-r0"]),
            ),
            case(
                "unversioned virtual without priority is ambiguous",
                vec![
                    pkg("busybox", "1.36-r0").provides(&["cmd:sh"]),
                    pkg("dash", "0.5-r0").provides(&["cmd:sh"]),
                ],
                &["cmd:sh"],
                Expect::Fails(
                    "unable to select packages:\n  cmd:sh (virtual):\n    note: please select one \
                     of the 'provided by'\n          packages explicitly\n    provided by: busybox \
                     dash\n    required by: world[cmd:sh]",
                ),
            ),
            case(
                "provider required elsewhere settles a virtual",
                vec![
                    pkg("busybox", "1.36-r0").provides(&["cmd:sh"]),
                    pkg("dash", "0.5-r0").provides(&["cmd:sh"]),
                ],
                &["cmd:sh", "dash"],
                Expect::Installs(&["dash-0.5-r0"]),
            ),
            case(
                "unversioned providers of one name coexist",
                vec![
                    pkg("busybox", "1.36-r0").provides(&["cmd:sh"]),
                    pkg("dash", "0.5-r0").provides(&["cmd:sh"]),
                ],
                &["dash", "busybox"],
                Expect::Installs(&["busybox-1.36-r0", "dash-0.5-r0"]),
            ),
            case(
                "versioned provide chosen by the world serves dependencies",
                vec![
                    pkg("app", "1.0-r0").depends(&["so:libssl.so.3"]),
                    pkg("libssl3", "3.1-r0").provides(&["so:libssl.so.3=3.1"]),
                    pkg("libssl-fips", "3.0-r0").provides(&["so:libssl.so.3=3.0"]),
                ],
                &["app", "libssl-fips"],
                Expect::Installs(&["libssl-fips-3.0-r0", "app-1.0-r0"]),
            ),
            case(
                "two packages cannot provide the same versioned name",
                vec![
                    pkg("libssl3", "3.1-r0").provides(&["so:libssl.so.3=3.1"]),
                    pkg("libssl-fips", "3.0-r0").provides(&["so:libssl.so.3=3.0"]),
                ],
                &["libssl3", "libssl-fips"],
                Expect::Fails(
                    "unable to select packages:\n  libssl-fips-3.0-r0:\n    conflicts: \
                     libssl3-3.1-r0[so:libssl.so.3=3.0]\n    satisfies: world[libssl-fips]\n  \
                     libssl3-3.1-r0:\n    conflicts: libssl-fips-3.0-r0[so:libssl.so.3=3.1]\n    \
                     satisfies: world[libssl3]",
                ),
            ),
            case(
                "provides transitivity keeps the version carrying the soname",
                vec![
                    pkg("app", "1.0-r0").depends(&["so:libfoo.so.1"]),
                    pkg("libfoo", "1.0-r0").provides(&["so:libfoo.so.1=1"]),
                    pkg("libfoo", "2.0-r0").provides(&["so:libfoo.so.2=2"]),
                ],
                &["app", "libfoo"],
                Expect::Installs(&["libfoo-1.0-r0", "app-1.0-r0"]),
            ),
        ]);
        check(vec![Case {
            name: "full tie goes to the lowest repository",
            repos: vec![
                main_repo(vec![
                    pkg("zlib-ng", "1.0-r0").provides(&["so:libz.so.1=1.3.1"]),
                ]),
                main_repo(vec![
                    pkg("app", "1.0-r0").depends(&["so:libz.so.1"]),
                    pkg("alib", "1.0-r0").provides(&["so:libz.so.1=1.3.1"]),
                ]),
            ],
            world: &["app"],
            expect: Expect::Installs(&["zlib-ng-1.0-r0", "app-1.0-r0"]),
        }]);
    }

    #[test]
    fn install_if() {
        let case = |name, packages, world, expect| Case {
            name,
            repos: vec![main_repo(packages)],
            world,
            expect,
        };
        let base = || {
            vec![
                pkg("foo", "1.0-r0"),
                pkg("man-pages", "6.9-r0"),
                pkg("foo-doc", "1.0-r0").install_if(&["foo", "man-pages"]),
            ]
        };
        let with = |extra: PackageRecord| {
            let mut packages = base();
            packages.push(extra);
            packages
        };
        check(vec![
            case(
                "all triggers present",
                base(),
                &["foo", "man-pages"],
                Expect::Installs(&["foo-1.0-r0", "man-pages-6.9-r0", "foo-doc-1.0-r0"]),
            ),
            case(
                "one trigger missing",
                base(),
                &["foo"],
                Expect::Installs(&["foo-1.0-r0"]),
            ),
            case(
                "chained install_if",
                with(pkg("foo-doc-extra", "1.0-r0").install_if(&["foo-doc"])),
                &["foo", "man-pages"],
                Expect::Installs(&[
                    "foo-1.0-r0",
                    "man-pages-6.9-r0",
                    "foo-doc-1.0-r0",
                    "foo-doc-extra-1.0-r0",
                ]),
            ),
            case(
                "versioned trigger not met",
                vec![
                    pkg("foo", "1.0-r0"),
                    pkg("man-pages", "6.9-r0"),
                    pkg("foo-doc", "1.0-r0").install_if(&["foo=2.0-r0", "man-pages"]),
                ],
                &["foo", "man-pages"],
                Expect::Installs(&["foo-1.0-r0", "man-pages-6.9-r0"]),
            ),
            case(
                "install_if package brings its dependencies",
                vec![
                    pkg("foo", "1.0-r0"),
                    pkg("man-pages", "6.9-r0"),
                    pkg("doc-base", "1.0-r0"),
                    pkg("foo-doc", "1.0-r0")
                        .install_if(&["foo", "man-pages"])
                        .depends(&["doc-base"]),
                ],
                &["foo", "man-pages"],
                Expect::Installs(&[
                    "foo-1.0-r0",
                    "man-pages-6.9-r0",
                    "doc-base-1.0-r0",
                    "foo-doc-1.0-r0",
                ]),
            ),
            case(
                "a conflict trigger is met while its name stays uninstalled",
                vec![
                    pkg("foo", "1.0-r0"),
                    pkg("man-pages", "1.0-r0"),
                    pkg("foo-doc", "1.0-r0").install_if(&["foo", "!man-pages"]),
                ],
                &["foo"],
                Expect::Installs(&["foo-1.0-r0", "foo-doc-1.0-r0"]),
            ),
            case(
                "a conflict trigger is not met once its name is installed",
                vec![
                    pkg("foo", "1.0-r0"),
                    pkg("man-pages", "1.0-r0"),
                    pkg("foo-doc", "1.0-r0").install_if(&["foo", "!man-pages"]),
                ],
                &["foo", "man-pages"],
                Expect::Installs(&["foo-1.0-r0", "man-pages-1.0-r0"]),
            ),
            case(
                "trigger pulled in as a dependency",
                vec![
                    pkg("app", "1.0-r0").depends(&["foo", "man-pages"]),
                    pkg("foo", "1.0-r0"),
                    pkg("man-pages", "6.9-r0"),
                    pkg("foo-doc", "1.0-r0").install_if(&["foo", "man-pages"]),
                ],
                &["app"],
                Expect::Installs(&[
                    "foo-1.0-r0",
                    "man-pages-6.9-r0",
                    "foo-doc-1.0-r0",
                    "app-1.0-r0",
                ]),
            ),
        ]);
    }

    #[test]
    fn conflicts() {
        let case = |name, packages, world, expect| Case {
            name,
            repos: vec![main_repo(packages)],
            world,
            expect,
        };
        check(vec![
            case(
                "world conflict falls back to an older version",
                vec![
                    pkg("foo", "2.0-r0").depends(&["bar"]),
                    pkg("foo", "1.0-r0"),
                    pkg("bar", "1.0-r0"),
                ],
                &["foo", "!bar"],
                Expect::Installs(&["foo-1.0-r0"]),
            ),
            case(
                "dependency conflict falls back to an older version",
                vec![
                    pkg("app", "1.0-r0").depends(&["libx", "!liby"]),
                    pkg("libx", "2.0-r0").depends(&["liby"]),
                    pkg("libx", "1.0-r0"),
                    pkg("liby", "1.0-r0"),
                ],
                &["app"],
                Expect::Installs(&["libx-1.0-r0", "app-1.0-r0"]),
            ),
            case(
                "versioned conflict",
                vec![
                    pkg("foo", "1.0-r0").depends(&["bar<3"]),
                    pkg("bar", "1.0-r0"),
                    pkg("bar", "2.0-r0"),
                    pkg("bar", "3.0-r0"),
                ],
                &["foo", "!bar<2"],
                Expect::Installs(&["bar-2.0-r0", "foo-1.0-r0"]),
            ),
            case(
                "conflict with a provided name",
                vec![
                    pkg("app", "1.0-r0").depends(&["cmd:sh", "!busybox"]),
                    pkg("busybox", "1.36-r0").provides(&["cmd:sh=1.36"]),
                    pkg("dash", "0.5-r0").provides(&["cmd:sh=0.5"]),
                ],
                &["app"],
                Expect::Installs(&["dash-0.5-r0", "app-1.0-r0"]),
            ),
            case(
                "conflict on a name the package provides itself is ignored",
                vec![
                    pkg("busybox-binsh", "1.36-r0")
                        .provides(&["cmd:sh=1.36"])
                        .depends(&["!cmd:sh"]),
                ],
                &["busybox-binsh"],
                Expect::Installs(&["busybox-binsh-1.36-r0"]),
            ),
            case(
                "world conflict against a required package",
                vec![pkg("foo", "1.0-r0").depends(&["bar"]), pkg("bar", "1.0-r0")],
                &["foo", "!bar"],
                Expect::Fails(
                    "unable to select packages:\n  bar-1.0-r0:\n    breaks: world[!bar]\n    \
                     satisfies: foo-1.0-r0[bar]",
                ),
            ),
            case(
                "package conflict against a world package",
                vec![pkg("a", "1.0-r0").depends(&["!b"]), pkg("b", "1.0-r0")],
                &["a", "b"],
                Expect::Fails(
                    "unable to select packages:\n  b-1.0-r0:\n    breaks: a-1.0-r0[!b]\n    \
                     satisfies: world[b]",
                ),
            ),
        ]);
    }

    #[test]
    fn tagged_repositories() {
        check(vec![
            Case {
                name: "untagged atom ignores the tagged repository",
                repos: vec![
                    main_repo(vec![pkg("foo", "1.0-r0")]),
                    tagged("edge", vec![pkg("foo", "2.0-r0")]),
                ],
                world: &["foo"],
                expect: Expect::Installs(&["foo-1.0-r0"]),
            },
            Case {
                name: "tagged atom selects from the tagged repository",
                repos: vec![
                    main_repo(vec![pkg("foo", "1.0-r0")]),
                    tagged("@edge", vec![pkg("foo", "2.0-r0")]),
                ],
                world: &["foo@edge"],
                expect: Expect::Installs(&["foo-2.0-r0"]),
            },
            Case {
                name: "tagged atom prefers its repository over a newer untagged version",
                repos: vec![
                    main_repo(vec![pkg("foo", "3.0-r0")]),
                    tagged("edge", vec![pkg("foo", "2.0-r0")]),
                ],
                world: &["foo@edge"],
                expect: Expect::Installs(&["foo-2.0-r0"]),
            },
            Case {
                name: "package only in a tagged repository is masked",
                repos: vec![
                    main_repo(vec![]),
                    tagged("edge", vec![pkg("bar", "1.0-r0")]),
                ],
                world: &["bar"],
                expect: Expect::Fails(
                    "unable to select packages:\n  bar-1.0-r0:\n    masked in: @edge\n    \
                     satisfies: world[bar]",
                ),
            },
            Case {
                name: "pinning propagates to dependencies",
                repos: vec![
                    main_repo(vec![pkg("libfoo", "1.0-r0")]),
                    tagged(
                        "edge",
                        vec![
                            pkg("foo", "2.0-r0").depends(&["libfoo>=2"]),
                            pkg("libfoo", "2.1-r0"),
                        ],
                    ),
                ],
                world: &["foo@edge"],
                expect: Expect::Installs(&["libfoo-2.1-r0", "foo-2.0-r0"]),
            },
            Case {
                name: "dependencies of a pinned package still prefer untagged repositories",
                repos: vec![
                    main_repo(vec![pkg("libfoo", "2.0-r0")]),
                    tagged(
                        "edge",
                        vec![
                            pkg("foo", "2.0-r0").depends(&["libfoo>=2"]),
                            pkg("libfoo", "2.1-r0"),
                        ],
                    ),
                ],
                world: &["foo@edge"],
                expect: Expect::Installs(&["libfoo-2.0-r0", "foo-2.0-r0"]),
            },
            Case {
                name: "untagged package cannot pull from a tagged repository",
                repos: vec![
                    main_repo(vec![pkg("app", "1.0-r0").depends(&["libfoo"])]),
                    tagged("edge", vec![pkg("libfoo", "1.0-r0")]),
                ],
                world: &["app"],
                expect: Expect::Fails(
                    "unable to select packages:\n  libfoo-1.0-r0:\n    masked in: @edge\n    \
                     satisfies: app-1.0-r0[libfoo]",
                ),
            },
            Case {
                name: "meta package with no installed size is allowed from any repository",
                repos: vec![tagged(
                    "edge",
                    vec![pkg("meta", "1.0-r0").installed_size(0)],
                )],
                world: &["meta"],
                expect: Expect::Installs(&["meta-1.0-r0"]),
            },
        ]);
    }

    #[test]
    fn selection_repository() {
        let shared = pkg("foo", "1.0-r0");
        let cases: Vec<(&str, Vec<Repo>, &[&str], usize)> = vec![
            (
                "identical package in tagged and untagged repositories",
                vec![
                    tagged("edge", vec![shared.clone()]),
                    main_repo(vec![shared.clone()]),
                ],
                &["foo"],
                1,
            ),
            (
                "identical package, tagged atom: the untagged copy still serves",
                vec![
                    tagged("edge", vec![shared.clone()]),
                    main_repo(vec![shared.clone()]),
                ],
                &["foo@edge"],
                1,
            ),
            (
                "package only in the tagged repository",
                vec![main_repo(vec![]), tagged("edge", vec![shared.clone()])],
                &["foo@edge"],
                1,
            ),
            (
                "identical package in two untagged repositories",
                vec![
                    main_repo(vec![shared.clone()]),
                    main_repo(vec![shared.clone()]),
                ],
                &["foo"],
                0,
            ),
        ];
        for (name, repos, world, expected) in cases {
            let repositories = repositories(&repos);
            let solution = solve(&repositories, &atoms(world), ARCH).expect(name);
            assert_eq!(solution.packages.len(), 1, "{name}");
            assert_eq!(solution.packages[0].repository, expected, "{name}");
        }
    }

    #[test]
    fn install_order_and_cycles() {
        let case = |name, packages, world, expect| Case {
            name,
            repos: vec![main_repo(packages)],
            world,
            expect,
        };
        check(vec![
            case(
                "cycle is broken at the package reached first",
                vec![
                    pkg("a", "1.0-r0").depends(&["b"]),
                    pkg("b", "1.0-r0").depends(&["a"]),
                ],
                &["a"],
                Expect::Installs(&["b-1.0-r0", "a-1.0-r0"]),
            ),
            case(
                "cycle with both in the world",
                vec![
                    pkg("a", "1.0-r0").depends(&["b"]),
                    pkg("b", "1.0-r0").depends(&["a"]),
                ],
                &["b", "a"],
                Expect::Installs(&["b-1.0-r0", "a-1.0-r0"]),
            ),
            case(
                "self dependency",
                vec![pkg("a", "1.0-r0").depends(&["a"])],
                &["a"],
                Expect::Installs(&["a-1.0-r0"]),
            ),
            case(
                "dependencies first, in dependency order",
                vec![
                    pkg("app", "1.0-r0").depends(&["libb", "liba"]),
                    pkg("libb", "1.0-r0").depends(&["liba"]),
                    pkg("liba", "1.0-r0"),
                ],
                &["app"],
                Expect::Installs(&["liba-1.0-r0", "libb-1.0-r0", "app-1.0-r0"]),
            ),
            case(
                "diamond",
                vec![
                    pkg("app", "1.0-r0").depends(&["x", "y"]),
                    pkg("x", "1.0-r0").depends(&["z"]),
                    pkg("y", "1.0-r0").depends(&["z"]),
                    pkg("z", "1.0-r0"),
                ],
                &["app"],
                Expect::Installs(&["z-1.0-r0", "x-1.0-r0", "y-1.0-r0", "app-1.0-r0"]),
            ),
            case(
                "world in name order",
                vec![pkg("zlib", "1.3-r0"), pkg("busybox", "1.36-r0")],
                &["zlib", "busybox"],
                Expect::Installs(&["busybox-1.36-r0", "zlib-1.3-r0"]),
            ),
            case(
                "empty world",
                vec![pkg("zlib", "1.3-r0")],
                &[],
                Expect::Installs(&[]),
            ),
        ]);
    }

    #[test]
    fn error_wording() {
        let case = |name, packages, world, expect| Case {
            name,
            repos: vec![main_repo(packages)],
            world,
            expect,
        };
        let requirers: Vec<PackageRecord> = (1..=6)
            .map(|index| pkg(&format!("a{index}"), "1").depends(&["x"]))
            .collect();
        check(vec![
            case(
                "no such package",
                vec![],
                &["go~1.26"],
                Expect::Fails(
                    "unable to select packages:\n  go (no such package):\n    required by: \
                     world[go~1.26]",
                ),
            ),
            case(
                "missing shared library",
                vec![pkg("foo", "1.0-r0").depends(&["so:libbar.so.1"])],
                &["foo"],
                Expect::Fails(
                    "unable to select packages:\n  so:libbar.so.1 (no such package):\n    \
                     required by: foo-1.0-r0[so:libbar.so.1]",
                ),
            ),
            case(
                "dependency version too old",
                vec![
                    pkg("app", "1.0-r0").depends(&["libfoo>=2"]),
                    pkg("libfoo", "1.0-r0"),
                ],
                &["app"],
                Expect::Fails(
                    "unable to select packages:\n  libfoo-1.0-r0:\n    breaks: \
                     app-1.0-r0[libfoo>=2]",
                ),
            ),
            case(
                "ambiguous virtual required by a package",
                vec![
                    pkg("app", "1.0-r0").depends(&["cmd:sh"]),
                    pkg("busybox", "1.36-r0").provides(&["cmd:sh"]),
                    pkg("dash", "0.5-r0").provides(&["cmd:sh"]),
                ],
                &["app"],
                Expect::Fails(
                    "unable to select packages:\n  cmd:sh (virtual):\n    note: please select one \
                     of the 'provided by'\n          packages explicitly\n    provided by: busybox \
                     dash\n    required by: app-1.0-r0[cmd:sh]",
                ),
            ),
            case(
                "long lists wrap under their label, in apk's name hash order",
                requirers,
                &["a1", "a2", "a3", "a4", "a5", "a6"],
                Expect::Fails(
                    "unable to select packages:\n  x (no such package):\n    required by: a6-1[x] \
                     a3-1[x] a1-1[x] a5-1[x]\n                 a4-1[x] a2-1[x]",
                ),
            ),
        ]);
    }

    #[test]
    fn architectures_and_identical_packages() {
        let case = |name, repos, world, expect| Case {
            name,
            repos,
            world,
            expect,
        };
        check(vec![
            case(
                "a package for another architecture is uninstallable",
                vec![main_repo(vec![pkg("foo", "1.0-r0").arch("aarch64")])],
                &["foo"],
                Expect::Fails(
                    "unable to select packages:\n  foo-1.0-r0:\n    error: uninstallable\n    \
                     arch: aarch64\n    satisfies: world[foo]",
                ),
            ),
            case(
                "the root's architecture and no architecture are installable",
                vec![main_repo(vec![
                    pkg("foo", "2.0-r0").arch("aarch64"),
                    pkg("foo", "1.0-r0").arch(ARCH),
                    pkg("foo", "0.5-r0"),
                ])],
                &["foo"],
                Expect::Installs(&["foo-1.0-r0"]),
            ),
            case(
                "noarch is installable",
                vec![main_repo(vec![
                    pkg("foo", "3.0-r0").arch("noarch"),
                    pkg("foo", "1.0-r0").arch(ARCH),
                ])],
                &["foo"],
                Expect::Installs(&["foo-3.0-r0"]),
            ),
            case(
                "the first record of a checksum is the package",
                vec![
                    main_repo(vec![pkg("foo", "1.0-r0")]),
                    tagged(
                        "edge",
                        vec![pkg("foo", "1.0-r0").depends(&["bar"]), pkg("bar", "1.0-r0")],
                    ),
                ],
                &["foo"],
                Expect::Installs(&["foo-1.0-r0"]),
            ),
        ]);
    }

    #[test]
    fn structured_problems() {
        let repos = vec![main_repo(vec![])];
        let repositories = repositories(&repos);
        let error =
            solve(&repositories, &atoms(&["nope"]), ARCH).expect_err("nothing provides nope");
        let SolveError::Unsatisfiable { problems } = error else {
            panic!("unexpected error {error}");
        };
        assert_eq!(
            problems,
            vec![Problem {
                subject: ProblemSubject::NoSuchPackage {
                    name: "nope".to_owned()
                },
                details: vec![ProblemDetail {
                    kind: DetailKind::RequiredBy,
                    items: vec!["world[nope]".to_owned()],
                }],
            }]
        );
    }

    #[test]
    fn repository_tag_errors() {
        let repos = vec![main_repo(vec![pkg("foo", "1.0-r0")])];
        let repositories = repositories(&repos);
        let error = solve(&repositories, &atoms(&["foo@testing"]), ARCH).expect_err("unknown tag");
        assert_eq!(
            error.to_string(),
            "the repository tag for world dependency 'foo@testing' does not exist"
        );

        let many: Vec<SolverRepository<'_>> = (0..MAX_REPOSITORY_TAGS)
            .map(|index| SolverRepository {
                name: format!("repo-{index}"),
                tag: Some(format!("tag{index}")),
                packages: &[],
            })
            .collect();
        let error = solve(&many, &atoms(&["foo"]), ARCH).expect_err("too many tags");
        assert_eq!(
            error.to_string(),
            "16 repository tags are configured, at most 15 are supported"
        );
    }

    #[test]
    fn output_does_not_depend_on_world_order() {
        let repos = vec![main_repo(vec![
            pkg("app", "1.0-r0").depends(&["so:libz.so.1", "cmd:sh"]),
            pkg("zlib", "1.3-r0").provides(&["so:libz.so.1=1.3"]),
            pkg("busybox", "1.36-r0").provides(&["cmd:sh"]).priority(10),
            pkg("dash", "0.5-r0").provides(&["cmd:sh"]),
            pkg("ca-certificates", "2024-r0"),
        ])];
        let repositories = repositories(&repos);
        let first =
            solve(&repositories, &atoms(&["app", "ca-certificates"]), ARCH).expect("solves");
        let second =
            solve(&repositories, &atoms(&["ca-certificates", "app"]), ARCH).expect("solves");
        assert_eq!(first, second);
        assert_eq!(
            labels(&first),
            [
                "zlib-1.3-r0",
                "busybox-1.36-r0",
                "app-1.0-r0",
                "ca-certificates-2024-r0"
            ]
        );
    }

    /// Every dependency of every selected package is met by a package installed before it.
    fn assert_dependencies_first(solution: &Solution<'_>) {
        let mut installed: Vec<&PackageRecord> = Vec::new();
        for selection in &solution.packages {
            for dep in selection.package.depends.iter().filter(|dep| !dep.conflict) {
                let met = installed.iter().any(|earlier| {
                    (earlier.name == dep.name && dep.matches(&earlier.version))
                        || earlier.provides.iter().any(|provide| {
                            provide.name == dep.name
                                && dep.matches(provide.version.as_deref().unwrap_or(""))
                        })
                });
                assert!(met, "{} needs {dep}", selection.package.name);
            }
            installed.push(selection.package);
        }
    }

    #[test]
    fn large_index_resolves() {
        // 2,500 libraries in two versions each, every one depending on the sonames of up to
        // three lower libraries, plus 20 applications and a few virtuals.
        let mut packages = Vec::new();
        for index in 0..2_500usize {
            for (version, soname) in [("1.0-r0", 1), ("2.0-r0", 2)] {
                let deps: Vec<String> = [index / 2, index / 3, index.saturating_sub(7)]
                    .into_iter()
                    .filter(|&lower| lower < index)
                    .map(|lower| format!("so:liblib{lower}.so.{soname}"))
                    .collect();
                let deps: Vec<&str> = deps.iter().map(String::as_str).collect();
                let provides = [format!("so:liblib{index}.so.{soname}={version}")];
                let provides: Vec<&str> = provides.iter().map(String::as_str).collect();
                packages.push(
                    pkg(&format!("lib{index}"), version)
                        .depends(&deps)
                        .provides(&provides),
                );
            }
        }
        let mut world = Vec::new();
        for app in 0..20usize {
            let lib = 2_499 - app * 37;
            packages.push(
                pkg(&format!("app{app}"), "1.0-r0")
                    .depends(&[&format!("so:liblib{lib}.so.2"), "cmd:sh"]),
            );
            world.push(format!("app{app}"));
        }
        packages.push(pkg("busybox", "1.36-r0").provides(&["cmd:sh"]).priority(10));
        packages.push(pkg("dash", "0.5-r0").provides(&["cmd:sh"]));
        assert_eq!(packages.len(), 5_022);

        let repos = vec![main_repo(packages)];
        let repositories = repositories(&repos);
        let world: Vec<&str> = world.iter().map(String::as_str).collect();
        let solution = solve(&repositories, &atoms(&world), ARCH).expect("solves");
        assert_dependencies_first(&solution);
        assert!(solution.packages.len() > 20);
        assert!(
            solution
                .packages
                .iter()
                .filter(|selection| selection.package.name.starts_with("lib"))
                .all(|selection| selection.package.version == "2.0-r0")
        );
        assert!(
            solution
                .packages
                .iter()
                .any(|s| s.package.name == "busybox")
        );
    }

    #[test]
    fn deep_dependency_chain_does_not_exhaust_the_stack() {
        let length = 20_000usize;
        let packages: Vec<PackageRecord> = (0..length)
            .map(|index| {
                let record = pkg(&format!("p{index}"), "1.0-r0");
                if index + 1 < length {
                    record.depends(&[&format!("p{}", index + 1)])
                } else {
                    record
                }
            })
            .collect();
        let repos = vec![main_repo(packages)];
        let repositories = repositories(&repos);
        let solution = solve(&repositories, &atoms(&["p0"]), ARCH).expect("solves");
        assert_eq!(solution.packages.len(), length);
        assert_eq!(
            solution.packages[0].package.name,
            format!("p{}", length - 1)
        );
        assert_eq!(solution.packages[length - 1].package.name, "p0");
    }

    #[test]
    fn deep_dependency_chain_error_report_does_not_exhaust_the_stack() {
        let length = 20_000usize;
        let packages: Vec<PackageRecord> = (0..length)
            .map(|index| pkg(&format!("p{index}"), "1.0-r0").depends(&[&format!("p{}", index + 1)]))
            .collect();
        let repos = vec![main_repo(packages)];
        let repositories = repositories(&repos);
        let error = solve(&repositories, &atoms(&["p0"]), ARCH).expect_err("p20000 is missing");
        assert_eq!(
            error.to_string(),
            format!(
                "unable to select packages:\n  p{length} (no such package):\n    required by: \
                 p{}-1.0-r0[p{length}]",
                length - 1
            )
        );
    }
}
