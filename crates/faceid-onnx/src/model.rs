//! Loading a model: decoding, validation, topological ordering, constant folding, and running.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use burn::tensor::Device;
use prost::Message;

use crate::error::{OnnxError, OpError};
use crate::ops::{self, OpContext};
use crate::proto::{GraphProto, ModelProto, NodeProto, ValueInfoProto};
use crate::tensor::OnnxTensor;
use crate::tensor_proto::decode_tensor;
use crate::value::{HostKind, Value};

/// Float constants with more elements than this are uploaded to the device once, at load time.
const HOST_CONSTANT_LIMIT: usize = 64;

/// One dimension of a declared input or output shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dim {
    /// A fixed size.
    Fixed(usize),
    /// A dynamic size, with its symbolic name when the file gives one.
    Dynamic(Option<String>),
}

impl std::fmt::Display for Dim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dim::Fixed(n) => write!(f, "{n}"),
            Dim::Dynamic(Some(name)) => write!(f, "{name}"),
            Dim::Dynamic(None) => write!(f, "?"),
        }
    }
}

/// Name and declared shape of a graph input or output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValueInfo {
    /// Value name.
    pub name: String,
    /// Declared dimensions; `None` when the file declares no shape.
    pub dims: Option<Vec<Dim>>,
}

impl ValueInfo {
    fn from_proto(v: &ValueInfoProto) -> Self {
        let dims = v
            .r#type
            .as_ref()
            .and_then(|t| t.tensor_type.as_ref())
            .and_then(|t| t.shape.as_ref())
            .map(|s| {
                s.dim
                    .iter()
                    .map(|d| match (d.dim_value, &d.dim_param) {
                        (Some(n), _) if n > 0 => Dim::Fixed(n as usize),
                        (_, Some(name)) if !name.is_empty() => Dim::Dynamic(Some(name.clone())),
                        _ => Dim::Dynamic(None),
                    })
                    .collect()
            });
        Self {
            name: v.name.clone(),
            dims,
        }
    }

    fn describe(&self) -> String {
        match &self.dims {
            Some(d) => format!(
                "[{}]",
                d.iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            None => "any shape".into(),
        }
    }
}

/// Name and operator of a node, in file order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    /// Node name (may be empty).
    pub name: String,
    /// Operator type.
    pub op_type: String,
}

/// A node scheduled to run, with its values resolved to slots.
struct Step {
    node: NodeProto,
    inputs: Vec<Option<usize>>,
    /// Output slots; `None` for an omitted optional output.
    outputs: Vec<Option<usize>>,
    /// Slots whose last reader is this step.
    release: Vec<usize>,
}

/// A loaded ONNX model, ready to run on one burn device.
pub struct OnnxModel {
    device: Device,
    opset: i64,
    producer: String,
    nodes: Vec<NodeInfo>,
    inputs: Vec<ValueInfo>,
    outputs: Vec<ValueInfo>,
    input_slots: Vec<usize>,
    output_slots: Vec<usize>,
    /// Initializers and folded values, by slot.
    constants: Vec<Option<Value>>,
    steps: Vec<Step>,
    slot_count: usize,
    /// Slots read by a step or returned as outputs.
    used: Vec<bool>,
}

impl std::fmt::Debug for OnnxModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxModel")
            .field("producer", &self.producer)
            .field("opset", &self.opset)
            .field("nodes", &self.nodes.len())
            .field("inputs", &self.inputs)
            .field("outputs", &self.outputs)
            .finish()
    }
}

fn node_label(node: &NodeProto) -> String {
    if node.name.is_empty() {
        node.output.first().cloned().unwrap_or_default()
    } else {
        node.name.clone()
    }
}

fn node_error(node: &NodeProto, e: OpError) -> OnnxError {
    OnnxError::Node {
        node: node_label(node),
        op_type: node.op_type.clone(),
        message: e.0,
    }
}

/// Runs one node, turning a backend panic into an error.
fn run_node(
    ctx: &OpContext<'_>,
    node: &NodeProto,
    inputs: &[Option<&Value>],
) -> Result<Vec<Value>, OnnxError> {
    match catch_unwind(AssertUnwindSafe(|| ops::run(ctx, node, inputs))) {
        Ok(result) => result.map_err(|e| node_error(node, e)),
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".into());
            Err(OnnxError::Backend {
                node: node_label(node),
                message,
            })
        }
    }
}

/// Moves large float host values to the device.
fn settle(value: Value, device: &Device) -> Result<Value, OnnxError> {
    match value {
        Value::Host(h) if h.kind == HostKind::Float && h.data.len() > HOST_CONSTANT_LIMIT => {
            let d = crate::value::DeviceTensor::from_host(&h, device)
                .map_err(|e| OnnxError::Invalid(e.0))?;
            Ok(Value::Device(d))
        }
        v => Ok(v),
    }
}

impl OnnxModel {
    /// Reads and loads a model file.
    pub fn from_file(path: impl AsRef<Path>, device: &Device) -> Result<Self, OnnxError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| OnnxError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_bytes(&bytes, device)
    }

    /// Loads a model from the bytes of an `.onnx` file.
    pub fn from_bytes(bytes: &[u8], device: &Device) -> Result<Self, OnnxError> {
        let model = ModelProto::decode(bytes).map_err(|e| OnnxError::NotOnnx(e.to_string()))?;
        let graph = match model.graph {
            Some(g) if model.ir_version > 0 && !g.node.is_empty() && !g.output.is_empty() => g,
            _ => return Err(OnnxError::NotOnnx("no graph in the file".into())),
        };
        let opset = model
            .opset_import
            .iter()
            .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
            .map(|o| o.version)
            .ok_or_else(|| OnnxError::NotOnnx("no default operator set".into()))?;
        let mut loaded = Self::build(graph, opset, device)?;
        loaded.producer = model.producer_name;
        tracing::debug!(
            producer = %loaded.producer,
            opset,
            nodes = loaded.nodes.len(),
            folded = loaded.nodes.len() - loaded.steps.len(),
            "loaded ONNX model"
        );
        Ok(loaded)
    }

    fn build(graph: GraphProto, opset: i64, device: &Device) -> Result<Self, OnnxError> {
        for node in &graph.node {
            let default_domain = node.domain.is_empty() || node.domain == "ai.onnx";
            if !default_domain || !ops::is_supported(&node.op_type) {
                return Err(OnnxError::UnsupportedOp {
                    op_type: node.op_type.clone(),
                    domain: node.domain.clone(),
                    node: node_label(node),
                });
            }
        }
        let nodes = graph
            .node
            .iter()
            .map(|n| NodeInfo {
                name: n.name.clone(),
                op_type: n.op_type.clone(),
            })
            .collect();

        // Every value name gets a slot up front.
        let mut slots: HashMap<String, usize> = HashMap::new();
        {
            let mut intern = |name: &str| {
                let next = slots.len();
                slots.entry(name.to_string()).or_insert(next);
            };
            graph.initializer.iter().for_each(|t| intern(&t.name));
            graph.input.iter().for_each(|i| intern(&i.name));
            for node in &graph.node {
                node.input
                    .iter()
                    .chain(&node.output)
                    .filter(|n| !n.is_empty())
                    .for_each(|n| intern(n));
            }
        }
        let slot_of = |name: &str| slots[name];
        let mut constants: Vec<(usize, Value)> = Vec::new();
        for t in &graph.initializer {
            let host = decode_tensor(t).map_err(|e| OnnxError::Invalid(e.0))?;
            constants.push((slot_of(&t.name), settle(Value::Host(host), device)?));
        }
        let initializer_names: Vec<&str> =
            graph.initializer.iter().map(|t| t.name.as_str()).collect();
        let inputs: Vec<ValueInfo> = graph
            .input
            .iter()
            .filter(|i| !initializer_names.contains(&i.name.as_str()))
            .map(ValueInfo::from_proto)
            .collect();
        let outputs: Vec<ValueInfo> = graph.output.iter().map(ValueInfo::from_proto).collect();
        let input_slots: Vec<usize> = inputs.iter().map(|i| slot_of(&i.name)).collect();

        // Topological order (Kahn), trusting nothing about the file order.
        let mut available = vec![false; slots.len()];
        for &(s, _) in &constants {
            available[s] = true;
        }
        for &s in &input_slots {
            available[s] = true;
        }
        let mut pending: Vec<NodeProto> = graph.node;
        let mut ordered: Vec<Step> = Vec::with_capacity(pending.len());
        while !pending.is_empty() {
            let before = pending.len();
            let mut rest = Vec::new();
            for node in pending {
                let ready = node
                    .input
                    .iter()
                    .all(|name| name.is_empty() || available[slot_of(name)]);
                if ready {
                    let inputs = node
                        .input
                        .iter()
                        .map(|n| (!n.is_empty()).then(|| slot_of(n)))
                        .collect();
                    let outs: Vec<Option<usize>> = node
                        .output
                        .iter()
                        .map(|n| (!n.is_empty()).then(|| slot_of(n)))
                        .collect();
                    for &o in outs.iter().flatten() {
                        available[o] = true;
                    }
                    ordered.push(Step {
                        node,
                        inputs,
                        outputs: outs,
                        release: Vec::new(),
                    });
                } else {
                    rest.push(node);
                }
            }
            if rest.len() == before {
                let node = &rest[0];
                let missing = node
                    .input
                    .iter()
                    .find(|n| !n.is_empty() && !available[slot_of(n)])
                    .cloned()
                    .unwrap_or_default();
                return Err(OnnxError::invalid(format!(
                    "node {:?} reads {missing:?}, which no node, input or initializer provides (or the graph has a cycle)",
                    node_label(node)
                )));
            }
            pending = rest;
        }
        let output_slots = outputs
            .iter()
            .map(|o| {
                slots.get(&o.name).copied().ok_or_else(|| {
                    OnnxError::invalid(format!("graph output {:?} is never produced", o.name))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;

        let slot_count = slots.len();
        let mut constant_slots: Vec<Option<Value>> = vec![None; slot_count];
        for (s, v) in constants {
            constant_slots[s] = Some(v);
        }
        let mut model = Self {
            device: device.clone(),
            opset,
            producer: String::new(),
            nodes,
            inputs,
            outputs,
            input_slots,
            output_slots,
            constants: constant_slots,
            steps: Vec::new(),
            slot_count,
            used: Vec::new(),
        };
        model.steps = model.fold_constants(ordered)?;
        model.plan_releases();
        Ok(model)
    }

    /// Evaluates, once, every node whose inputs are all constants.
    fn fold_constants(&mut self, steps: Vec<Step>) -> Result<Vec<Step>, OnnxError> {
        let ctx = OpContext {
            device: &self.device,
            opset: self.opset,
        };
        let mut remaining = Vec::with_capacity(steps.len());
        for step in steps {
            let constant = step
                .inputs
                .iter()
                .all(|s| s.is_none_or(|s| self.constants[s].is_some()));
            if constant {
                let inputs: Vec<Option<&Value>> = step
                    .inputs
                    .iter()
                    .map(|s| s.and_then(|s| self.constants[s].as_ref()))
                    .collect();
                if let Ok(values) = run_node(&ctx, &step.node, &inputs)
                    && values.len() >= step.outputs.iter().flatten().count()
                {
                    let mut settled = Vec::with_capacity(values.len());
                    for v in values {
                        settled.push(settle(v, &self.device)?);
                    }
                    for (slot, v) in step.outputs.iter().zip(settled) {
                        if let Some(slot) = *slot {
                            self.constants[slot] = Some(v);
                        }
                    }
                    continue;
                }
            }
            remaining.push(step);
        }
        Ok(remaining)
    }

    /// Records, for each step, the values it reads for the last time.
    fn plan_releases(&mut self) {
        let mut last_use: Vec<Option<usize>> = vec![None; self.slot_count];
        for (i, step) in self.steps.iter().enumerate() {
            for s in step.inputs.iter().flatten() {
                last_use[*s] = Some(i);
            }
        }
        self.used = last_use.iter().map(Option::is_some).collect();
        for &slot in &self.output_slots {
            self.used[slot] = true;
        }
        for (slot, last) in last_use.into_iter().enumerate() {
            if let Some(i) = last
                && !self.output_slots.contains(&slot)
                && self.constants[slot].is_none()
            {
                self.steps[i].release.push(slot);
            }
        }
    }

    /// The device the model runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Version of the default operator set.
    pub fn opset(&self) -> i64 {
        self.opset
    }

    /// The `producer_name` recorded in the file.
    pub fn producer(&self) -> &str {
        &self.producer
    }

    /// Graph inputs (initializers excluded), in order.
    pub fn inputs(&self) -> &[ValueInfo] {
        &self.inputs
    }

    /// Graph outputs, in order.
    pub fn outputs(&self) -> &[ValueInfo] {
        &self.outputs
    }

    /// Every node in file order (including those folded at load time).
    pub fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    fn check_input(info: &ValueInfo, shape: &[usize]) -> Result<(), OnnxError> {
        let Some(dims) = &info.dims else {
            return Ok(());
        };
        let fits = dims.len() == shape.len()
            && dims.iter().zip(shape).all(|(d, &s)| {
                s > 0
                    && match d {
                        Dim::Fixed(n) => *n == s,
                        Dim::Dynamic(_) => true,
                    }
            });
        if fits {
            Ok(())
        } else {
            Err(OnnxError::InputShape {
                name: info.name.clone(),
                expected: info.describe(),
                got: shape.to_vec(),
            })
        }
    }

    /// Runs the graph on the inputs (in the order of [`OnnxModel::inputs`]) and returns the
    /// outputs in the order of [`OnnxModel::outputs`]. On a GPU, one run at a time per device
    /// (see [`faceid_core::device_lock`]).
    pub fn run(&self, inputs: Vec<OnnxTensor>) -> Result<Vec<OnnxTensor>, OnnxError> {
        faceid_core::device_lock::exclusive(&self.device, || self.run_graph(inputs))
    }

    fn run_graph(&self, inputs: Vec<OnnxTensor>) -> Result<Vec<OnnxTensor>, OnnxError> {
        if inputs.len() != self.inputs.len() {
            return Err(OnnxError::InputCount {
                expected: self.inputs.len(),
                got: inputs.len(),
            });
        }
        let mut values: Vec<Option<Value>> = vec![None; self.slot_count];
        for ((info, &slot), tensor) in self.inputs.iter().zip(&self.input_slots).zip(inputs) {
            Self::check_input(info, &tensor.shape())?;
            values[slot] = Some(Value::Device(tensor.into_inner()));
        }
        let ctx = OpContext {
            device: &self.device,
            opset: self.opset,
        };
        for step in &self.steps {
            let args: Vec<Option<&Value>> = step
                .inputs
                .iter()
                .map(|s| s.and_then(|s| values[s].as_ref().or(self.constants[s].as_ref())))
                .collect();
            let results = run_node(&ctx, &step.node, &args)?;
            let produced = results.len();
            let missing = (produced..step.outputs.len())
                .find(|&i| step.outputs[i].is_some_and(|s| self.used[s]));
            if let Some(i) = missing {
                return Err(node_error(
                    &step.node,
                    OpError::new(format!(
                        "output {:?} is used by the graph but this runtime does not compute it",
                        step.node.output[i]
                    )),
                ));
            }
            for (slot, v) in step.outputs.iter().zip(results) {
                if let Some(slot) = *slot {
                    values[slot] = Some(v);
                }
            }
            for &slot in &step.release {
                values[slot] = None;
            }
        }
        self.output_slots
            .iter()
            .zip(&self.outputs)
            .map(|(&slot, info)| {
                let value = values[slot]
                    .take()
                    .or_else(|| self.constants[slot].clone())
                    .ok_or_else(|| {
                        OnnxError::invalid(format!("output {:?} was not computed", info.name))
                    })?;
                value
                    .to_device(&self.device)
                    .map(OnnxTensor::from_inner)
                    .map_err(|e| OnnxError::Tensor(e.0))
            })
            .collect()
    }
}
