//! The thin git layer: resolve revisions, fetch what a shallow clone lacks, list the diff.
//!
//! Every call runs plumbing (`diff-tree`, `ls-tree`, `rev-parse`, `merge-base`) with options
//! that pin what user configuration could change: no rename detection, no external diff, no
//! colour, NUL-separated names, submodules never ignored. Variables that redirect git to another
//! repository or inject configuration are removed from the environment (`infra::git`).

use std::collections::BTreeSet;

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};

use infra::cmd::Cmd;

use super::decision::Change;
use super::rules::Rules;
use domain::diag::short;

/// Configuration pinned on every call; porcelain-only settings are listed too, in case a
/// future git reads them in plumbing.
const CONFIG: &[&str] = &[
    "-c",
    "core.quotePath=false",
    "-c",
    "diff.renames=false",
    "-c",
    "color.ui=never",
    "-c",
    "diff.ignoreSubmodules=none",
    "-c",
    "core.useReplaceRefs=false",
];

pub struct Git {
    repo: Utf8PathBuf,
    /// Fetches done, for the report.
    pub notes: Vec<String>,
}

impl Git {
    pub fn new(repo: &Utf8Path) -> Git {
        Git {
            repo: repo.to_owned(),
            notes: Vec::new(),
        }
    }

    fn git(&self, args: &[&str]) -> Cmd {
        infra::git::at(&self.repo)
            .args(["--no-pager", "--literal-pathspecs"])
            .args(CONFIG)
            .args(args)
    }

    /// stdout of a successful call; a failure quotes git's stderr.
    fn output(&self, args: &[&str]) -> Result<Vec<u8>> {
        self.git(args).read_bytes()
    }

    fn line(&self, args: &[&str]) -> Result<String> {
        let out = self.output(args)?;
        Ok(String::from_utf8_lossy(&out).trim().to_owned())
    }

    /// The commit a revision names, if it can be read here.
    pub fn commit(&self, rev: &str) -> Option<String> {
        let spec = format!("{rev}^{{commit}}");
        self.line(&[
            "rev-parse",
            "--verify",
            "--quiet",
            "--end-of-options",
            &spec,
        ])
        .ok()
        .filter(|s| !s.is_empty())
    }

    pub fn is_shallow(&self) -> bool {
        self.line(&["rev-parse", "--is-shallow-repository"])
            .is_ok_and(|s| s == "true")
    }

    /// `git fetch` from `origin`, touching nothing but the refs named.
    fn fetch(&self, options: &[&str], refspecs: &[&str]) -> Result<()> {
        let mut args = vec![
            "fetch",
            "--quiet",
            "--no-tags",
            "--no-write-fetch-head",
            "--recurse-submodules=no",
        ];
        args.extend_from_slice(options);
        args.push("origin");
        args.extend_from_slice(refspecs);
        // never a prompt for credentials: CI has no terminal, and a person sees the error
        self.git(&args)
            .env("GIT_TERMINAL_PROMPT", "0")
            .read_bytes()?;
        Ok(())
    }

    /// The commit `rev` names; a missing object id is fetched from `origin` (only that commit
    /// when the clone is shallow: comparing two trees needs no history).
    pub fn require_commit(&mut self, rev: &str) -> Result<String> {
        if let Some(sha) = self.commit(rev) {
            return Ok(sha);
        }
        if domain::diag::is_commit_id(rev) {
            let depth: &[&str] = if self.is_shallow() {
                &["--depth=1"]
            } else {
                &[]
            };
            let fetched = self.fetch(depth, &[rev]);
            if let Some(sha) = self.commit(rev) {
                self.notes.push(format!("fetched {}", short(rev)));
                return Ok(sha);
            }
            fetched.with_context(|| {
                format!("commit {rev} is not in this clone and cannot be fetched")
            })?;
        }
        // a name, not a full object id (the only revisions fetched by name): perhaps a typo of a branch or tag this clone has
        let refs = self
            .output(&["for-each-ref", "--format=%(refname:short)"])
            .map(|out| String::from_utf8_lossy(&out).into_owned())
            .unwrap_or_default();
        let refs: Vec<&str> = refs.lines().collect();
        bail!(
            "revision {} cannot be read in this clone{}",
            super::output::shown(rev),
            match domain::diag::did_you_mean(rev, &refs) {
                hint if hint.is_empty() => String::new(),
                hint => format!(" ({})", hint.trim_end()),
            }
        )
    }

    /// The tip of `branch`: the remote-tracking ref, else the local branch, else fetched.
    pub fn branch_tip(&mut self, branch: &str) -> Result<String> {
        let remote = format!("refs/remotes/origin/{branch}");
        if let Some(sha) = self.commit(&remote) {
            return Ok(sha);
        }
        if let Some(sha) = self.commit(&format!("refs/heads/{branch}")) {
            return Ok(sha);
        }
        let refspec = format!("+refs/heads/{branch}:{remote}");
        let fetched = self.fetch(&[], &[&refspec]);
        if let Some(sha) = self.commit(&remote) {
            self.notes
                .push(format!("fetched branch {}", super::output::shown(branch)));
            return Ok(sha);
        }
        fetched.with_context(|| {
            format!(
                "branch {} is not in this clone and cannot be fetched",
                super::output::shown(branch)
            )
        })?;
        bail!("branch {} cannot be read", super::output::shown(branch))
    }

    /// Parent `n` of commit `rev` (1: the first). A shallow clone is completed first when the
    /// parent is missing from it.
    pub fn parent(&mut self, rev: &str, n: u8) -> Result<String> {
        let spec = format!("{rev}^{n}");
        if let Some(sha) = self.commit(&spec) {
            return Ok(sha);
        }
        if self.is_shallow() {
            self.fetch(&["--unshallow"], &[])
                .context("the clone is shallow and fetching its full history failed")?;
            self.notes
                .push("fetched full history (the clone was shallow)".into());
            if let Some(sha) = self.commit(&spec) {
                return Ok(sha);
            }
        }
        bail!("commit {} has no parent {n}", short(rev))
    }

    /// The best common ancestor of `a` and `b`. A shallow clone is completed first: a merge base
    /// found in truncated history can be older than the real one.
    pub fn merge_base(&mut self, a: &str, b: &str) -> Result<String> {
        if self.is_shallow() {
            self.fetch(&["--unshallow"], &[])
                .context("the clone is shallow and fetching its full history failed")?;
            self.notes
                .push("fetched full history (the clone was shallow)".into());
        }
        let sha = self.line(&["merge-base", "--end-of-options", a, b])?;
        if sha.is_empty() {
            bail!("{} and {} have no common ancestor", short(a), short(b));
        }
        Ok(sha)
    }

    /// Every path that differs between the trees of `base` and `head`. Renames and copies are
    /// not detected, so each shows as a deletion and an addition: both paths are seen.
    pub fn diff(&self, base: &str, head: &str) -> Result<Vec<Change>> {
        let out = self.output(&[
            "diff-tree",
            "-r",
            "-z",
            "--name-status",
            "--no-renames",
            "--no-ext-diff",
            "--no-textconv",
            "--no-color",
            "--ignore-submodules=none",
            base,
            head,
            "--",
        ])?;
        parse_name_status(&out)
    }

    /// Every symbolic link (mode 120000) in the tree of `rev`, by path.
    pub fn symlinks_at(&self, rev: &str) -> Result<Vec<String>> {
        let out = self.output(&["ls-tree", "-r", "-z", "--full-tree", rev])?;
        parse_symlinks(&out)
    }

    /// Variant names whose file exists in the tree of `rev`.
    pub fn variants_at(&self, rev: &str, rules: &Rules) -> Result<BTreeSet<String>> {
        let dir = rules.variants_dir();
        let mut args = vec!["ls-tree", "-z", "--full-tree", "--name-only", rev];
        let spec = format!("{dir}/");
        if !dir.is_empty() {
            args.push("--");
            args.push(&spec);
        }
        let out = self.output(&args)?;
        Ok(out
            .split(|b| *b == 0)
            .filter(|p| !p.is_empty())
            .filter_map(|p| rules.variant_of(&String::from_utf8_lossy(p)))
            .collect())
    }
}

/// `git diff --name-status -z`: `STATUS NUL path NUL`, or `STATUS NUL old NUL new NUL` for
/// renames and copies (kept general although renames are off: both paths count).
pub fn parse_name_status(out: &[u8]) -> Result<Vec<Change>> {
    let mut fields = out.split(|b| *b == 0);
    let mut changes = Vec::new();
    while let Some(status) = fields.next() {
        if status.is_empty() {
            continue;
        }
        let letter = *status.first().expect("not empty") as char;
        let paths = if matches!(letter, 'R' | 'C') { 2 } else { 1 };
        for _ in 0..paths {
            let path = fields
                .next()
                .filter(|p| !p.is_empty())
                .with_context(|| format!("git diff output ends after status {letter}"))?;
            changes.push(Change {
                status: letter,
                path: String::from_utf8_lossy(path).into_owned(),
            });
        }
    }
    Ok(changes)
}

/// `git ls-tree -z`: `MODE SP TYPE SP OBJECT TAB PATH NUL`; the paths whose mode is a link.
pub fn parse_symlinks(out: &[u8]) -> Result<Vec<String>> {
    let mut links = Vec::new();
    for record in out.split(|b| *b == 0).filter(|r| !r.is_empty()) {
        let tab = record
            .iter()
            .position(|b| *b == b'\t')
            .context("git ls-tree output has a record without a path")?;
        if record.starts_with(b"120000 ") {
            links.push(String::from_utf8_lossy(&record[tab + 1..]).into_owned());
        }
    }
    Ok(links)
}

/// Variant names from the working tree, when git cannot list them.
pub fn variants_on_disk(repo: &Utf8Path, rules: &Rules) -> BTreeSet<String> {
    let dir = repo.join(rules.variants_dir());
    let mut names = BTreeSet::new();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return names;
    };
    for entry in entries.flatten() {
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if let Some(variant) = rules.variant_of(&format!("{}/{name}", rules.variants_dir())) {
            names.insert(variant);
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_status_keeps_both_paths_of_renames_and_odd_names_exactly() {
        let out = b"M\0a b\0R087\0patches/x\0docs/x\0D\0new\nline\0C100\0s\0t\0A\0\xc3\xbc\0";
        let changes = parse_name_status(out).unwrap();
        let got: Vec<(char, &str)> = changes
            .iter()
            .map(|c| (c.status, c.path.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ('M', "a b"),
                ('R', "patches/x"),
                ('R', "docs/x"),
                ('D', "new\nline"),
                ('C', "s"),
                ('C', "t"),
                ('A', "ü")
            ]
        );
        assert!(parse_name_status(b"R100\0only-old\0").is_err());
    }

    #[test]
    fn links_are_read_from_the_tree_listing() {
        let out = [
            "100644 blob aaaa\tdocs/a.md",
            "120000 blob bbbb\tvariants/g w.json",
            "040000 tree cccc\tx",
            "160000 commit dddd\tvendor/up",
        ]
        .map(|r| format!("{r}\0"))
        .concat();
        let out = out.as_bytes();
        assert_eq!(parse_symlinks(out).unwrap(), ["variants/g w.json"]);
        assert!(parse_symlinks(b"120000 blob x\0").is_err());
    }

    #[test]
    fn only_full_object_ids_are_fetched_by_name() {
        use domain::diag::is_commit_id;
        assert!(is_commit_id(&"a".repeat(40)));
        assert!(is_commit_id(&"0".repeat(64)));
        assert!(!is_commit_id("main"));
        assert!(!is_commit_id(&format!("--{}", "a".repeat(38))));
    }
}
