//! `wasi:filesystem` descriptors as the layer serves them: each call that
//! changes a journaled mount resolved ([`super::target`]), captured by a
//! [`Call`], made on its one parent directory and name, and ended; the
//! writes through an open file checked against the reserve
//! ([`super::limits`]); every other call delegated as it is.

use super::stream::FileStream;
use super::target::{end, id_at};
use super::{FsView, MAX_READ, fs_error};
use crate::journal::{Call, NewEntry, lock};
use wasmtime::component::Resource;
use wasmtime_wasi::filesystem::Descriptor;
use wasmtime_wasi::p2::bindings::filesystem::types::{
    self, Advice, DescriptorFlags, DescriptorStat, DescriptorType, DirectoryEntryStream, ErrorCode, Filesize,
    HostDescriptor, MetadataHashValue, NewTimestamp, OpenFlags, PathFlags,
};
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream, FsResult};

impl HostDescriptor for FsView<'_> {
    async fn open_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        path_flags: PathFlags,
        path: String,
        oflags: OpenFlags,
        flags: DescriptorFlags,
    ) -> FsResult<Resource<types::Descriptor>> {
        self.may_hold_another()?;
        let opened = self.open_checked(fd, path_flags, path, oflags, flags).await?;
        self.layer.held.insert(opened.rep());
        Ok(opened)
    }

    async fn create_directory_at(&mut self, fd: Resource<types::Descriptor>, path: String) -> FsResult<()> {
        let Some(target) = self.target(&fd, &path, false)? else {
            return self.inner.create_directory_at(fd, path).await;
        };
        let Some(name) = target.resolved.name.clone() else {
            return Err(ErrorCode::Exist.into());
        };
        let call = match target.recorder.is_some() && target.metadata()?.is_none() {
            true => target.capture(|r| r.before_create(&target.entry(self.layer, &name), NewEntry::Dir))?,
            false => None,
        };
        let call_name = target.resolved.call_name();
        let result = self
            .in_parent(&target.resolved.parent, async |inner, dir| {
                inner.create_directory_at(dir, call_name).await
            })
            .await;
        end(call, result.is_ok(), || id_at(&target.resolved.parent, &name))?;
        result
    }

    async fn symlink_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        src: String,
        dest: String,
    ) -> FsResult<()> {
        let Some(target) = self.target(&fd, &dest, false)? else {
            return self.inner.symlink_at(fd, src, dest).await;
        };
        let Some(name) = target.resolved.name.clone() else {
            return Err(ErrorCode::Exist.into());
        };
        let call = match target.recorder.is_some() && target.metadata()?.is_none() {
            true => {
                target.capture(|r| r.before_create(&target.entry(self.layer, &name), NewEntry::Symlink))?
            }
            false => None,
        };
        let call_name = target.resolved.call_name();
        let result = self
            .in_parent(&target.resolved.parent, async |inner, dir| {
                inner.symlink_at(dir, src, call_name).await
            })
            .await;
        end(call, result.is_ok(), || id_at(&target.resolved.parent, &name))?;
        result
    }

    async fn link_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        old_flags: PathFlags,
        old_path: String,
        new_fd: Resource<types::Descriptor>,
        new_path: String,
    ) -> FsResult<()> {
        let follow = old_flags.contains(PathFlags::SYMLINK_FOLLOW);
        let Some((from, to)) = self.pair(&fd, &old_path, follow, &new_fd, &new_path)? else {
            return self
                .inner
                .link_at(fd, old_flags, old_path, new_fd, new_path)
                .await;
        };
        let (Some(_), Some(name)) = (&from.resolved.name, to.resolved.name.clone()) else {
            return Err(ErrorCode::NotPermitted.into());
        };
        let call = match to.recorder.is_some() && to.metadata()?.is_none() {
            true => to.capture(|r| r.before_link(&to.entry(self.layer, &name)))?,
            false => None,
        };
        let names = (from.resolved.call_name(), to.resolved.call_name());
        // Not following: resolution followed a symlink where asked.
        let result = self
            .in_parents(
                (&from.resolved.parent, &to.resolved.parent),
                async |inner, src, dst| {
                    inner
                        .link_at(src, PathFlags::empty(), names.0, dst, names.1)
                        .await
                },
            )
            .await;
        // The new name has its own record, undone before anything older
        // (a directory the run made, which it may be in); its inode is
        // not marked the run's: it may be an original's.
        end(call, result.is_ok(), || None)?;
        result
    }

    async fn unlink_file_at(&mut self, fd: Resource<types::Descriptor>, path: String) -> FsResult<()> {
        self.remove(fd, path, false).await
    }

    async fn remove_directory_at(&mut self, fd: Resource<types::Descriptor>, path: String) -> FsResult<()> {
        self.remove(fd, path, true).await
    }

    async fn rename_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        old_path: String,
        new_fd: Resource<types::Descriptor>,
        new_path: String,
    ) -> FsResult<()> {
        let Some((from, to)) = self.pair(&fd, &old_path, false, &new_fd, &new_path)? else {
            return self.inner.rename_at(fd, old_path, new_fd, new_path).await;
        };
        let (Some(from_name), Some(to_name)) = (from.resolved.name.clone(), to.resolved.name.clone()) else {
            return Err(ErrorCode::Busy.into());
        };
        let call = match (&from.recorder, from.metadata()?) {
            (Some(_), Some(from_meta)) => {
                let to_meta = to.metadata()?;
                from.capture(|r| {
                    r.before_rename(
                        &from.entry(self.layer, &from_name),
                        &from_meta,
                        &to.entry(self.layer, &to_name),
                        to_meta.as_ref(),
                    )
                })?
            }
            _ => None,
        };
        let names = (from.resolved.call_name(), to.resolved.call_name());
        let result = self
            .in_parents(
                (&from.resolved.parent, &to.resolved.parent),
                async |inner, src, dst| inner.rename_at(src, names.0, dst, names.1).await,
            )
            .await;
        // Forgotten first: the directories may have moved even when the
        // call's bookkeeping fails.
        self.layer.parents.clear();
        end(call, result.is_ok(), || None)?;
        result
    }

    async fn set_times_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        path_flags: PathFlags,
        path: String,
        atim: NewTimestamp,
        mtim: NewTimestamp,
    ) -> FsResult<()> {
        // A trailing slash resolves a final symlink as the kernel does.
        let follow = path_flags.contains(PathFlags::SYMLINK_FOLLOW) || path.ends_with('/');
        let Some(target) = self.target(&fd, &path, follow)? else {
            return self.inner.set_times_at(fd, path_flags, path, atim, mtim).await;
        };
        let call = match (&target.recorder, target.metadata()?) {
            (Some(_), Some(meta)) => {
                let mount = &self.layer.mounts[target.mount].name;
                target.capture(|r| r.before_set_times(mount, &target.resolved.rel(), &meta))?
            }
            _ => None,
        };
        let call_name = target.resolved.call_name();
        // Not following: resolution followed a symlink where asked.
        let result = self
            .in_parent(&target.resolved.parent, async |inner, dir| {
                inner
                    .set_times_at(dir, PathFlags::empty(), call_name, atim, mtim)
                    .await
            })
            .await;
        end(call, result.is_ok(), || None)?;
        if let (Some(rec), Ok(Some(meta))) = (&target.recorder, target.metadata()) {
            lock(rec).left(&meta);
        }
        result
    }

    async fn set_times(
        &mut self,
        fd: Resource<types::Descriptor>,
        atim: NewTimestamp,
        mtim: NewTimestamp,
    ) -> FsResult<()> {
        let call = match self.descriptor_entry(&fd)? {
            Some((rec, mount, rel, meta)) => {
                let name = &self.layer.mounts[mount].name;
                let (call, ()) =
                    Call::begin(&rec, |r| r.before_set_times(name, &rel, &meta)).map_err(fs_error)?;
                Some(call)
            }
            None => None,
        };
        let result = self
            .inner
            .set_times(Resource::new_borrow(fd.rep()), atim, mtim)
            .await;
        end(call, result.is_ok(), || None)?;
        self.leave_file(&fd, false);
        result
    }

    // Writes through a descriptor need no capture here: a descriptor can
    // write only if it was opened for writing, and `open_at` captured the
    // file then (or the run created it).
    // (Writes still leave the free-space reserve: see [`SpaceReserve`].)
    async fn set_size(&mut self, fd: Resource<types::Descriptor>, size: Filesize) -> FsResult<()> {
        if let Some((file, _)) = self.room_for(&fd)? {
            let now = file.metadata().map_err(fs_error)?.len();
            self.check_room(&fd, size.saturating_sub(now))?;
        }
        self.inner.set_size(fd, size).await
    }

    async fn write(
        &mut self,
        fd: Resource<types::Descriptor>,
        buf: Vec<u8>,
        offset: Filesize,
    ) -> FsResult<Filesize> {
        self.check_room(&fd, buf.len() as u64)?;
        self.inner.write(fd, buf, offset).await
    }

    fn write_via_stream(
        &mut self,
        fd: Resource<types::Descriptor>,
        offset: Filesize,
    ) -> FsResult<Resource<DynOutputStream>> {
        let file = self.writable_file(&fd)?;
        let room = self.room_for(&fd)?.map(|(_, room)| room);
        let stream: DynOutputStream = Box::new(FileStream::at(file, offset, room));
        Ok(self.inner.table.push(stream)?)
    }

    fn append_via_stream(&mut self, fd: Resource<types::Descriptor>) -> FsResult<Resource<DynOutputStream>> {
        let file = self.writable_file(&fd)?;
        let room = self.room_for(&fd)?.map(|(_, room)| room);
        let stream: DynOutputStream = Box::new(FileStream::append(file, room));
        Ok(self.inner.table.push(stream)?)
    }

    fn drop(&mut self, fd: Resource<types::Descriptor>) -> wasmtime::Result<()> {
        self.leave_file(&fd, true);
        self.layer.nodes.remove(&fd.rep());
        self.layer.held.remove(&fd.rep());
        self.layer.parents.forget(fd.rep());
        HostDescriptor::drop(&mut self.inner, fd)
    }

    // Calls that change nothing are delegated as they are.

    fn read_via_stream(
        &mut self,
        fd: Resource<types::Descriptor>,
        offset: Filesize,
    ) -> FsResult<Resource<DynInputStream>> {
        self.inner.read_via_stream(fd, offset)
    }

    async fn advise(
        &mut self,
        fd: Resource<types::Descriptor>,
        offset: Filesize,
        len: Filesize,
        advice: Advice,
    ) -> FsResult<()> {
        self.inner.advise(fd, offset, len, advice).await
    }

    async fn sync_data(&mut self, fd: Resource<types::Descriptor>) -> FsResult<()> {
        self.inner.sync_data(fd).await
    }

    async fn get_flags(&mut self, fd: Resource<types::Descriptor>) -> FsResult<DescriptorFlags> {
        self.inner.get_flags(fd).await
    }

    async fn get_type(&mut self, fd: Resource<types::Descriptor>) -> FsResult<DescriptorType> {
        self.inner.get_type(fd).await
    }

    /// wasmtime-wasi returns at most 64 KiB per `read`; a guest copying a
    /// large file with large buffers (deploy-files asks for 1 MiB) would make
    /// sixteen times the host calls. Up to [`MAX_READ`] is read here instead.
    async fn read(
        &mut self,
        fd: Resource<types::Descriptor>,
        len: Filesize,
        offset: Filesize,
    ) -> FsResult<(Vec<u8>, bool)> {
        use std::os::unix::fs::FileExt;
        let file = match self.inner.table.get(&fd)? {
            Descriptor::File(f) if len > 64 << 10 => f.file.clone(),
            _ => return self.inner.read(fd, len, offset).await,
        };
        let mut buffer = vec![0; len.min(MAX_READ) as usize];
        let n = file.read_at(&mut buffer, offset).map_err(fs_error)?;
        buffer.truncate(n);
        Ok((buffer, n == 0))
    }

    async fn read_directory(
        &mut self,
        fd: Resource<types::Descriptor>,
    ) -> FsResult<Resource<DirectoryEntryStream>> {
        // A listing holds the directory's entries in the host's memory.
        self.may_hold_another()?;
        let listing = self.inner.read_directory(fd).await?;
        self.layer.held.insert(listing.rep());
        Ok(listing)
    }

    async fn sync(&mut self, fd: Resource<types::Descriptor>) -> FsResult<()> {
        self.inner.sync(fd).await
    }

    async fn stat(&mut self, fd: Resource<types::Descriptor>) -> FsResult<DescriptorStat> {
        self.inner.stat(fd).await
    }

    async fn stat_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        flags: PathFlags,
        path: String,
    ) -> FsResult<DescriptorStat> {
        self.inner.stat_at(fd, flags, path).await
    }

    async fn readlink_at(&mut self, fd: Resource<types::Descriptor>, path: String) -> FsResult<String> {
        self.inner.readlink_at(fd, path).await
    }

    async fn is_same_object(
        &mut self,
        a: Resource<types::Descriptor>,
        b: Resource<types::Descriptor>,
    ) -> wasmtime::Result<bool> {
        self.inner.is_same_object(a, b).await
    }

    async fn metadata_hash(&mut self, fd: Resource<types::Descriptor>) -> FsResult<MetadataHashValue> {
        self.inner.metadata_hash(fd).await
    }

    async fn metadata_hash_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        flags: PathFlags,
        path: String,
    ) -> FsResult<MetadataHashValue> {
        self.inner.metadata_hash_at(fd, flags, path).await
    }
}

impl FsView<'_> {
    /// Unlinks a file or symlink, or removes an empty directory.
    async fn remove(&mut self, fd: Resource<types::Descriptor>, path: String, dir: bool) -> FsResult<()> {
        let Some(target) = self.target(&fd, &path, false)? else {
            return match dir {
                true => self.inner.remove_directory_at(fd, path).await,
                false => self.inner.unlink_file_at(fd, path).await,
            };
        };
        let Some(name) = target.resolved.name.clone() else {
            return Err(match dir {
                true => ErrorCode::Invalid,
                false => ErrorCode::IsDirectory,
            }
            .into());
        };
        let call = match (&target.recorder, target.metadata()?) {
            (Some(_), Some(meta)) if meta.is_dir() == dir => {
                target.capture(|r| r.before_remove(&target.entry(self.layer, &name), &meta))?
            }
            _ => None,
        };
        let call_name = target.resolved.call_name();
        let result = self
            .in_parent(&target.resolved.parent, async |inner, parent| match dir {
                true => inner.remove_directory_at(parent, call_name).await,
                false => inner.unlink_file_at(parent, call_name).await,
            })
            .await;
        // Forgotten first: the directories may have moved even when the
        // call's bookkeeping fails.
        self.layer.parents.clear();
        end(call, result.is_ok(), || None)?;
        result
    }
}
