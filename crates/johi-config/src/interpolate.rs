//! `${VAR}` references in string values, so secrets never live in the file.
//!
//! `${VAR}` must be set; `${VAR:-default}` falls back; `$${` writes a literal `${`.
//! Only string *values* are interpolated (not keys, not the raw text), so an environment
//! value can never change the file's structure.

use serde_yaml_ng::Value;

use crate::ConfigErrors;

/// Resolves references in every string value of `root`, collecting all failures.
pub fn interpolate(
    root: &mut Value,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigErrors> {
    let mut errors = Vec::new();
    walk(root, String::new(), env, &mut errors);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ConfigErrors(errors))
    }
}

fn walk(
    value: &mut Value,
    path: String,
    env: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<String>,
) {
    match value {
        Value::String(s) if s.contains('$') => match expand(s, env) {
            Ok(expanded) => *s = expanded,
            Err(e) => errors.push(format!("{}: {e}", display_path(&path))),
        },
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                walk(item, format!("{path}[{i}]"), env, errors);
            }
        }
        Value::Mapping(map) => {
            for (key, item) in map.iter_mut() {
                let key = key
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| "?".into());
                let child = if path.is_empty() {
                    key
                } else {
                    format!("{path}.{key}")
                };
                walk(item, child, env, errors);
            }
        }
        Value::Tagged(tagged) => walk(&mut tagged.value, path, env, errors),
        _ => {}
    }
}

fn display_path(path: &str) -> &str {
    if path.is_empty() {
        "."
    } else {
        path
    }
}

/// Expands one string.
pub fn expand(input: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos..];
        if let Some(stripped) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = stripped;
        } else if let Some(body) = after.strip_prefix("${") {
            let end = body
                .find('}')
                .ok_or_else(|| "unterminated '${' reference".to_owned())?;
            let reference = &body[..end];
            let (name, default) = match reference.split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (reference, None),
            };
            let valid =
                !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !valid {
                return Err(format!(
                    "'${{{reference}}}' is not a valid variable reference"
                ));
            }
            match (env(name), default) {
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => {
                    return Err(format!("environment variable {name} is not set"));
                }
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "KEY").then(|| "sk-test".to_owned())
    }

    #[test]
    fn expands_defaults_and_escapes() {
        assert_eq!(expand("Bearer ${KEY}", &env).unwrap(), "Bearer sk-test");
        assert_eq!(expand("${MISSING:-fallback}", &env).unwrap(), "fallback");
        assert_eq!(expand("${MISSING:-}", &env).unwrap(), "");
        assert_eq!(
            expand("cost $5 and $${KEY}", &env).unwrap(),
            "cost $5 and ${KEY}"
        );
        assert_eq!(
            expand("${MISSING}", &env).unwrap_err(),
            "environment variable MISSING is not set"
        );
        assert!(expand("${KEY", &env).is_err());
        assert!(expand("${A-B}", &env).is_err());
    }

    #[test]
    fn errors_carry_the_path() {
        let mut v: Value = serde_yaml_ng::from_str(
            "providers:\n  p:\n    api_key: ${NOPE}\n    list: [\"${NOPE2}\"]\n",
        )
        .unwrap();
        let err = interpolate(&mut v, &env).unwrap_err();
        assert_eq!(
            err.0,
            vec![
                "providers.p.api_key: environment variable NOPE is not set",
                "providers.p.list[0]: environment variable NOPE2 is not set"
            ]
        );
    }
}
