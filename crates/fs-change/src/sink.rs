//! Where differs send changes: a [`ChangeSink`]. The tar writer, a `Vec` collector and a
//! channel adapter implement it, so a differ never knows what consumes its output.

use std::error::Error;

use crate::change::{Change, Entry};

/// A consumer failed to take a change (the tar sink hit `EPIPE`, a channel's receiver is gone).
/// Wraps the consumer's own error so the caller can [`SinkError::downcast`] it back.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct SinkError(Box<dyn Error + Send + Sync + 'static>);

impl SinkError {
    /// Wraps any error.
    pub fn new(err: impl Into<Box<dyn Error + Send + Sync + 'static>>) -> SinkError {
        SinkError(err.into())
    }

    /// The wrapped error.
    pub fn into_inner(self) -> Box<dyn Error + Send + Sync + 'static> {
        self.0
    }

    /// The wrapped error as `E`, or `self` back when it is another type.
    ///
    /// # Errors
    /// Returns `self` unchanged when the inner error is not an `E`.
    pub fn downcast<E: Error + 'static>(self) -> Result<E, SinkError> {
        match self.0.downcast::<E>() {
            Ok(e) => Ok(*e),
            Err(other) => Err(SinkError(other)),
        }
    }
}

/// Receives changes in canonical order.
pub trait ChangeSink {
    /// Takes the next change.
    ///
    /// # Errors
    /// The consumer cannot go on; the differ stops and returns the error.
    fn push(&mut self, change: Change) -> Result<(), SinkError>;

    /// An unchanged directory of the new tree at `path` that the differ walked into, offered in
    /// canonical order before anything below it. A writer that writes the parents of changed
    /// entries (containerd's `includeParents`) can take their metadata from here instead of
    /// looking each up again; everyone else ignores it (the default).
    ///
    /// # Errors
    /// As [`ChangeSink::push`].
    fn unchanged_dir(&mut self, path: Box<[u8]>, entry: Entry) -> Result<(), SinkError> {
        let _ = (path, entry);
        Ok(())
    }
}

impl ChangeSink for Vec<Change> {
    fn push(&mut self, change: Change) -> Result<(), SinkError> {
        Vec::push(self, change);
        Ok(())
    }
}

impl<S: ChangeSink + ?Sized> ChangeSink for &mut S {
    fn push(&mut self, change: Change) -> Result<(), SinkError> {
        (**self).push(change)
    }

    fn unchanged_dir(&mut self, path: Box<[u8]>, entry: Entry) -> Result<(), SinkError> {
        (**self).unchanged_dir(path, entry)
    }
}

impl<S: ChangeSink + ?Sized> ChangeSink for Box<S> {
    fn push(&mut self, change: Change) -> Result<(), SinkError> {
        (**self).push(change)
    }

    fn unchanged_dir(&mut self, path: Box<[u8]>, entry: Entry) -> Result<(), SinkError> {
        (**self).unchanged_dir(path, entry)
    }
}

/// The receiving side hung up.
#[derive(Debug, thiserror::Error)]
#[error("change channel closed by its receiver")]
pub struct ChannelClosed;

/// Sends every change down a crossbeam channel, so a differ on one thread can feed a consumer
/// on another. A bounded channel gives back-pressure.
#[derive(Debug, Clone)]
pub struct ChannelSink(pub crossbeam_channel::Sender<Change>);

impl ChangeSink for ChannelSink {
    fn push(&mut self, change: Change) -> Result<(), SinkError> {
        self.0
            .send(change)
            .map_err(|_| SinkError::new(ChannelClosed))
    }
}

/// Calls a closure per change; handy for counting or printing.
pub struct FnSink<F>(pub F);

impl<F> std::fmt::Debug for FnSink<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FnSink")
    }
}

impl<F: FnMut(Change) -> Result<(), SinkError>> ChangeSink for FnSink<F> {
    fn push(&mut self, change: Change) -> Result<(), SinkError> {
        (self.0)(change)
    }
}
