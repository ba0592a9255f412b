//! Placeholders of a dry run (`Provider::plan`): what a skipped create would have returned, so
//! the rest of the pass plans its own changes. A placeholder ARN or id starts with [`PREFIX`];
//! a read given one answers "nothing there" without a call (the resource would be new).

pub const PREFIX: &str = "planned:";

/// The ARN (or id) a skipped create of `kind` named `name` stands for.
pub fn arn(kind: &str, name: &str) -> String {
    format!("{PREFIX}{kind}/{name}")
}

pub fn is(arn_or_id: &str) -> bool {
    arn_or_id.starts_with(PREFIX)
}
