//! Attacker-controlled text (user agents, called numbers, IPs from the API) made safe to draw on
//! an operator's terminal.
//!
//! Every char for which `char::is_control()` holds (C0 with ESC and BEL, DEL, C1) becomes U+FFFD,
//! so no escape sequence can move the cursor, recolour, clear or retitle the terminal; bidi
//! embeddings, overrides and isolates (U+202A–U+202E, U+2066–U+2069) and the bidi marks
//! (U+200E, U+200F, U+061C) are removed, so text cannot reorder what follows it. The result is cut
//! to a number of chars with `…`.
//!
//! Never: passes a control char or a bidi control through; allocates more than `max_chars` chars.

/// The replacement for a control char: visible, and never part of an escape sequence.
pub const REPLACEMENT: char = '\u{FFFD}';

/// `text` safe to draw: controls replaced, bidi controls removed, at most `max_chars` chars.
pub fn neutralise(text: &str, max_chars: usize) -> String {
    let mut out = String::new();
    if max_chars == 0 {
        return out;
    }
    for (kept, c) in text.chars().filter(|c| !is_bidi_control(*c)).enumerate() {
        if kept == max_chars {
            out.pop();
            out.push('…');
            return out;
        }
        out.push(if c.is_control() { REPLACEMENT } else { c });
    }
    out
}

/// Chars that change the direction of the text around them.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

/// Whether `text` holds nothing [`neutralise`] would change (no control, no bidi control).
pub fn is_harmless(text: &str) -> bool {
    !text.chars().any(|c| c.is_control() || is_bidi_control(c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn top_sanitize_escape_sequences() {
        let hostile = "evil\x1b]0;pwned\x07\x1b[2J\u{9b}31m\u{202E}gnp.exe\u{2066}x\u{7f}";
        let shown = neutralise(hostile, 200);
        assert_eq!(
            shown,
            "evil\u{FFFD}]0;pwned\u{FFFD}\u{FFFD}[2J\u{FFFD}31mgnp.exex\u{FFFD}"
        );
        assert!(is_harmless(&shown));
        assert!(!is_harmless(hostile));
        assert!(!shown.bytes().any(|b| b == 0x1b || b == 0x07));
    }

    #[test]
    fn top_sanitize_cuts_long_text() {
        assert_eq!(neutralise("abcdef", 4), "abc…");
        assert_eq!(neutralise("abcd", 4), "abcd");
        assert_eq!(neutralise("", 4), "");
        assert_eq!(neutralise("abc", 0), "");
        assert_eq!(
            neutralise("ab\u{202E}cd", 4),
            "abcd",
            "removed chars do not count"
        );
    }

    proptest! {
        #[test]
        fn top_sanitize_never_passes_controls(text in any::<String>(), max in 1_usize..64) {
            let shown = neutralise(&text, max);
            prop_assert!(is_harmless(&shown));
            prop_assert!(shown.chars().count() <= max);
            // No ESC, BEL or C1 control in the UTF-8 (C1 chars encode as C2 80..C2 9F).
            prop_assert!(!shown.bytes().any(|b| b < 0x20 || b == 0x7f));
            let c1 = |c: char| (0x80..=0x9f).contains(&u32::from(c));
            prop_assert!(!shown.chars().any(c1));
        }
    }
}
