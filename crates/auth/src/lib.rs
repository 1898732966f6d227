//! Authentication primitives shared by the API, the hub and the workers: password hashing,
//! signing keys and access tokens.

pub mod keys;
pub mod password;
pub mod token;

pub use keys::{KeyError, KeySet};
pub use password::{hash_password, verify_password, PasswordError};
pub use token::{AccessClaims, TokenError, TokenIssuer};
