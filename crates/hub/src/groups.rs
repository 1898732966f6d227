//! Group name to member connections, for fan-out of relay messages.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;

use crate::connection::{Connection, ConnectionKey};

#[derive(Default)]
pub(crate) struct GroupRegistry {
    groups: RwLock<HashMap<String, HashMap<ConnectionKey, Arc<Connection>>>>,
}

impl GroupRegistry {
    pub fn add(&self, group: &str, connection: &Arc<Connection>) {
        self.groups
            .write()
            .entry(group.to_owned())
            .or_default()
            .insert(connection.key, Arc::clone(connection));
    }

    /// Removes a member and drops the group when it becomes empty.
    pub fn remove(&self, group: &str, key: ConnectionKey) {
        let mut groups = self.groups.write();
        if let Some(members) = groups.get_mut(group) {
            members.remove(&key);
            if members.is_empty() {
                groups.remove(group);
            }
        }
    }

    /// Calls `visit` for every member of `group` while holding the read lock, so `visit`
    /// must not block or touch the registry.
    pub fn for_each_member(&self, group: &str, mut visit: impl FnMut(&Arc<Connection>)) {
        let groups = self.groups.read();
        if let Some(members) = groups.get(group) {
            members.values().for_each(&mut visit);
        }
    }

    /// Names of the groups with at least one member.
    pub fn names(&self) -> Vec<String> {
        self.groups.read().keys().cloned().collect()
    }

    #[cfg(test)]
    pub fn group_count(&self) -> usize {
        self.groups.read().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Principal;
    use uuid::Uuid;

    fn connection(key: ConnectionKey) -> Arc<Connection> {
        let principal = Principal::new(Uuid::nil(), Uuid::nil());
        let (connection, _receiver) = Connection::new(key, format!("c{key}"), principal, 4);
        Arc::new(connection)
    }

    fn member_keys(registry: &GroupRegistry, group: &str) -> Vec<ConnectionKey> {
        let mut keys = Vec::new();
        registry.for_each_member(group, |member| keys.push(member.key));
        keys.sort_unstable();
        keys
    }

    #[test]
    fn add_and_remove_members() {
        let registry = GroupRegistry::default();
        let (first, second) = (connection(1), connection(2));

        registry.add("g", &first);
        registry.add("g", &second);
        registry.add("g", &first);

        assert_eq!(member_keys(&registry, "g"), [1, 2]);

        registry.remove("g", 1);
        assert_eq!(member_keys(&registry, "g"), [2]);

        registry.remove("g", 2);
        assert!(member_keys(&registry, "g").is_empty());
        assert_eq!(registry.group_count(), 0);
    }

    #[test]
    fn remove_unknown_member_is_noop() {
        let registry = GroupRegistry::default();

        registry.remove("missing", 7);

        assert_eq!(registry.group_count(), 0);
    }
}
