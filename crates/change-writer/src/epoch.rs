//! SOURCE_DATE_EPOCH: the mtime upper bound for reproducible layers.

/// `SOURCE_DATE_EPOCH` holds something other than a non-negative count of seconds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid SOURCE_DATE_EPOCH {value:?}: expected a non-negative integer number of seconds")]
pub struct EpochError {
    /// The value as found.
    pub value: String,
}

/// Parses a SOURCE_DATE_EPOCH value: decimal seconds since the epoch, non-negative.
///
/// # Errors
/// [`EpochError`] for an empty, negative or non-numeric value (the reproducible-builds spec asks
/// for a failure rather than a silently different layer).
pub fn parse_source_date_epoch(value: &str) -> Result<i64, EpochError> {
    match value.parse::<i64>() {
        Ok(v) if v >= 0 && value.bytes().all(|c| c.is_ascii_digit()) => Ok(v),
        _ => Err(EpochError {
            value: value.to_owned(),
        }),
    }
}

/// Reads `SOURCE_DATE_EPOCH` from the environment: `None` when unset or empty (as containerd's
/// `epoch.SourceDateEpoch`), the bound otherwise. Feed it to
/// [`crate::ChangeWriter::mtime_upper_bound`].
///
/// # Errors
/// [`EpochError`] when the variable is set to anything but a non-negative integer.
pub fn source_date_epoch_from_env() -> Result<Option<i64>, EpochError> {
    match std::env::var_os("SOURCE_DATE_EPOCH") {
        None => Ok(None),
        Some(v) if v.is_empty() => Ok(None),
        Some(v) => match v.to_str() {
            Some(s) => parse_source_date_epoch(s).map(Some),
            None => Err(EpochError {
                value: v.to_string_lossy().into_owned(),
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_only_plain_seconds() {
        assert_eq!(parse_source_date_epoch("1642941296"), Ok(1_642_941_296));
        assert_eq!(parse_source_date_epoch("0"), Ok(0));
        for bad in ["", "-1", "+5", "12a", " 1", "1.5"] {
            assert!(parse_source_date_epoch(bad).is_err(), "{bad:?}");
        }
    }
}
