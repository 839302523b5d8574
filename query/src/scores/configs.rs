//! Score configs: a tenant's optional definition of a score name (data
//! type, allowed labels with their numbers, numeric range), set by its
//! admins (`PUT`/`DELETE /api/v1/score-configs/{name}`), listed by anyone
//! of the tenant (`GET /api/v1/score-configs`), and checked by every score
//! write of that name ([`super::post`]).
//!
//! What it guarantees: a config is the token's tenant's; a malformed one
//! (labels on a non-categorical name, a duplicate or empty label, min above
//! max, a non-finite bound) is refused with a 400 naming the field, and
//! nothing is stored. Configs are stored directly (like budgets): they are
//! settings, not telemetry.

use crate::auth::Claims;
use crate::problem::Problem;
use crate::routes::State;
use observatory_schemas::scores::{Category, DataType, ScoreConfig, MAX_LABEL_LEN, MAX_NAME_LEN};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use warp::{Rejection, Reply};

/// Most labels one categorical config allows.
const MAX_CATEGORIES: usize = 100;

/// The body of a `PUT`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigBody {
    data_type: DataType,
    #[serde(default)]
    categories: Vec<Category>,
    min: Option<f64>,
    max: Option<f64>,
    #[serde(default)]
    description: String,
}

/// A stored config as the API shows it.
#[derive(Debug, Serialize)]
pub struct ConfigView {
    /// The config.
    #[serde(flatten)]
    pub config: ScoreConfig,
    /// What it measures.
    pub description: String,
    /// Last change, RFC 3339.
    pub updated_at: String,
    /// Who changed it last.
    pub updated_by: String,
}

fn of_row(row: &tokio_postgres::Row) -> ScoreConfig {
    let categories: &str = row.get(2);
    ScoreConfig {
        name: row.get(0),
        data_type: DataType::parse(row.get(1)).unwrap_or(DataType::Numeric),
        categories: serde_json::from_str(categories).unwrap_or_default(),
        min: row.get(3),
        max: row.get(4),
    }
}

const SELECT: &str =
    "SELECT name, data_type, categories::text, min_value, max_value, description, \
    updated_at, updated_by FROM score_configs";

/// The configs of `names` (those that have one).
pub async fn for_names(
    client: &tokio_postgres::Client,
    tenant: &str,
    names: &[&str],
) -> Result<HashMap<String, ScoreConfig>, Problem> {
    let rows = client
        .query(
            &format!("{SELECT} WHERE tenant = $1 AND name = ANY($2)"),
            &[&tenant, &names],
        )
        .await
        .map_err(Problem::postgres)?;
    Ok(rows
        .iter()
        .map(of_row)
        .map(|c| (c.name.clone(), c))
        .collect())
}

fn check(name: &str, body: &ConfigBody) -> Result<(), Problem> {
    if name.trim().is_empty() || name.len() > MAX_NAME_LEN {
        return Err(Problem::bad_parameter(
            "name",
            format!("1 to {MAX_NAME_LEN} bytes, not blank"),
        ));
    }
    if body.data_type != DataType::Categorical && !body.categories.is_empty() {
        return Err(Problem::bad_parameter(
            "categories",
            "only a categorical score has categories",
        ));
    }
    if body.categories.len() > MAX_CATEGORIES {
        return Err(Problem::bad_parameter(
            "categories",
            format!("at most {MAX_CATEGORIES}"),
        ));
    }
    let mut seen = HashSet::new();
    for c in &body.categories {
        if c.label.is_empty() || c.label.len() > MAX_LABEL_LEN || !seen.insert(&c.label) {
            return Err(Problem::bad_parameter(
                "categories",
                format!(
                    "labels are 1 to {MAX_LABEL_LEN} bytes and distinct ({:?})",
                    c.label
                ),
            ));
        }
        if c.value.is_some_and(|v| !v.is_finite()) {
            return Err(Problem::bad_parameter(
                "categories",
                "values are finite numbers",
            ));
        }
    }
    if (body.min.is_some() || body.max.is_some()) && body.data_type != DataType::Numeric {
        return Err(Problem::bad_parameter(
            "min",
            "only a numeric score has a range",
        ));
    }
    for (field, bound) in [("min", body.min), ("max", body.max)] {
        if bound.is_some_and(|v| !v.is_finite()) {
            return Err(Problem::bad_parameter(field, "a finite number"));
        }
    }
    if let (Some(min), Some(max)) = (body.min, body.max) {
        if min > max {
            return Err(Problem::bad_parameter("min", "min is above max"));
        }
    }
    if body.description.len() > 4_096 {
        return Err(Problem::bad_parameter("description", "at most 4096 bytes"));
    }
    Ok(())
}

fn decoded(name: &str) -> Result<String, Problem> {
    Ok(percent_encoding::percent_decode_str(name)
        .decode_utf8()
        .map_err(|_| Problem::bad_parameter("name", "not UTF-8 once decoded"))?
        .into_owned())
}

/// `GET /api/v1/score-configs`.
pub async fn list(claims: Claims, state: State) -> Result<warp::reply::Response, Rejection> {
    let run = async {
        let client = crate::v1::db(&state).await?;
        let rows = client
            .query(
                &format!("{SELECT} WHERE tenant = $1 ORDER BY name"),
                &[&claims.tenant],
            )
            .await
            .map_err(Problem::postgres)?;
        let configs: Vec<ConfigView> = rows
            .iter()
            .map(|row| ConfigView {
                config: of_row(row),
                description: row.get(5),
                updated_at: crate::filters::format_time(row.get(6)),
                updated_by: row.get(7),
            })
            .collect();
        Ok::<_, Problem>(warp::reply::json(
            &serde_json::json!({ "configs": configs }),
        ))
    };
    run.await
        .map(Reply::into_response)
        .map_err(warp::reject::custom)
}

/// `PUT /api/v1/score-configs/{name}` (admin).
pub async fn put(
    name: String,
    claims: Claims,
    body: bytes::Bytes,
    state: State,
) -> Result<warp::reply::Response, Rejection> {
    let run = async {
        let name = decoded(&name)?;
        let body: ConfigBody = serde_json::from_slice(&body)
            .map_err(|e| Problem::bad_parameter("body", e.to_string()))?;
        check(&name, &body)?;
        let categories = serde_json::to_string(&body.categories).unwrap_or_default();
        let client = crate::v1::db(&state).await?;
        client
            .execute(
                "INSERT INTO score_configs (tenant, name, data_type, categories, min_value, max_value,
                     description, updated_at, updated_by)
                 VALUES ($1, $2, $3, $4::text::jsonb, $5, $6, $7, now(), $8)
                 ON CONFLICT (tenant, name) DO UPDATE SET data_type = EXCLUDED.data_type,
                     categories = EXCLUDED.categories, min_value = EXCLUDED.min_value,
                     max_value = EXCLUDED.max_value, description = EXCLUDED.description,
                     updated_at = EXCLUDED.updated_at, updated_by = EXCLUDED.updated_by",
                &[
                    &claims.tenant,
                    &name,
                    &body.data_type.as_str(),
                    &categories,
                    &body.min,
                    &body.max,
                    &body.description,
                    &claims.sub,
                ],
            )
            .await
            .map_err(Problem::postgres)?;
        let config = ScoreConfig {
            name,
            data_type: body.data_type,
            categories: body.categories,
            min: body.min,
            max: body.max,
        };
        Ok::<_, Problem>(warp::reply::json(&config))
    };
    run.await
        .map(Reply::into_response)
        .map_err(warp::reject::custom)
}

/// `DELETE /api/v1/score-configs/{name}` (admin): 204, or 404.
pub async fn delete(
    name: String,
    claims: Claims,
    state: State,
) -> Result<warp::reply::Response, Rejection> {
    let run = async {
        let name = decoded(&name)?;
        let client = crate::v1::db(&state).await?;
        let n = client
            .execute(
                "DELETE FROM score_configs WHERE tenant = $1 AND name = $2",
                &[&claims.tenant, &name],
            )
            .await
            .map_err(Problem::postgres)?;
        if n == 0 {
            return Err(Problem::not_found(
                "no score config with this name for your tenant",
            ));
        }
        Ok(warp::http::StatusCode::NO_CONTENT)
    };
    run.await
        .map(Reply::into_response)
        .map_err(warp::reject::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(name: &str, body: &str) -> Option<String> {
        let body: ConfigBody = serde_json::from_str(body).unwrap();
        check(name, &body).err().and_then(|p| p.parameter)
    }

    #[test]
    fn malformed_configs_name_their_field() {
        assert_eq!(
            field("q", r#"{"data_type":"numeric","min":0,"max":1}"#),
            None
        );
        assert_eq!(
            field(
                "q",
                r#"{"data_type":"categorical","categories":[{"label":"good","value":1},{"label":"bad","value":0}]}"#
            ),
            None
        );
        assert_eq!(
            field(" ", r#"{"data_type":"numeric"}"#).as_deref(),
            Some("name")
        );
        assert_eq!(
            field("q", r#"{"data_type":"numeric","min":2,"max":1}"#).as_deref(),
            Some("min")
        );
        assert_eq!(
            field(
                "q",
                r#"{"data_type":"numeric","categories":[{"label":"a"}]}"#
            )
            .as_deref(),
            Some("categories")
        );
        assert_eq!(
            field(
                "q",
                r#"{"data_type":"categorical","categories":[{"label":"a"},{"label":"a"}]}"#
            )
            .as_deref(),
            Some("categories")
        );
        assert_eq!(
            field("q", r#"{"data_type":"boolean","max":1}"#).as_deref(),
            Some("min")
        );
    }
}
