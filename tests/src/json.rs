//! Just enough JSON for the run summary: split a JSON object into its top-level
//! members (values kept as raw text, nested values included) and merge members into
//! it. No JSON crate needed: parkboot's summary is one object on one line.

use std::fmt::Write as _;

/// A JSON object as its top-level members: (decoded key, raw JSON value text).
pub type Members = Vec<(String, String)>;

/// Splits a JSON object into its top-level members, in order. Values are validated
/// only as far as needed to find where they end.
pub fn object_members(text: &str) -> Result<Members, String> {
    let mut parser = Parser {
        bytes: text.as_bytes(),
        text,
        at: 0,
    };
    let members = parser.object()?;
    parser.skip_whitespace();
    if parser.at != parser.bytes.len() {
        return Err(format!("trailing text at byte {}", parser.at));
    }
    Ok(members)
}

/// Writes members as a one-line JSON object.
pub fn object_text(members: &[(String, String)]) -> String {
    let mut out = String::from("{");
    for (index, (key, value)) in members.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        out.push_str(&quote(key));
        out.push(':');
        out.push_str(value);
    }
    out.push('}');
    out
}

/// Merges `extra` into the object `base`: members of `base` whose key is in `extra`
/// are dropped, then `extra` is appended. `extra` values are raw JSON text.
pub fn merge(base: &str, extra: &[(String, String)]) -> Result<String, String> {
    let mut members = object_members(base)?;
    members.retain(|(key, _)| !extra.iter().any(|(extra_key, _)| extra_key == key));
    members.extend(extra.iter().cloned());
    Ok(object_text(&members))
}

/// A JSON string literal for `text`.
pub fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A JSON number for `value` (non-finite values become `null`).
pub fn number(value: f64) -> String {
    if value.is_finite() {
        format!("{value}")
    } else {
        "null".to_string()
    }
}

struct Parser<'a> {
    bytes: &'a [u8],
    text: &'a str,
    at: usize,
}

impl Parser<'_> {
    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn expect(&mut self, byte: u8) -> Result<(), String> {
        self.skip_whitespace();
        match self.peek() {
            Some(found) if found == byte => {
                self.at += 1;
                Ok(())
            }
            Some(found) => Err(format!(
                "expected '{}' at byte {}, found '{}'",
                byte as char, self.at, found as char
            )),
            None => Err(format!("expected '{}' at end of text", byte as char)),
        }
    }

    fn object(&mut self) -> Result<Members, String> {
        self.expect(b'{')?;
        let mut members = Vec::new();
        self.skip_whitespace();
        if self.peek() == Some(b'}') {
            self.at += 1;
            return Ok(members);
        }
        loop {
            self.skip_whitespace();
            let key = self.string()?;
            self.expect(b':')?;
            self.skip_whitespace();
            let start = self.at;
            self.value()?;
            members.push((key, self.text[start..self.at].to_string()));
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b'}') => {
                    self.at += 1;
                    return Ok(members);
                }
                _ => return Err(format!("expected ',' or '}}' at byte {}", self.at)),
            }
        }
    }

    /// Parses a string literal and returns its decoded text.
    fn string(&mut self) -> Result<String, String> {
        if self.peek() != Some(b'"') {
            return Err(format!("expected a string at byte {}", self.at));
        }
        self.at += 1;
        let mut out = String::new();
        loop {
            let rest = &self.text[self.at..];
            let Some(c) = rest.chars().next() else {
                return Err("unterminated string".to_string());
            };
            self.at += c.len_utf8();
            match c {
                '"' => return Ok(out),
                '\\' => {
                    let escaped = self.peek().ok_or("unterminated escape")?;
                    self.at += 1;
                    match escaped {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let hex = self
                                .text
                                .get(self.at..self.at + 4)
                                .ok_or("short \\u escape")?;
                            let code = u32::from_str_radix(hex, 16)
                                .map_err(|_| format!("bad \\u escape at byte {}", self.at))?;
                            self.at += 4;
                            out.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                        }
                        other => {
                            return Err(format!(
                                "bad escape '\\{}' at byte {}",
                                other as char, self.at
                            ))
                        }
                    }
                }
                c if (c as u32) < 0x20 => {
                    return Err(format!("control character in string at byte {}", self.at))
                }
                c => out.push(c),
            }
        }
    }

    /// Skips one JSON value.
    fn value(&mut self) -> Result<(), String> {
        match self.peek() {
            Some(b'"') => self.string().map(|_| ()),
            Some(b'{') => self.object().map(|_| ()),
            Some(b'[') => {
                self.at += 1;
                self.skip_whitespace();
                if self.peek() == Some(b']') {
                    self.at += 1;
                    return Ok(());
                }
                loop {
                    self.skip_whitespace();
                    self.value()?;
                    self.skip_whitespace();
                    match self.peek() {
                        Some(b',') => self.at += 1,
                        Some(b']') => {
                            self.at += 1;
                            return Ok(());
                        }
                        _ => return Err(format!("expected ',' or ']' at byte {}", self.at)),
                    }
                }
            }
            Some(b't') => self.literal("true"),
            Some(b'f') => self.literal("false"),
            Some(b'n') => self.literal("null"),
            Some(b'-' | b'0'..=b'9') => {
                let start = self.at;
                while matches!(
                    self.peek(),
                    Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                ) {
                    self.at += 1;
                }
                self.text[start..self.at]
                    .parse::<f64>()
                    .map(|_| ())
                    .map_err(|_| format!("bad number at byte {start}"))
            }
            Some(other) => Err(format!(
                "unexpected '{}' at byte {}",
                other as char, self.at
            )),
            None => Err("expected a value at end of text".to_string()),
        }
    }

    fn literal(&mut self, word: &str) -> Result<(), String> {
        if self.text[self.at..].starts_with(word) {
            self.at += word.len();
            Ok(())
        } else {
            Err(format!("expected '{word}' at byte {}", self.at))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn extra(pairs: &[(&str, &str)]) -> Members {
        pairs
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect()
    }

    #[test]
    fn splits_flat_and_nested_objects() {
        let members = object_members(
            r#" { "cpus": 4, "parked" :3, "entry":"pvh", "ok": false,
                 "list": [1, {"a": "}"}], "nested": {"x": [ ]}, "none": null,
                 "esc\"aped": "a\\b\u00e9", "neg": -1.5e3 } "#,
        )
        .unwrap();
        let keys: Vec<&str> = members.iter().map(|(key, _)| key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "cpus",
                "parked",
                "entry",
                "ok",
                "list",
                "nested",
                "none",
                "esc\"aped",
                "neg"
            ]
        );
        assert_eq!(members[0].1, "4");
        assert_eq!(members[2].1, "\"pvh\"");
        assert_eq!(members[4].1, r#"[1, {"a": "}"}]"#);
        assert_eq!(members[5].1, r#"{"x": [ ]}"#);
        assert_eq!(members[8].1, "-1.5e3");
        assert_eq!(object_members("{}").unwrap(), Vec::new());
    }

    #[test]
    fn rejects_broken_objects() {
        for text in [
            "",
            "[]",
            "{",
            r#"{"a"}"#,
            r#"{"a":}"#,
            r#"{"a":1,}"#,
            r#"{"a":1} x"#,
            r#"{"a":tru}"#,
            r#"{"a":"unterminated}"#,
            r#"{a:1}"#,
        ] {
            assert!(object_members(text).is_err(), "accepted {text:?}");
        }
    }

    #[test]
    fn merge_overrides_and_appends() {
        let merged = merge(
            r#"{"cpus": 4, "ok": "guest", "parked": 3}"#,
            &extra(&[("ok", "true"), ("exit", "\"pass\""), ("seconds", "1.5")]),
        )
        .unwrap();
        assert_eq!(
            merged,
            r#"{"cpus":4,"parked":3,"ok":true,"exit":"pass","seconds":1.5}"#
        );
        assert_eq!(
            merge("{}", &extra(&[("ok", "false")])).unwrap(),
            r#"{"ok":false}"#
        );
    }

    #[test]
    fn quotes_and_numbers() {
        assert_eq!(quote("a\"b\\c\n\u{1}"), r#""a\"b\\c\n\u0001""#);
        assert_eq!(number(1.25), "1.25");
        assert_eq!(number(3.0), "3");
        assert_eq!(number(f64::NAN), "null");
        let members = object_members(&object_text(&extra(&[("k\"ey", "\"v\"")]))).unwrap();
        assert_eq!(members, extra(&[("k\"ey", "\"v\"")]));
    }
}
