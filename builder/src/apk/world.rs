//! The world as `apk add` builds it: one constraint per name. An atom for a name already in
//! the world replaces the earlier one in place (apk-tools' `apk_deps_add`), so
//! `apk add b=2.0 b~2.0` asks for `b~2.0` alone, at the position `b=2.0` had.

use super::constraint::{ConstraintError, Dependency};

/// Adds `dependency` to `world`, replacing an existing atom for the same name in place.
pub fn add(world: &mut Vec<Dependency>, dependency: Dependency) {
    match world.iter_mut().find(|atom| atom.name == dependency.name) {
        Some(existing) => *existing = dependency,
        None => world.push(dependency),
    }
}

/// Parses `apk add` arguments into a world, applying [`add`] to each in order.
pub fn from_atoms<S: AsRef<str>>(atoms: &[S]) -> Result<Vec<Dependency>, ConstraintError> {
    let mut world = Vec::with_capacity(atoms.len());
    for atom in atoms {
        add(&mut world, Dependency::parse(atom.as_ref())?);
    }
    Ok(world)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(world: &[Dependency]) -> Vec<String> {
        world.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_later_atom_for_the_same_name_replaces_the_earlier_in_place() {
        let world = from_atoms(&["b=2.0", "a", "b~2.0"]).unwrap();
        assert_eq!(texts(&world), ["b~2.0", "a"]);
        let world = from_atoms(&["!c", "c", "d"]).unwrap();
        assert_eq!(texts(&world), ["c", "d"]);
    }

    #[test]
    fn a_bad_atom_fails_the_whole_world() {
        assert!(from_atoms(&["a", "b="]).is_err());
    }
}
