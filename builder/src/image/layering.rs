//! Which packages get a layer of their own: the `origin` layering strategy over a budget of
//! package layers.
//!
//! Within the budget every package is a layer of its own. Beyond it, packages are grouped by
//! origin as apko's `origin` strategy does: the groups are sorted by installed size, largest
//! first (ties broken by the greatest package name), the first `budget - 1` groups keep a layer
//! each and the rest share one. A group of one package whose data tar can stand as a layer is
//! that data tar, byte for byte; every other group is a layer the builder writes. Layers are
//! ordered by the install position of their first package, so that later packages sit above
//! earlier ones as apk installs them.
//!
//! This module is pure: it only decides, from plain data.

/// One installed package, as the plan sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate<'a> {
    /// Package name.
    pub name: &'a str,
    /// Origin (source package); the name when the index gives none.
    pub origin: &'a str,
    /// Installed size in bytes (the index's `I:`).
    pub installed_size: u64,
    /// Whether its data tar can stand as a layer byte for byte.
    pub usable: bool,
}

/// How a planned layer is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The package's data section, as it is.
    Package(usize),
    /// Written by the builder from the installed filesystem.
    Rebuilt,
}

/// One planned package layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedLayer {
    /// Indices (install positions) of the packages it holds, in install order.
    pub packages: Vec<usize>,
    /// How it is made.
    pub source: Source,
}

/// Plans the package layers of `candidates` (in install order) for at most `budget` layers (a
/// budget of 0 is taken as 1, as apko does).
pub fn plan(candidates: &[Candidate<'_>], budget: u32) -> Vec<PlannedLayer> {
    let budget = usize::try_from(budget.max(1)).unwrap_or(usize::MAX);
    let mut groups: Vec<Vec<usize>> = if candidates.len() <= budget {
        (0..candidates.len()).map(|index| vec![index]).collect()
    } else {
        let mut by_origin: Vec<(&str, Vec<usize>)> = Vec::new();
        for (index, candidate) in candidates.iter().enumerate() {
            match by_origin.iter_mut().find(|(o, _)| *o == candidate.origin) {
                Some((_, members)) => members.push(index),
                None => by_origin.push((candidate.origin, vec![index])),
            }
        }
        let mut groups: Vec<Vec<usize>> = by_origin.into_iter().map(|(_, m)| m).collect();
        let size = |group: &[usize]| -> u64 {
            group
                .iter()
                .map(|&index| candidates[index].installed_size)
                .sum()
        };
        let tiebreaker = |group: &[usize]| -> &str {
            group
                .iter()
                .map(|&index| candidates[index].name)
                .max()
                .unwrap_or_default()
        };
        groups.sort_by(|a, b| {
            size(b)
                .cmp(&size(a))
                .then_with(|| tiebreaker(a).cmp(tiebreaker(b)))
        });
        if groups.len() > budget {
            let rest: Vec<usize> = groups.split_off(budget - 1).concat();
            groups.push(rest);
        }
        groups
    };
    for group in &mut groups {
        group.sort_unstable();
    }
    groups.sort_by_key(|group| group.first().copied());
    groups
        .into_iter()
        .map(|packages| {
            let source = match packages.as_slice() {
                [only] if candidates[*only].usable => Source::Package(*only),
                _ => Source::Rebuilt,
            };
            PlannedLayer { packages, source }
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn candidate<'a>(name: &'a str, origin: &'a str, size: u64) -> Candidate<'a> {
        Candidate {
            name,
            origin,
            installed_size: size,
            usable: true,
        }
    }

    /// The plan as `(package names, rebuilt)`.
    fn check(candidates: &[Candidate<'_>], budget: u32, expected: &[(&[&str], bool)]) {
        let planned: Vec<(Vec<&str>, bool)> = plan(candidates, budget)
            .iter()
            .map(|layer| {
                (
                    layer
                        .packages
                        .iter()
                        .map(|&index| candidates[index].name)
                        .collect(),
                    layer.source == Source::Rebuilt,
                )
            })
            .collect();
        let expected: Vec<(Vec<&str>, bool)> = expected
            .iter()
            .map(|(names, rebuilt)| (names.to_vec(), *rebuilt))
            .collect();
        assert_eq!(planned, expected, "budget {budget}");
    }

    #[test]
    fn packages_within_the_budget_are_layers_of_their_own() {
        let mut packages = vec![
            candidate("musl", "musl", 600),
            candidate("libcrypto3", "openssl", 4000),
            candidate("libssl3", "openssl", 700),
            candidate("app", "app", 100),
        ];
        check(
            &packages,
            32,
            &[
                (&["musl"], false),
                (&["libcrypto3"], false),
                (&["libssl3"], false),
                (&["app"], false),
            ],
        );
        check(
            &packages,
            4,
            &[
                (&["musl"], false),
                (&["libcrypto3"], false),
                (&["libssl3"], false),
                (&["app"], false),
            ],
        );
        // A package whose data tar cannot stand as a layer is rebuilt, alone.
        packages[2].usable = false;
        check(
            &packages,
            32,
            &[
                (&["musl"], false),
                (&["libcrypto3"], false),
                (&["libssl3"], true),
                (&["app"], false),
            ],
        );
    }

    #[test]
    fn beyond_the_budget_origins_are_grouped_largest_first() {
        let packages = vec![
            candidate("musl", "musl", 600),
            candidate("libcrypto3", "openssl", 4000),
            candidate("libssl3", "openssl", 700),
            candidate("zlib", "zlib", 100),
            candidate("app", "app", 100),
        ];
        // Four origins fit a budget of 4: one layer per origin, openssl's rebuilt.
        check(
            &packages,
            4,
            &[
                (&["musl"], false),
                (&["libcrypto3", "libssl3"], true),
                (&["zlib"], false),
                (&["app"], false),
            ],
        );
        // With 3, the two largest origins keep theirs; the rest share the last layer (zlib
        // sorts after app on equal size, so app's group is kept before it: both are merged).
        check(
            &packages,
            3,
            &[
                (&["musl"], false),
                (&["libcrypto3", "libssl3"], true),
                (&["zlib", "app"], true),
            ],
        );
        // Budget 1 and 0: everything in one rebuilt layer.
        for budget in [0, 1] {
            check(
                &packages,
                budget,
                &[(&["musl", "libcrypto3", "libssl3", "zlib", "app"], true)],
            );
        }
    }
}
