//! Branch ids: who prepared a branch, and the prepared branches a database lists.
//!
//! Every branch a managed session prepares carries the identity of the process that made
//! it: the registry's [`NodeId`], its incarnation and the transaction's sequence number,
//! then the engine's name.
//!
//! | backend | id | longest |
//! |---|---|---|
//! | PostgreSQL gid | `sqlassist_<node>_<incarnation: 8 hex>_<sequence: 16 hex>_<engine>` | 125 bytes (limit 200) |
//! | MariaDB/MySQL XA gtrid | `sqlassist_<node>_<incarnation: 8 hex>_<sequence: 16 hex>` | 60 bytes (limit 64) |
//! | MariaDB/MySQL XA bqual | `<engine>` (format id 1, the server's default) | 64 bytes (limit 64) |
//!
//! Node ids are `[a-z0-9-]`, engine names `[A-Za-z0-9_.-]` (checked by the registry), the
//! numbers fixed-width lowercase hex: the id needs no quoting, and exactly one text stands
//! for each branch. A listed branch is *ours* only when every field parses and the node is
//! this registry's ([`Owner::Ours`]); a branch with our prefix whose fields do not parse is
//! reported as [`Owner::Malformed`] and never counts as anyone's.

use std::fmt;
use std::str::FromStr;

use crate::backend::{dispatch, Protocol};
use crate::engine::Engine;
use crate::error::{Error, Result};

/// The prefix of every branch id sqlassist makes.
const PREFIX: &str = "sqlassist_";

/// The longest node id: the XA gtrid (`sqlassist_` + node + 8 + 16 hex digits + two
/// separators) must fit MariaDB's 64 bytes.
pub const MAX_NODE_ID_LEN: usize = 24;

/// The name of one process (or of the one role it plays) among everything that prepares
/// branches on the same databases: `[a-z0-9-]{1,24}`, such as `orders-0`.
///
/// Recovery finishes only the branches of its own node, so two processes running at once
/// must not share a node id, and a restarted process keeps its predecessor's id to
/// finish what it left prepared. The default ([`NodeId::per_process`]) is drawn at random
/// once per process: safe (no process ever claims another's branches) but useless for
/// recovery after a restart.
///
/// # Examples
///
/// ```
/// use sqlassist::NodeId;
///
/// let node: NodeId = "orders-0".parse()?;
/// assert_eq!(node.as_str(), "orders-0");
/// assert!(NodeId::new("Orders_0").is_err()); // upper case and `_` are refused
/// assert!(NodeId::new(&"a".repeat(25)).is_err()); // too long for an XA gtrid
/// # Ok::<(), sqlassist::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(String);

impl NodeId {
    /// A node id, validated.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidNodeId`] unless `id` is 1 to 24 characters of `[a-z0-9-]`.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{Error, NodeId};
    ///
    /// assert_eq!(NodeId::new("web-3")?.as_str(), "web-3");
    /// assert!(matches!(NodeId::new(""), Err(Error::InvalidNodeId { .. })));
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn new(id: &str) -> Result<Self> {
        if is_node_id(id) {
            Ok(Self(id.to_owned()))
        } else {
            Err(Error::InvalidNodeId {
                value: id.escape_debug().to_string(),
            })
        }
    }

    /// This process's default node id: `r-` and 12 characters drawn once per process (from
    /// [`transaction::coordinator_id`]), the same for every registry of the process.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::NodeId;
    ///
    /// let node = NodeId::per_process();
    /// assert!(node.as_str().starts_with("r-"));
    /// assert_eq!(node, NodeId::per_process());
    /// ```
    pub fn per_process() -> Self {
        const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
        let mut bits = transaction::coordinator_id();
        let mut id = String::from("r-");
        for _ in 0..12 {
            id.push(char::from(ALPHABET[(bits & 31) as usize]));
            bits >>= 5;
        }
        Self(id)
    }

    /// The id as text.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(sqlassist::NodeId::new("a1")?.as_str(), "a1");
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for NodeId {
    fn default() -> Self {
        Self::per_process()
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for NodeId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::new(s)
    }
}

fn is_node_id(s: &str) -> bool {
    (1..=MAX_NODE_ID_LEN).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn is_engine_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// The id of one prepared branch: node, incarnation, sequence and engine.
///
/// `Display` gives the PostgreSQL gid form; [`parse`](Self::parse) reads it back, exactly:
/// `parse(id.to_string()) == id`, and any other text is refused.
///
/// # Examples
///
/// ```
/// use sqlassist::{BranchId, NodeId};
///
/// let id = BranchId::new(NodeId::new("orders-0")?, 3, 42, "writer")?;
/// assert_eq!(id.to_string(), "sqlassist_orders-0_00000003_000000000000002a_writer");
/// assert_eq!(BranchId::parse(&id.to_string())?, id);
/// assert!(BranchId::parse("sqlassist_orders-0_3_2a_writer").is_err()); // not fixed-width
/// # Ok::<(), sqlassist::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BranchId {
    node: NodeId,
    incarnation: u32,
    sequence: u64,
    engine: String,
}

impl BranchId {
    /// A branch id from its parts.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidEngineName`] unless `engine` is 1 to 64 characters of
    /// `[A-Za-z0-9_.-]`.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{BranchId, NodeId};
    ///
    /// let id = BranchId::new(NodeId::new("n1")?, 0, 1, "db")?;
    /// assert_eq!((id.node().as_str(), id.incarnation(), id.sequence(), id.engine()), ("n1", 0, 1, "db"));
    /// assert!(BranchId::new(NodeId::new("n1")?, 0, 1, "my db").is_err());
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn new(node: NodeId, incarnation: u32, sequence: u64, engine: &str) -> Result<Self> {
        if !is_engine_name(engine) {
            return Err(Error::InvalidEngineName {
                name: engine.escape_debug().to_string(),
            });
        }
        Ok(Self {
            node,
            incarnation,
            sequence,
            engine: engine.to_owned(),
        })
    }

    /// Parses the gid form (`Display`'s).
    ///
    /// # Errors
    ///
    /// [`Error::MalformedBranchId`] naming the first field that does not parse (or saying
    /// the prefix is not sqlassist's).
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{BranchId, Error};
    ///
    /// let id = BranchId::parse("sqlassist_web-1_0000000a_0000000000000007_main")?;
    /// assert_eq!((id.node().as_str(), id.incarnation(), id.sequence()), ("web-1", 10, 7));
    /// assert!(matches!(
    ///     BranchId::parse("sqlassist_web-1_0000000a_000000000000000g_main"),
    ///     Err(Error::MalformedBranchId { field: "sequence", .. })
    /// ));
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn parse(gid: &str) -> Result<Self> {
        let malformed = |field| Error::MalformedBranchId {
            id: gid.escape_debug().to_string(),
            field,
        };
        let rest = gid
            .strip_prefix(PREFIX)
            .ok_or_else(|| malformed("prefix"))?;
        parse_fields(rest, None).map_err(malformed)
    }

    /// Parses an XA xid as `XA RECOVER` lists it: format id 1, gtrid
    /// `sqlassist_<node>_<incarnation>_<sequence>`, bqual `<engine>`.
    ///
    /// # Errors
    ///
    /// [`Error::MalformedBranchId`] naming the first field that does not parse.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::BranchId;
    ///
    /// let id = BranchId::parse_xa(1, b"sqlassist_n1_00000000_0000000000000005", b"orders")?;
    /// assert_eq!(id.to_string(), "sqlassist_n1_00000000_0000000000000005_orders");
    /// assert!(BranchId::parse_xa(7, b"sqlassist_n1_00000000_0000000000000005", b"orders").is_err());
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn parse_xa(format_id: i64, gtrid: &[u8], bqual: &[u8]) -> Result<Self> {
        let shown = format!(
            "{},{},{format_id}",
            String::from_utf8_lossy(gtrid).escape_debug(),
            String::from_utf8_lossy(bqual).escape_debug()
        );
        let malformed = |field| Error::MalformedBranchId {
            id: shown.clone(),
            field,
        };
        let gtrid = std::str::from_utf8(gtrid).map_err(|_| malformed("prefix"))?;
        let rest = gtrid
            .strip_prefix(PREFIX)
            .ok_or_else(|| malformed("prefix"))?;
        if format_id != XA_FORMAT_ID {
            return Err(malformed("format id"));
        }
        let engine = std::str::from_utf8(bqual).map_err(|_| malformed("engine"))?;
        parse_fields(rest, Some(engine)).map_err(malformed)
    }

    /// The node that prepared the branch.
    ///
    /// # Examples
    ///
    /// ```
    /// let id = sqlassist::BranchId::parse("sqlassist_n1_00000000_0000000000000001_db")?;
    /// assert_eq!(id.node().as_str(), "n1");
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn node(&self) -> &NodeId {
        &self.node
    }

    /// The incarnation of the node (its start) that prepared the branch.
    ///
    /// # Examples
    ///
    /// ```
    /// let id = sqlassist::BranchId::parse("sqlassist_n1_000000ff_0000000000000001_db")?;
    /// assert_eq!(id.incarnation(), 255);
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn incarnation(&self) -> u32 {
        self.incarnation
    }

    /// The transaction's sequence number within its incarnation
    /// ([`transaction::TransactionId::sequence`]).
    ///
    /// # Examples
    ///
    /// ```
    /// let id = sqlassist::BranchId::parse("sqlassist_n1_00000000_0000000000000010_db")?;
    /// assert_eq!(id.sequence(), 16);
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// The engine (registry name) the branch belongs to.
    ///
    /// # Examples
    ///
    /// ```
    /// let id = sqlassist::BranchId::parse("sqlassist_n1_00000000_0000000000000010_orders_pg")?;
    /// assert_eq!(id.engine(), "orders_pg");
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn engine(&self) -> &str {
        &self.engine
    }
}

impl fmt::Display for BranchId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        BranchName {
            node: &self.node,
            incarnation: self.incarnation,
            sequence: self.sequence,
            engine: &self.engine,
        }
        .fmt(f)
    }
}

impl FromStr for BranchId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

/// The XA format id of sqlassist's xids: the servers' default.
pub(crate) const XA_FORMAT_ID: i64 = 1;

/// `<node>_<incarnation>_<sequence>_<engine>` (a gid without its prefix), or, with
/// `engine` given (XA's bqual), `<node>_<incarnation>_<sequence>`: exactly, field by field.
/// Node ids and hex numbers hold no `_`, so each split is the only one possible.
fn parse_fields(s: &str, engine: Option<&str>) -> std::result::Result<BranchId, &'static str> {
    let (node, rest) = s.split_once('_').unwrap_or((s, ""));
    if !is_node_id(node) {
        return Err("node");
    }
    let (incarnation, rest) = rest.split_once('_').unwrap_or((rest, ""));
    let incarnation = fixed_hex(incarnation, 8)
        .and_then(|v| u32::try_from(v).ok())
        .ok_or("incarnation")?;
    let (sequence, engine) = match engine {
        Some(engine) => (rest, engine),
        None => rest.split_once('_').unwrap_or((rest, "")),
    };
    let sequence = fixed_hex(sequence, 16).ok_or("sequence")?;
    if !is_engine_name(engine) {
        return Err("engine");
    }
    Ok(BranchId {
        node: NodeId(node.to_owned()),
        incarnation,
        sequence,
        engine: engine.to_owned(),
    })
}

/// `s` as a number when it is exactly `width` lowercase hex digits.
fn fixed_hex(s: &str, width: usize) -> Option<u64> {
    if s.len() != width
        || !s
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
}

/// A branch id borrowed from the session that names it: formats without building a
/// [`BranchId`] on the commit path.
#[derive(Clone, Copy)]
pub(crate) struct BranchName<'a> {
    pub node: &'a NodeId,
    pub incarnation: u32,
    pub sequence: u64,
    pub engine: &'a str,
}

// Which of these a build uses depends on the backends compiled in.
#[cfg_attr(not(all(feature = "postgres", feature = "mysql")), allow(dead_code))]
impl BranchName<'_> {
    /// The XA gtrid: the gid without the engine.
    pub(crate) fn gtrid(&self) -> Gtrid<'_> {
        Gtrid(self)
    }

    /// The gid, in a string allocated once at its final size (this runs at every vote).
    pub(crate) fn to_gid(self) -> String {
        let mut gid = String::with_capacity(self.gtrid_len() + 1 + self.engine.len());
        self.push_gtrid(&mut gid);
        gid.push('_');
        gid.push_str(self.engine);
        gid
    }

    /// The XA xid as SQL, `'<gtrid>','<engine>'`, allocated once (this runs at every
    /// `XA START`).
    pub(crate) fn to_xid_sql(self) -> String {
        let mut xid = String::with_capacity(self.gtrid_len() + self.engine.len() + 5);
        xid.push('\'');
        self.push_gtrid(&mut xid);
        xid.push_str("','");
        xid.push_str(self.engine);
        xid.push('\'');
        xid
    }

    fn gtrid_len(&self) -> usize {
        PREFIX.len() + self.node.as_str().len() + 1 + 8 + 1 + 16
    }

    fn push_gtrid(&self, out: &mut String) {
        out.push_str(PREFIX);
        out.push_str(self.node.as_str());
        out.push('_');
        push_hex(out, u64::from(self.incarnation), 8);
        out.push('_');
        push_hex(out, self.sequence, 16);
    }
}

/// Appends the low `4 * digits` bits of `value` as exactly `digits` lowercase hex digits
/// (`digits` at most 16), without formatting machinery or a UTF-8 check: a gid is built
/// at every begin and vote.
fn push_hex(out: &mut String, value: u64, digits: u32) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for i in (0..digits.min(16)).rev() {
        out.push(char::from(DIGITS[((value >> (4 * i)) & 0xf) as usize]));
    }
}

/// `value` as exactly `N` lowercase hex digits (its low `4 * N` bits), on the stack.
fn hex<const N: usize>(value: u64) -> HexDigits<N> {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [b'0'; N];
    for (i, digit) in out.iter_mut().rev().enumerate() {
        // The shift stays below 64: N is at most 16.
        *digit = DIGITS[((value >> (4 * i)) & 0xf) as usize];
    }
    HexDigits(out)
}

/// Hex digits from [`hex`].
struct HexDigits<const N: usize>([u8; N]);

impl<const N: usize> HexDigits<N> {
    fn as_str(&self) -> &str {
        // Only ASCII hex digits are ever stored.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Display for BranchName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}_{}", self.gtrid(), self.engine)
    }
}

/// The XA gtrid of a [`BranchName`].
pub(crate) struct Gtrid<'a>(&'a BranchName<'a>);

impl fmt::Display for Gtrid<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(PREFIX)?;
        f.write_str(self.0.node.as_str())?;
        f.write_str("_")?;
        f.write_str(hex::<8>(u64::from(self.0.incarnation)).as_str())?;
        f.write_str("_")?;
        f.write_str(hex::<16>(self.0.sequence).as_str())
    }
}

/// Whose a prepared branch is, as far as its id tells.
///
/// # Examples
///
/// ```
/// use sqlassist::{NodeId, Owner};
///
/// let me = NodeId::new("web-1")?;
/// assert!(matches!(Owner::of_gid("sqlassist_web-1_00000000_0000000000000001_db", &me), Owner::Ours(_)));
/// assert!(matches!(Owner::of_gid("sqlassist_web-2_00000000_0000000000000001_db", &me), Owner::OtherNode(_)));
/// assert!(matches!(Owner::of_gid("sqlassist_web-1_0_1_db", &me), Owner::Malformed { .. }));
/// assert!(matches!(Owner::of_gid("pgbench_17", &me), Owner::Foreign));
/// # Ok::<(), sqlassist::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Owner {
    /// Prepared by this node: every field parsed and the node matched.
    Ours(BranchId),
    /// Prepared by sqlassist on another node: never touched by this one.
    OtherNode(BranchId),
    /// sqlassist's prefix, but a field does not parse: reported, never touched.
    Malformed {
        /// The first field that does not parse.
        field: &'static str,
    },
    /// Not sqlassist's.
    Foreign,
}

impl Owner {
    /// Classifies a PostgreSQL gid for node `me`.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{NodeId, Owner};
    ///
    /// let me = NodeId::new("a")?;
    /// assert_eq!(Owner::of_gid("other_app_gid", &me), Owner::Foreign);
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn of_gid(gid: &str, me: &NodeId) -> Self {
        Self::classify(gid.starts_with(PREFIX), BranchId::parse(gid), me)
    }

    /// Classifies an XA xid for node `me`.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{NodeId, Owner};
    ///
    /// let me = NodeId::new("a")?;
    /// assert!(matches!(Owner::of_xa(1, b"sqlassist_a_00000000_0000000000000001", b"db", &me), Owner::Ours(_)));
    /// assert!(matches!(Owner::of_xa(1, b"sqlassist_a_00000000_0000000000000001", b"", &me), Owner::Malformed { field: "engine" }));
    /// assert_eq!(Owner::of_xa(1, b"tm1-42", b"db", &me), Owner::Foreign);
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn of_xa(format_id: i64, gtrid: &[u8], bqual: &[u8], me: &NodeId) -> Self {
        Self::classify(
            gtrid.starts_with(PREFIX.as_bytes()),
            BranchId::parse_xa(format_id, gtrid, bqual),
            me,
        )
    }

    fn classify(prefixed: bool, parsed: Result<BranchId>, me: &NodeId) -> Self {
        match parsed {
            Ok(id) if id.node == *me => Owner::Ours(id),
            Ok(id) => Owner::OtherNode(id),
            Err(Error::MalformedBranchId { field, .. }) if prefixed => Owner::Malformed { field },
            Err(_) => Owner::Foreign,
        }
    }
}

/// A branch the database lists as prepared, with its id as the server names it and whose
/// it is.
///
/// # Examples
///
/// Listing needs a server that can prepare (PostgreSQL or MariaDB); see
/// [`Engine::prepared_branches`].
///
/// ```no_run
/// # #[cfg(feature = "postgres")]
/// # {
/// use sqlassist::{DatabaseUrl, Engine, EngineOptions, NodeId, Owner};
///
/// let engine = Engine::new(EngineOptions::new(DatabaseUrl::parse("postgresql://app@localhost/app")?))?;
/// for branch in engine.prepared_branches(&NodeId::new("orders-0")?)? {
///     if let Owner::Malformed { field } = branch.owner() {
///         eprintln!("{}: sqlassist's prefix, bad {field}: left alone", branch.id());
///     }
/// }
/// # }
/// # Ok::<(), sqlassist::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedBranch {
    id: String,
    owner: Owner,
}

impl PreparedBranch {
    /// The branch as the server names it: a PostgreSQL gid, or a MariaDB xid as SQL
    /// (`X'<gtrid hex>',X'<bqual hex>',<format id>`).
    ///
    /// # Examples
    ///
    /// See [`PreparedBranch`].
    ///
    /// ```
    /// fn ids(branches: &[sqlassist::PreparedBranch]) -> Vec<&str> {
    ///     branches.iter().map(|b| b.id()).collect()
    /// }
    /// assert!(ids(&[]).is_empty());
    /// ```
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whose the branch is.
    ///
    /// # Examples
    ///
    /// ```
    /// fn ours(branches: &[sqlassist::PreparedBranch]) -> usize {
    ///     branches.iter().filter(|b| matches!(b.owner(), sqlassist::Owner::Ours(_))).count()
    /// }
    /// assert_eq!(ours(&[]), 0);
    /// ```
    pub fn owner(&self) -> &Owner {
        &self.owner
    }
}

/// Who names the branches of a registry's sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    pub node: NodeId,
    pub incarnation: u32,
}

/// A branch as a backend lists it.
// Which of these a build uses depends on the backends compiled in.
#[cfg_attr(not(all(feature = "postgres", feature = "mysql")), allow(dead_code))]
pub(crate) struct Listed {
    /// The id phase two takes.
    pub id: String,
    /// Whose it is, for a given node.
    pub owner: fn(&Listed, &NodeId) -> Owner,
    /// For XA: format id, gtrid, bqual.
    pub xa: Option<(i64, Vec<u8>, Vec<u8>)>,
}

// Which of these a build uses depends on the backends compiled in.
#[cfg_attr(not(all(feature = "postgres", feature = "mysql")), allow(dead_code))]
impl Listed {
    /// A PostgreSQL gid.
    pub(crate) fn gid(gid: String) -> Self {
        Self {
            id: gid,
            owner: |l, me| Owner::of_gid(&l.id, me),
            xa: None,
        }
    }
}

/// What a commit or rollback of a prepared branch by id found.
///
/// # Examples
///
/// ```
/// use sqlassist::Finished;
/// assert_ne!(Finished::Done, Finished::Absent);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Finished {
    /// The statement committed (or rolled back) the branch.
    Done,
    /// The server no longer knows the branch: someone finished it already.
    Absent,
}

impl Engine {
    /// The branches prepared in this engine's database, each classified for node `me`.
    /// PostgreSQL: `pg_prepared_xacts` of this database. MariaDB/MySQL: `XA RECOVER`,
    /// which lists the whole server (MariaDB shows every branch to any user; MySQL 8 shows
    /// other users' only with `XA_RECOVER_ADMIN`): tell engines apart by
    /// [`BranchId::engine`]. SQLite never prepares: the list is empty.
    ///
    /// # Errors
    ///
    /// [`Error::Connect`] when no connection can be had; [`Error::Database`] when the
    /// listing fails.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{DatabaseUrl, Engine, EngineOptions, NodeId};
    ///
    /// let engine = Engine::new(EngineOptions::new(DatabaseUrl::parse("sqlite://")?))?;
    /// assert!(engine.prepared_branches(&NodeId::per_process())?.is_empty());
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn prepared_branches(&self, me: &NodeId) -> Result<Vec<PreparedBranch>> {
        let mut conn = self.checkout()?;
        let listed = dispatch!(conn, B => B::list_prepared(&mut conn))
            .map_err(|e| self.database_error(&mut conn, e))?;
        Ok(listed
            .into_iter()
            .map(|l| PreparedBranch {
                owner: (l.owner)(&l, me),
                id: l.id,
            })
            .collect())
    }

    /// Commits a prepared branch by id, from a connection of the pool. A branch already
    /// finished reads as [`Finished::Absent`]; so does, after about a second of retries, a
    /// MariaDB branch still attached to the live connection that prepared it (MariaDB
    /// answers `XAER_NOTA` for both).
    ///
    /// # Errors
    ///
    /// [`Error::Connect`] when no connection can be had; [`Error::Database`] when the
    /// server refuses for another reason.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{DatabaseUrl, Engine, EngineOptions, NodeId};
    ///
    /// let engine = Engine::new(EngineOptions::new(DatabaseUrl::parse("sqlite://")?))?;
    /// for branch in engine.prepared_branches(&NodeId::per_process())? {
    ///     engine.commit_prepared(&branch)?; // SQLite lists none
    /// }
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn commit_prepared(&self, branch: &PreparedBranch) -> Result<Finished> {
        let op = dispatch!(self, B => B::commit_prepared as crate::backend::PhaseTwo);
        self.finish_by_id(&branch.id, op)
    }

    /// Rolls back a prepared branch by id, from a connection of the pool (see
    /// [`commit_prepared`](Self::commit_prepared)).
    ///
    /// # Errors
    ///
    /// As [`commit_prepared`](Self::commit_prepared).
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{DatabaseUrl, Engine, EngineOptions, NodeId, Owner};
    ///
    /// let engine = Engine::new(EngineOptions::new(DatabaseUrl::parse("sqlite://")?))?;
    /// let me = NodeId::per_process();
    /// for branch in engine.prepared_branches(&me)? {
    ///     if matches!(branch.owner(), Owner::Ours(_)) {
    ///         engine.rollback_prepared(&branch)?;
    ///     }
    /// }
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn rollback_prepared(&self, branch: &PreparedBranch) -> Result<Finished> {
        let op = dispatch!(self, B => B::rollback_prepared as crate::backend::PhaseTwo);
        self.finish_by_id(&branch.id, op)
    }

    fn finish_by_id(&self, id: &str, op: crate::backend::PhaseTwo) -> Result<Finished> {
        let mut conn = self.checkout()?;
        let outcome = op(&mut conn, id);
        // MariaDB detaches a closed connection's branch asynchronously: retry a while.
        let outcome = dispatch!(conn, B => B::retry_on_fresh(&mut conn, id, outcome, op));
        match outcome {
            Ok(()) => Ok(Finished::Done),
            Err(e) => match dispatch!(conn, B => B::after_failure(&mut conn, id)) {
                Some(crate::backend::AfterFailure::Resolved) => Ok(Finished::Absent),
                _ => Err(self.database_error(&mut conn, e)),
            },
        }
    }

    pub(crate) fn database_error(
        &self,
        conn: &mut crate::conn::Conn,
        source: diesel::result::Error,
    ) -> Error {
        let transient = dispatch!(conn, B => B::is_transient(Some(conn), &source));
        Error::Database {
            engine: self.url().redacted().to_owned(),
            transient,
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(s: &str) -> NodeId {
        NodeId::new(s).expect("a valid node id")
    }

    #[test]
    fn branch_ids_round_trip_through_their_gid_and_xa_forms() {
        for (n, inc, seq, engine) in [
            ("a", 0, 0, "e"),
            ("orders-0", 7, 42, "writer"),
            (&*"z".repeat(24), u32::MAX, u64::MAX, &*"E_.-9".repeat(12)),
        ] {
            let id = BranchId::new(node(n), inc, seq, engine).expect("valid parts");
            let gid = id.to_string();
            assert_eq!(BranchId::parse(&gid).expect("parses"), id, "{gid}");
            let name = BranchName {
                node: id.node(),
                incarnation: inc,
                sequence: seq,
                engine,
            };
            let gtrid = name.gtrid().to_string();
            assert_eq!(
                BranchId::parse_xa(1, gtrid.as_bytes(), engine.as_bytes()).expect("parses"),
                id
            );
            assert_eq!(name.to_string(), gid);
            assert_eq!(name.to_gid(), gid);
            assert_eq!(name.to_xid_sql(), format!("'{gtrid}','{engine}'"));
        }
    }

    #[test]
    fn the_longest_ids_fit_postgresql_and_xa_limits() {
        let longest = BranchName {
            node: &node(&"n".repeat(MAX_NODE_ID_LEN)),
            incarnation: u32::MAX,
            sequence: u64::MAX,
            engine: &"e".repeat(64),
        };
        assert!(longest.gtrid().to_string().len() <= 64);
        assert_eq!(longest.gtrid().to_string().len(), 60);
        assert!(longest.to_string().len() < 200);
    }

    #[test]
    fn node_ids_are_validated() {
        for bad in ["", "A", "a_b", "a b", "a.b", "é", &"a".repeat(25)] {
            assert!(
                matches!(NodeId::new(bad), Err(Error::InvalidNodeId { .. })),
                "{bad:?}"
            );
        }
        for good in ["a", "0", "-", "orders-0", &"a".repeat(24)] {
            assert_eq!(NodeId::new(good).expect("valid").as_str(), good);
        }
        let default = NodeId::per_process();
        assert!(is_node_id(default.as_str()), "{default}");
        assert_eq!(default.as_str().len(), 14);
    }

    #[test]
    fn every_malformed_field_is_named_and_never_ours() {
        let me = node("n1");
        let good = "sqlassist_n1_00000001_0000000000000002_db";
        assert!(matches!(Owner::of_gid(good, &me), Owner::Ours(_)));
        for (gid, field) in [
            ("sqlassist-n1_00000001_0000000000000002_db", "prefix"),
            ("sqlassist_N1_00000001_0000000000000002_db", "node"),
            ("sqlassist__00000001_0000000000000002_db", "node"),
            ("sqlassist_n1_0000001_0000000000000002_db", "incarnation"),
            ("sqlassist_n1_0000000A_0000000000000002_db", "incarnation"),
            ("sqlassist_n1_+0000001_0000000000000002_db", "incarnation"),
            ("sqlassist_n1_00000001_000000000000002_db", "sequence"),
            ("sqlassist_n1_00000001_00000000000000002_db", "sequence"),
            ("sqlassist_n1_00000001_0000000000000002", "engine"),
            ("sqlassist_n1_00000001_0000000000000002_", "engine"),
            ("sqlassist_n1_00000001_0000000000000002_d b", "engine"),
            (
                &format!("sqlassist_n1_00000001_0000000000000002_{}", "e".repeat(65)),
                "engine",
            ),
            ("sqlassist_0123456789abcdef-1f_writer", "incarnation"), // an older release's gid
        ] {
            match BranchId::parse(gid) {
                Err(Error::MalformedBranchId { field: f, .. }) => assert_eq!(f, field, "{gid}"),
                other => panic!("{gid}: {other:?}"),
            }
            let owner = Owner::of_gid(gid, &me);
            if field == "prefix" {
                assert_eq!(owner, Owner::Foreign);
            } else {
                assert_eq!(owner, Owner::Malformed { field }, "{gid}");
            }
        }
        let xa = |f: i64, g: &[u8], b: &[u8]| match BranchId::parse_xa(f, g, b) {
            Err(Error::MalformedBranchId { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        let g = b"sqlassist_n1_00000001_0000000000000002";
        assert_eq!(xa(2, g, b"db"), "format id");
        assert_eq!(
            xa(1, b"sqlassist_n1_00000001_0000000000000002_x", b"db"),
            "sequence"
        );
        assert_eq!(xa(1, g, b"\xff"), "engine");
        assert_eq!(xa(1, b"sqlassist_\xff", b"db"), "prefix");
        assert_eq!(Owner::of_xa(1, b"\xff\x00", b"db", &me), Owner::Foreign);
    }

    #[test]
    fn a_foreign_node_is_not_ours_even_when_it_shares_a_prefix() {
        let me = node("tm1");
        let other = "sqlassist_tm10_00000000_0000000000000001_db";
        match Owner::of_gid(other, &me) {
            Owner::OtherNode(id) => assert_eq!(id.node().as_str(), "tm10"),
            owner => panic!("{owner:?}"),
        }
    }

    proptest::proptest! {
        #[test]
        fn any_valid_parts_round_trip(
            n in "[a-z0-9-]{1,24}",
            inc in proptest::prelude::any::<u32>(),
            seq in proptest::prelude::any::<u64>(),
            engine in "[A-Za-z0-9_.-]{1,64}",
        ) {
            let id = BranchId::new(node(&n), inc, seq, &engine).expect("valid parts");
            let gid = id.to_string();
            proptest::prop_assert_eq!(BranchId::parse(&gid).expect("parses"), id.clone());
            let name = BranchName { node: id.node(), incarnation: inc, sequence: seq, engine: &engine };
            proptest::prop_assert_eq!(name.to_gid(), gid);
            let gtrid = name.gtrid().to_string();
            proptest::prop_assert!(gtrid.len() <= 64);
            proptest::prop_assert_eq!(
                BranchId::parse_xa(1, gtrid.as_bytes(), engine.as_bytes()).expect("parses"),
                id
            );
        }

        #[test]
        fn whatever_parses_prints_back_to_the_same_text(
            // Near-valid fields: many parse, many fail in one field.
            n in "[a-z0-9A-Z_-]{0,26}",
            inc in "[0-9a-gA-F]{7,9}",
            seq in "[0-9a-gA-F]{15,17}",
            engine in "[A-Za-z0-9_. -]{0,66}",
        ) {
            let text = format!("sqlassist_{n}_{inc}_{seq}_{engine}");
            match BranchId::parse(&text) {
                Ok(id) => proptest::prop_assert_eq!(id.to_string(), text),
                Err(e) => proptest::prop_assert!(
                    matches!(e, Error::MalformedBranchId { .. }),
                    "{e:?}"
                ),
            }
        }
    }

    #[test]
    fn parse_accepts_only_what_display_produces() {
        // A cheap exhaustive-ish property: mutate every byte of a valid gid; whatever still
        // parses must print back to exactly the same text.
        let gid = "sqlassist_n-1_0000000a_00000000000000ff_db_1";
        let bytes = gid.as_bytes();
        for i in 0..bytes.len() {
            for b in [b'0', b'9', b'a', b'f', b'g', b'A', b'_', b'-', b'.', b' '] {
                let mut m = bytes.to_vec();
                m[i] = b;
                let Ok(text) = String::from_utf8(m) else {
                    continue;
                };
                if let Ok(id) = BranchId::parse(&text) {
                    assert_eq!(id.to_string(), text);
                }
            }
        }
    }
}
