//! Opaque cursors of the keyset-paginated lists (scores, sessions, users):
//! the sort value and key of the last row of a page, as base64url of a
//! JSON array of strings. A cursor is only ever parsed back into typed
//! values and bound; its text never reaches SQL.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// A cursor holding `parts`.
pub fn encode(parts: &[String]) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(parts).unwrap_or_default())
}

/// The `n` parts of a cursor, or why it is not one of ours.
pub fn decode(text: &str, n: usize) -> Result<Vec<String>, String> {
    let bytes = URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| "not a cursor this API gave".to_owned())?;
    let parts: Vec<String> =
        serde_json::from_slice(&bytes).map_err(|_| "not a cursor this API gave".to_owned())?;
    if parts.len() != n {
        return Err("a cursor of another list or sort".into());
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_others() {
        let parts = vec!["12.5".to_owned(), "sess \"1\"\n".to_owned()];
        assert_eq!(decode(&encode(&parts), 2).unwrap(), parts);
        assert!(decode(&encode(&parts), 3).is_err());
        assert!(decode("%%%", 2).is_err());
        assert!(decode("e30", 2).is_err(), "{{}} is not a list");
    }
}
