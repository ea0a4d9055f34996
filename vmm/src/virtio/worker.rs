//! A device's worker thread and the eventfd that stops it.

use std::thread::JoinHandle;

use vmm_sys_util::eventfd::EventFd;

use super::ActivateError;

pub struct Worker<T> {
    stop: EventFd,
    handle: Option<JoinHandle<T>>,
}

impl<T: Send + 'static> Worker<T> {
    /// Spawn `body`, handing it the eventfd that will ask it to stop.
    pub fn spawn(
        name: &str,
        body: impl FnOnce(EventFd) -> T + Send + 'static,
    ) -> Result<Self, ActivateError> {
        let stop = EventFd::new(libc::EFD_NONBLOCK).map_err(ActivateError::Worker)?;
        let theirs = stop.try_clone().map_err(ActivateError::Worker)?;
        let handle = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || body(theirs))
            .map_err(ActivateError::Worker)?;
        Ok(Self {
            stop,
            handle: Some(handle),
        })
    }

    /// Ask the worker to stop and wait for it; `None` if it panicked.
    pub fn stop(mut self) -> Option<T> {
        let _ = self.stop.write(1);
        self.handle.take()?.join().ok()
    }
}

/// A worker whose device goes away (a VM dropped half-built) is asked to
/// stop, not left serving rings nobody reads.
impl<T> Drop for Worker<T> {
    fn drop(&mut self) {
        if self.handle.is_some() {
            let _ = self.stop.write(1);
        }
    }
}
