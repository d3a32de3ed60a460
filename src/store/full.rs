//! A full disk, as the writer sees it: one episode from the first write refused for lack of
//! space until writes work again, logged once at each end (not per request), and the WAL's
//! space given back.
//!
//! A WAL can only start over from its beginning once its pages are copied into the database
//! file, and that copy may need the database file to grow, which a full disk does not allow. So
//! the WAL keeps the space it has, and when space is freed it may take all of it again before
//! a checkpoint gets a chance: writes would then never come back. During an episode the writer
//! therefore copies the WAL into the database file and truncates it itself
//! (`wal_checkpoint(TRUNCATE)`): at once after a commit that follows a refused write (space
//! may have come back), and at most every `RETRY` while writes are refused.

use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::BUSY_TIMEOUT;

/// Shortest time between two truncations tried while writes are refused.
const RETRY: Duration = Duration::from_secs(1);

/// How long writes must have worked, without a write refused, before the episode is over
/// (right after the disk fills, small commits may still fit in the WAL's own space).
const QUIET: Duration = Duration::from_secs(2);

/// How long a truncation waits for readers to move to the latest snapshot, and for a
/// checkpoint of the checkpointer thread to end.
const READERS_WAIT: Duration = Duration::from_millis(200);

/// The writer's view of the disk.
#[derive(Default)]
pub(super) struct FullDisk {
    episode: Option<Episode>,
}

struct Episode {
    since: Instant,
    /// Jobs refused, and the last time one was.
    refused: usize,
    last_refused: Instant,
    /// When a truncation was last tried, whether a write was refused since, and whether one
    /// worked since the last write refused.
    tried: Option<Instant>,
    refused_since_try: bool,
    truncated: bool,
}

impl FullDisk {
    /// Whether writes are being refused for lack of space (an episode is under way).
    pub(super) fn active(&self) -> bool {
        self.episode.is_some()
    }

    /// A batch of `jobs` jobs was refused for lack of space.
    pub(super) fn refused(&mut self, conn: &Connection, jobs: usize) {
        let now = Instant::now();
        let episode = self.episode.get_or_insert_with(|| {
            log::error!(
                "store: the database's disk is full: writes are refused (10500) until space is \
                 freed; reads go on"
            );
            Episode {
                since: now,
                refused: 0,
                last_refused: now,
                tried: None,
                refused_since_try: false,
                truncated: false,
            }
        });
        episode.refused += jobs;
        episode.last_refused = now;
        episode.refused_since_try = true;
        episode.truncated = false;
        if episode.tried.is_none_or(|t| t.elapsed() >= RETRY) {
            truncate_wal(conn, episode);
        }
    }

    /// A batch committed; `wrote` says whether it changed anything (a batch that did not write
    /// a page commits even on a full disk). The episode is over once the WAL was truncated
    /// after the last write refused (space is back), or writes worked for `QUIET`.
    pub(super) fn committed(&mut self, conn: &Connection, wrote: bool) {
        let Some(episode) = &mut self.episode else {
            return;
        };
        if !wrote {
            return;
        }
        if episode.refused_since_try {
            truncate_wal(conn, episode);
        }
        if episode.truncated || episode.last_refused.elapsed() >= QUIET {
            log::warn!(
                "store: writes work again after {:.1}s of a full disk ({} write(s) refused)",
                episode.since.elapsed().as_secs_f64(),
                episode.refused
            );
            self.episode = None;
        }
    }
}

/// Copies the WAL into the database file and truncates it, if the disk and the readers let it.
/// A checkpoint of the checkpointer thread running at the same time makes it busy at once: it
/// is tried again for `READERS_WAIT`.
fn truncate_wal(conn: &Connection, episode: &mut Episode) {
    let start = Instant::now();
    episode.tried = Some(start);
    episode.refused_since_try = false;
    let _ = conn.busy_timeout(READERS_WAIT);
    let busy = loop {
        let busy = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
            r.get::<_, i64>(0)
        });
        match busy {
            Ok(1) if start.elapsed() < READERS_WAIT => std::thread::sleep(Duration::from_millis(5)),
            other => break other,
        }
    };
    let _ = conn.busy_timeout(BUSY_TIMEOUT);
    match busy {
        Ok(0) => {
            episode.truncated = true;
            log::info!(
                "store: the WAL is copied into the database file and truncated: its space is free"
            )
        }
        Ok(_) => log::debug!("store: the WAL cannot be truncated yet: it is busy"),
        Err(e) => log::debug!("store: the WAL cannot be truncated yet: {e}"),
    }
}
