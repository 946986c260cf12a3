//! The one way xtask runs git: `git -C <dir>` with the inherited variables that would point it
//! at another repository or inject configuration removed. A hook or an outer git command
//! (`git rebase -x`, a pre-push hook) exports GIT_DIR, GIT_INDEX_FILE and friends, and a git
//! started with them acts on that repository instead of the one named by `-C`.

use camino::Utf8Path;
use xshell::{cmd, Cmd, Shell};

use crate::cmd::Cmd as Command;

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

/// `git -C <dir>` in a scrubbed environment, as a [`crate::cmd::Cmd`]; callers append the
/// subcommand.
pub fn at(dir: &Utf8Path) -> Command {
    anywhere().arg("-C").arg(dir)
}

/// `git` without `-C` (for `git init DIR`, `git ls-remote URL`), in a scrubbed environment.
pub fn anywhere() -> Command {
    scrubbed(Command::new("git"))
}

fn scrubbed(cmd: Command) -> Command {
    SCRUBBED.iter().fold(cmd, |cmd, var| cmd.env_remove(var))
}

/// `git -C <dir>`, quiet, in a scrubbed environment; callers append the subcommand.
/// (xshell form, until its callers use [`at`].)
pub fn git<'a>(sh: &'a Shell, dir: &Utf8Path) -> Cmd<'a> {
    scrub(cmd!(sh, "git -C {dir}").quiet())
}

/// `git` without `-C` (for `git init DIR`), in a scrubbed environment.
pub fn git_anywhere(sh: &Shell) -> Cmd<'_> {
    scrub(cmd!(sh, "git").quiet())
}

fn scrub(mut cmd: Cmd<'_>) -> Cmd<'_> {
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
        let sh = Shell::new().unwrap();
        for repo in ["a", "b"] {
            let dir = tmp.join(repo);
            std::fs::create_dir_all(&dir).unwrap();
            cmd!(sh, "git init -q {dir}").run().unwrap();
        }
        let other = tmp.join("b/.git");
        let plain = cmd!(sh, "git -C {tmp}/a rev-parse --absolute-git-dir")
            .env("GIT_DIR", &other)
            .quiet()
            .read()
            .unwrap();
        assert_eq!(plain, other.as_str(), "git itself follows GIT_DIR");
        let _env = sh.push_env("GIT_DIR", &other);
        let wrapped = git(&sh, &tmp.join("a"))
            .args(["rev-parse", "--absolute-git-dir"])
            .read()
            .unwrap();
        assert_eq!(wrapped, tmp.join("a/.git").as_str());
        // as if inherited: set first, then scrubbed as `at` does
        let wrapped = scrubbed(Command::new("git").env("GIT_DIR", &other))
            .args([
                "-C",
                tmp.join("a").as_str(),
                "rev-parse",
                "--absolute-git-dir",
            ])
            .read()
            .unwrap();
        assert_eq!(wrapped, tmp.join("a/.git").as_str());
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}
