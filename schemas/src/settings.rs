//! Parsing of the list-valued settings every binary shares
//! (`KAFKA_PRODUCER_CONFIG`, `INGEST_API_KEYS`, `INGEST_TENANT_QUOTAS`, ...):
//! pure text in, pairs out, one error message for all of them.

/// Parses `a=1,b=2`; blanks around items and empty items are skipped, a
/// key must not be empty.
pub fn parse_pairs(text: &str) -> Result<Vec<(String, String)>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.trim().to_owned())),
            _ => Err(format!("{p:?}: expected comma-separated key=value pairs")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs() {
        assert_eq!(
            parse_pairs(" a=1, ,b = x=y ").unwrap(),
            vec![("a".into(), "1".into()), ("b".into(), "x=y".into())]
        );
        assert!(parse_pairs("a").is_err());
        assert!(parse_pairs("=1").is_err());
        assert!(parse_pairs("").unwrap().is_empty());
    }
}
