//! How the binary reports errors: the whole cause chain, for a failed command (one cause
//! a line) and for a skipped item of many (one line).

/// The error and its causes on one line, `error: cause: cause`.
pub fn one_line(error: &(dyn std::error::Error + 'static)) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        line.push_str(": ");
        line.push_str(&cause.to_string());
        source = cause.source();
    }
    line
}

/// Prints a failed command's error to stderr, then each cause on its own line.
pub fn print_chain(error: &anyhow::Error) {
    eprintln!("error: {error}");
    for cause in error.chain().skip(1) {
        eprintln!("  caused by: {cause}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_joins_every_cause() {
        let error = anyhow::anyhow!("disk full")
            .context("cannot write out.png")
            .context("saving image 2");
        assert_eq!(
            one_line(error.as_ref()),
            "saving image 2: cannot write out.png: disk full"
        );
    }
}
