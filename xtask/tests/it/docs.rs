//! The documentation is tested: every shell block of README.md, CONTRIBUTING.md and docs/ runs
//! (or, when it needs the network, a cluster or root, is dry-run or parsed), every output a page
//! shows is compared with what the command prints, every Markdown link resolves, and every
//! `cargo xtask ...` command the tool prints as advice parses. The conventions are described in
//! CONTRIBUTING.md ("Docs are tested").

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::*;

const HOW: &str = "see CONTRIBUTING.md, \"Docs are tested\"";

/// A fenced block of a page.
#[derive(Debug)]
struct Block {
    /// 1-based line of the opening fence.
    line: usize,
    info: String,
    body: String,
    /// The command of a `<!-- doc-test output: CMD -->` comment right before the block.
    output_of: Option<String>,
}

fn pages(root: &Path) -> Vec<PathBuf> {
    let mut pages = vec![PathBuf::from("README.md"), PathBuf::from("CONTRIBUTING.md")];
    for dir in ["docs", "docs/dev"] {
        let mut found: Vec<PathBuf> = std::fs::read_dir(root.join(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "md"))
            .map(|p| p.strip_prefix(root).unwrap().to_owned())
            .collect();
        found.sort();
        pages.extend(found);
    }
    pages
}

fn blocks(text: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut open: Option<(String, Block)> = None;
    let mut previous = "";
    for (i, line) in text.lines().enumerate() {
        match &mut open {
            Some((fence, block)) => {
                if line.trim_end() == fence {
                    blocks.push(open.take().unwrap().1);
                } else {
                    block.body.push_str(line);
                    block.body.push('\n');
                }
            }
            None => {
                let trimmed = line.trim_start();
                let ticks = trimmed.len() - trimmed.trim_start_matches('`').len();
                if ticks >= 3 {
                    let output_of = previous
                        .trim()
                        .strip_prefix("<!-- doc-test output:")
                        .and_then(|rest| rest.strip_suffix("-->"))
                        .map(|cmd| cmd.trim().to_owned());
                    open = Some((
                        "`".repeat(ticks),
                        Block {
                            line: i + 1,
                            info: trimmed[ticks..].trim().to_owned(),
                            body: String::new(),
                            output_of,
                        },
                    ));
                }
            }
        }
        if !line.trim().is_empty() {
            previous = line;
        }
    }
    blocks
}

/// Shell lines of a block, with `\` continuations joined and comments kept out.
fn commands(body: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in body.lines() {
        let line = line.trim();
        if let Some(start) = line.strip_suffix('\\') {
            current.push_str(start);
            current.push(' ');
            continue;
        }
        current.push_str(line);
        let command = strip_comment(&current).trim().to_owned();
        if !command.is_empty() {
            out.push(command);
        }
        current.clear();
    }
    out
}

/// Drops a trailing `# comment` (outside quotes).
fn strip_comment(line: &str) -> &str {
    let (mut single, mut double) = (false, false);
    let bytes = line.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        match b {
            b'\'' if !double => single = !single,
            b'"' if !single => double = !double,
            b'#' if !single && !double && (i == 0 || bytes[i - 1] == b' ') => return &line[..i],
            _ => {}
        }
    }
    line
}

/// The xtask arguments of a `[VAR=x ...] cargo xtask ARGS` line, or none for other commands.
fn xtask_args(command: &str) -> Option<String> {
    let at = command.find("cargo xtask")?;
    let before = &command[..at];
    let env_only = before
        .split_whitespace()
        .all(|word| word.contains('=') && !word.starts_with('-'));
    let args = &command[at + "cargo xtask".len()..];
    // up to the end of this command in a pipeline or list
    let end = [" | ", " > ", " && ", ";"]
        .iter()
        .filter_map(|op| args.find(op))
        .min()
        .unwrap_or(args.len());
    env_only.then(|| args[..end].trim().to_owned())
}

/// A scratch copy of the repository to run a page's blocks in: the repository's files (no
/// target/, _out/ or .git), committed to a fresh git repository, and beside it `../cozystack`,
/// a stand-in for a CozyStack clone (one commit with the Talos packaging file the pin's version
/// is read from, tagged as the pin's tag), with the copy's pin pointing at that commit.
fn scratch(name: &str) -> PathBuf {
    let base = temp_dir(name);
    let repo = base.join("repo");
    copy_tree(&repo_root(), &repo);
    let cozystack = base.join("cozystack");
    let profile = cozystack.join("packages/core/talos/images/talos/profiles/installer.yaml");
    std::fs::create_dir_all(profile.parent().unwrap()).unwrap();
    let talos = live_talos_version(); // the copy's lock, so the tree and the lock agree
    std::fs::write(
        &profile,
        format!("arch: amd64\nplatform: metal\nversion: {talos}\n"),
    )
    .unwrap();
    git(&cozystack, &["init", "-q", "-b", "main"]);
    git(&cozystack, &["add", "-A"]);
    git(
        &cozystack,
        &["commit", "-q", "-m", "stand-in for a CozyStack release"],
    );
    let pin_path = repo.join("patches/upstream.json");
    let mut pin: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&pin_path).unwrap()).unwrap();
    let tag = pin["tag"].as_str().unwrap().to_owned();
    git(&cozystack, &["tag", "-a", "-m", "release", &tag]);
    pin["commit"] = git(&cozystack, &["rev-parse", "HEAD"]).into();
    std::fs::write(
        &pin_path,
        serde_json::to_string_pretty(&pin).unwrap() + "\n",
    )
    .unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "scratch copy"]);
    // an `origin` to compare with, as a clone has
    let origin = base.join("origin.git");
    git(&base, &["init", "-q", "--bare", "-b", "main", "origin.git"]);
    git(
        &repo,
        &["remote", "add", "origin", origin.to_str().unwrap()],
    );
    git(&repo, &["push", "-q", "origin", "main"]);
    git(&repo, &["fetch", "-q", "origin"]);
    // `cargo xtask` on PATH is the binary under test; any other cargo command is refused
    let bin = base.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let shim = bin.join("cargo");
    std::fs::write(
        &shim,
        format!(
            "#!/bin/sh\nif [ \"$1\" = xtask ]; then shift; exec '{}' \"$@\"; fi\necho \"doc test: only cargo xtask runs here, not: cargo $*\" >&2\nexit 97\n",
            env!("CARGO_BIN_EXE_xtask")
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).unwrap();
    repo
}

fn copy_tree(src: &Path, dest: &Path) {
    std::fs::create_dir_all(dest).unwrap();
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if [".git", "target", "_out"].iter().any(|n| name == *n) {
            continue;
        }
        let to = dest.join(&name);
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            copy_tree(&entry.path(), &to);
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &to).unwrap();
        }
    }
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = run(Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Doc Test")
        .env("GIT_AUTHOR_EMAIL", "doc@example.org")
        .env("GIT_COMMITTER_NAME", "Doc Test")
        .env("GIT_COMMITTER_EMAIL", "doc@example.org"));
    assert!(out.status.success(), "git {args:?}: {}", stderr(&out));
    stdout(&out).trim().to_owned()
}

/// Runs shell text in the scratch copy, offline: stdout and stderr together, and success.
fn shell(repo: &Path, script: &str, stop_on_error: bool) -> (bool, String) {
    let started = std::time::Instant::now();
    let result = shell_inner(repo, script, stop_on_error);
    let took = started.elapsed();
    if took > std::time::Duration::from_secs(2) {
        eprintln!(
            "slow doc block ({:.1} s): {}",
            took.as_secs_f64(),
            script.lines().next().unwrap_or_default()
        );
    }
    result
}

fn shell_inner(repo: &Path, script: &str, stop_on_error: bool) -> (bool, String) {
    let bin = repo.parent().unwrap().join("bin");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new("bash");
    let set = if stop_on_error {
        "set -e -o pipefail\n"
    } else {
        ""
    };
    cmd.args(["-c", &format!("exec 2>&1\n{set}{script}")])
        .current_dir(repo)
        .env("PATH", path)
        .env("XTASK_ROOT", repo)
        // HOME stays: Go's module and build caches live there (the conformance harness)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("TS_AUTHKEY")
        .env_remove("REGISTRY")
        .env_remove("GITHUB_REPOSITORY_OWNER")
        .env_remove("GITHUB_ACTIONS")
        .env_remove("GITHUB_OUTPUT")
        .env_remove("GITHUB_STEP_SUMMARY")
        .env_remove("COZYSTACK_SOURCE")
        .env_remove("REGISTRY_MIRRORS");
    let out = run(&mut cmd);
    (out.status.success(), stdout(&out))
}

/// Whether `expected` (a page's output block; a `...` line stands for any lines) matches `actual`.
fn matches(expected: &str, actual: &str) -> bool {
    // `...` inside a line stands for any text
    fn line_matches(expected: &str, actual: &str) -> bool {
        let mut pieces = expected.split("...");
        let first = pieces.next().unwrap_or_default();
        let Some(mut rest) = actual.strip_prefix(first) else {
            return false;
        };
        let pieces: Vec<&str> = pieces.collect();
        for (i, piece) in pieces.iter().enumerate() {
            if i + 1 == pieces.len() {
                return rest.ends_with(piece);
            }
            match rest.find(piece) {
                Some(at) => rest = &rest[at + piece.len()..],
                None => return false,
            }
        }
        rest.is_empty()
    }
    fn go(expected: &[&str], actual: &[&str]) -> bool {
        match expected.split_first() {
            None => actual.is_empty(),
            Some((line, _)) if line.trim() == "..." => {
                go(&expected[1..], actual) || (!actual.is_empty() && go(expected, &actual[1..]))
            }
            Some((line, rest)) => actual.first().is_some_and(|a| {
                line_matches(line.trim_end(), a.trim_end()) && go(rest, &actual[1..])
            }),
        }
    }
    let expected: Vec<&str> = expected.trim_matches('\n').lines().collect();
    let actual: Vec<&str> = actual.trim_matches('\n').lines().collect();
    go(&expected, &actual)
}

/// Counts of what the doc test did, printed at the end (and recorded in docs/dev/testing.md).
#[derive(Default)]
struct Tally {
    run: usize,
    dry_run: usize,
    parsed: usize,
    outputs: usize,
}

#[test]
fn every_shell_block_in_the_docs_does_what_its_page_says() {
    let root = repo_root();
    let mut failures = Vec::new();
    let mut tally = Tally::default();
    let dry_run_subcommands = dry_run_subcommands();
    for page in pages(&root) {
        let text = std::fs::read_to_string(root.join(&page)).unwrap();
        let all = blocks(&text);
        if !all
            .iter()
            .any(|b| b.info.starts_with("sh") || b.output_of.is_some())
        {
            continue;
        }
        let name = page.display().to_string().replace('/', "-");
        let repo = scratch(&format!("docs-{name}"));
        for block in all {
            let at = format!("{}:{}", page.display(), block.line);
            let mut words = block.info.split_whitespace();
            let kind = (words.next(), words.next());
            match kind {
                (Some("sh"), None) => {
                    tally.run += 1;
                    let (ok, output) = shell(&repo, &block.body, true);
                    if !ok {
                        failures.push(format!(
                            "{at}: this ```sh block fails when pasted (offline, in a fresh clone):\n{}\n  its output:\n{}\n  fix: correct the commands or the tool; a block that needs the network is ```sh network ({HOW})",
                            indent(&block.body), indent(&output)
                        ));
                    }
                }
                (Some("sh"), Some(mark @ ("network" | "cluster" | "root" | "ci" | "bench" | "manual"))) => {
                    for command in commands(&block.body) {
                        let Some(args) = xtask_args(&command) else { continue };
                        let subcommand = args.split_whitespace().next().unwrap_or_default();
                        let line = command.split("cargo xtask").next().unwrap_or_default();
                        let line = format!("{line}cargo xtask {args}");
                        // `--help` before any `--`: what follows it goes to another program
                        let parse = match placeholders(&line).split_once(" -- ") {
                            Some((ours, _)) => format!("{ours} --help > /dev/null"),
                            None => format!("{} --help > /dev/null", placeholders(&line)),
                        };
                        let mut dry = mark == "network" && dry_run_subcommands.contains(subcommand);
                        let (mut ok, mut output) = (true, String::new());
                        if dry {
                            let check = if args.split_whitespace().any(|w| w == "--dry-run") {
                                line.clone()
                            } else {
                                format!("{line} --dry-run")
                            };
                            (ok, output) = shell(&repo, &placeholders(&check), true);
                            // an option that excludes --dry-run (lock --check) is parsed only
                            if !ok && output.contains("cannot be used with '--dry-run'") {
                                dry = false;
                            }
                        }
                        // a --locked line whose only problem is what `cargo xtask lock` pins
                        // with the network (README's first network step) is what the page says
                        if dry && !ok && output.contains("--locked: variants/extensions.lock cannot be used")
                            && output.lines().filter(|l| l.contains("variants/extensions.lock: field")).all(|l| l.contains("has no digest"))
                        {
                            ok = true;
                        }
                        if dry {
                            tally.dry_run += 1;
                        } else {
                            tally.parsed += 1;
                            (ok, output) = shell(&repo, &parse, true);
                        }
                        if !ok {
                            failures.push(format!(
                                "{at}: in this ```sh {mark} block, `{command}` fails {}:\n{}\n  fix: correct the command on the page (or the tool) ({HOW})",
                                if dry { "with --dry-run" } else { "to parse" },
                                indent(&output)
                            ));
                        }
                    }
                }
                (Some("sh"), Some(other)) => failures.push(format!(
                    "{at}: unknown mark ```sh {other}: use sh, or sh with network, cluster, root, ci, bench or manual ({HOW})"
                )),
                _ => {
                    let shell_like = commands(&block.body)
                        .first()
                        .is_some_and(|c| xtask_args(c).is_some());
                    if shell_like && block.output_of.is_none() && block.info.is_empty() {
                        failures.push(format!(
                            "{at}: a block of commands without an info string is never checked: mark it ```sh (or sh network / sh cluster / sh root) ({HOW})"
                        ));
                    }
                }
            }
            if let Some(command) = &block.output_of {
                tally.outputs += 1;
                let (_, output) = shell(&repo, command, false);
                if !matches(&block.body, &output) {
                    failures.push(format!(
                        "{at}: the output shown for `{command}` has drifted from what it prints.\n  the page shows:\n{}\n  it prints:\n{}\n  fix: update the block (a `...` line stands for any lines), or the message ({HOW})",
                        indent(&block.body), indent(&output)
                    ));
                }
            }
        }
    }
    eprintln!(
        "doc blocks: {} run, {} network lines dry-run, {} lines parsed, {} outputs compared",
        tally.run, tally.dry_run, tally.parsed, tally.outputs
    );
    assert!(tally.run >= 5, "the docs should have offline blocks to run");
    assert!(
        failures.is_empty(),
        "{} doc problem(s):\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// Subcommands that take `--dry-run`.
fn dry_run_subcommands() -> BTreeSet<String> {
    let help = stdout(&run(xtask(&repo_root()).arg("--help")));
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|sub| stdout(&run(xtask(&repo_root()).args([sub, "--help"]))).contains("--dry-run"))
        .map(str::to_owned)
        .collect()
}

/// Fills a command's placeholders with sample values so that it can be parsed: `<owner>`,
/// `V`, `REV`, `{talos_version}` and the like, by the flag they follow.
fn placeholders(command: &str) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut previous = String::new();
    for word in command.split_whitespace() {
        let placeholder = word.starts_with('<') && word.ends_with('>')
            || word.starts_with('{') && word.ends_with('}')
            || (word.len() > 0 && word.chars().all(|c| c.is_ascii_uppercase() || c == '_'));
        let word = if placeholder {
            match previous.as_str() {
                "--variant" => "compute".to_owned(),
                "--talos-version" => live_talos_version(),
                "--base" | "--head" => "HEAD".to_owned(),
                "--registry" => "ghcr.io/acme".to_owned(),
                "--out" => "target/doc-test".to_owned(),
                _ if word == "{}" => continue,
                _ => "x".to_owned(),
            }
        } else {
            word.replace("<owner>", "acme").replace("{}", "")
        };
        previous = word.clone();
        out.push(word);
    }
    out.join(" ")
}

fn indent(text: &str) -> String {
    let mut out = String::new();
    for line in text.trim_end().lines() {
        writeln!(out, "    | {line}").unwrap();
    }
    out.trim_end().to_owned()
}

/// GitHub's anchor for a heading.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(text: &str) -> BTreeSet<String> {
    let mut fence = false;
    let mut out = BTreeSet::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fence = !fence;
        }
        if !fence && line.starts_with('#') {
            out.insert(slug(line.trim_start_matches('#')));
        }
    }
    out
}

/// Prose outside code blocks, with inline code left in place.
fn prose(text: &str) -> Vec<(usize, &str)> {
    let mut fence = false;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fence = !fence;
            continue;
        }
        if !fence {
            out.push((i + 1, line));
        }
    }
    out
}

#[test]
fn every_link_resolves_and_every_page_reference_is_a_link() {
    let root = repo_root();
    let mut failures = Vec::new();
    for page in pages(&root) {
        let text = std::fs::read_to_string(root.join(&page)).unwrap();
        let dir = page.parent().unwrap();
        for (line, prose) in prose(&text) {
            let at = format!("{}:{line}", page.display());
            // [text](target)
            let mut rest = prose;
            let mut plain = String::new();
            while let Some(open) = rest.find("](") {
                let Some(close) = rest[open..].find(')') else {
                    break;
                };
                let target = &rest[open + 2..open + close];
                plain.push_str(&rest[..open]);
                rest = &rest[open + close + 1..];
                if target.contains("://") || target.starts_with("mailto:") {
                    continue;
                }
                let (file, anchor) = target.split_once('#').unwrap_or((target, ""));
                let resolved = if file.is_empty() {
                    page.clone()
                } else {
                    normalize(&dir.join(file))
                };
                if !root.join(&resolved).exists() {
                    failures.push(format!(
                        "{at}: link to `{target}`: {} does not exist",
                        resolved.display()
                    ));
                } else if !anchor.is_empty() && resolved.extension().is_some_and(|e| e == "md") {
                    let linked = std::fs::read_to_string(root.join(&resolved)).unwrap();
                    if !anchors(&linked).contains(anchor) {
                        failures.push(format!(
                            "{at}: link to `{target}`: {} has no heading `#{anchor}`",
                            resolved.display()
                        ));
                    }
                }
            }
            plain.push_str(rest);
            // a page named in prose but not linked
            for word in plain.split(|c: char| c.is_whitespace() || "(),;:`*\"'".contains(c)) {
                let word = word.trim_end_matches('.');
                // an existing page; other paths in prose are examples (`docs/a.md` in a rule)
                if (word.starts_with("docs/") || word == "README.md" || word == "CONTRIBUTING.md")
                    && word.ends_with(".md")
                    && root.join(word).exists()
                    && !plain.contains(&format!("[{word}"))
                    && !plain.contains(&format!("[`{word}`"))
                {
                    failures.push(format!(
                        "{at}: `{word}` is named but not linked: write it as [{word}]({})",
                        relative(dir, Path::new(word)).display()
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} link problem(s):\n{}\nfix: correct the link target or heading ({HOW})",
        failures.len(),
        failures.join("\n")
    );
}

fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

fn relative(from_dir: &Path, to: &Path) -> PathBuf {
    let depth = from_dir.components().count();
    let mut out = PathBuf::new();
    for _ in 0..depth {
        out.push("..");
    }
    out.join(to)
}

/// Every `cargo xtask ...` command the tool prints as advice (in backticks in its messages)
/// parses: a renamed flag or subcommand fails here until the message follows.
#[test]
fn every_command_the_tool_advises_parses() {
    let root = repo_root();
    let mut advised = BTreeSet::new();
    let mut files = vec![root.join("xtask/src")];
    while let Some(dir) = files.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                // unit tests are not advice
                let text = text.split("#[cfg(test)]").next().unwrap();
                for (i, piece) in text.split('`').enumerate() {
                    if i % 2 == 1 && piece.starts_with("cargo xtask ") && !piece.contains('\n') {
                        let shown = path.strip_prefix(&root).unwrap().display().to_string();
                        advised.insert((piece.to_owned(), shown));
                    }
                }
            }
        }
    }
    assert!(advised.len() >= 10, "found only {advised:?}");
    let mut failures = Vec::new();
    for (command, file) in &advised {
        let args = placeholders(command.trim_start_matches("cargo xtask "));
        let args: Vec<&str> = args
            .split_whitespace()
            .take_while(|w| *w != "--")
            .filter(|w| *w != "..." && *w != "[...]")
            .collect();
        let out = run(xtask(&root).args(&args).arg("--help"));
        if !out.status.success() {
            failures.push(format!(
                "{file}: advises `{command}`, which does not parse:\n{}",
                indent(&stderr(&out))
            ));
        }
    }
    eprintln!("{} advised commands parsed", advised.len());
    assert!(
        failures.is_empty(),
        "{}\nfix: correct the advice (or the command line interface)",
        failures.join("\n\n")
    );
}

#[test]
fn output_blocks_match_with_wildcards() {
    assert!(matches("a\n...\nd\n", "a\nb\nc\nd\n"));
    assert!(matches("a...\n", "abc\n"));
    assert!(!matches("a\nd\n", "a\nb\nd\n"));
    assert!(matches(
        "  id 18bf...:v1\n  ...\nz\n",
        "  id 18bf9e:v1\n  x\n  y\nz\n"
    ));
    assert_eq!(
        commands("a \\\n  b # note\n# only\nc '#x'\n"),
        ["a  b", "c '#x'"]
    );
    assert_eq!(
        xtask_args("TS_AUTHKEY=x cargo xtask config --variant g"),
        Some("config --variant g".into())
    );
    assert_eq!(xtask_args("echo cargo xtask plan"), None);
    assert_eq!(
        placeholders("cargo xtask plan --variant V --registry ghcr.io/<owner>"),
        "cargo xtask plan --variant compute --registry ghcr.io/acme"
    );
}
