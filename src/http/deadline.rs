//! Socket reads and writes under a deadline: `read_deadline` gets at least one byte, and
//! `write_deadline` writes all of a buffer, each before an instant however the peer paces its
//! side, by setting the socket's timeout to the time left (changed only when it is notably
//! off, so the steady keep-alive path costs no extra system call).

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use super::conn::Fail;

/// Shortest socket read timeout ever set (a zero timeout would mean "block forever").
const MIN_READ_TIMEOUT: Duration = Duration::from_millis(1);
/// Shortest socket write timeout ever set (a zero timeout would mean "block forever").
const MIN_WRITE_TIMEOUT: Duration = Duration::from_millis(1);

/// Reads at least one byte into `dst` before `deadline` (always trying at least once).
///
/// The socket's read timeout is only changed when it is notably longer than the time left
/// (or much shorter, to avoid spinning), so the steady keep-alive path costs no extra system
/// call; a read may overshoot the deadline by at most 1/32 of the time that was left.
pub(super) fn read_deadline(
    stream: &mut TcpStream,
    current: &mut Option<Duration>,
    dst: &mut [u8],
    deadline: Instant,
) -> Result<usize, Fail> {
    loop {
        let want = deadline
            .saturating_duration_since(Instant::now())
            .max(MIN_READ_TIMEOUT);
        let reset = match *current {
            None => true,
            Some(cur) => cur > want + want / 32 || cur < want / 2,
        };
        if reset {
            stream.set_read_timeout(Some(want)).map_err(Fail::Io)?;
            *current = Some(want);
        }
        match stream.read(dst) {
            Ok(0) => return Err(Fail::Eof),
            Ok(n) => return Ok(n),
            Err(e) => match e.kind() {
                io::ErrorKind::Interrupted => {}
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                    if Instant::now() >= deadline {
                        return Err(Fail::Timeout);
                    }
                }
                _ => return Err(Fail::Io(e)),
            },
        }
    }
}

/// Writes all of `bytes` before `deadline` (`None`: no deadline, the socket's own timeout per
/// call applies), however slowly the peer reads: each `write` may block only for the time left.
///
/// Like `read_deadline`, the socket's write timeout is only changed when it is notably longer
/// than the time left (or much shorter), so a response that goes out in one call costs no extra
/// system call.
pub(super) fn write_deadline(
    stream: &mut TcpStream,
    current: &mut Option<Duration>,
    mut bytes: &[u8],
    deadline: Option<Instant>,
) -> io::Result<()> {
    while !bytes.is_empty() {
        if let Some(deadline) = deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "response not written within the write timeout",
                ));
            }
            let want = left.max(MIN_WRITE_TIMEOUT);
            let reset = match *current {
                None => true,
                Some(cur) => cur > want + want / 32 || cur < want / 2,
            };
            if reset {
                stream.set_write_timeout(Some(want))?;
                *current = Some(want);
            }
        }
        match stream.write(bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) => match e.kind() {
                io::ErrorKind::Interrupted => {}
                // The loop checks the deadline; without one, the socket's timeout is final.
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut if deadline.is_some() => {}
                _ => return Err(e),
            },
        }
    }
    Ok(())
}
