//! The Prometheus text exposition of `/metrics` parsed into samples `top` can look up.
//!
//! Only the sample lines the sensor writes are understood: `name value` and
//! `name{labels} value`; comments, blank lines and lines that do not parse are skipped.
//!
//! Never: panics on any input; keeps more than [`limits::TOP_METRIC_SAMPLES_MAX`] samples.

use crate::config::limits;

/// One sample: metric name, the text inside `{}` (empty for none), value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: String,
    pub value: f64,
}

/// The samples of one `/metrics` body.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metrics {
    samples: Vec<Sample>,
}

impl Metrics {
    /// Parses `text`, keeping the first [`limits::TOP_METRIC_SAMPLES_MAX`] samples.
    pub fn parse(text: &str) -> Self {
        let samples = text
            .lines()
            .filter_map(parse_line)
            .take(limits::TOP_METRIC_SAMPLES_MAX)
            .collect();
        Self { samples }
    }

    /// The value of the sample `name` with exactly `labels`, if present.
    pub fn get(&self, name: &str, labels: &str) -> Option<f64> {
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels == labels)
            .map(|s| s.value)
    }

    /// The unlabelled sample `name` as a whole count (negative and NaN read as 0).
    pub fn count(&self, name: &str) -> Option<u64> {
        self.get(name, "").map(as_count)
    }

    /// Every sample of `name` whose labels contain `label=`, as (label value, value).
    pub fn by_label(&self, name: &str, label: &str) -> Vec<(String, f64)> {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .filter_map(|s| Some((label_value(&s.labels, label)?, s.value)))
            .collect()
    }

    /// Whether any sample carries the label `label` (e.g. `shard`).
    pub fn has_label(&self, label: &str) -> bool {
        self.samples
            .iter()
            .any(|s| label_value(&s.labels, label).is_some())
    }
}

/// `value` as a count: rounded, never negative.
pub fn as_count(value: f64) -> u64 {
    if value.is_finite() && value > 0.0 {
        // Saturating float to int cast: values above u64::MAX become u64::MAX.
        value.round() as u64
    } else {
        0
    }
}

fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (series, value) = line.rsplit_once(' ')?;
    let value: f64 = value.parse().ok()?;
    let (name, labels) = match series.split_once('{') {
        Some((name, rest)) => (name, rest.strip_suffix('}')?),
        None => (series, ""),
    };
    let valid_name = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':');
    valid_name.then(|| Sample {
        name: name.to_owned(),
        labels: labels.to_owned(),
        value,
    })
}

/// The value of `label` in a `k="v",k2="v2"` label text (no escapes: the sensor writes none).
fn label_value(labels: &str, label: &str) -> Option<String> {
    labels.split(',').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key.trim() == label).then(|| value.trim().trim_matches('"').to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TEXT: &str = "# HELP sentrypeer_events_total SIP requests.\n\
        # TYPE sentrypeer_events_total counter\n\
        sentrypeer_events_total 42\n\
        sentrypeer_writer_batch_events{quantile=\"0.5\"} 3\n\
        sentrypeer_writer_commit_microseconds_sum 1.5e3\n\
        sentrypeer_sip_io_errors_total{class=\"fatal\"} 1\n\
        garbage line here\n\
        bad{ 1\n\
        sentrypeer_events_dropped_total -3\n";

    #[test]
    fn top_prom_parses_samples() {
        let metrics = Metrics::parse(TEXT);
        assert_eq!(metrics.count("sentrypeer_events_total"), Some(42));
        assert_eq!(
            metrics.get("sentrypeer_writer_batch_events", "quantile=\"0.5\""),
            Some(3.0)
        );
        assert_eq!(
            metrics.count("sentrypeer_writer_commit_microseconds_sum"),
            Some(1500)
        );
        assert_eq!(metrics.count("sentrypeer_events_dropped_total"), Some(0));
        assert_eq!(metrics.count("sentrypeer_missing"), None);
        assert_eq!(
            metrics.by_label("sentrypeer_sip_io_errors_total", "class"),
            vec![("fatal".to_owned(), 1.0)]
        );
        assert!(metrics.has_label("quantile"));
        assert!(!metrics.has_label("shard"));
    }

    proptest! {
        #[test]
        fn top_prom_never_panics(text in any::<String>()) {
            let metrics = Metrics::parse(&text);
            prop_assert!(metrics.samples.len() <= limits::TOP_METRIC_SAMPLES_MAX);
        }
    }
}
