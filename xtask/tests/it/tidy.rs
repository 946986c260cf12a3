//! Tidy checks: facts about the repository's own shape, as plain tests, all in this file: the
//! workflow linters (actionlint, zizmor, actions pinned by commit), rustfmt, the crate and module
//! graph, no stray files, and no test that names today's Talos pin.
//!
//! The graph: xtask is a few crates in layers (the workspace's Cargo.toml lists them): `domain`
//! at the bottom names no other crate; `infra`, the thin I/O layer, names only the domain; the
//! stage crates (`produce`, `inspect`) name those two and never each other; `xtask`, the
//! binary, names them all. The compiler holds that once each crate's dependencies are right, so
//! the first check reads them, as `cargo metadata` reports them. Inside and across the crates a
//! subcommand (a module `lib.rs` dispatches to) names another only to compose it (`COMPOSES`),
//! and no two modules import each other, directly or around a loop (docs/dev/architecture.md
//! draws the graph): read from the `use` lines (and any other path) of each file, test modules
//! excluded.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use crate::support::*;

type Graph = BTreeMap<String, BTreeSet<String>>;

/// JSON is read through one serde_json reader, the text one: `from_slice` or `from_value` would
/// make rustc compile a second copy of every deserializer they reach (docs/dev/benchmarks.md,
/// session 5). Bytes go through `domain::json::from_bytes`.
#[test]
fn json_is_read_through_the_text_reader_only() {
    let mut offenders = Vec::new();
    for (file, text) in all_sources() {
        for line in code(non_test(&text)) {
            if line.contains("serde_json::from_slice") || line.contains("serde_json::from_value") {
                offenders.push(format!("{file}.rs: {}", line.trim()));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "read JSON with serde_json::from_str, or domain::json::from_bytes for bytes, so \
         that each type's deserializer is compiled once:\n  {}",
        offenders.join("\n  ")
    );
}

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

/// The names after `prefix` (`crate::`, `super::`): `crate::a::b`, `crate::{a, b::c, D}` name
/// `a`, `b` and `D` (a module, or an item the crate's root re-exports).
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
        .filter(|n| !n.is_empty() && n != "self")
        .collect()
}

/// Every file below `dir`, sorted.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Every `.rs` file below `dir`, as (path relative to `dir` without `.rs`, text).
fn sources(dir: &Path) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = walk(dir)
        .into_iter()
        .filter(|path| path.extension().is_some_and(|e| e == "rs"))
        .map(|path| {
            let rel = path.strip_prefix(dir).unwrap().with_extension("");
            let rel = rel.to_string_lossy().trim_end_matches("/mod").to_owned();
            (rel, std::fs::read_to_string(&path).unwrap())
        })
        .collect();
    out.sort();
    out
}

/// What a crate's `lib.rs` re-exports (`pub use m::X;`, `pub use m::{X, Y};`): item -> module.
fn reexports(lib_rs: &str) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for (module, items) in use_lists(lib_rs, "pub use ") {
        for item in items {
            map.insert(item, module.clone());
        }
    }
    map
}

/// The one-line `use` lists of a file that start with `keyword` (`use a::{b, c as d};`): each
/// as its first segment and the names it brings into scope (`a`, [`b`, `d`]).
fn use_lists(text: &str, keyword: &str) -> Vec<(String, Vec<String>)> {
    code(text)
        .filter_map(|line| {
            let rest = line.trim().strip_prefix(keyword)?;
            let (head, items) = rest.trim_end_matches(';').split_once("::")?;
            let names = items
                .trim_matches(['{', '}'])
                .split(',')
                .map(|item| {
                    item.split(" as ")
                        .last()
                        .unwrap_or_default()
                        .trim()
                        .to_owned()
                })
                .filter(|name| !name.is_empty())
                .collect();
            Some((head.to_owned(), names))
        })
        .collect()
}

/// Every module of every crate, as `crate::module`, and the modules it names: `crate::x` and,
/// in a top-level file, `super::x` in its own crate; `c::x` in another of the workspace's crates;
/// an item a crate's root re-exports (`domain::Plan`) counts as its module (`domain::plan`).
/// A crate's `lib.rs` and `main.rs` only declare and dispatch, and are left out.
fn module_graph() -> Graph {
    let crates = crates();
    let modules: BTreeMap<String, BTreeSet<String>> = crates
        .iter()
        .map(|(krate, dir)| {
            let names = sources(dir)
                .into_iter()
                .map(|(file, _)| file.split('/').next().unwrap().to_owned())
                .filter(|m| m != "lib" && m != "main")
                .collect();
            (krate.clone(), names)
        })
        .collect();
    let reexported: BTreeMap<String, BTreeMap<String, String>> = crates
        .iter()
        .map(|(krate, dir)| {
            let lib = std::fs::read_to_string(dir.join("lib.rs")).unwrap_or_default();
            (krate.clone(), reexports(&lib))
        })
        .collect();
    let mut graph = Graph::new();
    for (krate, dir) in &crates {
        for (file, text) in sources(dir) {
            let module = file.split('/').next().unwrap().to_owned();
            if module == "lib" || module == "main" {
                continue;
            }
            let text = non_test(&text);
            let mut named = BTreeSet::new();
            let mut add = |to: &str, prefix: &str| {
                for name in names_after(text, prefix) {
                    let m = reexported[to].get(&name).cloned().unwrap_or(name);
                    if modules[to].contains(&m) && !(to == krate && m == module) {
                        named.insert(format!("{to}::{m}"));
                    }
                }
            };
            add(krate, "crate::");
            if !file.contains('/') {
                add(krate, "super::");
            }
            for other in modules.keys().filter(|c| *c != krate) {
                add(other, &format!("{other}::"));
            }
            graph
                .entry(format!("{krate}::{module}"))
                .or_default()
                .extend(named);
        }
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

/// The workspace's crates (name, source directory).
fn crates() -> Vec<(String, std::path::PathBuf)> {
    workspace_crates()
        .into_iter()
        .map(|c| (c.name, c.dir.join("src")))
        .collect()
}

/// Every `.rs` file of every crate, as (`crate/path` without `.rs`, text).
fn all_sources() -> Vec<(String, String)> {
    crates()
        .into_iter()
        .flat_map(|(krate, dir)| {
            sources(&dir)
                .into_iter()
                .map(move |(file, text)| (format!("{krate}/{file}"), text))
        })
        .collect()
}

/// The layers, bottom first: a crate names only crates of the layers below its own
/// (docs/dev/architecture.md).
const LAYERS: &[&[&str]] = &[&["domain"], &["infra"], &["produce", "inspect"], &["xtask"]];

#[test]
fn crates_name_only_the_layers_below_them() {
    let crates = workspace_crates();
    let names: BTreeSet<&str> = crates.iter().map(|c| c.name.as_str()).collect();
    assert!(
        names.contains("domain") && names.contains("xtask"),
        "{names:?}"
    );
    let layer = |c: &str| LAYERS.iter().position(|l| l.contains(&c));
    let mut wrong = Vec::new();
    for krate in &crates {
        let Some(mine) = layer(&krate.name) else {
            wrong.push(format!("{} is in no layer (add it to LAYERS)", krate.name));
            continue;
        };
        // every table counts: cargo allows a cycle through dev-dependencies, the layers do not
        for dep in &krate.depends_on {
            if layer(dep).is_none_or(|theirs| theirs >= mine) {
                wrong.push(format!("{} -> {dep}", krate.name));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "crates that name a crate of their own layer or one above (move what both need down, \
         into domain or infra, or let xtask's lib.rs hand one a function of the other; a new \
         crate goes into LAYERS in tests/it/tidy.rs and docs/dev/architecture.md):\n  {}",
        wrong.join("\n  ")
    );
}

/// Every external command goes through the runner (`xtask/infra/src/cmd.rs`: printed exactly
/// under `--dry-run`, secrets redacted, failures named) and every git through
/// `xtask/infra/src/git.rs`, which scrubs the inherited GIT_DIR and friends.
#[test]
fn commands_start_only_through_the_runner_and_git_only_through_its_wrapper() {
    let mut offenders = Vec::new();
    for (file, text) in all_sources() {
        for line in code(non_test(&text)) {
            let spawns = line.contains("Command::new(") || line.contains("xshell");
            let git = line.contains("Cmd::new(\"git\")");
            if (spawns && file != "infra/cmd") || (git && file != "infra/git") {
                offenders.push(format!("{file}.rs: {}", line.trim()));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "commands start through infra::cmd::Cmd (and git through infra::git::at / anywhere), \
         so that --dry-run prints them exactly and git ignores an inherited GIT_DIR:\n  {}",
        offenders.join("\n  ")
    );
}

#[test]
fn modules_import_each_other_in_one_direction_only() {
    let graph = module_graph();
    assert!(
        graph["produce::build"].contains("produce::lock")
            && graph["domain::plan"].contains("domain::variant"),
        "{graph:?}"
    );
    let found = cycles(&graph);
    assert!(
        found.is_empty(),
        "import cycles between xtask's modules (move what both need down, into domain or a thin \
         I/O module of infra, or let xtask's lib.rs hand one a function of the other):\n  {}",
        found.join("\n  ")
    );
}

/// The subcommand modules: those xtask's `lib.rs` dispatches a `Command` to (`Command::X(args)
/// => x::run(...)`). Every other module is the domain's or a thin I/O module.
fn subcommands(lib_rs: &str) -> BTreeSet<String> {
    lib_rs
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
    (
        "ci",
        "build",
        "ci runs the build stage with the plan and lock it checked",
    ),
    ("ci", "lock", "ci checks the lock stage (`lock::ensure`)"),
    ("ci", "patch", "ci prepares the patched tree for matchbox"),
    ("ci", "smoke", "ci runs smoke on what it built"),
    (
        "build",
        "lock",
        "build refreshes or checks the lock (`lock::ensure`)",
    ),
    (
        "build",
        "patch",
        "matchbox is built from the patched tree (`patch::prepare_variant`)",
    ),
    (
        "patch",
        "upstream",
        "the series applies to the pristine tree (`upstream::ensure`)",
    ),
];

/// The modules xtask's `lib.rs` declares (`mod x;` -> `xtask::x`) or imports from the stage
/// crates (`use c::{x, y};` -> `c::x`, `c::y`), as `crate::module`.
fn dispatched_modules(lib_rs: &str) -> BTreeSet<String> {
    let declared = code(lib_rs)
        .filter_map(|line| line.trim().strip_prefix("mod "))
        .map(|module| format!("xtask::{}", module.trim_end_matches(';')));
    let imported = use_lists(lib_rs, "use ")
        .into_iter()
        .flat_map(|(krate, items)| items.into_iter().map(move |m| format!("{krate}::{m}")));
    declared.chain(imported).collect()
}

#[test]
fn subcommands_name_no_other_subcommand_and_io_modules_name_none() {
    let lib = repo_root().join("xtask/src/lib.rs");
    let subcommands = subcommands(&std::fs::read_to_string(&lib).unwrap());
    assert!(
        subcommands.contains("build") && subcommands.contains("lock"),
        "xtask's lib.rs dispatches to: {subcommands:?}"
    );
    // `crate::module` -> the subcommand's name, for the modules lib.rs takes its subcommands
    // from (`mod ci;`, `use produce::{build, ...};`): the domain's `lock` and `plan` are types
    let dispatched = dispatched_modules(&std::fs::read_to_string(&lib).unwrap());
    let stage = |node: &str| {
        let (_, module) = node.split_once("::").unwrap();
        (subcommands.contains(module) && dispatched.contains(node)).then(|| module.to_owned())
    };
    let graph: Graph = module_graph()
        .into_iter()
        .map(|(node, deps)| {
            let name = stage(&node).unwrap_or(node);
            let deps = deps.iter().map(|d| stage(d).unwrap_or(d.clone())).collect();
            (name, deps)
        })
        .collect();
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
        "arrows that point sideways or up (move what both need into domain or a thin I/O \
         module of infra; a stage composing another goes into COMPOSES in tests/it/tidy.rs with its reason, \
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

/// The `pub` items of every crate (name, `crate/file`) that no non-test code names but their
/// own declaration. In one crate rustc warned of dead code; across crates an unused `pub` item
/// is not dead to the compiler, so this check stands in. Items only for tests (under a
/// `#[cfg(test)]` or `#[cfg(any(test, ...))]` attribute) are left out. It reads names, not
/// paths: an item whose name appears anywhere else in code (an `impl` header, a string, a
/// same-named item of another crate) counts as used, so it finds the plainly dead, not all.
fn unused_pub_items(sources: &[(String, String)]) -> Vec<String> {
    let mut uses: BTreeMap<&str, usize> = BTreeMap::new();
    let texts: Vec<(&str, &str)> = sources
        .iter()
        .map(|(file, text)| (file.as_str(), non_test(text)))
        .collect();
    for (_, text) in &texts {
        for line in code(text) {
            for word in line.split(|c: char| !(c.is_alphanumeric() || c == '_')) {
                *uses.entry(word).or_default() += 1;
            }
        }
    }
    let mut unused = Vec::new();
    for (file, text) in &texts {
        let mut test_only = false;
        for line in text.lines() {
            let line = line.trim_start();
            // `pub const fn x` declares `x`, as `pub fn x` does
            let item = line.strip_prefix("pub ").map(|rest| {
                ["const ", "async ", "unsafe "]
                    .iter()
                    .fold(rest, |r, q| match r.strip_prefix(q) {
                        Some(after) if after.starts_with("fn ") => after,
                        _ => r,
                    })
            });
            let declared = ["fn", "struct", "enum", "const", "type", "trait", "static"]
                .iter()
                .find_map(|kind| item?.strip_prefix(kind)?.strip_prefix(' '));
            if let Some(rest) = declared {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !test_only && uses.get(name.as_str()).copied().unwrap_or(0) <= 1 {
                    unused.push(format!("{file}: {name}"));
                }
            }
            if !line.starts_with("#[") && !line.starts_with("//") {
                test_only = false;
            }
            if line.starts_with("#[cfg(any(test") || line.starts_with("#[cfg(test)]") {
                test_only = true;
            }
        }
    }
    unused
}

#[test]
fn every_pub_item_is_used_outside_tests() {
    let unused = unused_pub_items(&all_sources());
    assert!(
        unused.is_empty(),
        "pub items that no non-test code names (delete them, or put a test-only one under \
         #[cfg(test)]):\n  {}",
        unused.join("\n  ")
    );
}

#[test]
fn the_unused_item_reader_sees_declarations_uses_and_test_only_items() {
    let sources = [
        (
            "a/x".to_owned(),
            "pub fn used() {}\npub struct Lonely;\npub const fn konst() {}\n// konst\n#[cfg(test)]\npub fn fixture() {}\n#[cfg(test)]\nmod tests {\n    fn t() { Lonely; }\n}".to_owned(),
        ),
        ("b/y".to_owned(), "fn f() { a::x::used() }".to_owned()),
    ];
    assert_eq!(unused_pub_items(&sources), ["a/x: Lonely", "a/x: konst"]);
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

// --- the workflow's linters -----------------------------------------------------------------

#[test]
fn the_workspace_is_formatted_as_rustfmt_formats_it() {
    // rustfmt comes with the toolchain (rustup's default profile). A minimal profile lacks it,
    // and `cargo xtask test` cannot add a toolchain component where only package registries
    // are reachable: skipped, visibly, even with XTASK_REQUIRE_TOOLS.
    let version = Command::new(env!("CARGO"))
        .args(["fmt", "--version"])
        .output();
    if !version.is_ok_and(|v| v.status.success()) {
        skipped("rustfmt is not installed with this toolchain (rustup component add rustfmt)");
        return;
    }
    let out = run(Command::new(env!("CARGO"))
        .current_dir(repo_root())
        .args(["fmt", "--all", "--check"]));
    assert_success(
        &out,
        "cargo fmt --all --check: files differ from rustfmt's formatting: run `cargo fmt --all`",
    );
}

fn workflow() -> String {
    std::fs::read_to_string(repo_root().join(".github/workflows/build.yml")).unwrap()
}

#[test]
fn workflows_pass_actionlint() {
    // With shellcheck on PATH, actionlint also checks the `run:` scripts.
    if !have_tools(&["actionlint", "shellcheck"]) {
        return;
    }
    // The files by name: without them actionlint looks for the enclosing git checkout, which
    // the bump test's copy of the repository is not.
    let dir = repo_root().join(".github/workflows");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no workflow in {}", dir.display());
    let out = run(Command::new("actionlint")
        .current_dir(repo_root())
        .arg("-no-color")
        .args(&files));
    assert_success(&out, "actionlint: it found problems");
}

#[test]
fn workflows_pass_zizmor_auditor_persona() {
    if !have_tools(&["zizmor"]) {
        return;
    }
    // --offline: no GitHub API lookups (impostor commits, known vulnerable actions) from here.
    let out = run(Command::new("zizmor")
        .current_dir(repo_root())
        .args([
            "--offline",
            "--persona",
            "auditor",
            "--no-progress",
            "--format",
            "plain",
        ])
        .arg(".github/workflows"));
    assert_success(
        &out,
        "zizmor: it found problems (fix each, or justify it in a comment with an ignore)",
    );
    // Every ignore is justified by a comment on the lines before it.
    let text = workflow();
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if line.contains("zizmor: ignore[") {
            assert!(
                i > 0 && lines[i - 1].trim_start().starts_with('#'),
                "an ignored zizmor finding needs a comment saying why: {line}"
            );
        }
    }
}

#[test]
fn workflow_pins_only_github_actions_by_full_sha() {
    let text = workflow();
    let mut uses = 0;
    for line in text.lines() {
        let Some(action) = line.trim().trim_start_matches("- ").strip_prefix("uses:") else {
            continue;
        };
        uses += 1;
        let action = action.trim();
        let (name, rest) = action.split_once('@').expect("uses: owner/name@sha");
        assert!(
            name.starts_with("actions/") || name == "sigstore/cosign-installer",
            "only GitHub's own actions and Sigstore's installer: {line}"
        );
        let sha = rest.split_whitespace().next().unwrap();
        assert!(
            sha.len() == 40 && sha.bytes().all(|b| b.is_ascii_hexdigit()),
            "pinned by full commit sha: {line}"
        );
        assert!(rest.contains("# v"), "a version comment: {line}");
    }
    assert!(uses > 0);
    assert!(
        text.contains("\npermissions: {}\n"),
        "top-level permissions are empty"
    );
}

// --- tests do not track the pins ------------------------------------------------------------

/// The files under xtask/tests/ that may name the Talos release the live lock pins, and why:
/// they are data a bump changes, never tests.
const MAY_NAME_THE_PIN: &[(&str, &str)] = &[
    (
        "xtask/tests/imager/go.mod",
        "the imager module requires exactly the pinned release (bumped with the lock)",
    ),
    (
        "xtask/tests/imager/go.sum",
        "the hashes of that requirement",
    ),
];

/// How often `version` occurs in `text` as a whole version (`v1.2.3`, not `v1.2.30`).
fn occurrences(text: &str, version: &str) -> usize {
    text.match_indices(version)
        .filter(|(i, _)| !text[i + version.len()..].starts_with(|c: char| c.is_ascii_digit()))
        .count()
}

/// Every file below `dir`, as (path relative to the repository, text); binary files skipped.
fn files_below(dir: &Path) -> Vec<(String, String)> {
    walk(dir)
        .into_iter()
        .filter_map(|path| {
            let text = std::fs::read_to_string(&path).ok()?;
            let rel = path.strip_prefix(repo_root()).unwrap();
            Some((rel.to_string_lossy().into_owned(), text))
        })
        .collect()
}

/// Tests use fixture data (xtask/tests/fixtures/repo/README.md) or read the live lock, so that a
/// Talos bump changes data files, not tests: neither xtask/tests/ (sources, golden files,
/// fixtures) nor a test module of any crate names the release the live lock pins.
#[test]
fn no_test_names_the_pinned_talos_version() {
    let talos = live_talos_version();
    let mut found = Vec::new();
    for (path, text) in files_below(&repo_root().join("xtask/tests")) {
        let n = occurrences(&text, &talos);
        if n > 0 && !MAY_NAME_THE_PIN.iter().any(|(p, _)| *p == path) {
            found.push(format!("{path}: {n}"));
        }
    }
    for (file, text) in all_sources() {
        let n = occurrences(&text[non_test(&text).len()..], &talos);
        if n > 0 {
            found.push(format!("{file}.rs (test module): {n}"));
        }
    }
    assert!(
        found.is_empty(),
        "tests name {talos}, the release variants/extensions.lock pins, so a Talos bump would \
         break them:\n  {}\n    fix: write the fixture release (xtask/tests/fixtures/repo, \
         tests/it/support's FIXTURE_TALOS) or, in a test about the live files, read the lock \
         (live_talos_version())",
        found.join("\n  ")
    );
}

#[test]
fn occurrences_count_whole_versions_only() {
    assert_eq!(
        occurrences("v1.2.3 v1.2.30 v1.2.3-x :v1.2.3\n", "v1.2.3"),
        3
    );
}

/// The fixture lock is for the fixture release, which is not (and never becomes) a real pin.
#[test]
fn the_fixture_lock_is_for_the_made_up_release() {
    let text = std::fs::read_to_string(fixture_dir().join("variants/extensions.lock")).unwrap();
    let lock: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(lock["talos_version"], FIXTURE_TALOS);
    assert_ne!(live_talos_version(), FIXTURE_TALOS);
}

/// The live data, which the other tests leave to fixtures: the committed variants and lock load,
/// agree (every extension has an entry, every tag is for the lock's release) and plan.
#[test]
fn the_committed_variants_and_lock_plan() {
    let out = run(xtask(&repo_root())
        .args(["plan", "--json", "--registry", "ghcr.io/acme"])
        .env("CARGO_TARGET_DIR", temp_dir("tidy-live-plan")));
    assert_success(&out, "plan --json: the committed variants/ do not plan");
    let plan: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(plan["talos_version"], live_talos_version().as_str());
    let files = std::fs::read_dir(repo_root().join("variants"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "json")
        })
        .count();
    assert_eq!(
        plan["variants"].as_array().unwrap().len(),
        files,
        "{plan:#}"
    );
    // every extension resolved to a reference, none built for another Talos release
    for v in plan["variants"].as_array().unwrap() {
        let wanted = v["extensions"].as_array().unwrap().len();
        assert_eq!(
            v["extension_refs"].as_array().unwrap().len(),
            wanted,
            "{v:#}"
        );
    }
    let warnings = stderr(&out);
    assert!(
        !warnings.contains("resolved for Talos"),
        "the lock is for another release than the plan's:\n{warnings}"
    );
    // every entry whose tag names the Talos release it was built for names the lock's
    let text = std::fs::read_to_string(repo_root().join("variants/extensions.lock")).unwrap();
    let lock = domain::Lock::parse(&text).unwrap();
    for (name, reference) in &lock.extensions {
        let built_for = reference
            .tag
            .as_deref()
            .and_then(domain::TalosVersion::built_for);
        assert!(
            built_for.is_none_or(|v| v == lock.talos_version),
            "extensions.{name} = {reference} is built for another release than {}",
            lock.talos_version
        );
    }
}
