//! Authentication primitives shared by the API, the hub and the workers: password hashing,
//! signing keys, access tokens, refresh and invitation tokens, and the role policy.

pub mod keys;
pub mod oidc;
pub mod opaque;
pub mod password;
pub mod policy;
pub mod token;
pub mod totp;
mod verified_cache;

pub use keys::{KeyError, KeySet};
pub use opaque::{
    generate_api_token, generate_invitation_token, generate_oidc_link_token,
    generate_password_reset_token, generate_refresh_token, generate_verification_token,
    hash_opaque_token, NewOpaqueToken, API_TOKEN_PREFIX,
};
pub use password::{
    check_new_password, hash_password, needs_rehash, verify_password, PasswordError,
};
pub use policy::{Action, ProjectAction, ProjectRole, Role, TokenScope};
pub use token::{AccessClaims, TokenError, TokenIssuer};
