//! The one way xtask runs git: `git -C <dir>` with the inherited variables that would point it
//! at another repository or inject configuration removed. A hook or an outer git command
//! (`git rebase -x`, a pre-push hook) exports GIT_DIR, GIT_INDEX_FILE and friends, and a git
//! started with them acts on that repository instead of the one named by `-C`.

use camino::Utf8Path;

use crate::cmd::Cmd;

/// Environment variables that would make git read another repository or other configuration,
/// run other programs or hooks, or make a new repository unlike the ones git makes by default:
/// every variable `git rev-parse --local-env-vars` names (git's own list of what it clears for
/// a nested repository; a test holds this list to it), and more.
pub const SCRUBBED: &[&str] = &[
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_CONFIG",
    "GIT_CONFIG_PARAMETERS",
    "GIT_CONFIG_COUNT",
    "GIT_EXTERNAL_DIFF",
    "GIT_DIFF_OPTS",
    "GIT_GRAFT_FILE",
    "GIT_REPLACE_REF_BASE",
    "GIT_SHALLOW_FILE",
    "GIT_LITERAL_PATHSPECS",
    "GIT_GLOB_PATHSPECS",
    "GIT_NOGLOB_PATHSPECS",
    "GIT_ICASE_PATHSPECS",
    "GIT_IMPLICIT_WORK_TREE",
    "GIT_NO_REPLACE_OBJECTS",
    "GIT_PREFIX",
    "GIT_INTERNAL_SUPER_PREFIX",
    // hooks copied into `git init`/`git clone` repositories, then run by `git am` and checkout
    "GIT_TEMPLATE_DIR",
    // other helper programs, other attributes (line endings for `git am`), a pre-receive
    // quarantine, another object format or ref storage for new repositories
    "GIT_EXEC_PATH",
    "GIT_ATTR_SOURCE",
    "GIT_QUARANTINE_PATH",
    "GIT_DEFAULT_HASH",
    "GIT_DEFAULT_REF_FORMAT",
];

/// `git -C <dir>` in a scrubbed environment; callers append the subcommand.
/// The entries of `git status --porcelain -z` output, each its status code (`M`, `??`, `R`, ...)
/// and path, as git wrote it (no quoting with -z); a rename or copy entry's second path, its
/// source, is skipped.
pub fn status_entries(status: &str) -> Vec<(&str, &str)> {
    let mut entries = Vec::new();
    let mut fields = status.split('\0').filter(|f| !f.is_empty());
    while let Some(entry) = fields.next() {
        if entry.len() < 4 {
            continue;
        }
        let (code, path) = entry.split_at(3);
        entries.push((code.trim(), path));
        if code.starts_with('R') || code.starts_with('C') {
            fields.next();
        }
    }
    entries
}

pub fn at(dir: &Utf8Path) -> Cmd {
    anywhere().arg("-C").arg(dir)
}

/// `git` without `-C` (for `git init DIR`, `git clone SRC DIR`), in a scrubbed environment.
pub fn anywhere() -> Cmd {
    scrubbed(Cmd::new("git"))
}

fn scrubbed(mut cmd: Cmd) -> Cmd {
    for var in SCRUBBED {
        cmd = cmd.env_remove(var);
    }
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With GIT_DIR pointing at another repository, the wrapped git still reads the one it was
    /// told (`-C`); plain git would not.
    #[test]
    fn status_entries_take_the_new_path_of_a_rename_and_a_name_as_it_is() {
        let status = "R  new name.json\0old.json\0?? variants/\"q\".json\0 M a\0";
        assert_eq!(
            status_entries(status),
            [
                ("R", "new name.json"),
                ("??", "variants/\"q\".json"),
                ("M", "a")
            ]
        );
    }

    #[test]
    fn the_inherited_git_environment_is_ignored() {
        let tmp = std::env::temp_dir().join(format!("xtask-git-{}", std::process::id()));
        let tmp = camino::Utf8PathBuf::try_from(tmp).unwrap();
        for repo in ["a", "b"] {
            let dir = tmp.join(repo);
            std::fs::create_dir_all(&dir).unwrap();
            anywhere().args(["init", "-q", dir.as_str()]).run().unwrap();
        }
        let other = tmp.join("b/.git");
        let a = tmp.join("a");
        let plain = Cmd::new("git")
            .args(["-C", a.as_str(), "rev-parse", "--absolute-git-dir"])
            .env("GIT_DIR", &other)
            .read()
            .unwrap();
        assert_eq!(plain, other.as_str(), "git itself follows GIT_DIR");
        // as if inherited: set first, then scrubbed as `at` does
        let wrapped = scrubbed(Cmd::new("git").env("GIT_DIR", &other))
            .args(["-C", a.as_str(), "rev-parse", "--absolute-git-dir"])
            .read()
            .unwrap();
        assert_eq!(wrapped, tmp.join("a/.git").as_str());
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    /// Every variable git itself clears for a nested repository is scrubbed here too; a git
    /// that adds one fails this test, naming it.
    #[test]
    fn every_variable_git_calls_local_to_a_repository_is_scrubbed() {
        let listed = Cmd::new("git")
            .args(["rev-parse", "--local-env-vars"])
            .read()
            .unwrap();
        let vars: Vec<&str> = listed.lines().collect();
        assert!(vars.contains(&"GIT_DIR"), "{listed}");
        let missing: Vec<&str> = vars.into_iter().filter(|v| !SCRUBBED.contains(v)).collect();
        assert!(missing.is_empty(), "add to SCRUBBED: {missing:?}");
    }

    /// An inherited template directory would put its hooks into every repository xtask makes.
    #[test]
    fn an_inherited_template_directory_puts_no_hook_into_a_new_repository() {
        let tmp = std::env::temp_dir().join(format!("xtask-git-template-{}", std::process::id()));
        let tmp = camino::Utf8PathBuf::try_from(tmp).unwrap();
        let hooks = tmp.join("template/hooks");
        std::fs::create_dir_all(&hooks).unwrap();
        std::fs::write(hooks.join("post-checkout"), "#!/bin/sh\nexit 1\n").unwrap();
        let template = tmp.join("template");
        let plain = tmp.join("plain");
        Cmd::new("git")
            .args(["init", "-q", plain.as_str()])
            .env("GIT_TEMPLATE_DIR", &template)
            .run()
            .unwrap();
        assert!(
            plain.join(".git/hooks/post-checkout").exists(),
            "git itself copies it"
        );
        let wrapped = tmp.join("wrapped");
        scrubbed(Cmd::new("git").env("GIT_TEMPLATE_DIR", &template))
            .args(["init", "-q", wrapped.as_str()])
            .run()
            .unwrap();
        assert!(!wrapped.join(".git/hooks/post-checkout").exists());
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}
