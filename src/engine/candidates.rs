//! Which of the places an image may keep its boot files it has: the first candidate directory
//! that exists ([`first_present`]), or the first [`FileSet`] whose required files all exist
//! ([`first_complete_set`]).
//!
//! The rule is written once, over "does this path exist" answers the caller supplies, so the
//! Docker engine (which asks dockerd) and the in-memory fake of the unit tests (which looks in
//! a map) fall back through the same code.

use std::future::Future;

use futures_util::future::join_all;

use super::docker::FileSet;

/// The set an image has, and what was found of its files, in the set's order: the required
/// files, then the optional ones that exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chosen<'s, T> {
    /// Index of the set in the list given.
    pub set: usize,
    pub files: Vec<(&'s str, T)>,
}

/// The first of `sets` whose required paths all exist, by `stat`: `Ok(Some(what))` for a
/// path that exists, `Ok(None)` for one that does not. A set's paths are looked up together;
/// later sets are not looked at once one is complete. The first error ends the search.
///
/// `stat` also gets each path's place in its list, the optional ones shifted by one, so a
/// caller that spreads lookups over several workers does not queue the first optional file
/// behind the first required one.
pub async fn first_complete_set<'s, T, E, F, Fut>(sets: &'s [FileSet], stat: F) -> Result<Option<Chosen<'s, T>>, E>
where
    F: Fn(usize, &'s str) -> Fut,
    Fut: Future<Output = Result<Option<T>, E>>,
{
    for (index, set) in sets.iter().enumerate() {
        let (required, optional) = futures_util::join!(
            join_all(set.required.iter().enumerate().map(|(i, path)| stat(i, path))),
            join_all(set.optional.iter().enumerate().map(|(i, path)| stat(i + 1, path))),
        );
        let mut files = Vec::new();
        let mut complete = true;
        for (path, found) in set.required.iter().zip(required) {
            match found? {
                Some(what) => files.push((path.as_str(), what)),
                None => complete = false,
            }
        }
        if !complete {
            continue;
        }
        for (path, found) in set.optional.iter().zip(optional) {
            if let Some(what) = found? {
                files.push((path.as_str(), what));
            }
        }
        return Ok(Some(Chosen { set: index, files }));
    }
    Ok(None)
}

/// The first of `paths` that `copy` finds (`Ok(Some(..))`), with what it gave; `Ok(None)`
/// when none exists. Paths after the first found are not tried.
pub async fn first_present<'p, T, E, F, Fut>(paths: &[&'p str], mut copy: F) -> Result<Option<(&'p str, T)>, E>
where
    F: FnMut(&'p str) -> Fut,
    Fut: Future<Output = Result<Option<T>, E>>,
{
    for path in paths {
        if let Some(what) = copy(path).await? {
            return Ok(Some((path, what)));
        }
    }
    Ok(None)
}

/// The name Docker puts first in the tar of the directory `path`, which extraction strips:
/// its last component (`/usr/install/arm64/` gives `arm64`).
pub fn archive_prefix(path: &str) -> String {
    path.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;
    use std::cell::RefCell;
    use std::collections::{BTreeMap, BTreeSet};

    fn set(required: &[&str], optional: &[&str]) -> FileSet {
        FileSet {
            required: required.iter().map(|p| p.to_string()).collect(),
            optional: optional.iter().map(|p| p.to_string()).collect(),
        }
    }

    /// An image as a map of path to size; records every lookup with its place.
    struct Image {
        files: BTreeMap<&'static str, u64>,
        asked: RefCell<Vec<(usize, String)>>,
    }

    impl Image {
        fn with(files: &[(&'static str, u64)]) -> Self {
            Image {
                files: files.iter().copied().collect(),
                asked: RefCell::default(),
            }
        }

        /// `first_complete_set` over this image; the lookups answer at once.
        fn choose<'s>(&self, sets: &'s [FileSet]) -> Option<Chosen<'s, u64>> {
            first_complete_set(sets, |i, path| {
                self.asked.borrow_mut().push((i, path.to_owned()));
                std::future::ready(Ok::<_, String>(self.files.get(path).copied()))
            })
            .now_or_never()
            .expect("ready lookups finish at once")
            .unwrap()
        }

        fn asked_paths(&self) -> BTreeSet<String> {
            self.asked.borrow().iter().map(|(_, p)| p.clone()).collect()
        }
    }

    fn talos_sets() -> Vec<FileSet> {
        vec![
            set(&["/assets/vmlinuz", "/assets/initramfs.xz"], &[]),
            set(&["/usr/install/arm64/vmlinuz", "/usr/install/arm64/initramfs.xz"], &[]),
            set(&["/usr/install/arm64/vmlinuz.efi"], &["/usr/install/arm64/sd-boot.efi"]),
        ]
    }

    #[test]
    fn the_first_complete_set_wins_and_later_sets_are_not_looked_at() {
        let image = Image::with(&[
            ("/assets/vmlinuz", 10),
            ("/assets/initramfs.xz", 20),
            ("/usr/install/arm64/vmlinuz.efi", 30),
        ]);
        let sets = talos_sets();
        let chosen = image.choose(&sets).expect("a set");
        assert_eq!(chosen.set, 0);
        assert_eq!(
            chosen.files,
            vec![("/assets/vmlinuz", 10), ("/assets/initramfs.xz", 20)]
        );
        assert!(
            !image.asked_paths().iter().any(|p| p.starts_with("/usr")),
            "{:?}",
            image.asked
        );
    }

    #[test]
    fn a_set_missing_one_required_file_is_passed_over() {
        // Half of the first layout is not a layout: the image has the second one.
        let image = Image::with(&[
            ("/assets/vmlinuz", 10),
            ("/usr/install/arm64/vmlinuz", 11),
            ("/usr/install/arm64/initramfs.xz", 21),
        ]);
        let sets = talos_sets();
        let chosen = image.choose(&sets).expect("a set");
        assert_eq!(chosen.set, 1);
        assert_eq!(
            chosen.files,
            vec![
                ("/usr/install/arm64/vmlinuz", 11),
                ("/usr/install/arm64/initramfs.xz", 21)
            ]
        );
    }

    #[test]
    fn optional_files_come_after_the_required_ones_when_they_exist() {
        let sets = talos_sets();
        let without = Image::with(&[("/usr/install/arm64/vmlinuz.efi", 30)]);
        assert_eq!(
            without.choose(&sets),
            Some(Chosen {
                set: 2,
                files: vec![("/usr/install/arm64/vmlinuz.efi", 30)]
            })
        );
        let with = Image::with(&[
            ("/usr/install/arm64/sd-boot.efi", 5),
            ("/usr/install/arm64/vmlinuz.efi", 30),
        ]);
        assert_eq!(
            with.choose(&sets).unwrap().files,
            vec![
                ("/usr/install/arm64/vmlinuz.efi", 30),
                ("/usr/install/arm64/sd-boot.efi", 5)
            ]
        );
    }

    #[test]
    fn no_complete_set_is_none_after_every_set_was_looked_at() {
        let image = Image::with(&[("/assets/initramfs.xz", 20), ("/usr/install/arm64/sd-boot.efi", 5)]);
        let sets = talos_sets();
        assert_eq!(image.choose(&sets), None);
        let every: BTreeSet<String> = sets
            .iter()
            .flat_map(|s| s.required.iter().chain(&s.optional))
            .cloned()
            .collect();
        assert_eq!(image.asked_paths(), every);
    }

    #[test]
    fn optional_lookups_are_shifted_by_one_place() {
        let image = Image::with(&[]);
        let sets = [set(&["/a", "/b"], &["/c", "/d"])];
        image.choose(&sets);
        let mut asked = image.asked.borrow().clone();
        asked.sort();
        let expected = [(0, "/a"), (1, "/b"), (1, "/c"), (2, "/d")].map(|(i, p)| (i, p.to_owned()));
        assert_eq!(asked, expected);
    }

    #[test]
    fn a_lookup_error_ends_the_search() {
        let sets = talos_sets();
        let result = first_complete_set(&sets, |_, path| {
            std::future::ready(if path == "/assets/initramfs.xz" {
                Err(format!("dockerd refused {path}"))
            } else {
                Ok(Some(1u64))
            })
        })
        .now_or_never()
        .unwrap();
        assert_eq!(result, Err("dockerd refused /assets/initramfs.xz".to_owned()));
    }

    #[test]
    fn first_present_takes_the_first_path_found_and_tries_no_further() {
        let tried = RefCell::new(Vec::new());
        let found = first_present(&["/assets/talos/arm64", "/usr/install/arm64", "/never"], |path| {
            tried.borrow_mut().push(path);
            std::future::ready(Ok::<_, String>((path == "/usr/install/arm64").then_some("copied")))
        })
        .now_or_never()
        .unwrap();
        assert_eq!(found, Ok(Some(("/usr/install/arm64", "copied"))));
        assert_eq!(*tried.borrow(), ["/assets/talos/arm64", "/usr/install/arm64"]);
        let none = first_present(&["/a", "/b"], |_| std::future::ready(Ok::<Option<()>, String>(None)))
            .now_or_never()
            .unwrap();
        assert_eq!(none, Ok(None));
    }

    #[test]
    fn archive_prefix_is_the_last_component() {
        assert_eq!(archive_prefix("/assets/talos/arm64"), "arm64");
        assert_eq!(archive_prefix("/usr/install/arm64/"), "arm64");
    }
}
