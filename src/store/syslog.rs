//! The syslog line of compat.md §4 as an RFC 3164 datagram to a local unix socket (`/dev/log`),
//! as glibc's `syslog(3)` with ident `sentrypeer`, `LOG_PID`, facility user, priority notice.
//!
//! Never: blocks longer than [`SYSLOG_SEND_TIMEOUT`] per datagram.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

use time::OffsetDateTime;
use time::macros::format_description;

use crate::config::limits::SYSLOG_SEND_TIMEOUT;
use crate::event::{Event, display_ip};

/// `<13>`: facility user (1) * 8 + severity notice (5).
const PRIORITY_USER_NOTICE: u8 = 13;

/// A connected syslog socket.
pub(crate) struct Syslog {
    path: PathBuf,
    socket: Option<UnixDatagram>,
    pid: u32,
    line: Vec<u8>,
}

impl Syslog {
    pub(crate) fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            socket: None,
            pid: std::process::id(),
            line: Vec::new(),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Connects if not connected yet.
    pub(crate) fn connect(&mut self) -> io::Result<()> {
        if self.socket.is_some() {
            return Ok(());
        }
        let socket = UnixDatagram::unbound()?;
        socket.set_write_timeout(Some(SYSLOG_SEND_TIMEOUT))?;
        socket.connect(&self.path)?;
        self.socket = Some(socket);
        Ok(())
    }

    /// Sends one event's line; on error the socket is dropped (reconnected later).
    pub(crate) fn send(&mut self, event: &Event, now: OffsetDateTime) -> io::Result<()> {
        let Some(socket) = &self.socket else {
            return Err(io::Error::new(io::ErrorKind::NotConnected, "not connected"));
        };
        self.line.clear();
        write_line(&mut self.line, event, now, self.pid);
        match socket.send(&self.line) {
            Ok(_) => Ok(()),
            Err(error) => {
                self.socket = None;
                Err(error)
            }
        }
    }
}

/// `<13>Mmm dd hh:mm:ss sentrypeer[pid]: Source IP: ip, Method: m, Agent: a`.
pub(crate) fn write_line(out: &mut Vec<u8>, event: &Event, now: OffsetDateTime, pid: u32) {
    use std::io::Write;
    let stamp =
        format_description!("[month repr:short] [day padding:space] [hour]:[minute]:[second]");
    let stamp = now.format(stamp).unwrap_or_default();
    let _ = write!(
        out,
        "<{PRIORITY_USER_NOTICE}>{stamp} sentrypeer[{pid}]: Source IP: {}, Method: {}, Agent: {}",
        display_ip(event.source),
        event.method_text(),
        event.user_agent_text()
    );
}

/// The time stamped on lines (UTC: the local offset cannot be read safely in a threaded
/// process; rsyslog and journald stamp their own reception time anyway).
pub(crate) fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}
