//! Spend queries: what the ledger can be asked, and the one place that turns a question into
//! SQL.
//!
//! Column names come only from [`Dimension::column`], a fixed list; every value a caller
//! supplies (time bounds, filter values) is a bound parameter. So no query text is ever made
//! from user input. The two backends run the same statement but for the placeholder
//! spelling and SQLite's way to a time range (see [`spend_sql`]).

use std::fmt::{self, Write as _};
use std::str::FromStr;

/// A column spend can be grouped or filtered by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dimension {
    /// [`UsageRecord::organization`](crate::UsageRecord::organization).
    Organization,
    /// [`UsageRecord::team`](crate::UsageRecord::team).
    Team,
    /// [`UsageRecord::project`](crate::UsageRecord::project).
    Project,
    /// [`UsageRecord::user`](crate::UsageRecord::user).
    User,
    /// [`UsageRecord::key_id`](crate::UsageRecord::key_id).
    Key,
    /// [`UsageRecord::model`](crate::UsageRecord::model), the logical model asked for.
    Model,
    /// [`UsageRecord::provider`](crate::UsageRecord::provider).
    Provider,
}

impl Dimension {
    /// Every dimension, in declaration order.
    pub const ALL: [Dimension; 7] = [
        Dimension::Organization,
        Dimension::Team,
        Dimension::Project,
        Dimension::User,
        Dimension::Key,
        Dimension::Model,
        Dimension::Provider,
    ];

    /// The name used in URLs and on the command line: `organization`, `team`, `project`,
    /// `user`, `key`, `model`, `provider`.
    pub fn as_str(self) -> &'static str {
        match self {
            Dimension::Organization => "organization",
            Dimension::Team => "team",
            Dimension::Project => "project",
            Dimension::User => "user",
            Dimension::Key => "key",
            Dimension::Model => "model",
            Dimension::Provider => "provider",
        }
    }

    /// The stored column: the whitelist every query is built from.
    pub(crate) fn column(self) -> &'static str {
        match self {
            Dimension::Organization => "organization",
            Dimension::Team => "team",
            Dimension::Project => "project",
            // `user` is a reserved word in PostgreSQL.
            Dimension::User => "user_id",
            Dimension::Key => "key_id",
            Dimension::Model => "model",
            Dimension::Provider => "provider",
        }
    }
}

impl fmt::Display for Dimension {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The name was not one of [`Dimension::as_str`]'s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown dimension {0:?}: expected organization, team, project, user, key, model or provider"
)]
pub struct UnknownDimension(pub String);

impl FromStr for Dimension {
    type Err = UnknownDimension;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Dimension::ALL
            .into_iter()
            .find(|d| d.as_str() == s)
            .ok_or_else(|| UnknownDimension(s.to_owned()))
    }
}

/// A question about spend: over which time range, broken down how, restricted to what.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpendQuery {
    /// Inclusive lower bound on [`UsageRecord::at_unix_ms`](crate::UsageRecord::at_unix_ms);
    /// `None` is unbounded.
    pub from_unix_ms: Option<i64>,
    /// Exclusive upper bound: ranges are half-open, `[from, to)`, so consecutive ranges
    /// (days, months) never count a request twice.
    pub to_unix_ms: Option<i64>,
    /// One row per distinct combination of these columns; empty gives one total row.
    pub group_by: Vec<Dimension>,
    /// Equality filters, all of which must hold.
    pub filter: Vec<(Dimension, String)>,
}

/// A spend question's parameters were not understood. `param` names the one at fault, as
/// the command line (`--group-by`) and the admin API (`group_by`) both spell them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{param}: {message}")]
pub struct InvalidSpendQuery {
    /// `from`, `to`, `group_by` or `where`.
    pub param: &'static str,
    /// What was wrong with it.
    pub message: String,
}

impl SpendQuery {
    /// The query `johi usage spend` and the admin API's spend route ask, from their shared
    /// parameters: `from`/`to` as `2026-11-01` or an RFC 3339 UTC instant, `group_by` as
    /// dimension names (each entry may be comma-separated), `filter` as `DIMENSION=VALUE`.
    /// One parser, so both answer the same question for the same words.
    pub fn from_params(
        from: Option<&str>,
        to: Option<&str>,
        group_by: &[String],
        filter: &[String],
    ) -> Result<SpendQuery, InvalidSpendQuery> {
        let invalid = |param, message: String| InvalidSpendQuery { param, message };
        let group_by = group_by
            .iter()
            .flat_map(|g| g.split(','))
            .filter(|g| !g.is_empty())
            .map(|d| {
                d.parse::<Dimension>()
                    .map_err(|e| invalid("group_by", e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let filter = filter
            .iter()
            .map(|f| {
                let (d, v) = f
                    .split_once('=')
                    .ok_or_else(|| invalid("where", format!("'{f}': expected DIMENSION=VALUE")))?;
                let d = d
                    .parse::<Dimension>()
                    .map_err(|e| invalid("where", e.to_string()))?;
                Ok((d, v.to_owned()))
            })
            .collect::<Result<Vec<_>, InvalidSpendQuery>>()?;
        Ok(SpendQuery {
            from_unix_ms: from
                .map(parse_instant_ms)
                .transpose()
                .map_err(|e| invalid("from", e))?,
            to_unix_ms: to
                .map(parse_instant_ms)
                .transpose()
                .map_err(|e| invalid("to", e))?,
            group_by,
            filter,
        })
    }
}

/// `2026-11-01` (midnight UTC) or an RFC 3339 UTC instant → Unix milliseconds.
pub fn parse_instant_ms(text: &str) -> Result<i64, String> {
    let full = if text.len() == 10 {
        format!("{text}T00:00:00Z")
    } else {
        text.to_owned()
    };
    let at = humantime::parse_rfc3339(&full).map_err(|e| format!("'{text}': {e}"))?;
    let ms = at
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| format!("'{text}' is before 1970"))?
        .as_millis();
    i64::try_from(ms).map_err(|_| format!("'{text}' is too far in the future"))
}

/// Totals for one group of a [`SpendQuery`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpendRow {
    /// The group's values, aligned with [`SpendQuery::group_by`]; `None` where the requests
    /// were not attributed (no team, no provider reached, ...).
    pub group: Vec<Option<String>>,
    /// Number of requests.
    pub requests: u64,
    /// Sum of input tokens.
    pub input_tokens: u64,
    /// Sum of output tokens.
    pub output_tokens: u64,
    /// Sum of cached input tokens.
    pub cached_input_tokens: u64,
    /// Sum of reasoning tokens.
    pub reasoning_tokens: u64,
    /// Sum of cost, micro-units of the price currency.
    pub cost_micros: i64,
}

/// The summed columns, in the order [`SpendRow::from_sums`] reads them after `COUNT(*)`.
const SUMMED: [&str; 5] = [
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "reasoning_tokens",
    "cost_micros",
];

/// How many numbers follow the group columns in a spend result row.
pub(crate) const SUMS: usize = 1 + SUMMED.len();

impl SpendRow {
    /// Builds a row from its group values and `[count, sums...]` as both backends return them.
    pub(crate) fn from_sums(group: Vec<Option<String>>, sums: [i64; SUMS]) -> SpendRow {
        let [requests, input, output, cached, reasoning, cost] = sums;
        let count = |v: i64| u64::try_from(v).unwrap_or(0);
        SpendRow {
            group,
            requests: count(requests),
            input_tokens: count(input),
            output_tokens: count(output),
            cached_input_tokens: count(cached),
            reasoning_tokens: count(reasoning),
            cost_micros: cost,
        }
    }
}

/// Puts rows in the one order both backends return: by group values, unattributed (`None`)
/// before any value, values by byte order. Sorting here rather than in SQL keeps the order
/// independent of the database's collation and NULL placement.
pub(crate) fn sort_rows(rows: &mut [SpendRow]) {
    rows.sort_by(|a, b| a.group.cmp(&b.group));
}

/// A bound parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Param {
    Int(i64),
    Text(String),
}

/// The backends' query text differs in the placeholder spelling, and in how SQLite finds a
/// time range (see [`spend_sql`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    fn placeholder(self, n: usize) -> String {
        match self {
            Dialect::Sqlite => format!("?{n}"),
            Dialect::Postgres => format!("${n}"),
        }
    }
}

/// A statement and its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Sql {
    pub text: String,
    pub params: Vec<Param>,
}

/// How long a stretch of time one SQLite mark covers (see [`mark_minute`]).
const MARK_MS: i64 = 60_000;

/// The minute a record made at `at_unix_ms` is marked under in SQLite's `johi_usage_marks`:
/// the table that finds a time range's rows there, in place of an index on the usage table
/// (see the SQLite store's docs). Floor division, so it holds before 1970 too.
pub(crate) fn mark_minute(at_unix_ms: i64) -> i64 {
    at_unix_ms.div_euclid(MARK_MS)
}

/// `SELECT <groups>, COUNT(*), SUM(...)... FROM johi_usage WHERE ... GROUP BY <groups>`.
///
/// In SQLite the rows are joined to their labels by ID, and a query with a time bound reads
/// the rows through the marks of the minutes it spans: each mark names a range of row IDs,
/// which SQLite reads by row ID. The time conditions then still apply to every row, so the
/// answer is exact; the marks only narrow what is read.
pub(crate) fn spend_sql(query: &SpendQuery, dialect: Dialect) -> Sql {
    let groups: Vec<&str> = query.group_by.iter().map(|d| d.column()).collect();
    let mut text = String::from("SELECT ");
    for column in &groups {
        text.push_str(column);
        text.push_str(", ");
    }
    text.push_str("COUNT(*)");
    for column in SUMMED {
        // SUM of BIGINT is NUMERIC in PostgreSQL; the cast keeps both backends on i64.
        let _ = write!(text, ", CAST(COALESCE(SUM({column}), 0) AS BIGINT)");
    }
    let bounded = query.from_unix_ms.is_some() || query.to_unix_ms.is_some();
    match (dialect, bounded) {
        // CROSS JOIN fixes the order: the marks, then the rows they name, then each row's
        // labels by ID. NOT INDEXED keeps the planner from building a throwaway index over
        // the whole rows table (row IDs still work).
        (Dialect::Sqlite, true) => text.push_str(
            " FROM johi_usage_marks CROSS JOIN johi_usage_rows NOT INDEXED \
             ON johi_usage_rows.rowid BETWEEN first_row AND last_row \
             CROSS JOIN johi_usage_labels ON johi_usage_labels.id = johi_usage_rows.labels",
        ),
        (Dialect::Sqlite, false) => text.push_str(
            " FROM johi_usage_rows \
             CROSS JOIN johi_usage_labels ON johi_usage_labels.id = johi_usage_rows.labels",
        ),
        (Dialect::Postgres, _) => text.push_str(" FROM johi_usage"),
    }

    let mut params = Vec::new();
    let mut conditions = Vec::new();
    let mut bind = |condition: &str, param: Param| {
        params.push(param);
        conditions.push(format!("{condition} {}", dialect.placeholder(params.len())));
    };
    if let Some(from) = query.from_unix_ms {
        if dialect == Dialect::Sqlite {
            bind("minute >=", Param::Int(mark_minute(from)));
        }
        bind("at_unix_ms >=", Param::Int(from));
    }
    if let Some(to) = query.to_unix_ms {
        if dialect == Dialect::Sqlite {
            bind("minute <=", Param::Int(mark_minute(to.saturating_sub(1))));
        }
        bind("at_unix_ms <", Param::Int(to));
    }
    for (dimension, value) in &query.filter {
        bind(
            &format!("{} =", dimension.column()),
            Param::Text(value.clone()),
        );
    }
    if !conditions.is_empty() {
        text.push_str(" WHERE ");
        text.push_str(&conditions.join(" AND "));
    }
    if !groups.is_empty() {
        text.push_str(" GROUP BY ");
        text.push_str(&groups.join(", "));
    }
    Sql { text, params }
}

/// A calendar month in UTC, the period of a chargeback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct YearMonth {
    year: i32,
    month: u8,
}

/// The text was not a month spelled `YYYY-MM` (years 1 to 9999).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid month {0:?}: expected YYYY-MM, e.g. 2026-11")]
pub struct InvalidMonth(pub String);

impl YearMonth {
    /// The month, if `month` is 1 to 12 and `year` 1 to 9999 (what `YYYY-MM` can spell).
    pub fn new(year: i32, month: u8) -> Option<YearMonth> {
        ((1..=9999).contains(&year) && (1..=12).contains(&month))
            .then_some(YearMonth { year, month })
    }

    /// The year.
    pub fn year(self) -> i32 {
        self.year
    }

    /// The month, 1 to 12.
    pub fn month(self) -> u8 {
        self.month
    }

    /// The month after this one.
    pub fn next(self) -> YearMonth {
        if self.month == 12 {
            YearMonth {
                year: self.year + 1,
                month: 1,
            }
        } else {
            YearMonth {
                year: self.year,
                month: self.month + 1,
            }
        }
    }

    /// Midnight UTC on the first day of the month, milliseconds since the Unix epoch.
    pub fn start_unix_ms(self) -> i64 {
        days_from_civil(i64::from(self.year), i64::from(self.month)) * 86_400_000
    }

    /// The month as a half-open range `[start, start of next month)` in Unix milliseconds.
    pub fn range_unix_ms(self) -> (i64, i64) {
        (self.start_unix_ms(), self.next().start_unix_ms())
    }
}

/// Days from 1970-01-01 to the first of the month (Howard Hinnant's `days_from_civil`), so the
/// crate needs no calendar dependency for one conversion.
fn days_from_civil(year: i64, month: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

impl FromStr for YearMonth {
    type Err = InvalidMonth;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || InvalidMonth(s.to_owned());
        let (year, month) = s.split_once('-').ok_or_else(invalid)?;
        let digits = |t: &str, n: usize| t.len() == n && t.bytes().all(|b| b.is_ascii_digit());
        if !digits(year, 4) || !digits(month, 2) {
            return Err(invalid());
        }
        let year = year.parse().map_err(|_| invalid())?;
        let month = month.parse().map_err(|_| invalid())?;
        YearMonth::new(year, month).ok_or_else(invalid)
    }
}

impl fmt::Display for YearMonth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_parse_and_bound_in_utc() {
        let month: YearMonth = "2026-11".parse().unwrap();
        assert_eq!(month.to_string(), "2026-11");
        // 2026-11-01T00:00:00Z and 2026-12-01T00:00:00Z.
        assert_eq!(
            month.range_unix_ms(),
            (1_793_491_200_000, 1_796_083_200_000)
        );
        assert_eq!(YearMonth::new(1970, 1).unwrap().start_unix_ms(), 0);
        assert_eq!(
            "2024-12".parse::<YearMonth>().unwrap().next(),
            YearMonth::new(2025, 1).unwrap()
        );
        // 2024-03-01: after a leap day.
        assert_eq!(
            YearMonth::new(2024, 3).unwrap().start_unix_ms(),
            1_709_251_200_000
        );
        for bad in [
            "2026-13",
            "2026-00",
            "2026-1",
            "26-11",
            "2026/11",
            "",
            "2026-11-01",
            "+026-11",
        ] {
            assert!(bad.parse::<YearMonth>().is_err(), "{bad}");
        }
    }

    #[test]
    fn params_parse_the_same_for_the_cli_and_the_admin_api() {
        let q = SpendQuery::from_params(
            Some("2026-11-01"),
            Some("2026-12-01T00:00:00Z"),
            &["team,model".into(), "key".into()],
            &["organization=acme".into()],
        )
        .unwrap();
        assert_eq!(q.from_unix_ms, Some(1_793_491_200_000));
        assert_eq!(q.to_unix_ms, Some(1_796_083_200_000));
        assert_eq!(
            q.group_by,
            vec![Dimension::Team, Dimension::Model, Dimension::Key]
        );
        assert_eq!(q.filter, vec![(Dimension::Organization, "acme".into())]);
        let bad = |f: Option<&str>, g: &str, w: &str| {
            SpendQuery::from_params(f, None, &[g.into()], &[w.into()])
                .unwrap_err()
                .param
        };
        assert_eq!(bad(Some("yesterday"), "team", "team=x"), "from");
        assert_eq!(bad(None, "galaxy", "team=x"), "group_by");
        assert_eq!(bad(None, "team", "team"), "where");
    }

    #[test]
    fn dimensions_round_trip_by_name() {
        for dimension in Dimension::ALL {
            assert_eq!(dimension.as_str().parse::<Dimension>().unwrap(), dimension);
        }
        assert!("user_id".parse::<Dimension>().is_err());
    }

    #[test]
    fn values_are_bound_never_spliced() {
        let query = SpendQuery {
            from_unix_ms: Some(10),
            to_unix_ms: Some(20),
            group_by: vec![Dimension::Project, Dimension::User],
            filter: vec![(
                Dimension::Organization,
                "x'; DROP TABLE johi_usage; --".into(),
            )],
        };
        let sql = spend_sql(&query, Dialect::Postgres);
        assert!(!sql.text.contains("DROP"));
        assert!(sql.text.starts_with("SELECT project, user_id, COUNT(*), "));
        assert!(sql
            .text
            .ends_with(" WHERE at_unix_ms >= $1 AND at_unix_ms < $2 AND organization = $3 GROUP BY project, user_id"));
        assert_eq!(sql.params.len(), 3);
        let sqlite = spend_sql(&query, Dialect::Sqlite);
        assert!(sqlite.text.ends_with(
            " WHERE minute >= ?1 AND at_unix_ms >= ?2 AND minute <= ?3 AND at_unix_ms < ?4 \
             AND organization = ?5 GROUP BY project, user_id"
        ));
        assert_eq!(
            &sqlite.params[..4],
            [Param::Int(0), Param::Int(10), Param::Int(0), Param::Int(20)]
        );
    }
}
