//! The roles a process can run, each scalable on its own.

use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    Api,
    Hub,
    Relay,
    Bulk,
    Notify,
    Email,
}

impl Role {
    pub const ALL: [Role; 6] = [
        Role::Api,
        Role::Hub,
        Role::Relay,
        Role::Bulk,
        Role::Notify,
        Role::Email,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Api => "api",
            Role::Hub => "hub",
            Role::Relay => "relay",
            Role::Bulk => "bulk",
            Role::Notify => "notify",
            Role::Email => "email",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == value)
            .ok_or_else(|| {
                format!(
                    "unknown role {value:?}; expected one of api, hub, relay, bulk, notify, email, all"
                )
            })
    }
}

/// Parses `api,hub` or `all` into a list without repeats.
pub fn parse_roles(list: &str) -> Result<Vec<Role>, String> {
    let mut roles = Vec::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let parsed = if name == "all" {
            Role::ALL.to_vec()
        } else {
            vec![name.parse()?]
        };
        for role in parsed {
            if !roles.contains(&role) {
                roles.push(role);
            }
        }
    }
    if roles.is_empty() {
        return Err("no roles given; use --roles all or a list such as api,hub".into());
    }
    Ok(roles)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_expands_to_every_role() {
        assert_eq!(parse_roles("all").unwrap(), Role::ALL.to_vec());
    }

    #[test]
    fn list_keeps_order_without_repeats() {
        assert_eq!(
            parse_roles("relay, api,relay").unwrap(),
            vec![Role::Relay, Role::Api]
        );
    }

    #[test]
    fn unknown_and_empty_are_rejected() {
        assert!(parse_roles("api,web")
            .unwrap_err()
            .contains("unknown role \"web\""));
        assert!(parse_roles(" , ").is_err());
    }
}
