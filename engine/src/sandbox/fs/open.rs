//! `open-at` on a journaled mount: what is refused before anything is
//! captured, what the open captures (a create, a truncation, a write in
//! place), and the descriptor handed to the guest only once the capture
//! is complete.

use super::target::{Target, id_at};
use super::{FsView, fs_error, is_special};
use crate::journal::{Call, Capture, FileId, NewEntry, lock};
use cap_std::fs::Metadata;
use wasmtime::component::Resource;
use wasmtime_wasi::filesystem::Descriptor;
use wasmtime_wasi::p2::FsResult;
use wasmtime_wasi::p2::bindings::filesystem::types::{
    self, DescriptorFlags, ErrorCode, HostDescriptor, OpenFlags, PathFlags,
};

impl FsView<'_> {
    /// `open-at`, once the step may hold the descriptor it makes.
    pub(super) async fn open_checked(
        &mut self,
        fd: Resource<types::Descriptor>,
        path_flags: PathFlags,
        path: String,
        oflags: OpenFlags,
        flags: DescriptorFlags,
    ) -> FsResult<Resource<types::Descriptor>> {
        // A trailing slash resolves a final symlink as the kernel does.
        let follow = path_flags.contains(PathFlags::SYMLINK_FOLLOW) || path.ends_with('/');
        let Some(target) = self.target(&fd, &path, follow)? else {
            return self.inner.open_at(fd, path_flags, path, oflags, flags).await;
        };
        let mount = target.mount;
        let Some(name) = target.resolved.name.clone() else {
            // The directory itself: nothing to create or truncate.
            let opened = self.inner.open_at(fd, path_flags, path, oflags, flags).await?;
            self.remember(&opened, mount, false);
            return Ok(opened);
        };
        // Where everything is the run's own, nothing needs capturing, or
        // even looking at (and there are no special files: a guest cannot
        // make one).
        if let Some(rec) = &target.recorder
            && lock(rec).owns_all_in(target.resolved.parent.id)
        {
            return self.open_own(&target, path_flags, oflags, flags).await;
        }
        let meta = target.metadata()?;
        refuse_before_capture(meta.as_ref(), oflags, flags)?;
        let writes = flags.contains(DescriptorFlags::WRITE)
            || oflags.intersects(OpenFlags::CREATE | OpenFlags::TRUNCATE);
        let (call, capture) = match writes {
            true => self.capture_open(&target, &name, meta.as_ref(), oflags)?,
            false => (None, Capture::Nothing),
        };
        let oflags = match capture {
            Capture::MovedAside => oflags | OpenFlags::CREATE,
            Capture::Nothing => oflags,
        };
        let opened = self.open_in_parent(&target, path_flags, oflags, flags).await;
        let created = call.is_some() && (meta.is_none() || capture == Capture::MovedAside);
        let created_id = match (&opened, created) {
            (Ok(_), true) => id_at(&target.resolved.parent, &name),
            _ => None,
        };
        let opened = self.end_open(call, opened, created_id)?;
        self.remember(&opened, mount, created);
        Ok(opened)
    }

    /// Opens the entry `target` names, in its resolved directory, by its
    /// one plain name (resolution already followed a symlink where asked).
    async fn open_in_parent(
        &mut self,
        target: &Target,
        path_flags: PathFlags,
        oflags: OpenFlags,
        flags: DescriptorFlags,
    ) -> FsResult<Resource<types::Descriptor>> {
        let name = target.resolved.call_name();
        self.in_parent(&target.resolved.parent, async |inner, dir| {
            inner.open_at(dir, path_flags, name, oflags, flags).await
        })
        .await
    }

    /// An open in a directory that is all the run's own: nothing to
    /// capture; a file it makes is the step's.
    async fn open_own(
        &mut self,
        target: &Target,
        path_flags: PathFlags,
        oflags: OpenFlags,
        flags: DescriptorFlags,
    ) -> FsResult<Resource<types::Descriptor>> {
        let opened = self.open_in_parent(target, path_flags, oflags, flags).await?;
        self.remember(&opened, target.mount, true);
        if let (Some(rec), Ok(Descriptor::File(f))) = (&target.recorder, self.inner.table.get(&opened))
            && let Ok(meta) = f.file.metadata()
        {
            lock(rec).made(FileId::of(&Metadata::from_just_metadata(meta)));
        }
        Ok(opened)
    }

    /// Captures an open that can write, by what is at `name` (`meta`).
    fn capture_open(
        &self,
        target: &Target,
        name: &str,
        meta: Option<&Metadata>,
        oflags: OpenFlags,
    ) -> FsResult<(Option<Call>, Capture)> {
        let entry = target.entry(self.layer, name);
        let mut capture = Capture::Nothing;
        let call = target.capture(|r| match meta {
            None if oflags.contains(OpenFlags::CREATE) => r.before_create(&entry, NewEntry::File),
            // EXCLUSIVE counts only with CREATE: alone, it is ignored.
            Some(m) if m.is_file() && !oflags.contains(OpenFlags::CREATE | OpenFlags::EXCLUSIVE) => {
                match oflags.contains(OpenFlags::TRUNCATE) {
                    true => r.before_truncate(&entry, m).map(|c| capture = c),
                    // CREATE on an existing file opens it for writing too.
                    false => r.before_write_open(&entry, m),
                }
            }
            _ => Ok(()),
        })?;
        Ok((call, capture))
    }

    /// Ends the open's capture: a new file that cannot take over its
    /// original's attributes is not handed to the guest.
    fn end_open(
        &mut self,
        call: Option<Call>,
        opened: FsResult<Resource<types::Descriptor>>,
        created: Option<FileId>,
    ) -> FsResult<Resource<types::Descriptor>> {
        let (Some(call), Ok(new)) = (call, &opened) else {
            // No capture, or a failed open: the call, dropped, failed.
            return opened;
        };
        let file = match self.inner.table.get(new)? {
            Descriptor::File(f) => Some(f.file.clone()),
            Descriptor::Dir(_) => None,
        };
        if let Err(e) = call.succeeded(created, file.as_deref()) {
            let _ = HostDescriptor::drop(&mut self.inner, opened?);
            return Err(fs_error(e));
        }
        opened
    }
}

/// What wasmtime-wasi refuses before it touches the disk is refused here
/// before anything is captured; special files are never opened.
fn refuse_before_capture(meta: Option<&Metadata>, oflags: OpenFlags, flags: DescriptorFlags) -> FsResult<()> {
    if meta.is_some_and(is_special) {
        return Err(ErrorCode::NotPermitted.into());
    }
    if flags.intersects(
        DescriptorFlags::FILE_INTEGRITY_SYNC
            | DescriptorFlags::DATA_INTEGRITY_SYNC
            | DescriptorFlags::REQUESTED_WRITE_SYNC,
    ) {
        return Err(ErrorCode::Unsupported.into());
    }
    if oflags.contains(OpenFlags::DIRECTORY)
        && oflags.intersects(OpenFlags::CREATE | OpenFlags::EXCLUSIVE | OpenFlags::TRUNCATE)
    {
        return Err(ErrorCode::Invalid.into());
    }
    Ok(())
}
