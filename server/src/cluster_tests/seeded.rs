//! Seeded runs of many operations over three nodes on the in-memory broker.

use std::collections::BTreeSet;

use sockeye_core::SeededEntropy;

use super::Net;

/// One seeded run over three nodes: clients come and go, join and leave rooms, send room
/// and direct messages, the backend pushes, Redis goes down and comes back. After every
/// step: every message reached every connection it had to (all nodes while Redis is up,
/// the sender's node while it is down), none twice, each sender's in order; at the end,
/// with Redis up, every member's view of each room's presence is the truth.
fn seeded_run(seed: u64) {
    use std::collections::BTreeMap as Map;
    let mut rng = SeededEntropy::new(seed);
    let mut below = |n: u64| rng.next_u64() % n;
    let mut net = Net::new(3);
    let users = ["u0", "u1", "u2", "u3"];
    let rooms = ["r0", "r1"];
    let mut live: Vec<usize> = Vec::new();
    let mut user_of: Map<usize, &str> = Map::new();
    let mut rooms_of: Map<usize, BTreeSet<&str>> = Map::new();
    let mut next_id = 0u64;
    let mut sent_by: Map<usize, u64> = Map::new();
    let ids = |net: &Net, c: usize| -> Vec<(u64, u64, u64)> {
        net.clients[c]
            .texts
            .iter()
            .filter(|t| t["type"] == "message")
            .filter_map(|t| {
                let d = &t["data"];
                Some((d["id"].as_u64()?, d["s"].as_u64()?, d["q"].as_u64()?))
            })
            .collect()
    };
    for step in 0..150 {
        let at = format!("seed {seed} step {step}");
        match below(10) {
            0 | 1 if live.len() < 8 => {
                let user = users[below(4) as usize];
                let c = net.connect(below(3) as usize, user);
                live.push(c);
                user_of.insert(c, user);
                rooms_of.insert(c, BTreeSet::new());
            }
            2 if !live.is_empty() => {
                let c = live.remove(below(live.len() as u64) as usize);
                net.drop_client(c);
            }
            3 | 4 if !live.is_empty() => {
                let c = live[below(live.len() as u64) as usize];
                let room = rooms[below(2) as usize];
                if rooms_of[&c].contains(room) {
                    net.send(c, &format!(r#"{{"type":"leave","room":"{room}"}}"#));
                    rooms_of.get_mut(&c).unwrap().remove(room);
                } else {
                    net.send(c, &format!(r#"{{"type":"join","room":"{room}"}}"#));
                    rooms_of.get_mut(&c).unwrap().insert(room);
                }
            }
            5..=8 if !live.is_empty() => {
                let c = live[below(live.len() as u64) as usize];
                let q = sent_by.entry(c).or_default();
                *q += 1;
                let (id, q) = (next_id, *q);
                next_id += 1;
                let data = format!(r#"{{"id":{id},"s":{c},"q":{q}}}"#);
                let node = net.clients[c].node;
                let up = net.up;
                let node_of: Map<usize, usize> =
                    live.iter().map(|r| (*r, net.clients[*r].node)).collect();
                let reach = |r: &usize| up || node_of[r] == node;
                let (must, pushed): (Vec<usize>, bool) = match below(4) {
                    0 => {
                        let mine: Vec<&str> = rooms_of[&c].iter().copied().collect();
                        let Some(room) = mine.first() else {
                            continue;
                        };
                        net.send(
                            c,
                            &format!(r#"{{"type":"message","room":"{room}","data":{data}}}"#),
                        );
                        let must = live
                            .iter()
                            .filter(|r| rooms_of[r].contains(room) && reach(r))
                            .copied()
                            .collect();
                        (must, false)
                    }
                    1 => {
                        let to = users[below(4) as usize];
                        net.send(
                            c,
                            &format!(r#"{{"type":"message","to":"{to}","data":{data}}}"#),
                        );
                        let must = live
                            .iter()
                            .filter(|r| user_of[r] == to && reach(r))
                            .copied()
                            .collect();
                        (must, false)
                    }
                    2 => {
                        let to = users[below(4) as usize];
                        let body = format!(r#"{{"user":"{to}","data":{data}}}"#);
                        let (status, _) = net.push(node, &body);
                        assert_eq!(status, if net.up { 202 } else { 503 }, "{at}");
                        let must = live
                            .iter()
                            .filter(|r| user_of[r] == to && net.up)
                            .copied()
                            .collect();
                        (must, true)
                    }
                    _ => {
                        let body = format!(r#"{{"everyone":true,"data":{data}}}"#);
                        let (status, _) = net.push(node, &body);
                        assert_eq!(status, if net.up { 202 } else { 503 }, "{at}");
                        (if net.up { live.clone() } else { Vec::new() }, true)
                    }
                };
                for r in must {
                    assert!(
                        ids(&net, r).iter().any(|(got, ..)| *got == id),
                        "{at}: client {r} missed message {id} (pushed: {pushed})"
                    );
                }
            }
            9 => {
                if net.up {
                    net.up = false;
                    net.subs.clear();
                    for i in 0..3 {
                        net.nodes[i].handle_cluster_down(net.now, "seeded outage");
                    }
                } else {
                    net.up = true;
                    for i in 0..3 {
                        net.nodes[i].handle_cluster_up(net.now);
                    }
                }
                net.pump();
            }
            _ => {}
        }
        for &c in &live {
            let got = ids(&net, c);
            let unique: BTreeSet<u64> = got.iter().map(|(id, ..)| *id).collect();
            assert_eq!(
                unique.len(),
                got.len(),
                "{at}: client {c} got a message twice"
            );
            let mut last: Map<u64, u64> = Map::new();
            for (id, s, q) in got {
                let before = last.insert(s, q).unwrap_or(0);
                assert!(
                    q > before,
                    "{at}: client {c} got {id} ({s}#{q}) after #{before}"
                );
            }
        }
    }
    // Calm: Redis up, time for resynchronisation; then every view is the truth.
    if !net.up {
        net.up = true;
        for i in 0..3 {
            net.nodes[i].handle_cluster_up(net.now);
        }
        net.pump();
    }
    net.advance(core::time::Duration::from_secs(10));
    for &c in &live {
        let mut views: Map<String, BTreeSet<String>> = Map::new();
        for t in &net.clients[c].texts {
            let room = t["room"].as_str().unwrap_or("").to_string();
            match t["type"].as_str() {
                Some("joined") => {
                    let members = t["members"].as_array().unwrap();
                    let set = members.iter().map(|m| m.as_str().unwrap().to_string());
                    views.insert(room, set.collect());
                }
                Some("left") => {
                    views.remove(&room);
                }
                Some("presence") => {
                    if let Some(view) = views.get_mut(&room) {
                        let user = t["user"].as_str().unwrap().to_string();
                        if t["joined"] == true {
                            view.insert(user);
                        } else {
                            view.remove(&user);
                        }
                    }
                }
                _ => {}
            }
        }
        for room in &rooms_of[&c] {
            let truth: BTreeSet<String> = live
                .iter()
                .filter(|r| rooms_of[r].contains(room))
                .map(|r| user_of[r].to_string())
                .collect();
            assert_eq!(
                views.get(*room),
                Some(&truth),
                "seed {seed}: client {c}'s view of {room}"
            );
        }
    }
}

#[test]
fn seeded_runs_deliver_once_in_order_and_agree_on_presence() {
    let seeds: u64 = std::env::var("SOCKEYE_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64);
    if let Some(seed) = std::env::var("SOCKEYE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return seeded_run(seed);
    }
    for seed in 0..seeds {
        seeded_run(seed);
    }
}
