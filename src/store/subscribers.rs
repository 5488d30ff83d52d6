//! The sessions that follow a topic actor, in its own SQLite, and the
//! instance's memory of them (see `actors::fanout` for the push).

use std::cell::RefCell;
use std::rc::Rc;

use worker::SqlStorage;

use super::{exec, rows};
use crate::domain::followers::{self, Follower};
use crate::domain::time::Millis;
use crate::error::ApiError;

#[derive(Clone)]
pub struct Subscribers {
    sql: SqlStorage,
    memory: SubscriberMemory,
}

/// The followers as this instance last read or wrote them (`None`: not
/// read yet). Only this actor changes the list, so a push to a topic nobody
/// follows costs no statement.
#[derive(Clone, Default)]
pub struct SubscriberMemory(Rc<RefCell<Option<Vec<Follower>>>>);

impl SubscriberMemory {
    /// Remembers that a topic being created has nobody subscribed yet (a
    /// subscription needs the topic to exist), so its first pushes cost no
    /// statement.
    pub fn none_yet(&self) {
        self.0.replace(Some(Vec::new()));
    }

    /// A write was rolled back: the list is read again.
    pub fn forget(&self) {
        self.0.replace(None);
    }
}

impl Subscribers {
    pub fn new(sql: SqlStorage, memory: SubscriberMemory) -> Self {
        Subscribers { sql, memory }
    }

    /// Creates the table, or adds the columns a table made before followers
    /// had holders and expiries lacks (an `ALTER` that fails because the
    /// column exists is the check).
    fn init(&self) -> Result<(), ApiError> {
        exec(&self.sql, "CREATE TABLE IF NOT EXISTS subscribers (session TEXT PRIMARY KEY, since INTEGER NOT NULL, holder TEXT, until INTEGER)", vec![])?;
        for column in ["holder TEXT", "until INTEGER"] {
            let _ = exec(&self.sql, &format!("ALTER TABLE subscribers ADD COLUMN {column}"), vec![]);
        }
        Ok(())
    }

    /// Adds `f` unless its holder's sessions, or all sessions, follow the
    /// topic as often as they may already ([`followers::admit`]).
    pub fn add(&self, mut f: Follower, cap: u32, now: Millis) -> Result<(), ApiError> {
        let list = self.list();
        if list.iter().any(|s| !s.live(now)) {
            // A topic that no longer pushes (an ended run, an answer) would
            // otherwise keep every expired follower it ever had.
            self.drop_expired(now)?;
        }
        followers::admit(&list, &f, cap, now)?;
        f.since = now;
        self.write(
            "INSERT OR REPLACE INTO subscribers (session, since, holder, until) VALUES (?, ?, ?, ?)",
            vec![f.session.as_str().into(), now.into(), f.holder.clone().into(), f.until.into()],
        )?;
        self.remember(|list| {
            list.retain(|s| s.session != f.session);
            list.push(f);
        });
        Ok(())
    }

    pub fn remove(&self, session: &str) -> Result<(), ApiError> {
        self.write("DELETE FROM subscribers WHERE session = ?", vec![session.into()])?;
        self.remember(|list| list.retain(|s| s.session != session));
        Ok(())
    }

    /// Removes `session` if it subscribed before `at`: a push begun at `at`
    /// found it gone, but it may have subscribed again while the push went on.
    pub fn remove_if_before(&self, session: &str, at: Millis) -> Result<(), ApiError> {
        self.write("DELETE FROM subscribers WHERE session = ? AND since < ?", vec![session.into(), at.into()])?;
        self.remember(|list| list.retain(|s| s.session != session || s.since >= at));
        Ok(())
    }

    /// Drops the followers whose sessions expired by `now`: they have ended,
    /// and nobody is told.
    pub fn drop_expired(&self, now: Millis) -> Result<(), ApiError> {
        self.write("DELETE FROM subscribers WHERE until <= ?", vec![now.into()])?;
        self.remember(|list| list.retain(|s| s.live(now)));
        Ok(())
    }

    /// Applies a landed write to the remembered list, if there is one.
    fn remember(&self, change: impl FnOnce(&mut Vec<Follower>)) {
        if let Some(list) = self.memory.0.borrow_mut().as_mut() {
            change(list);
        }
    }

    /// A write that creates or widens the table only when it fails (the
    /// first subscriber, a table of the old layout), so the common case is
    /// one statement.
    fn write(&self, q: &str, params: Vec<worker::SqlStorageValue>) -> Result<(), ApiError> {
        exec(&self.sql, q, params.clone()).or_else(|_| {
            self.init()?;
            exec(&self.sql, q, params)
        })
    }

    /// The following sessions, oldest first.
    pub fn list(&self) -> Vec<Follower> {
        if let Some(list) = self.memory.0.borrow().as_ref() {
            return list.clone();
        }
        const SELECT: &str = "SELECT session, holder, until, since FROM subscribers ORDER BY since";
        let read = rows::<Follower>(&self.sql, SELECT, vec![]).or_else(|e| {
            // No table yet (nobody ever subscribed), or one of the old layout.
            if !self.exists() {
                return Ok(Vec::new());
            }
            self.init().map_err(|_| e)?;
            rows::<Follower>(&self.sql, SELECT, vec![])
        });
        // Not remembered on failure: the next push reads again.
        let Ok(list) = read else { return Vec::new() };
        self.memory.0.replace(Some(list.clone()));
        list
    }

    fn exists(&self) -> bool {
        crate::store::table_exists(&self.sql, "subscribers")
    }
}
