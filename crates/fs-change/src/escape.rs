//! One unambiguous text form for byte names (tar names, directory entries), used wherever a
//! name from an untrusted tree or layer is printed: error messages, `ovdiff changes` lines.
//!
//! A name is any byte string but NUL-free in practice; printed raw, a newline splits a line,
//! control bytes drive the terminal, and lossy UTF-8 decoding prints two different names as the
//! same U+FFFD text. The rule, applied left to right:
//!
//! | input                                                   | printed as          |
//! |---------------------------------------------------------|---------------------|
//! | `\` (0x5c)                                              | `\\`                |
//! | newline (0x0a)                                          | `\n`                |
//! | tab (0x09)                                              | `\t`                |
//! | any other C0 control (0x00–0x1f) and DEL (0x7f)         | `\xNN`              |
//! | a C1 control (U+0080–U+009F, bytes `c2 80`–`c2 9f`)     | `\xc2\xNN`          |
//! | a byte that is not part of valid UTF-8                  | `\xNN`              |
//! | every other valid UTF-8 character                       | itself              |
//!
//! `NN` is two lowercase hex digits of the byte. Since a backslash in the input is always
//! doubled, every backslash in the output starts one of the four escapes `\\`, `\n`, `\t`,
//! `\xNN`, so the text decodes back to exactly one byte string ([`unescape`]): two different
//! names never print the same. Plain names (printable UTF-8 without `\`) print unchanged.

use std::fmt::{self, Write};

/// Displays a byte name under the module's escaping rule.
///
/// ```
/// use fs_change::escape::Escaped;
/// assert_eq!(Escaped(b"etc/motd").to_string(), "etc/motd");
/// assert_eq!(Escaped(b"a\nb\\c\0\xff").to_string(), "a\\nb\\\\c\\x00\\xff");
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Escaped<'a>(pub &'a [u8]);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for chunk in self.0.utf8_chunks() {
            for c in chunk.valid().chars() {
                match c {
                    '\\' => f.write_str("\\\\")?,
                    '\n' => f.write_str("\\n")?,
                    '\t' => f.write_str("\\t")?,
                    c if c.is_control() => {
                        let mut utf8 = [0; 4];
                        for b in c.encode_utf8(&mut utf8).bytes() {
                            write!(f, "\\x{b:02x}")?;
                        }
                    }
                    c => f.write_char(c)?,
                }
            }
            for b in chunk.invalid() {
                write!(f, "\\x{b:02x}")?;
            }
        }
        Ok(())
    }
}

/// The escaped text of `name` (see the module docs).
pub fn escape(name: &[u8]) -> String {
    Escaped(name).to_string()
}

/// Decodes text produced by [`escape`] back to the bytes it came from; `None` when `text` holds
/// a backslash that starts none of the four escapes (so it cannot have come from [`escape`]).
pub fn unescape(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        match bytes.get(i + 1)? {
            b'\\' => out.push(b'\\'),
            b'n' => out.push(b'\n'),
            b't' => out.push(b'\t'),
            b'x' => {
                let hex = std::str::from_utf8(bytes.get(i + 2..i + 4)?).ok()?;
                if !hex
                    .bytes()
                    .all(|h| h.is_ascii_digit() || (b'a'..=b'f').contains(&h))
                {
                    return None;
                }
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            _ => return None,
        }
        i += 2;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn plain_names_are_unchanged() {
        for name in [
            "etc/passwd",
            "usr/share/zoneinfo/América/São_Paulo",
            "日本語 ファイル",
            "",
        ] {
            assert_eq!(escape(name.as_bytes()), name);
        }
    }

    #[test]
    fn each_rule() {
        assert_eq!(escape(b"a\\b"), "a\\\\b");
        assert_eq!(escape(b"a\nb\tc"), "a\\nb\\tc");
        assert_eq!(escape(b"\0\x01\x1b[31m\x7f"), "\\x00\\x01\\x1b[31m\\x7f");
        assert_eq!(
            escape("x\u{85}y\u{9f}".as_bytes()),
            "x\\xc2\\x85y\\xc2\\x9f"
        );
        assert_eq!(escape(b"\xff\xfe"), "\\xff\\xfe");
        // A truncated multi-byte sequence is invalid UTF-8 byte by byte.
        assert_eq!(escape(b"caf\xc3"), "caf\\xc3");
        // U+00A0 (the first character after C1) is printable and kept.
        assert_eq!(escape("\u{a0}".as_bytes()), "\u{a0}");
        // Output never holds a control character or a raw newline.
        let all: Vec<u8> = (0..=255).collect();
        assert!(!escape(&all).chars().any(char::is_control));
    }

    #[test]
    fn names_that_print_alike_under_lossy_decoding_stay_apart() {
        assert_ne!(escape(b"\xff"), escape(b"\xfe"));
        assert_ne!(escape(b"\xff"), escape("\u{fffd}".as_bytes()));
        assert_ne!(escape(b"\\x41"), escape(b"A"));
        assert_ne!(escape(b"\\n"), escape(b"\n"));
    }

    /// Every byte string up to three bytes long over an alphabet holding each class the rule
    /// treats differently, plus UTF-8 lead and continuation bytes: the escaped forms are
    /// pairwise different, and each decodes back to its name.
    #[test]
    fn round_trip_and_uniqueness() {
        let alphabet: &[u8] = b"\\nxt0a\n\t\0\x1f\x7f\xc2\x85\xa0\xc3\xe6\x97\xff/ ";
        let mut names: Vec<Vec<u8>> = vec![Vec::new()];
        let mut last = names.clone();
        for _ in 0..3 {
            let next: Vec<Vec<u8>> = last
                .iter()
                .flat_map(|n| {
                    alphabet.iter().map(move |&b| {
                        let mut m = n.clone();
                        m.push(b);
                        m
                    })
                })
                .collect();
            names.extend(next.iter().cloned());
            last = next;
        }
        let mut seen: HashMap<String, Vec<u8>> = HashMap::new();
        for name in names {
            let text = escape(&name);
            assert_eq!(unescape(&text).as_deref(), Some(&name[..]), "{text}");
            if let Some(other) = seen.insert(text.clone(), name.clone()) {
                panic!("{other:?} and {name:?} both print as {text}");
            }
        }
    }

    #[test]
    fn unescape_refuses_what_escape_never_writes() {
        for bad in ["\\", "\\q", "\\x4", "\\xZZ", "\\x4F"] {
            assert_eq!(unescape(bad), None, "{bad}");
        }
    }
}
