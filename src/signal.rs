//! SIGTERM and SIGINT as messages, for a graceful stop.
//!
//! `listen` installs handlers for both; a handler only writes the signal's number to a pipe
//! (`write` is async-signal-safe), and a thread turns what it reads into messages on a channel.
//! The standard library has no signal API and the C library is linked anyway, so the two calls
//! are declared here rather than taken from a crate.

use std::io::{self, Read};
use std::os::unix::io::IntoRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::thread;

pub const SIGINT: i32 = 2;
pub const SIGTERM: i32 = 15;
const SIG_ERR: usize = usize::MAX;

/// The pipe's writing end, for the handler (-1 until `listen`).
static WRITE_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" {
    fn signal(signum: i32, handler: usize) -> usize;
    fn write(fd: i32, buf: *const u8, count: usize) -> isize;
    fn __errno_location() -> *mut i32;
}

extern "C" fn on_signal(signum: i32) {
    let fd = WRITE_FD.load(Ordering::Relaxed);
    if fd < 0 {
        return;
    }
    let byte = signum as u8;
    // SAFETY: `write` is async-signal-safe and `byte` outlives the call; errno is saved and
    // restored so that the interrupted code never sees the handler's.
    unsafe {
        let errno = *__errno_location();
        write(fd, &byte, 1);
        *__errno_location() = errno;
    }
}

/// Installs the handlers of SIGTERM and SIGINT; each signal then arrives as its number on the
/// returned channel. Call once.
pub fn listen() -> io::Result<Receiver<i32>> {
    let (mut reader, writer) = UnixStream::pair()?;
    // A handler must never block: a full pipe drops the byte (a stop is under way anyway).
    writer.set_nonblocking(true)?;
    // The writing end lives as long as the process.
    WRITE_FD.store(writer.into_raw_fd(), Ordering::SeqCst);
    let (tx, rx) = mpsc::channel();
    thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut byte = [0u8; 1];
            while let Ok(1) = reader.read(&mut byte) {
                if tx.send(i32::from(byte[0])).is_err() {
                    return;
                }
            }
        })?;
    for sig in [SIGTERM, SIGINT] {
        // SAFETY: `on_signal` has the C signature of a handler and only does what a handler may.
        if unsafe { signal(sig, on_signal as extern "C" fn(i32) as usize) } == SIG_ERR {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(rx)
}

/// The name of a signal `listen` handles.
pub fn name(sig: i32) -> &'static str {
    match sig {
        SIGTERM => "SIGTERM",
        SIGINT => "SIGINT",
        _ => "a signal",
    }
}
