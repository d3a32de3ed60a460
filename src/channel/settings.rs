//! Each app's settings of a real channel, read from the store and parsed once (keys are loaded
//! then), kept for a short while: a request does not read and parse them each time, and a
//! change by `unipay channel set` (another process) is seen within `TTL`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::{Error, MSG_CHANNEL_DISABLED, MSG_NO_CHANNEL_CONFIG};
use crate::store::Store;

/// How long parsed settings are trusted before the store is asked again.
const TTL: Duration = Duration::from_secs(2);

/// Settings that can be parsed from the store's text.
pub trait Parse: Sized + Send + Sync + 'static {
    fn parse(text: &str) -> Result<Self, String>;
}

/// One channel's parsed settings per app.
pub struct Cache<T: Parse> {
    channel: &'static str,
    store: Arc<Store>,
    entries: Mutex<HashMap<String, Entry<T>>>,
}

struct Entry<T> {
    checked: Instant,
    updated_at: i64,
    enabled: bool,
    settings: Result<Arc<T>, String>,
}

impl<T: Parse> Cache<T> {
    pub fn new(channel: &'static str, store: Arc<Store>) -> Cache<T> {
        Cache {
            channel,
            store,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The app's settings when the channel is set and enabled; 20023 when it was never set,
    /// 20021 when it is disabled.
    pub fn get(&self, app_id: &str) -> Result<Arc<T>, Error> {
        self.lookup(app_id, true)
    }

    /// The app's settings even when the channel is disabled (a trade opened before must still
    /// be closed, queried and paid).
    pub fn get_any(&self, app_id: &str) -> Result<Arc<T>, Error> {
        self.lookup(app_id, false)
    }

    fn lookup(&self, app_id: &str, enabled_only: bool) -> Result<Arc<T>, Error> {
        let answer = |e: &Entry<T>| -> Result<Arc<T>, Error> {
            if enabled_only && !e.enabled {
                return Err(Error::ChannelDisabled(MSG_CHANNEL_DISABLED));
            }
            e.settings.clone().map_err(|why| {
                Error::internal(format!(
                    "the stored settings of {} do not load: {why}",
                    self.channel
                ))
            })
        };
        {
            let entries = self.entries.lock().expect("settings cache lock");
            if let Some(e) = entries.get(app_id) {
                if e.checked.elapsed() < TTL {
                    return answer(e);
                }
            }
        }
        let Some(row) = self.store.channel_config(app_id, self.channel)? else {
            self.entries
                .lock()
                .expect("settings cache lock")
                .remove(app_id);
            return Err(Error::Config(MSG_NO_CHANNEL_CONFIG));
        };
        let mut entries = self.entries.lock().expect("settings cache lock");
        let reuse = entries
            .get(app_id)
            .filter(|e| e.updated_at == row.updated_at)
            .map(|e| e.settings.clone());
        let settings = reuse.unwrap_or_else(|| T::parse(&row.settings).map(Arc::new));
        let entry = Entry {
            checked: Instant::now(),
            updated_at: row.updated_at,
            enabled: row.enabled,
            settings,
        };
        let result = answer(&entry);
        entries.insert(app_id.to_string(), entry);
        result
    }
}
