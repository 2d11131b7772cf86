//! Names the commit the binary is built from, for `smarty --version`: `SMARTY_COMMIT` from the
//! environment (a build from a source archive sets it), else `git rev-parse --short=12 HEAD`,
//! else `unknown`. Rebuilt when HEAD moves.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
}

fn main() {
    println!("cargo:rerun-if-env-changed=SMARTY_COMMIT");
    let commit = std::env::var("SMARTY_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| {
            // HEAD, the branch it names, and packed refs: a commit moves one of them.
            // (Only files that exist: cargo reruns the script every time for a missing one.)
            let watch = |path: &str| {
                if let Some(path) = git(&["rev-parse", "--git-path", path])
                    && std::path::Path::new(&path).exists()
                {
                    println!("cargo:rerun-if-changed={path}");
                }
            };
            watch("HEAD");
            watch("packed-refs");
            if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
                watch(&branch);
            }
            git(&["rev-parse", "--short=12", "HEAD"])
        })
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=SMARTY_COMMIT={commit}");
}
