//! Reading a provider's annotations (`LoadBalancerSpec::options`, the prefix already cut):
//! typed values with problems in words a user can act on, never a failure. Each provider names
//! its keys and how users write them (`annotation`); the checks of a value are the same for all.

use std::collections::BTreeMap;

/// Something wrong with one option.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub message: String,
    /// `ensure` refuses to run with this problem (it would have to use the value).
    pub fatal: bool,
}

/// Reads typed values from the options, collecting a [`Problem`] for each bad one.
pub struct OptionParser<'a> {
    pub problems: Vec<Problem>,
    options: &'a BTreeMap<String, String>,
    /// How users write `key` (prefix + key), for messages.
    annotation: fn(&str) -> String,
}

impl<'a> OptionParser<'a> {
    pub fn new(options: &'a BTreeMap<String, String>, annotation: fn(&str) -> String) -> Self {
        OptionParser { problems: Vec::new(), options, annotation }
    }

    /// Records that `value` of `key` is not valid, saying what is.
    pub fn bad(&mut self, key: &str, value: &str, accepted: &str) {
        self.problems.push(Problem {
            message: format!("annotation {}: {value:?} is not valid; accepted: {accepted}", (self.annotation)(key)),
            fatal: true,
        });
    }

    /// The trimmed value of `key`.
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.options.get(key).map(|v| v.trim())
    }

    pub fn bool(&mut self, key: &str) -> Option<bool> {
        let v = self.get(key)?;
        match v.to_ascii_lowercase().as_str() {
            "true" => Some(true),
            "false" => Some(false),
            _ => {
                self.bad(key, v, "\"true\" or \"false\"");
                None
            }
        }
    }

    /// An integer in `min..=max`; `unit` follows the range in the message (e.g. " seconds").
    pub fn int(&mut self, key: &str, min: u32, max: u32, unit: &str) -> Option<u32> {
        let v = self.get(key)?;
        match v.parse::<u32>() {
            Ok(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                self.bad(key, v, &format!("an integer from {min} to {max}{unit}"));
                None
            }
        }
    }

    /// A comma-separated list (empty items dropped).
    pub fn list(&self, key: &str) -> Option<Vec<String>> {
        self.get(key).map(|v| v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect())
    }

    /// `k1=v1,k2=v2`.
    pub fn key_values(&mut self, key: &str, what: &str) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let Some(items) = self.list(key) else { return out };
        for item in items {
            match item.split_once('=') {
                Some((k, v)) if !k.trim().is_empty() && !v.trim().is_empty() => {
                    out.insert(k.trim().to_string(), v.trim().to_string());
                }
                _ => self.bad(key, &item, &format!("a comma-separated list of {what}=value pairs, e.g. \"a=1,b=2\"")),
            }
        }
        out
    }

    /// One of `accepted` (case-insensitive), lowercased.
    pub fn one_of(&mut self, key: &str, accepted: &[&str]) -> Option<String> {
        let v = self.get(key)?;
        if accepted.iter().any(|a| a.eq_ignore_ascii_case(v)) {
            Some(v.to_ascii_lowercase())
        } else {
            let list = accepted.iter().map(|a| format!("{a:?}")).collect::<Vec<_>>().join(", ");
            self.bad(key, v, &list);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotation(key: &str) -> String {
        format!("x.cloudlb.io/{key}")
    }

    #[test]
    fn values_and_problems() {
        let o: BTreeMap<String, String> =
            [("a", " true "), ("b", "maybe"), ("n", "70"), ("kv", "x=1,bad"), ("c", "Fast")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        let mut p = OptionParser::new(&o, annotation);
        assert_eq!(p.bool("a"), Some(true));
        assert_eq!(p.bool("b"), None);
        assert_eq!(p.int("n", 1, 60, " seconds"), None);
        assert_eq!(p.key_values("kv", "tag"), BTreeMap::from([("x".to_string(), "1".to_string())]));
        assert_eq!(p.one_of("c", &["fast", "slow"]), Some("fast".into()));
        assert_eq!(p.bool("missing"), None);
        let messages: Vec<&str> = p.problems.iter().map(|p| p.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "annotation x.cloudlb.io/b: \"maybe\" is not valid; accepted: \"true\" or \"false\"",
                "annotation x.cloudlb.io/n: \"70\" is not valid; accepted: an integer from 1 to 60 seconds",
                "annotation x.cloudlb.io/kv: \"bad\" is not valid; accepted: a comma-separated list of tag=value pairs, e.g. \"a=1,b=2\"",
            ]
        );
    }
}
