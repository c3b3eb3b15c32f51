//! The reply slots of a store's group commit: where its writer leaves each caller's answer.
//!
//! One slab per store, reused: a caller opens a slot when it queues its write, the writer answers
//! it through the write's [`Ticket`], and the caller takes the answer. Both live under the lock
//! the group commit already holds to queue and take writes, so a put costs no channel and no
//! allocation of its own (an `mpsc` queue and a `oneshot` per put cost ~1,490 instructions per
//! put with their allocation; the slab ~870, callgrind, issue 16 item 2).
//!
//! **Who frees a slot.** Whoever comes second: the caller taking its answer, or the writer
//! answering a caller that went away (its future dropped: [`Replies::cancel`] marks the slot
//! gone). A slot is therefore never reused while either side can still name it, and a cancelled
//! caller's slot can neither leak nor answer the caller that opens it next
//! (`a_cancelled_callers_slot_is_freed_once_and_never_answers_the_next_caller`).

use std::task::{Context, Poll, Waker};

/// The writer's end of one caller's slot: answering consumes it, so a write is answered once.
#[derive(Debug)]
pub(super) struct Ticket(u32);

impl Ticket {
    /// The slot's number, which the caller waits on.
    pub fn index(&self) -> u32 {
        self.0
    }
}

enum State<A> {
    /// On the free list.
    Free,
    /// The caller waits (its waker once it polled).
    Waiting(Option<Waker>),
    /// Answered; the caller has not taken it yet.
    Ready(A),
    /// The caller went away before its answer: the writer frees the slot when it answers.
    Gone,
}

/// The slab: slots by number, and the numbers free for reuse.
pub(super) struct Replies<A> {
    slots: Vec<State<A>>,
    free: Vec<u32>,
}

impl<A> Default for Replies<A> {
    fn default() -> Self {
        Replies {
            slots: Vec::new(),
            free: Vec::new(),
        }
    }
}

impl<A> Replies<A> {
    /// A slot for a caller about to queue its write.
    pub fn open(&mut self) -> Ticket {
        if let Some(i) = self.free.pop() {
            self.slots[i as usize] = State::Waiting(None);
            return Ticket(i);
        }
        // More than u32::MAX callers waiting at once cannot happen (each holds a task).
        let i = u32::try_from(self.slots.len()).unwrap_or(u32::MAX);
        self.slots.push(State::Waiting(None));
        Ticket(i)
    }

    /// True if the caller of `ticket` went away.
    pub fn is_gone(&self, ticket: &Ticket) -> bool {
        matches!(self.slots.get(ticket.0 as usize), Some(State::Gone))
    }

    /// Leaves `answer` for the caller of `ticket`: the waker to wake once the lock is released,
    /// or, if the caller went away, the answer back (to drop outside the lock) and the slot
    /// freed.
    pub fn answer(&mut self, ticket: Ticket, answer: A) -> Result<Option<Waker>, A> {
        let i = ticket.0;
        match self.slots.get_mut(i as usize) {
            Some(State::Waiting(waker)) => {
                let waker = waker.take();
                self.slots[i as usize] = State::Ready(answer);
                Ok(waker)
            }
            Some(slot @ State::Gone) => {
                *slot = State::Free;
                self.free.push(i);
                Err(answer)
            }
            // Cannot happen: a ticket is consumed when answered, and a slot is freed only once
            // both sides are done with it.
            _ => Err(answer),
        }
    }

    /// The caller of slot `i` looks for its answer: takes it (freeing the slot), or registers
    /// its waker.
    pub fn poll(&mut self, i: u32, cx: &Context<'_>) -> Poll<A> {
        let Some(slot) = self.slots.get_mut(i as usize) else {
            return Poll::Pending;
        };
        match std::mem::replace(slot, State::Free) {
            State::Ready(answer) => {
                self.free.push(i);
                Poll::Ready(answer)
            }
            State::Waiting(Some(waker)) if waker.will_wake(cx.waker()) => {
                *slot = State::Waiting(Some(waker));
                Poll::Pending
            }
            State::Waiting(_) => {
                *slot = State::Waiting(Some(cx.waker().clone()));
                Poll::Pending
            }
            other => {
                *slot = other;
                Poll::Pending
            }
        }
    }

    /// The caller of slot `i` goes away without its answer: the slot is freed now if it was
    /// answered (the answer is returned, to drop outside the lock), else when the writer
    /// answers.
    pub fn cancel(&mut self, i: u32) -> Option<A> {
        let slot = self.slots.get_mut(i as usize)?;
        match std::mem::replace(slot, State::Gone) {
            State::Ready(answer) => {
                *slot = State::Free;
                self.free.push(i);
                Some(answer)
            }
            State::Free => {
                *slot = State::Free;
                None
            }
            State::Waiting(_) | State::Gone => None,
        }
    }

    /// Slots in use (waiting, answered or gone): what a test checks for leaks.
    #[cfg(test)]
    pub fn in_use(&self) -> usize {
        self.slots.len() - self.free.len()
    }
}
