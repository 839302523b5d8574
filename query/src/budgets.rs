//! Monthly cost budgets: an admin sets one for the tenant (`PUT
//! /api/v1/budgets/tenant`) or for one of its services (`PUT
//! /api/v1/budgets/services/{service}`); `GET /api/v1/budgets` and every
//! `/llm/costs` answer say how much of each is spent this UTC month.
//!
//! What it guarantees: a budget belongs to the token's tenant and only an
//! admin changes it; the body is `{"monthly_usd": <finite, >= 0>}` and
//! nothing else; spend is the month's cost in the rollups, the same numbers
//! `/llm/costs` reports.

use crate::analytics::month_start;
use crate::problem::Problem;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::SystemTime;

/// What a budget covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "scope", rename_all = "lowercase")]
pub enum Scope {
    /// Everything the tenant spends.
    Tenant,
    /// One service.
    Service {
        /// Its name.
        service: String,
    },
}

impl Scope {
    fn columns(&self) -> (&'static str, &str) {
        match self {
            Scope::Tenant => ("tenant", ""),
            Scope::Service { service } => ("service", service),
        }
    }

    /// The scope from a path: `tenant`, or `services` and a percent-encoded name.
    pub fn from_path(kind: &str, name: Option<&str>) -> Result<Scope, Problem> {
        match (kind, name) {
            ("tenant", None) => Ok(Scope::Tenant),
            ("services", Some(raw)) => {
                let service = percent_encoding::percent_decode_str(raw)
                    .decode_utf8()
                    .map_err(|_| Problem::bad_parameter("service", "not UTF-8 once decoded"))?
                    .into_owned();
                if service.is_empty() || service.len() > 256 {
                    return Err(Problem::bad_parameter("service", "1 to 256 bytes"));
                }
                Ok(Scope::Service { service })
            }
            _ => Err(Problem::not_found(
                "budgets are at /api/v1/budgets/tenant or /api/v1/budgets/services/{service}",
            )),
        }
    }
}

/// The body of a `PUT`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetBody {
    /// USD per calendar month (UTC).
    pub monthly_usd: f64,
}

impl BudgetBody {
    /// Parses and checks a body.
    pub fn parse(body: &[u8]) -> Result<BudgetBody, Problem> {
        let b: BudgetBody = serde_json::from_slice(body).map_err(|e| {
            Problem::bad_parameter(
                "monthly_usd",
                format!("the body must be {{\"monthly_usd\": <number>}}: {e}"),
            )
        })?;
        if !b.monthly_usd.is_finite() || b.monthly_usd < 0.0 || b.monthly_usd > 1e12 {
            return Err(Problem::bad_parameter(
                "monthly_usd",
                "a number from 0 to 1e12",
            ));
        }
        Ok(b)
    }
}

/// A budget and this month's spend against it.
#[derive(Debug, Clone, Serialize)]
pub struct BudgetUse {
    /// What it covers.
    #[serde(flatten)]
    pub scope: Scope,
    /// USD per month.
    pub monthly_usd: f64,
    /// The month, `YYYY-MM`.
    pub month: String,
    /// Spent this month, USD.
    pub spent_usd: f64,
    /// `monthly_usd - spent_usd`, never below 0.
    pub remaining_usd: f64,
    /// `spent_usd / monthly_usd`; `null` for a zero budget.
    pub used_fraction: Option<f64>,
    /// Whether the spend is above the budget.
    pub exceeded: bool,
    /// Who set it.
    pub updated_by: String,
}

/// Every budget of `tenant`, with this month's spend.
pub async fn usage(
    client: &tokio_postgres::Client,
    tenant: &str,
    now: SystemTime,
) -> Result<Vec<BudgetUse>, tokio_postgres::Error> {
    let budgets = client
        .query(
            "SELECT scope, service, monthly_usd, updated_by FROM budgets WHERE tenant = $1 ORDER BY scope DESC, service",
            &[&tenant],
        )
        .await?;
    if budgets.is_empty() {
        return Ok(Vec::new());
    }
    let start = month_start(now);
    let spend = crate::analytics::cost_by_service(client, tenant, start, now).await?;
    let by_service: HashMap<String, f64> = spend.into_iter().collect();
    let month = crate::filters::format_time(start)[..7].to_owned();
    Ok(budgets
        .iter()
        .map(|r| {
            let kind: &str = r.get(0);
            let service: String = r.get(1);
            let monthly_usd: f64 = r.get(2);
            let (scope, spent_usd) = if kind == "tenant" {
                (Scope::Tenant, by_service.values().sum())
            } else {
                let spent = by_service.get(&service).copied().unwrap_or(0.0);
                (Scope::Service { service }, spent)
            };
            BudgetUse {
                scope,
                monthly_usd,
                month: month.clone(),
                spent_usd,
                remaining_usd: (monthly_usd - spent_usd).max(0.0),
                used_fraction: (monthly_usd > 0.0).then(|| spent_usd / monthly_usd),
                exceeded: spent_usd > monthly_usd,
                updated_by: r.get(3),
            }
        })
        .collect())
}

/// Sets (or replaces) a budget; returns the amount it replaced (`None`
/// for a new budget), for the audit log.
pub async fn set(
    client: &tokio_postgres::Client,
    tenant: &str,
    scope: &Scope,
    body: &BudgetBody,
    by: &str,
) -> Result<Option<f64>, tokio_postgres::Error> {
    let (kind, service) = scope.columns();
    let row = client
        .query_one(
            "WITH old AS (
                 SELECT monthly_usd FROM budgets WHERE tenant = $1 AND scope = $2 AND service = $3
             )
             INSERT INTO budgets (tenant, scope, service, monthly_usd, updated_at, updated_by)
             VALUES ($1, $2, $3, $4, now(), $5)
             ON CONFLICT (tenant, scope, service)
             DO UPDATE SET monthly_usd = EXCLUDED.monthly_usd, updated_at = now(), updated_by = EXCLUDED.updated_by
             RETURNING (SELECT monthly_usd FROM old)",
            &[&tenant, &kind, &service, &body.monthly_usd, &by],
        )
        .await?;
    Ok(row.get(0))
}

/// Removes a budget; returns its amount, `None` when there was none.
pub async fn remove(
    client: &tokio_postgres::Client,
    tenant: &str,
    scope: &Scope,
) -> Result<Option<f64>, tokio_postgres::Error> {
    let (kind, service) = scope.columns();
    let row = client
        .query_opt(
            "DELETE FROM budgets WHERE tenant = $1 AND scope = $2 AND service = $3 RETURNING monthly_usd",
            &[&tenant, &kind, &service],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_checked() {
        assert_eq!(
            BudgetBody::parse(br#"{"monthly_usd": 250.5}"#)
                .unwrap()
                .monthly_usd,
            250.5
        );
        for bad in [
            &br#"{"monthly_usd": -1}"#[..],
            br#"{"monthly_usd": "100"}"#,
            br#"{"monthly_usd": 1e300}"#,
            br#"{"monthly_usd": 1, "tenant": "other"}"#,
            b"",
            b"[]",
        ] {
            let e = BudgetBody::parse(bad).unwrap_err();
            assert_eq!(e.parameter.as_deref(), Some("monthly_usd"));
        }
    }

    #[test]
    fn scopes_come_from_the_path() {
        assert_eq!(Scope::from_path("tenant", None).unwrap(), Scope::Tenant);
        assert_eq!(
            Scope::from_path("services", Some("support%20bot")).unwrap(),
            Scope::Service {
                service: "support bot".into()
            }
        );
        assert_eq!(
            Scope::from_path("services", Some("%ff"))
                .unwrap_err()
                .status,
            400
        );
        assert_eq!(
            Scope::from_path("teams", Some("x")).unwrap_err().status,
            404
        );
    }
}
