//! Offline mailboxes: messages for a user with no live connection, bounded in count per
//! user, in age, in how many users may have mail at once, in bytes over all mailboxes,
//! and in what one sending user may hold in them.
//!
//! The per-sender share is what keeps one client from taking the budget of everyone:
//! direct messages to made-up names would otherwise fill every mailbox slot, and a
//! backend push to a real offline user would be dead-lettered. Server pushes (no
//! sending user) count only against the global bounds.
//!
//! A message that does not fit, or waits too long, comes back as a [`MailDeadLetter`]
//! and is counted; nothing leaves a mailbox any other way than delivered (drained to a
//! connection), dead-lettered, or exported and removed by the caller.
//!
//! When a mailbox is full the *new* message is refused, so whatever a push receipt
//! reported as mailboxed stays mailboxed until it is delivered or expires.

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use bytes::Bytes;
use core::fmt;
use core::time::Duration;

use crate::auth::UserId;
use crate::time::Instant;

/// One message waiting in a mailbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mail {
    /// When it was put in the mailbox; it expires at `queued_at + mailbox_max_age`.
    pub queued_at: Instant,
    /// The sending user; `None` for a server push.
    pub from: Option<UserId>,
    /// The payload, as given to the hub.
    pub payload: Bytes,
}

impl Mail {
    /// Mail queued at `queued_at` (for [`Hub::restore_mail`](super::Hub::restore_mail)).
    pub fn new(queued_at: Instant, from: Option<UserId>, payload: Bytes) -> Mail {
        Mail {
            queued_at,
            from,
            payload,
        }
    }
}

/// Why a message addressed to an offline user was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum MailDropReason {
    /// The user's mailbox already held `mailbox_max_messages`.
    MailboxFull,
    /// It waited `mailbox_max_age` without the user connecting.
    Expired,
    /// `max_users_with_mail` other users already had mail waiting.
    TooManyMailboxes,
    /// The mailboxes together already held `mailbox_max_bytes`.
    OverBudget,
    /// The sending user already had `mailbox_sender_max_messages` or
    /// `mailbox_sender_max_bytes` waiting in mailboxes.
    SenderOverShare,
}

impl fmt::Display for MailDropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MailDropReason::MailboxFull => "mailbox full",
            MailDropReason::Expired => "mail expired",
            MailDropReason::TooManyMailboxes => "too many users with mail",
            MailDropReason::OverBudget => "mailboxes full",
            MailDropReason::SenderOverShare => "sender's mailbox share used up",
        })
    }
}

/// A message for an offline user that will never be delivered, with the reason. Drained
/// with [`Hub::poll_dead_letter`](super::Hub::poll_dead_letter).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MailDeadLetter {
    /// The user it was addressed to.
    pub user: UserId,
    /// The sending user; `None` for a server push.
    pub from: Option<UserId>,
    /// The payload, as given to the hub.
    pub payload: Bytes,
    /// Why it was dropped.
    pub reason: MailDropReason,
}

/// What one waiting message costs against the byte bounds beyond its payload: its slot,
/// its sender's name and the indexes. Without it, 10,000 one-byte messages would cost
/// 10,000 bytes of a budget that holds far more.
pub const MAIL_OVERHEAD_BYTES: usize = 128;

/// The bytes `mail` counts for against the byte bounds.
fn cost(mail: &Mail) -> usize {
    mail.payload.len().saturating_add(MAIL_OVERHEAD_BYTES)
}

/// The bounds of [`Mailboxes`] (see [`HubConfig`](super::HubConfig) for each).
#[derive(Clone, Copy, Debug)]
pub(crate) struct MailLimits {
    pub(crate) max_messages: usize,
    pub(crate) max_age: Duration,
    pub(crate) max_users: usize,
    pub(crate) max_bytes: usize,
    pub(crate) sender_max_messages: usize,
    pub(crate) sender_max_bytes: usize,
}

/// What one sending user has waiting in mailboxes.
#[derive(Clone, Copy, Debug, Default)]
struct Share {
    messages: usize,
    bytes: usize,
}

/// Every mailbox, with an index of their oldest messages for expiry.
#[derive(Debug)]
pub(crate) struct Mailboxes {
    boxes: BTreeMap<UserId, VecDeque<Mail>>,
    /// `(front.queued_at, user)` for every non-empty mailbox: the next to expire first.
    fronts: BTreeSet<(Instant, UserId)>,
    dead: VecDeque<MailDeadLetter>,
    messages: usize,
    /// [`cost`] of every waiting message.
    bytes: usize,
    /// Each sending user's waiting mail (users with none have no entry).
    senders: BTreeMap<UserId, Share>,
    limits: MailLimits,
    pub(crate) expired: u64,
    pub(crate) overflowed: u64,
    pub(crate) delivered: u64,
}

/// What [`Mailboxes::put`] did with a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Put {
    Kept,
    DeadLettered,
}

impl Mailboxes {
    pub(crate) fn new(limits: MailLimits) -> Self {
        Mailboxes {
            boxes: BTreeMap::new(),
            fronts: BTreeSet::new(),
            dead: VecDeque::new(),
            messages: 0,
            bytes: 0,
            senders: BTreeMap::new(),
            limits,
            expired: 0,
            overflowed: 0,
            delivered: 0,
        }
    }

    /// Puts `mail` into `user`'s mailbox, keeping the mailbox ordered by `queued_at` (mail
    /// restored from a journal may be older than what is there). A message that does not
    /// fit becomes a dead letter. Allocates the mailbox for a user's first message.
    pub(crate) fn put(&mut self, user: &UserId, mail: Mail) -> Put {
        let limits = self.limits;
        let cost = cost(&mail);
        let share = mail
            .from
            .as_ref()
            .map(|from| self.senders.get(from).copied().unwrap_or_default());
        let reason = match self.boxes.get(user) {
            Some(b) if b.len() >= limits.max_messages => Some(MailDropReason::MailboxFull),
            Some(_) => None,
            None if limits.max_messages == 0 => Some(MailDropReason::MailboxFull),
            None if self.boxes.len() >= limits.max_users => Some(MailDropReason::TooManyMailboxes),
            None => None,
        }
        .or_else(|| {
            (self.bytes.saturating_add(cost) > limits.max_bytes)
                .then_some(MailDropReason::OverBudget)
        })
        .or_else(|| {
            share
                .filter(|s| {
                    s.messages >= limits.sender_max_messages
                        || s.bytes.saturating_add(cost) > limits.sender_max_bytes
                })
                .map(|_| MailDropReason::SenderOverShare)
        });
        if let Some(reason) = reason {
            self.overflowed += 1;
            self.dead.push_back(MailDeadLetter {
                user: user.clone(),
                from: mail.from,
                payload: mail.payload,
                reason,
            });
            return Put::DeadLettered;
        }
        self.bytes += cost;
        if let Some(from) = &mail.from {
            let share = self.senders.entry(from.clone()).or_default();
            share.messages += 1;
            share.bytes += cost;
        }
        let b = self.boxes.entry(user.clone()).or_default();
        let old_front = b.front().map(|m| m.queued_at);
        let at = b.partition_point(|m| m.queued_at <= mail.queued_at);
        b.insert(at, mail);
        let new_front = b.front().map(|m| m.queued_at);
        if old_front != new_front {
            if let Some(t) = old_front {
                self.fronts.remove(&(t, user.clone()));
            }
            if let Some(t) = new_front {
                self.fronts.insert((t, user.clone()));
            }
        }
        self.messages += 1;
        Put::Kept
    }

    /// Takes every message for `user`, oldest first, counting them as delivered.
    pub(crate) fn take(&mut self, user: &UserId) -> VecDeque<Mail> {
        let Some(b) = self.boxes.remove(user) else {
            return VecDeque::new();
        };
        if let Some(front) = b.front() {
            self.fronts.remove(&(front.queued_at, user.clone()));
        }
        self.messages -= b.len();
        self.delivered += b.len() as u64;
        for m in &b {
            self.release(m);
        }
        b
    }

    /// `mail` left its mailbox: its bytes go back to the budget and its sender's share.
    fn release(&mut self, mail: &Mail) {
        let cost = cost(mail);
        self.bytes -= cost;
        if let Some(from) = &mail.from {
            if let Some(share) = self.senders.get_mut(from) {
                share.messages -= 1;
                share.bytes -= cost;
                if share.messages == 0 {
                    self.senders.remove(from);
                }
            }
        }
    }

    /// Dead-letters every message that has waited `max_age` by `now`.
    pub(crate) fn expire(&mut self, now: Instant) {
        while let Some((front, user)) = self.fronts.first().cloned() {
            if now < front.saturating_add(self.limits.max_age) {
                break;
            }
            self.fronts.pop_first();
            let Some(mut b) = self.boxes.remove(&user) else {
                continue; // unreachable: `fronts` indexes non-empty mailboxes only
            };
            while let Some(m) = b.front() {
                if now < m.queued_at.saturating_add(self.limits.max_age) {
                    break;
                }
                let Some(m) = b.pop_front() else { break };
                self.release(&m);
                self.messages -= 1;
                self.expired += 1;
                self.dead.push_back(MailDeadLetter {
                    user: user.clone(),
                    from: m.from,
                    payload: m.payload,
                    reason: MailDropReason::Expired,
                });
            }
            if let Some(m) = b.front() {
                self.fronts.insert((m.queued_at, user.clone()));
                self.boxes.insert(user, b);
            }
        }
    }

    /// When the next message expires, if any is waiting.
    pub(crate) fn next_expiry(&self) -> Option<Instant> {
        self.fronts
            .first()
            .map(|(t, _)| t.saturating_add(self.limits.max_age))
    }

    /// The messages waiting for `user`, oldest first.
    pub(crate) fn iter(&self, user: &UserId) -> impl Iterator<Item = &Mail> + '_ {
        self.boxes.get(user).into_iter().flatten()
    }

    /// Users with mail waiting, in order.
    pub(crate) fn users(&self) -> impl Iterator<Item = &UserId> + '_ {
        self.boxes.keys()
    }

    pub(crate) fn poll_dead_letter(&mut self) -> Option<MailDeadLetter> {
        self.dead.pop_front()
    }

    /// Messages waiting, over all mailboxes.
    pub(crate) fn messages(&self) -> usize {
        self.messages
    }

    /// Users with mail waiting.
    pub(crate) fn users_len(&self) -> usize {
        self.boxes.len()
    }

    /// What the waiting messages count for against `max_bytes`.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    fn user(s: &str) -> UserId {
        UserId(s.into())
    }

    fn mail(ms: u64, text: &'static str) -> Mail {
        Mail {
            queued_at: Instant::from_millis(ms),
            from: None,
            payload: Bytes::from_static(text.as_bytes()),
        }
    }

    /// Mailboxes with these bounds and no byte bounds.
    fn boxes(max_messages: usize, max_age: Duration, max_users: usize) -> Mailboxes {
        Mailboxes::new(MailLimits {
            max_messages,
            max_age,
            max_users,
            max_bytes: usize::MAX,
            sender_max_messages: usize::MAX,
            sender_max_bytes: usize::MAX,
        })
    }

    fn from(sender: &str, ms: u64, text: &'static str) -> Mail {
        Mail {
            from: Some(user(sender)),
            ..mail(ms, text)
        }
    }

    #[test]
    fn one_sender_cannot_take_the_mailboxes_of_everyone() {
        let mut m = Mailboxes::new(MailLimits {
            sender_max_messages: 3,
            ..boxes(10, Duration::from_secs(60), 100).limits
        });
        // A client writes to made-up names until its share is used up ...
        for i in 0..3 {
            assert_eq!(
                m.put(&user(&alloc::format!("ghost{i}")), from("eve", 1, "x")),
                Put::Kept
            );
        }
        assert_eq!(
            m.put(&user("ghost3"), from("eve", 1, "x")),
            Put::DeadLettered
        );
        let dead = m.poll_dead_letter().unwrap();
        assert_eq!(
            (dead.user, dead.reason),
            (user("ghost3"), MailDropReason::SenderOverShare)
        );
        // ... while other senders and the backend still reach real users.
        assert_eq!(m.put(&user("bob"), from("alice", 1, "hi")), Put::Kept);
        assert_eq!(m.put(&user("bob"), mail(1, "push")), Put::Kept);
        // Her share comes back as her mail leaves.
        m.take(&user("ghost0"));
        assert_eq!(m.put(&user("ghost3"), from("eve", 2, "x")), Put::Kept);
    }

    #[test]
    fn a_sender_share_and_the_budget_count_bytes_with_overhead() {
        let one = MAIL_OVERHEAD_BYTES + 1;
        let mut m = Mailboxes::new(MailLimits {
            max_bytes: 3 * one,
            sender_max_bytes: 2 * one,
            ..boxes(10, Duration::from_millis(100), 100).limits
        });
        assert_eq!(m.put(&user("a"), from("eve", 0, "x")), Put::Kept);
        assert_eq!(m.put(&user("b"), from("eve", 0, "y")), Put::Kept);
        assert_eq!(m.put(&user("c"), from("eve", 0, "z")), Put::DeadLettered);
        assert_eq!(
            m.poll_dead_letter().map(|d| d.reason),
            Some(MailDropReason::SenderOverShare)
        );
        assert_eq!(m.put(&user("c"), mail(0, "p")), Put::Kept);
        assert_eq!(m.bytes(), 3 * one);
        // The budget is full for everyone, pushes included.
        assert_eq!(m.put(&user("d"), mail(0, "q")), Put::DeadLettered);
        assert_eq!(
            m.poll_dead_letter().map(|d| d.reason),
            Some(MailDropReason::OverBudget)
        );
        // Expiry gives every byte back.
        m.expire(Instant::from_millis(100));
        assert_eq!((m.bytes(), m.messages()), (0, 0));
        assert!(m.senders.is_empty());
        assert_eq!(m.put(&user("d"), from("eve", 100, "x")), Put::Kept);
    }

    fn payloads(b: &VecDeque<Mail>) -> Vec<&[u8]> {
        b.iter().map(|m| &m.payload[..]).collect()
    }

    #[test]
    fn delivered_in_order_and_counted() {
        let mut m = boxes(10, Duration::from_secs(60), 10);
        let a = user("a");
        assert_eq!(m.put(&a, mail(1, "one")), Put::Kept);
        assert_eq!(m.put(&a, mail(2, "two")), Put::Kept);
        assert_eq!((m.messages(), m.users_len()), (2, 1));
        let got = m.take(&a);
        assert_eq!(payloads(&got), [&b"one"[..], b"two"]);
        assert_eq!((m.messages(), m.users_len(), m.delivered), (0, 0, 2));
        assert_eq!(m.next_expiry(), None);
        assert!(m.take(&a).is_empty());
    }

    #[test]
    fn a_full_mailbox_refuses_the_new_message() {
        let mut m = boxes(2, Duration::from_secs(60), 10);
        let a = user("a");
        m.put(&a, mail(1, "one"));
        m.put(&a, mail(2, "two"));
        assert_eq!(m.put(&a, mail(3, "three")), Put::DeadLettered);
        let dead = m.poll_dead_letter().unwrap();
        assert_eq!(
            (dead.reason, &dead.payload[..]),
            (MailDropReason::MailboxFull, &b"three"[..])
        );
        assert_eq!((m.overflowed, m.messages()), (1, 2));
        assert_eq!(payloads(&m.take(&a)), [&b"one"[..], b"two"]);
    }

    #[test]
    fn too_many_users_with_mail() {
        let mut m = boxes(2, Duration::from_secs(60), 1);
        m.put(&user("a"), mail(1, "for a"));
        assert_eq!(m.put(&user("b"), mail(1, "for b")), Put::DeadLettered);
        assert_eq!(
            m.poll_dead_letter().map(|d| (d.user, d.reason)),
            Some((user("b"), MailDropReason::TooManyMailboxes))
        );
        // Room in an existing mailbox is still fine.
        assert_eq!(m.put(&user("a"), mail(2, "more")), Put::Kept);
    }

    #[test]
    fn zero_capacity_dead_letters_everything() {
        let mut m = boxes(0, Duration::from_secs(60), 10);
        assert_eq!(m.put(&user("a"), mail(1, "x")), Put::DeadLettered);
        assert_eq!(m.users_len(), 0);
    }

    #[test]
    fn expiry_dead_letters_the_old_ones_only() {
        let mut m = boxes(10, Duration::from_millis(100), 10);
        let (a, b) = (user("a"), user("b"));
        m.put(&a, mail(0, "a0"));
        m.put(&b, mail(50, "b50"));
        m.put(&a, mail(80, "a80"));
        assert_eq!(m.next_expiry(), Some(Instant::from_millis(100)));
        m.expire(Instant::from_millis(99));
        assert!(m.poll_dead_letter().is_none());
        m.expire(Instant::from_millis(149));
        let d = m.poll_dead_letter().unwrap();
        assert_eq!((d.user, d.reason), (a.clone(), MailDropReason::Expired));
        assert!(m.poll_dead_letter().is_none());
        assert_eq!(m.next_expiry(), Some(Instant::from_millis(150)));
        m.expire(Instant::from_millis(1_000));
        assert_eq!((m.messages(), m.users_len(), m.expired), (0, 0, 3));
        assert_eq!(m.next_expiry(), None);
    }

    #[test]
    fn restored_mail_is_kept_in_time_order() {
        let mut m = boxes(10, Duration::from_millis(100), 10);
        let a = user("a");
        m.put(&a, mail(50, "later"));
        m.put(&a, mail(10, "earlier"));
        assert_eq!(m.next_expiry(), Some(Instant::from_millis(110)));
        let got: Vec<_> = m.iter(&a).map(|m| &m.payload[..]).collect();
        assert_eq!(got, [&b"earlier"[..], b"later"]);
        m.expire(Instant::from_millis(120));
        assert_eq!(m.messages(), 1);
        assert_eq!(m.next_expiry(), Some(Instant::from_millis(150)));
    }
}
