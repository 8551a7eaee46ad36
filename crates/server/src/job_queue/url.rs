//! Database URLs as logs and errors show them.

/// The URL without its password.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.split_once('@') {
        Some((user, host)) => {
            let user = user.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}@{host}")
        }
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_taken_out_of_a_database_url() {
        assert_eq!(
            redact_url("postgres://huatu:secret@db.example:5432/huatu"),
            "postgres://huatu@db.example:5432/huatu"
        );
        assert_eq!(
            redact_url("postgres://huatu@127.0.0.1:5432/huatu"),
            "postgres://huatu@127.0.0.1:5432/huatu"
        );
    }
}
