//! Reliable sessions in Redis, with a cluster backend: a client cut from one node
//! resumes on any other, and gets the rest once, in order.
//!
//! **Writing.** The records a session's life produces (the journal's: opened, sent,
//! acked, voided, delivered, joined, left, closed) go to Redis as one more part of the
//! layer's group commit (`durable.rs`, `session_sink.rs`): one script per commit
//! ([`COMMIT`]) appends each session's batch to its list `<prefix>sess:<id>:<token>` (or
//! writes the session whole), refreshes its keys for `Config::session_expiry`, and runs
//! the publications its commands caused. Redis's answer is the commit: an ACK to the
//! client and a DATA envelope whose record is not yet in Redis wait for it, as they wait
//! for `fsync` with a journal file; an error is no ACK.
//!
//! **Ownership.** `<prefix>sess:<id>:<token>:owner` names the node that holds the
//! session. The script writes a session only for its owner: once another node took it
//! over, the old owner's writes are refused (and it drops its copy), so nothing it does
//! afterwards is acknowledged.
//!
//! **Taking over.** A `RESUME` of a session this node does not hold waits for one script
//! ([`CLAIM`]): it makes this node the owner and answers the session's list, in one
//! step. The node replays the list (the journal's replay), restores the session, tells
//! the old owner on `<prefix>nodes` (`taken`: it drops its copy and closes its
//! connection, without a dead letter), and answers the `RESUME` as a node that had held
//! it all along would.
//!
//! **Exactly once across a node's death.** A command's effects on the other nodes (its
//! publications) run in the script that records its delivery: a node that dies leaves
//! both in Redis or neither. Either the new owner knows the command was delivered (and
//! drops the client's resend), or nobody acted on it (and the new owner does, once).

use bytes::Bytes;
use sockeye_core::auth::UserId;
use sockeye_core::handshake::Request;
use sockeye_core::hub::ConnId;
use sockeye_core::journal::encode_record;
use sockeye_core::journal::replay;
use sockeye_core::session::SessionToken;
use sockeye_core::{CloseCode, Seq, SessionId};

use crate::answer;
use crate::cluster::Pending;
use crate::cluster_mail::{Reply, PUBLISH_OR_STORE};
use crate::conn::Phase;
use crate::metrics::Rejection;
use crate::server::{Owner, Server};
use crate::session_sink::{
    decode, sent_payloads, Deferred, DeferredOp, SessionWrite, SinkBatch, WriteKind,
};
use crate::Level;
use sockeye_core::journal::Record;

/// `EVAL` script of a commit. `KEYS`: each session's list and owner key. `ARGV`: this
/// node, the keys' lifetime in ms, the number of sessions, then per session its kind
/// (`a`ppend, `r`ewrite, `t`ouch, `d`elete) and batch; then the deferred publications,
/// each `p channel payload cause` or `s channel list envelope record limit age cause`
/// (`cause`: the 1-based index of the session whose command it is, or 0), and the
/// conditional voids `v session void cause`: the void record (and commit marker) goes
/// onto session `session`'s list only if `cause` was refused as another node's. Answers
/// `{refused, results}`: `refused` lists `i` for a session another node owns and `-i`
/// for one whose list is gone (expired); `results` one integer per publication (its
/// receivers; for `s` 0 stored or -1 full as in `PUBLISH_OR_STORE`; -2 not run, its cause
/// was refused; for `v` 1 appended, 0 not).
pub(crate) const COMMIT: &str = "\
local node, ttl, n = ARGV[1], ARGV[2], tonumber(ARGV[3])
local refused, skip, taken = {}, {}, {}
for i = 1, n do
  local list, owner = KEYS[2 * i - 1], KEYS[2 * i]
  local kind, blob = ARGV[2 + 2 * i], ARGV[3 + 2 * i]
  local held = redis.call('GET', owner)
  if held and held ~= node then
    refused[#refused + 1] = i
    skip[i] = true
    taken[i] = true
  elseif kind == 'd' then
    redis.call('DEL', list, owner)
  elseif kind ~= 'r' and redis.call('EXISTS', list) == 0 then
    refused[#refused + 1] = -i
    skip[i] = true
  else
    if kind == 'r' then redis.call('DEL', list) end
    if kind ~= 't' then redis.call('RPUSH', list, blob) end
    redis.call('SET', owner, node, 'PX', ttl)
    redis.call('PEXPIRE', list, ttl)
  end
end
local results = {}
local at = 4 + 2 * n
while at <= #ARGV do
  local op = ARGV[at]
  local width = 4
  if op == 's' then width = 8 end
  local cause = tonumber(ARGV[at + width - 1])
  local r = -2
  if op == 'v' then
    local si = tonumber(ARGV[at + 1])
    r = 0
    if taken[cause] and not skip[si] and redis.call('EXISTS', KEYS[2 * si - 1]) == 1 then
      redis.call('RPUSH', KEYS[2 * si - 1], ARGV[at + 2])
      r = 1
    end
  elseif not skip[cause] then
    if op == 'p' then
      r = redis.call('PUBLISH', ARGV[at + 1], ARGV[at + 2])
    else
      r = redis.call('PUBLISH', ARGV[at + 1], ARGV[at + 3])
      if r == 0 then
        if redis.call('LLEN', ARGV[at + 2]) >= tonumber(ARGV[at + 5]) then
          r = -1
        else
          redis.call('RPUSH', ARGV[at + 2], ARGV[at + 4])
          redis.call('PEXPIRE', ARGV[at + 2], ARGV[at + 6])
        end
      end
    end
  end
  results[#results + 1] = r
  at = at + width
end
return {refused, results}
";

/// `EVAL` script of a take-over. `KEYS`: the session's list and owner key; `ARGV`: this
/// node, the keys' lifetime in ms. Answers nil if Redis has no such session, else
/// `{old owner or '', batches}`, this node being the owner from now on.
pub(crate) const CLAIM: &str = "\
local items = redis.call('LRANGE', KEYS[1], 0, -1)
if #items == 0 then return false end
local old = redis.call('GET', KEYS[2]) or ''
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {old, items}
";

impl Server {
    /// The key of `id`'s list (`…:owner` is its owner key).
    fn session_key(&self, id: SessionId, token: &SessionToken) -> Option<String> {
        let cluster = self.cluster.as_ref()?;
        let token: String = token
            .as_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Some(cluster.channel(&format!("sess:{id}:{token}")))
    }

    fn session_ttl(&self) -> Bytes {
        Bytes::from(self.config.session_expiry.as_millis().max(1).to_string())
    }

    /// Redis's part of a commit: one [`COMMIT`] script.
    pub(crate) fn commit_sessions(&mut self, batch: SinkBatch) {
        let Some(node) = self.cluster.as_ref().map(|c| c.node_id().to_string()) else {
            return;
        };
        let n = batch.sessions.len();
        let mut keys = Vec::with_capacity(2 * n);
        let mut argv = vec![
            Bytes::from(node),
            self.session_ttl(),
            Bytes::from(n.to_string()),
        ];
        for write in &batch.sessions {
            let Some(key) = self.session_key(write.id, &write.token) else {
                return;
            };
            keys.push(Bytes::from(format!("{key}:owner")));
            keys.push(Bytes::from(key));
            let last = keys.len() - 1;
            keys.swap(last - 1, last);
            argv.push(Bytes::from_static(write.kind.code()));
            argv.push(write.blob.clone());
        }
        let index_of = |id: SessionId| batch.sessions.iter().position(|w| w.id == id);
        let mut deferred = batch.deferred;
        // A void whose cause or session this commit does not write cannot be decided by
        // it (a cause taken before its commit voids at once: `drop_taken`).
        deferred.retain(|d| match d.op {
            DeferredOp::Void { session, .. } => {
                index_of(session).is_some() && d.cause.and_then(index_of).is_some()
            }
            _ => true,
        });
        for Deferred { cause, op, .. } in &deferred {
            let cause = cause.and_then(index_of).map_or(0, |i| i + 1);
            match op {
                DeferredOp::Publish { channel, payload } => {
                    argv.extend([Bytes::from_static(b"p"), channel.clone(), payload.clone()]);
                }
                DeferredOp::Store(args) => {
                    argv.push(Bytes::from_static(b"s"));
                    argv.extend(args.iter().cloned());
                }
                DeferredOp::Void { session, blob, .. } => {
                    let at = index_of(*session).map_or(0, |i| i + 1);
                    argv.extend([
                        Bytes::from_static(b"v"),
                        Bytes::from(at.to_string()),
                        blob.clone(),
                    ]);
                }
            }
            argv.push(Bytes::from(cause.to_string()));
        }
        let mut args = vec![
            Bytes::from_static(b"EVAL"),
            Bytes::from_static(COMMIT.as_bytes()),
            Bytes::from((2 * n).to_string()),
        ];
        args.extend(keys);
        args.extend(argv);
        let written = batch.sessions;
        self.command_now(args, Pending::Commit { written, deferred });
    }

    /// Whether a publication the current input makes waits for the commit of the
    /// records that caused it (and runs in its script): with sessions in Redis, while
    /// records wait for Redis.
    pub(crate) fn defers(&self) -> bool {
        self.durable.sink_dirty()
    }

    /// Puts a publication into the next commit's script.
    pub(crate) fn defer(&mut self, id: u64, op: DeferredOp) {
        let cause = self.cause;
        if let Some(sink) = &mut self.durable.sink {
            sink.defer(Deferred { id, cause, op });
        }
    }

    /// A command's arguments, if it is one a commit can carry: `PUBLISH_OR_STORE`'s.
    pub(crate) fn deferrable(args: &[Bytes]) -> Option<[Bytes; 6]> {
        match args {
            [eval, script, _two, rest @ ..]
                if &eval[..] == b"EVAL"
                    && &script[..] == PUBLISH_OR_STORE.as_bytes()
                    && rest.len() == 6 =>
            {
                Some(std::array::from_fn(|i| rest[i].clone()))
            }
            _ => None,
        }
    }

    /// Redis answered a commit that wrote `written` and ran `deferred`.
    pub(crate) fn sessions_committed(
        &mut self,
        written: Vec<SessionWrite>,
        deferred: Vec<Deferred>,
        result: Result<Reply, String>,
    ) {
        let mut ok = true;
        let mut lost = Vec::new();
        let mut taken = Vec::new();
        let results = match result {
            Ok(Reply::List(parts)) if parts.len() == 2 => {
                let mut parts = parts.into_iter();
                let (Some(Reply::List(refused)), Some(Reply::List(answers))) =
                    (parts.next(), parts.next())
                else {
                    return self.sessions_commit_failed(deferred, "unexpected answer");
                };
                for refusal in refused {
                    let Reply::Int(i) = refusal else { continue };
                    let index = (i.unsigned_abs() as usize).checked_sub(1);
                    let Some(write) = index.and_then(|at| written.get(at)) else {
                        continue;
                    };
                    let id = write.id;
                    if i > 0 {
                        taken.push(id);
                        if write.kind == WriteKind::Append {
                            // What reached this node after the take-over: never in Redis.
                            let records = decode(&write.blob);
                            self.lost_in_takeover(&write.user, &records);
                        }
                        // Nor what its commands sent here, which the new owner does again.
                        self.drop_effects(id, 0);
                        self.drop_taken(id);
                    } else {
                        // Its list expired: written whole at the next commit, and this
                        // one did not make its records durable.
                        if let Some(sink) = &mut self.durable.sink {
                            sink.lost(id);
                        }
                        lost.push(id);
                        ok = false;
                    }
                }
                answers
            }
            Ok(other) => {
                return self.sessions_commit_failed(deferred, &format!("answered {other:?}"))
            }
            Err(e) => return self.sessions_commit_failed(deferred, &e),
        };
        let mut results = results.into_iter();
        let mut again = Vec::new();
        for d in deferred {
            if let DeferredOp::Void { session, seq, .. } = d.op {
                // Decided by the script: void in Redis with its cause taken (or, if
                // `session`'s list had expired, in its whole write next time).
                let _ = results.next();
                if d.cause.is_some_and(|c| taken.contains(&c)) {
                    self.void_message(session, seq);
                }
                continue;
            }
            match results.next() {
                Some(Reply::Int(-2)) if d.cause.is_some_and(|c| lost.contains(&c)) => {
                    // Not run because its session's list was gone: with the session
                    // written whole, next time.
                    again.push(d);
                }
                Some(Reply::Int(-2)) => {
                    // Its session is another node's now, which acts on the command
                    // again (this node's delivery of it was never recorded).
                    if let Some(cluster) = &mut self.cluster {
                        cluster.pending.remove(&d.id);
                    }
                }
                Some(result) => self.deferred_outcome(&d, Ok(result)),
                None => again.push(d),
            }
        }
        if !again.is_empty() {
            self.requeue(again);
        }
        if !ok {
            self.log(
                Level::Warn,
                "cluster: a session's list had expired in redis; it is written again".into(),
            );
        }
        self.commit_part_done(ok);
    }

    /// Redis's part of a commit failed, or may have: its publications go again with the
    /// next commit, in order, with the records that caused them (written whole).
    fn sessions_commit_failed(&mut self, deferred: Vec<Deferred>, why: &str) {
        self.metrics.cluster_commit_failures += 1;
        self.log(
            Level::Error,
            format!("cluster: sessions not committed to redis: {why}"),
        );
        self.requeue(deferred);
        self.commit_part_done(false);
    }

    fn requeue(&mut self, deferred: Vec<Deferred>) {
        if let Some(sink) = &mut self.durable.sink {
            sink.requeue(deferred);
        }
    }

    fn deferred_outcome(&mut self, d: &Deferred, result: Result<Reply, String>) {
        match d.op {
            DeferredOp::Publish { .. } => {
                let result = result.map(|r| match r {
                    Reply::Int(n) => n.max(0) as u64,
                    _ => 0,
                });
                self.on_published(d.id, result);
            }
            DeferredOp::Store(_) => self.on_reply(d.id, result),
            // Decided in `sessions_committed`.
            DeferredOp::Void { .. } => {}
        }
    }

    /// Message `seq` was put into `session` by a command of the session being handled
    /// (`self.cause`): should Redis refuse that session's records in the same commit
    /// (another node took it over and acts on the command again), the script voids the
    /// message in `session`'s list too, and this node voids it here.
    pub(crate) fn defer_void(&mut self, session: SessionId, seq: Seq) {
        if self.durable.sink.is_none() || self.cause.is_none_or(|c| c == session) {
            return;
        }
        let mut blob = Vec::new();
        encode_record(&Record::ServerVoided { id: session, seq }, &mut blob);
        encode_record(&Record::Commit, &mut blob);
        let blob = Bytes::from(blob);
        self.defer(0, DeferredOp::Void { session, seq, blob });
    }

    /// Voids message `seq` of `session`, which must not exist (its cause is acted on by
    /// another node): its DATA, held until now, goes out void, and the journal and Redis
    /// record it. A message that may have left already cannot be voided: logged.
    fn void_message(&mut self, session: SessionId, seq: Seq) {
        let Some(s) = self.store.get_mut(session) else {
            return;
        };
        if s.void_untransmitted(seq).is_some() {
            self.durable
                .append(&Record::ServerVoided { id: session, seq });
        } else {
            self.log(
                Level::Warn,
                format!(
                    "cluster: message {seq:?} of session {session} may reach its client twice: its cause was taken over after it left"
                ),
            );
        }
    }

    /// Whether a `RESUME` of `id` waits for Redis: sessions live there, Redis is up, and
    /// this node does not hold it.
    pub(crate) fn must_claim(&self, id: SessionId) -> bool {
        self.durable.sink.is_some()
            && self.cluster_up()
            && !self.owners.contains_key(&id)
            && self.store.get(id).is_none()
    }

    /// Whether a `RESUME` of `id` cannot be answered now: sessions live in Redis, which
    /// is down, and this node does not hold it.
    pub(crate) fn claim_unreachable(&self, id: SessionId) -> bool {
        self.durable.sink.is_some()
            && self.cluster_down()
            && !self.owners.contains_key(&id)
            && self.store.get(id).is_none()
    }

    /// Parks the `RESUME` upgrade on `conn` until Redis hands over session `id`.
    pub(crate) fn claim(
        &mut self,
        conn: ConnId,
        upgrade: Request,
        user: UserId,
        id: SessionId,
        token: SessionToken,
    ) {
        let (Some(key), Some(node)) = (
            self.session_key(id, &token),
            self.cluster.as_ref().map(|c| c.node_id().to_string()),
        ) else {
            return self.resume_or_start(conn, upgrade, user);
        };
        if let Some(c) = self.conns.get_mut(&conn) {
            c.phase = Phase::AwaitingAdmission {
                upgrade: Box::new(upgrade),
                user,
            };
        }
        let args = vec![
            Bytes::from_static(b"EVAL"),
            Bytes::from_static(CLAIM.as_bytes()),
            Bytes::from_static(b"2"),
            Bytes::from(key.clone()),
            Bytes::from(format!("{key}:owner")),
            Bytes::from(node),
            self.session_ttl(),
        ];
        self.command_now(args, Pending::Claim { conn, session: id });
    }

    /// Redis answered the take-over of `session` for the upgrade on `conn`.
    pub(crate) fn claimed(
        &mut self,
        conn: ConnId,
        session: SessionId,
        result: Result<Reply, String>,
    ) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if !matches!(c.phase, Phase::AwaitingAdmission { .. }) {
            return;
        }
        let Phase::AwaitingAdmission { upgrade, user } =
            std::mem::replace(&mut c.phase, Phase::Done)
        else {
            return;
        };
        match result {
            Ok(Reply::List(parts)) => {
                if let [Reply::Data(old), Reply::List(items)] = &parts[..] {
                    self.take_over(session, &user, old, items);
                }
            }
            Ok(_) => {}
            Err(_) => {
                // Redis may hold it: not refused as unknown, but to be tried again.
                self.metrics.reject(Rejection::OverLimit);
                let why = "session store unreachable: try again";
                return self.answer(conn, answer::text(503, why));
            }
        }
        // Held here now, or unknown to Redis (refused as unknown, as on one node).
        self.resume_or_start(conn, *upgrade, user);
    }

    /// Rebuilds `session` from its batches in Redis, now this node's, and tells `old`.
    fn take_over(&mut self, session: SessionId, user: &UserId, old: &Bytes, items: &[Reply]) {
        if self.owners.contains_key(&session) || self.store.get(session).is_some() {
            return;
        }
        let mut bytes = Vec::new();
        for item in items {
            if let Reply::Data(batch) = item {
                bytes.extend_from_slice(batch);
            }
        }
        let replayed = replay(&bytes);
        let Some(snapshot) = replayed.state.session(&session).cloned() else {
            return self.log(
                Level::Warn,
                format!(
                    "cluster: session {session} in redis does not replay ({:?})",
                    replayed.error
                ),
            );
        };
        if snapshot.user != user.as_str() {
            // Someone else's looks unknown; the owner it had keeps it.
            return;
        }
        let now = self.now;
        if let Err(e) = self.store.restore(now, &snapshot) {
            return self.log(
                Level::Warn,
                format!("cluster: session {session} not taken over: {e}"),
            );
        }
        self.durable.adopt(&snapshot, items.len());
        self.owners.insert(
            session,
            Owner {
                user: user.clone(),
                conn: None,
                ghost: None,
                rooms: snapshot.rooms.iter().cloned().collect(),
                journaled: snapshot.client_delivered,
                released: snapshot.client_delivered,
            },
        );
        self.metrics.cluster_takeovers += 1;
        let old = String::from_utf8_lossy(old).into_owned();
        self.log(
            Level::Debug,
            format!("cluster: session {session} taken over from node {old:?}"),
        );
        if !old.is_empty() && !self.cluster.as_ref().is_some_and(|c| c.is_self(&old)) {
            self.announce_taken(session);
        }
    }

    /// Another node took `session` over (its `taken`, or Redis refused this node's
    /// write): this node's copy goes without a dead letter (the messages live on there),
    /// and the connection carrying it is closed.
    pub(crate) fn drop_taken(&mut self, session: SessionId) {
        if !self.owners.contains_key(&session) && self.store.get(session).is_none() {
            return;
        }
        let forgotten = self.durable.taken(session);
        let unwritten = forgotten.unwritten;
        if let Some(cluster) = &mut self.cluster {
            for id in forgotten.dropped {
                cluster.pending.remove(&id);
            }
        }
        for (receiver, seq) in forgotten.voids {
            // Not committed yet: the void goes with the message's own record.
            self.void_message(receiver, seq);
        }
        let now = self.now;
        if let Some(user) = self
            .owners
            .get(&session)
            .map(|o| o.user.as_str().to_string())
        {
            self.lost_in_takeover(&user, &unwritten);
        }
        if let Some(owner) = self.owners.remove(&session) {
            if let Some(ghost) = owner.ghost {
                self.ghosts.remove(&ghost);
                self.hub.disconnect(now, ghost);
            }
            if let Some(conn) = owner.conn {
                self.close_ws(
                    conn,
                    CloseCode::GOING_AWAY,
                    "session resumed on another node",
                );
            }
        }
        self.store.forget(session);
        self.held.remove(&session);
        // What its commands sent here waits for commits not yet asked for: Redis will
        // never have their records (a commit in flight tells for itself).
        self.drop_effects(session, self.durable.next_ticket());
        self.log(
            Level::Debug,
            format!("cluster: session {session} is held by another node now"),
        );
        self.deliver();
    }
}

impl Server {
    /// Drops the plain texts `session`'s commands sent that wait for commit `from` or
    /// later.
    fn drop_effects(&mut self, session: SessionId, from: u64) {
        for c in self.conns.values_mut() {
            c.drop_caused_by(session, from);
        }
    }

    /// Messages for `user`'s session that reached this node after another took the
    /// session over, and that Redis never got: dead letters, never silently gone (the
    /// client did not see them: their DATA waited for the commit).
    fn lost_in_takeover(&mut self, user: &str, records: &[Record]) {
        let lost: Vec<Bytes> = sent_payloads(records).cloned().collect();
        for payload in lost {
            self.dead_letter(
                user,
                payload,
                "reliable session: taken over by another node before this one recorded it",
                false,
            );
        }
    }
}

/// A session id from its 32 hex digits.
pub(crate) fn parse_session(hex: &str) -> Option<SessionId> {
    let bytes = hex.as_bytes();
    if bytes.len() != 32 {
        return None;
    }
    let mut id = [0u8; 16];
    for (i, pair) in bytes.chunks(2).enumerate() {
        let text = std::str::from_utf8(pair).ok()?;
        id[i] = u8::from_str_radix(text, 16).ok()?;
    }
    Some(SessionId(id))
}
