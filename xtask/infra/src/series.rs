//! The patch series as data: the `patches/series` list, what each patch file touches, the
//! normalised form `--refresh` writes, and where git says a patch stopped applying.
//!
//! Everything here is pure (text in, typed values out); `patch.rs` runs git around it.

use std::collections::BTreeSet;

use domain::diag::Finding;

pub const SERIES: &str = "patches/series";

/// One entry of `patches/series`.
#[derive(Debug)]
pub struct Entry {
    pub name: String,
    /// 1-based line in the series file, for error messages.
    pub line: usize,
}

/// Parses `patches/series`: one patch file name per line, applied in order; `#` starts a
/// comment (whole line or after whitespace), blank lines are ignored.
pub fn parse_series(text: &str) -> Result<Vec<Entry>, Vec<Finding>> {
    let (entries, findings) = check_series(text);
    if findings.is_empty() {
        Ok(entries)
    } else {
        Err(findings)
    }
}

/// [`parse_series`] that keeps the well-formed entries beside the findings, so that the
/// caller can check their files in the same run.
pub fn check_series(text: &str) -> (Vec<Entry>, Vec<Finding>) {
    let mut entries: Vec<Entry> = Vec::new();
    let mut findings = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let name = match raw.find('#') {
            Some(0) => continue,
            Some(at) if raw[..at].ends_with(char::is_whitespace) => raw[..at].trim(),
            _ => raw.trim(),
        };
        if name.is_empty() {
            continue;
        }
        let field = format!("line {line}");
        if name.contains(char::is_whitespace) {
            findings.push(
                Finding::new(SERIES, field, "one patch file name per line")
                    .value(format!("{name:?}"))
                    .fix("put each patch on its own line"),
            );
        } else if name.contains('/') || name.starts_with('.') || !name.ends_with(".patch") {
            findings.push(
                Finding::new(SERIES, field, "not a patch file name in patches/")
                    .value(format!("{name:?}"))
                    .fix("name a file in patches/ ending in .patch, e.g. 0001-makefile-arch.patch"),
            );
        } else if let Some(first) = entries.iter().find(|e| e.name == name) {
            findings.push(
                Finding::new(
                    SERIES,
                    field,
                    format!("listed twice (first on line {})", first.line),
                )
                .value(format!("{name:?}"))
                .fix("remove the second entry"),
            );
        } else {
            entries.push(Entry {
                name: name.to_owned(),
                line,
            });
        }
    }
    (entries, findings)
}

/// The leading comment block of a series file, kept when `--refresh` rewrites the list.
pub fn series_header(text: &str) -> String {
    let mut header = String::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() && !header.is_empty() {
            header.push_str(line);
            header.push('\n');
        } else {
            break;
        }
    }
    let trimmed = header.trim_end_matches('\n');
    if trimmed.is_empty() {
        DEFAULT_HEADER.to_owned()
    } else {
        format!("{trimmed}\n")
    }
}

pub const DEFAULT_HEADER: &str = "\
# The patch series against the upstream tree pinned in upstream.json, applied in this order by
# `cargo xtask patch`. One patch file name per line; `#` starts a comment.
# `cargo xtask patch --refresh` rewrites the list below from the commits of a patched tree.
";

/// The series file text for `names`, under `header`.
pub fn render_series(header: &str, names: &[String]) -> String {
    let mut text = header.to_owned();
    for name in names {
        text.push_str(name);
        text.push('\n');
    }
    text
}

/// What one patch file says it does.
#[derive(Default)]
pub struct PatchInfo {
    /// The subject line without the `[PATCH ...]` prefix.
    pub subject: String,
    pub files: Vec<FilePatch>,
}

#[derive(Default)]
pub struct FilePatch {
    /// Path before the change (differs from `path` for renames and copies).
    pub old_path: String,
    /// Path after the change.
    pub path: String,
    pub status: Status,
    pub old_mode: Option<String>,
    pub new_mode: Option<String>,
    pub hunks: Vec<Hunk>,
    /// A binary patch: its `index` line must stay (git needs the full blob ids).
    pub binary: bool,
}

#[derive(Debug, PartialEq, Eq, Default)]
pub enum Status {
    #[default]
    Modified,
    Added,
    Deleted,
    Renamed,
    Copied,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hunk {
    /// The `@@ -a,b +c,d @@ context` line.
    pub header: String,
    /// First line of the hunk in the file before the patch (what git reports on failure).
    pub old_start: u64,
}

impl FilePatch {
    /// The paths this change touches in a tree, renames counting both ends: the same set
    /// whether git records the change as a rename or as a deletion plus an addition.
    pub fn touched(&self) -> Vec<&str> {
        match self.status {
            Status::Renamed => vec![self.old_path.as_str(), self.path.as_str()],
            _ => vec![self.path.as_str()],
        }
    }

    /// The mode the file has after the patch, when the patch says so.
    pub fn declared_mode(&self) -> Option<&str> {
        match self.status {
            Status::Deleted => None,
            _ => self.new_mode.as_deref(),
        }
    }
}

impl PatchInfo {
    pub fn touched(&self) -> BTreeSet<String> {
        let mut touched = BTreeSet::new();
        for file in &self.files {
            for path in file.touched() {
                touched.insert(path.to_owned());
            }
        }
        touched
    }

    pub fn file(&self, path: &str) -> Option<&FilePatch> {
        self.files
            .iter()
            .find(|f| f.path == path || f.old_path == path)
    }
}

/// Reads a patch in the format `git format-patch` writes (a plain `git diff` works too).
pub fn parse_patch(text: &str) -> PatchInfo {
    let mut info = PatchInfo::default();
    let mut lines = text.lines().peekable();
    // Mail header: the subject may continue on indented lines.
    while let Some(line) = lines.peek() {
        if line.starts_with("diff --git ") {
            break;
        }
        let line = lines.next().unwrap();
        if let Some(subject) = line.strip_prefix("Subject:") {
            let mut subject = subject.trim().to_owned();
            while let Some(next) = lines.peek() {
                if next.starts_with(' ') || next.starts_with('\t') {
                    subject.push(' ');
                    subject.push_str(next.trim());
                    lines.next();
                } else {
                    break;
                }
            }
            info.subject = strip_patch_prefix(&subject).to_owned();
        }
    }
    let mut in_header = false;
    for line in lines {
        if let Some(rest) = line.strip_prefix("diff --git ") {
            let (old, new) = split_diff_git_paths(rest);
            info.files.push(FilePatch {
                old_path: old.clone(),
                path: new,
                ..FilePatch::default()
            });
            in_header = true;
            continue;
        }
        let Some(file) = info.files.last_mut() else {
            continue;
        };
        if let Some(hunk) = line.strip_prefix("@@ -") {
            in_header = false;
            let old_start = hunk
                .split([',', ' '])
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            file.hunks.push(Hunk {
                header: line.to_owned(),
                old_start,
            });
            continue;
        }
        if !in_header {
            continue;
        }
        if let Some(mode) = line.strip_prefix("old mode ") {
            file.old_mode = Some(mode.trim().to_owned());
        } else if let Some(mode) = line.strip_prefix("new mode ") {
            file.new_mode = Some(mode.trim().to_owned());
        } else if let Some(mode) = line.strip_prefix("new file mode ") {
            file.status = Status::Added;
            file.new_mode = Some(mode.trim().to_owned());
        } else if let Some(mode) = line.strip_prefix("deleted file mode ") {
            file.status = Status::Deleted;
            file.old_mode = Some(mode.trim().to_owned());
        } else if let Some(path) = line.strip_prefix("rename from ") {
            file.status = Status::Renamed;
            file.old_path = path.to_owned();
        } else if let Some(path) = line.strip_prefix("rename to ") {
            file.path = path.to_owned();
        } else if let Some(path) = line.strip_prefix("copy from ") {
            file.status = Status::Copied;
            file.old_path = path.to_owned();
        } else if let Some(path) = line.strip_prefix("copy to ") {
            file.path = path.to_owned();
        } else if let Some(index) = line.strip_prefix("index ") {
            // `index <old>..<new> <mode>`: the mode is unchanged and given once.
            if let Some(mode) = index.split_whitespace().nth(1) {
                file.old_mode.get_or_insert_with(|| mode.to_owned());
                file.new_mode.get_or_insert_with(|| mode.to_owned());
            }
        } else if line == "GIT binary patch" || line.starts_with("Binary files ") {
            file.binary = true;
        } else if let Some(path) = line.strip_prefix("--- a/") {
            file.old_path = path.to_owned();
        } else if let Some(path) = line.strip_prefix("+++ b/") {
            file.path = path.to_owned();
        }
    }
    info
}

/// `a/X b/Y` from a `diff --git` line; exact when both sides are the same path, which is the
/// only case where no later header line names the paths.
fn split_diff_git_paths(rest: &str) -> (String, String) {
    let rest = rest.trim();
    let half = rest.len() / 2;
    if rest.len() % 2 == 1 && rest.as_bytes().get(half) == Some(&b' ') {
        let (old, new) = (&rest[..half], &rest[half + 1..]);
        if let (Some(o), Some(n)) = (old.strip_prefix("a/"), new.strip_prefix("b/")) {
            if o == n {
                return (o.to_owned(), n.to_owned());
            }
        }
    }
    match rest.split_once(" b/") {
        Some((old, new)) => (
            old.strip_prefix("a/").unwrap_or(old).to_owned(),
            new.to_owned(),
        ),
        None => (rest.to_owned(), rest.to_owned()),
    }
}

fn strip_patch_prefix(subject: &str) -> &str {
    if subject.starts_with('[') {
        if let Some(end) = subject.find(']') {
            if subject[1..end].to_ascii_uppercase().contains("PATCH") {
                return subject[end + 1..].trim_start();
            }
        }
    }
    subject
}

/// Removes what changes from one refresh to the next without a change in content: the
/// `Date:` header and the blob ids of text diffs (`index` lines; the mode they carry is the
/// unchanged one). Binary diffs keep their `index` line, which git needs to apply them.
pub fn normalize(patch: &str) -> String {
    let info = parse_patch(patch);
    let mut out = String::with_capacity(patch.len());
    let mut in_mail_header = true;
    let mut file = 0usize;
    let mut in_file_header = false;
    for line in patch.split_inclusive('\n') {
        let bare = line.trim_end_matches('\n');
        if in_mail_header {
            if bare.is_empty() {
                in_mail_header = false;
            } else if bare.starts_with("Date: ") {
                continue;
            }
        }
        if bare.starts_with("diff --git ") {
            in_mail_header = false;
            in_file_header = true;
            file += 1;
        } else if bare.starts_with("@@ ") || bare.starts_with("--- ") {
            in_file_header = false;
        }
        let binary = file > 0 && info.files.get(file - 1).is_some_and(|f| f.binary);
        if in_file_header && bare.starts_with("index ") && !binary {
            continue;
        }
        out.push_str(line);
    }
    out
}

/// Where a patch stopped applying, read from git's error output.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Failure {
    pub file: Option<String>,
    /// `(number within the file, 1-based; the hunk)`
    pub hunk: Option<(usize, Hunk)>,
    /// Git's own error lines, hints left out.
    pub git_errors: Vec<String>,
    /// Files a 3-way merge left with conflict markers.
    pub conflicts: Vec<String>,
}

/// Reads `git am` / `git apply` error output against the patch that failed.
pub fn diagnose(patch: &PatchInfo, git_output: &str) -> Failure {
    let mut failure = Failure::default();
    for line in git_output.lines() {
        let line = line.trim_end();
        if let Some(rest) = line.strip_prefix("error: patch failed: ") {
            if let Some((file, at)) = rest.rsplit_once(':') {
                let at: u64 = at.parse().unwrap_or(0);
                failure.file.get_or_insert_with(|| file.to_owned());
                if failure.hunk.is_none() {
                    failure.hunk = patch.file(file).and_then(|f| {
                        f.hunks
                            .iter()
                            .enumerate()
                            .find(|(_, h)| h.old_start == at)
                            .map(|(i, h)| (i + 1, h.clone()))
                    });
                }
            }
        } else if let Some(file) = line.strip_prefix("CONFLICT (content): Merge conflict in ") {
            failure.conflicts.push(file.to_owned());
            failure.file.get_or_insert_with(|| file.to_owned());
        } else if let Some(rest) = line.strip_prefix("error: ") {
            // `error: <file>: does not exist in index`, `error: <file>: already exists ...`
            if let Some((file, _)) = rest.split_once(": ") {
                if patch.file(file).is_some() {
                    failure.file.get_or_insert_with(|| file.to_owned());
                }
            }
        }
        // What a failed 3-way attempt says when the patch has no blob ids (ours have none),
        // and a header for lines not kept here: noise next to the failing hunk.
        let noise = [
            "error: sha1 information is lacking",
            "error: could not build fake ancestor",
            "error: while searching for:",
        ];
        if noise.iter().any(|n| line.starts_with(n)) {
            continue;
        }
        let reported = line.starts_with("error: ") || line.starts_with("CONFLICT ");
        if reported && !failure.git_errors.iter().any(|l| l == line) {
            failure.git_errors.push(line.to_owned());
        }
    }
    failure
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATCH: &str = "\
From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001
From: A U Thor <author@example.org>
Date: Tue, 1 Jan 2030 00:00:00 +0000
Subject: [PATCH] build: name assets after
 the target architecture

Why it matters.
---
diff --git a/pkg/Makefile b/pkg/Makefile
index 1111111111111111111111111111111111111111..2222222222222222222222222222222222222222 100644
--- a/pkg/Makefile
+++ b/pkg/Makefile
@@ -1,3 +1,4 @@
 NAME=x
+ARCH ?= amd64
 
 all:
@@ -10,2 +11,2 @@ all:
-\tcp a-amd64 b
+\tcp a-$(ARCH) b
diff --git a/pkg/run.sh b/pkg/run.sh
old mode 100644
new mode 100755
diff --git a/pkg/new.sh b/pkg/new.sh
new file mode 100755
index 0000000000000000000000000000000000000000..3333333333333333333333333333333333333333
--- /dev/null
+++ b/pkg/new.sh
@@ -0,0 +1 @@
+#!/bin/sh
diff --git a/pkg/p/default.json b/pkg/p/amd64/default.json
similarity index 100%
rename from pkg/p/default.json
rename to pkg/p/amd64/default.json
";

    #[test]
    fn patch_files_hunks_and_modes_are_read() {
        let info = parse_patch(PATCH);
        assert_eq!(
            info.subject,
            "build: name assets after the target architecture"
        );
        let paths: Vec<&str> = info.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "pkg/Makefile",
                "pkg/run.sh",
                "pkg/new.sh",
                "pkg/p/amd64/default.json"
            ]
        );
        let makefile = &info.files[0];
        assert_eq!(makefile.hunks.len(), 2);
        assert_eq!(makefile.hunks[1].old_start, 10);
        assert_eq!(makefile.declared_mode(), Some("100644"));
        assert_eq!(info.files[1].old_mode.as_deref(), Some("100644"));
        assert_eq!(info.files[1].declared_mode(), Some("100755"));
        assert_eq!(info.files[2].status, Status::Added);
        assert_eq!(info.files[2].declared_mode(), Some("100755"));
        assert_eq!(info.files[3].status, Status::Renamed);
        assert_eq!(
            info.touched().into_iter().collect::<Vec<_>>(),
            [
                "pkg/Makefile",
                "pkg/new.sh",
                "pkg/p/amd64/default.json",
                "pkg/p/default.json",
                "pkg/run.sh"
            ]
        );
    }

    #[test]
    fn normalize_drops_dates_and_text_blob_ids_only() {
        let text = normalize(PATCH);
        assert!(!text.contains("Date:"), "{text}");
        assert!(!text.contains("index 1111"), "{text}");
        assert!(!text.contains("index 0000"), "{text}");
        assert!(text.contains("similarity index 100%"), "{text}");
        assert!(
            text.contains("old mode 100644\nnew mode 100755\n"),
            "{text}"
        );
        assert!(text.contains("new file mode 100755\n"), "{text}");
        assert_eq!(normalize(&text), text, "normalising twice changes nothing");

        let binary = "Subject: x\n\ndiff --git a/b.bin b/b.bin\nindex 1111111111111111111111111111111111111111..2222222222222222222222222222222222222222 100644\nGIT binary patch\nliteral 1\nIcmZpX0000\n\n";
        assert_eq!(normalize(binary), binary);
    }

    #[test]
    fn failure_names_the_file_and_hunk_git_reports() {
        let info = parse_patch(PATCH);
        let out = "Applying: build\nerror: patch failed: pkg/Makefile:10\nerror: pkg/Makefile: patch does not apply\nhint: Use 'git am --show-current-patch=diff'\n";
        let failure = diagnose(&info, out);
        assert_eq!(failure.file.as_deref(), Some("pkg/Makefile"));
        let (number, hunk) = failure.hunk.unwrap();
        assert_eq!(number, 2);
        assert_eq!(hunk.header, "@@ -10,2 +11,2 @@ all:");
        assert_eq!(failure.git_errors.len(), 2);

        let missing = diagnose(&info, "error: pkg/run.sh: does not exist in index\n");
        assert_eq!(missing.file.as_deref(), Some("pkg/run.sh"));
        assert_eq!(missing.hunk, None);
    }

    #[test]
    fn series_lists_names_in_order_with_comments() {
        let text = "# header\n\n0001-a.patch\n0002-b.patch   # why\n# 0003-off.patch\n";
        let entries = parse_series(text).unwrap();
        let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["0001-a.patch", "0002-b.patch"]);
        assert_eq!(entries[1].line, 4);
        assert_eq!(series_header(text), "# header\n");
        assert_eq!(series_header("0001-a.patch\n"), DEFAULT_HEADER);
    }

    #[test]
    fn bad_series_entries_are_all_reported() {
        let findings =
            parse_series("0001-a.patch\n../x.patch\n0001-a.patch\nnotes.txt\n").unwrap_err();
        let text: Vec<String> = findings.iter().map(|f| f.to_string()).collect();
        assert_eq!(findings.len(), 3, "{text:#?}");
        assert!(
            text[0].starts_with("patches/series: field `line 2` = \"../x.patch\""),
            "{text:#?}"
        );
        assert!(
            text[1].contains("listed twice (first on line 1)"),
            "{text:#?}"
        );
        assert!(text[2].contains("\"notes.txt\""), "{text:#?}");
    }
}
