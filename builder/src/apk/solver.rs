//! The APK resolver: decides which packages `apk add WORLD...` selects into an empty root, and
//! in which order they install, making the choices apk-tools 2.14 makes (`src/solver.c`).
//!
//! Pure: package records and world atoms in, an ordered selection or an apk-worded
//! "unable to select packages" report out. It does not fetch or verify anything, never sees an
//! installed database (the root is always empty, so there are no upgrades, removals or
//! "prefer installed" rules), and ignores file-level `replaces`.
//!
//! The algorithm is apk's deductive solver, reimplemented step for step rather than a generic
//! SAT or backtracking search, so that the same inputs select the same packages:
//!
//! 1. Every name reachable from the world is discovered (`discover_name`), recording for each
//!    name the longest dependency chain below it.
//! 2. World atoms are applied in name order (`apply_constraint`): each provider that fails an
//!    atom's version test, or matches a `!conflict`, is disqualified, and the disqualification
//!    propagates to every package whose dependencies can no longer be met
//!    (`disqualify_package`, `reconsider_name`). Dependencies common to every remaining
//!    candidate of a name are applied early ("merging"), and a name whose candidates all carry
//!    another name excludes that name's other providers ("provides transitivity").
//! 3. The name to decide next is the first required name with a single option and no undecided
//!    reverse dependencies; otherwise required names before install-if ones, real names before
//!    virtual ones, longer dependency chains first (`compare_name_dequeue`).
//! 4. Among a name's providers the winner is decided by `compare_providers`: selectable (not
//!    disqualified), then candidates that took part in the last dependency merge, then fewest
//!    failed constraints, then an allowed repository tag, then the preferred tag, then the
//!    highest version of the requested name (a versioned provide counts with its provided
//!    version; an unversioned one ties), then the highest version of the same package name,
//!    then the highest `provider_priority`, then the lowest repository index. An unversioned
//!    provide without `provider_priority` is only chosen automatically when it is the name's
//!    sole provider or the provider's own name is required elsewhere (`select_package`).
//! 5. Choosing a package claims its name and every provided name (`assign_name`): other
//!    providers of those names are disqualified unless both provide the name unversioned, and
//!    a second claim on a name is an error (two packages providing the same versioned name).
//! 6. A package whose every `install_if` atom is met by the chosen set is selected too, with its
//!    dependencies, iterating to a fixpoint.
//! 7. The install order is apk's changeset order (`generate_changeset`): world atoms sorted by
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
//! Two deliberate choices differ from one of the reference tools: a package's `!conflict` on a
//! name it provides itself is ignored (apk-tools 3 and apko; apk-tools 2.14 reports it as an
//! error), and on a full tie the lowest repository wins (apk; apko prefers the newest build).

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt;

use super::constraint::{Dependency, VersionOp};
use super::index::PackageRecord;
use super::version;

/// Pinning masks are 64-bit sets of repository tags, tag 0 being "untagged".
const MAX_REPOSITORY_TAGS: usize = 64;
/// The tag of untagged repositories.
const DEFAULT_TAG: usize = 0;
/// Pinning mask allowing only untagged repositories.
const DEFAULT_PINNING: u64 = 1 << DEFAULT_TAG;
/// Prefix apk prints before a repository tag.
const TAG_PREFIX: char = '@';
/// Column at which the error report wraps its lists, as apk wraps at the screen width.
const REPORT_WIDTH: usize = 80;
/// First line of the error report (apk prints it after `ERROR: `).
const REPORT_HEADING: &str = "unable to select packages:";

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
    #[error("the repository tag for world dependency '{dependency}' does not exist")]
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
            return f.write_str("\n  no broken constraint could be identified");
        }
        for problem in self.0 {
            write!(f, "\n  {}:", problem.subject)?;
            for detail in &problem.details {
                let label = detail.kind.label();
                write!(f, "\n    {label}")?;
                let indent = 4 + label.len() + 1;
                let mut column = indent - 1;
                for item in &detail.items {
                    if column < indent {
                        write!(f, " {item}")?;
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

/// Resolves `world` against `repositories` into an empty root, the way `apk add` would.
///
/// Repositories are listed in priority order (lower index wins a full tie). A package present
/// with the same name, version and checksum in several repositories is one candidate.
pub fn solve<'a>(
    repositories: &[SolverRepository<'a>],
    world: &[Dependency],
) -> Result<Solution<'a>, SolveError> {
    let mut solver = Solver::new(repositories, world)?;
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

/// A package offering a name, at a version (`None`: provided without version). This is apk's
/// `struct apk_provider`; "no provider" is `Option::None`.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Provider<'n> {
    pkg: PkgId,
    version: Option<&'n str>,
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
    pinning_allowed: u64,
    pinning_preferred: u64,
    selectable: bool,
    iif_triggered: bool,
    iif_failed: bool,
    tag_ok: bool,
    tag_preferred: bool,
    max_dep_chain: u32,
    dependencies_merged: bool,
    dependencies_used: bool,
    conflicts: u32,
    error: bool,
    in_changeset: bool,
    marked: bool,
}

struct Pkg<'a, 'n> {
    record: &'a PackageRecord,
    name: NameId,
    /// Repositories holding this exact package, ascending.
    repos: Vec<usize>,
    /// Tags of those repositories, as a pinning mask.
    tag_bits: u64,
    depends: Vec<DepRef<'n>>,
    provides: Vec<ProvideRef<'n>>,
    install_if: Vec<DepRef<'n>>,
    ss: PkgState,
}

impl Pkg<'_, '_> {
    fn provider_priority(&self) -> u64 {
        self.record.provider_priority.unwrap_or(0)
    }

    fn first_repository(&self) -> usize {
        self.repos.first().copied().unwrap_or(usize::MAX)
    }

    fn label(&self) -> String {
        self.record.display_name()
    }

    /// The package's own name, then every name it provides.
    fn names(&self) -> impl Iterator<Item = NameId> + '_ {
        std::iter::once(self.name).chain(self.provides.iter().map(|provide| provide.name))
    }
}

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
    reevaluate_deps: bool,
    reevaluate_iif: bool,
    max_dep_chain: u32,
    /// Generation of this name's live entry in the dirty queue.
    dirty: Option<u64>,
    /// Position of this name in the unresolved list (smaller: added later).
    unresolved: Option<u64>,
    /// This name's entry among the unresolved names that can be decided right away.
    ready: Option<u64>,
    /// This name's entry in the unresolved names ranked by `compare_name_dequeue`.
    rank: Option<RankKey>,
    in_changeset: bool,
    present: bool,
    reported: bool,
}

struct Name<'n> {
    text: &'n str,
    providers: Vec<Provider<'n>>,
    /// Names whose providers depend on this name.
    rdepends: Vec<NameId>,
    /// Names whose providers list this name in `install_if`.
    rinstall_if: Vec<NameId>,
    /// 0: only real packages, 1: real and virtual providers, 2: only virtual providers.
    priority: u8,
    ss: NameState<'n>,
}

/// Order of unresolved names in apk's `compare_name_dequeue`, ties going to the name added
/// to the unresolved list last: required names first, then real before virtual names, then
/// longer dependency chains.
type RankKey = (bool, u8, Reverse<u32>, u64);

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
    /// `cset_check_install_by_iif` over the package's reverse install-if names from `next` on.
    InstallIf { pkg: PkgId, next: usize },
}

/// A frame of the unrolled `discover_name` recursion.
struct DiscoverFrame {
    name: NameId,
    provider: usize,
    in_package: bool,
    dep: usize,
    awaiting_child: bool,
    in_install_if: bool,
    install_if: usize,
}

impl DiscoverFrame {
    fn new(name: NameId) -> Self {
        DiscoverFrame {
            name,
            provider: 0,
            in_package: false,
            dep: 0,
            awaiting_child: false,
            in_install_if: false,
            install_if: 0,
        }
    }
}

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
    /// Unresolved names that can be decided right away, newest first.
    ready: BTreeMap<u64, NameId>,
    /// All unresolved names in `compare_name_dequeue` order.
    ranked: BTreeMap<RankKey, NameId>,
    queue_counter: u64,
    pinning_inherit: u64,
    errors: usize,
    changes: Vec<PkgId>,
}

/// Strips the `@` apk writes before a tag.
fn plain_tag(tag: &str) -> &str {
    tag.strip_prefix(TAG_PREFIX).unwrap_or(tag)
}

/// Whether the atom carries a version test.
fn has_version_test(atom: &Dependency) -> bool {
    atom.op != VersionOp::Any && atom.version.is_some()
}

/// apk's `apk_dep_is_provided`: whether `provider` meets `atom` (for a conflict: does not
/// violate it). `owner` is the package declaring the atom; a conflict with itself is ignored.
fn is_provided(atom: &Dependency, provider: Option<Provider<'_>>, owner: Option<PkgId>) -> bool {
    let Some(provider) = provider else {
        return atom.conflict;
    };
    if atom.conflict && owner == Some(provider.pkg) {
        return true;
    }
    if !has_version_test(atom) {
        return !atom.conflict;
    }
    match provider.version {
        None => atom.conflict,
        Some(version) => atom.matches(version) != atom.conflict,
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

        let mut solver = Solver {
            tag_names,
            repo_tags: Vec::new(),
            names: Vec::new(),
            pkgs: Vec::new(),
            world: Vec::new(),
            dirty: VecDeque::new(),
            ready: BTreeMap::new(),
            ranked: BTreeMap::new(),
            queue_counter: 0,
            pinning_inherit: 0,
            errors: 0,
            changes: Vec::new(),
        };
        let mut interned: HashMap<&'n str, NameId> = HashMap::new();
        let mut identities: HashMap<(&'a str, &'a str, &'a str), PkgId> = HashMap::new();

        for (repo_index, (repository, &tag)) in repositories.iter().zip(&repo_tags).enumerate() {
            let tag_bit = 1u64 << tag;
            for record in repository.packages {
                let identity = (
                    record.name.as_str(),
                    record.version.as_str(),
                    record.checksum.as_str(),
                );
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
                        version: if has_version_test(atom) {
                            atom.version.as_deref()
                        } else {
                            None
                        },
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
                solver.pkgs.push(Pkg {
                    record,
                    name,
                    repos: vec![repo_index],
                    tag_bits: tag_bit,
                    depends,
                    provides,
                    install_if,
                    ss: PkgState::default(),
                });
            }
        }

        // apk sorts the world by name before solving (`cmp_pkgname` in `apk_solver_solve`).
        let mut sorted: Vec<&'n Dependency> = world.iter().collect();
        sorted.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
        for atom in sorted {
            let tag = match atom.tag.as_deref().map(plain_tag) {
                None | Some("") => DEFAULT_TAG,
                Some(tag) => solver
                    .tag_names
                    .iter()
                    .position(|known| known == tag)
                    .ok_or_else(|| SolveError::UnknownTag {
                        dependency: atom.clone(),
                    })?,
            };
            let name = solver.intern(&mut interned, &atom.name);
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
            priority: 0,
            ss: NameState::default(),
        });
        id
    }

    /// apk's `apk_db_name_rdepends`: reverse dependency and install-if lists, and each name's
    /// dequeue priority (real before mixed before purely virtual).
    fn index_reverse_dependencies(&mut self) {
        let mut last_depender = vec![usize::MAX; self.names.len()];
        let mut last_installer = vec![usize::MAX; self.names.len()];
        for name in 0..self.names.len() {
            let mut virtual_providers = 0;
            for index in 0..self.names[name].providers.len() {
                let pkg = self.names[name].providers[index].pkg;
                if self.pkgs[pkg].name != name {
                    virtual_providers += 1;
                }
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
            let providers = self.names[name].providers.len();
            self.names[name].priority = if virtual_providers == 0 {
                0
            } else if virtual_providers != providers {
                1
            } else {
                2
            };
        }
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
            let Some(name) = self.next_unresolved() else {
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
            if frame.in_install_if {
                let Some(&child) = self.names[name].rinstall_if.get(frame.install_if) else {
                    stack.pop();
                    continue;
                };
                frame.install_if += 1;
                if !self.names[child].ss.seen {
                    self.enter_name(child);
                    stack.push(DiscoverFrame::new(child));
                }
                continue;
            }
            let Some(provider) = self.names[name].providers.get(frame.provider).copied() else {
                frame.in_install_if = true;
                continue;
            };
            let pkg = provider.pkg;
            if !frame.in_package {
                if self.pkgs[pkg].ss.seen {
                    self.finish_discovered_provider(name, pkg);
                    frame.provider += 1;
                    continue;
                }
                self.enter_package(pkg);
                frame.in_package = true;
                frame.dep = 0;
                frame.awaiting_child = false;
            }
            if frame.awaiting_child {
                frame.awaiting_child = false;
                let child = self.pkgs[pkg].depends[frame.dep].name;
                self.extend_dep_chain(pkg, child);
                frame.dep += 1;
                continue;
            }
            if let Some(dep) = self.pkgs[pkg].depends.get(frame.dep).copied() {
                if self.names[dep.name].ss.seen {
                    self.extend_dep_chain(pkg, dep.name);
                    frame.dep += 1;
                } else {
                    frame.awaiting_child = true;
                    self.enter_name(dep.name);
                    stack.push(DiscoverFrame::new(dep.name));
                }
                continue;
            }
            frame.in_package = false;
            frame.provider += 1;
            self.finish_discovered_provider(name, pkg);
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
        package.ss.seen = true;
        package.ss.pinning_allowed = DEFAULT_PINNING;
        package.ss.pinning_preferred = DEFAULT_PINNING;
        package.ss.selectable = true;
        package.ss.iif_failed = package.install_if.is_empty();
        package.ss.tag_preferred = tag_preferred;
        package.ss.tag_ok = tag_preferred;
    }

    fn extend_dep_chain(&mut self, pkg: PkgId, child: NameId) {
        let chain = self.names[child].ss.max_dep_chain.saturating_add(1);
        let state = &mut self.pkgs[pkg].ss;
        state.max_dep_chain = state.max_dep_chain.max(chain);
    }

    fn finish_discovered_provider(&mut self, name: NameId, pkg: PkgId) {
        let (iif_failed, chain) = (
            self.pkgs[pkg].ss.iif_failed,
            self.pkgs[pkg].ss.max_dep_chain,
        );
        let state = &mut self.names[name].ss;
        state.no_iif &= iif_failed;
        state.max_dep_chain = state.max_dep_chain.max(chain);
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

    /// apk's `queue_unresolved`: names still to decide.
    fn queue_unresolved(&mut self, name: NameId) {
        let state = &self.names[name].ss;
        if state.locked {
            return;
        }
        let wanted = state.requirers > 0 || state.has_iif;
        match (wanted, state.unresolved) {
            (true, None) => {
                let key = u64::MAX - self.next_generation();
                self.names[name].ss.unresolved = Some(key);
            }
            (false, Some(_)) => self.names[name].ss.unresolved = None,
            _ => {}
        }
        self.refresh_unresolved(name);
    }

    /// Re-files an unresolved name after its state changed, or drops it once it left the list.
    fn refresh_unresolved(&mut self, name: NameId) {
        let priority = self.names[name].priority;
        let state = &mut self.names[name].ss;
        if let Some(key) = state.ready.take() {
            self.ready.remove(&key);
        }
        if let Some(rank) = state.rank.take() {
            self.ranked.remove(&rank);
        }
        let Some(key) = state.unresolved else {
            return;
        };
        if state.reverse_deps_done && state.requirers > 0 && !state.has_options {
            state.ready = Some(key);
            self.ready.insert(key, name);
        }
        let rank = (
            state.requirers == 0,
            priority,
            Reverse(state.max_dep_chain),
            key,
        );
        state.rank = Some(rank);
        self.ranked.insert(rank, name);
    }

    /// The choice at the bottom of apk's solve loop: scanning the unresolved list from its
    /// newest entry, the first name with a single option, no undecided reverse dependencies
    /// and requirers; failing that, the first minimum of `compare_name_dequeue`.
    fn next_unresolved(&self) -> Option<NameId> {
        self.ready
            .values()
            .next()
            .or_else(|| self.ranked.values().next())
            .copied()
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

    /// apk's `disqualify_package`.
    fn disqualify(&mut self, pkg: PkgId) {
        self.pkgs[pkg].ss.selectable = false;
        self.reevaluate_reverse_deps(self.pkgs[pkg].name);
        for index in 0..self.pkgs[pkg].provides.len() {
            self.reevaluate_reverse_deps(self.pkgs[pkg].provides[index].name);
        }
        self.reevaluate_reverse_installif(self.pkgs[pkg].name);
    }

    /// apk's `dependency_satisfiable`.
    fn dependency_satisfiable(&self, owner: PkgId, dep: DepRef<'n>) -> bool {
        let name = &self.names[dep.name];
        if name.ss.locked {
            return is_provided(dep.atom, name.ss.chosen, Some(owner));
        }
        if name.ss.requirers == 0 && is_provided(dep.atom, None, Some(owner)) {
            return true;
        }
        name.providers.iter().any(|provider| {
            self.pkgs[provider.pkg].ss.selectable
                && is_provided(dep.atom, Some(*provider), Some(owner))
        })
    }

    fn name_requirers_changed(&mut self, name: NameId) {
        self.queue_unresolved(name);
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
            let provided = is_provided(dep.atom, Some(provider), parent);
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

    /// apk's `reconsider_name`: re-checks a name's candidates, merges their common dependencies
    /// and applies provides transitivity.
    fn reconsider_name(&mut self, name: NameId) {
        let reevaluate_deps = std::mem::take(&mut self.names[name].ss.reevaluate_deps);
        let reevaluate_iif = std::mem::take(&mut self.names[name].ss.reevaluate_iif);
        let mut first_candidate: Option<PkgId> = None;
        let (mut options, mut tag_not_ok) = (0u32, 0u32);
        let (mut has_iif, mut no_iif) = (false, true);

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
                let (mut triggered, mut failed) = (true, false);
                for dep in &self.pkgs[pkg].install_if {
                    let trigger = &self.names[dep.name].ss;
                    if !trigger.locked {
                        triggered = false;
                        break;
                    }
                    if !is_provided(dep.atom, trigger.chosen, Some(pkg)) {
                        (triggered, failed) = (false, true);
                        break;
                    }
                }
                self.pkgs[pkg].ss.iif_triggered = triggered;
                self.pkgs[pkg].ss.iif_failed = failed;
            }
            if reevaluate_iif && self.pkgs[pkg].ss.iif_triggered {
                for dep in 0..self.pkgs[pkg].install_if.len() {
                    let trigger = self.pkgs[pkg].install_if[dep].name;
                    let parent = self.names[trigger].ss.chosen.map(|chosen| chosen.pkg);
                    self.inherit_pinning(pkg, parent);
                }
            }
            has_iif |= self.pkgs[pkg].ss.iif_triggered;
            no_iif &= self.pkgs[pkg].ss.iif_failed;

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
        }

        let state = &mut self.names[name].ss;
        state.has_options = options > 1 || tag_not_ok > 0;
        state.has_iif = has_iif;
        state.no_iif = no_iif;
        self.queue_unresolved(name);

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
            for provided in self.pkgs[candidate].names() {
                self.names[provided].ss.has_virtual_provides = false;
            }
        }

        let done = self.names[name].rdepends.iter().all(|&other| {
            let state = &self.names[other].ss;
            !state.seen || state.locked
        });
        self.names[name].ss.reverse_deps_done = done;
        self.refresh_unresolved(name);
    }

    /// apk's `compare_providers` for an empty root; `Greater` means `a` is preferred.
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
            .then_with(|| match (a.version, b.version) {
                (Some(va), Some(vb)) => version::compare(va, vb),
                _ => Ordering::Equal,
            })
            .then_with(|| {
                if pa.name == pb.name {
                    version::compare(&pa.record.version, &pb.record.version)
                } else {
                    Ordering::Equal
                }
            })
            .then(pa.provider_priority().cmp(&pb.provider_priority()))
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
        let version = provider.and_then(|provider| provider.version);
        if self.names[name].ss.locked {
            let chosen = self.names[name].ss.chosen;
            if version.is_none() && chosen.and_then(|chosen| chosen.version).is_none() {
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
        state.unresolved = None;
        self.refresh_unresolved(name);

        for index in 0..self.names[name].providers.len() {
            let other = self.names[name].providers[index];
            if Some(other.pkg) == provider.map(|provider| provider.pkg) {
                continue;
            }
            if version.is_none() && other.version.is_none() {
                continue;
            }
            self.disqualify(other.pkg);
        }
        self.reevaluate_reverse_deps(name);
        self.reevaluate_reverse_installif(name);
    }

    /// apk's `select_package`: decides `name`.
    fn select_package(&mut self, name: NameId) {
        let mut chosen: Option<Provider<'n>> = None;
        let state = &self.names[name].ss;
        if state.requirers > 0 || state.has_iif {
            let requirers = state.requirers;
            let provider_count = self.names[name].providers.len();
            for index in 0..provider_count {
                let provider = self.names[name].providers[index];
                let pkg = &self.pkgs[provider.pkg];
                if requirers == 0 && (!pkg.ss.iif_triggered || !pkg.ss.tag_ok) {
                    continue;
                }
                // An unversioned provide without provider_priority is not chosen on its own.
                if provider.version.is_none()
                    && self.names[pkg.name].ss.requirers == 0
                    && pkg.provider_priority() == 0
                    && provider_count > 1
                {
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
                        if !is_provided(dep.atom, chosen, owner) {
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
                            stack.push(Step::InstallIf { pkg, next: 0 });
                        }
                    }
                    Step::InstallIf { pkg, next } => {
                        let own = self.pkgs[pkg].name;
                        if let Some(&other) = self.names[own].rinstall_if.get(next) {
                            stack.push(Step::InstallIf {
                                pkg,
                                next: next + 1,
                            });
                            if self.install_if_met(other) {
                                self.start_name_change(other, &mut stack);
                            }
                        }
                    }
                }
            }
        }
    }

    /// The entry of apk's `cset_gen_name_change`: marks the name and its chosen package and
    /// schedules the package's dependencies.
    fn start_name_change(&mut self, name: NameId, stack: &mut Vec<Step<'n>>) {
        if self.names[name].ss.in_changeset {
            return;
        }
        self.names[name].ss.in_changeset = true;
        let Some(chosen) = self.names[name].ss.chosen else {
            return;
        };
        let pkg = chosen.pkg;
        if self.pkgs[pkg].ss.in_changeset {
            return;
        }
        self.pkgs[pkg].ss.in_changeset = true;
        for provided in self.pkgs[pkg].names() {
            self.names[provided].ss.in_changeset = true;
        }
        stack.push(Step::Change { pkg, next: 0 });
    }

    /// apk's `cset_check_install_by_iif`: every trigger already emitted and met.
    fn install_if_met(&self, name: NameId) -> bool {
        let state = &self.names[name].ss;
        let Some(chosen) = state.chosen else {
            return false;
        };
        if !state.seen || state.in_changeset {
            return false;
        }
        self.pkgs[chosen.pkg].install_if.iter().all(|dep| {
            let trigger = &self.names[dep.name].ss;
            trigger.in_changeset && is_provided(dep.atom, trigger.chosen, Some(chosen.pkg))
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
        for &pkg in &self.changes {
            let package = &mut self.pkgs[pkg];
            package.ss.marked = true;
            for provided in package.names() {
                self.names[provided].ss.present = true;
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

    /// apk's `analyze_deps`: reports each required name nothing was chosen for, once.
    fn analyze_deps(&mut self, deps: &[DepRef<'n>], problems: &mut Vec<Problem>) {
        for dep in deps {
            if dep.atom.conflict {
                continue;
            }
            let state = &mut self.names[dep.name].ss;
            if state.present || state.reported {
                continue;
            }
            state.reported = true;
            problems.push(self.analyze_name(dep.name));
        }
    }

    /// apk's `analyze_name`: a missing or undecidable name and who required it.
    fn analyze_name(&self, name: NameId) -> Problem {
        let entry = &self.names[name];
        let mut details = Vec::new();
        let subject = if entry.providers.is_empty() {
            ProblemSubject::NoSuchPackage {
                name: entry.text.to_owned(),
            }
        } else {
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
                required.push(format!("world[{}]", atom.dep.atom));
            }
        }
        let mut visited = HashSet::new();
        for &other in &entry.rdepends {
            for provider in &self.names[other].providers {
                let pkg = &self.pkgs[provider.pkg];
                if !pkg.ss.marked || !visited.insert(provider.pkg) {
                    continue;
                }
                if let Some(dep) = pkg
                    .depends
                    .iter()
                    .find(|dep| dep.name == name && !dep.atom.conflict)
                {
                    required.push(format!("{}[{}]", pkg.label(), dep.atom));
                }
                break;
            }
        }
        details.push(ProblemDetail {
            kind: DetailKind::RequiredBy,
            items: required,
        });
        Problem { subject, details }
    }

    /// apk's `analyze_package`: masking, conflicting claims and broken atoms of a chosen
    /// package; `None` when it is not at fault.
    fn analyze_package(&self, pkg: PkgId) -> Option<Problem> {
        let package = &self.pkgs[pkg];
        let mut details = Vec::new();

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
                    provide.atom
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

    /// apk's `print_deps`: the world atoms, then the atoms of chosen packages (through the
    /// reverse dependencies of the package's name and provided names), that relate to `pkg`
    /// as `wanted`.
    fn matching_atoms(&self, pkg: PkgId, wanted: Analysis) -> Vec<String> {
        let mut items = Vec::new();
        for atom in &self.world {
            if self.analyze(None, atom.dep, pkg) == wanted {
                items.push(format!("world[{}]", atom.dep.atom));
            }
        }
        let reverse = self.pkgs[pkg]
            .names()
            .flat_map(|name| self.names[name].rdepends.iter().copied());
        let mut visited = HashSet::new();
        for other in reverse {
            for provider in &self.names[other].providers {
                let owner = provider.pkg;
                if !self.pkgs[owner].ss.marked || !visited.insert(owner) {
                    continue;
                }
                for &dep in &self.pkgs[owner].depends {
                    if self.analyze(Some(owner), dep, pkg) == wanted {
                        items.push(format!("{}[{}]", self.pkgs[owner].label(), dep.atom));
                    }
                }
            }
        }
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
            return verdict(is_provided(dep.atom, Some(own), None));
        }
        match package
            .provides
            .iter()
            .find(|provide| provide.name == dep.name)
        {
            Some(provide) => verdict(is_provided(
                dep.atom,
                Some(Provider {
                    pkg,
                    version: provide.version,
                }),
                owner,
            )),
            None => Analysis::Irrelevant,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

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
            let result = solve(&repositories, &atoms(case.world));
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
                "contradictory atoms",
                &["foo<1.2", "foo>1.20"],
                Expect::Fails(
                    "unable to select packages:\n  foo-2.0-r0:\n    breaks: world[foo<1.2]\n    \
                     satisfies: world[foo>1.20]",
                ),
            ),
        ]);
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
                    "unable to select packages:\n  bar-1.0-r0:\n    breaks: world[foo-virtual>=1]",
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
                    "unable to select packages:\n  cmd:sh (virtual):\n    provided by: busybox \
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
            let solution = solve(&repositories, &atoms(world)).expect(name);
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
            .map(|index| pkg(&format!("a{index}"), "1.0-r0").depends(&["so:libmissing.so.1"]))
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
                    "unable to select packages:\n  cmd:sh (virtual):\n    provided by: busybox \
                     dash\n    required by: app-1.0-r0[cmd:sh]",
                ),
            ),
            case(
                "long lists wrap under their label",
                requirers,
                &["a1", "a2", "a3", "a4", "a5", "a6"],
                Expect::Fails(
                    "unable to select packages:\n  so:libmissing.so.1 (no such package):\n    \
                     required by: a1-1.0-r0[so:libmissing.so.1] a2-1.0-r0[so:libmissing.so.1]\n\
                     \x20                a3-1.0-r0[so:libmissing.so.1] \
                     a4-1.0-r0[so:libmissing.so.1]\n\
                     \x20                a5-1.0-r0[so:libmissing.so.1] \
                     a6-1.0-r0[so:libmissing.so.1]",
                ),
            ),
        ]);
    }

    #[test]
    fn structured_problems() {
        let repos = vec![main_repo(vec![])];
        let repositories = repositories(&repos);
        let error = solve(&repositories, &atoms(&["nope"])).expect_err("nothing provides nope");
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
        let error = solve(&repositories, &atoms(&["foo@testing"])).expect_err("unknown tag");
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
        let error = solve(&many, &atoms(&["foo"])).expect_err("too many tags");
        assert_eq!(
            error.to_string(),
            "64 repository tags are configured, at most 63 are supported"
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
        let first = solve(&repositories, &atoms(&["app", "ca-certificates"])).expect("solves");
        let second = solve(&repositories, &atoms(&["ca-certificates", "app"])).expect("solves");
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
                                && (!has_version_test(dep)
                                    || provide.version.as_deref().is_some_and(|v| dep.matches(v)))
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
        let solution = solve(&repositories, &atoms(&world)).expect("solves");
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
        let solution = solve(&repositories, &atoms(&["p0"])).expect("solves");
        assert_eq!(solution.packages.len(), length);
        assert_eq!(
            solution.packages[0].package.name,
            format!("p{}", length - 1)
        );
        assert_eq!(solution.packages[length - 1].package.name, "p0");
    }
}
