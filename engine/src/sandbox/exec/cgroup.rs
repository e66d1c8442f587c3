//! A command's limits on its whole process tree: a cgroup of its own.
//!
//! A process's own limits (`setrlimit`) bind each process alone, and a
//! command forks; a cgroup binds the tree, the private `/tmp`'s pages
//! included (tmpfs pages are charged to the cgroup that wrote them). Each
//! command gets a new group beneath the engine's own, in every hierarchy
//! that has the controller: cgroup v2 where the controller is there, v1
//! where it is bound to a v1 hierarchy (machines with both have some of
//! each). The program joins it in the forked child before anything else
//! ([`Group::joining`]), so nothing it starts escapes it.
//!
//! Where a controller cannot be used (no hierarchy has it, or the engine
//! may not make groups: not root, no delegation), [`Group::make`] says
//! which limits go unenforced; the command runs, and the step's output and
//! its record say so.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// What a command's tree may use.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub memory: u64,
    pub processes: u32,
}

/// A limit the kernel held a command's tree to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hit {
    /// It killed a process for memory.
    Memory,
    /// It refused a new process.
    Processes,
}

/// The controllers a command's limits need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Controller {
    Memory,
    Pids,
    /// CPU time used, read (not limited) by the kernel: the engine stops
    /// a tree past `limits.cpu`.
    CpuTime,
}

impl Controller {
    const ALL: [Controller; 3] = [Controller::Memory, Controller::Pids, Controller::CpuTime];

    /// Its name in a v1 hierarchy's options and in v2's `cgroup.controllers`.
    fn name(self, version: Version) -> &'static str {
        match (self, version) {
            (Controller::Memory, _) => "memory",
            (Controller::Pids, _) => "pids",
            (Controller::CpuTime, Version::V1) => "cpuacct",
            (Controller::CpuTime, Version::V2) => "cpu",
        }
    }

    /// What a limit of it is called in a flow.
    fn limit(self) -> &'static str {
        match self {
            Controller::Memory => "limits.memory",
            Controller::Pids => "limits.processes",
            Controller::CpuTime => "limits.cpu",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    V1,
    V2,
}

/// Where each controller is for this process: the engine's own group in
/// the hierarchy that has it.
#[derive(Debug, Default, PartialEq, Eq)]
struct Places {
    found: Vec<(Controller, Version, PathBuf)>,
}

impl Places {
    /// From `/proc/self/mountinfo` and `/proc/self/cgroup`; `available`
    /// tells the v2 controllers a v2 group offers (its `cgroup.controllers`).
    fn read(mountinfo: &str, cgroups: &str, available: impl Fn(&Path) -> String) -> Places {
        let mut places = Places::default();
        let v2 = mounts(mountinfo).find(|m| m.fstype == "cgroup2").and_then(|m| {
            let own = cgroups.lines().find_map(|l| l.strip_prefix("0::"))?;
            m.group(own)
        });
        for c in Controller::ALL {
            let v1 = mounts(mountinfo)
                .filter(|m| m.fstype == "cgroup")
                .find(|m| m.options.split(',').any(|o| o == c.name(Version::V1)))
                .and_then(|m| {
                    let own = cgroups.lines().find_map(|l| {
                        let (_, rest) = l.split_once(':')?;
                        let (names, path) = rest.split_once(':')?;
                        names.split(',').any(|n| n == c.name(Version::V1)).then_some(path)
                    })?;
                    m.group(own)
                });
            let place = match (v1, &v2) {
                (Some(dir), _) => Some((Version::V1, dir)),
                // CPU time is in every v2 group's cpu.stat.
                (None, Some(dir))
                    if c == Controller::CpuTime
                        || available(dir)
                            .split_whitespace()
                            .any(|n| n == c.name(Version::V2)) =>
                {
                    Some((Version::V2, dir.clone()))
                }
                _ => None,
            };
            if let Some((version, dir)) = place {
                places.found.push((c, version, dir));
            }
        }
        places
    }

    fn of_this_process() -> Places {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        Places::read(&read("/proc/self/mountinfo"), &read("/proc/self/cgroup"), |dir| {
            std::fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default()
        })
    }
}

/// A cgroup filesystem's mount, from a line of mountinfo.
struct CgroupMount<'a> {
    root: &'a str,
    point: &'a str,
    fstype: &'a str,
    options: &'a str,
}

impl CgroupMount<'_> {
    /// The directory of group `own` (as `/proc/self/cgroup` names it)
    /// through this mount, if the mount shows it.
    fn group(&self, own: &str) -> Option<PathBuf> {
        let rel = match self.root {
            "/" => own,
            root => own.strip_prefix(root)?,
        };
        Some(Path::new(self.point).join(rel.trim_start_matches('/')))
    }
}

fn mounts(mountinfo: &str) -> impl Iterator<Item = CgroupMount<'_>> {
    mountinfo.lines().filter_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let fields: Vec<&str> = left.split(' ').collect();
        let mut right = right.split(' ');
        let fstype = right.next()?;
        let options = right.nth(1)?;
        Some(CgroupMount {
            root: fields.get(3)?,
            point: fields.get(4)?,
            fstype,
            options,
        })
    })
}

/// A command's group, in every hierarchy that could take it; removed
/// (its processes killed first) when dropped.
pub struct Group {
    /// The bytes of memory the tree may hold, swapped out or not, when a
    /// group holds it to them: no tmpfs can take more of its writes.
    memory: Option<u64>,
    dirs: Vec<(Version, PathBuf)>,
    controllers: Vec<(Controller, Version, PathBuf)>,
    /// Where the command's process is written to join each group: a v1
    /// group's `tasks`, a v2 group's `cgroup.procs`.
    joins: Vec<(Version, OwnedFd)>,
}

/// Names groups apart within the engine's lifetime.
static MADE: AtomicU64 = AtomicU64::new(0);

/// The prefix of a command group's name: the engine's process ID follows.
const PREFIX: &str = "stepback-";

impl Group {
    /// A new group with `limits`, and the limits it cannot enforce, each
    /// with why (empty when all hold).
    pub fn make(limits: Limits, cpu_limited: bool) -> (Group, Vec<String>) {
        let places = Places::of_this_process();
        let mut group = Group {
            memory: None,
            dirs: Vec::new(),
            controllers: Vec::new(),
            joins: Vec::new(),
        };
        let mut unenforced = Vec::new();
        let name = format!(
            "{PREFIX}{}-{}",
            std::process::id(),
            MADE.fetch_add(1, Ordering::Relaxed)
        );
        for c in Controller::ALL {
            if c == Controller::CpuTime && !cpu_limited {
                continue;
            }
            let Some((_, version, parent)) = places.found.iter().find(|(f, ..)| *f == c) else {
                unenforced.push(format!(
                    "{}: no cgroup hierarchy has the {} controller",
                    c.limit(),
                    c.name(Version::V2)
                ));
                continue;
            };
            if let Err(e) = group.add(c, *version, parent, &name, limits) {
                unenforced.push(format!("{}: {e}", c.limit()));
            }
        }
        (group, unenforced)
    }

    /// Puts controller `c` of `parent`'s hierarchy under the limits.
    fn add(
        &mut self,
        c: Controller,
        version: Version,
        parent: &Path,
        name: &str,
        limits: Limits,
    ) -> io::Result<()> {
        let dir = parent.join(name);
        if !self.dirs.iter().any(|(_, d)| *d == dir) {
            if version == Version::V2 {
                delegate(parent, c)?;
            }
            clear_stale(parent);
            std::fs::create_dir(&dir).map_err(|e| context(e, "making", &dir))?;
            let file = match version {
                Version::V1 => "tasks",
                Version::V2 => "cgroup.procs",
            };
            let join = File::options()
                .write(true)
                .open(dir.join(file))
                .map_err(|e| context(e, "opening", &dir))?;
            self.dirs.push((version, dir.clone()));
            self.joins.push((version, join.into()));
        }
        match (c, version) {
            (Controller::Memory, Version::V1) => {
                set(&dir, "memory.limit_in_bytes", limits.memory)?;
                // With swap accounting: swap counts too.
                let swap = dir.join("memory.memsw.limit_in_bytes").exists();
                if swap {
                    set(&dir, "memory.memsw.limit_in_bytes", limits.memory)?;
                }
                self.memory = (swap || no_swap()).then_some(limits.memory);
            }
            (Controller::Memory, Version::V2) => {
                set(&dir, "memory.max", limits.memory)?;
                let swap = dir.join("memory.swap.max").exists();
                if swap {
                    set(&dir, "memory.swap.max", 0)?;
                }
                self.memory = (swap || no_swap()).then_some(limits.memory);
            }
            (Controller::Pids, _) => set(&dir, "pids.max", limits.processes)?,
            (Controller::CpuTime, _) => {}
        }
        self.controllers.push((c, version, dir));
        Ok(())
    }

    /// The most the tree can write to a tmpfs, if a group bounds it: tmpfs
    /// pages count against the group that wrote them, swapped out or not.
    pub fn tmpfs_bound(&self) -> Option<u64> {
        self.memory
    }

    /// Starts putting the command's process in the groups, or `None` when
    /// there are none to join.
    pub fn joining(&self) -> io::Result<Option<Joining>> {
        if self.joins.is_empty() {
            return Ok(None);
        }
        let clone = |version| {
            self.joins
                .iter()
                .filter(|(v, _)| *v == version)
                .map(|(_, fd)| fd.try_clone())
                .collect::<io::Result<Vec<_>>>()
        };
        let (tasks, procs) = (clone(Version::V1)?, clone(Version::V2)?);
        let mover = match procs.is_empty() {
            true => None,
            false => Some(Mover::start(procs)?),
        };
        Ok(Some(Joining { tasks, mover }))
    }

    /// CPU time the tree has used, if it is counted.
    pub fn cpu_used(&self) -> Option<Duration> {
        let (_, version, dir) = self
            .controllers
            .iter()
            .find(|(c, ..)| *c == Controller::CpuTime)?;
        match version {
            Version::V1 => read(dir, "cpuacct.usage")
                .trim()
                .parse()
                .ok()
                .map(Duration::from_nanos),
            Version::V2 => field(&read(dir, "cpu.stat"), "usage_usec").map(Duration::from_micros),
        }
    }

    /// The limit the tree ran into, if one: the kernel killed a process of
    /// it for memory, or refused it a process.
    pub fn hit(&self) -> Option<Hit> {
        self.controllers.iter().find_map(|(c, version, dir)| {
            let count = match (c, version) {
                (Controller::Memory, Version::V1) => field(&read(dir, "memory.oom_control"), "oom_kill"),
                (Controller::Memory, Version::V2) => field(&read(dir, "memory.events"), "oom_kill"),
                (Controller::Pids, _) => field(&read(dir, "pids.events"), "max"),
                (Controller::CpuTime, _) => None,
            };
            let hit = match c {
                Controller::Memory => Hit::Memory,
                _ => Hit::Processes,
            };
            (count > Some(0)).then_some(hit)
        })
    }
}

/// The command's process joining its groups. A v1 group it joins itself,
/// in the forked child, by writing `0` to the group's `tasks`: that moves
/// its one thread, for which the kernel takes no lock of the whole system
/// (writing to `cgroup.procs`, by the child or the engine, takes one and
/// waits out a grace period of the kernel's: 5 to 20 ms). A v2 group has
/// no such file for a process's own domain; the engine's thread moves it
/// there while the child makes its namespaces ([`Mover`]).
pub struct Joining {
    tasks: Vec<OwnedFd>,
    mover: Option<Mover>,
}

/// What the forked child uses to join its groups (no allocation there).
pub struct JoinEnds {
    /// The v1 groups' `tasks`: written `0`, before anything else.
    pub tasks: Vec<i32>,
    /// With v2 groups: where the child says its process ID, and where it
    /// reads the engine's answer, before it starts anything.
    pub mover: Option<(i32, i32)>,
}

impl Joining {
    /// The descriptors the forked child joins through, as raw numbers.
    pub fn child_ends(&self) -> JoinEnds {
        use std::os::fd::AsRawFd;
        JoinEnds {
            tasks: self.tasks.iter().map(AsRawFd::as_raw_fd).collect(),
            mover: self
                .mover
                .as_ref()
                .map(|m| (m.tell.as_raw_fd(), m.joined.as_raw_fd())),
        }
    }

    /// Once the child has started (or failed to): whether the engine's
    /// part of joining went well.
    pub fn finish(self) -> io::Result<()> {
        drop(self.tasks);
        self.mover.map_or(Ok(()), Mover::finish)
    }
}

/// A thread of the engine's moving the child into v2 groups: the child
/// says its process ID on one pipe, the thread writes it to each group's
/// `cgroup.procs` and answers on the other.
struct Mover {
    tell: OwnedFd,
    joined: OwnedFd,
    thread: std::thread::JoinHandle<io::Result<()>>,
}

impl Mover {
    fn start(procs: Vec<OwnedFd>) -> io::Result<Mover> {
        let (tell_read, tell) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
        let (joined, joined_write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
        let thread = std::thread::spawn(move || move_in(&tell_read, &procs, &joined_write));
        Ok(Mover { tell, joined, thread })
    }

    fn finish(self) -> io::Result<()> {
        drop((self.tell, self.joined));
        self.thread
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the cgroup mover panicked")))
    }
}

/// The mover's work: the process ID from `tell`, into every group of
/// `procs`, then `1` (or `0`) on `joined`. Ends without a word if the
/// child is gone.
fn move_in(tell: &OwnedFd, procs: &[OwnedFd], joined: &OwnedFd) -> io::Result<()> {
    let mut pid = [0u8; 4];
    if rustix::io::read(tell, &mut pid)? != pid.len() {
        return Ok(());
    }
    let pid = i32::from_ne_bytes(pid).to_string();
    let moved = procs
        .iter()
        .try_for_each(|fd| rustix::io::write(fd, pid.as_bytes()).map(drop));
    rustix::io::write(joined, if moved.is_ok() { b"1" } else { b"0" })?;
    moved.map_err(|e| io::Error::other(format!("moving the command into its cgroup: {e}")))
}

impl Drop for Group {
    fn drop(&mut self) {
        self.joins.clear();
        for (version, dir) in &self.dirs {
            remove(*version, dir);
        }
    }
}

/// Kills what is left in group `dir` and removes it; a group still busy
/// after a second is left (and cleared by a later engine).
fn remove(version: Version, dir: &Path) {
    for _ in 0..100 {
        match std::fs::remove_dir(dir) {
            Ok(()) => return,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return,
            Err(_) => {}
        }
        match version {
            Version::V2 => {
                let _ = std::fs::write(dir.join("cgroup.kill"), "1");
            }
            Version::V1 => {
                for pid in read(dir, "cgroup.procs").split_whitespace() {
                    if let Some(pid) = pid.parse().ok().and_then(rustix::process::Pid::from_raw) {
                        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Removes groups of engines that are gone (killed before removing them).
fn clear_stale(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(PREFIX))
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            // Empty once its processes died with their engine.
            let _ = std::fs::remove_dir(entry.path());
        }
    }
}

/// Makes controller `c` available to the children of v2 group `parent`.
/// A group with processes of its own cannot hand domain controllers down
/// (the "no internal processes" rule): the engine then moves itself to a
/// leaf group beside the commands', as a delegated service must.
fn delegate(parent: &Path, c: Controller) -> io::Result<()> {
    if c == Controller::CpuTime {
        return Ok(());
    }
    let name = c.name(Version::V2);
    let control = parent.join("cgroup.subtree_control");
    if read(parent, "cgroup.subtree_control")
        .split_whitespace()
        .any(|n| n == name)
    {
        return Ok(());
    }
    let enable = || std::fs::write(&control, format!("+{name}"));
    match enable() {
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
            let leaf = parent.join(format!("{PREFIX}engine-{}", std::process::id()));
            match std::fs::create_dir(&leaf) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(context(e, "making", &leaf)),
            }
            std::fs::write(leaf.join("cgroup.procs"), std::process::id().to_string())
                .map_err(|e| context(e, "moving the engine into", &leaf))?;
            enable()
        }
        done => done,
    }
    .map_err(|e| context(e, &format!("enabling {name} in"), &control))
}

/// Whether this system swaps nowhere (`/proc/swaps` lists none).
fn no_swap() -> bool {
    std::fs::read_to_string("/proc/swaps").is_ok_and(|s| s.lines().count() <= 1)
}

fn set(dir: &Path, file: &str, value: impl std::fmt::Display) -> io::Result<()> {
    let path = dir.join(file);
    let mut f = File::options()
        .write(true)
        .open(&path)
        .map_err(|e| context(e, "opening", &path))?;
    f.write_all(value.to_string().as_bytes())
        .map_err(|e| context(e, "writing", &path))
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file)).unwrap_or_default()
}

/// The number after `name` in a flat-keyed cgroup file (`name N` lines).
fn field(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

fn context(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 /docker/abc /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const CGROUP: &str = "\
4:memory:/docker/abc/inner
2:cpu,cpuacct:/
0::/user.slice
";

    #[test]
    fn each_controller_is_found_where_it_is_bound() {
        let places = Places::read(MOUNTINFO, CGROUP, |_| "pids hugetlb".to_owned());
        assert_eq!(
            places.found,
            vec![
                (
                    Controller::Memory,
                    Version::V1,
                    PathBuf::from("/sys/fs/cgroup/memory/inner")
                ),
                (
                    Controller::Pids,
                    Version::V2,
                    PathBuf::from("/sys/fs/cgroup/unified/user.slice")
                ),
                (
                    Controller::CpuTime,
                    Version::V1,
                    PathBuf::from("/sys/fs/cgroup/cpu,cpuacct")
                ),
            ]
        );
    }

    #[test]
    fn a_controller_no_hierarchy_offers_is_not_found() {
        let places = Places::read(MOUNTINFO, CGROUP, |_| "hugetlb".to_owned());
        assert!(!places.found.iter().any(|(c, ..)| *c == Controller::Pids));
        let pure_v2 = "41 23 0:38 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        let places = Places::read(pure_v2, "0::/system.slice/x.service\n", |dir| {
            assert_eq!(dir, Path::new("/sys/fs/cgroup/system.slice/x.service"));
            "cpu memory pids".to_owned()
        });
        assert_eq!(places.found.len(), 3);
        assert!(places.found.iter().all(|(_, v, _)| *v == Version::V2));
    }

    #[test]
    fn counters_are_read_by_name() {
        assert_eq!(field("oom 3\noom_kill 2\n", "oom_kill"), Some(2));
        assert_eq!(field("under_oom 0\noom_kill 0\n", "oom"), None);
        assert_eq!(
            field("usage_usec 1500\nuser_usec 1000\n", "usage_usec"),
            Some(1500)
        );
    }
}
