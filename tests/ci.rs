//! CI runs the test command the README gives a newcomer: the command after "Run the tests:"
//! in README.md is the last command of `.ci/run`.

use std::path::Path;

fn read(name: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn ci_runs_the_readme_test_command() {
    let readme = read("README.md");
    let after = readme.split_once("Run the tests:").expect("README.md says 'Run the tests:'").1;
    let command = after.lines().find(|l| l.starts_with("    ")).expect("an indented command after 'Run the tests:'").trim();
    let ci = read(".ci/run");
    let last = ci.lines().map(str::trim).rfind(|l| !l.is_empty() && !l.starts_with('#')).expect(".ci/run runs something");
    assert_eq!(last, command, ".ci/run's last command and README.md's test command differ");
}
