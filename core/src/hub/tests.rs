//! Scenarios for the hub as a whole; each file below has its own unit tests.

use super::*;
use alloc::sync::Arc;
use alloc::vec;
use core::time::Duration;

fn user(s: &str) -> UserId {
    UserId(s.into())
}

fn drain(hub: &mut Hub) -> Vec<Outbound> {
    core::iter::from_fn(|| hub.poll_outbound()).collect()
}

#[test]
fn push_to_a_user_with_three_connections_reaches_all_three() {
    let mut hub = Hub::new(HubConfig::default());
    for i in 1..=3 {
        hub.connect(Instant::ZERO, ConnId(i), user("a"), Delivery::Reliable)
            .unwrap();
    }
    let r = hub.push(
        Instant::ZERO,
        Target::User(user("a")),
        Bytes::from_static(b"x"),
    );
    assert_eq!(r.connections, 3);
    let to: Vec<_> = drain(&mut hub).into_iter().map(|o| o.to).collect();
    assert_eq!(to, [ConnId(1), ConnId(2), ConnId(3)]);
}

#[test]
fn unknown_connections_are_errors() {
    let mut hub = Hub::new(HubConfig::default());
    let now = Instant::ZERO;
    assert_eq!(hub.join(ConnId(7), "r"), Err(HubError::NotConnected));
    assert_eq!(hub.leave(ConnId(7), "r"), Err(HubError::NotConnected));
    assert_eq!(
        hub.publish(now, ConnId(7), "r", Bytes::new()),
        Err(HubError::NotConnected)
    );
    assert_eq!(
        hub.send_to_user(now, ConnId(7), &user("a"), Bytes::new()),
        Err(HubError::NotConnected)
    );
    hub.disconnect(now, ConnId(7));
    assert!(hub.rooms_of(ConnId(7)).is_empty());
    assert_eq!(hub.user_of(ConnId(7)), None);
    assert!(hub.poll_outbound().is_none());
}

#[test]
fn publish_needs_membership_and_reaches_every_member() {
    let mut hub = Hub::new(HubConfig::default());
    let now = Instant::ZERO;
    hub.connect(now, ConnId(1), user("a"), Delivery::AtMostOnce)
        .unwrap();
    hub.connect(now, ConnId(2), user("b"), Delivery::Reliable)
        .unwrap();
    hub.connect(now, ConnId(3), user("c"), Delivery::Reliable)
        .unwrap();
    assert_eq!(
        hub.publish(now, ConnId(1), "r", Bytes::new()),
        Err(HubError::NotAMember)
    );
    hub.join(ConnId(1), "r").unwrap();
    hub.join(ConnId(2), "r").unwrap();
    drain(&mut hub);
    assert_eq!(hub.publish(now, ConnId(2), "r", Bytes::from("m")), Ok(2));
    let out = drain(&mut hub);
    assert_eq!(out.len(), 2);
    for o in &out {
        assert_eq!(
            *o.message,
            OutMessage::Message {
                from: Some(user("b")),
                room: Some("r".into()),
                payload: Bytes::from("m"),
            }
        );
    }
    assert_eq!(
        out.iter().map(|o| o.to).collect::<Vec<_>>(),
        [ConnId(1), ConnId(2)]
    );
}

#[test]
fn presence_follows_users_not_connections() {
    let mut hub = Hub::new(HubConfig::default());
    let now = Instant::ZERO;
    hub.connect(now, ConnId(1), user("a"), Delivery::Reliable)
        .unwrap();
    hub.connect(now, ConnId(2), user("b"), Delivery::Reliable)
        .unwrap();
    hub.connect(now, ConnId(3), user("b"), Delivery::Reliable)
        .unwrap();
    hub.join(ConnId(1), "r").unwrap();
    assert!(drain(&mut hub).is_empty(), "nobody else to tell");
    hub.join(ConnId(2), "r").unwrap();
    assert_eq!(
        drain(&mut hub),
        [Outbound {
            to: ConnId(1),
            message: Arc::new(OutMessage::Presence {
                room: "r".into(),
                user: user("b"),
                joined: true
            })
        }]
    );
    hub.join(ConnId(3), "r").unwrap();
    assert!(drain(&mut hub).is_empty(), "b was already present");
    assert_eq!(hub.members("r"), [user("a"), user("b")]);
    hub.disconnect(now, ConnId(2));
    assert!(drain(&mut hub).is_empty(), "b is still present on 3");
    hub.leave(ConnId(3), "r").unwrap();
    let out = drain(&mut hub);
    assert_eq!(out.len(), 1);
    assert!(matches!(
        &*out[0].message,
        OutMessage::Presence { joined: false, user, .. } if *user == self::user("b")
    ));
    assert_eq!(hub.members("r"), [user("a")]);
    hub.disconnect(now, ConnId(1));
    assert_eq!(hub.stats().rooms, 0, "membership ends with the connection");
}

#[test]
fn a_large_room_goes_without_presence_and_lists_a_page_of_members() {
    let config = HubConfig {
        presence_max_recipients: 3,
        ..HubConfig::default()
    };
    let mut hub = Hub::new(config);
    let now = Instant::ZERO;
    let mut presence = 0;
    for i in 0..10u64 {
        hub.connect(
            now,
            ConnId(i),
            user(&alloc::format!("u{i}")),
            Delivery::Reliable,
        )
        .unwrap();
        hub.join(ConnId(i), "big").unwrap();
        let out = drain(&mut hub);
        // Told to the others only while they are at most three.
        assert_eq!(out.len(), if i <= 3 { i as usize } else { 0 }, "join {i}");
        presence += out.len();
    }
    assert_eq!(presence, 1 + 2 + 3);
    let (page, count) = hub.members_page("big", 4);
    assert_eq!(
        (page, count),
        (["u0", "u1", "u2", "u3"].map(user).to_vec(), 10)
    );
    // Leaving: the others hear it again once they are few enough.
    for i in 0..10u64 {
        hub.disconnect(now, ConnId(i));
        let left = 9 - i as usize;
        assert_eq!(
            drain(&mut hub).len(),
            if left <= 3 { left } else { 0 },
            "leave {i}"
        );
    }
}

#[test]
fn room_limits() {
    let config = HubConfig {
        max_rooms_per_connection: 1,
        max_room_members: 1,
        max_room_name_bytes: 4,
        ..HubConfig::default()
    };
    let mut hub = Hub::new(config);
    let now = Instant::ZERO;
    hub.connect(now, ConnId(1), user("a"), Delivery::Reliable)
        .unwrap();
    hub.connect(now, ConnId(2), user("b"), Delivery::Reliable)
        .unwrap();
    assert_eq!(
        hub.join(ConnId(1), "toolong"),
        Err(HubError::RoomNameInvalid)
    );
    assert_eq!(hub.join(ConnId(1), ""), Err(HubError::RoomNameInvalid));
    hub.join(ConnId(1), "r").unwrap();
    hub.join(ConnId(1), "r").unwrap();
    assert_eq!(hub.join(ConnId(1), "s"), Err(HubError::TooManyRooms));
    assert_eq!(hub.join(ConnId(2), "r"), Err(HubError::RoomFull));
    assert_eq!(hub.leave(ConnId(2), "r"), Err(HubError::NotAMember));
    assert_eq!(hub.rooms_of(ConnId(1)), ["r"]);
    assert!(hub.rooms_of(ConnId(2)).is_empty());
}

#[test]
fn offline_user_gets_the_mailbox_in_order_on_connect() {
    let mut hub = Hub::new(HubConfig::default());
    let now = Instant::ZERO;
    hub.connect(now, ConnId(1), user("a"), Delivery::AtMostOnce)
        .unwrap();
    let r = hub
        .send_to_user(now, ConnId(1), &user("b"), Bytes::from("1"))
        .unwrap();
    assert_eq!((r.connections, r.mailboxed), (0, 1));
    hub.push(now, Target::User(user("b")), Bytes::from("2"));
    assert_eq!(hub.stats().mailbox_messages, 2);
    let kept: Vec<_> = hub.mailbox(&user("b")).map(|m| m.payload.clone()).collect();
    assert_eq!(kept, [Bytes::from("1"), Bytes::from("2")]);
    hub.connect(now, ConnId(2), user("b"), Delivery::AtMostOnce)
        .unwrap();
    let out = drain(&mut hub);
    assert_eq!(
        out,
        [
            Outbound {
                to: ConnId(2),
                message: Arc::new(OutMessage::Message {
                    from: Some(user("a")),
                    room: None,
                    payload: Bytes::from("1")
                })
            },
            Outbound {
                to: ConnId(2),
                message: Arc::new(OutMessage::Message {
                    from: None,
                    room: None,
                    payload: Bytes::from("2")
                })
            },
        ]
    );
    let s = hub.stats();
    assert_eq!(
        (s.mailbox_messages, s.mailbox_users, s.mail_delivered),
        (0, 0, 2)
    );
    // A second connection finds the mailbox empty.
    hub.connect(now, ConnId(3), user("b"), Delivery::Reliable)
        .unwrap();
    assert!(drain(&mut hub).is_empty());
}

#[test]
fn mail_expires_into_dead_letters_on_the_timer() {
    let config = HubConfig {
        mailbox_max_age: Duration::from_secs(10),
        ..HubConfig::default()
    };
    let mut hub = Hub::new(config);
    hub.push(
        Instant::from_millis(1_000),
        Target::User(user("b")),
        Bytes::from("old"),
    );
    assert_eq!(hub.poll_timeout(), Some(Instant::from_millis(11_000)));
    hub.handle_timeout(Instant::from_millis(10_999));
    assert!(hub.poll_dead_letter().is_none());
    hub.handle_timeout(Instant::from_millis(11_000));
    let d = hub.poll_dead_letter().unwrap();
    assert_eq!(
        (d.user, d.payload, d.reason),
        (user("b"), Bytes::from("old"), MailDropReason::Expired)
    );
    assert_eq!(hub.poll_timeout(), None);
    assert_eq!(hub.stats().mail_expired, 1);
}

#[test]
fn connecting_late_gets_dead_letters_not_stale_mail() {
    let config = HubConfig {
        mailbox_max_age: Duration::from_secs(10),
        ..HubConfig::default()
    };
    let mut hub = Hub::new(config);
    hub.push(Instant::ZERO, Target::User(user("b")), Bytes::from("old"));
    // The runtime never called handle_timeout; connect itself notices.
    hub.connect(
        Instant::from_millis(60_000),
        ConnId(1),
        user("b"),
        Delivery::Reliable,
    )
    .unwrap();
    assert!(hub.poll_outbound().is_none());
    assert_eq!(
        hub.poll_dead_letter().map(|d| d.reason),
        Some(MailDropReason::Expired)
    );
}

#[test]
fn overflow_is_reported_in_the_receipt_and_as_a_dead_letter() {
    let config = HubConfig {
        mailbox_max_messages: 1,
        ..HubConfig::default()
    };
    let mut hub = Hub::new(config);
    let now = Instant::ZERO;
    hub.push(now, Target::User(user("b")), Bytes::from("1"));
    let r = hub.push(now, Target::User(user("b")), Bytes::from("2"));
    assert_eq!((r.mailboxed, r.dead_lettered), (0, 1));
    let d = hub.poll_dead_letter().unwrap();
    assert_eq!(
        (d.payload, d.reason),
        (Bytes::from("2"), MailDropReason::MailboxFull)
    );
    assert_eq!(hub.stats().mail_overflowed, 1);
}

#[test]
fn push_to_room_and_everyone_skip_the_offline() {
    let mut hub = Hub::new(HubConfig::default());
    let now = Instant::ZERO;
    hub.connect(now, ConnId(1), user("a"), Delivery::Reliable)
        .unwrap();
    hub.connect(now, ConnId(2), user("b"), Delivery::AtMostOnce)
        .unwrap();
    hub.join(ConnId(2), "r").unwrap();
    let r = hub.push(now, Target::Room("r".into()), Bytes::from("x"));
    assert_eq!(r.connections, 1);
    let r = hub.push(now, Target::Room("nowhere".into()), Bytes::from("x"));
    assert!(r.is_empty());
    let r = hub.push(now, Target::Everyone, Bytes::from("y"));
    assert_eq!(r.connections, 2);
    let out = drain(&mut hub);
    assert_eq!(out.len(), 3);
    assert_eq!(hub.stats().mailbox_messages, 0);
}

#[test]
fn connection_limits_refuse_before_and_at_connect() {
    let config = HubConfig {
        max_connections: 2,
        max_connections_per_user: 1,
        ..HubConfig::default()
    };
    let mut hub = Hub::new(config);
    let now = Instant::ZERO;
    hub.connect(now, ConnId(1), user("a"), Delivery::Reliable)
        .unwrap();
    assert_eq!(hub.admit(&user("a")), Err(Refusal::TooManyForUser));
    assert_eq!(
        hub.connect(now, ConnId(2), user("a"), Delivery::Reliable),
        Err(Refusal::TooManyForUser)
    );
    hub.connect(now, ConnId(2), user("b"), Delivery::Reliable)
        .unwrap();
    assert_eq!(hub.admit(&user("c")), Err(Refusal::TooManyConnections));
    assert_eq!(
        hub.connections().collect::<Vec<_>>(),
        [ConnId(1), ConnId(2)]
    );
    hub.disconnect(now, ConnId(1));
    assert_eq!(hub.admit(&user("c")), Ok(()));
    assert_eq!(hub.connections().collect::<Vec<_>>(), [ConnId(2)]);
}

#[test]
fn exported_mail_restores_with_its_age() {
    let config = HubConfig {
        mailbox_max_age: Duration::from_secs(10),
        ..HubConfig::default()
    };
    let mut old = Hub::new(config.clone());
    old.push(
        Instant::from_millis(2_000),
        Target::User(user("b")),
        Bytes::from("1"),
    );
    old.push(
        Instant::from_millis(5_000),
        Target::User(user("b")),
        Bytes::from("2"),
    );
    let saved: Vec<(UserId, Mail)> = old
        .mailbox_users()
        .flat_map(|u| old.mailbox(u).map(move |m| (u.clone(), m.clone())))
        .collect();
    // The new process's clock starts later; the first message is already too old.
    let mut new = Hub::new(config);
    let now = Instant::from_millis(13_000);
    let receipts: Vec<_> = saved
        .into_iter()
        .map(|(u, m)| new.restore_mail(now, &u, m))
        .collect();
    assert_eq!(receipts.iter().map(|r| r.mailboxed).sum::<usize>(), 2);
    assert_eq!(
        new.poll_dead_letter().map(|d| d.payload),
        Some(Bytes::from("1"))
    );
    assert_eq!(new.stats().mailbox_messages, 1);
    assert_eq!(new.poll_timeout(), Some(Instant::from_millis(15_000)));
}

#[test]
fn a_room_of_a_hundred_connections_gets_every_publish() {
    let mut hub = Hub::new(HubConfig::default());
    let now = Instant::ZERO;
    for i in 0..100 {
        let delivery = if i % 2 == 0 {
            Delivery::Reliable
        } else {
            Delivery::AtMostOnce
        };
        hub.connect(
            now,
            ConnId(i),
            user(&alloc::format!("u{}", i % 40)),
            delivery,
        )
        .unwrap();
        hub.join(ConnId(i), "big").unwrap();
    }
    drain(&mut hub);
    assert_eq!(hub.members("big").len(), 40);
    assert_eq!(hub.delivery_of(ConnId(1)), Some(Delivery::AtMostOnce));
    for n in 0..10u64 {
        let payload = Bytes::copy_from_slice(&n.to_be_bytes());
        assert_eq!(hub.publish(now, ConnId(n * 7), "big", payload), Ok(100));
        let out = drain(&mut hub);
        let mut to: Vec<u64> = out.iter().map(|o| o.to.0).collect();
        to.sort_unstable();
        assert_eq!(to, (0..100).collect::<Vec<_>>());
    }
}

#[test]
fn a_message_handed_back_after_a_slow_disconnect_waits_for_the_next_connection() {
    let mut hub = Hub::new(HubConfig::default());
    let now = Instant::from_millis(5);
    hub.connect(now, ConnId(1), user("a"), Delivery::Reliable)
        .unwrap();
    hub.push(now, Target::User(user("a")), Bytes::from("m"));
    let out = hub.poll_outbound().unwrap();
    // The session's window was full: the runtime drops the connection and hands it back.
    hub.disconnect(now, out.to);
    let OutMessage::Message { from, payload, .. } = (*out.message).clone() else {
        panic!("expected a message");
    };
    let r = hub.restore_mail(now, &user("a"), Mail::new(now, from, payload));
    assert_eq!(r.mailboxed, 1);
    hub.connect(now, ConnId(2), user("a"), Delivery::Reliable)
        .unwrap();
    assert_eq!(
        hub.poll_outbound().map(|o| o.to),
        Some(ConnId(2)),
        "delivered to the next connection"
    );
}

#[test]
fn a_transfer_keeps_rooms_and_presence_and_counts_one_connection() {
    let mut hub = Hub::new(HubConfig {
        max_connections_per_user: 1,
        ..HubConfig::default()
    });
    let now = Instant::from_millis(5);
    hub.connect(now, ConnId(1), user("a"), Delivery::Reliable)
        .unwrap();
    hub.connect(now, ConnId(9), user("b"), Delivery::AtMostOnce)
        .unwrap();
    hub.join(ConnId(1), "r").unwrap();
    hub.join(ConnId(9), "r").unwrap();
    drain(&mut hub);

    assert!(hub.transfer(ConnId(1), ConnId(2)));
    assert!(drain(&mut hub).is_empty(), "no presence for a transfer");
    assert_eq!(hub.rooms_of(ConnId(2)), vec![String::from("r")]);
    assert!(hub.rooms_of(ConnId(1)).is_empty());
    assert_eq!(hub.user_of(ConnId(2)), Some(&user("a")));
    assert_eq!(hub.delivery_of(ConnId(2)), Some(Delivery::Reliable));
    assert_eq!(
        hub.connections_of(&user("a")).collect::<Vec<_>>(),
        vec![ConnId(2)]
    );
    assert_eq!(
        hub.admit(&user("a")),
        Err(Refusal::TooManyForUser),
        "still one connection of a"
    );

    hub.publish(now, ConnId(9), "r", Bytes::from("hi")).unwrap();
    let mut to: Vec<ConnId> = drain(&mut hub).iter().map(|o| o.to).collect();
    to.sort_unstable();
    assert_eq!(to, vec![ConnId(2), ConnId(9)], "the new id is the member");

    assert!(!hub.transfer(ConnId(1), ConnId(3)), "old is gone");
    assert!(!hub.transfer(ConnId(2), ConnId(9)), "new is live");
    assert_eq!(
        hub.rooms_of(ConnId(2)),
        vec![String::from("r")],
        "nothing changed"
    );

    hub.disconnect(now, ConnId(2));
    let presence = drain(&mut hub);
    assert_eq!(presence.len(), 1, "a leaves once: {presence:?}");
    assert_eq!(hub.members("r"), vec![user("b")]);
}

#[test]
fn changes_name_first_arrivals_and_last_departures_only() {
    let config = HubConfig {
        report_changes: true,
        ..HubConfig::default()
    };
    let mut hub = Hub::new(config);
    let now = Instant::ZERO;
    hub.connect(now, ConnId(1), user("a"), Delivery::AtMostOnce)
        .unwrap();
    hub.connect(now, ConnId(2), user("a"), Delivery::AtMostOnce)
        .unwrap();
    hub.join(ConnId(1), "r").unwrap();
    hub.join(ConnId(2), "r").unwrap();
    hub.leave(ConnId(1), "r").unwrap();
    hub.disconnect(now, ConnId(2));
    hub.disconnect(now, ConnId(1));
    let changes: Vec<HubChange> = core::iter::from_fn(|| hub.poll_change())
        .filter(|c| !matches!(c, HubChange::Connections { .. }))
        .collect();
    let room = || String::from("r");
    assert_eq!(
        changes,
        [
            HubChange::UserOnline(user("a")),
            HubChange::RoomOpened(room()),
            HubChange::Arrived {
                room: room(),
                user: user("a")
            },
            HubChange::Departed {
                room: room(),
                user: user("a")
            },
            HubChange::RoomClosed(room()),
            HubChange::UserOffline(user("a")),
        ]
    );
    // Every connect and disconnect says how many the user has.
    let mut counted = Hub::new(HubConfig {
        report_changes: true,
        ..HubConfig::default()
    });
    counted
        .connect(now, ConnId(1), user("a"), Delivery::AtMostOnce)
        .unwrap();
    counted
        .connect(now, ConnId(2), user("a"), Delivery::AtMostOnce)
        .unwrap();
    counted.disconnect(now, ConnId(1));
    let counts: Vec<usize> = core::iter::from_fn(|| counted.poll_change())
        .filter_map(|c| match c {
            HubChange::Connections { count, .. } => Some(count),
            _ => None,
        })
        .collect();
    assert_eq!(counts, [1, 2, 1]);
    // Without the flag nothing is recorded.
    let mut quiet = Hub::new(HubConfig::default());
    quiet
        .connect(now, ConnId(1), user("a"), Delivery::AtMostOnce)
        .unwrap();
    assert_eq!(quiet.poll_change(), None);
}

#[test]
fn a_relayed_message_reaches_live_connections_and_never_a_mailbox() {
    let mut hub = Hub::new(HubConfig::default());
    let now = Instant::ZERO;
    assert_eq!(
        hub.relay(now, &Target::User(user("b")), None, Bytes::from("x")),
        0
    );
    assert_eq!(hub.stats().mailbox_messages, 0);
    hub.connect(now, ConnId(1), user("b"), Delivery::AtMostOnce)
        .unwrap();
    hub.join(ConnId(1), "r").unwrap();
    let n = hub.relay(
        now,
        &Target::Room("r".into()),
        Some(user("z")),
        Bytes::from("y"),
    );
    assert_eq!(n, 1);
    let out = drain(&mut hub);
    assert!(matches!(&*out[0].message,
        OutMessage::Message { from: Some(f), room: Some(r), .. } if f == &user("z") && r == "r"));
    hub.announce_presence("r", &user("z"), true);
    assert!(matches!(
        &*drain(&mut hub)[0].message,
        OutMessage::Presence { joined: true, .. }
    ));
}
