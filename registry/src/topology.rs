//! In-memory adjacency index of the hierarchy (`contains` / `member_of` links), rebuilt at
//! open and maintained on every committed change. Traversals are cycle-safe.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};

use redb::{Database, ReadableDatabase, ReadableTable};

use crate::error::Result;
use crate::model::{Descendants, NodeRef, RelationKind, Relationship};
use crate::store::{RELATIONSHIPS, RelationshipRecord};

/// Deepest ancestor path explored.
const MAX_DEPTH: usize = 64;

/// Parent → children and child → parents of the hierarchy (multisets: one edge per link).
#[derive(Debug, Default)]
pub(crate) struct Topology {
    children: HashMap<NodeRef, Vec<NodeRef>>,
    parents: HashMap<NodeRef, Vec<NodeRef>>,
    /// Every relationship (any kind) touching a node, for listing and cascading deletes.
    links: HashMap<NodeRef, Vec<Relationship>>,
}

/// `(parent, child)` of a hierarchical relationship, `None` for custom kinds.
fn edge(r: &Relationship) -> Option<(&NodeRef, &NodeRef)> {
    match r.kind {
        RelationKind::Contains => Some((&r.source, &r.target)),
        RelationKind::MemberOf => Some((&r.target, &r.source)),
        RelationKind::Custom(_) => None,
    }
}

/// The distinct endpoints of a relationship.
fn endpoints(r: &Relationship) -> Vec<&NodeRef> {
    if r.source == r.target {
        vec![&r.source]
    } else {
        vec![&r.source, &r.target]
    }
}

fn remove_one(map: &mut HashMap<NodeRef, Vec<NodeRef>>, key: &NodeRef, value: &NodeRef) {
    if let Some(list) = map.get_mut(key) {
        if let Some(pos) = list.iter().position(|n| n == value) {
            list.swap_remove(pos);
        }
        if list.is_empty() {
            map.remove(key);
        }
    }
}

impl Topology {
    /// Builds the index from the relationships table.
    pub(crate) fn load(db: &Database) -> Result<Self> {
        let txn = db.begin_read()?;
        let table = txn.open_table(RELATIONSHIPS)?;
        let mut topo = Self::default();
        for item in table.iter()? {
            let (_, v) = item?;
            let rec: RelationshipRecord = serde_json::from_slice(v.value())?;
            topo.add(&rec.relationship);
        }
        Ok(topo)
    }

    /// Indexes a committed relationship.
    pub(crate) fn add(&mut self, r: &Relationship) {
        for n in endpoints(r) {
            self.links.entry(n.clone()).or_default().push(r.clone());
        }
        if let Some((parent, child)) = edge(r) {
            self.children
                .entry(parent.clone())
                .or_default()
                .push(child.clone());
            self.parents
                .entry(child.clone())
                .or_default()
                .push(parent.clone());
        }
    }

    /// Removes a deleted relationship from the index.
    pub(crate) fn remove(&mut self, r: &Relationship) {
        for n in endpoints(r) {
            if let Some(list) = self.links.get_mut(n) {
                list.retain(|x| x != r);
                if list.is_empty() {
                    self.links.remove(n);
                }
            }
        }
        if let Some((parent, child)) = edge(r) {
            remove_one(&mut self.children, parent, child);
            remove_one(&mut self.parents, child, parent);
        }
    }

    /// Every relationship touching `node`, sorted.
    pub(crate) fn links_of(&self, node: &NodeRef) -> Vec<Relationship> {
        let mut v = self.links.get(node).cloned().unwrap_or_default();
        v.sort();
        v
    }

    /// Everything below `node` (transitively), excluding `node` itself.
    pub(crate) fn descendants(&self, node: &NodeRef) -> Descendants {
        let mut seen: HashSet<&NodeRef> = HashSet::new();
        let mut queue: VecDeque<&NodeRef> = VecDeque::new();
        seen.insert(node);
        queue.push_back(node);
        let mut out = Descendants::default();
        while let Some(n) = queue.pop_front() {
            for c in self.children.get(n).into_iter().flatten() {
                if seen.insert(c) {
                    match c {
                        NodeRef::Entity(id) => out.entities.push(id.clone()),
                        NodeRef::Device(id) => out.devices.push(id.clone()),
                    }
                    queue.push_back(c);
                }
            }
        }
        out.entities.sort_unstable();
        out.devices.sort_unstable();
        out
    }

    /// Direct parent entities of `node`, sorted.
    pub(crate) fn parent_entities(&self, node: &NodeRef) -> Vec<String> {
        let mut v: Vec<String> = self
            .parents
            .get(node)
            .into_iter()
            .flatten()
            .filter_map(|p| match p {
                NodeRef::Entity(id) => Some(id.clone()),
                NodeRef::Device(_) => None,
            })
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Every ancestor entity of `node` (transitively, all parents), sorted.
    pub(crate) fn ancestors(&self, node: &NodeRef) -> Vec<String> {
        let mut seen: HashSet<&NodeRef> = HashSet::new();
        let mut stack = vec![node];
        seen.insert(node);
        let mut out = BTreeSet::new();
        while let Some(n) = stack.pop() {
            for p in self.parents.get(n).into_iter().flatten() {
                if seen.insert(p) {
                    if let NodeRef::Entity(id) = p {
                        out.insert(id.clone());
                    }
                    stack.push(p);
                }
            }
        }
        out.into_iter().collect()
    }

    /// Up to `max` ancestor paths of `node`: root-first entity ids joined with '/', ending at
    /// a direct parent. A cycle ends a path where it would repeat a node.
    pub(crate) fn paths(&self, node: &NodeRef, max: usize) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack: Vec<&NodeRef> = Vec::new();
        self.walk_up(node, &mut stack, &mut out, max);
        out.sort_unstable();
        out.dedup();
        out
    }

    fn walk_up<'a>(
        &'a self,
        node: &'a NodeRef,
        stack: &mut Vec<&'a NodeRef>,
        out: &mut Vec<String>,
        max: usize,
    ) {
        if out.len() >= max {
            return;
        }
        let parents: Vec<&NodeRef> = self
            .parents
            .get(node)
            .into_iter()
            .flatten()
            .filter(|p| !stack.contains(p) && *p != node)
            .collect();
        if parents.is_empty() || stack.len() >= MAX_DEPTH {
            if !stack.is_empty() {
                out.push(join_path(stack));
            }
            return;
        }
        for p in parents {
            stack.push(p);
            self.walk_up(p, stack, out, max);
            stack.pop();
        }
    }
}

/// Joins a child-first stack of nodes into a root-first '/' path of entity ids.
fn join_path(stack: &[&NodeRef]) -> String {
    let ids: Vec<&str> = stack
        .iter()
        .rev()
        .filter_map(|n| match n {
            NodeRef::Entity(id) => Some(id.as_str()),
            NodeRef::Device(_) => None,
        })
        .collect();
    ids.join("/")
}
