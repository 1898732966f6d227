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
