//! The credentials of an `Authorization` / `Proxy-Authorization` header value (RFC 3261 22.4,
//! RFC 2617 3.2.2): `Digest username="100", realm="asterisk", nonce="...", uri="sip:...",
//! response="..."`, borrowed from the value.
//!
//! Liberal: the scheme and parameter names in any case; values quoted or not; SP, HTAB and folds
//! (CR/LF) around names, `=` and commas; a missing comma between parameters. An unquoted value
//! runs to whitespace or a comma (so `uri=sip:1@h` is kept); the first of a duplicated parameter
//! wins; a parameter that does not parse is skipped up to the next comma outside quotes. A quoted
//! value is returned as the raw bytes between its quotes: `\"` escapes are not undone (so
//! `"a\"b"` gives `a\"b`), and a value without its closing quote is dropped.
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

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::sip::scanner::scan;
    use crate::sip::scanner::tests::{corpus_file, inside};

    type Fields<'a> = [Option<&'a [u8]>; 5];

    fn fields<'a>(credentials: &Credentials<'a>) -> Fields<'a> {
        [
            credentials.username,
            credentials.realm,
            credentials.nonce,
            credentials.uri,
            credentials.response,
        ]
    }

    /// What real clients sent after a 401 (captured from sipsak 0.9.8.1 and sipvicious 0.3
    /// `svcrack` against a loopback listener; the sensor's address rewritten to 203.0.113.7).
    #[test]
    fn auth_real_clients() {
        let sipsak = scan(corpus_file("valid/sipsak_register_auth.sip")).unwrap();
        let credentials = parse_credentials(sipsak.authorization.unwrap());
        assert!(credentials.digest);
        let want: Fields<'_> = [
            Some(b"100"),
            Some(b"asterisk"),
            Some(b"0123abcd"),
            Some(b"sip:203.0.113.7:5099"),
            Some(b"6dda1d135285e4e384e0e97a362289ec"),
        ];
        assert_eq!(fields(&credentials), want);
        assert_eq!(sipsak.auth_username(), Some(&b"100"[..]));
        let svcrack = scan(corpus_file("valid/svcrack_register_auth.sip")).unwrap();
        let credentials = parse_credentials(svcrack.authorization.unwrap());
        let want: Fields<'_> = [
            Some(b"100"),
            Some(b"asterisk"),
            Some(b"0123abcd"),
            Some(b"sip:203.0.113.7"),
            Some(b"5d54352b153a17812943f4f946a10cf5"),
        ];
        assert_eq!(fields(&credentials), want);
        assert!(credentials.digest);
        assert_eq!(svcrack.auth_username(), Some(&b"100"[..]));
        let no_auth = scan(corpus_file("valid/sipvicious_register.sip")).unwrap();
        assert_eq!(no_auth.auth_username(), None);
    }

    /// (value, digest, username)
    type UsernameCase = (&'static [u8], bool, Option<&'static [u8]>);

    #[rustfmt::skip]
    const USERNAME_CASES: &[UsernameCase] = &[
        (b"Digest username=\"100\"", true, Some(b"100")),
        (b"digest USERNAME = \"100\" , realm=\"r\"", true, Some(b"100")),
        (b"DIGEST\r\n\tusername=100,nonce=x", true, Some(b"100")),
        (b"Digest realm=\"a,b\", username=\"u\"", true, Some(b"u")),
        (b"Digest username=\"a\\\"b\"", true, Some(b"a\\\"b")),
        (b"Digest username=\"a\\\\\", realm=r", true, Some(b"a\\\\")),
        (b"Digest username=\"first\", username=\"second\"", true, Some(b"first")),
        (b"Digest username=\"\"", true, Some(b"")),
        (b"Digest username=\"unterminated, realm=r", true, None),
        (b"Digest user name=\"x\", username=y", true, Some(b"y")),
        (b"Digest =\"x\", username=z", true, Some(b"z")),
        (b"Digest garbage \"q,uoted\", username=w", true, Some(b"w")),
        (b"Digest username=\"a\" username=\"b\"", true, Some(b"a")),
        (b"Digest username=sip:1@h", true, Some(b"sip:1@h")),
        (b"Basic dXNlcjpwYXNz", false, None),
        (b"Basic username=\"x\"", false, Some(b"x")),
        (b"Digestusername=\"x\"", false, None),
        (b"", false, None),
        (b"   ", false, None),
        (b",,,", false, None),
        (b"Digest", true, None),
        (b"Digest ,username", true, None),
        (b"Digest username", true, None),
        (b"Digest username=", true, Some(b"")),
        (b"\xff\x00 username=\"\xfe\"", false, Some(b"\xfe")),
    ];

    #[test]
    fn auth_username_cases() {
        for &(value, digest, username) in USERNAME_CASES {
            let credentials = parse_credentials(value);
            assert_eq!(credentials.digest, digest, "{}", value.escape_ascii());
            assert_eq!(credentials.username, username, "{}", value.escape_ascii());
        }
    }

    #[test]
    fn auth_username_blank_is_none() {
        for (value, want) in [
            (&b"Digest username=\"  \""[..], None),
            (b"Digest username=\"\"", None),
            (b"Digest realm=r", None),
            (b"Digest username=\" 7 \"", Some(&b" 7 "[..])),
        ] {
            let mut message = b"REGISTER sip:h SIP/2.0\r\nProxy-Authorization: ".to_vec();
            message.extend_from_slice(value);
            message.extend_from_slice(b"\r\n\r\n");
            assert_eq!(scan(&message).unwrap().auth_username(), want);
        }
    }

    const NAMES: [&str; 10] = [
        "username",
        "realm",
        "nonce",
        "uri",
        "response",
        "algorithm",
        "qop",
        "cnonce",
        "nc",
        "opaque",
    ];

    fn case_mixed(text: &str, mask: u32) -> String {
        text.chars()
            .enumerate()
            .map(|(index, c)| {
                if mask >> (index % 32) & 1 == 1 {
                    c.to_ascii_uppercase()
                } else {
                    c
                }
            })
            .collect()
    }

    fn spaces() -> impl Strategy<Value = &'static str> {
        prop_oneof![
            Just(""),
            Just(" "),
            Just("\t "),
            Just("\r\n "),
            Just("\r\n\t")
        ]
    }

    prop_compose! {
        /// (name index, the value as written, what the parser returns)
        fn param()(
            name in 0usize..NAMES.len(),
            quoted in any::<bool>(),
            quoted_text in proptest::collection::vec(prop_oneof![
                "[ !#-\\[\\]-~]".prop_map(|s| s),
                Just("\\\"".to_owned()),
                Just("\\\\".to_owned()),
                Just(",".to_owned()),
            ], 0..8),
            token in "[A-Za-z0-9.!%*_+`'~:@/-]{1,12}",
        ) -> (usize, String, String) {
            if quoted {
                let inner: String = quoted_text.concat();
                (name, format!("\"{inner}\""), inner)
            } else {
                (name, token.clone(), token)
            }
        }
    }

    prop_compose! {
        fn header()(
            scheme_mask in any::<u32>(),
            scheme in prop_oneof![Just("Digest"), Just("Basic"), Just("NTLM")],
            params in proptest::collection::vec((param(), any::<u32>(), spaces(), spaces(), spaces()), 0..10),
            lead in spaces(),
        ) -> (String, bool, [Option<String>; 5]) {
            let mut text = format!("{}{}", case_mixed(scheme, scheme_mask), if params.is_empty() { "" } else { " " });
            let mut want: [Option<String>; 5] = Default::default();
            let mut seen = [false; NAMES.len()];
            let mut first = true;
            for ((name, written, parsed), mask, before_equals, after_equals, after_comma) in params {
                if std::mem::replace(&mut seen[name], true) {
                    continue;
                }
                if !first {
                    text.push(',');
                    text.push_str(after_comma);
                }
                first = false;
                text.push_str(&format!("{}{before_equals}={after_equals}{written}", case_mixed(NAMES[name], mask)));
                if name < 5 {
                    want[name] = Some(parsed);
                }
            }
            (format!("{lead}{text}"), scheme == "Digest", want)
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn auth_generated_header_round_trips((text, digest, want) in header()) {
            let credentials = parse_credentials(text.as_bytes());
            prop_assert_eq!(credentials.digest, digest);
            let got = fields(&credentials).map(|field| field.map(|bytes| String::from_utf8(bytes.to_vec()).unwrap()));
            prop_assert_eq!(got, want, "{:?}", text);
        }

        #[test]
        fn auth_never_panics_on_bytes(value in proptest::collection::vec(any::<u8>(), 0..200)) {
            let credentials = parse_credentials(&value);
            for field in fields(&credentials).into_iter().flatten() {
                prop_assert!(inside(&value, field));
            }
        }

        #[test]
        fn auth_never_panics_on_messy_text(value in "[ \t\r\n,=\"\\\\a-z]{0,60}") {
            let credentials = parse_credentials(value.as_bytes());
            for field in fields(&credentials).into_iter().flatten() {
                prop_assert!(inside(value.as_bytes(), field));
            }
        }
    }
}
