//! Authentication primitives shared by the API, the hub and the workers: password hashing
//! and access tokens.

pub mod password;
pub mod token;

pub use password::{hash_password, verify_password, PasswordError};
pub use token::{AccessClaims, TokenError, TokenIssuer};
