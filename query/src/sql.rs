//! The one way request values reach PostgreSQL: [`Sql::bind`] pushes a
//! value and returns its `$n` placeholder; [`Sql::push`] appends text, and
//! every caller passes it fixed fragments only (column names chosen from
//! closed enums, operators, keywords), never text from a request.

use tokio_postgres::types::ToSql;

/// SQL text with its bound parameters, numbered as pushed.
#[derive(Default)]
pub struct Sql {
    /// The text.
    pub text: String,
    /// The parameters.
    pub params: Vec<Box<dyn ToSql + Sync + Send>>,
}

impl Sql {
    /// Binds `value`; returns its placeholder.
    pub fn bind(&mut self, value: impl ToSql + Sync + Send + 'static) -> String {
        self.params.push(Box::new(value));
        format!("${}", self.params.len())
    }

    /// Appends fixed SQL text.
    pub fn push(&mut self, fragment: &str) {
        self.text.push_str(fragment);
    }

    /// The parameters, for `query`.
    pub fn refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect()
    }
}
