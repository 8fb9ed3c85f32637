//! The GitHub Actions workflow: actionlint finds nothing in it (and does
//! find a broken one), and its steps only call `cargo xtask` commands the
//! CI guide (docs/ci.md) documents: the pipeline lives in the xtask, not a
//! second copy in YAML.

use yaml_rust2::{Yaml, YamlLoader};

fn workflow() -> Yaml {
    let path = xtask::workspace().join(".github/workflows/matrix.yml");
    let text = std::fs::read_to_string(path).unwrap();
    YamlLoader::load_from_str(&text).unwrap().remove(0)
}

fn steps(job: &Yaml) -> &Vec<Yaml> {
    job["steps"].as_vec().expect("steps")
}

#[test]
fn the_workflow_is_lint_clean_and_calls_only_documented_xtask_commands() {
    xtask::actionlint::check().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.yml");
    std::fs::write(&bad, "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ matrix.nope }}\n").unwrap();
    let found = xtask::actionlint::lint(&[bad]).unwrap();
    assert!(
        found.iter().any(|l| l.contains("\"nope\" is not defined")),
        "{found:?}"
    );

    let w = workflow();
    let jobs = &w["jobs"];
    let guide = std::fs::read_to_string(xtask::workspace().join("docs/ci.md")).unwrap();
    let mut xtask_calls = Vec::new();
    for name in ["plan", "cell", "merge"] {
        for s in steps(&jobs[name]) {
            let Some(run) = s["run"].as_str() else {
                continue;
            };
            for line in run.lines() {
                for banned in [
                    "patch-and-test",
                    "make ",
                    "ninja",
                    "qemu-system",
                    "./configure",
                    "meson",
                ] {
                    assert!(
                        !line.contains(banned),
                        "{name}: a step runs {banned:?} itself: {line}"
                    );
                }
                if let Some(at) = line.find("cargo xtask ") {
                    // The command and its subcommand, e.g. `cargo xtask matrix run`.
                    let words: Vec<&str> = line[at..]
                        .split_whitespace()
                        .take(4)
                        .map(|w| w.trim_end_matches(|c: char| !(c.is_alphanumeric() || c == '-')))
                        .collect();
                    let cmd = if words.get(2) == Some(&"matrix") {
                        words.join(" ")
                    } else {
                        words[..3].join(" ")
                    };
                    assert!(
                        guide.contains(&cmd),
                        "{name}: `{cmd}` is not in docs/ci.md, the CI guide"
                    );
                    xtask_calls.push(cmd);
                }
            }
        }
    }
    for want in [
        "cargo xtask matrix plan",
        "cargo xtask matrix run",
        "cargo xtask matrix merge",
        "cargo xtask deps",
    ] {
        assert!(
            xtask_calls.iter().any(|c| c == want),
            "{want} missing: {xtask_calls:?}"
        );
    }
    // One job per cell, none cancelling the others, each with its cache and
    // its artifact; the merge writes the job summary and uploads.
    let cell = &jobs["cell"];
    assert_eq!(cell["strategy"]["fail-fast"].as_bool(), Some(false));
    assert!(cell["strategy"]["matrix"]
        .as_str()
        .unwrap()
        .contains("fromJSON(needs.plan.outputs.matrix)"));
    let uses = |job: &Yaml| -> Vec<String> {
        steps(job)
            .iter()
            .filter_map(|s| s["uses"].as_str().map(str::to_string))
            .collect()
    };
    let cache = steps(cell)
        .iter()
        .find(|s| s["uses"].as_str() == Some("actions/cache@v4"))
        .unwrap();
    assert!(cache["with"]["key"].as_str().unwrap().contains("matrix.id"));
    assert!(uses(cell).contains(&"actions/upload-artifact@v4".to_string()));
    assert!(uses(&jobs["merge"]).contains(&"actions/download-artifact@v4".to_string()));
    assert!(steps(&jobs["merge"]).iter().any(|s| s["run"]
        .as_str()
        .is_some_and(|r| r.contains("GITHUB_STEP_SUMMARY"))));
}
