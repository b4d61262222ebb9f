//! Where log lines go: a buffer shared by every thread, written out by one
//! thread of its own.
//!
//! A call appends its formatted line to the buffer and goes on; it never
//! waits for the terminal or the container runtime's pipe. The writing
//! thread takes everything buffered at once and writes it in one `write`,
//! then pauses a few milliseconds for more, so that under load many lines
//! leave in one system call and one wake-up. A call wakes the thread only
//! when it sleeps for want of lines (a wake is a system call too, and a
//! context switch on a busy core), or when much is buffered. No line is ever dropped: the decision
//! log is an audit record. When the buffer holds [`LIMIT`] bytes, a call
//! waits for room (back-pressure), as a blocking write would.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

/// Bytes buffered before writers wait for the thread to take them.
pub const LIMIT: usize = 4 * 1024 * 1024;

/// After a write, the thread lets lines gather this long before it takes
/// them (unless [`HIGH_WATER`] bytes come first): one wake-up and one write
/// per pause instead of one per line. A line that comes while the thread
/// sleeps because none came is written at once.
const PAUSE: std::time::Duration = std::time::Duration::from_millis(5);

/// Buffered bytes that end the pause early.
const HIGH_WATER: usize = 256 * 1024;

#[derive(Default)]
struct State {
    /// Lines not yet taken by the writing thread.
    lines: Vec<u8>,
    /// The writing thread waits for lines: the next line must wake it.
    asleep: bool,
    /// The writing thread pauses after a write ([`PAUSE`]): only
    /// [`HIGH_WATER`] bytes wake it.
    pausing: bool,
    /// Writers wait for room: the thread must wake them when it takes.
    full: bool,
    /// No more lines will come: write what is left and stop.
    closed: bool,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    /// Lines arrived, or closed.
    lines: Condvar,
    /// The buffer has room again.
    room: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The writers' side: cheap to clone, one per log layer.
#[derive(Clone)]
pub struct LogWriter {
    shared: Arc<Shared>,
}

/// The writing thread; dropping it writes out what is buffered and stops
/// the thread.
pub struct Guard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// Starts the thread writing to `out`, named `name`.
///
/// # Errors
///
/// The thread cannot be started.
pub fn spawn(name: &str, out: impl Write + Send + 'static) -> std::io::Result<(LogWriter, Guard)> {
    let shared = Arc::new(Shared::default());
    let thread = std::thread::Builder::new().name(name.to_owned()).spawn({
        let shared = shared.clone();
        move || write_out(&shared, out)
    })?;
    Ok((
        LogWriter {
            shared: shared.clone(),
        },
        Guard {
            shared,
            thread: Some(thread),
        },
    ))
}

/// The writing thread: takes what is buffered, writes it, until closed and
/// empty. A failed write is not retried (there is nowhere to report it).
fn write_out(shared: &Shared, mut out: impl Write) {
    let mut taken = Vec::new();
    loop {
        {
            let mut state = shared.lock();
            // No pause when much is already buffered (writers may be
            // waiting for room).
            if !state.closed && state.lines.len() < HIGH_WATER {
                state.pausing = true;
                state = shared
                    .lines
                    .wait_timeout(state, PAUSE)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
                state.pausing = false;
            }
            while state.lines.is_empty() && !state.closed {
                state.asleep = true;
                state = shared
                    .lines
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            state.asleep = false;
            if state.lines.is_empty() {
                break;
            }
            std::mem::swap(&mut state.lines, &mut taken);
            if std::mem::take(&mut state.full) {
                shared.room.notify_all();
            }
        }
        let _ = out.write_all(&taken).and_then(|()| out.flush());
        taken.clear();
        // A burst must not keep its capacity for ever.
        taken.shrink_to(64 * 1024);
    }
    let _ = out.flush();
}

impl LogWriter {
    /// Appends `line` (one or more whole lines) to the buffer, waiting
    /// while it is full.
    fn append(&self, line: &[u8]) {
        let shared = &*self.shared;
        let mut state = shared.lock();
        while state.lines.len() >= LIMIT && !state.closed {
            state.full = true;
            state = shared
                .room
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        state.lines.extend_from_slice(line);
        let wake = state.asleep || (state.pausing && state.lines.len() >= HIGH_WATER);
        if wake {
            state.asleep = false;
            state.pausing = false;
            shared.lines.notify_one();
        }
    }
}

impl Write for &LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.append(buf);
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.append(buf);
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = &'a LogWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        {
            let mut state = self.shared.lock();
            state.closed = true;
            self.shared.lines.notify_one();
            self.shared.room.notify_all();
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink the test reads back, counting the writes it got.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<(Vec<u8>, usize)>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let mut sink = self.0.lock().unwrap();
            sink.0.extend_from_slice(buf);
            sink.1 += 1;
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_line_from_every_thread_is_written_whole_and_in_each_threads_order() {
        let sink = Sink::default();
        let (writer, guard) = spawn("test-log", sink.clone()).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let writer = writer.clone();
                std::thread::spawn(move || {
                    for n in 0..5_000 {
                        let line = format!("{{\"thread\":{t},\"n\":{n}}}\n");
                        (&writer).write_all(line.as_bytes()).unwrap();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        // Dropping the guard writes out what is left.
        drop(guard);
        let (bytes, writes) = sink.0.lock().unwrap().clone();
        let text = String::from_utf8(bytes).unwrap();
        let mut next = [0; 4];
        for line in text.lines() {
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            let t = value["thread"].as_u64().unwrap() as usize;
            assert_eq!(value["n"].as_u64().unwrap(), next[t], "{line}");
            next[t] += 1;
        }
        assert_eq!(next, [5_000; 4]);
        // Lines are batched: fewer writes than lines.
        assert!(writes < 20_000, "{writes} writes for 20,000 lines");
    }

    #[test]
    fn a_full_buffer_makes_writers_wait_never_drops() {
        // A sink slower than the writers: each write sleeps.
        struct Slow(Sink);
        impl Write for Slow {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                std::thread::sleep(std::time::Duration::from_millis(5));
                self.0.write(buf)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let sink = Sink::default();
        let (writer, guard) = spawn("test-log-slow", Slow(sink.clone())).unwrap();
        let line = vec![b'x'; 1023]
            .into_iter()
            .chain([b'\n'])
            .collect::<Vec<_>>();
        // Three times the limit, from one thread.
        let lines = 3 * LIMIT / line.len();
        for _ in 0..lines {
            (&writer).write_all(&line).unwrap();
            assert!(writer.shared.lock().lines.len() < LIMIT + line.len());
        }
        drop(guard);
        assert_eq!(sink.0.lock().unwrap().0.len(), lines * line.len());
    }
}
