//! The layered configuration: the file, the environment and the command line merged into one
//! tree in which every value knows where it came from, and a serde deserializer over that tree.
//!
//! - A value from the environment or a flag is text, and takes the type of the field that
//!   receives it: `SMARTY_MQTT_QOS=1` is a number because `qos` is one, and
//!   `SMARTY_MQTT_PASSWORD=123456` stays text because `password` is text. Nothing is guessed.
//! - Error messages never contain a value (only what was expected and what kind of value was
//!   found), so a secret can never be printed by a mistake in it; they carry the place of the
//!   value: its line and column in the file, its environment variable or its flag.
//! - [`deserialize_all`] keeps going after a mistake: it sets the faulty value aside and
//!   deserializes again, so that one run reports every mistake.

use std::fmt;

use serde::de::{self, DeserializeOwned, DeserializeSeed, Deserializer, IntoDeserializer, Visitor};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The configuration file, at a line and column (both from 1; the column in characters).
    File {
        /// Line, from 1.
        line: usize,
        /// Column in characters, from 1.
        column: usize,
    },
    /// An environment variable (its name).
    Env(String),
    /// A command-line flag (its name, `--http`).
    Flag(String),
    /// No particular place: made by the program, or the file as a whole.
    Nowhere,
}

impl Origin {
    /// Flags over the environment over the file.
    fn rank(&self) -> u8 {
        match self {
            Origin::File { .. } | Origin::Nowhere => 0,
            Origin::Env(_) => 1,
            Origin::Flag(_) => 2,
        }
    }

    /// `smarty.toml:12:7`, `environment variable SMARTY_MQTT_QOS`, `--http`, or `file` alone.
    pub fn describe(&self, file: &str) -> String {
        match self {
            Origin::File { line, column } => format!("{file}:{line}:{column}"),
            Origin::Env(name) => format!("{file}: environment variable {name}"),
            Origin::Flag(flag) => flag.clone(),
            Origin::Nowhere => file.to_owned(),
        }
    }
}

/// A value of the tree.
#[derive(Debug, Clone)]
pub struct Node {
    id: usize,
    /// `mqtt.qos`, `meter[1].baud`; empty for the root.
    path: String,
    at: Origin,
    /// Where the key naming this value is (the value's place for array items).
    key_at: Origin,
    removed: bool,
    kind: NodeKind,
}

#[derive(Debug, Clone)]
enum NodeKind {
    Table(Vec<(String, Node)>),
    Array(Vec<Node>),
    Str(String),
    Integer(i64),
    Float(f64),
    Bool(bool),
    /// Text from the environment or a flag: the field that takes it gives its type.
    Text(String),
    /// A value no field takes (a date-time, an integer beyond 64 bits), described.
    Other(&'static str),
}

/// The keys that exclude each other: a higher layer setting one removes the other from the
/// layers below (`SMARTY_METER_HOME_KEY` replaces the file's `key_file`).
const ALTERNATIVES: [(&str, &str); 4] = [
    ("key", "key_file"),
    ("password", "password_file"),
    ("token", "token_file"),
    ("auth_key", "aad"),
];

/// One segment of a path into the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seg<'a> {
    /// A key of a table.
    Key(&'a str),
    /// An item of an array.
    Index(usize),
}

/// The whole configuration as a tree of located values.
#[derive(Debug, Clone)]
pub struct Tree {
    root: Node,
    next_id: usize,
}

/// Byte offsets of line starts, to turn spans into lines and columns.
struct Lines<'t> {
    text: &'t str,
    starts: Vec<usize>,
}

impl<'t> Lines<'t> {
    fn new(text: &'t str) -> Self {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Lines { text, starts }
    }

    fn origin(&self, offset: usize) -> Origin {
        let offset = offset.min(self.text.len());
        let line = self.starts.partition_point(|&start| start <= offset);
        let start = self.starts[line - 1];
        let column = self
            .text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count())
            + 1;
        Origin::File { line, column }
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

impl Tree {
    /// An empty tree (no file).
    pub fn empty() -> Tree {
        Tree {
            root: Node {
                id: 0,
                path: String::new(),
                at: Origin::Nowhere,
                key_at: Origin::Nowhere,
                removed: false,
                kind: NodeKind::Table(Vec::new()),
            },
            next_id: 1,
        }
    }

    /// Parses a TOML document; on syntax errors, every one of them with its place.
    ///
    /// # Errors
    /// The syntax errors, each with its line and column and the parser's message.
    pub fn parse(text: &str) -> Result<Tree, Vec<(Origin, String)>> {
        let (table, errors) = DeTable::parse_recoverable(text);
        let lines = Lines::new(text);
        if !errors.is_empty() {
            return Err(errors
                .iter()
                .map(|e| {
                    let at = e
                        .span()
                        .map_or(Origin::Nowhere, |span| lines.origin(span.start));
                    (at, e.message().trim_end().to_owned())
                })
                .collect());
        }
        let mut tree = Tree::empty();
        let entries = tree.entries(table.get_ref(), "", &lines);
        tree.root.kind = NodeKind::Table(entries);
        Ok(tree)
    }

    fn id(&mut self) -> usize {
        self.next_id += 1;
        self.next_id - 1
    }

    fn entries(
        &mut self,
        table: &DeTable<'_>,
        path: &str,
        lines: &Lines<'_>,
    ) -> Vec<(String, Node)> {
        table
            .iter()
            .map(|(key, value)| {
                let key_at = lines.origin(key.span().start);
                let name = key.get_ref().to_string();
                let node = self.node(value, join(path, &name), key_at, lines);
                (name, node)
            })
            .collect()
    }

    fn node(
        &mut self,
        value: &Spanned<DeValue<'_>>,
        path: String,
        key_at: Origin,
        lines: &Lines<'_>,
    ) -> Node {
        let at = lines.origin(value.span().start);
        let kind = match value.get_ref() {
            DeValue::String(s) => NodeKind::Str(s.to_string()),
            DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
                Ok(i) => NodeKind::Integer(i),
                Err(_) => NodeKind::Other("an integer beyond 64 bits"),
            },
            DeValue::Float(f) => match f.as_str().parse::<f64>() {
                Ok(f) => NodeKind::Float(f),
                Err(_) => NodeKind::Other("a malformed float"),
            },
            DeValue::Boolean(b) => NodeKind::Bool(*b),
            DeValue::Datetime(_) => NodeKind::Other("a date-time"),
            DeValue::Array(items) => NodeKind::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| {
                        let at = lines.origin(item.span().start);
                        self.node(item, format!("{path}[{i}]"), at, lines)
                    })
                    .collect(),
            ),
            DeValue::Table(table) => NodeKind::Table(self.entries(table, &path, lines)),
        };
        // A table's own span may cover its whole body: its header is where its key is.
        let at = if matches!(kind, NodeKind::Table(_)) && key_at != Origin::Nowhere {
            key_at.clone()
        } else {
            at
        };
        Node {
            id: self.id(),
            path,
            at,
            key_at,
            removed: false,
            kind,
        }
    }

    /// The node at `path` (`mqtt.qos`, `meter[1]`), if present and not set aside.
    pub fn find(&self, path: &str) -> Option<&Node> {
        fn walk<'n>(node: &'n Node, path: &str) -> Option<&'n Node> {
            if node.removed {
                return None;
            }
            if node.path == path {
                return Some(node);
            }
            match &node.kind {
                NodeKind::Table(entries) => entries.iter().find_map(|(_, n)| walk(n, path)),
                NodeKind::Array(items) => items.iter().find_map(|n| walk(n, path)),
                _ => None,
            }
        }
        walk(&self.root, path)
    }

    /// Where the value at `path` is; for a value not given, where its closest given parent
    /// is (the section header, the `[[meter]]` line), else [`Origin::Nowhere`].
    pub fn locate(&self, path: &str) -> Origin {
        let mut path = path.to_owned();
        loop {
            if let Some(node) = self.find(&path) {
                return node.at.clone();
            }
            match path.rfind(['.', '[']) {
                Some(i) => path.truncate(i),
                None => return Origin::Nowhere,
            }
        }
    }

    /// The original positions of the items of the array at `path` that are not set aside
    /// (the n-th deserialized `[[meter]]` is the table at the n-th of these).
    pub fn kept_items(&self, path: &str) -> Vec<usize> {
        match self.find(path).map(|n| &n.kind) {
            Some(NodeKind::Array(items)) => items
                .iter()
                .enumerate()
                .filter(|(_, n)| !n.removed)
                .map(|(i, _)| i)
                .collect(),
            _ => Vec::new(),
        }
    }

    fn node_mut(&mut self, path: &[Seg<'_>]) -> Option<&mut Node> {
        let mut node = &mut self.root;
        for seg in path {
            node = match (seg, &mut node.kind) {
                (Seg::Key(key), NodeKind::Table(entries)) => {
                    entries.iter_mut().find(|(k, _)| k == key).map(|(_, n)| n)?
                }
                (Seg::Index(i), NodeKind::Array(items)) => items.get_mut(*i)?,
                _ => return None,
            };
        }
        Some(node)
    }

    /// Whether the table at `path` exists (from any layer).
    pub fn has_table(&self, path: &[Seg<'_>]) -> bool {
        let mut node = &self.root;
        for seg in path {
            let next = match (seg, &node.kind) {
                (Seg::Key(key), NodeKind::Table(entries)) => {
                    entries.iter().find(|(k, _)| k == key).map(|(_, n)| n)
                }
                (Seg::Index(i), NodeKind::Array(items)) => items.get(*i),
                _ => None,
            };
            match next {
                Some(n) if !n.removed => node = n,
                _ => return false,
            }
        }
        matches!(node.kind, NodeKind::Table(_))
    }

    /// Sets the text `value` at `path` (tables and array items on the way are made as
    /// needed), from `at`; a key's alternative set by a lower layer is removed
    /// (`SMARTY_METER_HOME_KEY` replaces the file's `key_file`).
    pub fn set(&mut self, path: &[Seg<'_>], value: &str, at: &Origin) {
        let Some((Seg::Key(key), parents)) = path.split_last() else {
            return;
        };
        let mut next_id = self.next_id;
        let mut node = &mut self.root;
        for seg in parents {
            node = child_or_make(node, *seg, at, &mut next_id);
        }
        let id = next_id;
        self.next_id = next_id + 1;
        if !matches!(node.kind, NodeKind::Table(_)) {
            node.kind = NodeKind::Table(Vec::new());
        }
        let path = join(&node.path, key);
        let NodeKind::Table(entries) = &mut node.kind else {
            unreachable!("made a table above");
        };
        let rank = at.rank();
        // A value from a higher layer stays (flags are applied before the environment, to
        // name the meter of a configuration made of flags).
        let outranked = |entries: &[(String, Node)], k: &str| {
            entries
                .iter()
                .any(|(key, n)| key == k && n.at.rank() > rank)
        };
        let alternative = ALTERNATIVES.iter().find_map(|&(a, b)| match *key {
            k if k == a => Some(b),
            k if k == b => Some(a),
            _ => None,
        });
        if outranked(entries, key) || alternative.is_some_and(|other| outranked(entries, other)) {
            return;
        }
        if let Some(other) = alternative {
            entries.retain(|(k, n)| k != other || n.at.rank() >= rank);
        }
        let new = Node {
            id,
            path,
            at: at.clone(),
            key_at: at.clone(),
            removed: false,
            kind: NodeKind::Text(value.to_owned()),
        };
        match entries.iter_mut().find(|(k, _)| k == key) {
            Some((_, existing)) => *existing = new,
            None => entries.push(((*key).to_owned(), new)),
        }
    }

    /// Takes the value at `path` out of the tree (`mqtt.password_file`, read apart).
    pub fn take(&mut self, path: &[Seg<'_>]) -> Option<Tree> {
        let (last, parents) = path.split_last()?;
        let Seg::Key(key) = last else {
            return None;
        };
        let parent = self.node_mut(parents)?;
        let NodeKind::Table(entries) = &mut parent.kind else {
            return None;
        };
        let i = entries.iter().position(|(k, n)| k == key && !n.removed)?;
        let (_, node) = entries.remove(i);
        Some(Tree {
            root: node,
            next_id: self.next_id,
        })
    }

    /// The names of the tables of the array at `path` (the `name` of each `[[meter]]`).
    pub fn item_names(&self, path: &str) -> Vec<Option<String>> {
        match self.find(path).map(|n| &n.kind) {
            Some(NodeKind::Array(items)) => {
                items
                    .iter()
                    .map(|item| match &item.kind {
                        NodeKind::Table(entries) => entries
                            .iter()
                            .find(|(k, _)| k == "name")
                            .and_then(|(_, n)| match &n.kind {
                                NodeKind::Str(s) | NodeKind::Text(s) => Some(s.clone()),
                                _ => None,
                            }),
                        _ => None,
                    })
                    .collect()
            }
            _ => Vec::new(),
        }
    }

    fn remove(&mut self, id: usize) -> bool {
        fn walk(node: &mut Node, id: usize) -> bool {
            if node.id == id {
                node.removed = true;
                return true;
            }
            match &mut node.kind {
                NodeKind::Table(entries) => entries.iter_mut().any(|(_, n)| walk(n, id)),
                NodeKind::Array(items) => items.iter_mut().any(|n| walk(n, id)),
                _ => false,
            }
        }
        walk(&mut self.root, id)
    }

    fn by_id(&self, id: usize) -> Option<&Node> {
        fn walk(node: &Node, id: usize) -> Option<&Node> {
            if node.id == id {
                return Some(node);
            }
            match &node.kind {
                NodeKind::Table(entries) => entries.iter().find_map(|(_, n)| walk(n, id)),
                NodeKind::Array(items) => items.iter().find_map(|n| walk(n, id)),
                _ => None,
            }
        }
        walk(&self.root, id)
    }
}

/// The child of `node` at `seg`, made if missing: `node` becomes a table for a key and an
/// array for an index (array items are made as empty tables).
fn child_or_make<'n>(
    node: &'n mut Node,
    seg: Seg<'_>,
    at: &Origin,
    next_id: &mut usize,
) -> &'n mut Node {
    let mut make = |path: String| {
        *next_id += 1;
        Node {
            id: *next_id - 1,
            path,
            at: at.clone(),
            key_at: at.clone(),
            removed: false,
            kind: NodeKind::Table(Vec::new()),
        }
    };
    match seg {
        Seg::Key(key) => {
            if !matches!(node.kind, NodeKind::Table(_)) {
                node.kind = NodeKind::Table(Vec::new());
            }
            let path = join(&node.path, key);
            let NodeKind::Table(entries) = &mut node.kind else {
                unreachable!("made a table above");
            };
            let i = match entries.iter().position(|(k, _)| k == key) {
                Some(i) => i,
                None => {
                    entries.push((key.to_owned(), make(path)));
                    entries.len() - 1
                }
            };
            &mut entries[i].1
        }
        Seg::Index(index) => {
            if !matches!(node.kind, NodeKind::Array(_)) {
                node.kind = NodeKind::Array(Vec::new());
            }
            let path = node.path.clone();
            let NodeKind::Array(items) = &mut node.kind else {
                unreachable!("made an array above");
            };
            while items.len() <= index {
                let i = items.len();
                items.push(make(format!("{path}[{i}]")));
            }
            &mut items[index]
        }
    }
}

/// A mistake found while deserializing: a message without the value, and the value's node.
#[derive(Debug, Clone)]
pub struct Error {
    message: String,
    node: Option<usize>,
    /// The mistake is the key itself (an unknown field).
    key: bool,
    /// The name of a missing field.
    missing: Option<String>,
}

impl Error {
    fn at(mut self, id: usize, key: bool) -> Self {
        if self.node.is_none() {
            self.node = Some(id);
            self.key = key;
        }
        self
    }

    fn new(message: String) -> Self {
        Error {
            message,
            node: None,
            key: false,
            missing: None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// What kind of value `unexpected` is, without the value.
fn kind_of(unexpected: &de::Unexpected<'_>) -> String {
    use de::Unexpected as U;
    match unexpected {
        U::Bool(_) => "a boolean".into(),
        U::Unsigned(_) | U::Signed(_) => "an integer".into(),
        U::Float(_) => "a number with a fraction".into(),
        U::Char(_) => "a character".into(),
        U::Str(_) => "text".into(),
        U::Bytes(_) => "bytes".into(),
        U::Unit => "nothing".into(),
        U::Option => "an optional value".into(),
        U::NewtypeStruct => "a value".into(),
        U::Seq => "a list".into(),
        U::Map => "a table".into(),
        U::Enum => "a choice".into(),
        U::UnitVariant | U::NewtypeVariant | U::TupleVariant | U::StructVariant => {
            "a choice".into()
        }
        U::Other(other) => (*other).to_owned(),
    }
}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error::new(msg.to_string())
    }

    fn invalid_type(unexpected: de::Unexpected<'_>, expected: &dyn de::Expected) -> Self {
        Error::new(format!(
            "expected {expected}, found {}",
            kind_of(&unexpected)
        ))
    }

    fn invalid_value(unexpected: de::Unexpected<'_>, expected: &dyn de::Expected) -> Self {
        Error::new(format!(
            "{} out of range: expected {expected}",
            kind_of(&unexpected)
        ))
    }

    fn invalid_length(len: usize, expected: &dyn de::Expected) -> Self {
        Error::new(format!("{len} values, expected {expected}"))
    }

    fn unknown_variant(_variant: &str, expected: &'static [&'static str]) -> Self {
        Error::new(format!("unknown value, expected {}", one_of(expected)))
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        Error::new(format!(
            "unknown field `{field}`, expected {}",
            one_of(expected)
        ))
    }

    fn missing_field(field: &'static str) -> Self {
        let mut error = Error::new(format!("missing field `{field}`"));
        error.missing = Some(field.to_owned());
        error
    }

    fn duplicate_field(field: &'static str) -> Self {
        Error::new(format!("field `{field}` given twice"))
    }
}

fn one_of(names: &[&str]) -> String {
    match names {
        [] => "nothing".to_owned(),
        [one] => format!("`{one}`"),
        _ => format!(
            "one of {}",
            names
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// A mistake found by [`deserialize_all`]: where, which setting, what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mistake {
    /// Where the value (or the key, for an unknown field) is.
    pub at: Origin,
    /// The setting, `mqtt.qos`; empty for the whole file.
    pub path: String,
    /// What is wrong, without the value.
    pub message: String,
}

/// Deserializes the whole tree as a `T`, reporting every mistake: each faulty value is set
/// aside (its field takes its default) and the tree deserialized again, until it succeeds.
///
/// Returns the value (`None` when a mistake leaves nothing to build it from) and the
/// mistakes. The tree keeps the faulty values set aside: [`Tree::kept_items`] tells which
/// array items the value holds.
pub fn deserialize_all<T: DeserializeOwned>(tree: &mut Tree) -> (Option<T>, Vec<Mistake>) {
    let mut mistakes = Vec::new();
    let mut set_aside: Vec<String> = Vec::new();
    loop {
        let error = match T::deserialize(NodeRef(&tree.root)) {
            Ok(value) => return (Some(value), mistakes),
            Err(error) => error,
        };
        let id = error.node.unwrap_or(tree.root.id);
        let node = tree.by_id(id).cloned();
        let (path, at) = match &node {
            Some(node) if error.key => (node.path.clone(), node.key_at.clone()),
            Some(node) => (node.path.clone(), node.at.clone()),
            None => (String::new(), Origin::Nowhere),
        };
        // A missing field because its faulty value was set aside was reported already.
        let follows = error
            .missing
            .as_ref()
            .is_some_and(|field| set_aside.contains(&join(&path, field)));
        if !follows {
            let at = node
                .as_ref()
                .and_then(|node| locate_mention(node, &error.message))
                .unwrap_or(at);
            // Messages of a whole section's check name it already (`[tariff]: …`).
            let message = if error.key || path.is_empty() || error.message.starts_with('[') {
                error.message
            } else {
                format!("{path}: {}", error.message)
            };
            mistakes.push(Mistake {
                at,
                path: if error.key {
                    String::new()
                } else {
                    path.clone()
                },
                message,
            });
        }
        if id == tree.root.id || !tree.remove(id) {
            return (None, mistakes);
        }
        set_aside.push(path);
    }
}

/// For a mistake about a whole table whose message names one of its fields in backquotes
/// (`` `vat_rate` must be below 1``): where that field is.
fn locate_mention(node: &Node, message: &str) -> Option<Origin> {
    let NodeKind::Table(entries) = &node.kind else {
        return None;
    };
    entries
        .iter()
        .filter(|(_, n)| !n.removed)
        .find(|(key, _)| message.contains(&format!("`{key}`")))
        .map(|(_, n)| n.at.clone())
}

/// Deserializes a tree taken out with [`Tree::take`] as a `T`.
///
/// # Errors
/// The mistake, located.
pub fn deserialize_one<T: DeserializeOwned>(tree: &Tree) -> Result<T, Mistake> {
    T::deserialize(NodeRef(&tree.root)).map_err(|error| Mistake {
        at: tree.root.at.clone(),
        path: tree.root.path.clone(),
        message: error.message,
    })
}

/// The deserializer of one node.
#[derive(Clone, Copy)]
struct NodeRef<'a>(&'a Node);

impl<'a> NodeRef<'a> {
    fn text(self) -> Option<&'a str> {
        match &self.0.kind {
            NodeKind::Text(text) => Some(text),
            _ => None,
        }
    }

    /// Parses text from the environment or a flag as the number or boolean the field wants.
    fn parse<'de, T: std::str::FromStr, V: Visitor<'de>>(
        text: &str,
        visitor: &V,
    ) -> Result<T, Error> {
        text.trim()
            .parse()
            .map_err(|_| de::Error::invalid_type(de::Unexpected::Str(""), visitor))
    }
}

fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Some(true),
        "false" | "no" | "off" | "0" => Some(false),
        _ => None,
    }
}

macro_rules! typed_text {
    ($($method:ident $visit:ident $ty:ty),* $(,)?) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
                let id = self.0.id;
                match self.text() {
                    Some(text) => {
                        let value: $ty = Self::parse(text, &visitor).map_err(|e| e.at(id, false))?;
                        visitor.$visit(value)
                    }
                    None => self.deserialize_any(visitor),
                }
                .map_err(|e| e.at(id, false))
            }
        )*
    };
}

impl<'de> Deserializer<'de> for NodeRef<'_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let node = self.0;
        match &node.kind {
            NodeKind::Table(entries) => visitor.visit_map(Entries {
                entries: entries.iter(),
                value: None,
            }),
            NodeKind::Array(items) => visitor.visit_seq(Items(items.iter())),
            NodeKind::Str(s) | NodeKind::Text(s) => visitor.visit_str(s),
            NodeKind::Integer(i) => visitor.visit_i64(*i),
            NodeKind::Float(f) => visitor.visit_f64(*f),
            NodeKind::Bool(b) => visitor.visit_bool(*b),
            NodeKind::Other(what) => Err(de::Error::invalid_type(
                de::Unexpected::Other(what),
                &visitor,
            )),
        }
        .map_err(|e| e.at(node.id, false))
    }

    typed_text! {
        deserialize_i8 visit_i64 i64,
        deserialize_i16 visit_i64 i64,
        deserialize_i32 visit_i64 i64,
        deserialize_i64 visit_i64 i64,
        deserialize_u8 visit_u64 u64,
        deserialize_u16 visit_u64 u64,
        deserialize_u32 visit_u64 u64,
        deserialize_u64 visit_u64 u64,
        deserialize_f32 visit_f64 f64,
        deserialize_f64 visit_f64 f64,
        deserialize_char visit_char char,
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let id = self.0.id;
        match self.text() {
            Some(text) => match parse_bool(text) {
                Some(b) => visitor.visit_bool(b),
                None => Err(de::Error::invalid_type(de::Unexpected::Str(""), &visitor)),
            },
            None => self.deserialize_any(visitor),
        }
        .map_err(|e| e.at(id, false))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let id = self.0.id;
        visitor.visit_some(self).map_err(|e| e.at(id, false))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        let id = self.0.id;
        visitor
            .visit_newtype_struct(self)
            .map_err(|e| e.at(id, false))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let id = self.0.id;
        match &self.0.kind {
            NodeKind::Str(s) | NodeKind::Text(s) => {
                visitor.visit_enum(IntoDeserializer::<Error>::into_deserializer(s.as_str()))
            }
            _ => Err(Error::new(format!("expected {}", one_of(variants)))),
        }
        .map_err(|e| e.at(id, false))
    }

    serde::forward_to_deserialize_any! {
        i128 u128 str string bytes byte_buf unit unit_struct seq tuple tuple_struct map
        struct identifier ignored_any
    }
}

/// The entries of a table, without those set aside.
struct Entries<'a> {
    entries: std::slice::Iter<'a, (String, Node)>,
    value: Option<&'a Node>,
}

impl<'de> de::MapAccess<'de> for Entries<'_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        for (key, node) in self.entries.by_ref() {
            if node.removed {
                continue;
            }
            self.value = Some(node);
            let key = IntoDeserializer::<Error>::into_deserializer(key.as_str());
            return seed
                .deserialize(key)
                .map(Some)
                .map_err(|e| e.at(node.id, true));
        }
        Ok(None)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let node = self
            .value
            .take()
            .ok_or_else(|| Error::new("a value without a key".into()))?;
        seed.deserialize(NodeRef(node))
    }
}

/// The items of an array, without those set aside.
struct Items<'a>(std::slice::Iter<'a, Node>);

impl<'de> de::SeqAccess<'de> for Items<'_> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        for node in self.0.by_ref() {
            if node.removed {
                continue;
            }
            return seed.deserialize(NodeRef(node)).map(Some);
        }
        Ok(None)
    }
}
