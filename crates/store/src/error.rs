//! Store errors, split into the caller's mistakes and unexpected failures.

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error("the resource changed: expected version {expected}, current version {current}")]
    VersionMismatch { expected: i64, current: i64 },
    #[error("{0}")]
    Invalid(String),
    #[error("database error")]
    Database(#[from] sqlx::Error),
}

impl StoreError {
    /// True for SQLSTATE class 22, a value the database rejects: a NUL character in text,
    /// a date or number out of range.
    pub fn is_bad_value(&self) -> bool {
        match self {
            StoreError::Database(sqlx::Error::Database(db)) => {
                db.code().is_some_and(|code| code.starts_with("22"))
            }
            _ => false,
        }
    }

    /// Returns the database's own message, for reporting a rejected imported row.
    pub fn database_message(&self) -> Option<&str> {
        match self {
            StoreError::Database(sqlx::Error::Database(db)) => Some(db.message()),
            _ => None,
        }
    }

    /// True when the error comes from a unique constraint with the given name.
    pub fn is_unique_violation(error: &sqlx::Error, constraint: &str) -> bool {
        match error {
            sqlx::Error::Database(db) => {
                db.is_unique_violation() && db.constraint() == Some(constraint)
            }
            _ => false,
        }
    }
}
