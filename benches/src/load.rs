//! What the end-to-end load tools share: the bench protocol (event names and the raw
//! servers' one-byte tags), the WebSocket settings, argument parsing and process
//! memory.
//!
//! The binaries are `etp-bench-server` (the etp server under test, tokio or
//! async-std), `raw-echo-server` (tokio-tungstenite with no etp: the physical limit)
//! and `etp-bench` (the load generator). `benches/run-matrix.sh` runs them together.

use std::time::Duration;

use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// The etp event answered with its own data.
pub const EV_ECHO: &str = "echo";
/// The etp event that increments the server's counter, without an acknowledgement.
pub const EV_COUNT: &str = "count";
/// The etp event acknowledged with the server's counter in decimal.
pub const EV_GETCOUNT: &str = "getcount";
/// The etp event that puts the connection in [`ROOM`] (acknowledged with no data).
pub const EV_JOIN: &str = "join";
/// The etp event whose data is broadcast to [`ROOM`] as [`EV_MSG`].
pub const EV_PUB: &str = "pub";
/// The event the fanout members receive.
pub const EV_MSG: &str = "msg";
/// The one room of the bench servers.
pub const ROOM: &str = "r";

/// Raw protocol: a message starting with this byte increments the counter (no reply).
pub const RAW_COUNT: u8 = b'!';
/// Raw protocol: a message starting with this byte is answered with `?<counter>`.
pub const RAW_GETCOUNT: u8 = b'?';
/// Raw protocol: a message starting with this byte joins the fanout room; the answer
/// is the same message.
pub const RAW_JOIN: u8 = b'+';
/// Raw protocol: a message starting with this byte is sent, unchanged (the same
/// `Message`, shared), to every member of the fanout room.
pub const RAW_PUB: u8 = b'^';
// Every other message is echoed unchanged.

/// The read limit of the bench servers: room for 16 KiB payloads and far more.
pub const READ_LIMIT: usize = 16 << 20;
/// The per-connection outbound bound of the bench servers: a fanout member may have
/// a whole publish window of 16 KiB frames queued.
pub const OUTBOUND_LIMIT: usize = 64 << 20;

/// The WebSocket settings of the raw server and of the load generator's sockets: the
/// same small buffers etp uses (`etp_driver::handshake::websocket_config`), so that
/// raw and etp run over an identically configured tungstenite. The read buffer is
/// etp's default (`ConnConfig::read_buffer_size`), taken from it so that the two
/// cannot drift apart again: until 2026-12-04 raw read 8 KiB per system call against
/// etp's 4 KiB, which alone made raw about 8 % faster on 64 B `fire`.
pub fn websocket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(etp_tokio::ConnConfig::default().read_buffer_size)
        .write_buffer_size(8 * 1024)
        .max_write_buffer_size(64 << 20)
        .max_message_size(Some(READ_LIMIT))
        .max_frame_size(Some(READ_LIMIT))
}

/// The resident set size of process `pid` in bytes (`VmRSS` of `/proc/<pid>/status`).
pub fn rss_bytes(pid: u32) -> std::io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map(|kib| kib * 1024)
        .ok_or_else(|| std::io::Error::other("no VmRSS line"))
}

/// Command-line arguments: `--name value` options and `--flag`s, plus positionals.
#[derive(Debug, Default)]
pub struct Args {
    options: Vec<(String, Option<String>)>,
    /// Arguments that are not options, in order.
    pub positional: Vec<String>,
}

impl Args {
    /// Parses `args` (without the program name). `flags` lists the options that take
    /// no value.
    pub fn parse(args: impl IntoIterator<Item = String>, flags: &[&str]) -> Self {
        let mut parsed = Self::default();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let Some(name) = arg.strip_prefix("--") else {
                parsed.positional.push(arg);
                continue;
            };
            if let Some((name, value)) = name.split_once('=') {
                parsed
                    .options
                    .push((name.to_owned(), Some(value.to_owned())));
            } else if flags.contains(&name) {
                parsed.options.push((name.to_owned(), None));
            } else {
                parsed.options.push((name.to_owned(), args.next()));
            }
        }
        parsed
    }

    /// The last value given for `--name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.options
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_deref())
    }

    /// True when `--name` was given.
    pub fn flag(&self, name: &str) -> bool {
        self.options.iter().any(|(n, _)| n == name)
    }

    /// Every option name given, to reject unknown ones.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.options.iter().map(|(n, _)| n.as_str())
    }

    /// `--name` parsed as `T`, or `default`; exits with a message when it is invalid.
    pub fn parse_or<T: std::str::FromStr>(&self, name: &str, default: T) -> T {
        match self.get(name) {
            None => default,
            Some(text) => text.parse().unwrap_or_else(|_| {
                eprintln!("invalid value for --{name}: {text:?}");
                std::process::exit(2);
            }),
        }
    }

    /// `--name` as a duration: `2s`, `500ms`, `1.5` (seconds).
    pub fn duration_or(&self, name: &str, default: Duration) -> Duration {
        match self.get(name) {
            None => default,
            Some(text) => parse_duration(text).unwrap_or_else(|| {
                eprintln!("invalid duration for --{name}: {text:?}");
                std::process::exit(2);
            }),
        }
    }
}

/// `2s`, `500ms`, `1.5` (seconds).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let (number, scale) = if let Some(ms) = text.strip_suffix("ms") {
        (ms, 1e-3)
    } else if let Some(s) = text.strip_suffix('s') {
        (s, 1.0)
    } else {
        (text, 1.0)
    };
    let value: f64 = number.parse().ok()?;
    (value.is_finite() && value >= 0.0).then(|| Duration::from_secs_f64(value * scale))
}

/// A size: `64`, `16k`/`16KiB` (1024), `1m`/`1MiB`.
pub fn parse_size(text: &str) -> Option<usize> {
    let lower = text.to_ascii_lowercase();
    let (number, scale) = if let Some(n) = lower
        .strip_suffix("kib")
        .or_else(|| lower.strip_suffix('k'))
    {
        (n.to_owned(), 1024)
    } else if let Some(n) = lower
        .strip_suffix("mib")
        .or_else(|| lower.strip_suffix('m'))
    {
        (n.to_owned(), 1024 * 1024)
    } else {
        (lower.strip_suffix('b').unwrap_or(&lower).to_owned(), 1)
    };
    number.trim().parse::<usize>().ok().map(|n| n * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_parse() {
        assert_eq!(parse_size("64"), Some(64));
        assert_eq!(parse_size("64B"), Some(64));
        assert_eq!(parse_size("16KiB"), Some(16 * 1024));
        assert_eq!(parse_size("16k"), Some(16 * 1024));
        assert_eq!(parse_size("1m"), Some(1 << 20));
        assert_eq!(parse_size("x"), None);
        assert_eq!(parse_duration("2s"), Some(Duration::from_secs(2)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("-1"), None);
    }

    #[test]
    fn args_take_values_flags_and_positionals() {
        let args = Args::parse(
            ["127.0.0.1:1", "--mode", "raw", "--quiet", "--k=8"].map(String::from),
            &["quiet"],
        );
        assert_eq!(args.positional, ["127.0.0.1:1"]);
        assert_eq!(args.get("mode"), Some("raw"));
        assert!(args.flag("quiet"));
        assert_eq!(args.parse_or("k", 1usize), 8);
        assert_eq!(args.parse_or("missing", 3usize), 3);
    }
}
