//! The Pyramid/PasteDeploy INI reader: one section, with Python `configparser` rules.
//!
//! Sections and `[DEFAULT]`, `key = value` and `key: value`, full-line comments,
//! multi-line values (continuation lines indented deeper than their key), and
//! `configparser.BasicInterpolation`: `%%` and `%(name)s`, with the built-ins `%(here)s`
//! and `%(__file__)s`. It plugs into the `config` crate as a [`config::Format`].
//!
//! The reader is bounded: references nest at most [`MAX_INTERPOLATION_DEPTH`] deep, the
//! expanded values of a section total at most [`MAX_EXPANDED_BYTES`] more than the text's
//! own length, each key is expanded
//! once however often it is referred to, and duplicate keys and sections are found with
//! hash sets, so the work grows linearly with the text and the expanded size.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use config::{FileStoredFormat, Format, Map, Value, ValueKind};

use crate::error::{Error, Result};

/// How deep `%(name)s` references may nest, as in Python's `configparser`.
const MAX_INTERPOLATION_DEPTH: usize = 10;

/// How much larger than the INI text itself a section's values may grow by interpolation:
/// a few kilobytes of keys that refer to each other many times over cannot expand to
/// gigabytes, while a large file without references reads as it is.
const MAX_EXPANDED_BYTES: usize = 1 << 20;

/// How [`MAX_EXPANDED_BYTES`] is written in messages.
const MAX_EXPANDED_TEXT: &str = "1 MiB";

/// Pyramid/PasteDeploy INI as a `config` format: reads one section, interpolated.
#[derive(Debug, Clone)]
pub(crate) struct PasteIni {
    /// The section to read, such as `app:main`.
    pub(crate) section: String,
    /// The value of `%(here)s`.
    pub(crate) here: PathBuf,
    /// The value of `%(__file__)s`, when reading a file.
    pub(crate) file: Option<PathBuf>,
    /// What error messages call the source.
    pub(crate) origin: String,
}

impl Format for PasteIni {
    fn parse(
        &self,
        uri: Option<&String>,
        text: &str,
    ) -> std::result::Result<Map<String, Value>, Box<dyn std::error::Error + Send + Sync>> {
        let values = parse_paste_ini(
            text,
            &self.section,
            &self.here,
            self.file.as_deref(),
            &self.origin,
        )?;
        Ok(values
            .into_iter()
            .map(|(key, value)| (key, Value::new(uri, ValueKind::String(value))))
            .collect())
    }
}

impl FileStoredFormat for PasteIni {
    fn file_extensions(&self) -> &'static [&'static str] {
        &["ini"]
    }
}

/// One `key = value` of an INI section, before interpolation.
struct Entry {
    key: String,
    lines: Vec<String>,
    line: usize,
}

impl Entry {
    fn raw_value(&self) -> String {
        self.lines.join("\n").trim_end().to_owned()
    }
}

/// One section's entries, with the set of its keys for duplicate detection.
#[derive(Default)]
struct Section {
    entries: Vec<Entry>,
    keys: HashSet<String>,
}

/// Reads one section of INI text with Python `configparser` (PasteDeploy) rules.
fn parse_paste_ini(
    text: &str,
    section: &str,
    here: &Path,
    file: Option<&Path>,
    origin: &str,
) -> Result<BTreeMap<String, String>> {
    let syntax = |line: usize, reason: String| Error::SettingsSyntax {
        path_or_origin: origin.to_owned(),
        line,
        reason,
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);

    // Sections in file order; `[DEFAULT]` is `None`.
    let mut defaults = Section::default();
    let mut sections: Vec<(String, Section)> = Vec::new();
    let mut section_index: HashMap<String, usize> = HashMap::new();
    let mut current: Option<Option<usize>> = None;
    // Whether the last line started an option that may continue.
    let mut in_option = false;
    let mut indent_level = 0usize;

    for (index, raw) in text.lines().enumerate() {
        let lineno = index + 1;
        let stripped = raw.trim();
        let is_comment = stripped.starts_with('#') || stripped.starts_with(';');
        let target = match current {
            Some(None) => Some(&mut defaults),
            Some(Some(i)) => sections.get_mut(i).map(|(_, s)| s),
            None => None,
        };
        if stripped.is_empty() || is_comment {
            if !is_comment && in_option {
                if let Some(entry) = target.and_then(|s| s.entries.last_mut()) {
                    entry.lines.push(String::new());
                }
            }
            continue;
        }
        let indent = raw.len() - raw.trim_start().len();
        if in_option && indent > indent_level {
            if let Some(entry) = target.and_then(|s| s.entries.last_mut()) {
                entry.lines.push(stripped.to_owned());
            }
            continue;
        }
        indent_level = indent;

        if stripped.starts_with('[') {
            let header = match stripped.rfind(']') {
                Some(close) if close > 1 => &stripped[1..close],
                _ => {
                    return Err(syntax(
                        lineno,
                        "malformed section header; expected `[name]`".to_owned(),
                    ))
                }
            };
            if header == "DEFAULT" {
                current = Some(None);
            } else if section_index.contains_key(header) {
                return Err(syntax(lineno, format!("section [{header}] appears twice")));
            } else {
                section_index.insert(header.to_owned(), sections.len());
                sections.push((header.to_owned(), Section::default()));
                current = Some(Some(sections.len() - 1));
            }
            in_option = false;
            continue;
        }

        let Some(target) = target else {
            return Err(syntax(
                lineno,
                "a key before any [section] header".to_owned(),
            ));
        };
        let Some(split) = stripped.find(['=', ':']) else {
            return Err(syntax(
                lineno,
                "expected `key = value`, `key: value` or `[section]`".to_owned(),
            ));
        };
        let key = stripped[..split].trim().to_lowercase();
        let value = stripped[split + 1..].trim().to_owned();
        if key.is_empty() {
            return Err(syntax(
                lineno,
                "a line starts with `=` or `:`; expected `key = value`".to_owned(),
            ));
        }
        #[cfg(test)]
        tests::count_duplicate_probe();
        if !target.keys.insert(key.clone()) {
            let name = match current {
                Some(Some(i)) => sections[i].0.as_str(),
                _ => "DEFAULT",
            };
            return Err(syntax(
                lineno,
                format!("key `{key}` appears twice in [{name}]"),
            ));
        }
        target.entries.push(Entry {
            key,
            lines: vec![value],
            line: lineno,
        });
        in_option = true;
    }

    let chosen: &[Entry] = if section == "DEFAULT" {
        &[]
    } else {
        match section_index.get(section) {
            Some(&i) => &sections[i].1.entries,
            None => {
                let mut found: Vec<String> = Vec::new();
                if !defaults.entries.is_empty() {
                    found.push("[DEFAULT]".to_owned());
                }
                found.extend(sections.iter().map(|(name, _)| format!("[{name}]")));
                return Err(Error::MissingSection {
                    path_or_origin: origin.to_owned(),
                    section: section.to_owned(),
                    found: if found.is_empty() {
                        "none".to_owned()
                    } else {
                        found.join(", ")
                    },
                });
            }
        }
    };

    // What `%(name)s` can see: built-ins (literal: a `%` in a path must not start an
    // interpolation), then [DEFAULT], then the section.
    let mut raw: HashMap<String, (String, usize)> = HashMap::new();
    raw.insert(
        "here".to_owned(),
        (here.display().to_string().replace('%', "%%"), 0),
    );
    if let Some(file) = file {
        raw.insert(
            "__file__".to_owned(),
            (file.display().to_string().replace('%', "%%"), 0),
        );
    }
    for entry in defaults.entries.iter().chain(chosen) {
        raw.insert(entry.key.clone(), (entry.raw_value(), entry.line));
    }

    // In file order, so that the first bad line is the one reported.
    let mut entries: Vec<(&String, usize)> = raw.iter().map(|(k, (_, line))| (k, *line)).collect();
    entries.sort_by_key(|(_, line)| *line);
    let mut interpolator = Interpolator {
        raw: &raw,
        expanded: HashMap::new(),
        total: 0,
        limit: text.len().saturating_add(MAX_EXPANDED_BYTES),
    };
    let mut out = BTreeMap::new();
    for (key, line) in entries {
        if line == 0 {
            continue; // a built-in that the file did not set itself
        }
        let text = interpolator
            .expand(key)
            .map_err(|e| syntax(line, e.reason(key, section)))?;
        out.insert(key.clone(), text);
    }
    Ok(out)
}

/// What went wrong in `%(name)s` interpolation; never carries a value.
#[derive(Debug)]
enum InterpolationError {
    BadPercent,
    BadReference,
    Missing(String),
    TooDeep,
    TooLarge,
}

impl InterpolationError {
    fn reason(&self, key: &str, section: &str) -> String {
        match self {
            InterpolationError::BadPercent => format!(
                "bad interpolation in `{key}`: `%` must be followed by `%` or `(`; write `%%` \
                 for a literal `%` (a percent-encoded password such as p%40ss is written \
                 p%%40ss in an INI file)"
            ),
            InterpolationError::BadReference => {
                format!("bad interpolation in `{key}`: expected `%(name)s`")
            }
            InterpolationError::Missing(name) => format!(
                "`{key}` refers to `%({name})s`, which is not set in [{section}] or [DEFAULT]"
            ),
            InterpolationError::TooDeep => format!(
                "interpolation of `{key}` nests more than {MAX_INTERPOLATION_DEPTH} levels deep \
                 (does a key refer to itself?)"
            ),
            InterpolationError::TooLarge => format!(
                "interpolation of `{key}` makes the values of [{section}] more than \
                 {MAX_EXPANDED_TEXT} larger than the text (do keys refer to each other many \
                 times over?)"
            ),
        }
    }
}

/// A key's expansion: its text and how deep its references nest (0: it has no `%`).
enum Expansion {
    InProgress,
    Done { text: String, depth: usize },
}

/// Python `configparser.BasicInterpolation` (`%%` and `%(name)s`, recursively), each key
/// expanded once and the total expanded size bounded.
struct Interpolator<'a> {
    raw: &'a HashMap<String, (String, usize)>,
    expanded: HashMap<&'a str, Expansion>,
    /// Bytes produced so far, over every key.
    total: usize,
    /// The most bytes all keys may produce.
    limit: usize,
}

impl<'a> Interpolator<'a> {
    /// The expansion of `key`, which must be set.
    fn expand(&mut self, key: &str) -> std::result::Result<String, InterpolationError> {
        let (text, depth) = self.expand_ref(key)?;
        if depth > MAX_INTERPOLATION_DEPTH {
            return Err(InterpolationError::TooDeep);
        }
        Ok(text.to_owned())
    }

    /// Expands `name` once; later calls return the stored text.
    fn expand_ref(&mut self, name: &str) -> std::result::Result<(&str, usize), InterpolationError> {
        let Some((name, (value, _))) = self.raw.get_key_value(name) else {
            return Err(InterpolationError::Missing(name.to_owned()));
        };
        let name = name.as_str();
        match self.expanded.get(name) {
            Some(Expansion::InProgress) => return Err(InterpolationError::TooDeep),
            Some(Expansion::Done { .. }) => {}
            None => {
                self.expanded.insert(name, Expansion::InProgress);
                let done = self.expand_value(value)?;
                self.expanded.insert(name, done);
            }
        }
        match self.expanded.get(name) {
            Some(Expansion::Done { text, depth }) => Ok((text, *depth)),
            _ => unreachable!("expanded just above"),
        }
    }

    fn grow(&mut self, by: usize) -> std::result::Result<(), InterpolationError> {
        self.total = self.total.saturating_add(by);
        if self.total > self.limit {
            return Err(InterpolationError::TooLarge);
        }
        Ok(())
    }

    fn expand_value(&mut self, value: &str) -> std::result::Result<Expansion, InterpolationError> {
        if !value.contains('%') {
            self.grow(value.len())?;
            return Ok(Expansion::Done {
                text: value.to_owned(),
                depth: 0,
            });
        }
        let mut out = String::with_capacity(value.len());
        let mut depth = 1;
        let mut rest = value;
        while let Some(p) = rest.find('%') {
            self.grow(p)?;
            out.push_str(&rest[..p]);
            rest = &rest[p..];
            match rest.as_bytes().get(1) {
                Some(b'%') => {
                    self.grow(1)?;
                    out.push('%');
                    rest = &rest[2..];
                }
                Some(b'(') => {
                    let Some(close) = rest.find(')') else {
                        return Err(InterpolationError::BadReference);
                    };
                    if close == 2 || rest.as_bytes().get(close + 1) != Some(&b's') {
                        return Err(InterpolationError::BadReference);
                    }
                    let name = rest[2..close].to_lowercase();
                    rest = &rest[close + 2..];
                    let (text, inner) = self.expand_ref(&name)?;
                    let (len, inner) = (text.len(), inner);
                    out.push_str(text);
                    self.grow(len)?;
                    depth = depth.max(inner + 1);
                    if depth > MAX_INTERPOLATION_DEPTH {
                        return Err(InterpolationError::TooDeep);
                    }
                }
                _ => return Err(InterpolationError::BadPercent),
            }
        }
        self.grow(rest.len())?;
        out.push_str(rest);
        Ok(Expansion::Done { text: out, depth })
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    thread_local! {
        static DUPLICATE_PROBES: Cell<u64> = const { Cell::new(0) };
    }

    /// Counts one look-up of the duplicate-key check.
    pub(super) fn count_duplicate_probe() {
        DUPLICATE_PROBES.with(|c| c.set(c.get() + 1));
    }

    #[test]
    fn duplicate_key_detection_does_one_probe_per_key() {
        let mut text = String::from("[DEFAULT]\nx = 1\n[app:main]\n");
        for i in 0..40_000 {
            text.push_str(&format!("key_number_{i} = {i}\n"));
        }
        DUPLICATE_PROBES.with(|c| c.set(0));
        let values = super::parse_paste_ini(
            &text,
            "app:main",
            std::path::Path::new("/srv"),
            None,
            "INI text",
        )
        .expect("no duplicates");
        assert_eq!(values.len(), 40_001);
        assert_eq!(DUPLICATE_PROBES.with(Cell::get), 40_001);
    }
}
