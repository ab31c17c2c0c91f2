//! `${ENV_VAR}` references in config string values.
//!
//! Resolution happens on the parsed TOML tree, not on the raw text, so a variable's value can never
//! inject TOML syntax (quotes, newlines) into the file. `$$` stands for a literal `$`.

use super::ConfigError;

/// Replaces every `${NAME}` inside string values of `table` (recursively) with `lookup(NAME)`.
pub fn resolve_env(
    table: &mut toml::Table,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    for (key, value) in table.iter_mut() {
        resolve_value(value, key, lookup)?;
    }
    Ok(())
}

fn resolve_value(
    value: &mut toml::Value,
    path: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    match value {
        toml::Value::String(s) if s.contains('$') => {
            *s = substitute(s, path, lookup)?;
        }
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                resolve_value(item, &format!("{path}[{i}]"), lookup)?;
            }
        }
        toml::Value::Table(t) => {
            for (key, item) in t.iter_mut() {
                resolve_value(item, &format!("{path}.{key}"), lookup)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Substitutes the references in one string. `field` names it in errors.
pub(crate) fn substitute(
    input: &str,
    field: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body.find('}').ok_or_else(|| ConfigError::BadEnvReference {
                field: field.to_owned(),
                message: "unterminated `${` (write `$$` for a literal `$`)".to_owned(),
                location: None,
            })?;
            let name = &body[..end];
            if name.is_empty()
                || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                || name.starts_with(|c: char| c.is_ascii_digit())
            {
                return Err(ConfigError::BadEnvReference {
                    field: field.to_owned(),
                    message: format!(
                        "`${{{name}}}` is not a valid environment variable name (letters, digits and `_`)"
                    ),
                    location: None,
                });
            }
            let value = lookup(name).ok_or_else(|| ConfigError::MissingEnv {
                field: field.to_owned(),
                var: name.to_owned(),
                location: None,
            })?;
            out.push_str(&value);
            rest = &body[end + 1..];
        } else {
            // A lone `$` not followed by `{` or `$` is kept as written: URLs and regexes use it.
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("backend".into()),
            "PORT" => Some("8000".into()),
            "QUOTE" => Some("a\"b\nc".into()),
            _ => None,
        }
    }

    #[test]
    fn references_are_replaced() {
        let s = substitute("http://${HOST}:${PORT}/mcp", "f", &env).unwrap();
        assert_eq!(s, "http://backend:8000/mcp");
    }

    #[test]
    fn double_dollar_is_a_literal_dollar() {
        assert_eq!(substitute("a$${HOST}", "f", &env).unwrap(), "a${HOST}");
    }

    #[test]
    fn missing_variable_names_field_and_variable() {
        let err = substitute("${NOPE}", "upstream[0].url", &env)
            .unwrap_err()
            .to_string();
        assert!(err.contains("upstream[0].url"), "{err}");
        assert!(err.contains("NOPE"), "{err}");
    }

    #[test]
    fn unterminated_reference_is_rejected() {
        let err = substitute("x${HOST", "f", &env).unwrap_err().to_string();
        assert!(err.contains("unterminated"), "{err}");
    }

    #[test]
    fn values_with_toml_syntax_are_not_reparsed() {
        let mut t: toml::Table = toml::from_str("a = \"${QUOTE}\"").unwrap();
        resolve_env(&mut t, &env).unwrap();
        assert_eq!(t["a"].as_str(), Some("a\"b\nc"));
    }

    #[test]
    fn nested_tables_and_arrays_report_their_path() {
        let mut t: toml::Table =
            toml::from_str("[[upstream]]\nname = \"a\"\nurl = \"${MISSING}\"").unwrap();
        let err = resolve_env(&mut t, &env).unwrap_err().to_string();
        assert!(err.starts_with("upstream[0].url:"), "{err}");
    }

    proptest! {
        #[test]
        fn strings_without_dollar_are_unchanged(s in "[^$]*") {
            prop_assert_eq!(substitute(&s, "f", &env).unwrap(), s);
        }

        #[test]
        fn substitution_never_panics(s in ".*") {
            let _ = substitute(&s, "f", &env);
        }
    }
}
