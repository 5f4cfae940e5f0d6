//! The solver's unit tests: hand-made repositories whose expected selections and reports were
//! checked against apk-tools 3.0.6.

#![allow(clippy::unwrap_used, clippy::expect_used)]

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
    let error = solve(&repositories, &atoms(&["nope"]), ARCH).expect_err("nothing provides nope");
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
    let first = solve(&repositories, &atoms(&["app", "ca-certificates"]), ARCH).expect("solves");
    let second = solve(&repositories, &atoms(&["ca-certificates", "app"]), ARCH).expect("solves");
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
