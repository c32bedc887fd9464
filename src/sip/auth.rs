//! The credentials of an `Authorization` / `Proxy-Authorization` header value (RFC 3261 22.4,
//! RFC 2617 3.2.2): `Digest username="100", realm="asterisk", nonce="...", uri="sip:...",
//! response="..."`, borrowed from the value.
//!
//! Liberal: the scheme and parameter names in any case; values quoted or tokens; SP, HTAB and
//! folds (CR/LF) around names, `=` and commas; a missing comma between parameters; an unquoted
//! value runs to whitespace or a comma (so `uri=sip:1@h` is kept); the first of a duplicated parameter wins; a
//! parameter that does not parse is skipped up to the next comma outside quotes. A quoted value is
//! returned as the raw bytes between its quotes: `\"` escapes are not undone (so `"a\"b"` gives
//! `a\"b`), and a value without its closing quote is dropped.
//!
//! Never: allocates, panics on any input, returns a slice outside the input, errs (a garbled value
//! gives fields that are `None`).

use crate::sip::scanner::Request;

/// The parameters of one credentials value that an event records or a challenge checks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Credentials<'a> {
    /// The scheme is `Digest` (any case).
    pub digest: bool,
    pub username: Option<&'a [u8]>,
    pub realm: Option<&'a [u8]>,
    pub nonce: Option<&'a [u8]>,
    pub uri: Option<&'a [u8]>,
    pub response: Option<&'a [u8]>,
}

/// Parses a credentials value: the scheme, then comma-separated `name=value` parameters.
pub fn parse_credentials(value: &[u8]) -> Credentials<'_> {
    let mut cursor = Cursor { rest: value };
    cursor.skip_whitespace();
    let scheme = cursor.take_while(|byte| !is_whitespace(byte) && byte != b',');
    let mut credentials = Credentials {
        digest: scheme.eq_ignore_ascii_case(b"Digest"),
        ..Credentials::default()
    };
    loop {
        cursor.skip(|byte| is_whitespace(byte) || byte == b',');
        if cursor.rest.is_empty() {
            return credentials;
        }
        match cursor.param() {
            Some((name, param_value)) => credentials.record(name, param_value),
            None => cursor.skip_to_comma(),
        }
    }
}

impl<'a> Credentials<'a> {
    fn record(&mut self, name: &[u8], value: &'a [u8]) {
        let slot = if name.eq_ignore_ascii_case(b"username") {
            &mut self.username
        } else if name.eq_ignore_ascii_case(b"realm") {
            &mut self.realm
        } else if name.eq_ignore_ascii_case(b"nonce") {
            &mut self.nonce
        } else if name.eq_ignore_ascii_case(b"uri") {
            &mut self.uri
        } else if name.eq_ignore_ascii_case(b"response") {
            &mut self.response
        } else {
            return;
        };
        slot.get_or_insert(value);
    }
}

impl<'a> Request<'a> {
    /// The `username` of the first `Authorization` / `Proxy-Authorization` header, raw (a quoted
    /// value's escapes kept); `None` when there is none or it is blank.
    pub fn auth_username(&self) -> Option<&'a [u8]> {
        parse_credentials(self.authorization?)
            .username
            .filter(|username| !username.trim_ascii().is_empty())
    }
}

struct Cursor<'a> {
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take_while(&mut self, keep: impl Fn(u8) -> bool) -> &'a [u8] {
        let len = self
            .rest
            .iter()
            .position(|&byte| !keep(byte))
            .unwrap_or(self.rest.len());
        let (taken, rest) = self.rest.split_at_checked(len).unwrap_or((self.rest, &[]));
        self.rest = rest;
        taken
    }

    fn skip(&mut self, skipped: impl Fn(u8) -> bool) {
        self.take_while(skipped);
    }

    fn skip_whitespace(&mut self) {
        self.skip(is_whitespace);
    }

    /// `name = value` (a quoted string given without its quotes, else the bytes up to whitespace
    /// or a comma); `None` without a token name and `=`, or with an unclosed quote.
    fn param(&mut self) -> Option<(&'a [u8], &'a [u8])> {
        let name = self.take_while(is_token_byte);
        self.skip_whitespace();
        let (&equals, rest) = self.rest.split_first()?;
        if name.is_empty() || equals != b'=' {
            return None;
        }
        self.rest = rest;
        self.skip_whitespace();
        let value = if self.rest.first() == Some(&b'"') {
            self.quoted()?
        } else {
            self.take_while(|byte| !is_whitespace(byte) && byte != b',')
        };
        Some((name, value))
    }

    /// The bytes between a quote at the cursor and its closing quote (a backslash escapes the
    /// next byte); the cursor moves past the closing quote. `None` without a closing quote.
    fn quoted(&mut self) -> Option<&'a [u8]> {
        let inner = self.rest.get(1..)?;
        let mut index = 0;
        while let Some(&byte) = inner.get(index) {
            match byte {
                b'\\' => index += 2,
                b'"' => {
                    self.rest = inner.get(index + 1..).unwrap_or_default();
                    return inner.get(..index);
                }
                _ => index += 1,
            }
        }
        self.rest = &[];
        None
    }

    /// Moves to the next comma outside a quoted string (or the end).
    fn skip_to_comma(&mut self) {
        while let Some(&byte) = self.rest.first() {
            match byte {
                b',' => return,
                b'"' => {
                    if self.quoted().is_none() {
                        return;
                    }
                }
                _ => self.rest = self.rest.get(1..).unwrap_or_default(),
            }
        }
    }
}

fn is_whitespace(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\r' | b'\n')
}

/// RFC 3261 `token` characters.
fn is_token_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric()
        || matches!(
            byte,
            b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
        )
}
