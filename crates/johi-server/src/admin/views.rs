//! Read-only views: the tenant tree, limits with their current consumption, and spend from
//! the usage ledger (the same questions `johi usage` answers, with the same parameters).

use std::time::SystemTime;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::Response;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, StatusCode};
use johi_config::{LimitRule, Measure};
use johi_ledger::{format_micros, Ledger, LedgerError, SpendQuery, YearMonth};
use johi_limits::Window;
use serde_json::{json, Value};

use super::{json, AdminError, AdminState};

/// Query parameters in order, repeated names kept (`where` may be given several times).
type Params = Vec<(String, String)>;

/// `GET /admin/v1/tenants`: organisations → teams → projects with their model allowances,
/// each with its path and its `source`: `config` (the config file) or `runtime` (the admin
/// API).
pub(super) async fn tenants(State(state): State<AdminState>) -> Response {
    let runtime = state.shared.runtime.load_full();
    let tree = &runtime.config.tenants;
    let source = |path: &str| {
        if tree.is_runtime(path) {
            "runtime"
        } else {
            "config"
        }
    };
    let node = |path: String, name: &str, allowed: &Option<Vec<String>>| json!({"name": name, "path": path, "source": source(&path), "allowed_models": allowed});
    let data: Vec<Value> = tree
        .organizations
        .iter()
        .map(|(org, o)| {
            let teams: Vec<Value> = o
                .teams
                .iter()
                .map(|(team, t)| {
                    let team_path = format!("{org}/{team}");
                    let projects: Vec<Value> = t
                        .projects
                        .iter()
                        .map(|(project, allowed)| {
                            node(format!("{team_path}/{project}"), project, allowed)
                        })
                        .collect();
                    let mut view = node(team_path, team, &t.allowed_models);
                    view["projects"] = Value::Array(projects);
                    view
                })
                .collect();
            let mut view = node(org.clone(), org, &o.allowed_models);
            view["object"] = json!("organization");
            view["teams"] = Value::Array(teams);
            view
        })
        .collect();
    json(StatusCode::OK, json!({"object": "list", "data": data}))
}

/// `GET /admin/v1/limits`: every configured limit and, per scope instance with a live
/// counter, what is used and left in the current window.
pub(super) async fn limits(State(state): State<AdminState>) -> Result<Response, AdminError> {
    let runtime = state.shared.runtime.load_full();
    let store = &state.loader.limits;
    let now = SystemTime::now();
    let mut data = Vec::with_capacity(runtime.config.limits.len());
    for rule in &runtime.config.limits {
        let counters = store
            .usage(&rule.spec, now)
            .await
            .map_err(|e| AdminError::Unavailable {
                message: e.to_string(),
                code: "limits_unavailable",
            })?;
        data.push(limit_view(rule, &counters, now));
    }
    Ok(json(
        StatusCode::OK,
        json!({"object": "list", "data": data}),
    ))
}

fn limit_view(rule: &LimitRule, counters: &[(String, u64)], now: SystemTime) -> Value {
    let spec = &rule.spec;
    let resets_in = spec.window.map(|w| {
        w.bounds(now)
            .1
            .duration_since(now)
            .unwrap_or_default()
            .as_secs()
    });
    let unit = match rule.measure {
        Measure::Requests | Measure::Concurrent => "requests",
        Measure::InputTokens | Measure::OutputTokens | Measure::TotalTokens => "tokens",
        Measure::Cost => "usd_micros",
    };
    let counters: Vec<Value> = counters
        .iter()
        .map(|(scope_key, used)| {
            json!({
                "scope_key": scope_key,
                "used": used,
                "remaining": spec.limit.saturating_sub(*used),
                "resets_in_seconds": resets_in,
            })
        })
        .collect();
    json!({
        "object": "limit",
        "id": spec.id,
        "scope": rule.scope.as_str(),
        "match": rule.match_,
        "measure": rule.measure.as_str(),
        "window": spec.window.map(window_name),
        "limit": spec.limit,
        "burst": spec.burst,
        "unit": unit,
        "kind": if rule.enforce { "hard" } else { "soft" },
        "fallback": rule.fallback,
        "counters": counters,
    })
}

fn window_name(window: Window) -> String {
    match window {
        Window::Minute => "minute".into(),
        Window::Hour => "hour".into(),
        Window::Day => "day".into(),
        Window::Month => "month".into(),
        Window::Fixed(d) => humantime::format_duration(d).to_string(),
        Window::Rolling(d) => format!("rolling {}", humantime::format_duration(d)),
    }
}

/// `GET /admin/v1/usage/spend?from&to&group_by&where&flush`: what `johi usage spend`
/// prints, as JSON.
pub(super) async fn spend(
    State(state): State<AdminState>,
    params: Result<Query<Params>, QueryRejection>,
) -> Result<Response, AdminError> {
    let params = query_params(params)?;
    let ledger = ledger(&state)?;
    let one = |name: &str| last(&params, name);
    let all = |name: &str| -> Vec<String> {
        params
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    };
    reject_unknown(&params, &["from", "to", "group_by", "where", "flush"])?;
    let query = SpendQuery::from_params(one("from"), one("to"), &all("group_by"), &all("where"))
        .map_err(|e| AdminError::bad_request(e.param, e.to_string()))?;
    flush_if_asked(&ledger, one("flush")).await?;
    let rows = ledger.spend(&query).await.map_err(ledger_error)?;
    let names: Vec<&str> = query.group_by.iter().map(|d| d.as_str()).collect();
    let data: Vec<Value> = rows
        .iter()
        .map(|row| {
            let group: serde_json::Map<String, Value> = names
                .iter()
                .zip(&row.group)
                .map(|(name, value)| ((*name).to_owned(), json!(value)))
                .collect();
            json!({
                "group": group,
                "requests": row.requests,
                "input_tokens": row.input_tokens,
                "output_tokens": row.output_tokens,
                "cached_input_tokens": row.cached_input_tokens,
                "reasoning_tokens": row.reasoning_tokens,
                "cost_micros": row.cost_micros,
                "cost": format_micros(row.cost_micros),
            })
        })
        .collect();
    Ok(json(
        StatusCode::OK,
        json!({"object": "list", "group_by": names, "data": data}),
    ))
}

/// `GET /admin/v1/usage/chargeback?month&project&flush`: the CSV `johi usage chargeback`
/// prints.
pub(super) async fn chargeback(
    State(state): State<AdminState>,
    params: Result<Query<Params>, QueryRejection>,
) -> Result<Response, AdminError> {
    let params = query_params(params)?;
    let ledger = ledger(&state)?;
    reject_unknown(&params, &["month", "project", "flush"])?;
    let find = |name: &str| last(&params, name);
    let month: YearMonth = find("month")
        .ok_or_else(|| AdminError::bad_request("month", "month is required (YYYY-MM)"))?
        .parse()
        .map_err(|e: johi_ledger::InvalidMonth| AdminError::bad_request("month", e.to_string()))?;
    flush_if_asked(&ledger, find("flush")).await?;
    let csv = ledger
        .chargeback_csv(month, find("project"))
        .await
        .map_err(ledger_error)?;
    let mut response = Response::new(Body::from(csv));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    Ok(response)
}

fn query_params(params: Result<Query<Params>, QueryRejection>) -> Result<Params, AdminError> {
    params
        .map(|Query(p)| p)
        .map_err(|e| AdminError::BadRequest {
            message: format!("the query string is not valid: {e}"),
            param: None,
            code: "invalid_query",
        })
}

/// The last value given for `name` (a repeated single-valued parameter: the last wins).
fn last<'a>(params: &'a Params, name: &str) -> Option<&'a str> {
    params
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn reject_unknown(params: &Params, known: &[&str]) -> Result<(), AdminError> {
    match params.iter().find(|(k, _)| !known.contains(&k.as_str())) {
        Some((k, _)) => Err(AdminError::bad_request(
            k.clone(),
            format!("unknown parameter '{k}' (known: {})", known.join(", ")),
        )),
        None => Ok(()),
    }
}

fn ledger(state: &AdminState) -> Result<Ledger, AdminError> {
    state
        .loader
        .ledger
        .as_ref()
        .map(|(_, ledger)| ledger.clone())
        .ok_or_else(|| AdminError::NotFound {
            message: "no usage ledger is configured (add a 'ledger:' section)".into(),
            code: "ledger_not_configured",
        })
}

/// `flush=true` waits until every record queued so far is committed, so the answer includes
/// the requests that just completed.
async fn flush_if_asked(ledger: &Ledger, flush: Option<&str>) -> Result<(), AdminError> {
    match flush {
        None | Some("false") => Ok(()),
        Some("true") => ledger.flush().await.map_err(ledger_error),
        Some(other) => Err(AdminError::bad_request(
            "flush",
            format!("'{other}' is not true or false"),
        )),
    }
}

fn ledger_error(error: LedgerError) -> AdminError {
    tracing::error!(%error, kind = error.kind(), "admin: ledger query failed");
    AdminError::Unavailable {
        message: format!("the usage ledger could not answer: {error}"),
        code: "ledger_unavailable",
    }
}
