//! The `x-forwarded-client-cert` header (XFCC), parsed once, by its grammar,
//! as Envoy defines it:
//!
//! ```text
//! header  = element *( OWS "," OWS element )
//! element = pair *( ";" pair )
//! pair    = key "=" value
//! key     = 1*( ALPHA / DIGIT / "-" / "_" )
//! value   = quoted / *plain
//! quoted  = DQUOTE *( qchar / "\" CHAR ) DQUOTE   ; escapes only inside quotes
//! plain   = any visible ASCII but DQUOTE "\" "," ";" "="
//! qchar   = any UTF-8 but DQUOTE "\" and control characters
//! ```
//!
//! Anything else is malformed and refused, never guessed at. The grammar is
//! what keeps a caller's text from merging into the element the trusted
//! sidecar appends: outside quotes a backslash is an error (not an escape
//! that could hide the sidecar's comma), a quoted value must be followed by
//! a separator or the end (so a quote the caller leaves open cannot realign
//! on the sidecar's quotes), and an unclosed quote is an error.
//!
//! The caller is the last element (the client of the nearest proxy, which
//! is the trusted sidecar), and its single `URI=` pair.

/// One `key=value` pair, the value unquoted and unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    /// The key as written (compare with [`str::eq_ignore_ascii_case`]).
    pub key: String,
    /// The value.
    pub value: String,
}

/// One element: the pairs describing one hop's client certificate.
pub type Element = Vec<Pair>;

/// Why a header is malformed. Each names the byte offset where parsing
/// stopped, which is safe to show (the header is the caller's own).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The header is empty.
    #[error("empty header")]
    Empty,
    /// A byte that the grammar does not allow where it stands.
    #[error("unexpected {found:?} at offset {at}: expected {expected}")]
    Unexpected {
        /// Byte offset.
        at: usize,
        /// What was found (a char, or "end").
        found: String,
        /// What the grammar allows there.
        expected: &'static str,
    },
    /// A quoted value is not closed.
    #[error("unclosed quote opened at offset {0}")]
    Unclosed(usize),
    /// A quoted value is not UTF-8.
    #[error("the quoted value at offset {0} is not UTF-8")]
    NotUtf8(usize),
    /// The last element has no `URI=` pair holding a SPIFFE ID.
    #[error("the last element has no URI= pair holding a SPIFFE ID (spiffe://…)")]
    NoUri,
    /// The last element has several SPIFFE IDs.
    #[error("the last element has more than one SPIFFE ID")]
    SeveralUris,
    /// The `URI=` value is empty.
    #[error("the URI= value is empty")]
    EmptyUri,
}

struct Parser<'a> {
    text: &'a [u8],
    at: usize,
}

fn is_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

fn is_plain_byte(b: u8) -> bool {
    b.is_ascii_graphic() && !matches!(b, b'"' | b'\\' | b',' | b';' | b'=')
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    fn unexpected(&self, expected: &'static str) -> Error {
        Error::Unexpected {
            at: self.at,
            found: self
                .peek()
                .map_or_else(|| "end".to_owned(), |b| char::from(b).to_string()),
            expected,
        }
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.at += 1;
        }
    }

    fn key(&mut self) -> Result<String, Error> {
        let start = self.at;
        while self.peek().is_some_and(is_key_byte) {
            self.at += 1;
        }
        if self.at == start {
            return Err(self.unexpected("a key (letters, digits, - or _)"));
        }
        Ok(String::from_utf8_lossy(&self.text[start..self.at]).into_owned())
    }

    fn value(&mut self) -> Result<String, Error> {
        if self.peek() != Some(b'"') {
            let start = self.at;
            while self.peek().is_some_and(is_plain_byte) {
                self.at += 1;
            }
            return Ok(String::from_utf8_lossy(&self.text[start..self.at]).into_owned());
        }
        let open = self.at;
        self.at += 1;
        let mut value = Vec::new();
        loop {
            match self.peek() {
                None => return Err(Error::Unclosed(open)),
                Some(b'"') => {
                    self.at += 1;
                    return String::from_utf8(value).map_err(|_| Error::NotUtf8(open));
                }
                Some(b'\\') => {
                    let Some(&escaped) = self.text.get(self.at + 1) else {
                        return Err(Error::Unclosed(open));
                    };
                    if escaped.is_ascii_control() {
                        self.at += 1;
                        return Err(self.unexpected("a printable character"));
                    }
                    value.push(escaped);
                    self.at += 2;
                }
                Some(b) if b.is_ascii_control() => {
                    return Err(self.unexpected("a printable character"));
                }
                Some(b) => {
                    value.push(b);
                    self.at += 1;
                }
            }
        }
    }

    fn pair(&mut self) -> Result<Pair, Error> {
        let key = self.key()?;
        if self.peek() != Some(b'=') {
            return Err(self.unexpected("="));
        }
        self.at += 1;
        let value = self.value()?;
        Ok(Pair { key, value })
    }

    fn element(&mut self) -> Result<Element, Error> {
        let mut pairs = vec![self.pair()?];
        while self.peek() == Some(b';') {
            self.at += 1;
            pairs.push(self.pair()?);
        }
        Ok(pairs)
    }
}

/// Parses a whole header value into its elements, in order.
///
/// # Errors
///
/// The value does not follow the grammar.
pub fn parse(header: &[u8]) -> Result<Vec<Element>, Error> {
    let mut parser = Parser {
        text: header,
        at: 0,
    };
    parser.skip_ows();
    if parser.peek().is_none() {
        return Err(Error::Empty);
    }
    let mut elements = Vec::new();
    loop {
        elements.push(parser.element()?);
        parser.skip_ows();
        match parser.peek() {
            None => return Ok(elements),
            Some(b',') => {
                parser.at += 1;
                parser.skip_ows();
            }
            Some(_) => return Err(parser.unexpected("; or , or the end")),
        }
    }
}

/// The caller's SPIFFE ID: the single `spiffe://` value among the `URI=`
/// pairs of the header's last element (Envoy writes one `URI=` per URI SAN
/// of the certificate, as mTLS reads them).
///
/// # Errors
///
/// The header is malformed, or its last element has no, an empty, or
/// several SPIFFE IDs.
pub fn caller_uri(header: &[u8]) -> Result<String, Error> {
    let elements = parse(header)?;
    let last = elements.last().ok_or(Error::Empty)?;
    let uris: Vec<&str> = last
        .iter()
        .filter(|p| p.key.eq_ignore_ascii_case("uri"))
        .map(|p| p.value.as_str())
        .collect();
    if uris.is_empty() {
        return Err(Error::NoUri);
    }
    let mut ids = uris.iter().filter(|uri| uri.starts_with("spiffe://"));
    match (ids.next(), ids.next()) {
        (Some(_), Some(_)) => Err(Error::SeveralUris),
        (None, _) if uris.iter().all(|u| u.is_empty()) => Err(Error::EmptyUri),
        (None, _) => Err(Error::NoUri),
        (Some(id), None) => Ok((*id).to_owned()),
    }
}

/// Writes `elements` as a header value, quoting every value that needs it:
/// the inverse of [`parse`], used by tests and by anything that must add
/// an element as a sidecar does.
pub fn format(elements: &[Element]) -> String {
    let mut out = String::new();
    for (i, element) in elements.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for (j, pair) in element.iter().enumerate() {
            if j > 0 {
                out.push(';');
            }
            out.push_str(&pair.key);
            out.push('=');
            if pair.value.bytes().all(is_plain_byte) {
                out.push_str(&pair.value);
            } else {
                out.push('"');
                for c in pair.value.chars() {
                    if c == '"' || c == '\\' {
                        out.push('\\');
                    }
                    out.push(c);
                }
                out.push('"');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(header: &str) -> Result<String, Error> {
        caller_uri(header.as_bytes())
    }

    #[test]
    fn reads_the_last_elements_uri() {
        assert_eq!(
            uri("By=spiffe://mesh/gw;Hash=abc;URI=spiffe://demo.local/sa/netops").unwrap(),
            "spiffe://demo.local/sa/netops"
        );
        assert_eq!(
            uri(r#"URI=spiffe://a/first,By=x;Subject="CN=a,O=b";URI="spiffe://b/second""#).unwrap(),
            "spiffe://b/second"
        );
        assert_eq!(
            uri(r#"By=x;Subject="";URI=spiffe://c , By=y;uri=spiffe://d"#).unwrap(),
            "spiffe://d"
        );
        assert_eq!(
            uri(r#"Subject="CN=\"q\",O=\\";URI=spiffe://e"#).unwrap(),
            "spiffe://e"
        );
        // Envoy writes one URI= per URI SAN: the one SPIFFE ID is the caller.
        assert_eq!(
            uri(r#"By=spiffe://mesh;Hash=ab;Subject="";URI=https://x.example/a;URI=spiffe://f"#)
                .unwrap(),
            "spiffe://f"
        );
    }

    #[test]
    fn refuses_what_the_grammar_does_not_allow() {
        for bad in [
            "",
            "  ",
            "By=spiffe://mesh/gw;Hash=abc",
            "URI=",
            r#"URI="""#,
            "URI=spiffe://a;URI=spiffe://b",
            "URI=https://example.com/x",
            "URI=spiffe://a,",
            ",URI=spiffe://a",
            "URI=spiffe://a,,URI=spiffe://b",
            "URI=spiffe://a;",
            "URI=spiffe://a b",
            "URI=spiffe://a=b",
            "=spiffe://a",
            "URI",
            r#"URI="spiffe://a"x"#,
            r#"URI=spiffe://a;Subject="open"#,
            "URI=spiffe://a;Subject=\"x\\",
            "URI=spiffe://\u{e9}",
        ] {
            assert!(uri(bad).is_err(), "{bad:?} must be refused");
        }
    }

    /// The probes of the security review: a caller's text must never merge
    /// into the element the sidecar appends.
    #[test]
    fn a_callers_text_cannot_merge_into_the_sidecars_element() {
        let sidecar = ",By=spiffe://mesh/gw;Hash=0a1b;URI=spiffe://demo.local/sa/webapp";
        for forged in [
            r"URI=spiffe://demo.local/sa/netops;a=\",
            r#"Subject="CN=x\";URI=spiffe://demo.local/sa/netops;a=\""#,
            r#"URI=spiffe://demo.local/sa/netops;Subject=""#,
            r#"URI=spiffe://demo.local/sa/netops;a="\"#,
        ] {
            let header = format!("{forged}{sidecar}");
            if let Ok(got) = uri(&header) {
                assert_eq!(got, "spiffe://demo.local/sa/webapp", "{header}");
            }
        }
        // The first two were accepted as netops before the grammar parser.
        assert!(uri(&format!(r"URI=spiffe://demo.local/sa/netops;a=\{sidecar}")).is_err());
    }

    #[test]
    fn format_is_the_inverse_of_parse() {
        let elements = vec![
            vec![
                Pair {
                    key: "By".into(),
                    value: "spiffe://mesh".into(),
                },
                Pair {
                    key: "Subject".into(),
                    value: r#"CN="a", O=b\c; d"#.into(),
                },
            ],
            vec![Pair {
                key: "URI".into(),
                value: String::new(),
            }],
        ];
        assert_eq!(parse(format(&elements).as_bytes()).unwrap(), elements);
    }
}
