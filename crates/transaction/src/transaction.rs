//! One transaction: its status, its resources, its hooks and the commit protocol.

use std::any::{Any, TypeId};
use std::cell::{Cell, RefCell};
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::rc::{Rc, Weak};

use crate::data_manager::{DataManager, Vote, WriteState};
use crate::error::{BoxError, Error, HeuristicError, Phase, ResourceError, Result};
use crate::log::{Branch, DecisionRecord};
use crate::manager::ManagerInner;
use crate::savepoint::{Savepoint, SavepointMark};
use crate::{Synchronizer, TransactionId};

/// Where a transaction is in its life.
///
/// ```text
///            join / note / savepoint
///              ┌──────┐
///              ▼      │
/// begin ──► Active ───┘──── doom() ───► Doomed ── commit() ─► Err(Doomed)
///              │                          │
///           commit()                   abort()
///              ▼                          │
///         Committing ──── failure ──► CommitFailed ── abort() ──┐
///              │                                                │
///           success                     Active ── abort() ──────┤
///              ▼                                                ▼
///          Committed                                         Aborted
/// ```
///
/// # Examples
///
/// ```
/// use transaction::{Status, TransactionManager};
///
/// let manager = TransactionManager::new();
/// let txn = manager.begin()?;
/// assert_eq!(txn.status(), Status::Active);
/// txn.doom()?;
/// assert_eq!(txn.status(), Status::Doomed);
/// txn.abort()?;
/// assert_eq!(txn.status(), Status::Aborted);
/// # Ok::<(), transaction::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Status {
    /// Work may be joined and the transaction may be committed or aborted.
    Active,
    /// The commit protocol is running.
    Committing,
    /// Every resource committed.
    Committed,
    /// Doomed: it can only be aborted.
    Doomed,
    /// A commit (or savepoint rollback) failed: only `abort()` is accepted.
    CommitFailed,
    /// Aborted: nothing was committed.
    Aborted,
}

impl Status {
    /// The status as a lowercase phrase.
    ///
    /// # Examples
    ///
    /// ```
    /// use transaction::Status;
    ///
    /// assert_eq!(Status::CommitFailed.as_str(), "commit failed");
    /// assert_eq!(Status::Active.to_string(), "active"); // Display is as_str
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Committing => "committing",
            Status::Committed => "committed",
            Status::Doomed => "doomed",
            Status::CommitFailed => "commit failed",
            Status::Aborted => "aborted",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

type BeforeCommitHook = Box<dyn FnOnce(&Transaction) -> std::result::Result<(), BoxError>>;
type AfterCommitHook = Box<dyn FnOnce(&Transaction, bool) -> std::result::Result<(), BoxError>>;
type AbortHook = Box<dyn FnOnce(&Transaction) -> std::result::Result<(), BoxError>>;

/// The commit order: two-phase resources first, then one-phase ones; each group by sort
/// key.
fn commit_order(a: &Rc<dyn DataManager>, b: &Rc<dyn DataManager>) -> Ordering {
    a.is_one_phase()
        .cmp(&b.is_one_phase())
        .then_with(|| a.sort_key().cmp(b.sort_key()))
}

/// The votes of one commit, in vote order: on the stack for up to 16 resources, so that
/// a commit allocates nothing for them.
struct Votes {
    inline: [Vote; Votes::INLINE],
    len: usize,
    spilled: Vec<Vote>,
}

impl Votes {
    const INLINE: usize = 16;

    fn new() -> Self {
        Self {
            inline: [Vote::ReadOnly; Self::INLINE],
            len: 0,
            spilled: Vec::new(),
        }
    }

    fn push(&mut self, vote: Vote) {
        if self.spilled.is_empty() && self.len < Self::INLINE {
            self.inline[self.len] = vote;
            self.len += 1;
        } else {
            if self.spilled.is_empty() {
                self.spilled.extend_from_slice(&self.inline[..self.len]);
            }
            self.spilled.push(vote);
        }
    }
}

impl std::ops::Deref for Votes {
    type Target = [Vote];

    fn deref(&self) -> &[Vote] {
        if self.spilled.is_empty() {
            &self.inline[..self.len]
        } else {
            &self.spilled
        }
    }
}

/// Sorts `resources` by [`commit_order`], stably. A transaction joins a handful of
/// resources: an insertion sort does fewer comparisons and less work than the general
/// sort for those; a long list goes to the general sort.
fn sort_in_commit_order(resources: &mut [Rc<dyn DataManager>]) {
    if resources.len() > 16 {
        resources.sort_by(commit_order);
        return;
    }
    for i in 1..resources.len() {
        let mut j = i;
        while j > 0 && commit_order(&resources[j - 1], &resources[j]) == Ordering::Greater {
            resources.swap(j - 1, j);
            j -= 1;
        }
    }
}

#[derive(Default)]
struct Meta {
    user: String,
    description: String,
    /// `None` until the first extension is set: most transactions have none, and an empty
    /// `BTreeMap` still costs its drop.
    extension: Option<BTreeMap<String, String>>,
}

struct State {
    status: Status,
    resources: Vec<Rc<dyn DataManager>>,
    before_commit: Vec<BeforeCommitHook>,
    after_commit: Vec<AfterCommitHook>,
    before_abort: Vec<AbortHook>,
    after_abort: Vec<AbortHook>,
    meta: Meta,
    /// Keyed by type; a vector, as a transaction holds few values (and an empty one costs
    /// nothing to create, unlike a `HashMap` and its random state).
    data: Vec<(TypeId, Rc<dyn Any>)>,
    savepoints: Vec<Rc<SavepointMark>>,
}

pub(crate) struct Inner {
    id: TransactionId,
    manager: Weak<ManagerInner>,
    state: RefCell<State>,
    next_savepoint: Cell<u64>,
    /// During a commit, whether a subscriber wants phase spans (asked once per commit
    /// rather than once per resource and phase); `None` otherwise.
    phase_spans: Cell<Option<bool>>,
}

/// A transaction: the unit of work that commits or aborts across every joined resource.
///
/// It is a cheap handle (`Clone` shares the same transaction) bound to the thread that
/// began it: it is neither `Send` nor `Sync`. Most code reaches it through the current
/// thread's manager ([`crate::get`]) rather than holding it.
///
/// # Examples
///
/// ```
/// let txn = transaction::begin()?;
/// txn.note("create the invoice")?;
/// txn.set_user("alice", "/accounts");
/// assert_eq!(txn.status(), transaction::Status::Active);
/// transaction::commit()?;
/// assert_eq!(txn.status(), transaction::Status::Committed);
/// # Ok::<(), transaction::Error>(())
/// ```
#[derive(Clone)]
pub struct Transaction {
    inner: Rc<Inner>,
}

impl fmt::Debug for Transaction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.inner.state.try_borrow();
        let mut d = f.debug_struct("Transaction");
        d.field("id", &self.inner.id);
        if let Ok(st) = st {
            d.field("status", &st.status)
                .field("resources", &st.resources.len());
        }
        d.finish()
    }
}

impl Transaction {
    /// A new transaction; `resources` is an empty list to fill (with its capacity kept
    /// from an earlier transaction).
    pub(crate) fn new(manager: Weak<ManagerInner>, resources: Vec<Rc<dyn DataManager>>) -> Self {
        debug_assert!(resources.is_empty());
        Self {
            inner: Rc::new(Inner {
                id: TransactionId::next(),
                manager,
                state: RefCell::new(State {
                    status: Status::Active,
                    resources,
                    before_commit: Vec::new(),
                    after_commit: Vec::new(),
                    before_abort: Vec::new(),
                    after_abort: Vec::new(),
                    meta: Meta::default(),
                    data: Vec::new(),
                    savepoints: Vec::new(),
                }),
                next_savepoint: Cell::new(0),
                phase_spans: Cell::new(None),
            }),
        }
    }

    /// Whether phase spans are wanted: the answer taken at the start of the current
    /// commit, or asked now outside a commit.
    #[inline]
    pub(crate) fn phase_spans(&self) -> bool {
        self.inner
            .phase_spans
            .get()
            .unwrap_or_else(crate::trace::phases_enabled)
    }

    /// The transaction's unique id; resources use it to name their branches.
    ///
    /// # Examples
    ///
    /// ```
    /// let manager = transaction::TransactionManager::new();
    /// let txn = manager.begin()?;
    /// assert_eq!(txn.clone().id(), txn.id()); // handles share the transaction
    /// let next = manager.begin()?;
    /// assert_ne!(next.id(), txn.id());
    /// # Ok::<(), transaction::Error>(())
    /// ```
    pub fn id(&self) -> TransactionId {
        self.inner.id
    }

    /// The current status.
    ///
    /// # Examples
    ///
    /// ```
    /// use transaction::{Status, TransactionManager};
    ///
    /// let manager = TransactionManager::new();
    /// let txn = manager.begin()?;
    /// assert_eq!(txn.status(), Status::Active);
    /// txn.commit()?;
    /// assert_eq!(txn.status(), Status::Committed);
    /// # Ok::<(), transaction::Error>(())
    /// ```
    pub fn status(&self) -> Status {
        self.inner.state.borrow().status
    }

    /// Whether two handles refer to the same transaction.
    ///
    /// # Examples
    ///
    /// ```
    /// let manager = transaction::TransactionManager::new();
    /// let txn = manager.begin()?;
    /// assert!(manager.get()?.ptr_eq(&txn));
    /// let next = manager.begin()?;
    /// assert!(!next.ptr_eq(&txn));
    /// # Ok::<(), transaction::Error>(())
    /// ```
    pub fn ptr_eq(&self, other: &Transaction) -> bool {
        Rc::ptr_eq(&self.inner, &other.inner)
    }

    /// Whether the transaction is doomed (it can only be aborted).
    ///
    /// # Examples
    ///
    /// ```
    /// let manager = transaction::TransactionManager::new();
    /// let txn = manager.begin()?;
    /// assert!(!txn.is_doomed());
    /// txn.doom()?;
    /// assert!(txn.is_doomed());
    /// # Ok::<(), transaction::Error>(())
    /// ```
    pub fn is_doomed(&self) -> bool {
        self.status() == Status::Doomed
    }

    /// Dooms the transaction: a later `commit()` fails with [`Error::Doomed`] and changes
    /// nothing, while `abort()` works as usual. Dooming is sticky until the transaction ends.
    ///
    /// # Errors
    ///
    /// [`Error::TransactionFailed`] after a failed commit, [`Error::InvalidState`] once the
    /// transaction has ended.
    ///
    /// # Examples
    ///
    /// ```
    /// use transaction::{Error, Status, TransactionManager};
    ///
    /// let manager = TransactionManager::new();
    /// let txn = manager.begin()?;
    /// txn.doom()?;
    /// txn.doom()?; // dooming twice is fine
    /// assert!(matches!(txn.commit(), Err(Error::Doomed)));
    /// txn.abort()?;
    /// assert!(matches!(txn.doom(), Err(Error::InvalidState { status: Status::Aborted, .. })));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn doom(&self) -> Result<()> {
        let mut st = self.inner.state.borrow_mut();
        match st.status {
            Status::Active | Status::Doomed => {
                st.status = Status::Doomed;
                Ok(())
            }
            Status::CommitFailed => Err(Error::TransactionFailed),
            status => Err(Error::InvalidState {
                operation: "doom",
                status,
            }),
        }
    }

    /// Joins a resource to the transaction, so it takes part in its commit or abort.
    /// Joining the same resource (the same `Rc`) twice has no effect.
    ///
    /// # Errors
    ///
    /// [`Error::TransactionFailed`] after a failed commit; [`Error::InvalidState`] while
    /// committing or once the transaction has ended.
    ///
    /// # Examples
    ///
    /// ```
    /// use transaction::testing::{Journal, Kind, ScriptedDataManager};
    /// use transaction::{Error, TransactionManager};
    ///
    /// let db = ScriptedDataManager::new("db", Kind::TwoPhase, &Journal::new());
    /// let manager = TransactionManager::new();
    /// let txn = manager.begin()?;
    /// txn.join(db.clone())?;
    /// txn.join(db.clone())?; // the same resource: no effect
    /// assert_eq!(txn.resource_count(), 1);
    /// txn.commit()?;
    /// assert!(matches!(txn.join(db), Err(Error::InvalidState { .. })));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn join(&self, resource: Rc<dyn DataManager>) -> Result<()> {
        let mut st = self.inner.state.borrow_mut();
        match st.status {
            Status::Active | Status::Doomed => {}
            Status::CommitFailed => return Err(Error::TransactionFailed),
            status => {
                return Err(Error::InvalidState {
                    operation: "join",
                    status,
                })
            }
        }
        let addr = Rc::as_ptr(&resource) as *const ();
        if !st
            .resources
            .iter()
            .any(|r| Rc::as_ptr(r) as *const () == addr)
        {
            st.resources.push(resource);
        }
        Ok(())
    }

    /// Whether `resource` has joined this transaction.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::rc::Rc;
    /// use transaction::testing::{Journal, Kind, ScriptedDataManager};
    /// use transaction::{DataManager, TransactionManager};
    ///
    /// let db: Rc<dyn DataManager> = ScriptedDataManager::new("db", Kind::TwoPhase, &Journal::new());
    /// let manager = TransactionManager::new();
    /// let txn = manager.begin()?;
    /// assert!(!txn.has_joined(&db));
    /// txn.join(db.clone())?;
    /// assert!(txn.has_joined(&db));
    /// # Ok::<(), transaction::Error>(())
    /// ```
    pub fn has_joined(&self, resource: &Rc<dyn DataManager>) -> bool {
        let addr = Rc::as_ptr(resource) as *const ();
        self.inner
            .state
            .borrow()
            .resources
            .iter()
            .any(|r| Rc::as_ptr(r) as *const () == addr)
    }

    /// The number of joined resources.
    ///
    /// # Examples
    ///
    /// ```
    /// use transaction::testing::{Journal, Kind, ScriptedDataManager};
    ///
    /// let journal = Journal::new();
    /// let manager = transaction::TransactionManager::new();
    /// let txn = manager.begin()?;
    /// assert_eq!(txn.resource_count(), 0);
    /// txn.join(ScriptedDataManager::new("a", Kind::TwoPhase, &journal))?;
    /// txn.join(ScriptedDataManager::new("b", Kind::TwoPhase, &journal))?;
    /// assert_eq!(txn.resource_count(), 2);
    /// # Ok::<(), transaction::Error>(())
    /// ```
    pub fn resource_count(&self) -> usize {
        self.inner.state.borrow().resources.len()
    }

    /// Appends a line to the description (zope's `note`).
    ///
    /// # Errors
    ///
    /// [`Error::TransactionFailed`] after a failed commit; [`Error::InvalidState`] once the
    /// transaction has ended.
    ///
    /// # Examples
    ///
    /// ```
    /// let manager = transaction::TransactionManager::new();
    /// let txn = manager.begin()?;
    /// txn.note("create the invoice")?;
    /// txn.note("   ")?; // blank: ignored
    /// txn.note(" send the receipt\n")?;
    /// assert_eq!(txn.description(), "create the invoice\nsend the receipt");
    /// # Ok::<(), transaction::Error>(())
    /// ```
    pub fn note(&self, text: &str) -> Result<()> {
        let mut st = self.inner.state.borrow_mut();
        match st.status {
            Status::Active | Status::Doomed | Status::Committing => {}
            Status::CommitFailed => return Err(Error::TransactionFailed),
            status => {
                return Err(Error::InvalidState {
                    operation: "note",
                    status,
                })
            }
        }
        let text = text.trim();
        if text.is_empty() {
            return Ok(());
        }
        if !st.meta.description.is_empty() {
            st.meta.description.push('\n');
        }
        st.meta.description.push_str(text);
        Ok(())
    }

    /// Replaces the description, as assigning zope's `description` does; [`note`](Self::note)
    /// appends to it.
    ///
    /// # Examples
    ///
    /// ```
    /// let manager = transaction::TransactionManager::new();
    /// let txn = manager.begin()?;
    /// txn.note("draft")?;
    /// txn.set_description("close the account");
    /// assert_eq!(txn.description(), "close the account");
    /// txn.note("for alice")?;
    /// assert_eq!(txn.description(), "close the account\nfor alice");
    /// # Ok::<(), transaction::Error>(())
    /// ```
    pub fn set_description(&self, text: impl Into<String>) {
        self.inner.state.borrow_mut().meta.description = text.into();
    }

    /// The description built by [`note`](Self::note) and
    /// [`set_description`](Self::set_description).
    ///
    /// # Examples
    ///
    /// ```
    /// let manager = transaction::TransactionManager::new();
    /// let txn = manager.begin()?;
    /// assert_eq!(txn.description(), "");
    /// txn.note("close the account")?;
    /// assert_eq!(txn.description(), "close the account");
    /// # Ok::<(), transaction::Error>(())
    /// ```
    pub fn description(&self) -> String {
        self.inner.state.borrow().meta.description.clone()
    }

    /// Sets the user, as zope does: `"{path} {user}"`, or the bare user when `path` is empty.
    ///
    /// # Examples
    ///
    /// ```
    /// let manager = transaction::TransactionManager::new();
    /// let txn = manager.begin()?;
    /// txn.set_user("alice", "/accounts");
    /// assert_eq!(txn.user(), "/accounts alice");
    /// txn.set_user("bob", "");
    /// assert_eq!(txn.user(), "bob");
    /// # Ok::<(), transaction::Error>(())
    /// ```
    pub fn set_user(&self, user: &str, path: &str) {
        let value = if path.is_empty() {
            user.to_owned()
        } else {
            format!("{path} {user}")
        };
        self.inner.state.borrow_mut().meta.user = value;
    }

    /// The user set by [`set_user`](Self::set_user).
    ///
    /// # Examples
    ///
    /// ```
    /// let manager = transaction::TransactionManager::new();
    /// let txn = manager.begin()?;
    /// assert_eq!(txn.user(), ""); // not set
    /// txn.set_user("alice", "/accounts");
    /// assert_eq!(txn.user(), "/accounts alice");
    /// # Ok::<(), transaction::Error>(())
    /// ```
    pub fn user(&self) -> String {
        self.inner.state.borrow().meta.user.clone()
    }

    /// Sets an extension (metadata) value.
    ///
    /// # Examples
    ///
    /// ```
    /// let manager = transaction::TransactionManager::new();
    /// let txn = manager.begin()?;
    /// txn.set_extension("request", "GET /orders");
    /// txn.set_extension("request", "POST /orders"); // replaces
    /// assert_eq!(txn.extension("request").as_deref(), Some("POST /orders"));
    /// # Ok::<(), transaction::Error>(())
    /// ```
    pub fn set_extension(&self, key: impl Into<String>, value: impl Into<String>) {
        self.inner
            .state
            .borrow_mut()
            .meta
            .extension
            .get_or_insert_with(BTreeMap::new)
            .insert(key.into(), value.into());
    }

    /// An extension value.
    ///
    /// # Examples
    ///
    /// ```
    /// let manager = transaction::TransactionManager::new();
    /// let txn = manager.begin()?;
    /// txn.set_extension("client", "10.0.0.7");
    /// assert_eq!(txn.extension("client").as_deref(), Some("10.0.0.7"));
    /// assert_eq!(txn.extension("missing"), None);
    /// # Ok::<(), transaction::Error>(())
    /// ```
    pub fn extension(&self, key: &str) -> Option<String> {
        self.inner
            .state
            .borrow()
            .meta
            .extension
            .as_ref()
            .and_then(|e| e.get(key).cloned())
    }

    /// Every extension value, sorted by key.
    ///
    /// # Examples
    ///
    /// ```
    /// let manager = transaction::TransactionManager::new();
    /// let txn = manager.begin()?;
    /// txn.set_extension("b", "2");
    /// txn.set_extension("a", "1");
    /// let keys: Vec<String> = txn.extensions().into_keys().collect();
    /// assert_eq!(keys, ["a", "b"]);
    /// # Ok::<(), transaction::Error>(())
    /// ```
    pub fn extensions(&self) -> BTreeMap<String, String> {
        self.inner
            .state
            .borrow()
            .meta
            .extension
            .clone()
            .unwrap_or_default()
    }

    /// Stores per-transaction data keyed by its type; a caller keeps its data private by
    /// using a type of its own. Replaces a previous value of the same type.
    ///
    /// # Examples
    ///
    /// ```
    /// struct RequestId(u64);
    /// let manager = transaction::TransactionManager::new();
    /// let txn = manager.begin()?;
    /// txn.set_data(RequestId(7));
    /// assert_eq!(txn.data::<RequestId>().map(|r| r.0), Some(7));
    /// # Ok::<(), transaction::Error>(())
    /// ```
    pub fn set_data<T: 'static>(&self, value: T) {
        let value: Rc<dyn Any> = Rc::new(value);
        let key = TypeId::of::<T>();
        let mut st = self.inner.state.borrow_mut();
        let old = match st.data.iter_mut().find(|(k, _)| *k == key) {
            Some((_, slot)) => Some(std::mem::replace(slot, value)),
            None => {
                st.data.push((key, value));
                None
            }
        };
        drop(st);
        // Dropped outside the borrow: its Drop may call back into the transaction.
        drop(old);
    }

    /// The per-transaction data of type `T`, if set.
    ///
    /// # Examples
    ///
    /// ```
    /// struct RequestId(u64);
    /// struct Tenant(&'static str);
    ///
    /// let manager = transaction::TransactionManager::new();
    /// let txn = manager.begin()?;
    /// txn.set_data(RequestId(7));
    /// assert_eq!(txn.data::<RequestId>().map(|r| r.0), Some(7));
    /// assert!(txn.data::<Tenant>().is_none()); // keyed by type
    /// # Ok::<(), transaction::Error>(())
    /// ```
    pub fn data<T: 'static>(&self) -> Option<Rc<T>> {
        let value = self
            .inner
            .state
            .borrow()
            .data
            .iter()
            .find(|(k, _)| *k == TypeId::of::<T>())
            .map(|(_, v)| v.clone())?;
        value.downcast::<T>().ok()
    }

    /// Adds a hook run at the start of `commit()`, before any resource is touched. A hook
    /// may join more resources or add more hooks. If it fails, every resource is aborted,
    /// the transaction enters [`Status::CommitFailed`] and `commit()` returns
    /// [`Error::Hook`].
    ///
    /// Every hook returns `Result<(), BoxError>`: hooks are application code whose errors
    /// are the application's own, so any error type converts with `?`, and the error comes
    /// back unchanged as the `source()` of [`Error::Hook`].
    ///
    /// # Examples
    ///
    /// ```
    /// use transaction::testing::{Journal, Kind, ScriptedDataManager};
    ///
    /// let db = ScriptedDataManager::new("db", Kind::TwoPhase, &Journal::new());
    /// let manager = transaction::TransactionManager::new();
    /// let txn = manager.begin()?;
    /// let late = db.clone();
    /// txn.add_before_commit_hook(move |txn| Ok(txn.join(late)?)); // joins at commit time
    /// txn.commit()?;
    /// assert!(db.committed());
    /// # Ok::<(), transaction::Error>(())
    /// ```
    pub fn add_before_commit_hook(
        &self,
        hook: impl FnOnce(&Transaction) -> std::result::Result<(), BoxError> + 'static,
    ) {
        self.inner
            .state
            .borrow_mut()
            .before_commit
            .push(Box::new(hook));
    }

    /// Adds a hook run after a commit attempt (after synchronizers' `after_completion`),
    /// told whether the commit succeeded. Its error is logged at error level and never
    /// changes the outcome: the commit has happened, or failed, already.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::cell::Cell;
    /// use std::rc::Rc;
    /// use transaction::testing::{Call, Journal, Kind, ScriptedDataManager};
    ///
    /// let manager = transaction::TransactionManager::new();
    /// let txn = manager.begin()?;
    /// txn.join(ScriptedDataManager::new("db", Kind::TwoPhase, &Journal::new()).fail_on(Call::TpcVote))?;
    /// let outcome = Rc::new(Cell::new(None));
    /// let seen = outcome.clone();
    /// txn.add_after_commit_hook(move |_, ok| {
    ///     seen.set(Some(ok));
    ///     Ok(())
    /// });
    /// assert!(txn.commit().is_err());
    /// assert_eq!(outcome.get(), Some(false));
    /// txn.abort()?;
    ///
    /// let txn = manager.begin()?;
    /// txn.add_after_commit_hook(|_, _| Err("the mail server is down".into()));
    /// txn.commit()?; // logged; the commit stands
    /// # Ok::<(), transaction::Error>(())
    /// ```
    pub fn add_after_commit_hook(
        &self,
        hook: impl FnOnce(&Transaction, bool) -> std::result::Result<(), BoxError> + 'static,
    ) {
        self.inner
            .state
            .borrow_mut()
            .after_commit
            .push(Box::new(hook));
    }

    /// Adds a hook run at the start of `abort()`, before synchronizers'
    /// `before_completion`. If it fails, the error is logged at error level, the abort
    /// still completes, and `abort()` returns the first such error as [`Error::Hook`] with
    /// [`Phase::BeforeAbortHook`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::cell::Cell;
    /// use std::rc::Rc;
    /// use transaction::Status;
    ///
    /// let manager = transaction::TransactionManager::new();
    /// let txn = manager.begin()?;
    /// let seen = Rc::new(Cell::new(None));
    /// let status = seen.clone();
    /// txn.add_before_abort_hook(move |txn| {
    ///     status.set(Some(txn.status()));
    ///     Ok(())
    /// });
    /// txn.abort()?;
    /// assert_eq!(seen.get(), Some(Status::Active)); // ran before the resources aborted
    /// # Ok::<(), transaction::Error>(())
    /// ```
    pub fn add_before_abort_hook(
        &self,
        hook: impl FnOnce(&Transaction) -> std::result::Result<(), BoxError> + 'static,
    ) {
        self.inner
            .state
            .borrow_mut()
            .before_abort
            .push(Box::new(hook));
    }

    /// Adds a hook run once every resource has aborted, before synchronizers'
    /// `after_completion` (zope's order). If it fails, the error is logged at error level,
    /// the other hooks still run, and `abort()` returns the first error of the abort as
    /// [`Error::Hook`] with [`Phase::AfterAbortHook`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::cell::Cell;
    /// use std::rc::Rc;
    /// use transaction::Status;
    ///
    /// let manager = transaction::TransactionManager::new();
    /// let txn = manager.begin()?;
    /// let seen = Rc::new(Cell::new(None));
    /// let status = seen.clone();
    /// txn.add_after_abort_hook(move |txn| {
    ///     status.set(Some(txn.status()));
    ///     Ok(())
    /// });
    /// txn.abort()?;
    /// assert_eq!(seen.get(), Some(Status::Aborted));
    ///
    /// let txn = manager.begin()?;
    /// txn.add_after_abort_hook(|_| Err("cache not cleared".into()));
    /// let err = txn.abort().unwrap_err();
    /// assert_eq!(err.phase(), Some(transaction::Phase::AfterAbortHook));
    /// assert_eq!(txn.status(), Status::Aborted); // the abort completed
    /// # Ok::<(), transaction::Error>(())
    /// ```
    pub fn add_after_abort_hook(
        &self,
        hook: impl FnOnce(&Transaction) -> std::result::Result<(), BoxError> + 'static,
    ) {
        self.inner
            .state
            .borrow_mut()
            .after_abort
            .push(Box::new(hook));
    }

    fn manager(&self) -> Option<Rc<ManagerInner>> {
        self.inner.manager.upgrade()
    }

    fn synchronizers(&self) -> Vec<Rc<dyn Synchronizer>> {
        self.manager()
            .map(|m| m.synchronizers())
            .unwrap_or_default()
    }

    fn set_status(&self, status: Status) {
        self.inner.state.borrow_mut().status = status;
    }

    /// Commits every joined resource, with two-phase commit or, where the resources allow
    /// it, in one phase.
    ///
    /// See the crate documentation for the protocol and for when a resource commits in one
    /// phase. On success the transaction ends and, in implicit mode, the manager begins a
    /// fresh one on the next [`get`](crate::TransactionManager::get).
    ///
    /// # Errors
    ///
    /// - [`Error::Doomed`]: the transaction is doomed; nothing changed.
    /// - [`Error::TransactionFailed`]: an earlier commit failed; call `abort()`.
    /// - [`Error::InvalidState`]: the transaction has already committed or aborted (or is
    ///   committing, when a resource calls `commit()` again).
    /// - [`Error::Hook`], [`Error::Resource`], [`Error::DecisionLog`],
    ///   [`Error::TooManyOnePhase`]: nothing was committed, every resource was rolled back,
    ///   the transaction is in [`Status::CommitFailed`] until `abort()`.
    /// - [`Error::Heuristic`]: some resource committed and some did not (see
    ///   [`HeuristicError`](crate::HeuristicError)); the error lists which. The
    ///   transaction is in [`Status::CommitFailed`] until `abort()`.
    ///
    /// # Examples
    ///
    /// ```
    /// use transaction::testing::{Journal, Kind, ScriptedDataManager};
    /// use transaction::{Error, Status, TransactionManager};
    ///
    /// let journal = Journal::new();
    /// let a = ScriptedDataManager::new("a", Kind::TwoPhase, &journal);
    /// let b = ScriptedDataManager::new("b", Kind::TwoPhase, &journal);
    /// let manager = TransactionManager::new();
    /// let txn = manager.begin()?;
    /// txn.join(a.clone())?;
    /// txn.join(b.clone())?;
    /// txn.commit()?;
    /// assert!(a.committed() && b.committed());
    /// assert_eq!(txn.status(), Status::Committed);
    /// assert!(matches!(txn.commit(), Err(Error::InvalidState { .. }))); // it has ended
    /// # Ok::<(), Error>(())
    /// ```
    pub fn commit(&self) -> Result<()> {
        self.check_committable()?;
        self.invalidate_savepoints();

        if let Err(err) = self.run_before_commit() {
            return Err(self.fail_before_protocol(err));
        }
        // A hook may have doomed the transaction.
        self.check_committable()?;

        let span = crate::trace::commit(self);
        let result = span.in_scope(|| {
            // Asked inside the commit's span, as each phase's span would be (a filter may
            // enable phase spans only within a commit).
            self.inner
                .phase_spans
                .set(Some(crate::trace::phases_enabled()));
            let mut resources = {
                let mut st = self.inner.state.borrow_mut();
                st.status = Status::Committing;
                std::mem::take(&mut st.resources)
            };
            // The join order is remembered (on the stack for up to 16 resources) so that a
            // failed commit can put it back.
            let mut inline = [std::ptr::null::<()>(); 16];
            let mut spilled = Vec::new();
            let join_order: &mut [*const ()] = if resources.len() <= inline.len() {
                &mut inline[..resources.len()]
            } else {
                spilled.resize(resources.len(), std::ptr::null());
                &mut spilled[..]
            };
            for (slot, r) in join_order.iter_mut().zip(&resources) {
                *slot = Rc::as_ptr(r).cast::<()>();
            }
            // Two-phase resources first, then one-phase ones; each group by sort key.
            sort_in_commit_order(&mut resources);
            let result = self.commit_resources(&resources);
            if result.is_err() {
                // The resources stay joined until the transaction ends: abort() asks each
                // of them once more, in join order, as zope does. (Nothing joined
                // meanwhile: joining is refused while committing.)
                resources.sort_by_key(|r| {
                    let ptr = Rc::as_ptr(r).cast::<()>();
                    join_order.iter().position(|p| *p == ptr)
                });
                self.inner.state.borrow_mut().resources = resources;
            } else if let Some(m) = self.manager() {
                m.recycle_resources(resources);
            }
            result
        });
        self.inner.phase_spans.set(None);
        span.end(&result);
        let ok = result.is_ok();
        self.set_status(if ok {
            Status::Committed
        } else {
            Status::CommitFailed
        });
        self.after_completion(ok);
        if ok {
            if let Some(m) = self.manager() {
                m.free(self);
            }
            self.forget_everything();
            tracing::debug!(transaction = %self.id(), "committed");
        }
        result
    }

    /// Once the transaction has ended, drops what it held, as zope's `_free` does: its
    /// resources, hooks, per-transaction data and extensions. The user and the description
    /// stay, for code that reports on the transaction afterwards.
    fn forget_everything(&self) {
        let dropped = {
            let mut guard = self.inner.state.borrow_mut();
            let st = &mut *guard;
            // After a commit almost everything is empty already: take only what is not.
            if st.resources.is_empty()
                && st.before_commit.is_empty()
                && st.after_commit.is_empty()
                && st.before_abort.is_empty()
                && st.after_abort.is_empty()
                && st.data.is_empty()
                && st.meta.extension.is_none()
            {
                return;
            }
            (
                std::mem::take(&mut st.resources),
                std::mem::take(&mut st.before_commit),
                std::mem::take(&mut st.after_commit),
                std::mem::take(&mut st.before_abort),
                std::mem::take(&mut st.after_abort),
                (!st.data.is_empty()).then(|| std::mem::take(&mut st.data)),
                std::mem::take(&mut st.meta.extension),
            )
        };
        // Dropped outside the borrow: a resource's, a hook's or a value's Drop may call
        // back into the transaction.
        drop(dropped);
    }

    fn check_committable(&self) -> Result<()> {
        match self.status() {
            Status::Active => Ok(()),
            Status::Doomed => Err(Error::Doomed),
            Status::CommitFailed => Err(Error::TransactionFailed),
            status => Err(Error::InvalidState {
                operation: "commit",
                status,
            }),
        }
    }

    fn run_before_commit(&self) -> Result<()> {
        loop {
            let hooks = std::mem::take(&mut self.inner.state.borrow_mut().before_commit);
            if hooks.is_empty() {
                break;
            }
            for hook in hooks {
                hook(self).map_err(|source| Error::Hook {
                    phase: Phase::BeforeCommitHook,
                    source,
                })?;
            }
        }
        for sync in self.synchronizers() {
            sync.before_completion(self).map_err(|source| Error::Hook {
                phase: Phase::BeforeCompletion,
                source,
            })?;
        }
        Ok(())
    }

    /// A failure before any resource saw `tpc_begin`: abort them all.
    fn fail_before_protocol(&self, err: Error) -> Error {
        let resources = {
            let mut st = self.inner.state.borrow_mut();
            st.before_commit.clear();
            st.status = Status::Committing;
            st.resources.clone()
        };
        tracing::warn!(transaction = %self.id(), error = %err, "commit failed before the two-phase protocol started");
        self.cleanup(&resources, 0, 0);
        self.set_status(Status::CommitFailed);
        self.after_completion(false);
        err
    }

    fn after_completion(&self, committed: bool) {
        for sync in self.synchronizers() {
            sync.after_completion(self);
        }
        let hooks = {
            let mut st = self.inner.state.borrow_mut();
            if st.after_commit.is_empty() {
                return;
            }
            std::mem::take(&mut st.after_commit)
        };
        for hook in hooks {
            // The commit has happened (or failed) already: an error here changes nothing.
            if let Err(e) = hook(self, committed) {
                tracing::error!(transaction = %self.id(), phase = %Phase::AfterCommitHook, error = %e, "after-commit hook failed; the outcome of the commit stands");
            }
        }
    }

    fn commit_resources(&self, resources: &[Rc<dyn DataManager>]) -> Result<()> {
        let manager = self.manager();
        let allow_many = manager
            .as_ref()
            .is_some_and(|m| m.allow_multiple_one_phase());
        let one_phase = resources.iter().filter(|r| r.is_one_phase()).count();
        if one_phase > 1 {
            let names: Vec<String> = resources
                .iter()
                .filter(|r| r.is_one_phase())
                .map(|r| r.sort_key().to_owned())
                .collect();
            if !allow_many {
                self.cleanup(resources, 0, 0);
                return Err(Error::TooManyOnePhase { resources: names });
            }
            tracing::warn!(
                transaction = %self.id(),
                resources = ?names,
                "several one-phase resources in one transaction: a failure may commit some and not others"
            );
        }

        for (i, r) in resources.iter().enumerate() {
            if let Err(e) = r.tpc_begin(self) {
                return Err(self.fail(resources, &[], i + 1, i, Phase::TpcBegin, e));
            }
        }
        for (i, r) in resources.iter().enumerate() {
            if let Err(e) = r.commit(self) {
                return Err(self.fail(resources, &[], resources.len(), i, Phase::Commit, e));
            }
        }

        // From before the first PREPARE until this function returns, a recovery pass must
        // not roll back this transaction's branches: it may still record a decision.
        let _in_flight =
            (one_phase < resources.len()).then(|| crate::in_flight::InFlight::enter(self.id()));

        // From the votes on, resources go in vote order: every resource has seen
        // `tpc_begin` and `commit`, so cleanup needs no other order.
        let (reordered, dirty) = self.vote_order(resources);
        let resources = reordered.as_deref().unwrap_or(resources);
        let log = manager
            .as_ref()
            .map(|m| m.decision_log())
            .filter(|l| l.is_enabled());
        let parallel = manager.as_ref().is_some_and(|m| m.parallel_phases());
        // Tells the log's group commit that a decision may be asked for soon.
        let deciding = (log.is_some() && _in_flight.is_some()).then(crate::log::Deciding::enter);
        crate::crash_point("before_prepare");
        let (votes, carried) =
            self.vote_phase(resources, one_phase, dirty, parallel, log.is_some())?;

        drop(deciding);
        // A carried decision is durable with the last resource's commit: the log gets
        // no record (recovery reads the resource's copy).
        let prepared = votes.contains(&Vote::Prepared) && !carried;
        let mut recorded = false;
        if let (true, Some(log)) = (prepared, &log) {
            crate::crash_point("before_decision");
            let branches = self.prepared_branches(resources, &votes);
            let outcome = log.record_commit(self.id(), &branches);
            recorded = outcome.is_ok();
            if let Err(source) = outcome {
                if log.is_outcome_unknown(&*source) && !votes.contains(&Vote::Committed) {
                    return Err(self.leave_for_recovery(resources, &votes, source));
                }
                if votes.contains(&Vote::Committed) {
                    // A one-phase resource already committed: the decision is made.
                    tracing::error!(transaction = %self.id(), error = %source, "could not record the commit decision after a one-phase resource committed; finishing the prepared resources anyway");
                } else {
                    tracing::error!(transaction = %self.id(), error = %source, "could not record the commit decision; rolling back");
                    self.cleanup(resources, resources.len(), resources.len());
                    return Err(Error::DecisionLog { source });
                }
            }
        }

        if recorded || carried {
            crate::crash_point("after_decision");
        }
        let failed = self.finish_phase(resources, &votes, parallel);
        if failed.is_empty() {
            if carried {
                // The carrier's record is removed by recovery once every branch is gone.
                crate::crash_point("before_end");
            } else if let (true, Some(log)) = (recorded, &log) {
                crate::crash_point("before_end");
                if let Err(e) = log.forget(self.id()) {
                    tracing::warn!(transaction = %self.id(), error = %e, "could not forget a finished transaction in the decision log");
                }
            }
            return Ok(());
        }
        let committed = resources
            .iter()
            .zip(votes.iter())
            .enumerate()
            .filter(|(i, (_, v))| **v != Vote::ReadOnly && !failed.iter().any(|(f, _)| f == i))
            .map(|(_, (r, _))| r.sort_key().to_owned())
            .collect();
        let failed = failed
            .into_iter()
            .map(|(i, e)| (resources[i].sort_key().to_owned(), e))
            .collect();
        let err = HeuristicError::new(self.id(), Phase::Finish, committed, failed);
        tracing::error!(transaction = %self.id(), error = %err, "heuristic outcome");
        Err(Error::Heuristic(Box::new(err)))
    }

    /// The decision may be durable (`source` says why it is not known): rolling back could
    /// contradict it. Leaves every prepared branch for recovery, which decides from the
    /// durable record.
    fn leave_for_recovery(
        &self,
        resources: &[Rc<dyn DataManager>],
        votes: &[Vote],
        source: BoxError,
    ) -> Error {
        tracing::error!(transaction = %self.id(), error = %source, "the commit decision may or may not be durable: leaving every prepared branch for recovery");
        for (r, _) in resources
            .iter()
            .zip(votes)
            .filter(|(_, v)| **v == Vote::Prepared)
        {
            r.leave_prepared(self);
        }
        Error::OutcomeUnknown { source }
    }

    /// The branches of the resources that voted [`Vote::Prepared`] (`votes` may be
    /// shorter than `resources`): the decision record.
    fn prepared_branches(&self, resources: &[Rc<dyn DataManager>], votes: &[Vote]) -> Vec<Branch> {
        resources
            .iter()
            .zip(votes)
            .filter(|(_, v)| **v == Vote::Prepared)
            .map(|(r, _)| Branch {
                resource: r.sort_key().to_owned(),
                branch_id: r.branch_id(self),
            })
            .collect()
    }

    /// The last resource carries the decision (see [`DataManager::carries_decision`]):
    /// it gets the record of every branch prepared before it, then commits in one phase,
    /// and that commit is the commit point.
    fn commit_carrying_decision(
        &self,
        r: &Rc<dyn DataManager>,
        resources: &[Rc<dyn DataManager>],
        votes: &[Vote],
    ) -> std::result::Result<Vote, ResourceError> {
        let decision = DecisionRecord {
            transaction: self.id(),
            branches: self.prepared_branches(resources, votes),
        };
        r.carry_decision(self, &decision)?;
        let vote = if r.is_one_phase() {
            r.tpc_vote(self)?
        } else {
            r.commit_one_phase(self)?;
            Vote::Committed
        };
        if vote != Vote::Committed {
            return Err(ResourceError::new(format!(
                "resource {} carried the commit decision but did not commit",
                r.sort_key()
            )));
        }
        tracing::debug!(transaction = %self.id(), resource = r.sort_key(), "the commit decision committed with the last resource");
        Ok(vote)
    }

    /// The order in which resources vote: two-phase resources that know they wrote
    /// nothing, then those that may have written, then those that wrote, then two-phase
    /// resources that may carry the decision, then one-phase resources; each group keeps the commit order (`sort_key`). The last resource to vote
    /// is the one that may commit in one phase, so the resource most likely to be the only
    /// writer goes there, and every resource that may have written before it is asked
    /// through `tpc_vote` rather than assumed read-only.
    ///
    /// `None` when that is the commit order already (every resource reports the same
    /// state, as when none says anything): the common case allocates nothing. With it, how
    /// many two-phase resources reported [`WriteState::Dirty`].
    fn vote_order(
        &self,
        resources: &[Rc<dyn DataManager>],
    ) -> (Option<Vec<Rc<dyn DataManager>>>, usize) {
        const INLINE: usize = 16;
        let mut inline = [(false, false, 0u8); INLINE];
        let mut spilled = Vec::new();
        let keys: &mut [(bool, bool, u8)] = if resources.len() <= INLINE {
            &mut inline[..resources.len()]
        } else {
            spilled.resize(resources.len(), (false, false, 0u8));
            &mut spilled
        };
        for (key, r) in keys.iter_mut().zip(resources) {
            let rank = match r.write_state(self) {
                WriteState::Clean => 0,
                WriteState::Unknown => 1,
                WriteState::Dirty => 2,
            };
            // A resource that may carry the decision votes after every other two-phase
            // resource: it can only carry it as the last to vote.
            *key = (r.is_one_phase(), r.carries_decision(self), rank);
        }
        let dirty = keys.iter().filter(|k| !k.0 && k.2 == 2).count();
        if keys.windows(2).all(|w| w[0] <= w[1]) {
            return (None, dirty);
        }
        let mut order: Vec<usize> = (0..resources.len()).collect();
        // Stable: within a group, the commit order (`sort_key`) is kept.
        order.sort_by_key(|&i| keys[i]);
        (
            Some(order.into_iter().map(|i| resources[i].clone()).collect()),
            dirty,
        )
    }

    /// The votes, in vote order (step 6 of the commit). With `parallel`, the two-phase
    /// resources vote at the same time (those that offer a [`DataManager::vote_job`] on
    /// the worker threads, the others on this thread meanwhile), except the last one when
    /// it may commit in one phase and no resource before it reported `Dirty` (it then
    /// waits for their votes, as without `parallel`). The rest (that last resource, the
    /// one-phase resources) vote one after the other.
    ///
    /// # Errors
    ///
    /// A failed vote, after every resource was rolled back (see [`Self::fail`]).
    fn vote_phase(
        &self,
        resources: &[Rc<dyn DataManager>],
        one_phase: usize,
        dirty: usize,
        parallel: bool,
        logged: bool,
    ) -> Result<(Votes, bool)> {
        let mut votes = Votes::new();
        let last = resources.len().wrapping_sub(1);
        let two_phase = resources.len() - one_phase.min(resources.len());
        if parallel && two_phase >= 2 {
            // The last two-phase resource may commit in one phase only if every vote before
            // it is read-only: it waits for them, unless a dirty resource before it makes
            // that unlikely (a wrong guess then costs the optimisation, never atomicity).
            // A last resource that may carry the decision always waits: its commit is the
            // decision, taken only once every other vote is in.
            let may_be_alone = one_phase == 0 && resources[last].supports_one_phase_commit();
            let may_carry = logged && one_phase == 0 && resources[last].carries_decision(self);
            let together = if (may_be_alone && dirty < 2) || may_carry {
                two_phase - 1
            } else {
                two_phase
            };
            if together >= 2 {
                self.vote_together(&resources[..together], resources, &mut votes)?;
            }
        }
        let mut carried = false;
        for (i, r) in resources.iter().enumerate().skip(votes.len()) {
            let alone = i == last
                && one_phase == 0
                && votes.iter().all(|v| *v == Vote::ReadOnly)
                && r.supports_one_phase_commit();
            carried =
                i == last && logged && votes.contains(&Vote::Prepared) && r.carries_decision(self);
            if carried {
                crate::crash_point("before_decision");
            }
            let is_one_phase = r.is_one_phase();
            let one_phase_commit = alone || carried || is_one_phase;
            if one_phase_commit {
                crate::crash_point("before_one_phase_commit");
            }
            let (phase, outcome) = if carried {
                (
                    Phase::Vote,
                    crate::trace::run(self, r, "one_phase_commit", || {
                        self.commit_carrying_decision(r, resources, &votes)
                    }),
                )
            } else if alone {
                (
                    Phase::OnePhaseCommit,
                    crate::trace::run(self, r, "one_phase_commit", || {
                        r.commit_one_phase(self).map(|()| Vote::Committed)
                    }),
                )
            } else {
                let name = if is_one_phase {
                    "one_phase_commit"
                } else {
                    "vote"
                };
                (
                    Phase::Vote,
                    crate::trace::run(self, r, name, || r.tpc_vote(self)),
                )
            };
            match outcome {
                Ok(vote) => votes.push(vote),
                Err(e) if carried && e.is_outcome_unknown() => {
                    return Err(self.leave_for_recovery(resources, &votes, e.into_inner()));
                }
                Err(e) => return Err(self.fail(resources, &votes, resources.len(), i, phase, e)),
            }
            match votes.last() {
                Some(Vote::Committed) if one_phase_commit => {
                    crate::crash_point("after_one_phase_commit");
                }
                Some(Vote::Prepared) if i < last => crate::crash_point("after_prepare"),
                _ => {}
            }
        }
        Ok((votes, carried))
    }

    /// The votes of `group` (the first resources in vote order, all two-phase) at the same
    /// time, pushed to `votes` in order. Every vote ends before this returns; a failure is
    /// reported once all have, and rolls back every resource of `all`.
    fn vote_together(
        &self,
        group: &[Rc<dyn DataManager>],
        all: &[Rc<dyn DataManager>],
        votes: &mut Votes,
    ) -> Result<()> {
        // Jobs first, so that they run while this thread votes the others.
        // Nothing is allocated when no resource offers a job.
        let spans = crate::trace::phases(self, group, "vote", |_| true);
        let mut jobs = Vec::new();
        let mut has_job = Vec::new();
        for (i, r) in group.iter().enumerate() {
            if let Some(job) = crate::trace::in_slot(&spans, i, || r.vote_job(self)) {
                has_job.resize(i, false);
                has_job.push(true);
                jobs.push(crate::trace::wrap_slot(&spans, i, job));
            }
        }
        if jobs.is_empty() {
            // Nothing to run elsewhere: the votes go one after the other, as usual.
            return Ok(());
        }
        has_job.resize(group.len(), false);
        let mut outcomes: Vec<Option<std::result::Result<Vote, ResourceError>>> =
            (0..group.len()).map(|_| None).collect();
        let mut outputs = if jobs.len() == group.len() {
            // Nothing votes on this thread: it runs one of the jobs itself.
            crate::parallel::run_all(jobs)
        } else {
            let handle = crate::parallel::start(jobs);
            for (i, ((r, job), slot)) in group.iter().zip(&has_job).zip(&mut outcomes).enumerate() {
                if !job {
                    *slot = Some(crate::trace::in_slot(&spans, i, || r.tpc_vote(self)));
                }
            }
            handle.wait()
        }
        .into_iter();
        let mut panicked = None;
        for (i, ((r, job), slot)) in group.iter().zip(&has_job).zip(&mut outcomes).enumerate() {
            if *job {
                match outputs.next().expect("one output per job") {
                    Ok(output) => {
                        *slot = Some(crate::trace::in_slot(&spans, i, || {
                            r.complete_vote(self, output)
                        }));
                    }
                    Err(payload) => {
                        panicked.get_or_insert(payload);
                    }
                }
            }
        }
        if let Some(payload) = panicked {
            // As a panic in `tpc_vote` on this thread would: the other resources got their
            // outputs back first.
            std::panic::resume_unwind(payload);
        }
        crate::trace::end_slots(self, group, spans, &outcomes);
        let mut first_failure = None;
        let mut voted = Vec::with_capacity(all.len());
        for (i, (r, outcome)) in group.iter().zip(outcomes).enumerate() {
            match outcome.expect("every vote of the group has ended") {
                Ok(vote) => {
                    voted.push(Some(vote));
                    if vote == Vote::Prepared && i + 1 < all.len() {
                        crate::crash_point("after_prepare");
                    }
                }
                Err(e) => {
                    voted.push(None);
                    if first_failure.is_some() {
                        tracing::warn!(transaction = %self.id(), resource = r.sort_key(), error = %e, "another vote failed too");
                    } else {
                        first_failure = Some((i, e));
                    }
                }
            }
        }
        let Some((failed_at, source)) = first_failure else {
            for vote in voted.into_iter().flatten() {
                votes.push(vote);
            }
            return Ok(());
        };
        voted.resize(all.len(), None);
        Err(self.fail_together(all, &voted, failed_at, source))
    }

    /// [`Self::fail`] after votes taken together: `voted` holds each resource's vote, `None`
    /// for those that failed or did not vote.
    fn fail_together(
        &self,
        resources: &[Rc<dyn DataManager>],
        voted: &[Option<Vote>],
        failed_at: usize,
        source: ResourceError,
    ) -> Error {
        let resource = resources[failed_at].sort_key().to_owned();
        tracing::warn!(transaction = %self.id(), resource = %resource, phase = %Phase::Vote, error = %source, "commit failed; rolling back every resource");
        for (r, _) in resources.iter().zip(voted).filter(|(_, v)| v.is_none()) {
            if let Err(e) = crate::trace::run(self, r, "abort", || r.abort(self)) {
                tracing::error!(transaction = %self.id(), resource = r.sort_key(), error = %e, "abort failed while cleaning up a failed commit");
            }
        }
        for r in resources {
            if let Err(e) = crate::trace::run(self, r, "tpc_abort", || r.tpc_abort(self)) {
                tracing::error!(transaction = %self.id(), resource = r.sort_key(), error = %e, "tpc_abort failed while cleaning up a failed commit");
            }
        }
        if voted.contains(&Some(Vote::Committed)) {
            let committed = resources
                .iter()
                .zip(voted)
                .filter(|(_, v)| **v == Some(Vote::Committed))
                .map(|(r, _)| r.sort_key().to_owned())
                .collect();
            let err =
                HeuristicError::new(self.id(), Phase::Vote, committed, vec![(resource, source)]);
            tracing::error!(transaction = %self.id(), error = %err, "heuristic outcome");
            return Error::Heuristic(Box::new(err));
        }
        Error::Resource {
            phase: Phase::Vote,
            resource,
            source,
        }
    }

    /// Phase two (step 8 of the commit): `tpc_finish` on every `Prepared` voter, a failure
    /// not stopping the others; with `parallel` and more than one to finish, at the same
    /// time (jobs from [`DataManager::finish_job`] on the worker threads, the others on
    /// this thread meanwhile). Returns the failures, by index into `resources`.
    fn finish_phase(
        &self,
        resources: &[Rc<dyn DataManager>],
        votes: &[Vote],
        parallel: bool,
    ) -> Vec<(usize, ResourceError)> {
        let mut failed: Vec<(usize, ResourceError)> = Vec::new();
        let to_finish = votes.iter().filter(|v| **v == Vote::Prepared).count();
        let report = |r: &Rc<dyn DataManager>, e: &ResourceError| {
            tracing::error!(transaction = %self.id(), resource = r.sort_key(), error = %e, "tpc_finish failed after the commit decision: the branch is in doubt");
        };
        if parallel && to_finish >= 2 {
            let spans = crate::trace::phases(self, resources, "finish", |i| {
                votes.get(i) == Some(&Vote::Prepared)
            });
            let mut jobs = Vec::new();
            let mut has_job = Vec::new();
            for (i, (r, vote)) in resources.iter().zip(votes).enumerate() {
                if *vote == Vote::Prepared {
                    if let Some(j) = crate::trace::in_slot(&spans, i, || r.finish_job(self)) {
                        has_job.resize(i, false);
                        has_job.push(true);
                        jobs.push(crate::trace::wrap_slot(&spans, i, j));
                    }
                }
            }
            if !jobs.is_empty() {
                has_job.resize(resources.len(), false);
                let mut outcomes: Vec<Option<std::result::Result<(), ResourceError>>> =
                    (0..resources.len()).map(|_| None).collect();
                let outputs = if jobs.len() == to_finish {
                    crate::parallel::run_all(jobs)
                } else {
                    let handle = crate::parallel::start(jobs);
                    for (i, (((r, vote), job), slot)) in resources
                        .iter()
                        .zip(votes)
                        .zip(&has_job)
                        .zip(&mut outcomes)
                        .enumerate()
                    {
                        if *vote == Vote::Prepared && !job {
                            *slot = Some(crate::trace::in_slot(&spans, i, || r.tpc_finish(self)));
                        }
                    }
                    handle.wait()
                };
                let mut outputs = outputs.into_iter();
                let mut panicked = None;
                for (i, ((r, job), slot)) in resources
                    .iter()
                    .zip(&has_job)
                    .zip(&mut outcomes)
                    .enumerate()
                {
                    if *job {
                        match outputs.next().expect("one output per job") {
                            Ok(output) => {
                                *slot = Some(crate::trace::in_slot(&spans, i, || {
                                    r.complete_finish(self, output)
                                }));
                            }
                            Err(payload) => {
                                panicked.get_or_insert(payload);
                            }
                        }
                    }
                }
                if let Some(payload) = panicked {
                    std::panic::resume_unwind(payload);
                }
                crate::trace::end_slots(self, resources, spans, &outcomes);
                let mut finished = 0;
                for (i, (r, outcome)) in resources.iter().zip(outcomes).enumerate() {
                    let Some(outcome) = outcome else { continue };
                    if let Err(e) = outcome {
                        report(r, &e);
                        failed.push((i, e));
                    }
                    finished += 1;
                    if finished < to_finish {
                        crate::crash_point("after_commit");
                    }
                }
                return failed;
            }
        }
        let mut finished = 0;
        for (i, (r, vote)) in resources.iter().zip(votes).enumerate() {
            if *vote == Vote::Prepared {
                if let Err(e) = crate::trace::run(self, r, "finish", || r.tpc_finish(self)) {
                    report(r, &e);
                    failed.push((i, e));
                }
                finished += 1;
                if finished < to_finish {
                    crate::crash_point("after_commit");
                }
            }
        }
        failed
    }

    /// A failure before the decision: roll everything back and describe it.
    ///
    /// `votes` holds the votes of the resources before `failed_at`; `begun` is how many
    /// resources saw `tpc_begin`.
    fn fail(
        &self,
        resources: &[Rc<dyn DataManager>],
        votes: &[Vote],
        begun: usize,
        failed_at: usize,
        phase: Phase,
        source: ResourceError,
    ) -> Error {
        let resource = resources[failed_at].sort_key().to_owned();
        tracing::warn!(transaction = %self.id(), resource = %resource, phase = %phase, error = %source, "commit failed; rolling back every resource");
        self.cleanup(resources, begun, votes.len());
        if votes.contains(&Vote::Committed) {
            // A resource that claimed two-phase support committed in its vote: that work
            // cannot be rolled back, so the outcome is mixed and must be reported as such.
            let committed = resources
                .iter()
                .zip(votes)
                .filter(|(_, v)| **v == Vote::Committed)
                .map(|(r, _)| r.sort_key().to_owned())
                .collect();
            let err = HeuristicError::new(self.id(), phase, committed, vec![(resource, source)]);
            tracing::error!(transaction = %self.id(), error = %err, "heuristic outcome");
            return Error::Heuristic(Box::new(err));
        }
        Error::Resource {
            phase,
            resource,
            source,
        }
    }

    /// `abort` on every resource that has not voted, then `tpc_abort` on every resource
    /// that saw `tpc_begin`. Errors are logged: the first failure is the one reported.
    fn cleanup(&self, resources: &[Rc<dyn DataManager>], begun: usize, voted: usize) {
        for r in &resources[voted.min(resources.len())..] {
            if let Err(e) = crate::trace::run(self, r, "abort", || r.abort(self)) {
                tracing::error!(transaction = %self.id(), resource = r.sort_key(), error = %e, "abort failed while cleaning up a failed commit");
            }
        }
        for r in &resources[..begun.min(resources.len())] {
            if let Err(e) = crate::trace::run(self, r, "tpc_abort", || r.tpc_abort(self)) {
                tracing::error!(transaction = %self.id(), resource = r.sort_key(), error = %e, "tpc_abort failed while cleaning up a failed commit");
            }
        }
    }

    /// Aborts the transaction: every joined resource discards its work. Aborting an
    /// aborted transaction does nothing.
    ///
    /// In zope's order: before-abort hooks; synchronizers' `before_completion`; `abort` on
    /// every joined resource (after a failed commit too: each is asked once more); the
    /// after-abort hooks; then synchronizers' `after_completion`. Each step runs whatever
    /// failed before it, and the transaction always ends: the manager frees it, and it
    /// drops its resources, hooks, data and extensions.
    ///
    /// # Errors
    ///
    /// The first failure, in that order, after every step has run: [`Error::Hook`] for a
    /// failed abort hook ([`Phase::BeforeAbortHook`], [`Phase::AfterAbortHook`]) or
    /// synchronizer ([`Phase::BeforeCompletion`]), [`Error::Resource`] with
    /// [`Phase::Abort`] for a resource whose abort failed. Each failure is also logged at
    /// error level. [`Error::InvalidState`] for a committed transaction.
    ///
    /// # Examples
    ///
    /// ```
    /// use transaction::testing::{Call, Journal, Kind, ScriptedDataManager};
    /// use transaction::{Phase, Status, TransactionManager};
    ///
    /// let db = ScriptedDataManager::new("db", Kind::TwoPhase, &Journal::new()).fail_on(Call::Abort);
    /// let manager = TransactionManager::new();
    /// let txn = manager.begin()?;
    /// txn.join(db)?;
    /// assert_eq!(txn.abort().unwrap_err().phase(), Some(Phase::Abort));
    /// assert_eq!(txn.status(), Status::Aborted); // it ended anyway
    /// txn.abort()?; // aborting again does nothing
    /// # Ok::<(), transaction::Error>(())
    /// ```
    pub fn abort(&self) -> Result<()> {
        match self.status() {
            Status::Active | Status::Doomed | Status::CommitFailed => {}
            Status::Aborted => return Ok(()),
            status => {
                return Err(Error::InvalidState {
                    operation: "abort",
                    status,
                })
            }
        }
        // Every step runs whatever failed before it; the first failure is returned.
        let mut first: Option<Error> = None;
        let mut failed = |err: Error| {
            if first.is_none() {
                first = Some(err);
            }
        };
        self.run_abort_hooks(Phase::BeforeAbortHook, &mut failed);
        self.invalidate_savepoints();
        let synchronizers = self.synchronizers();
        for sync in &synchronizers {
            if let Err(source) = sync.before_completion(self) {
                tracing::error!(transaction = %self.id(), phase = %Phase::BeforeCompletion, error = %source, "synchronizer before_completion failed during abort; aborting anyway");
                failed(Error::Hook {
                    phase: Phase::BeforeCompletion,
                    source,
                });
            }
        }
        // The transaction is still active while resources abort, so one may join another
        // resource (re-entrancy); abort those too rather than leave them joined to an
        // aborted transaction.
        loop {
            let resources = std::mem::take(&mut self.inner.state.borrow_mut().resources);
            if resources.is_empty() {
                break;
            }
            for r in &resources {
                if let Err(source) = crate::trace::run(self, r, "abort", || r.abort(self)) {
                    tracing::error!(transaction = %self.id(), resource = r.sort_key(), error = %source, "abort failed");
                    failed(Error::Resource {
                        phase: Phase::Abort,
                        resource: r.sort_key().to_owned(),
                        source,
                    });
                }
            }
        }
        {
            let mut st = self.inner.state.borrow_mut();
            st.status = Status::Aborted;
            st.before_commit.clear();
            st.after_commit.clear();
        }
        self.run_abort_hooks(Phase::AfterAbortHook, &mut failed);
        if let Some(m) = self.manager() {
            m.free(self);
        }
        // As in zope, synchronizers hear of the end after the after-abort hooks ran.
        for sync in &synchronizers {
            sync.after_completion(self);
        }
        self.forget_everything();
        tracing::debug!(transaction = %self.id(), "aborted");
        first.map_or(Ok(()), Err)
    }

    /// Runs the before-abort or after-abort hooks until none is left (a hook may add
    /// more); a failure is logged and handed to `failed`, and the other hooks still run.
    fn run_abort_hooks(&self, phase: Phase, failed: &mut impl FnMut(Error)) {
        loop {
            let hooks = {
                let mut st = self.inner.state.borrow_mut();
                if phase == Phase::BeforeAbortHook {
                    std::mem::take(&mut st.before_abort)
                } else {
                    std::mem::take(&mut st.after_abort)
                }
            };
            if hooks.is_empty() {
                return;
            }
            for hook in hooks {
                if let Err(source) = hook(self) {
                    tracing::error!(transaction = %self.id(), phase = %phase, error = %source, "{phase} failed; aborting anyway");
                    failed(Error::Hook { phase, source });
                }
            }
        }
    }

    /// Aborts on behalf of a manager that is going away, logging at warn level.
    pub(crate) fn abort_abandoned(&self, why: &str) {
        let st = self.inner.state.borrow();
        let live = matches!(
            st.status,
            Status::Active | Status::Doomed | Status::CommitFailed
        );
        let had_work = !st.resources.is_empty();
        let failed = st.status == Status::CommitFailed;
        drop(st);
        if !live {
            return;
        }
        if failed {
            // The failed commit may have been a heuristic outcome: do not claim nothing
            // committed.
            tracing::warn!(transaction = %self.id(), "{why} after a failed commit: aborting it");
        } else if had_work {
            tracing::warn!(transaction = %self.id(), "{why} with a transaction still open: aborting it, nothing is committed");
        }
        if let Err(e) = self.abort() {
            tracing::error!(transaction = %self.id(), error = %e, "abort of an abandoned transaction failed");
        }
    }

    /// Takes a savepoint of every joined resource.
    ///
    /// With `optimistic` false, every resource must
    /// [support savepoints](DataManager::supports_savepoints): if one does not, the
    /// savepoint is refused before any resource takes one. With `optimistic` true,
    /// resources that do not are accepted, and rolling back the savepoint fails instead.
    ///
    /// # Errors
    ///
    /// [`Error::SavepointNotSupported`] naming the first resource that cannot take one;
    /// [`Error::Resource`] with [`Phase::Savepoint`] when a resource failed to take one
    /// (the transaction is unchanged in both cases); [`Error::TransactionFailed`] after a
    /// failed commit; [`Error::InvalidState`] while committing or once the transaction has
    /// ended.
    ///
    /// # Examples
    ///
    /// ```
    /// use transaction::testing::{Journal, Kind, ScriptedDataManager};
    /// use transaction::{Error, TransactionManager};
    ///
    /// let journal = Journal::new();
    /// let manager = TransactionManager::new();
    /// let txn = manager.begin()?;
    /// txn.join(ScriptedDataManager::new("cache", Kind::TwoPhase, &journal))?;
    /// let err = txn.savepoint(false).unwrap_err();
    /// assert_eq!(err.resource(), Some("cache"));
    /// assert!(matches!(err, Error::SavepointNotSupported { .. }));
    /// let _sp = txn.savepoint(true)?; // optimistic: accepted
    /// # Ok::<(), Error>(())
    /// ```
    pub fn savepoint(&self, optimistic: bool) -> Result<Savepoint> {
        let resources = {
            let st = self.inner.state.borrow();
            match st.status {
                Status::Active | Status::Doomed => {}
                Status::CommitFailed => return Err(Error::TransactionFailed),
                status => {
                    return Err(Error::InvalidState {
                        operation: "take a savepoint of",
                        status,
                    })
                }
            }
            st.resources.clone()
        };
        // Refuse before any resource takes a savepoint, so that none is left behind.
        if !optimistic {
            if let Some(r) = resources.iter().find(|r| !r.supports_savepoints()) {
                return Err(Error::SavepointNotSupported {
                    resource: r.sort_key().to_owned(),
                });
            }
        }
        // Resources that join while the savepoint is taken (re-entrancy) have no state in
        // it: count them as late joiners, aborted on rollback.
        let joined = resources.len();
        let mut states = Vec::with_capacity(resources.len());
        for r in resources {
            if !r.supports_savepoints() {
                states.push((r, None)); // optimistic: rolling back will fail instead
                continue;
            }
            match r.savepoint(self) {
                Some(Ok(sp)) => states.push((r, Some(sp))),
                // A resource that said it supports savepoints and then took none.
                None if optimistic => states.push((r, None)),
                None => {
                    return Err(Error::SavepointNotSupported {
                        resource: r.sort_key().to_owned(),
                    })
                }
                Some(Err(source)) => {
                    return Err(Error::Resource {
                        phase: Phase::Savepoint,
                        resource: r.sort_key().to_owned(),
                        source,
                    })
                }
            }
        }
        let seq = self.inner.next_savepoint.get();
        self.inner.next_savepoint.set(seq + 1);
        let mark = Rc::new(SavepointMark::new(seq));
        self.inner.state.borrow_mut().savepoints.push(mark.clone());
        Ok(Savepoint::new(self.clone(), mark, states, joined))
    }

    fn invalidate_savepoints(&self) {
        let marks = {
            let mut st = self.inner.state.borrow_mut();
            if st.savepoints.is_empty() {
                return;
            }
            std::mem::take(&mut st.savepoints)
        };
        for m in marks {
            m.invalidate();
        }
    }

    /// Called by a savepoint rollback: invalidates later savepoints and returns the
    /// resources that joined after the savepoint, which it removes.
    pub(crate) fn rewind_to(
        &self,
        mark: &SavepointMark,
        joined: usize,
    ) -> Result<Vec<Rc<dyn DataManager>>> {
        let mut st = self.inner.state.borrow_mut();
        match st.status {
            Status::Active | Status::Doomed => {}
            Status::CommitFailed => return Err(Error::TransactionFailed),
            _ => return Err(Error::InvalidSavepoint),
        }
        st.savepoints.retain(|m| {
            let keep = m.sequence() <= mark.sequence();
            if !keep {
                m.invalidate();
            }
            keep
        });
        let joined = joined.min(st.resources.len());
        Ok(st.resources.split_off(joined))
    }

    pub(crate) fn fail_savepoint(&self) {
        self.set_status(Status::CommitFailed);
        self.invalidate_savepoints();
    }
}

#[cfg(test)]
mod tests {
    //! Unit tests of the state machine with the scripted data manager; the full semantics,
    //! the fault matrix and the model-based property test live in `tests/`.

    use std::rc::Rc;

    use super::*;
    use crate::testing::{Call, Journal, Kind, ScriptedDataManager};
    use crate::{TransactionManager, WriteState};

    fn joined(manager: &TransactionManager, resources: &[&Rc<ScriptedDataManager>]) -> Transaction {
        let txn = manager.begin().expect("begin");
        for r in resources {
            txn.join((*r).clone()).expect("join");
        }
        txn
    }

    #[test]
    fn status_moves_from_active_to_committed_and_the_manager_frees_the_transaction() {
        let manager = TransactionManager::new();
        let journal = Journal::new();
        let a = ScriptedDataManager::new("a", Kind::TwoPhase, &journal);
        let txn = joined(&manager, &[&a]);
        assert_eq!(txn.status(), Status::Active);
        txn.commit().expect("commit");
        assert_eq!(txn.status(), Status::Committed);
        assert!(manager.current().is_none());
        assert!(matches!(
            txn.commit(),
            Err(Error::InvalidState {
                status: Status::Committed,
                ..
            })
        ));
    }

    #[test]
    fn a_vote_failure_leaves_commit_failed_until_abort() {
        let manager = TransactionManager::new();
        let journal = Journal::new();
        let a = ScriptedDataManager::new("a", Kind::TwoPhase, &journal);
        let b = ScriptedDataManager::new("b", Kind::TwoPhase, &journal).fail_on(Call::TpcVote);
        let txn = joined(&manager, &[&a, &b]);
        let err = txn.commit().expect_err("b fails its vote");
        assert_eq!(
            (err.phase(), err.resource()),
            (Some(Phase::Vote), Some("b"))
        );
        assert_eq!(txn.status(), Status::CommitFailed);
        assert!(matches!(txn.join(a.clone()), Err(Error::TransactionFailed)));
        assert_eq!(
            journal.calls_of("a"),
            [Call::TpcBegin, Call::Commit, Call::TpcVote, Call::TpcAbort]
        );
        txn.abort().expect("abort clears a failed transaction");
        assert_eq!(txn.status(), Status::Aborted);
        assert!(manager.current().is_none());
    }

    #[test]
    fn one_phase_resources_vote_after_two_phase_ones_whatever_their_key() {
        let manager = TransactionManager::new();
        let journal = Journal::new();
        let sqlite = ScriptedDataManager::new("a-sqlite", Kind::OnePhase, &journal);
        let pg = ScriptedDataManager::new("z-postgres", Kind::TwoPhase, &journal);
        joined(&manager, &[&sqlite, &pg]).commit().expect("commit");
        let votes: Vec<String> = journal
            .calls()
            .into_iter()
            .filter(|(_, c)| *c == Call::TpcVote)
            .map(|(k, _)| k)
            .collect();
        assert_eq!(votes, ["z-postgres", "a-sqlite"]);
        assert!(sqlite.committed() && pg.committed());
    }

    #[test]
    fn the_only_resource_with_work_commits_in_one_phase() {
        let manager = TransactionManager::new();
        let journal = Journal::new();
        let reader = ScriptedDataManager::new("a", Kind::ReadOnly, &journal);
        let writer =
            ScriptedDataManager::new("b", Kind::TwoPhase, &journal).with_one_phase_commit();
        joined(&manager, &[&reader, &writer])
            .commit()
            .expect("commit");
        assert_eq!(
            journal.calls_of("b"),
            [Call::TpcBegin, Call::Commit, Call::CommitOnePhase]
        );
        assert_eq!(
            journal.calls_of("a"),
            [Call::TpcBegin, Call::Commit, Call::TpcVote]
        );
    }

    fn votes(journal: &Journal) -> Vec<(String, Call)> {
        journal
            .calls()
            .into_iter()
            .filter(|(_, c)| matches!(c, Call::TpcVote | Call::CommitOnePhase))
            .collect()
    }

    /// Three resources of which only `writer` wrote, beside clean readers `m` and `n`.
    fn one_writer_among_clean_readers(writer: &str) {
        let manager = TransactionManager::new();
        let journal = Journal::new();
        let mut resources = vec![ScriptedDataManager::new(writer, Kind::TwoPhase, &journal)
            .with_one_phase_commit()
            .with_write_state(WriteState::Dirty)];
        for key in ["m", "n"] {
            resources.push(
                ScriptedDataManager::new(key, Kind::ReadOnly, &journal)
                    .with_one_phase_commit()
                    .with_write_state(WriteState::Clean),
            );
        }
        let refs: Vec<&Rc<ScriptedDataManager>> = resources.iter().collect();
        joined(&manager, &refs).commit().expect("commit");
        assert_eq!(
            journal.calls_of(writer),
            [Call::TpcBegin, Call::Commit, Call::CommitOnePhase],
            "{writer} wrote alone and commits in one phase"
        );
        assert_eq!(
            votes(&journal),
            [
                ("m".to_owned(), Call::TpcVote),
                ("n".to_owned(), Call::TpcVote),
                (writer.to_owned(), Call::CommitOnePhase)
            ]
        );
        assert!(resources[0].committed());
    }

    #[test]
    fn a_lone_writer_that_sorts_first_commits_in_one_phase() {
        one_writer_among_clean_readers("a");
    }

    #[test]
    fn a_lone_writer_that_sorts_in_the_middle_commits_in_one_phase() {
        one_writer_among_clean_readers("m2");
    }

    #[test]
    fn a_lone_writer_that_sorts_last_commits_in_one_phase() {
        one_writer_among_clean_readers("z");
    }

    #[test]
    fn resources_that_may_have_written_are_asked_before_the_writer() {
        let manager = TransactionManager::new();
        let journal = Journal::new();
        let writer = ScriptedDataManager::new("a", Kind::TwoPhase, &journal)
            .with_one_phase_commit()
            .with_write_state(WriteState::Dirty);
        // Both may have written: neither is assumed read-only.
        let unsure_reader = ScriptedDataManager::new("b", Kind::ReadOnly, &journal)
            .with_write_state(WriteState::Unknown);
        let unsure_writer = ScriptedDataManager::new("c", Kind::TwoPhase, &journal)
            .with_write_state(WriteState::Unknown);
        let txn = joined(&manager, &[&writer, &unsure_reader, &unsure_writer]);
        txn.commit().expect("commit");
        assert_eq!(
            votes(&journal),
            [
                ("b".to_owned(), Call::TpcVote),
                ("c".to_owned(), Call::TpcVote),
                ("a".to_owned(), Call::TpcVote)
            ],
            "the unknown ones are voted first, and c's prepared vote makes it two-phase"
        );
        assert_eq!(journal.calls_of("a").last(), Some(&Call::TpcFinish));
        assert_eq!(journal.calls_of("c").last(), Some(&Call::TpcFinish));
        assert!(writer.committed() && unsure_writer.committed());
    }

    #[test]
    fn an_unknown_resource_that_votes_read_only_leaves_the_writer_alone() {
        let manager = TransactionManager::new();
        let journal = Journal::new();
        let writer = ScriptedDataManager::new("a", Kind::TwoPhase, &journal)
            .with_one_phase_commit()
            .with_write_state(WriteState::Dirty);
        let unsure = ScriptedDataManager::new("b", Kind::ReadOnly, &journal)
            .with_one_phase_commit()
            .with_write_state(WriteState::Unknown);
        joined(&manager, &[&writer, &unsure])
            .commit()
            .expect("commit");
        assert_eq!(
            votes(&journal),
            [
                ("b".to_owned(), Call::TpcVote),
                ("a".to_owned(), Call::CommitOnePhase)
            ]
        );
    }

    #[test]
    fn two_writers_commit_in_two_phases() {
        let manager = TransactionManager::new();
        let journal = Journal::new();
        let a = ScriptedDataManager::new("a", Kind::TwoPhase, &journal)
            .with_one_phase_commit()
            .with_write_state(WriteState::Dirty);
        let b = ScriptedDataManager::new("b", Kind::ReadOnly, &journal)
            .with_one_phase_commit()
            .with_write_state(WriteState::Clean);
        let c = ScriptedDataManager::new("c", Kind::TwoPhase, &journal)
            .with_one_phase_commit()
            .with_write_state(WriteState::Dirty);
        joined(&manager, &[&c, &b, &a]).commit().expect("commit");
        for key in ["a", "c"] {
            assert_eq!(
                journal.calls_of(key),
                [Call::TpcBegin, Call::Commit, Call::TpcVote, Call::TpcFinish]
            );
        }
        assert_eq!(
            votes(&journal),
            [
                ("b".to_owned(), Call::TpcVote),
                ("a".to_owned(), Call::TpcVote),
                ("c".to_owned(), Call::TpcVote)
            ]
        );
    }

    #[test]
    fn a_lone_writer_among_many_clean_resources_commits_in_one_phase() {
        // More resources than the vote order keeps inline.
        let manager = TransactionManager::new();
        let journal = Journal::new();
        let writer = ScriptedDataManager::new("a00", Kind::TwoPhase, &journal)
            .with_one_phase_commit()
            .with_write_state(WriteState::Dirty);
        let mut resources = vec![writer.clone()];
        for i in 1..20 {
            resources.push(
                ScriptedDataManager::new(&format!("a{i:02}"), Kind::ReadOnly, &journal)
                    .with_write_state(WriteState::Clean),
            );
        }
        let refs: Vec<&Rc<ScriptedDataManager>> = resources.iter().rev().collect();
        joined(&manager, &refs).commit().expect("commit");
        let order = votes(&journal);
        assert_eq!(order.len(), 20);
        assert_eq!(order[0], ("a01".to_owned(), Call::TpcVote));
        assert_eq!(order[19], ("a00".to_owned(), Call::CommitOnePhase));
        assert!(writer.committed());
    }

    #[test]
    fn abort_after_a_failed_commit_of_many_resources_keeps_their_join_order() {
        let manager = TransactionManager::new();
        let journal = Journal::new();
        let keys: Vec<String> = (0..20).rev().map(|i| format!("r{i:02}")).collect();
        let resources: Vec<_> = keys
            .iter()
            .map(|k| {
                let r = ScriptedDataManager::new(k, Kind::TwoPhase, &journal);
                if k == "r07" {
                    r.fail_on(Call::TpcVote)
                } else {
                    r
                }
            })
            .collect();
        let refs: Vec<&Rc<ScriptedDataManager>> = resources.iter().collect();
        let txn = joined(&manager, &refs);
        txn.commit().expect_err("r07 fails its vote");
        journal.clear();
        txn.abort().expect("abort");
        let aborted: Vec<String> = journal.calls().into_iter().map(|(k, _)| k).collect();
        assert_eq!(aborted, keys, "join order, not commit order");
    }

    #[test]
    fn a_one_phase_resource_votes_last_and_alone_whatever_the_write_states() {
        let manager = TransactionManager::new();
        let journal = Journal::new();
        let sqlite = ScriptedDataManager::new("a-sqlite", Kind::OnePhase, &journal)
            .with_write_state(WriteState::Clean);
        let pg = ScriptedDataManager::new("z-postgres", Kind::TwoPhase, &journal)
            .with_one_phase_commit()
            .with_write_state(WriteState::Dirty);
        joined(&manager, &[&sqlite, &pg]).commit().expect("commit");
        assert_eq!(
            votes(&journal),
            [
                ("z-postgres".to_owned(), Call::TpcVote),
                ("a-sqlite".to_owned(), Call::TpcVote)
            ],
            "the two-phase writer prepares: the one-phase resource's vote is the commit point"
        );
        assert!(sqlite.committed() && pg.committed());
    }

    #[test]
    fn doom_is_sticky_and_commit_changes_nothing() {
        let manager = TransactionManager::new();
        let journal = Journal::new();
        let a = ScriptedDataManager::new("a", Kind::TwoPhase, &journal);
        let txn = joined(&manager, &[&a]);
        txn.doom().expect("doom");
        assert!(matches!(txn.commit(), Err(Error::Doomed)));
        assert!(txn.is_doomed());
        assert!(journal.calls().is_empty());
        txn.abort().expect("abort");
        assert_eq!(journal.calls_of("a"), [Call::Abort]);
    }

    #[test]
    fn the_next_transaction_starts_with_no_resource_of_a_committed_one() {
        let manager = TransactionManager::new();
        let journal = Journal::new();
        let a = ScriptedDataManager::new("a", Kind::TwoPhase, &journal);
        let b = ScriptedDataManager::new("b", Kind::TwoPhase, &journal);
        joined(&manager, &[&b, &a]).commit().expect("commit");
        let next = manager.begin().expect("begin");
        assert_eq!(next.resource_count(), 0);
        let a_dyn: Rc<dyn DataManager> = a.clone();
        assert!(!next.has_joined(&a_dyn));
        next.join(a.clone()).expect("join");
        assert_eq!(next.resource_count(), 1);
    }

    #[test]
    fn commit_order_sorts_many_resources_stably_two_phase_first() {
        let journal = Journal::new();
        let mut resources: Vec<Rc<dyn DataManager>> = Vec::new();
        for i in (0..20).rev() {
            let kind = if i % 7 == 0 {
                Kind::OnePhase
            } else {
                Kind::TwoPhase
            };
            resources.push(ScriptedDataManager::new(
                &format!("r{i:02}"),
                kind,
                &journal,
            ));
        }
        for n in [0, 1, 2, 5, 16, 17, 20] {
            let mut sorted = resources[..n].to_vec();
            sort_in_commit_order(&mut sorted);
            let mut expected = resources[..n].to_vec();
            expected.sort_by(commit_order);
            let keys = |v: &[Rc<dyn DataManager>]| -> Vec<String> {
                v.iter().map(|r| r.sort_key().to_owned()).collect()
            };
            assert_eq!(keys(&sorted), keys(&expected), "{n} resources");
        }
    }

    #[test]
    fn setting_data_of_a_type_twice_keeps_the_last_value() {
        struct Tenant(&'static str);
        struct RequestId(u64);
        let manager = TransactionManager::new();
        let txn = manager.begin().expect("begin");
        txn.set_data(Tenant("a"));
        txn.set_data(RequestId(1));
        txn.set_data(Tenant("b"));
        assert_eq!(txn.data::<Tenant>().map(|t| t.0), Some("b"));
        assert_eq!(txn.data::<RequestId>().map(|r| r.0), Some(1));
    }

    #[test]
    fn votes_spill_past_the_inline_capacity_in_order() {
        let mut votes = Votes::new();
        let all: Vec<Vote> = (0..40)
            .map(|i| match i % 3 {
                0 => Vote::Prepared,
                1 => Vote::ReadOnly,
                _ => Vote::Committed,
            })
            .collect();
        for (i, v) in all.iter().enumerate() {
            votes.push(*v);
            assert_eq!(&votes[..], &all[..=i]);
        }
    }
}
