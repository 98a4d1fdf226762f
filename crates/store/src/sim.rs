//! The crash simulator (test builds only): what a power loss may leave on
//! disk, computed from a trace of the real write path ([`crate::fileio`]).
//!
//! [`Disk`] replays a trace into a model file system that keeps, for every
//! file, its current bytes and its bytes as of its last completed sync, and
//! for every directory, its current entries, its entries as of its last
//! fsync, and the changes made since. [`Disk::crash`] then draws one
//! outcome of a power loss at that point of the trace:
//!
//! - a file's bytes not covered by a completed `fdatasync`/`fsync` (or
//!   `syncfs`) are dropped, torn at sector (512-byte) granularity or
//!   reordered: its length is the synced one or the current one, and each
//!   sector that differs holds the synced bytes (zeros where the file had
//!   not reached) or the current ones — all sectors in order up to some
//!   point, or each one independently;
//! - a directory's entries created, renamed or removed since its last
//!   fsync (or `syncfs`) are lost after some point: the outcome keeps a
//!   prefix of those changes, in order (an entry never survives a change
//!   made before it that was lost);
//! - with [`Loss::Worst`], nothing that was not synced survives.
//!
//! A file's fsync does not make its directory entry durable, and a
//! directory's fsync does not make its files' bytes durable: exactly the
//! guarantees POSIX gives and Stele relies on, no more.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::fileio::{Op, SyncKind};

/// A disk writes 512-byte sectors whole or not at all.
pub const SECTOR: usize = 512;

/// xorshift64*: reproducible outcomes from a seed, without a dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// What a crash loses.
#[derive(Debug)]
pub enum Loss<'a> {
    /// Everything not synced.
    Worst,
    /// A random outcome drawn from the generator.
    Random(&'a mut Rng),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    File(usize),
    Dir,
}

#[derive(Debug, Clone)]
enum Change {
    Link(OsString, Node),
    Unlink(OsString),
    Rename(OsString, OsString),
}

#[derive(Debug, Default, Clone)]
struct Dir {
    live: BTreeMap<OsString, Node>,
    durable: BTreeMap<OsString, Node>,
    pending: Vec<Change>,
}

#[derive(Debug, Default, Clone)]
struct Inode {
    live: Vec<u8>,
    durable: Vec<u8>,
}

/// The model file system a trace is replayed into. The traced directory
/// itself is the root (the empty path), which exists and is durable.
#[derive(Debug, Clone)]
pub struct Disk {
    inodes: Vec<Inode>,
    dirs: BTreeMap<PathBuf, Dir>,
}

/// The files and directories below a root, with their bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Image {
    pub dirs: BTreeSet<PathBuf>,
    pub files: BTreeMap<PathBuf, Vec<u8>>,
}

impl Default for Disk {
    fn default() -> Self {
        Disk::new()
    }
}

fn split(path: &Path) -> Result<(PathBuf, OsString), String> {
    let name = path
        .file_name()
        .ok_or_else(|| format!("{}: no file name", path.display()))?
        .to_os_string();
    let parent = path.parent().map(Path::to_path_buf).unwrap_or_default();
    Ok((parent, name))
}

impl Disk {
    pub fn new() -> Disk {
        let mut dirs = BTreeMap::new();
        dirs.insert(PathBuf::new(), Dir::default());
        Disk {
            inodes: Vec::new(),
            dirs,
        }
    }

    fn dir_mut(&mut self, path: &Path) -> Result<&mut Dir, String> {
        self.dirs
            .get_mut(path)
            .ok_or_else(|| format!("{}: no such directory in the trace", path.display()))
    }

    fn inode_of(&self, path: &Path) -> Result<usize, String> {
        let (parent, name) = split(path)?;
        match self.dirs.get(&parent).and_then(|d| d.live.get(&name)) {
            Some(Node::File(i)) => Ok(*i),
            _ => Err(format!("{}: no such file in the trace", path.display())),
        }
    }

    /// Applies one traced operation. An error means the trace does not
    /// describe a file system (an operation on a file it never created,
    /// a rename across directories): the trace missed an operation.
    pub fn apply(&mut self, op: &Op) -> Result<(), String> {
        match op {
            Op::Open {
                path,
                created,
                truncated,
            } => {
                let (parent, name) = split(path)?;
                if *created {
                    let inode = self.inodes.len();
                    self.inodes.push(Inode::default());
                    let dir = self.dir_mut(&parent)?;
                    if dir.live.contains_key(&name) {
                        return Err(format!("{}: created twice", path.display()));
                    }
                    dir.live.insert(name.clone(), Node::File(inode));
                    dir.pending.push(Change::Link(name, Node::File(inode)));
                } else {
                    let inode = self.inode_of(path)?;
                    if *truncated {
                        self.inodes[inode].live.clear();
                    }
                }
            }
            Op::Write { path, at, data } => {
                let i = self.inode_of(path)?;
                let inode = &mut self.inodes[i];
                let end = *at as usize + data.len();
                if inode.live.len() < end {
                    inode.live.resize(end, 0);
                }
                inode.live[*at as usize..end].copy_from_slice(data);
            }
            Op::SetLen { path, len } => {
                let i = self.inode_of(path)?;
                self.inodes[i].live.resize(*len as usize, 0);
            }
            Op::Sync { path, site } => match site.kind {
                SyncKind::Data | SyncKind::File => {
                    let i = self.inode_of(path)?;
                    let inode = &mut self.inodes[i];
                    inode.durable = inode.live.clone();
                }
                SyncKind::Dir => {
                    let dir = self.dir_mut(path)?;
                    dir.durable = dir.live.clone();
                    dir.pending.clear();
                }
                SyncKind::FileSystem => {
                    for inode in &mut self.inodes {
                        inode.durable = inode.live.clone();
                    }
                    for dir in self.dirs.values_mut() {
                        dir.durable = dir.live.clone();
                        dir.pending.clear();
                    }
                }
            },
            Op::Rename { from, to } => {
                let (from_dir, from_name) = split(from)?;
                let (to_dir, to_name) = split(to)?;
                if from_dir != to_dir {
                    return Err(format!(
                        "rename across directories ({} to {}) is not modelled",
                        from.display(),
                        to.display()
                    ));
                }
                let dir = self.dir_mut(&from_dir)?;
                let node = dir
                    .live
                    .remove(&from_name)
                    .ok_or_else(|| format!("{}: renamed but absent", from.display()))?;
                if node == Node::Dir {
                    return Err(format!(
                        "{}: renaming a directory is not modelled",
                        from.display()
                    ));
                }
                dir.live.insert(to_name.clone(), node);
                dir.pending.push(Change::Rename(from_name, to_name));
            }
            Op::Remove { path } => {
                let (parent, name) = split(path)?;
                let dir = self.dir_mut(&parent)?;
                if dir.live.remove(&name).is_none() {
                    return Err(format!("{}: removed but absent", path.display()));
                }
                dir.pending.push(Change::Unlink(name));
            }
            Op::RemoveTree { path } => self.remove_tree(path)?,
            Op::Mkdir { path } => {
                let (parent, name) = split(path)?;
                let dir = self.dir_mut(&parent)?;
                if dir.live.contains_key(&name) {
                    return Err(format!("{}: created twice", path.display()));
                }
                dir.live.insert(name.clone(), Node::Dir);
                dir.pending.push(Change::Link(name, Node::Dir));
                self.dirs.insert(path.clone(), Dir::default());
            }
            Op::Mark(_) | Op::Skipped { .. } => {}
        }
        Ok(())
    }

    /// Unlinks everything below `path`, deepest first, then `path`, each
    /// removal a change of its directory (lost or kept like any other).
    fn remove_tree(&mut self, path: &Path) -> Result<(), String> {
        let names: Vec<(OsString, Node)> = self
            .dirs
            .get(path)
            .ok_or_else(|| format!("{}: no such directory in the trace", path.display()))?
            .live
            .iter()
            .map(|(n, node)| (n.clone(), *node))
            .collect();
        for (name, node) in names {
            if node == Node::Dir {
                self.remove_tree(&path.join(&name))?;
            } else {
                let dir = self.dir_mut(path)?;
                dir.live.remove(&name);
                dir.pending.push(Change::Unlink(name));
            }
        }
        let (parent, name) = split(path)?;
        let dir = self.dir_mut(&parent)?;
        dir.live.remove(&name);
        dir.pending.push(Change::Unlink(name));
        Ok(())
    }

    /// The files and directories as they are now (what the real directory
    /// holds when the trace is complete).
    pub fn live(&self) -> Image {
        let mut image = Image::default();
        self.collect(
            Path::new(""),
            &mut |dir| dir.live.clone(),
            &mut |i| self.inodes[i].live.clone(),
            &mut image,
        );
        image
    }

    /// One outcome of a power loss now.
    pub fn crash(&self, loss: Loss<'_>) -> Image {
        let mut image = Image::default();
        match loss {
            Loss::Worst => self.collect(
                Path::new(""),
                &mut |dir| dir.durable.clone(),
                &mut |i| self.inodes[i].durable.clone(),
                &mut image,
            ),
            Loss::Random(rng) => {
                // Drawn in a fixed order (directories, then inodes, by
                // path and number), so a seed gives the same outcome.
                let mut entries: HashMap<PathBuf, BTreeMap<OsString, Node>> = HashMap::new();
                for (path, dir) in &self.dirs {
                    let kept = rng.below(dir.pending.len() as u64 + 1) as usize;
                    let mut names = dir.durable.clone();
                    for change in &dir.pending[..kept] {
                        match change {
                            Change::Link(name, node) => {
                                names.insert(name.clone(), *node);
                            }
                            Change::Unlink(name) => {
                                names.remove(name);
                            }
                            Change::Rename(from, to) => {
                                if let Some(node) = names.remove(from) {
                                    names.insert(to.clone(), node);
                                }
                            }
                        }
                    }
                    entries.insert(path.clone(), names);
                }
                let contents: Vec<Vec<u8>> =
                    self.inodes.iter().map(|inode| torn(inode, rng)).collect();
                self.collect(
                    Path::new(""),
                    &mut |dir_path| entries_for(&entries, dir_path),
                    &mut |i| contents[i].clone(),
                    &mut image,
                );
            }
        }
        image
    }

    fn collect(
        &self,
        path: &Path,
        names: &mut dyn FnMut(&DirRef<'_>) -> BTreeMap<OsString, Node>,
        bytes: &mut dyn FnMut(usize) -> Vec<u8>,
        image: &mut Image,
    ) {
        let Some(dir) = self.dirs.get(path) else {
            return;
        };
        let listed = names(&DirRef { path, dir });
        for (name, node) in listed {
            let child = path.join(&name);
            match node {
                Node::File(i) => {
                    image.files.insert(child, bytes(i));
                }
                Node::Dir => {
                    image.dirs.insert(child.clone());
                    self.collect(&child, names, bytes, image);
                }
            }
        }
    }
}

/// A directory handed to the entry chooser of [`Disk::collect`].
struct DirRef<'a> {
    path: &'a Path,
    dir: &'a Dir,
}

impl std::ops::Deref for DirRef<'_> {
    type Target = Dir;
    fn deref(&self) -> &Dir {
        self.dir
    }
}

fn entries_for(
    entries: &HashMap<PathBuf, BTreeMap<OsString, Node>>,
    dir: &DirRef<'_>,
) -> BTreeMap<OsString, Node> {
    entries.get(dir.path).cloned().unwrap_or_default()
}

/// One outcome for a file's unsynced bytes.
fn torn(inode: &Inode, rng: &mut Rng) -> Vec<u8> {
    let (old, new) = (&inode.durable, &inode.live);
    if old == new {
        return old.clone();
    }
    let len = if rng.below(2) == 0 {
        old.len()
    } else {
        new.len()
    };
    let sector = |bytes: &Vec<u8>, start: usize, end: usize| -> Vec<u8> {
        let mut out = vec![0u8; end - start];
        if start < bytes.len() {
            let n = (end.min(bytes.len())) - start;
            out[..n].copy_from_slice(&bytes[start..start + n]);
        }
        out
    };
    let sectors = len.div_ceil(SECTOR);
    // In order up to a sector, or each sector on its own.
    let in_order = rng.below(2) == 0;
    let reached = rng.below(sectors as u64 + 1) as usize;
    let mut out = Vec::with_capacity(len);
    for s in 0..sectors {
        let (start, end) = (s * SECTOR, ((s + 1) * SECTOR).min(len));
        let (was, is) = (sector(old, start, end), sector(new, start, end));
        let take_new = if was == is {
            false
        } else if in_order {
            s < reached
        } else {
            rng.below(2) == 0
        };
        out.extend_from_slice(if take_new { &is } else { &was });
    }
    out
}

impl Image {
    /// Writes the image below `root` (which must exist and be empty).
    pub fn write_to(&self, root: &Path) -> std::io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        for dir in &self.dirs {
            std::fs::create_dir_all(root.join(dir))?;
        }
        for (path, bytes) in &self.files {
            let path = root.join(path);
            std::fs::write(&path, bytes)?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        }
        Ok(())
    }

    /// Reads every file and directory below `root`.
    pub fn read_from(root: &Path) -> std::io::Result<Image> {
        fn walk(root: &Path, rel: &Path, image: &mut Image) -> std::io::Result<()> {
            for entry in std::fs::read_dir(root.join(rel))? {
                let entry = entry?;
                let child = rel.join(entry.file_name());
                if entry.file_type()?.is_dir() {
                    image.dirs.insert(child.clone());
                    walk(root, &child, image)?;
                } else {
                    image
                        .files
                        .insert(child.clone(), std::fs::read(root.join(&child))?);
                }
            }
            Ok(())
        }
        let mut image = Image::default();
        walk(root, Path::new(""), &mut image)?;
        Ok(image)
    }

    /// How `self` differs from `other`, one line per path.
    pub fn differences(&self, other: &Image) -> Vec<String> {
        let mut out = Vec::new();
        for dir in self.dirs.symmetric_difference(&other.dirs) {
            out.push(format!("directory {} in one only", dir.display()));
        }
        for (path, bytes) in &self.files {
            match other.files.get(path) {
                None => out.push(format!("{} missing from the other", path.display())),
                Some(theirs) if theirs != bytes => out.push(format!(
                    "{}: {} bytes here, {} there, first difference at {}",
                    path.display(),
                    bytes.len(),
                    theirs.len(),
                    bytes
                        .iter()
                        .zip(theirs)
                        .position(|(a, b)| a != b)
                        .unwrap_or(bytes.len().min(theirs.len()))
                )),
                Some(_) => {}
            }
        }
        for path in other.files.keys() {
            if !self.files.contains_key(path) {
                out.push(format!("{} only in the other", path.display()));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fileio::Site;

    fn site(kind: SyncKind) -> Site {
        Site {
            file: "test",
            line: 1,
            kind,
        }
    }

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    /// Synced bytes and synced entries survive every outcome; unsynced
    /// ones are lost in the worst one and sometimes kept in others.
    #[test]
    fn only_synced_state_is_guaranteed() {
        let mut disk = Disk::new();
        let ops = [
            Op::Mkdir { path: p("d") },
            Op::Sync {
                path: p(""),
                site: site(SyncKind::Dir),
            },
            Op::Open {
                path: p("d/f"),
                created: true,
                truncated: false,
            },
            Op::Write {
                path: p("d/f"),
                at: 0,
                data: vec![1; 1000],
            },
            Op::Sync {
                path: p("d/f"),
                site: site(SyncKind::Data),
            },
            Op::Sync {
                path: p("d"),
                site: site(SyncKind::Dir),
            },
            Op::Write {
                path: p("d/f"),
                at: 1000,
                data: vec![2; 1000],
            },
            Op::Open {
                path: p("d/g"),
                created: true,
                truncated: false,
            },
        ];
        for op in &ops {
            disk.apply(op).unwrap();
        }
        let worst = disk.crash(Loss::Worst);
        assert_eq!(worst.files[&p("d/f")], vec![1; 1000]);
        assert!(!worst.files.contains_key(&p("d/g")));
        let live = disk.live();
        assert_eq!(live.files[&p("d/f")].len(), 2000);
        let (mut longer, mut with_g) = (0, 0);
        for seed in 0..200 {
            let image = disk.crash(Loss::Random(&mut Rng::new(seed)));
            let f = &image.files[&p("d/f")];
            assert_eq!(&f[..1000], &[1; 1000][..], "seed {seed}");
            assert!(f[1000..].iter().all(|b| *b == 0 || *b == 2), "seed {seed}");
            longer += usize::from(f.len() == 2000);
            with_g += usize::from(image.files.contains_key(&p("d/g")));
        }
        assert!((1..200).contains(&longer) && (1..200).contains(&with_g));
    }

    /// A rename not yet made durable by its directory's fsync leaves the
    /// old file; one the fsync covered cannot be lost.
    #[test]
    fn renames_are_atomic_and_durable_only_after_the_directory_sync() {
        let mut disk = Disk::new();
        for op in [
            Op::Open {
                path: p("a"),
                created: true,
                truncated: false,
            },
            Op::Write {
                path: p("a"),
                at: 0,
                data: b"old".to_vec(),
            },
            Op::Sync {
                path: p(""),
                site: site(SyncKind::FileSystem),
            },
            Op::Open {
                path: p("a.tmp"),
                created: true,
                truncated: false,
            },
            Op::Write {
                path: p("a.tmp"),
                at: 0,
                data: b"new".to_vec(),
            },
            Op::Sync {
                path: p("a.tmp"),
                site: site(SyncKind::File),
            },
            Op::Rename {
                from: p("a.tmp"),
                to: p("a"),
            },
        ] {
            disk.apply(&op).unwrap();
        }
        assert_eq!(disk.crash(Loss::Worst).files[&p("a")], b"old");
        for seed in 0..50 {
            let image = disk.crash(Loss::Random(&mut Rng::new(seed)));
            assert!(image.files[&p("a")] == b"old" || image.files[&p("a")] == b"new");
        }
        disk.apply(&Op::Sync {
            path: p(""),
            site: site(SyncKind::Dir),
        })
        .unwrap();
        assert_eq!(disk.crash(Loss::Worst).files[&p("a")], b"new");
        assert!(!disk.crash(Loss::Worst).files.contains_key(&p("a.tmp")));
    }
}
