//! The "unable to select packages" report: when the solver fails, explains the failure from
//! the packages it did choose, as apk-tools 3.0.6 explains it (`apk_solver_print_errors` and
//! its helpers in `commit.c`), with the same entries, lists and wrapping.

use super::*;

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
pub(super) struct ReportDisplay<'p>(pub(super) &'p [Problem]);

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

impl<'a, 'n> Solver<'a, 'n>
where
    'a: 'n,
{
    /// apk's `apk_solver_print_errors`: explains a failed selection from the packages the
    /// solver did choose.
    pub(super) fn report(&mut self) -> Vec<Problem> {
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
