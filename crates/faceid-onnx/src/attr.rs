//! Typed access to node attributes.

use crate::error::{OpResult, op_bail};
use crate::proto::{AttributeProto, NodeProto, TensorProto};

/// The attributes of one node.
#[derive(Clone, Copy)]
pub(crate) struct Attrs<'a>(&'a [AttributeProto]);

impl<'a> Attrs<'a> {
    pub fn of(node: &'a NodeProto) -> Self {
        Self(&node.attribute)
    }

    fn get(&self, name: &str) -> Option<&'a AttributeProto> {
        self.0.iter().find(|a| a.name == name)
    }

    /// Whether the attribute is present.
    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// An integer attribute, or `default`.
    pub fn int(&self, name: &str, default: i64) -> i64 {
        self.get(name).map_or(default, |a| a.i)
    }

    /// A float attribute, or `default`.
    pub fn float(&self, name: &str, default: f32) -> f32 {
        self.get(name).map_or(default, |a| a.f)
    }

    /// An integer list attribute.
    pub fn ints(&self, name: &str) -> Option<Vec<i64>> {
        self.get(name).map(|a| a.ints.clone())
    }

    /// A float list attribute.
    pub fn floats(&self, name: &str) -> Option<Vec<f32>> {
        self.get(name).map(|a| a.floats.clone())
    }

    /// A string attribute, or `default`.
    pub fn string(&self, name: &str, default: &str) -> String {
        self.get(name).map_or_else(
            || default.to_string(),
            |a| String::from_utf8_lossy(&a.s).into_owned(),
        )
    }

    /// A tensor attribute.
    pub fn tensor(&self, name: &str) -> Option<&'a TensorProto> {
        self.get(name).and_then(|a| a.t.as_ref())
    }

    /// An integer list attribute converted to `usize`, or `default`.
    pub fn usizes(&self, name: &str, default: Vec<usize>) -> OpResult<Vec<usize>> {
        match self.ints(name) {
            None => Ok(default),
            Some(values) => values
                .iter()
                .map(|&v| match usize::try_from(v) {
                    Ok(v) => Ok(v),
                    Err(_) => op_bail!("attribute {name} has a negative entry {v}"),
                })
                .collect(),
        }
    }
}

/// Resolves a possibly negative axis against a rank.
pub(crate) fn normalize_axis(axis: i64, rank: usize) -> OpResult<usize> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if a < 0 || a >= r.max(1) {
        op_bail!("axis {axis} is out of range for rank {rank}");
    }
    Ok(a as usize)
}
