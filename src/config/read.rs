//! The typed readers: where a setting's value comes from and how its text
//! becomes a value. Sources, later ones winning: the settings file, the
//! environment, `serve`'s flags. Every value read is recorded with the
//! source that won, for `serve --check`; every error names the setting as
//! the user wrote it (the file key, the variable or the flag).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::Error;
use super::table::{self, Setting};

/// Flags given on `serve`'s command line, by the setting they set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flags(Vec<(Setting, String)>);

impl Flags {
    /// Sets `setting` as its flag would (a later value wins).
    #[must_use]
    pub fn with(mut self, setting: Setting, value: impl Into<String>) -> Self {
        self.0.push((setting, value.into()));
        self
    }

    pub(super) fn get(&self, setting: &Setting) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(s, _)| s == setting)
            .map(|(_, v)| v.as_str())
    }
}

/// One effective setting, as `serve --check` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effective {
    /// The settings-file key (or, for a setting without one, its name).
    pub key: &'static str,
    /// The value as the file would write it (durations as `10s`).
    pub value: String,
    /// Where it came from: a flag, a variable, `the settings file`; `None`
    /// for a default.
    pub from: Option<String>,
}

/// A value found in a source, with the name the user gave it.
struct Found {
    name: String,
    text: String,
    from: String,
}

/// The value in the settings file must be of the setting's TOML type.
fn check_kind(s: &Setting, found: Option<(Kind, usize)>, expected: Kind) -> Result<(), Error> {
    match found {
        Some((kind, line)) if kind != expected => Err(super::invalid(
            s.key,
            format!(
                "takes {} in the settings file (line {line})",
                expected.expected()
            ),
        )),
        _ => Ok(()),
    }
}

/// The TOML type a setting takes in the settings file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A string: addresses, paths, durations, names.
    Text,
    /// A whole number.
    Number,
    /// `true` or `false`.
    Boolean,
}

impl Kind {
    fn expected(self) -> &'static str {
        match self {
            Self::Text => "a string (in quotes)",
            Self::Number => "a whole number (without quotes)",
            Self::Boolean => "true or false (without quotes)",
        }
    }
}

/// The settings file's scalar values by dotted key, with their TOML type,
/// checked against the table of settings.
#[derive(Debug, Default)]
struct FileValues(BTreeMap<String, (String, Kind, usize)>);

impl FileValues {
    fn parse(path: &Path, text: &str) -> Result<Self, Error> {
        let parse_error = |line: usize, message: String| Error::Parse {
            path: path.to_owned(),
            message: format!("line {line}: {message}"),
        };
        let table = toml::de::DeTable::parse(text).map_err(|e| Error::Parse {
            path: path.to_owned(),
            message: toml_message(text, &e),
        })?;
        let mut values = BTreeMap::new();
        let mut pending = vec![(String::new(), table.into_inner())];
        while let Some((prefix, table)) = pending.pop() {
            for (key, value) in table {
                let line = line_of(text, key.span().start);
                // A quoted key with a dot would read as a dotted path here
                // but not to serde (the dependent actions): refused.
                if key.get_ref().contains('.') || key.get_ref().is_empty() {
                    return Err(parse_error(
                        line,
                        format!(
                            "`{prefix}{}`: a key may not be empty or contain a dot; write tables as [section] or section.key",
                            key.get_ref()
                        ),
                    ));
                }
                let key = format!("{prefix}{}", key.get_ref());
                let known = table::ALL.iter().any(|s| !s.key.is_empty() && s.key == key);
                let section = table::ALL
                    .iter()
                    .any(|s| s.key.starts_with(&key) && s.key[key.len()..].starts_with('.'));
                let (text, kind) = match value.into_inner() {
                    toml::de::DeValue::Table(inner) if section => {
                        pending.push((format!("{key}."), inner));
                        continue;
                    }
                    _ if !known => return Err(parse_error(line, unknown(&key))),
                    // A list of tables, read by serde (super::dependent_actions).
                    toml::de::DeValue::Array(_)
                        if key == table::DEPENDENT_ACTIONS.key || key == table::ACCOUNTS.key =>
                    {
                        continue;
                    }
                    toml::de::DeValue::String(s) => (s.into_owned(), Kind::Text),
                    toml::de::DeValue::Integer(n) => (n.to_string(), Kind::Number),
                    toml::de::DeValue::Boolean(b) => (b.to_string(), Kind::Boolean),
                    _ => {
                        return Err(parse_error(
                            line,
                            format!("`{key}` takes a string, a whole number or true/false"),
                        ));
                    }
                };
                if values.insert(key.clone(), (text, kind, line)).is_some() {
                    return Err(parse_error(line, format!("`{key}` is set twice")));
                }
            }
        }
        Ok(Self(values))
    }
}

/// Why a key is not a setting, without quoting its value (a misplaced
/// secret must not reach a log).
fn unknown(key: &str) -> String {
    let section = key.rsplit_once('.').map_or("", |(s, _)| s);
    let siblings: Vec<String> = table::ALL
        .iter()
        .filter_map(|s| {
            s.key
                .strip_prefix(section)
                .and_then(|k| k.strip_prefix('.'))
        })
        .filter(|k| !section.is_empty() && !k.contains('.'))
        .map(|k| format!("`{k}`"))
        .collect();
    let mut message = format!("unknown field `{key}`");
    if !siblings.is_empty() {
        message.push_str(&format!(", expected one of {}", siblings.join(", ")));
    }
    if section == "credentials" {
        message
            .push_str(" (secrets go only in the environment or the credentials file, never here)");
    }
    message
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The parser's message with the line number, but not the line itself: a
/// misplaced secret must not be quoted into a log.
pub(super) fn toml_message(text: &str, error: &toml::de::Error) -> String {
    match error.span() {
        Some(span) => format!("line {}: {}", line_of(text, span.start), error.message()),
        None => error.message().to_owned(),
    }
}

/// Reads settings from the three sources, recording what it read.
pub(crate) struct Reader<'a> {
    file: FileValues,
    env: &'a dyn Fn(&str) -> Option<String>,
    flags: &'a Flags,
    effective: Vec<Effective>,
}

impl<'a> Reader<'a> {
    /// A reader of the settings file at `file` (if any), the environment
    /// `env` and the flags.
    pub(super) fn new(
        file: Option<(&Path, &str)>,
        env: &'a dyn Fn(&str) -> Option<String>,
        flags: &'a Flags,
    ) -> Result<Self, Error> {
        let file = match file {
            Some((path, text)) => FileValues::parse(path, text)?,
            None => FileValues::default(),
        };
        Ok(Self {
            file,
            env,
            flags,
            effective: Vec::new(),
        })
    }

    /// What was read, in order.
    pub(super) fn into_effective(self) -> Vec<Effective> {
        self.effective
    }

    fn find(&self, s: &Setting, expected: Kind) -> Result<Option<Found>, Error> {
        let found = |name: &str, text: &str, from: &str| Found {
            name: name.to_owned(),
            text: text.to_owned(),
            from: from.to_owned(),
        };
        if let Some(v) = (!s.flag.is_empty()).then(|| self.flags.get(s)).flatten() {
            return Ok(Some(found(s.flag, v, s.flag)));
        }
        if let Some(v) = (!s.var.is_empty()).then(|| (self.env)(s.var)).flatten() {
            return Ok(Some(found(s.var, &v, s.var)));
        }
        let in_file = self.file.0.get(s.key);
        check_kind(s, in_file.map(|(_, kind, line)| (*kind, *line)), expected)?;
        Ok(in_file.map(|(text, ..)| found(s.key, text, "the settings file")))
    }

    fn record(&mut self, s: &Setting, value: String, from: Option<String>) {
        let key = if s.key.is_empty() { s.var } else { s.key };
        self.effective.push(Effective { key, value, from });
    }

    /// Records a derived line (`credentials = "environment"`).
    pub(super) fn note(&mut self, key: &'static str, value: impl Into<String>) {
        self.effective.push(Effective {
            key,
            value: value.into(),
            from: None,
        });
    }

    /// A value parsed by `parse` (whose error says what is wrong and what is
    /// expected), else `default`; `show` writes it as the file would.
    pub fn value<T>(
        &mut self,
        s: &Setting,
        default: T,
        parse: impl FnOnce(&str) -> Result<T, String>,
        show: impl FnOnce(&T) -> String,
    ) -> Result<T, Error> {
        self.typed(s, Kind::Text, default, parse, show)
    }

    /// [`Self::value`] of a setting whose file value has the TOML type
    /// `kind`.
    fn typed<T>(
        &mut self,
        s: &Setting,
        kind: Kind,
        default: T,
        parse: impl FnOnce(&str) -> Result<T, String>,
        show: impl FnOnce(&T) -> String,
    ) -> Result<T, Error> {
        match self.find(s, kind)? {
            Some(found) => {
                let value = parse(&found.text).map_err(|p| super::invalid(&found.name, p))?;
                self.record(s, show(&value), Some(found.from));
                Ok(value)
            }
            None => {
                self.record(s, show(&default), None);
                Ok(default)
            }
        }
    }

    /// An optional value: `None` when no source sets it. Returns the name
    /// the user gave it too, for errors about it and others.
    pub fn optional<T>(
        &mut self,
        s: &Setting,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<Option<(String, T)>, Error> {
        match self.find(s, Kind::Text)? {
            Some(found) => {
                let value = parse(&found.text).map_err(|p| super::invalid(&found.name, p))?;
                self.record(s, found.text, Some(found.from));
                Ok(Some((found.name, value)))
            }
            None => {
                self.record(s, String::new(), None);
                Ok(None)
            }
        }
    }

    /// An optional text.
    pub fn text(&mut self, s: &Setting) -> Result<Option<(String, String)>, Error> {
        self.optional(s, |t| Ok(t.to_owned()))
    }

    /// An optional path.
    pub fn path(&mut self, s: &Setting) -> Result<Option<(String, PathBuf)>, Error> {
        self.optional(s, |t| Ok(PathBuf::from(t)))
    }

    /// A secret from the environment: never recorded, never in an error.
    pub fn secret(&self, s: &Setting) -> Option<String> {
        (self.env)(s.var).filter(|v| !v.is_empty())
    }

    /// A duration such as `10s` or `500ms`, greater than zero.
    pub fn duration(&mut self, s: &Setting, default: Duration) -> Result<Duration, Error> {
        self.value(s, default, duration, |d| show_duration(*d))
    }

    /// A positive whole number.
    pub fn count(&mut self, s: &Setting, default: usize) -> Result<usize, Error> {
        self.typed(s, Kind::Number, default, count, usize::to_string)
    }

    /// A positive whole number up to `u32::MAX`.
    pub fn count_u32(&mut self, s: &Setting, default: u32) -> Result<u32, Error> {
        self.typed(
            s,
            Kind::Number,
            default,
            |t| {
                count(t).and_then(|n| {
                    u32::try_from(n).map_err(|_| format!("{t:?} is more than {}", u32::MAX))
                })
            },
            u32::to_string,
        )
    }

    /// A positive whole number up to `u64::MAX`.
    pub fn count_u64(&mut self, s: &Setting, default: u64) -> Result<u64, Error> {
        self.typed(
            s,
            Kind::Number,
            default,
            |t| {
                t.parse::<u64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("{t:?} is not a positive whole number"))
            },
            u64::to_string,
        )
    }

    /// `true` or `false` (also `1`/`0`, `yes`/`no`).
    pub fn boolean(&mut self, s: &Setting, default: bool) -> Result<bool, Error> {
        self.typed(s, Kind::Boolean, default, boolean, bool::to_string)
    }
}

/// A duration as the settings file writes it.
pub fn show_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

pub(super) fn duration(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text)
        .map_err(|e| format!("{text:?} is not a duration such as 10s or 500ms ({e})"))?;
    if d.is_zero() {
        return Err("must be greater than zero".to_owned());
    }
    Ok(d)
}

fn count(text: &str) -> Result<usize, String> {
    text.parse::<usize>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{text:?} is not a positive whole number"))
}

fn boolean(text: &str) -> Result<bool, String> {
    match text {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        other => Err(format!("{other:?} is not true or false")),
    }
}

/// Checks an endpoint URL: http or https, a host, no query; `{region}` is
/// replaced per call. Plain http only to a loopback host (a local
/// simulator): anywhere else signed calls must not travel in the clear.
pub fn endpoint(value: &str) -> Result<String, String> {
    let url = reqwest::Url::parse(&value.replace("{region}", "cn-hangzhou"))
        .map_err(|e| format!("{value:?} is not a URL ({e})"))?;
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => return Err(format!("{value:?} has no host")),
    };
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => {
            return Err(format!(
                "{value:?}: plain http is only allowed to a loopback host; use https"
            ));
        }
        other => return Err(format!("{value:?}: scheme {other} is not http or https")),
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("{value:?} must not have a query or fragment"));
    }
    Ok(value.trim_end_matches('/').to_owned())
}
