//! An append-only list that is cheap to clone, for output that grows by one object at a time.
//!
//! The page state is a reducer: every message clones the state and changes the copy, while the previous
//! state stays alive (Yew's handle holds it until the next render). A `Vec` of a command's 100,000 objects
//! would be copied on every one of them. A [`Log`] is a length into a buffer shared by all its clones:
//! cloning is O(1), and pushing onto the newest clone appends to the shared buffer in place, which the
//! older clones never see because each reads only its own length. Only pushing onto an *older* clone (a
//! fork) copies its prefix first, so every clone keeps the values it had: the type is immutable from the
//! outside, whatever the sharing inside.

use std::cell::RefCell;
use std::fmt;
use std::ops::Range;
use std::rc::Rc;

/// An append-only list; see the module documentation.
pub struct Log<T> {
    buf: Rc<RefCell<Vec<T>>>,
    len: usize,
}

impl<T> Log<T> {
    /// An empty log.
    pub fn new() -> Log<T> {
        Log { buf: Rc::new(RefCell::new(Vec::new())), len: 0 }
    }

    /// How many values this clone holds.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Calls `f` with this clone's values. (The buffer is borrowed meanwhile: `f` must not push.)
    pub fn with<R>(&self, f: impl FnOnce(&[T]) -> R) -> R {
        f(&self.buf.borrow()[..self.len])
    }
}

impl<T: Clone> Log<T> {
    /// Appends a value: in place on the newest clone, after copying this clone's values on an older one.
    pub fn push(&mut self, value: T) {
        if self.buf.borrow().len() != self.len {
            let own = self.buf.borrow()[..self.len].to_vec();
            self.buf = Rc::new(RefCell::new(own));
        }
        self.buf.borrow_mut().push(value);
        self.len += 1;
    }

    /// The value at `index`, if this clone holds one there.
    pub fn get(&self, index: usize) -> Option<T> {
        self.with(|v| v.get(index).cloned())
    }

    /// The last value.
    pub fn last(&self) -> Option<T> {
        self.len.checked_sub(1).and_then(|i| self.get(i))
    }

    /// The values in `range`, clipped to what this clone holds.
    pub fn slice(&self, range: Range<usize>) -> Vec<T> {
        self.with(|v| {
            let end = range.end.min(v.len());
            v[range.start.min(end)..end].to_vec()
        })
    }

    /// All the values.
    pub fn to_vec(&self) -> Vec<T> {
        self.with(<[T]>::to_vec)
    }
}

impl<T> Default for Log<T> {
    fn default() -> Log<T> {
        Log::new()
    }
}

impl<T> Clone for Log<T> {
    fn clone(&self) -> Log<T> {
        Log { buf: Rc::clone(&self.buf), len: self.len }
    }
}

/// Equal when they hold equal values: O(1) for clones of one log (same buffer, same length).
impl<T: PartialEq> PartialEq for Log<T> {
    fn eq(&self, other: &Log<T>) -> bool {
        self.len == other.len && (Rc::ptr_eq(&self.buf, &other.buf) || self.with(|a| other.with(|b| a == b)))
    }
}

impl<T> fmt::Debug for Log<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Log({} values)", self.len)
    }
}

impl<T: Clone> FromIterator<T> for Log<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Log<T> {
        let v: Vec<T> = iter.into_iter().collect();
        Log { len: v.len(), buf: Rc::new(RefCell::new(v)) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_keep_their_own_values() {
        let mut a: Log<u32> = Log::new();
        a.push(1);
        let old = a.clone();
        a.push(2);
        assert_eq!((old.to_vec(), a.to_vec()), (vec![1], vec![1, 2]));
        assert!(Rc::ptr_eq(&old.buf, &a.buf), "pushing onto the newest clone shares the buffer");
        assert_ne!(old, a);
        assert_eq!(old.clone(), old);
    }

    #[test]
    fn pushing_onto_an_older_clone_forks() {
        let mut a: Log<u32> = [1, 2].into_iter().collect();
        let mut older = a.clone();
        a.push(3);
        older.push(9);
        assert_eq!(a.to_vec(), [1, 2, 3]);
        assert_eq!(older.to_vec(), [1, 2, 9]);
        assert_eq!(older.slice(1..10), [2, 9]);
        assert_eq!((older.get(2), older.get(3), older.last()), (Some(9), None, Some(9)));
    }

    #[test]
    fn equal_values_from_different_buffers_are_equal() {
        let a: Log<u32> = [1, 2].into_iter().collect();
        let mut b = Log::new();
        b.push(1);
        b.push(2);
        assert_eq!(a, b);
        assert_eq!(format!("{a:?}"), "Log(2 values)");
    }
}
