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

mod report;
#[cfg(test)]
mod tests;

use report::ReportDisplay;
pub use report::{DetailKind, Problem, ProblemDetail, ProblemSubject};

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
}
