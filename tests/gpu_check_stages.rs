//! Every test with a cuda variant runs in the GPU check: some smoke or cuda line of
//! scripts/gpu-check-tests.txt (the test runs of scripts/gpu-check.sh) selects it. A
//! cuda variant no line selects would never run anywhere: CI has no GPU, and the check
//! is the only place one runs. (tests/pytorch_parity.rs's `tensor_cores::cuda_tf32`
//! once went unrun that way, under a filter `cuda::`; the planted case below is that.)
//!
//! The tests with a cuda variant are read off the test executables themselves
//! (`--list --ignored`: every cuda variant is ignored without a GPU), the ones this
//! `cargo test` built beside this one, found through their dep-info files; each line's
//! selection is what libtest lists for its arguments, on cuda and, with "cuda" made
//! "emu" as the rehearsal makes it, on the emulator.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One line of scripts/gpu-check-tests.txt.
#[derive(Clone, Debug)]
struct Line {
    group: String,
    name: String,
    executable: String,
    arguments: Vec<String>,
}

const GROUPS: [&str; 3] = ["smoke", "cuda", "sanitize"];

fn lines(text: &str) -> Vec<Line> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            assert!(
                fields.len() >= 5,
                "gpu-check-tests.txt: a line of fewer than 5 fields: {l}"
            );
            assert!(
                GROUPS.contains(&fields[0]),
                "gpu-check-tests.txt: unknown group: {l}"
            );
            let cap: u32 = fields[2]
                .parse()
                .unwrap_or_else(|_| panic!("a cap in seconds: {l}"));
            assert!(
                (1..=120).contains(&cap),
                "gpu-check-tests.txt: a cap of {cap} s: {l}"
            );
            Line {
                group: fields[0].to_string(),
                name: fields[1].to_string(),
                executable: fields[3].to_string(),
                arguments: fields[4..].iter().map(|a| a.to_string()).collect(),
            }
        })
        .collect()
}

fn stage_file() -> Vec<Line> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/gpu-check-tests.txt");
    lines(&std::fs::read_to_string(&path).unwrap())
}

/// The test targets: tests/NAME.rs for every NAME.
fn test_targets() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Each test target's executable from this build: in this executable's directory, the
/// newest NAME-HASH whose dep-info names tests/NAME.rs as its root (a binary's unit
/// tests, src/bin/NAME.rs, can share the name).
fn executables() -> BTreeMap<String, PathBuf> {
    let me = std::env::current_exe().unwrap();
    let dir = me.parent().unwrap();
    let mut found = BTreeMap::new();
    for target in test_targets() {
        let root = format!("tests/{target}.rs");
        let newest = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                let name = p.file_name().unwrap().to_string_lossy();
                name.strip_prefix(&format!("{target}-"))
                    .is_some_and(|hash| {
                        hash.len() == 16 && hash.chars().all(|c| c.is_ascii_hexdigit())
                    })
            })
            .filter(|p| {
                let info = std::fs::read_to_string(p.with_extension("d")).unwrap_or_default();
                let first = info.lines().next().unwrap_or("");
                first.split_whitespace().nth(1) == Some(root.as_str())
            })
            .max_by_key(|p| std::fs::metadata(p).unwrap().modified().unwrap());
        let exe = newest.unwrap_or_else(|| {
            panic!(
                "no executable of {root} beside {}: build every test first \
                 (cargo test --release --no-run)",
                me.display()
            )
        });
        found.insert(target, exe);
    }
    found
}

/// The tests `exe` lists for `arguments` (libtest's own selection).
fn listed(exe: &Path, arguments: &[String]) -> Vec<String> {
    let out = Command::new(exe)
        .arg("--list")
        .args(arguments)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{} --list {arguments:?} failed",
        exe.display()
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_suffix(": test"))
        .map(str::to_string)
        .collect()
}

/// Whether a test is a cuda variant: a path segment `cuda`, or one starting `cuda_`.
fn is_cuda_variant(test: &str) -> bool {
    test.split("::")
        .any(|s| s == "cuda" || s.starts_with("cuda_"))
}

/// The cuda variants of every executable that no smoke or cuda line selects, as
/// "executable: test".
fn unselected(executables: &BTreeMap<String, PathBuf>, lines: &[Line]) -> Vec<String> {
    let mut missing = Vec::new();
    for (target, exe) in executables {
        let cuda: Vec<String> = listed(exe, &["--ignored".to_string()])
            .into_iter()
            .filter(|t| is_cuda_variant(t))
            .collect();
        let selected: Vec<String> = lines
            .iter()
            .filter(|l| l.group != "sanitize" && &l.executable == target)
            .flat_map(|l| listed(exe, &l.arguments))
            .collect();
        missing.extend(
            cuda.into_iter()
                .filter(|t| !selected.contains(t))
                .map(|t| format!("{target}: {t}")),
        );
    }
    missing
}

#[test]
fn every_cuda_variant_is_selected_by_a_stage_of_the_gpu_check() {
    let executables = executables();
    let lines = stage_file();
    let missing = unselected(&executables, &lines);
    assert!(
        missing.is_empty(),
        "cuda variants no line of scripts/gpu-check-tests.txt selects (they would never run):\n{}",
        missing.join("\n")
    );
    // Not vacuous: the check has cuda variants in several executables.
    let with_cuda = executables
        .values()
        .filter(|exe| {
            listed(exe, &["--ignored".into()])
                .iter()
                .any(|t| is_cuda_variant(t))
        })
        .count();
    assert!(
        with_cuda >= 10,
        "only {with_cuda} executables have cuda variants"
    );
}

#[test]
fn the_old_filter_would_have_left_the_tensor_core_parity_unrun() {
    let executables = executables();
    let mut lines = stage_file();
    for line in &mut lines {
        if line.executable == "pytorch_parity" {
            line.arguments = vec!["--include-ignored".into(), "cuda::".into()];
        }
    }
    assert_eq!(
        unselected(&executables, &lines),
        [
            "pytorch_parity: tensor_cores::cuda_bf16",
            "pytorch_parity: tensor_cores::cuda_tf32"
        ]
    );
}

#[test]
fn every_line_selects_tests_on_cuda_and_in_the_rehearsal() {
    let executables = executables();
    for line in stage_file() {
        let exe = executables.get(&line.executable).unwrap_or_else(|| {
            panic!(
                "{} {}: no test target tests/{}.rs",
                line.group, line.name, line.executable
            )
        });
        let rehearsed: Vec<String> = line
            .arguments
            .iter()
            .map(|a| a.replace("cuda", "emu"))
            .collect();
        for (arguments, on) in [(&line.arguments, "cuda"), (&rehearsed, "the rehearsal")] {
            let tests = listed(exe, arguments);
            assert!(
                !tests.is_empty(),
                "{} {}: {} {arguments:?} selects no test on {on}",
                line.group,
                line.name,
                line.executable
            );
            if on == "cuda" {
                assert!(
                    tests.iter().all(|t| is_cuda_variant(t)),
                    "{} {}: selects tests that are not cuda variants: {tests:?}",
                    line.group,
                    line.name
                );
            }
        }
    }
}
