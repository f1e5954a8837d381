//! `POST /models`: the LEGO model endpoint of the load-balancer seed, with FastAPI-style
//! validation errors.

use serde_json::{json, Map, Value};

/// Validates a model; on failure returns FastAPI's `detail` list.
pub fn validate(body: &[u8]) -> Result<Value, Value> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        json!([{ "loc": ["body"], "msg": format!("invalid JSON: {e}"), "type": "json_invalid" }])
    })?;
    let Some(fields) = value.as_object() else {
        return Err(
            json!([{ "loc": ["body"], "msg": "expected a JSON object", "type": "model_type" }]),
        );
    };
    let mut errors = Vec::new();
    let mut check = |name: &str, ok: fn(&Value) -> bool, msg: &str| match fields.get(name) {
        None => errors
            .push(json!({ "loc": ["body", name], "msg": "field required", "type": "missing" })),
        Some(v) if !ok(v) => {
            errors.push(json!({ "loc": ["body", name], "msg": msg, "type": "value_error" }))
        }
        Some(_) => {}
    };
    check(
        "name",
        |v| {
            v.as_str()
                .is_some_and(|s| !s.trim().is_empty() && s.len() <= 100)
        },
        "must be a non-empty string of at most 100 characters",
    );
    check(
        "pieces",
        |v| v.as_u64().is_some_and(|n| (1..=100_000).contains(&n)),
        "must be a whole number from 1 to 100000",
    );
    check(
        "theme",
        |v| v.as_str().is_some_and(|s| !s.trim().is_empty()),
        "must be a non-empty string",
    );
    check(
        "difficulty",
        |v| matches!(v.as_str(), Some("easy" | "medium" | "hard")),
        "must be one of easy, medium, hard",
    );
    check(
        "price_us",
        |v| v.as_f64().is_some_and(|p| p >= 0.0),
        "must be a number >= 0",
    );
    check(
        "year",
        |v| v.as_u64().is_some_and(|y| (1949..=2100).contains(&y)),
        "must be a year from 1949 to 2100",
    );
    if errors.is_empty() {
        let model: Map<String, Value> = fields.clone();
        Ok(Value::Object(model))
    } else {
        Err(Value::Array(errors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_model_is_echoed() {
        let body = br#"{"name":"Starship","pieces":1599,"theme":"Sci-Fi","difficulty":"easy","price_us":199.99,"year":2001}"#;
        assert_eq!(validate(body).unwrap()["pieces"], 1599);
    }

    #[test]
    fn every_bad_field_is_reported() {
        let body = br#"{"name":"","pieces":0,"difficulty":"extreme","price_us":-1,"year":1900}"#;
        let errors = validate(body).unwrap_err();
        let fields: Vec<&str> = errors
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["loc"][1].as_str().unwrap())
            .collect();
        assert_eq!(
            fields,
            ["name", "pieces", "theme", "difficulty", "price_us", "year"]
        );
    }

    #[test]
    fn broken_json_is_reported() {
        assert_eq!(validate(b"{").unwrap_err()[0]["type"], "json_invalid");
    }
}
