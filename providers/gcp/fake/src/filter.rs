//! The `filter` query parameter of list calls.
//!
//! Supported subset (an expression outside it is a 400 `invalid`, as real GCE answers an
//! unparsable filter):
//!
//! * the legacy regexp syntax CPG and ingress-gce send: `name eq k8s-.*`, `address ne 1\.2\.3\.4`,
//!   several terms in parentheses and juxtaposed: `(name eq a.*)(region eq .*/regions/r)`. The
//!   regexp must match the whole value (RE2 full match), as in GCE;
//! * the current syntax: `name = "x"`, `name != "x"`, `labels.env = prod`, `name = "k8s-*"` (`*` is a
//!   wildcard), `labels.env:*` (has), combined with `AND`, `OR`, `NOT`/`-` and parentheses.
//!
//! Field paths are dotted (`labels.env`, `networkInterfaces.networkIP`); a path that crosses an
//! array matches when any element matches. A missing field compares as the empty string for
//! `eq`/`ne` and never equals anything for `=`.

use regex::Regex;
use serde_json::Value;

#[derive(Debug)]
pub enum Filter {
    All,
    Regex { field: String, re: Regex, negate: bool },
    Equals { field: String, pattern: Pattern, negate: bool },
    Has { field: String, pattern: Option<Pattern> },
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Not(Box<Filter>),
}

#[derive(Debug)]
pub enum Pattern {
    Exact(String),
    Glob(Regex),
}

impl Pattern {
    fn new(v: &str) -> Result<Pattern, String> {
        if v.contains('*') {
            let re = format!("^(?:{})$", v.split('*').map(regex::escape).collect::<Vec<_>>().join(".*"));
            Regex::new(&re).map(Pattern::Glob).map_err(|e| e.to_string())
        } else {
            Ok(Pattern::Exact(v.to_string()))
        }
    }
    fn matches(&self, s: &str) -> bool {
        match self {
            Pattern::Exact(x) => x == s,
            Pattern::Glob(re) => re.is_match(s),
        }
    }
}

/// Parses a filter; `Err` carries a short reason.
pub fn parse(text: &str) -> Result<Filter, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(Filter::All);
    }
    let mut p = Parser { s: text.as_bytes(), i: 0 };
    let f = p.expr()?;
    p.ws();
    if p.i != p.s.len() {
        return Err(format!("unexpected input at offset {}", p.i));
    }
    Ok(f)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    /// Consumes `word` when it stands alone (followed by whitespace or `(`).
    fn keyword(&mut self, word: &str) -> bool {
        let w = word.as_bytes();
        let end = self.i + w.len();
        if self.s.len() >= end
            && &self.s[self.i..end] == w
            && self.s.get(end).is_none_or(|c| c.is_ascii_whitespace() || *c == b'(')
        {
            self.i = end;
            true
        } else {
            false
        }
    }

    fn expr(&mut self) -> Result<Filter, String> {
        let mut alts = vec![self.and()?];
        loop {
            self.ws();
            if self.keyword("OR") {
                alts.push(self.and()?);
            } else {
                break;
            }
        }
        Ok(if alts.len() == 1 { alts.remove(0) } else { Filter::Or(alts) })
    }

    fn and(&mut self) -> Result<Filter, String> {
        let mut terms = vec![self.term()?];
        loop {
            self.ws();
            match self.peek() {
                None | Some(b')') => break,
                _ => {}
            }
            let save = self.i;
            if self.keyword("OR") {
                self.i = save;
                break;
            }
            self.keyword("AND");
            terms.push(self.term()?);
        }
        Ok(if terms.len() == 1 { terms.remove(0) } else { Filter::And(terms) })
    }

    fn term(&mut self) -> Result<Filter, String> {
        self.ws();
        match self.peek() {
            None => Err("expected a term".into()),
            Some(b'(') => {
                self.i += 1;
                let f = self.expr()?;
                self.ws();
                if self.peek() != Some(b')') {
                    return Err("missing ')'".into());
                }
                self.i += 1;
                Ok(f)
            }
            Some(b'-') => {
                self.i += 1;
                Ok(Filter::Not(Box::new(self.term()?)))
            }
            _ if self.keyword("NOT") => Ok(Filter::Not(Box::new(self.term()?))),
            _ => self.comparison(),
        }
    }

    fn comparison(&mut self) -> Result<Filter, String> {
        let start = self.i;
        while self.i < self.s.len() && (self.s[self.i].is_ascii_alphanumeric() || matches!(self.s[self.i], b'_' | b'.'))
        {
            self.i += 1;
        }
        if self.i == start {
            return Err(format!("expected a field name at offset {start}"));
        }
        let field = String::from_utf8_lossy(&self.s[start..self.i]).to_string();
        self.ws();
        if self.keyword("eq") || self.keyword("ne") {
            let negate = &self.s[self.i - 2..self.i] == b"ne";
            self.ws();
            let v = self.value()?;
            let re = Regex::new(&format!("^(?:{v})$")).map_err(|e| format!("bad regular expression {v:?}: {e}"))?;
            return Ok(Filter::Regex { field, re, negate });
        }
        match self.peek() {
            Some(b'=') => {
                self.i += 1;
                self.ws();
                let v = self.value()?;
                Ok(Filter::Equals { field, pattern: Pattern::new(&v)?, negate: false })
            }
            Some(b'!') if self.s.get(self.i + 1) == Some(&b'=') => {
                self.i += 2;
                self.ws();
                let v = self.value()?;
                Ok(Filter::Equals { field, pattern: Pattern::new(&v)?, negate: true })
            }
            Some(b':') => {
                self.i += 1;
                self.ws();
                let v = self.value()?;
                let pattern = if v == "*" { None } else { Some(Pattern::new(&v)?) };
                Ok(Filter::Has { field, pattern })
            }
            _ => Err(format!("expected an operator after {field:?}")),
        }
    }

    /// A quoted string, or a bare token up to whitespace or an unmatched `)`.
    fn value(&mut self) -> Result<String, String> {
        match self.peek() {
            Some(q @ (b'"' | b'\'')) => {
                self.i += 1;
                let mut out = Vec::new();
                while let Some(c) = self.peek() {
                    self.i += 1;
                    if c == b'\\' {
                        if let Some(n) = self.peek() {
                            out.push(n);
                            self.i += 1;
                        }
                    } else if c == q {
                        return Ok(String::from_utf8_lossy(&out).to_string());
                    } else {
                        out.push(c);
                    }
                }
                Err("unterminated string".into())
            }
            Some(_) => {
                let start = self.i;
                let mut depth = 0i32;
                while let Some(c) = self.peek() {
                    if c.is_ascii_whitespace() {
                        break;
                    }
                    if c == b'(' {
                        depth += 1;
                    } else if c == b')' {
                        if depth == 0 {
                            break;
                        }
                        depth -= 1;
                    }
                    self.i += 1;
                }
                if self.i == start {
                    return Err("expected a value".into());
                }
                Ok(String::from_utf8_lossy(&self.s[start..self.i]).to_string())
            }
            None => Err("expected a value".into()),
        }
    }
}

/// All scalar values at a dotted path (arrays are flattened).
fn values_at<'a>(v: &'a Value, path: &str, out: &mut Vec<&'a Value>) {
    match path.split_once('.') {
        _ if matches!(v, Value::Array(_)) => {
            if let Value::Array(items) = v {
                for it in items {
                    values_at(it, path, out);
                }
            }
        }
        Some((head, rest)) => {
            if let Some(next) = v.get(head) {
                values_at(next, rest, out);
            }
        }
        None => match v.get(path) {
            Some(Value::Array(items)) => out.extend(items.iter()),
            Some(x) => out.push(x),
            None => {}
        },
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

impl Filter {
    pub fn matches(&self, item: &Value) -> bool {
        match self {
            Filter::All => true,
            Filter::Regex { field, re, negate } => {
                let mut vals = Vec::new();
                values_at(item, field, &mut vals);
                let hit = if vals.is_empty() { re.is_match("") } else { vals.iter().any(|v| re.is_match(&scalar(v))) };
                hit != *negate
            }
            Filter::Equals { field, pattern, negate } => {
                let mut vals = Vec::new();
                values_at(item, field, &mut vals);
                vals.iter().any(|v| pattern.matches(&scalar(v))) != *negate
            }
            Filter::Has { field, pattern } => {
                let mut vals = Vec::new();
                values_at(item, field, &mut vals);
                match pattern {
                    None => !vals.is_empty(),
                    Some(p) => vals.iter().any(|v| p.matches(&scalar(v))),
                }
            }
            Filter::And(fs) => fs.iter().all(|f| f.matches(item)),
            Filter::Or(fs) => fs.iter().any(|f| f.matches(item)),
            Filter::Not(f) => !f.matches(item),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn m(f: &str, v: &Value) -> bool {
        parse(f).unwrap_or_else(|e| panic!("{f}: {e}")).matches(v)
    }

    #[test]
    fn legacy_regexp_syntax() {
        let v = json!({"name": "k8s-node-1", "address": "1.2.3.4", "region": "https://x/regions/us-central1"});
        assert!(m("name eq k8s-.*", &v));
        assert!(!m("name eq k8s", &v), "full match, not substring");
        assert!(m("name ne other.*", &v));
        assert!(m(r"address eq 1\.2\.3\.4", &v));
        assert!(m("(name eq k8s-.*)(region eq .*/regions/us-central1)", &v));
        assert!(!m("(name eq k8s-.*) (region eq .*/regions/europe-west1)", &v));
        assert!(m("name eq (k8s|gke)-node-[0-9]+", &v));
        assert!(m("(name eq (a|k8s)-node-1)", &v));
    }

    #[test]
    fn current_syntax() {
        let v = json!({"name": "a", "address": "1.2.3.4", "labels": {"env": "prod"}, "networkInterfaces": [{"networkIP": "10.0.0.2"}]});
        assert!(m(r#"name = "a""#, &v));
        assert!(m("address = 1.2.3.4", &v));
        assert!(m(r#"address = "1.2.3.4""#, &v));
        assert!(!m(r#"name != "a""#, &v));
        assert!(m("labels.env = prod AND name = a", &v));
        assert!(m("name = b OR name = a", &v));
        assert!(m("labels.env:*", &v));
        assert!(!m("labels.team:*", &v));
        assert!(m("NOT name = b", &v));
        assert!(m("-name = b", &v));
        assert!(m(r#"name = "*""#, &v));
        assert!(m("networkInterfaces.networkIP = 10.0.0.2", &v));
        assert!(m("(name = a) (address = 1.2.3.4)", &v));
    }

    #[test]
    fn unparsable_is_an_error() {
        for bad in ["name", "name eq", "name ~ x", "(name = a", "name eq (", "= a", r#"name = "a"#] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert!(matches!(parse("  "), Ok(Filter::All)));
    }
}
