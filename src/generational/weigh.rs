//! Measuring entries for `allocated_memory`: the inline size of an entry plus what its key and
//! value own on the heap.

use std::{collections::HashMap, sync::Arc};

/// Bytes a value owns on the heap, beyond its inline size (`size_of::<Self>()`).
///
/// Implemented for strings, vectors, boxes and primitives; implement it for your own value types,
/// or give the builder a `weigher` closure. Used by
/// [`GenerationalStoreBuilder::weigh_heap`](crate::GenerationalStoreBuilder::weigh_heap).
///
/// ```
/// use strata::HeapSize;
/// assert_eq!(String::with_capacity(100).heap_size(), 100);
/// assert_eq!(7u64.heap_size(), 0);
/// ```
pub trait HeapSize {
    /// Heap bytes owned by this value.
    fn heap_size(&self) -> usize;
}

macro_rules! no_heap {
    ($($t:ty),*) => {$(
        impl HeapSize for $t {
            #[inline]
            fn heap_size(&self) -> usize { 0 }
        }
    )*};
}
no_heap!(
    u8,
    u16,
    u32,
    u64,
    u128,
    usize,
    i8,
    i16,
    i32,
    i64,
    i128,
    isize,
    f32,
    f64,
    bool,
    char,
    ()
);

impl HeapSize for String {
    fn heap_size(&self) -> usize {
        self.capacity()
    }
}

impl<T: HeapSize> HeapSize for Vec<T> {
    fn heap_size(&self) -> usize {
        self.capacity() * std::mem::size_of::<T>() + self.iter().map(T::heap_size).sum::<usize>()
    }
}

impl<T: HeapSize + ?Sized> HeapSize for Box<T> {
    fn heap_size(&self) -> usize {
        std::mem::size_of_val::<T>(self) + (**self).heap_size()
    }
}

impl HeapSize for str {
    fn heap_size(&self) -> usize {
        0
    }
}

impl<T: HeapSize> HeapSize for [T] {
    fn heap_size(&self) -> usize {
        self.iter().map(T::heap_size).sum()
    }
}

/// Shared values are counted whole by every holder (an upper bound, never an underestimate).
impl<T: HeapSize + ?Sized> HeapSize for Arc<T> {
    fn heap_size(&self) -> usize {
        std::mem::size_of_val::<T>(self) + (**self).heap_size()
    }
}

impl<T: HeapSize> HeapSize for Option<T> {
    fn heap_size(&self) -> usize {
        self.as_ref().map_or(0, T::heap_size)
    }
}

impl<A: HeapSize, B: HeapSize> HeapSize for (A, B) {
    fn heap_size(&self) -> usize {
        self.0.heap_size() + self.1.heap_size()
    }
}

impl<K: HeapSize, V: HeapSize, S> HeapSize for HashMap<K, V, S> {
    fn heap_size(&self) -> usize {
        let slots = self.capacity() * (std::mem::size_of::<(K, V)>() + 1);
        slots
            + self
                .iter()
                .map(|(k, v)| k.heap_size() + v.heap_size())
                .sum::<usize>()
    }
}

/// The heap part of an entry's weight: a user function of key and value.
pub(crate) type Weigher<K, V> = Arc<dyn Fn(&K, &V) -> usize + Send + Sync>;

/// Inline bytes per entry: the slot, its hashbrown control byte, and the table's spare capacity
/// (hashbrown keeps tables at most 7/8 full; we charge that bound).
pub(crate) fn inline_size<T>() -> usize {
    (std::mem::size_of::<T>() + 1) * 8 / 7
}
