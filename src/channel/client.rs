//! The outbound HTTP client of the real channels: blocking, with a timeout on every call
//! (connect, send and read together), no redirects, and the reply read whole whatever its
//! status (a channel's error answers carry bodies that must be verified too).

use std::io::Read;
use std::time::Duration;

/// Most bytes of a channel's reply read.
const MAX_REPLY: u64 = 1 << 20;

/// A channel's reply.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    /// The first header with this (lower-case) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Why a call got no reply: the outcome at the channel is unknown.
#[derive(Debug, Clone)]
pub struct NoReply(pub String);

impl std::fmt::Display for NoReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A blocking HTTP client with one timeout for every call.
#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
}

impl Client {
    pub fn new(timeout: Duration) -> Client {
        let agent = ureq::AgentBuilder::new()
            .timeout(timeout)
            .timeout_connect(timeout)
            .redirects(0)
            .build();
        Client { agent }
    }

    /// Sends one request; any HTTP status is a reply, only a network failure or a timeout is
    /// `NoReply`.
    pub fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Reply, NoReply> {
        let mut req = self.agent.request(method, url);
        for (name, value) in headers {
            req = req.set(name, value);
        }
        let result = if method == "GET" {
            req.call()
        } else {
            req.send_bytes(body)
        };
        let resp = match result {
            Ok(resp) => resp,
            Err(ureq::Error::Status(_, resp)) => resp,
            Err(ureq::Error::Transport(t)) => return Err(NoReply(t.to_string())),
        };
        let status = resp.status();
        let headers = resp
            .headers_names()
            .into_iter()
            .filter_map(|n| {
                let v = resp.header(&n)?.to_string();
                Some((n.to_ascii_lowercase(), v))
            })
            .collect();
        let mut body = Vec::new();
        resp.into_reader()
            .take(MAX_REPLY)
            .read_to_end(&mut body)
            .map_err(|e| NoReply(format!("reading the reply: {e}")))?;
        Ok(Reply {
            status,
            headers,
            body,
        })
    }
}
