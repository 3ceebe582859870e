//! What `up` changed on disk, kept until the whole run succeeded, so a failed container
//! replacement puts the files back too.
//!
//! The rule: a run is all or nothing. matchbox reads profiles, groups and assets from disk on
//! every request, so the previous matchbox, restored after a failed replacement, would
//! otherwise serve the new profiles with the new kernel arguments and assets: a site that
//! neither the old nor the new settings describe.
//!
//! Backups live in `<data-dir>/.cozyboot/rollback` (same filesystem, so asset trees move by
//! rename). A run killed before it finishes leaves them there; the next run deletes them and
//! plans against what is on disk, as it always did.

use crate::error::Error;
use std::fs;
use std::path::{Path, PathBuf};

enum Saved {
    /// The file's previous content, copied here.
    File(PathBuf),
    /// There was nothing at the target.
    Absent,
    /// The previous tree, moved here by the swap.
    Tree(PathBuf),
    /// The file was moved here (`--move-foreign`); it goes back as it was.
    Moved(PathBuf),
}

pub(super) struct Undo {
    dir: PathBuf,
    saved: Vec<(PathBuf, Saved)>,
    next: usize,
}

impl Undo {
    /// Starts an empty journal in `dir`, removing what a killed run left there.
    pub(super) fn new(dir: PathBuf) -> Result<Undo, Error> {
        if dir.exists() {
            fs::remove_dir_all(&dir)
                .map_err(|e| Error::Failed(format!("removing the stale rollback copies in {}: {e}", dir.display())))?;
        }
        Ok(Undo {
            dir,
            saved: Vec::new(),
            next: 0,
        })
    }

    fn slot(&mut self) -> Result<PathBuf, Error> {
        fs::create_dir_all(&self.dir).map_err(|e| Error::Failed(format!("creating {}: {e}", self.dir.display())))?;
        self.next += 1;
        Ok(self.dir.join(self.next.to_string()))
    }

    /// Keeps the current content of `target` (or its absence), before it is overwritten or
    /// removed. Only the first copy of a path counts: it is the state before the run.
    pub(super) fn save_file(&mut self, target: &Path) -> Result<(), Error> {
        if self.saved.iter().any(|(t, _)| t == target) {
            return Ok(());
        }
        let saved = if target.is_file() {
            let copy = self.slot()?;
            fs::copy(target, &copy).map_err(|e| {
                Error::Failed(format!(
                    "keeping a copy of {} to put back on failure: {e}",
                    target.display()
                ))
            })?;
            Saved::File(copy)
        } else {
            Saved::Absent
        };
        self.saved.push((target.to_path_buf(), saved));
        Ok(())
    }

    /// Every regular file directly in `dir` (certificates, bootloaders).
    pub(super) fn save_files_in(&mut self, dir: &Path, names: &[String]) -> Result<(), Error> {
        for name in names {
            self.save_file(&dir.join(name))?;
        }
        Ok(())
    }

    /// Takes over `previous`, the tree that used to be at `target` (moved aside by a swap).
    pub(super) fn keep_tree(&mut self, target: &Path, previous: &Path) -> Result<(), Error> {
        let kept = self.slot()?;
        fs::rename(previous, &kept)
            .map_err(|e| Error::Failed(format!("keeping the previous {}: {e}", target.display())))?;
        self.saved.push((target.to_path_buf(), Saved::Tree(kept)));
        Ok(())
    }

    /// The file at `target` was moved to `to`.
    pub(super) fn moved(&mut self, target: &Path, to: &Path) {
        self.saved.push((target.to_path_buf(), Saved::Moved(to.to_path_buf())));
    }

    /// A tree appeared at `target` where there was none.
    pub(super) fn created_tree(&mut self, target: &Path) {
        self.saved.push((target.to_path_buf(), Saved::Absent));
    }

    /// Puts everything back, newest first; returns what could not be put back.
    pub(super) fn restore(self) -> Vec<String> {
        let mut failed = Vec::new();
        for (target, saved) in self.saved.into_iter().rev() {
            let result = match &saved {
                Saved::File(copy) => {
                    let tmp = target.with_extension("cozyboot-restore");
                    fs::copy(copy, &tmp).and_then(|_| fs::rename(&tmp, &target))
                }
                Saved::Absent if target.is_dir() => fs::remove_dir_all(&target),
                Saved::Absent => fs::remove_file(&target).or_else(|e| match e.kind() {
                    std::io::ErrorKind::NotFound => Ok(()),
                    _ => Err(e),
                }),
                Saved::Tree(kept) => {
                    let _ = fs::remove_dir_all(&target);
                    fs::rename(kept, &target)
                }
                Saved::Moved(to) => target
                    .parent()
                    .map_or(Ok(()), fs::create_dir_all)
                    .and_then(|()| fs::rename(to, &target)),
            };
            if let Err(e) = result {
                failed.push(format!("putting back {}: {e}", target.display()));
            }
        }
        if failed.is_empty() {
            let _ = fs::remove_dir_all(&self.dir);
        }
        failed
    }

    /// The run succeeded: the copies are not needed any more.
    pub(super) fn commit(self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restores_files_absences_and_trees() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        fs::write(root.join("a"), "old a").unwrap();
        fs::create_dir(root.join("tree")).unwrap();
        fs::write(root.join("tree/k"), "old kernel").unwrap();
        let mut undo = Undo::new(root.join("rollback")).unwrap();
        undo.save_file(&root.join("a")).unwrap();
        undo.save_file(&root.join("b")).unwrap();
        fs::write(root.join("a"), "new a").unwrap();
        undo.save_file(&root.join("a")).unwrap();
        fs::write(root.join("b"), "new b").unwrap();
        fs::rename(root.join("tree"), root.join("aside")).unwrap();
        fs::create_dir(root.join("tree")).unwrap();
        fs::write(root.join("tree/k"), "new kernel").unwrap();
        undo.keep_tree(&root.join("tree"), &root.join("aside")).unwrap();

        assert!(undo.restore().is_empty());
        assert_eq!(fs::read_to_string(root.join("a")).unwrap(), "old a");
        assert!(!root.join("b").exists());
        assert_eq!(fs::read_to_string(root.join("tree/k")).unwrap(), "old kernel");
        assert!(!root.join("rollback").exists());
        assert!(!root.join("aside").exists());
    }
}
