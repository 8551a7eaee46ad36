//! A reader for the small TOML subset that `scenes.toml` uses: comments, `[a.b]` table
//! headers, and `key = value` lines whose value is a basic string, an integer, a float
//! or a boolean. (No TOML crate is vendored in this workspace; anything outside the
//! subset is rejected with the line number rather than misread.)

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    String(String),
    Integer(i64),
    Float(f64),
    Boolean(bool),
}

/// Tables by dotted header name ("" for keys before the first header), keys in order.
pub type Document = BTreeMap<String, BTreeMap<String, Value>>;

/// Parses `text`; errors carry the 1-based line number.
pub fn parse(text: &str) -> Result<Document, (usize, String)> {
    let mut document = Document::new();
    let mut table = String::new();
    document.insert(table.clone(), BTreeMap::new());
    for (index, raw) in text.lines().enumerate() {
        let number = index + 1;
        let line = strip_comment(raw).trim();
        if line.is_empty() {
            continue;
        }
        if let Some(header) = line.strip_prefix('[') {
            let name = header
                .strip_suffix(']')
                .ok_or((number, "a table header must end with `]`".to_string()))?
                .trim();
            if name.is_empty() || name.starts_with('[') {
                return Err((number, "only [table] headers are supported".into()));
            }
            if document.contains_key(name) {
                return Err((number, format!("table [{name}] appears twice")));
            }
            table = name.to_string();
            document.insert(table.clone(), BTreeMap::new());
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .ok_or((number, "expected `key = value`".to_string()))?;
        let key = key.trim();
        if key.is_empty()
            || !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err((number, format!("invalid key `{key}`")));
        }
        let value = parse_value(value.trim()).map_err(|m| (number, m))?;
        let entries = document.entry(table.clone()).or_default();
        if entries.insert(key.to_string(), value).is_some() {
            return Err((number, format!("key `{key}` appears twice in [{table}]")));
        }
    }
    Ok(document)
}

fn strip_comment(line: &str) -> &str {
    let mut in_string = false;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        match c {
            '\\' if in_string => escaped = !escaped,
            '"' if !escaped => in_string = !in_string,
            '#' if !in_string => return &line[..i],
            _ => escaped = false,
        }
        if c != '\\' {
            escaped = false;
        }
    }
    line
}

fn parse_value(text: &str) -> Result<Value, String> {
    if let Some(inner) = text.strip_prefix('"') {
        let inner = inner
            .strip_suffix('"')
            .ok_or_else(|| "a string must end with `\"`".to_string())?;
        let mut out = String::new();
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some('"') => out.push('"'),
                    Some('\\') => out.push('\\'),
                    other => {
                        return Err(format!("unsupported escape `\\{}`", other.unwrap_or(' ')))
                    }
                },
                '"' => return Err("unescaped `\"` inside a string".into()),
                c => out.push(c),
            }
        }
        return Ok(Value::String(out));
    }
    match text {
        "true" => return Ok(Value::Boolean(true)),
        "false" => return Ok(Value::Boolean(false)),
        _ => {}
    }
    let digits = text.replace('_', "");
    if let Ok(integer) = digits.parse::<i64>() {
        return Ok(Value::Integer(integer));
    }
    if let Ok(float) = digits.parse::<f64>() {
        if float.is_finite() {
            return Ok(Value::Float(float));
        }
    }
    Err(format!(
        "unsupported value `{text}` (use a \"string\", number or true/false)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_tables_strings_numbers_and_booleans() {
        let text = "# scenes\ntop = 1\n[scenes.poster]\nprompt = \"a \\\"b\\\" # not a comment\" # comment\nscale = 0.8\nsteps = 30\non = true\n";
        let document = parse(text).unwrap_or_default();
        assert_eq!(document[""]["top"], Value::Integer(1));
        let poster = &document["scenes.poster"];
        assert_eq!(
            poster["prompt"],
            Value::String("a \"b\" # not a comment".into())
        );
        assert_eq!(poster["scale"], Value::Float(0.8));
        assert_eq!(poster["steps"], Value::Integer(30));
        assert_eq!(poster["on"], Value::Boolean(true));
    }

    #[test]
    fn rejects_what_it_does_not_understand_with_the_line() {
        assert_eq!(parse("a = [1, 2]").err().map(|e| e.0), Some(1));
        assert_eq!(parse("[x]\n[x]").err().map(|e| e.0), Some(2));
        assert_eq!(parse("\n\nkey").err().map(|e| e.0), Some(3));
        assert!(parse("s = \"open").is_err());
        assert!(parse("[[array]]").is_err());
    }
}
