//! Application state handed to job bodies: a typed map ([`StateMap`]) from a type to one shared
//! value of it (a database pool, an HTTP client, the runtime's `Client`), and [`StateType`],
//! the name of a type a job declares it needs, so a worker can refuse to start without it.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// A type of application state, by id and name. Jobs list the ones they read
/// (`Job::required_state`), and a worker refuses to start when one is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StateType {
    id: TypeId,
    name: &'static str,
}

impl StateType {
    /// The state type `T`.
    pub fn of<T: Send + Sync + 'static>() -> Self {
        Self {
            id: TypeId::of::<T>(),
            name: std::any::type_name::<T>(),
        }
    }

    /// The type's name, as `std::any::type_name` gives it.
    pub fn name(&self) -> &'static str {
        self.name
    }
}

#[derive(Clone)]
struct Entry {
    value: Arc<dyn Any + Send + Sync>,
    name: &'static str,
}

/// One value per type, shared by every job of a worker. Cloning is cheap (the values are
/// shared); a worker hands each job the same `Arc<StateMap>`.
#[derive(Clone, Default)]
pub struct StateMap {
    map: HashMap<TypeId, Entry>,
}

impl StateMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores `value` as the state of type `T`, replacing an earlier one.
    pub fn insert<T: Send + Sync + 'static>(&mut self, value: T) {
        self.insert_arc(Arc::new(value));
    }

    /// Stores an already shared value as the state of type `T`.
    pub fn insert_arc<T: Send + Sync + 'static>(&mut self, value: Arc<T>) {
        self.map.insert(
            TypeId::of::<T>(),
            Entry {
                value,
                name: std::any::type_name::<T>(),
            },
        );
    }

    /// The state of type `T`, if there is one.
    pub fn get<T: Send + Sync + 'static>(&self) -> Option<&T> {
        self.map
            .get(&TypeId::of::<T>())
            .and_then(|e| e.value.downcast_ref::<T>())
    }

    /// The state of type `T` as a shared handle, if there is one.
    pub fn get_arc<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        self.map
            .get(&TypeId::of::<T>())
            .and_then(|e| e.value.clone().downcast::<T>().ok())
    }

    /// Whether there is a state of type `T`.
    pub fn contains<T: Send + Sync + 'static>(&self) -> bool {
        self.map.contains_key(&TypeId::of::<T>())
    }

    /// Whether there is a state of type `ty`.
    pub fn contains_type(&self, ty: &StateType) -> bool {
        self.map.contains_key(&ty.id)
    }

    /// The names of the stored types, sorted.
    pub fn type_names(&self) -> Vec<&'static str> {
        let mut names: Vec<_> = self.map.values().map(|e| e.name).collect();
        names.sort_unstable();
        names
    }

    /// How many types are stored.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

impl fmt::Debug for StateMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.type_names()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Pool(u32);

    #[test]
    fn values_are_found_by_type_and_named() {
        let mut m = StateMap::new();
        assert!(m.get::<Pool>().is_none());
        m.insert(Pool(1));
        m.insert(String::from("x"));
        m.insert(Pool(2));
        assert_eq!(m.get::<Pool>(), Some(&Pool(2)));
        assert_eq!(
            m.get_arc::<String>().as_deref().map(String::as_str),
            Some("x")
        );
        assert!(m.contains_type(&StateType::of::<Pool>()));
        assert!(!m.contains_type(&StateType::of::<u8>()));
        assert_eq!(m.len(), 2);
        assert!(StateType::of::<Pool>().name().ends_with("Pool"));
        assert!(format!("{m:?}").contains("Pool"));
    }
}
