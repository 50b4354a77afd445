//! What the working tree is: commit, dirtiness, version, for tags and the run record.

use serde::{Deserialize, Serialize};
use xshell::{Shell, cmd};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GitInfo {
    pub sha: Option<String>,
    pub short_sha: Option<String>,
    pub branch: Option<String>,
    pub describe: Option<String>,
    pub dirty: bool,
}

/// Reads git state in `dir`; outside a repository every field is empty rather than an error.
pub fn inspect(dir: &std::path::Path) -> GitInfo {
    let Ok(sh) = Shell::new() else {
        return GitInfo::default();
    };
    sh.change_dir(dir);
    let read = |args: &[&str]| cmd!(sh, "git {args...}").quiet().ignore_stderr().read().ok().filter(|s| !s.is_empty());
    GitInfo {
        sha: read(&["rev-parse", "HEAD"]),
        short_sha: read(&["rev-parse", "--short=8", "HEAD"]),
        branch: read(&["rev-parse", "--abbrev-ref", "HEAD"]),
        describe: read(&["describe", "--tags", "--always", "--dirty"]),
        dirty: read(&["status", "--porcelain", "--untracked-files=no"]).is_some(),
    }
}
