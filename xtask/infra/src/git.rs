//! The one way xtask runs git: `git -C <dir>` with the inherited variables that would point it
//! at another repository or inject configuration removed. A hook or an outer git command
//! (`git rebase -x`, a pre-push hook) exports GIT_DIR, GIT_INDEX_FILE and friends, and a git
//! started with them acts on that repository instead of the one named by `-C`.

use camino::Utf8Path;

use crate::cmd::Cmd;

/// Environment variables that would make git read another repository or other configuration.
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
];

/// `git -C <dir>` in a scrubbed environment; callers append the subcommand.
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
}
