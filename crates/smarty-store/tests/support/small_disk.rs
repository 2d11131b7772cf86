//! A small disk for tests of full and read-only file systems: a tmpfs of a given size on a
//! fresh directory. One copy, included with `#[path]` by the tests of the MQTT queue
//! (`smarty-store`, `src/queue.rs`) and of the MQTT output (`smarty-mqtt`).

#![allow(dead_code)] // included by two crates' tests (#[path]), each using a part of it

use std::path::Path;
use std::process::Command;

/// A tmpfs mounted on a fresh directory, unmounted on drop. Needs root (the test suite
/// runs as root: `scripts/test`).
pub struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    /// Mounts a tmpfs of `size` (`64k`, `8m`).
    pub fn mount(size: &str) -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .status()
            .expect("mount(8) runs");
        assert!(
            status.success(),
            "cannot mount a {size} tmpfs on {} (this test needs root): {status}",
            dir.path().display()
        );
        SmallDisk { dir }
    }

    /// Remounts with `options` (`size=8m`, `ro`, `rw`).
    pub fn remount(&self, options: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(self.dir.path())
            .status()
            .unwrap();
        assert!(status.success(), "remount {options}: {status}");
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}
