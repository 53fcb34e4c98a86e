//! Nagios plugin output: the text, long output and performance data. No I/O.
//!
//! ```text
//! DISK OK - free space: / 3326 MB (56%) | /=2643MB;5948;5958;0;5968
//! / 15272 MB (77%);
//! /boot 68 MB (69%); | /boot=68MB;88;93;0;98
//! /home=69357MB;253404;253409;0;253414
//! ```
//!
//! Perfdata items are `'label'=value[UOM];[warn];[crit];[min];[max]`.
//! Anything that does not parse is skipped, never an error.

/// A warning or critical range, e.g. `10`, `10:`, `~:10`, `10:20`, `@10:20`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Range {
    /// Lower bound (`-inf` for `~`).
    pub start: f64,
    /// Upper bound (`+inf` when open).
    pub end: f64,
    /// `@`: alert when inside the range rather than outside.
    pub inside: bool,
}

impl Range {
    /// Parses the Nagios range syntax; `None` when it does not parse.
    pub fn parse(s: &str) -> Option<Range> {
        let s = s.trim();
        if s.is_empty() {
            return None;
        }
        let (inside, s) = match s.strip_prefix('@') {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let (start, end) = match s.split_once(':') {
            None => (0.0, number(s)?),
            Some((a, b)) => {
                let start = if a == "~" {
                    f64::NEG_INFINITY
                } else if a.is_empty() {
                    0.0
                } else {
                    number(a)?
                };
                let end = if b.is_empty() {
                    f64::INFINITY
                } else {
                    number(b)?
                };
                (start, end)
            }
        };
        Some(Range { start, end, inside })
    }

    /// Would `value` raise an alert against this range?
    pub fn alerts(&self, value: f64) -> bool {
        let within = value >= self.start && value <= self.end;
        if self.inside { within } else { !within }
    }
}

/// One performance data item.
#[derive(Debug, Clone, PartialEq)]
pub struct Perfdata {
    /// The label, unquoted.
    pub label: String,
    /// The value; `None` when the plugin said `U` (unknown).
    pub value: Option<f64>,
    /// Unit of measurement as written (`s`, `ms`, `%`, `KB`, `c`, or empty).
    pub uom: String,
    /// Warning range.
    pub warn: Option<Range>,
    /// Critical range.
    pub crit: Option<Range>,
    /// Minimum possible value.
    pub min: Option<f64>,
    /// Maximum possible value.
    pub max: Option<f64>,
}

/// A plugin's output taken apart.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PluginOutput {
    /// The first line's text, before any `|`.
    pub text: String,
    /// Further lines of text, before a second `|`.
    pub long_text: String,
    /// All performance data, from the first line and after the second `|`.
    pub perfdata: Vec<Perfdata>,
}

fn number(s: &str) -> Option<f64> {
    let s = s.trim();
    // Some plugins write decimal commas.
    let v: f64 = s.replace(',', ".").parse().ok()?;
    v.is_finite().then_some(v)
}

/// Splits value and unit: `2643MB` → (2643, "MB"); `U` → unknown.
fn value_and_uom(s: &str) -> Option<(Option<f64>, String)> {
    let s = s.trim();
    if s == "U" {
        return Some((None, String::new()));
    }
    let split = s
        .char_indices()
        .find(|&(i, c)| {
            !(c.is_ascii_digit()
                || c == '.'
                || c == ','
                || c == '-'
                || c == '+'
                || ((c == 'e' || c == 'E')
                    && i > 0
                    && s[i + 1..]
                        .starts_with(|d: char| d.is_ascii_digit() || d == '-' || d == '+')))
        })
        .map(|(i, _)| i)
        .unwrap_or(s.len());
    let (num, uom) = s.split_at(split);
    let value = number(num)?;
    if !uom.chars().all(|c| c.is_alphabetic() || c == '%') {
        return None;
    }
    Some((Some(value), uom.to_owned()))
}

/// Parses a perfdata string into items, skipping what does not parse.
pub fn parse_perfdata(s: &str) -> Vec<Perfdata> {
    let mut items = Vec::new();
    let mut chars = s.char_indices().peekable();
    while let Some(&(_, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        // The label: quoted with '' as an escaped quote, or up to '='.
        let mut label = String::new();
        let mut ok = true;
        if c == '\'' {
            chars.next();
            loop {
                match chars.next() {
                    Some((_, '\'')) => {
                        if let Some(&(_, '\'')) = chars.peek() {
                            chars.next();
                            label.push('\'');
                        } else {
                            break;
                        }
                    }
                    Some((_, ch)) => label.push(ch),
                    None => {
                        ok = false;
                        break;
                    }
                }
            }
            if chars.peek().map(|&(_, c)| c) != Some('=') {
                ok = false;
            }
        } else {
            while let Some(&(_, ch)) = chars.peek() {
                if ch == '=' || ch.is_whitespace() {
                    break;
                }
                label.push(ch);
                chars.next();
            }
            if chars.peek().map(|&(_, c)| c) != Some('=') {
                ok = false;
            }
        }
        // The data: up to the next whitespace.
        let mut data = String::new();
        if ok {
            chars.next(); // '='
        }
        while let Some(&(_, ch)) = chars.peek() {
            if ch.is_whitespace() {
                break;
            }
            data.push(ch);
            chars.next();
        }
        if !ok || label.is_empty() {
            continue;
        }
        let mut fields = data.split(';');
        let Some((value, uom)) = fields.next().and_then(value_and_uom) else {
            continue;
        };
        let warn = fields.next().and_then(Range::parse);
        let crit = fields.next().and_then(Range::parse);
        let min = fields.next().and_then(number);
        let max = fields.next().and_then(number);
        items.push(Perfdata {
            label,
            value,
            uom,
            warn,
            crit,
            min,
            max,
        });
    }
    items
}

/// Takes a plugin's whole output apart.
pub fn parse_output(output: &str) -> PluginOutput {
    let mut lines = output.lines();
    let first = lines.next().unwrap_or("");
    let (text, mut perf) = match first.split_once('|') {
        Some((t, p)) => (t.trim().to_owned(), parse_perfdata(p)),
        None => (first.trim().to_owned(), Vec::new()),
    };
    let rest: Vec<&str> = lines.collect();
    let rest = rest.join("\n");
    let (long_text, more) = match rest.split_once('|') {
        Some((t, p)) => (t.trim_end().to_owned(), Some(p)),
        None => (rest.trim_end().to_owned(), None),
    };
    if let Some(p) = more {
        perf.extend(parse_perfdata(p));
    }
    PluginOutput {
        text,
        long_text,
        perfdata: perf,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(s: &str) -> Perfdata {
        let mut v = parse_perfdata(s);
        assert_eq!(v.len(), 1, "{s}: {v:?}");
        v.remove(0)
    }

    #[test]
    fn full_item_with_uom_and_thresholds() {
        let p = one("/=2643MB;5948;5958;0;5968");
        assert_eq!(p.label, "/");
        assert_eq!(p.value, Some(2643.0));
        assert_eq!(p.uom, "MB");
        assert_eq!(
            p.warn,
            Some(Range {
                start: 0.0,
                end: 5948.0,
                inside: false
            })
        );
        assert_eq!(p.crit.unwrap().end, 5958.0);
        assert_eq!(p.min, Some(0.0));
        assert_eq!(p.max, Some(5968.0));
    }

    #[test]
    fn every_uom() {
        for uom in ["s", "ms", "us", "%", "B", "KB", "MB", "GB", "TB", "c", ""] {
            let p = one(&format!("x=1.5{uom}"));
            assert_eq!(p.uom, uom);
            assert_eq!(p.value, Some(1.5));
        }
    }

    #[test]
    fn quoted_labels_with_spaces_and_escaped_quotes() {
        let p = one("'my label'=5s");
        assert_eq!(p.label, "my label");
        let p = one("'it''s'=1");
        assert_eq!(p.label, "it's");
        let v = parse_perfdata("'a b'=1 c=2 'd'=3");
        let labels: Vec<&str> = v.iter().map(|p| p.label.as_str()).collect();
        assert_eq!(labels, ["a b", "c", "d"]);
    }

    #[test]
    fn unknown_value_and_missing_trailing_fields() {
        let p = one("load=U;;;;");
        assert_eq!(p.value, None);
        let p = one("time=0.000815s;;;0.000000");
        assert_eq!(p.warn, None);
        assert_eq!(p.crit, None);
        assert_eq!(p.min, Some(0.0));
        assert_eq!(p.max, None);
        let p = one("users=3");
        assert_eq!((p.warn, p.max), (None, None));
    }

    #[test]
    fn ranges() {
        assert_eq!(
            Range::parse("10:20"),
            Some(Range {
                start: 10.0,
                end: 20.0,
                inside: false
            })
        );
        assert_eq!(
            Range::parse("10:"),
            Some(Range {
                start: 10.0,
                end: f64::INFINITY,
                inside: false
            })
        );
        assert_eq!(
            Range::parse("~:5"),
            Some(Range {
                start: f64::NEG_INFINITY,
                end: 5.0,
                inside: false
            })
        );
        assert_eq!(
            Range::parse("@1:3"),
            Some(Range {
                start: 1.0,
                end: 3.0,
                inside: true
            })
        );
        assert!(Range::parse("@1:3").unwrap().alerts(2.0));
        assert!(Range::parse("10").unwrap().alerts(11.0));
        assert!(!Range::parse("10").unwrap().alerts(10.0));
        assert_eq!(Range::parse("x:y"), None);
        let p = one("t=5;@1:3;~:5");
        assert!(p.warn.unwrap().inside);
        assert_eq!(p.crit.unwrap().start, f64::NEG_INFINITY);
    }

    #[test]
    fn unparsable_items_are_skipped() {
        let v = parse_perfdata("good=1 bad novalue= =3 'unclosed=4 worse=abc ok=2%");
        let labels: Vec<&str> = v.iter().map(|p| p.label.as_str()).collect();
        assert_eq!(labels, ["good"], "{v:?}");
        let v = parse_perfdata("a=1 b=x c=2e3ms d=-4.5");
        let got: Vec<(&str, Option<f64>)> = v.iter().map(|p| (p.label.as_str(), p.value)).collect();
        assert_eq!(
            got,
            [("a", Some(1.0)), ("c", Some(2000.0)), ("d", Some(-4.5))]
        );
        assert!(parse_perfdata("").is_empty());
    }

    #[test]
    fn whole_output_with_long_text_and_second_perfdata_block() {
        let out = parse_output(
            "DISK OK - free space: / 3326 MB (56%); | /=2643MB;5948;5958;0;5968\n\
             / 15272 MB (77%);\n\
             /boot 68 MB (69%); | /boot=68MB;88;93;0;98\n\
             /home=69357MB;253404;253409;0;253414\n",
        );
        assert_eq!(out.text, "DISK OK - free space: / 3326 MB (56%);");
        assert_eq!(out.long_text, "/ 15272 MB (77%);\n/boot 68 MB (69%);");
        let labels: Vec<&str> = out.perfdata.iter().map(|p| p.label.as_str()).collect();
        assert_eq!(labels, ["/", "/boot", "/home"]);
        let plain = parse_output("PING OK");
        assert_eq!(plain.text, "PING OK");
        assert!(plain.perfdata.is_empty());
    }
}
