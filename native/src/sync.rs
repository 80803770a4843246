//! Locking that survives a panic: the registries of `ffi` and the circuit caches of `store` are
//! shared by every C call of the process, and a C caller has no way to recover a poisoned lock.

use std::sync::LockResult;

/// Locks a registry or cache even if a panic poisoned it: every one of them is a map or slot of
/// `Arc`s replaced in one assignment, so it is consistent whenever the lock is free, and a
/// poisoned lock must not fail every later call of the process.
pub fn relock<T>(r: LockResult<T>) -> T {
    r.unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn a_poisoned_registry_still_locks() {
        let m = Arc::new(Mutex::new(vec![1]));
        let m2 = m.clone();
        let _ = std::thread::spawn(move || {
            let _g = m2.lock();
            panic!("poison it");
        })
        .join();
        assert!(m.is_poisoned());
        relock(m.lock()).push(2);
        assert_eq!(*relock(m.lock()), vec![1, 2]);
    }
}
