//! The committed example repository (`examples/repo`, `examples/keys`) is exactly what
//! `make-example-repo` generates, so the README's offline build uses packages anyone can
//! reproduce.

use std::path::{Path, PathBuf};

use crate::workspace_root;

fn files_under(root: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push(path.strip_prefix(root).unwrap().to_path_buf());
            }
        }
    }
    files.sort();
    files
}

#[test]
fn committed_example_repository_is_up_to_date() {
    let examples = workspace_root().join("examples");
    let fresh = tempfile::tempdir().unwrap();
    securebuild_tests::example_repo::write_example(fresh.path()).unwrap();
    for sub in ["repo", "keys"] {
        let generated = fresh.path().join(sub);
        let committed = examples.join(sub);
        let names = files_under(&generated);
        assert_eq!(names, files_under(&committed), "files under examples/{sub}");
        for name in names {
            assert!(
                std::fs::read(generated.join(&name)).unwrap()
                    == std::fs::read(committed.join(&name)).unwrap(),
                "examples/{sub}/{} is stale: run `cargo run -p securebuild-tests --bin make-example-repo -- examples`",
                name.display()
            );
        }
    }
}
