//! Tidy checks: facts about the repository's own shape, as plain tests.
//!
//! The module graph: xtask's modules may only point down. `src/domain/` is the bottom layer
//! and names nothing else of the crate; the thin I/O modules name no subcommand; a subcommand
//! (a module `main.rs` dispatches to) names another only to compose it (`COMPOSES`); no two
//! modules import each other, directly or around a loop (docs/dev/architecture.md draws the
//! graph and the layers). Read from the `use crate::` lines (and any other `crate::` path) of
//! each file, test modules excluded.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::support::*;

type Graph = BTreeMap<String, BTreeSet<String>>;

/// The non-test part of a source file: everything before its `#[cfg(test)] mod tests` (test-only
/// items elsewhere, such as a `Default` for fixtures, are counted: they are rare and small).
fn non_test(text: &str) -> &str {
    text.find("#[cfg(test)]\nmod tests")
        .map_or(text, |i| &text[..i])
}

/// Lines that are not comments.
fn code(text: &str) -> impl Iterator<Item = &str> {
    text.lines().filter(|l| !l.trim_start().starts_with("//"))
}

/// The modules named after `prefix` (`crate::`, `super::`): `crate::a::b`, `crate::{a, b::c}`.
fn names_after(text: &str, prefix: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let joined: String = code(text).collect::<Vec<_>>().join("\n");
    let mut rest = joined.as_str();
    while let Some(i) = rest.find(prefix) {
        let before = rest[..i].chars().last();
        rest = &rest[i + prefix.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            // top-level items of the group: split at commas outside nested braces
            let (mut depth, mut item) = (0, String::new());
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        names.insert(std::mem::take(&mut item));
                        continue;
                    }
                    _ => {}
                }
                item.push(c);
            }
            names.insert(item);
        } else {
            names.insert(rest.to_owned());
        }
    }
    names
        .iter()
        .map(|n| {
            n.trim()
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect::<String>()
        })
        .filter(|n| !n.is_empty() && n != "self" && n.starts_with(|c: char| c.is_lowercase()))
        .collect()
}

/// Every `.rs` file below `dir`, as (path relative to `dir` without `.rs`, text).
fn sources(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(dir).unwrap().with_extension("");
                let rel = rel.to_string_lossy().trim_end_matches("/mod").to_owned();
                out.push((rel, std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// Top-level modules and what each names of the crate.
fn crate_graph(src: &Path) -> Graph {
    let mut graph = Graph::new();
    for (file, text) in sources(src) {
        let module = file.split('/').next().unwrap().to_owned();
        if module == "main" {
            continue;
        }
        let deps = graph.entry(module.clone()).or_default();
        deps.extend(
            names_after(non_test(&text), "crate::")
                .into_iter()
                .filter(|d| *d != module),
        );
    }
    graph
}

/// The domain's own modules and what each names of its siblings (`super::x`, `crate::domain::x`).
fn domain_graph(src: &Path) -> Graph {
    let mut graph = Graph::new();
    for (file, text) in sources(&src.join("domain")) {
        let module = file.split('/').next().unwrap().to_owned();
        if module == "mod" {
            continue;
        }
        let text = non_test(&text);
        let mut deps = names_after(text, "super::");
        deps.extend(names_after(text, "crate::domain::"));
        deps.remove(&module);
        graph.entry(module).or_default().extend(deps);
    }
    graph
}

/// Each cycle once, as the path around it (`a -> b -> a`).
fn cycles(graph: &Graph) -> Vec<String> {
    fn visit(
        graph: &Graph,
        node: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
        found: &mut BTreeSet<String>,
    ) {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            // start each cycle at its smallest name so it is reported once
            let min = cycle.iter().enumerate().min_by_key(|(_, n)| *n).unwrap().0;
            cycle.rotate_left(min);
            cycle.push(cycle[0].clone());
            found.insert(cycle.join(" -> "));
            return;
        }
        if done.contains(node) {
            return;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if graph.contains_key(next) {
                visit(graph, next, path, done, found);
            }
        }
        path.pop();
        done.insert(node.to_owned());
    }
    let mut found = BTreeSet::new();
    for node in graph.keys() {
        visit(
            graph,
            node,
            &mut Vec::new(),
            &mut BTreeSet::new(),
            &mut found,
        );
    }
    found.into_iter().collect()
}

fn src() -> std::path::PathBuf {
    repo_root().join("xtask/src")
}

#[test]
fn the_domain_names_nothing_else_of_the_crate() {
    let mut offenders = Vec::new();
    for (file, text) in sources(&src().join("domain")) {
        for line in code(non_test(&text)) {
            let mut rest = line;
            while let Some(i) = rest.find("crate::") {
                if !rest[i..].starts_with("crate::domain") {
                    offenders.push(format!("src/domain/{file}.rs: {}", line.trim()));
                    break;
                }
                rest = &rest[i + 1..];
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "the domain layer imports nothing of the crate (move the type into src/domain/, or the \
         I/O out of it):\n  {}",
        offenders.join("\n  ")
    );
}

/// Every external command goes through the runner (`src/cmd.rs`: printed exactly under
/// `--dry-run`, secrets redacted, failures named) and every git through `src/git.rs`, which
/// scrubs the inherited GIT_DIR and friends.
#[test]
fn commands_start_only_through_the_runner_and_git_only_through_its_wrapper() {
    let mut offenders = Vec::new();
    for (file, text) in sources(&src()) {
        for line in code(non_test(&text)) {
            let spawns = line.contains("Command::new(") || line.contains("xshell");
            let git = line.contains("Cmd::new(\"git\")");
            if (spawns && file != "cmd") || (git && file != "git") {
                offenders.push(format!("src/{file}.rs: {}", line.trim()));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "commands start through crate::cmd::Cmd (and git through crate::git::at / anywhere), \
         so that --dry-run prints them exactly and git ignores an inherited GIT_DIR:\n  {}",
        offenders.join("\n  ")
    );
}

#[test]
fn modules_import_each_other_in_one_direction_only() {
    let graph = crate_graph(&src());
    assert!(
        graph.contains_key("domain") && graph.contains_key("build"),
        "{graph:?}"
    );
    let found = cycles(&graph);
    assert!(
        found.is_empty(),
        "import cycles between xtask's modules (move what both need down, into src/domain/ or a \
         thin I/O module, or let main.rs hand one a function of the other):\n  {}",
        found.join("\n  ")
    );
    let inner = cycles(&domain_graph(&src()));
    assert!(
        inner.is_empty(),
        "import cycles inside src/domain/:\n  {}",
        inner.join("\n  ")
    );
}

/// The subcommand modules: those `main.rs` dispatches a `Command` to (`Command::X(args) =>
/// x::run(...)`). Every other top-level module but `domain` is a thin I/O module.
fn subcommands(main_rs: &str) -> BTreeSet<String> {
    main_rs
        .lines()
        .filter(|l| l.trim_start().starts_with("Command::"))
        .filter_map(|l| {
            let call = l.split("=>").nth(1)?.trim();
            Some(call.split("::").next()?.to_owned())
        })
        .collect()
}

/// Arrows from one subcommand to another that stay, each with its reason: a stage composing the
/// stage before it through that stage's entry point. Anything else a subcommand needs from
/// another belongs in the domain or a thin I/O module. Remove an entry when its arrow goes.
const COMPOSES: &[(&str, &str, &str)] = &[
    ("ci", "build", "ci runs the build stage with the plan and lock it checked"),
    ("ci", "lock", "ci checks the lock stage (`lock::ensure`)"),
    ("ci", "patch", "ci prepares the patched tree for matchbox"),
    ("ci", "smoke", "ci runs smoke on what it built"),
    ("build", "lock", "build refreshes or checks the lock (`lock::ensure`)"),
    ("build", "patch", "matchbox is built from the patched tree (`patch::prepare_variant`)"),
    ("patch", "upstream", "the series applies to the pristine tree (`upstream::ensure`)"),
];

#[test]
fn subcommands_name_no_other_subcommand_and_io_modules_name_none() {
    let src = src();
    let graph = crate_graph(&src);
    let subcommands = subcommands(&std::fs::read_to_string(src.join("main.rs")).unwrap());
    assert!(
        subcommands.contains("build") && subcommands.contains("lock"),
        "main.rs dispatches to: {subcommands:?}"
    );
    let allowed: BTreeSet<(&str, &str)> = COMPOSES.iter().map(|(a, b, _)| (*a, *b)).collect();
    let mut wrong = Vec::new();
    let mut seen = BTreeSet::new();
    for (module, deps) in &graph {
        for dep in deps.iter().filter(|d| subcommands.contains(*d)) {
            let is_subcommand = subcommands.contains(module);
            if is_subcommand && allowed.contains(&(module.as_str(), dep.as_str())) {
                seen.insert((module.as_str(), dep.as_str()));
            } else if is_subcommand {
                wrong.push(format!("subcommand {module} -> subcommand {dep}"));
            } else {
                wrong.push(format!("I/O module {module} -> subcommand {dep}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "arrows that point sideways or up (move what both need into src/domain/ or a thin I/O \
         module; a stage composing another goes into COMPOSES in tests/it/tidy.rs with its reason, \
         docs/dev/architecture.md lists the layers):\n  {}",
        wrong.join("\n  ")
    );
    let stale: Vec<String> = allowed
        .difference(&seen)
        .map(|(a, b)| format!("{a} -> {b}"))
        .collect();
    assert!(
        stale.is_empty(),
        "these arrows are gone: remove them from COMPOSES in tests/it/tidy.rs (and from \
         docs/dev/architecture.md):\n  {}",
        stale.join("\n  ")
    );
}

#[test]
fn the_graph_reader_sees_paths_groups_and_cycles() {
    assert_eq!(
        subcommands("    match cli.command {\n        Command::Lock(args) => lock::run(&project, args),\n        Command::Config(args) => config::run(&project, args, conformance::judge_role),\n    }"),
        ["config", "lock"].map(String::from).into()
    );
    let text = "use crate::a::X;\nuse crate::{b, c::{D, E}, self};\n// crate::comment\nfn f() { crate::d::g(); x::crate::e(); }\n#[cfg(test)]\nmod tests {\nuse crate::t;\n}";
    assert_eq!(
        names_after(non_test(text), "crate::"),
        ["a", "b", "c", "d"].map(String::from).into()
    );
    let graph: Graph = [("a", "b"), ("b", "c"), ("c", "a"), ("d", "a")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), [v.to_owned()].into()))
        .collect();
    assert_eq!(cycles(&graph), ["a -> b -> c -> a"]);
}

#[test]
fn no_stray_files_are_tracked() {
    let out = run(std::process::Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(repo_root()));
    if !out.status.success() {
        return skipped("not a git checkout");
    }
    let stray: Vec<String> = stdout(&out)
        .split('\0')
        .filter(|f| {
            [".tmp", ".orig", ".rej", ".bak", "~"]
                .iter()
                .any(|end| f.ends_with(end))
        })
        .map(str::to_owned)
        .collect();
    assert!(
        stray.is_empty(),
        "leftovers of an editor or a patch run are tracked: {stray:?}\n    fix: git rm them"
    );
}
