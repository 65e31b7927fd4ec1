//! The per-connection data store.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

type Value = Arc<dyn Any + Send + Sync>;

/// Data the application keeps with one connection for its whole life: values by type
/// (`insert` / `get`), and values by string key for parity with Go's `conn.Data()`
/// (`set` / `value`). Shared by every clone of the connection handle; cheap to read.
///
/// ```
/// # fn demo(data: &etp_driver::ConnData) {
/// #[derive(Clone)]
/// struct User { name: String }
///
/// data.insert(User { name: "ana".into() });
/// data.set("room", "lobby".to_string());
/// assert_eq!(data.get::<User>().unwrap().name, "ana");
/// assert_eq!(data.value::<String>("room").as_deref(), Some("lobby"));
/// # }
/// # demo(&etp_driver::ConnData::default());
/// ```
#[derive(Default)]
pub struct ConnData {
    by_type: Mutex<HashMap<TypeId, Value>>,
    by_key: Mutex<HashMap<String, Value>>,
}

/// A poisoned lock only means another thread panicked while holding it; the maps
/// themselves are always consistent (every operation is a single insert/remove).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ConnData {
    /// Stores `value` under its type, replacing any previous value of that type.
    pub fn insert<T: Send + Sync + 'static>(&self, value: T) {
        lock(&self.by_type).insert(TypeId::of::<T>(), Arc::new(value));
    }

    /// A clone of the value of type `T`, if one was inserted.
    pub fn get<T: Clone + Send + Sync + 'static>(&self) -> Option<T> {
        let value = lock(&self.by_type).get(&TypeId::of::<T>())?.clone();
        value.downcast_ref::<T>().cloned()
    }

    /// Removes the value of type `T`; true if there was one.
    pub fn remove<T: Send + Sync + 'static>(&self) -> bool {
        lock(&self.by_type).remove(&TypeId::of::<T>()).is_some()
    }

    /// Stores `value` under `key` (Go's `Data().Set`), replacing any previous value.
    pub fn set<V: Send + Sync + 'static>(&self, key: impl Into<String>, value: V) {
        lock(&self.by_key).insert(key.into(), Arc::new(value));
    }

    /// A clone of the value under `key` if it is a `V` (Go's `Data().Get` plus a type
    /// assertion).
    pub fn value<V: Clone + Send + Sync + 'static>(&self, key: &str) -> Option<V> {
        let value = lock(&self.by_key).get(key)?.clone();
        value.downcast_ref::<V>().cloned()
    }

    /// Removes the value under `key`; true if there was one.
    pub fn remove_value(&self, key: &str) -> bool {
        lock(&self.by_key).remove(key).is_some()
    }

    /// The keys that have values, in no particular order.
    pub fn keys(&self) -> Vec<String> {
        lock(&self.by_key).keys().cloned().collect()
    }
}

impl fmt::Debug for ConnData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnData")
            .field("typed_values", &lock(&self.by_type).len())
            .field("keys", &self.keys())
            .finish()
    }
}
