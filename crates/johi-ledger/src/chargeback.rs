//! The chargeback export: one CSV row per (organisation, team, project) for a calendar month,
//! the file finance imports to bill projects for what they used.

use crate::query::{Dimension, SpendQuery, SpendRow, YearMonth};
use crate::LedgerError;

/// The header row; the column set is part of the export's contract.
const HEADER: [&str; 10] = [
    "month",
    "organization",
    "team",
    "project",
    "requests",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "cost_micros",
    "cost",
];

/// The spend query behind a chargeback: the month's half-open range, grouped by organisation,
/// team and project, optionally one project only.
pub(crate) fn query(month: YearMonth, project: Option<&str>) -> SpendQuery {
    let (from, to) = month.range_unix_ms();
    SpendQuery {
        from_unix_ms: Some(from),
        to_unix_ms: Some(to),
        group_by: vec![Dimension::Organization, Dimension::Team, Dimension::Project],
        filter: project
            .map(|p| vec![(Dimension::Project, p.to_owned())])
            .unwrap_or_default(),
    }
}

/// Renders the rows of [`query`] (already sorted by organisation, team, project; unattributed
/// first) as CSV with a header; an unattributed column is an empty field.
pub(crate) fn render(month: YearMonth, rows: &[SpendRow]) -> Result<String, LedgerError> {
    let mut out = csv::Writer::from_writer(Vec::new());
    out.write_record(HEADER)?;
    let month = month.to_string();
    for row in rows {
        let group = |i: usize| row.group.get(i).cloned().flatten().unwrap_or_default();
        out.write_record([
            month.clone(),
            group(0),
            group(1),
            group(2),
            row.requests.to_string(),
            row.input_tokens.to_string(),
            row.output_tokens.to_string(),
            row.cached_input_tokens.to_string(),
            row.cost_micros.to_string(),
            format_micros(row.cost_micros),
        ])?;
    }
    let bytes = out
        .into_inner()
        .map_err(|e| csv::Error::from(e.into_error()))?;
    // Every field above is a `String`, so the bytes are UTF-8.
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Renders micro-units as a decimal with exactly six places (`1234567` → `1.234567`), with
/// integer arithmetic so no amount is ever rounded through a float.
pub fn format_micros(micros: i64) -> String {
    let sign = if micros < 0 { "-" } else { "" };
    let abs = micros.unsigned_abs();
    format!("{sign}{}.{:06}", abs / 1_000_000, abs % 1_000_000)
}

#[cfg(test)]
mod tests {
    use super::format_micros;

    #[test]
    fn micros_render_with_six_places() {
        assert_eq!(format_micros(0), "0.000000");
        assert_eq!(format_micros(5), "0.000005");
        assert_eq!(format_micros(1_000_000), "1.000000");
        assert_eq!(format_micros(1_234_567), "1.234567");
        assert_eq!(format_micros(-1_500_000), "-1.500000");
        assert_eq!(format_micros(i64::MIN), "-9223372036854.775808");
    }
}
