//! Walking a folder of class folders: its layout, its classes, each class's image
//! files. Nothing is decoded here; whatever is wrong with the tree is an error that
//! names the folder or file.
//!
//! Layouts:
//!   DIR/<class>/...                         one split; the test split is held out
//!   DIR/train/<class>/... + DIR/test/<class>/... (or DIR/val/)   both given
//! Class names are the class folders' names, sorted (as Python sorts strings, and so
//! torchvision's ImageFolder): label `i` is the `i`-th name. A class folder's images
//! are every file below it (subfolders too, symbolic links followed) whose extension
//! is an image format's, in path order. Hidden entries (a name starting with a dot:
//! `.DS_Store`, `.ipynb_checkpoints/`) are left out, and so, counted, are files of
//! other extensions. A test split's classes must be training classes.
//!
//! Refused, by name: a DIR that is not a folder; no class folder, or only one; more
//! classes than labels fit (256); an empty class folder; images outside any class
//! folder; a folder that cannot be listed; a symbolic link loop; a folder reached
//! twice through links, or a file in two classes (its label would be ambiguous);
//! `train/` beside class folders, `test/` or `val/` without `train/`, or both.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// The most classes a label (a byte) can name.
pub const MAX_CLASSES: usize = 256;

/// Extensions of the formats the decoder reads (compared without case).
pub const IMAGE_EXTENSIONS: [&str; 14] = [
    "png", "jpg", "jpeg", "bmp", "gif", "webp", "tif", "tiff", "pnm", "pbm", "pgm", "ppm", "tga",
    "ico",
];

/// One image file and its class.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    pub path: PathBuf,
    pub label: u8,
}

/// A file that could not be looked at (a broken link, no permission), found while
/// walking: a bad image, like one that does not decode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadFile {
    pub path: PathBuf,
    pub reason: String,
}

/// What the walk found.
#[derive(Clone, Debug)]
pub struct Scan {
    /// The folder given, made absolute.
    pub root: PathBuf,
    pub classes: Vec<String>,
    /// The training images, class by class, each class's in path order.
    pub train: Vec<Sample>,
    /// The test split's folder name (`test` or `val`) and images, when given.
    pub test: Option<(String, Vec<Sample>)>,
    /// Files left out for their extension.
    pub ignored: Vec<PathBuf>,
    /// Image files that could not be looked at.
    pub unreadable: Vec<BadFile>,
}

/// Walks `root` (see the module comment).
pub fn scan(root: &Path) -> Result<Scan> {
    let root = std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf());
    let meta = std::fs::metadata(&root)
        .with_context(|| format!("{}: cannot open the data folder", root.display()))?;
    if !meta.is_dir() {
        bail!(
            "{}: not a folder; --data takes a folder with one subfolder of images per \
             class (or train/ and test/ folders of those)",
            root.display()
        );
    }
    let top = list(&root)?;
    let names: Vec<&str> = top.folders.iter().map(|(name, _)| name.as_str()).collect();
    let has = |name: &str| names.contains(&name);
    let mut walk = Walk::default();
    if let Some(image) = top.images.first() {
        bail!(
            "{}: an image outside any class folder ({} in all); each class's images go \
             in a folder of their own, {}/<class>/",
            image.display(),
            top.images.len(),
            root.display()
        );
    }
    let (classes, train, test) = if has("train") {
        let test_name = match (has("test"), has("val")) {
            (true, true) => bail!(
                "{}: both test/ and val/ beside train/; keep the one to test on",
                root.display()
            ),
            (true, false) => Some("test"),
            (false, true) => Some("val"),
            (false, false) => None,
        };
        if let Some(other) = names.iter().find(|n| !["train", "test", "val"].contains(n)) {
            bail!(
                "{}: a folder beside train/; with train/, the top folder holds only \
                 train/ and test/ (or val/)",
                root.join(other).display()
            );
        }
        walk.ignored.extend(top.ignored);
        walk.ignored
            .extend(top.unreadable.into_iter().map(|bad| bad.path));
        let train_dir = root.join("train");
        let classes = walk.class_folders(&train_dir, 2)?;
        let train = walk.classes(&train_dir, &classes, &classes)?;
        let test = match test_name {
            Some(name) => {
                let dir = root.join(name);
                let test_classes = walk.class_folders(&dir, 1)?;
                if let Some(unknown) = test_classes.iter().find(|c| !classes.contains(c)) {
                    bail!(
                        "{}: no class {unknown:?} in {}: a test class must be a training \
                         class",
                        dir.join(unknown).display(),
                        train_dir.display()
                    );
                }
                Some((
                    name.to_string(),
                    walk.classes(&dir, &test_classes, &classes)?,
                ))
            }
            None => None,
        };
        (classes, train, test)
    } else {
        if let Some(name) = ["test", "val"].into_iter().find(|n| has(n)) {
            bail!(
                "{}: a {name}/ folder but no train/ beside it: give both (train/<class>/ \
                 and {name}/<class>/), or rename {name}/ if it is a class",
                root.join(name).display()
            );
        }
        let classes = walk.class_folders(&root, 2)?;
        let train = walk.classes(&root, &classes, &classes)?;
        (classes, train, None)
    };
    Ok(Scan {
        root,
        classes,
        train,
        test,
        ignored: walk.ignored,
        unreadable: walk.unreadable,
    })
}

/// A folder's entries, hidden ones left out, sorted by name.
#[derive(Default)]
struct Listing {
    /// Subfolders (symbolic links followed), by name.
    folders: Vec<(String, PathBuf)>,
    images: Vec<PathBuf>,
    ignored: Vec<PathBuf>,
    unreadable: Vec<BadFile>,
}

fn list(dir: &Path) -> Result<Listing> {
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("{}: cannot list the folder", dir.display()))?;
    let mut paths = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("{}: cannot list the folder", dir.display()))?;
        paths.push((entry.file_name(), entry.path()));
    }
    paths.sort();
    let mut listing = Listing::default();
    for (name, path) in paths {
        if name.as_encoded_bytes().starts_with(b".") {
            continue;
        }
        match std::fs::metadata(&path) {
            Ok(meta) if meta.is_dir() => {
                let Some(name) = name.to_str() else {
                    bail!(
                        "{}: the folder's name is not UTF-8; class names must be",
                        path.display()
                    );
                };
                listing.folders.push((name.to_string(), path));
            }
            _ if !is_image_name(&path) => listing.ignored.push(path),
            Ok(_) => listing.images.push(path),
            Err(e) => listing.unreadable.push(BadFile {
                reason: if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_symlink()) {
                    format!("a broken symbolic link ({e})")
                } else {
                    format!("cannot look at it ({e})")
                },
                path,
            }),
        }
    }
    Ok(listing)
}

fn is_image_name(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// A folder's or file's identity on its file system, the same through every link.
type Identity = (u64, u64);

fn identity(path: &Path) -> Result<Identity> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("{}: cannot look at it", path.display()))?;
    Ok((meta.dev(), meta.ino()))
}

/// The walk's state: what was seen where.
#[derive(Default)]
struct Walk {
    folders: HashMap<Identity, PathBuf>,
    /// Each image file's class and path, by identity.
    files: HashMap<Identity, (u8, PathBuf)>,
    ignored: Vec<PathBuf>,
    unreadable: Vec<BadFile>,
}

impl Walk {
    /// The sorted names of `dir`'s class folders: at least `least`, at most
    /// `MAX_CLASSES`, each a UTF-8 name.
    fn class_folders(&mut self, dir: &Path, least: usize) -> Result<Vec<String>> {
        let listing = list(dir)?;
        if let Some(image) = listing.images.first() {
            bail!(
                "{}: an image outside any class folder; each class's images go in a \
                 folder of their own, {}/<class>/",
                image.display(),
                dir.display()
            );
        }
        self.ignored.extend(listing.ignored);
        self.ignored
            .extend(listing.unreadable.into_iter().map(|bad| bad.path));
        let classes: Vec<String> = listing.folders.into_iter().map(|(name, _)| name).collect();
        match classes.len() {
            n if n >= least && n <= MAX_CLASSES => Ok(classes),
            0 => bail!(
                "{}: no class folders; put each class's images in a folder named after \
                 the class, {}/<class>/",
                dir.display(),
                dir.display()
            ),
            1 => bail!(
                "{}: only one class folder ({}); a classifier needs at least two classes",
                dir.display(),
                classes[0]
            ),
            n => bail!(
                "{}: {n} class folders; at most {MAX_CLASSES} classes are supported",
                dir.display()
            ),
        }
    }

    /// The images of `dir/<class>` for each of `present`, labelled by their place in
    /// `classes`.
    fn classes(
        &mut self,
        dir: &Path,
        present: &[String],
        classes: &[String],
    ) -> Result<Vec<Sample>> {
        let mut samples = Vec::new();
        for class in present {
            let label = classes
                .iter()
                .position(|c| c == class)
                .expect("a present class is a class") as u8;
            let folder = dir.join(class);
            let (start, unreadable) = (samples.len(), self.unreadable.len());
            self.folder(&folder, label, &mut Vec::new(), &mut samples)?;
            if samples.len() == start && self.unreadable.len() == unreadable {
                bail!(
                    "{}: an empty class folder (no image files in it{}); remove it, or \
                     add its images",
                    folder.display(),
                    if self.ignored.iter().any(|p| p.starts_with(&folder)) {
                        ", only files of other kinds"
                    } else {
                        ""
                    }
                );
            }
        }
        Ok(samples)
    }

    /// Every image file below `folder` (depth first, in name order), as `label`;
    /// `path` holds the folders being walked, to tell a loop.
    fn folder(
        &mut self,
        folder: &Path,
        label: u8,
        path: &mut Vec<(Identity, PathBuf)>,
        samples: &mut Vec<Sample>,
    ) -> Result<()> {
        let id = identity(folder)?;
        if let Some((_, ancestor)) = path.iter().find(|(a, _)| *a == id) {
            bail!(
                "{}: a symbolic link loop: it leads back to {}",
                folder.display(),
                ancestor.display()
            );
        }
        if let Some(first) = self.folders.get(&id) {
            bail!(
                "{}: the same folder as {} (through a symbolic link): its images would be \
                 read twice",
                folder.display(),
                first.display()
            );
        }
        self.folders.insert(id, folder.to_path_buf());
        let listing = list(folder)?;
        self.ignored.extend(listing.ignored);
        self.unreadable.extend(listing.unreadable);
        for image in listing.images {
            let file = identity(&image)?;
            match self.files.get(&file) {
                Some((other, first)) if *other != label => bail!(
                    "{}: the same file as {}, in another class: its label would be \
                     ambiguous",
                    image.display(),
                    first.display()
                ),
                _ => {
                    self.files.insert(file, (label, image.clone()));
                }
            }
            samples.push(Sample { path: image, label });
        }
        path.push((id, folder.to_path_buf()));
        for (_, sub) in listing.folders {
            self.folder(&sub, label, path, samples)?;
        }
        path.pop();
        Ok(())
    }
}
