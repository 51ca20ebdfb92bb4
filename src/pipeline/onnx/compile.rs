//! ONNX graph → [`ImportedModel`]: a symbolic evaluation of one row.
//!
//! Every tensor of a per-row graph (batch dimension first, one row at a time) is a flat list of
//! elements, and each element is a function of at most one input field: a constant, a chain of
//! float operations on a numeric field, or a finite table over a categorical field's strings
//! (every string the graph mentions, plus "any other string"). Evaluating the supported
//! operators on those functions, node by node in the graph's (topological) order, yields the
//! classifier's input vector as such functions; the classifier's own attributes are copied. The
//! engine then evaluates the result natively, without an ONNX runtime.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use prost::Message;

use super::proto::{data_type, AttributeProto, ModelProto, NodeProto, TensorProto};
use super::{Classifier, FloatOp, ImportedInput, ImportedModel, ImportedSource, LinearModel, PostTransform, Slot, TreeEnsemble, TreeNode, NodeMode};

/// Why an ONNX file cannot be imported.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    /// Not a readable ONNX model.
    #[error("not an ONNX model: {0}")]
    Decode(String),
    /// An operator the importer does not translate.
    #[error("unsupported ONNX operator `{op}` (domain `{domain}`) in node `{node}`; supported: {supported}")]
    Unsupported {
        /// Operator type.
        op: String,
        /// Operator domain.
        domain: String,
        /// Node name.
        node: String,
        /// The supported operators.
        supported: &'static str,
    },
    /// A supported operator used in a way the importer does not translate, or a malformed graph.
    #[error("node `{node}` ({op}): {message}")]
    Node {
        /// Node name.
        node: String,
        /// Operator type.
        op: String,
        /// What is wrong.
        message: String,
    },
    /// Something about the model as a whole.
    #[error("{0}")]
    Model(String),
}

/// Operators [`compile`] translates (named in errors and in the README).
pub const SUPPORTED: &str = "ai.onnx: Identity, Cast, Concat, Reshape, Flatten, Squeeze, Unsqueeze, Gather, Where, Add, Sub, Mul, Div; ai.onnx.ml: Imputer, Scaler, LabelEncoder, OneHotEncoder, ArrayFeatureExtractor, LinearClassifier, TreeEnsembleClassifier (SUM), ZipMap and Normalizer after the classifier";

/// How the model's inputs map to event fields.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// For an input with more than one column: the field of each column, in order
    /// (`input name → fields`). An input with one column is the field of its own name.
    pub input_fields: BTreeMap<String, Vec<String>>,
}

/// The value every string the graph does not mention stands for during the symbolic evaluation.
const OTHER: &str = "\u{0}driftwatch:any-other-string\u{0}";

#[derive(Debug, Clone, PartialEq)]
enum Val {
    F(f32),
    I(i64),
    S(String),
}

impl Val {
    fn as_f32(&self) -> Option<f32> {
        match self {
            Val::F(v) => Some(*v),
            Val::I(v) => Some(*v as f32),
            Val::S(_) => None,
        }
    }
}

#[derive(Debug, Clone)]
enum Elem {
    Const(Val),
    /// A float function of numeric field `field`.
    Num { field: usize, ops: Vec<FloatOp> },
    /// A function of categorical field `field`: its value for each listed string, and for any
    /// other string (`None`: the string itself).
    Cat { field: usize, cases: BTreeMap<String, Val>, other: Option<Val> },
}

type Tensor = Vec<Elem>;

struct Field {
    name: String,
}

struct Ctx<'a> {
    node: &'a NodeProto,
}

impl Ctx<'_> {
    fn error(&self, message: impl Into<String>) -> OnnxError {
        OnnxError::Node { node: self.node.name.clone(), op: self.node.op_type.clone(), message: message.into() }
    }
    fn err<T>(&self, message: impl Into<String>) -> Result<T, OnnxError> {
        Err(self.error(message))
    }
    fn attr(&self, name: &str) -> Option<&AttributeProto> {
        self.node.attribute.iter().find(|a| a.name == name)
    }
    fn floats(&self, name: &str) -> Vec<f32> {
        self.attr(name).map(|a| a.floats.clone()).unwrap_or_default()
    }
    fn ints(&self, name: &str) -> Vec<i64> {
        self.attr(name).map(|a| a.ints.clone()).unwrap_or_default()
    }
    fn strings(&self, name: &str) -> Vec<String> {
        self.attr(name).map(|a| a.strings.iter().map(|s| String::from_utf8_lossy(s).into_owned()).collect()).unwrap_or_default()
    }
    fn string(&self, name: &str) -> Option<String> {
        self.attr(name).map(|a| String::from_utf8_lossy(&a.s).into_owned())
    }
    fn int(&self, name: &str) -> Option<i64> {
        self.attr(name).map(|a| a.i)
    }
}

/// Reads an ONNX file's bytes and translates its graph.
pub fn compile(bytes: &[u8], file: &str, opts: &ImportOptions) -> Result<ImportedModel, OnnxError> {
    let model = ModelProto::decode(bytes).map_err(|e| OnnxError::Decode(e.to_string()))?;
    let graph = model.graph.as_ref().ok_or_else(|| OnnxError::Decode("the file has no graph".into()))?;
    let mut values: HashMap<String, Tensor> = HashMap::new();
    for t in &graph.initializer {
        values.insert(t.name.clone(), tensor_values(t).map_err(|m| OnnxError::Model(format!("initializer `{}`: {m}", t.name)))?.into_iter().map(Elem::Const).collect());
    }
    // Inputs: one field per column.
    let mut fields: Vec<Field> = Vec::new();
    let mut inputs = Vec::new();
    let initialized: BTreeSet<String> = values.keys().cloned().collect();
    for input in graph.input.iter().filter(|i| !initialized.contains(&i.name)) {
        let tt = input.r#type.as_ref().and_then(|t| t.tensor_type.as_ref()).ok_or_else(|| OnnxError::Model(format!("input `{}` is not a tensor", input.name)))?;
        let categorical = match tt.elem_type {
            data_type::FLOAT => false,
            data_type::STRING => true,
            other => {
                return Err(OnnxError::Model(format!(
                    "input `{}` has element type {other}; supported are float (1) for numeric and string (8) for categorical fields (export with FloatTensorType / StringTensorType)",
                    input.name
                )))
            }
        };
        let dims = tt.shape.as_ref().map(|s| s.dim.clone()).unwrap_or_default();
        let columns = match dims.as_slice() {
            [_] => 1,
            [_, d] => d.dim_value.filter(|&v| v > 0).ok_or_else(|| OnnxError::Model(format!("input `{}` has no fixed column count", input.name)))? as usize,
            _ => return Err(OnnxError::Model(format!("input `{}` has {} dimensions; a row per batch entry ([N] or [N, k]) is supported", input.name, dims.len()))),
        };
        let names: Vec<String> = match opts.input_fields.get(&input.name) {
            Some(names) if names.len() == columns => names.clone(),
            Some(names) => return Err(OnnxError::Model(format!("input `{}` has {columns} columns but {} field names were given for it", input.name, names.len()))),
            None if columns == 1 => vec![input.name.clone()],
            None => {
                return Err(OnnxError::Model(format!(
                    "input `{}` has {columns} columns: name the event field of each, in order, with --input-fields '{}=FIELD1,FIELD2,…'",
                    input.name, input.name
                )))
            }
        };
        let mut tensor = Vec::with_capacity(columns);
        for name in &names {
            if fields.iter().any(|f| &f.name == name) {
                return Err(OnnxError::Model(format!("field `{name}` feeds two model inputs")));
            }
            fields.push(Field { name: name.clone() });
            let field = fields.len() - 1;
            tensor.push(if categorical { Elem::Cat { field, cases: BTreeMap::new(), other: None } } else { Elem::Num { field, ops: Vec::new() } });
        }
        inputs.push(ImportedInput { name: input.name.clone(), categorical, fields: names });
        values.insert(input.name.clone(), tensor);
    }
    if fields.is_empty() {
        return Err(OnnxError::Model("the graph has no inputs".into()));
    }

    let mut classifier: Option<(Classifier, Tensor, Vec<String>)> = None;
    for node in &graph.node {
        let cx = Ctx { node };
        if let Some((_, _, outs)) = &classifier {
            // After the classifier only the output plumbing is allowed.
            if node.input.iter().any(|i| outs.contains(i)) {
                if matches!(node.op_type.as_str(), "Identity" | "Cast" | "ZipMap" | "Normalizer") {
                    let mut o = outs.clone();
                    o.extend(node.output.iter().cloned());
                    classifier.as_mut().expect("set").2 = o;
                    continue;
                }
                return cx.err("only Identity, Cast, ZipMap and Normalizer may follow the classifier");
            }
        }
        let arg = |i: usize| -> Result<&Tensor, OnnxError> {
            let name = node.input.get(i).ok_or_else(|| cx.error(format!("missing input {i}")))?;
            values.get(name).ok_or_else(|| cx.error(format!("input `{name}` is not computed before this node (the graph must be topologically sorted)")))
        };
        let out: Vec<Tensor> = match (node.domain.as_str(), node.op_type.as_str()) {
            ("" | "ai.onnx", "Identity" | "Reshape" | "Flatten" | "Squeeze" | "Unsqueeze") => vec![arg(0)?.clone()],
            ("" | "ai.onnx", "Concat") => {
                let mut t = Vec::new();
                for i in 0..node.input.len() {
                    t.extend(arg(i)?.iter().cloned());
                }
                vec![t]
            }
            ("" | "ai.onnx", "Cast") => {
                let to = cx.int("to").unwrap_or(0) as i32;
                vec![arg(0)?.iter().map(|e| cast(&cx, e, to)).collect::<Result<_, _>>()?]
            }
            ("" | "ai.onnx", "Gather") => {
                let axis = cx.int("axis").unwrap_or(0);
                if axis != 1 && axis != -1 {
                    return cx.err(format!("gathers along axis {axis}; only the column axis (1) of a row is supported"));
                }
                vec![select(&cx, arg(0)?, arg(1)?)?]
            }
            ("ai.onnx.ml", "ArrayFeatureExtractor") => vec![select(&cx, arg(0)?, arg(1)?)?],
            ("" | "ai.onnx", op @ ("Add" | "Sub" | "Mul" | "Div")) => {
                let op = op.to_string();
                vec![zip(&cx, &[arg(0)?, arg(1)?], |v| {
                    let (a, b) = (v[0].as_f32()?, v[1].as_f32()?);
                    Some(Val::F(match op.as_str() {
                        "Add" => a + b,
                        "Sub" => a - b,
                        "Mul" => a * b,
                        _ => a / b,
                    }))
                }, Some(node.op_type.as_str()))?]
            }
            ("" | "ai.onnx", "Where") => vec![zip(&cx, &[arg(0)?, arg(1)?, arg(2)?], |v| match &v[0] {
                Val::I(c) => Some(if *c != 0 { v[1].clone() } else { v[2].clone() }),
                Val::F(c) => Some(if *c != 0.0 { v[1].clone() } else { v[2].clone() }),
                Val::S(_) => None,
            }, None)?],
            ("ai.onnx.ml", "Imputer") => {
                let imputed = cx.floats("imputed_value_floats");
                if imputed.is_empty() {
                    return cx.err("only imputed_value_floats is supported");
                }
                let replaced = cx.attr("replaced_value_float").map_or(0.0, |a| a.f);
                let x = arg(0)?;
                if imputed.len() != 1 && imputed.len() != x.len() {
                    return cx.err(format!("{} imputed values for {} columns", imputed.len(), x.len()));
                }
                let ops: Vec<FloatOp> = (0..x.len())
                    .map(|k| {
                        let to = imputed[if imputed.len() == 1 { 0 } else { k }];
                        if replaced.is_nan() { FloatOp::ReplaceMissing { value: to } } else { FloatOp::Replace { from: replaced, to } }
                    })
                    .collect();
                vec![x.iter().zip(ops).map(|(e, op)| float_op(&cx, e, op)).collect::<Result<_, _>>()?]
            }
            ("ai.onnx.ml", "Scaler") => {
                let (offset, scale) = (cx.floats("offset"), cx.floats("scale"));
                let x = arg(0)?;
                let pick = |v: &[f32], k: usize, default: f32| if v.is_empty() { default } else if v.len() == 1 { v[0] } else { v[k] };
                if (offset.len() > 1 && offset.len() != x.len()) || (scale.len() > 1 && scale.len() != x.len()) {
                    return cx.err(format!("{} offsets and {} scales for {} columns", offset.len(), scale.len(), x.len()));
                }
                vec![x
                    .iter()
                    .enumerate()
                    .map(|(k, e)| float_op(&cx, e, FloatOp::Scale { offset: pick(&offset, k, 0.0), scale: pick(&scale, k, 1.0) }))
                    .collect::<Result<_, _>>()?]
            }
            ("ai.onnx.ml", "LabelEncoder") => {
                let keys: Vec<Val> = if cx.attr("keys_strings").is_some() {
                    cx.strings("keys_strings").into_iter().map(Val::S).collect()
                } else if cx.attr("keys_int64s").is_some() {
                    cx.ints("keys_int64s").into_iter().map(Val::I).collect()
                } else {
                    return cx.err("only keys_strings or keys_int64s are supported");
                };
                let (vals, default): (Vec<Val>, Val) = if cx.attr("values_strings").is_some() {
                    (cx.strings("values_strings").into_iter().map(Val::S).collect(), Val::S(cx.string("default_string").unwrap_or_else(|| "_Unused".into())))
                } else if cx.attr("values_int64s").is_some() {
                    (cx.ints("values_int64s").into_iter().map(Val::I).collect(), Val::I(cx.int("default_int64").unwrap_or(-1)))
                } else if cx.attr("values_floats").is_some() {
                    (cx.floats("values_floats").into_iter().map(Val::F).collect(), Val::F(cx.attr("default_float").map_or(-0.0, |a| a.f)))
                } else {
                    return cx.err("only values_strings, values_int64s or values_floats are supported");
                };
                if keys.len() != vals.len() {
                    return cx.err("keys and values differ in length");
                }
                let extra: Vec<String> = keys.iter().filter_map(|k| if let Val::S(s) = k { Some(s.clone()) } else { None }).collect();
                let map = |v: &Val| -> Option<Val> { Some(keys.iter().position(|k| k == v).map_or_else(|| default.clone(), |i| vals[i].clone())) };
                vec![arg(0)?.iter().map(|e| apply(&cx, e, &extra, &map)).collect::<Result<_, _>>()?]
            }
            ("ai.onnx.ml", "OneHotEncoder") => {
                let cats: Vec<Val> = if cx.attr("cats_strings").is_some() {
                    cx.strings("cats_strings").into_iter().map(Val::S).collect()
                } else {
                    cx.ints("cats_int64s").into_iter().map(Val::I).collect()
                };
                if cats.is_empty() {
                    return cx.err("no categories");
                }
                let extra: Vec<String> = cats.iter().filter_map(|k| if let Val::S(s) = k { Some(s.clone()) } else { None }).collect();
                let mut t = Vec::new();
                for e in arg(0)? {
                    for c in &cats {
                        let hot = |v: &Val| -> Option<Val> { Some(Val::F(f32::from(u8::from(v == c)))) };
                        t.push(apply(&cx, e, &extra, &hot)?);
                    }
                }
                vec![t]
            }
            ("ai.onnx.ml", "LinearClassifier") => {
                let x = arg(0)?.clone();
                let c = linear(&cx, x.len())?;
                classifier = Some((c, x, node.output.clone()));
                continue;
            }
            ("ai.onnx.ml", "TreeEnsembleClassifier") => {
                let x = arg(0)?.clone();
                let c = trees(&cx, x.len())?;
                classifier = Some((c, x, node.output.clone()));
                continue;
            }
            (domain, op) => {
                return Err(OnnxError::Unsupported { op: op.to_string(), domain: domain.to_string(), node: node.name.clone(), supported: SUPPORTED })
            }
        };
        for (name, t) in node.output.iter().zip(out) {
            values.insert(name.clone(), t);
        }
    }
    let (classifier, x, _) = classifier.ok_or_else(|| OnnxError::Model("the graph has no LinearClassifier or TreeEnsembleClassifier".into()))?;
    let slots = x
        .into_iter()
        .enumerate()
        .map(|(k, e)| slot(e, &fields).ok_or_else(|| OnnxError::Model(format!("the classifier's input column {k} is not a number"))))
        .collect::<Result<Vec<_>, _>>()?;
    if slots.len() > super::MAX_WIDTH {
        return Err(OnnxError::Model(format!("the classifier reads {} columns; at most {} are supported", slots.len(), super::MAX_WIDTH)));
    }
    Ok(ImportedModel {
        source: ImportedSource {
            file: file.to_string(),
            sha256: crate::pipeline::train::sha256_hex(bytes),
            producer: format!("{} {}", model.producer_name, model.producer_version).trim().to_string(),
            opsets: model.opset_import.iter().map(|o| format!("{}:{}", if o.domain.is_empty() { "ai.onnx" } else { &o.domain }, o.version)).collect(),
        },
        inputs,
        slots,
        classifier,
    })
}

fn tensor_values(t: &TensorProto) -> Result<Vec<Val>, String> {
    let raw = &t.raw_data;
    Ok(match t.data_type {
        data_type::INT64 if !raw.is_empty() => raw.chunks_exact(8).map(|c| Val::I(i64::from_le_bytes(c.try_into().expect("8 bytes")))).collect(),
        data_type::INT64 => t.int64_data.iter().map(|&v| Val::I(v)).collect(),
        data_type::INT32 | data_type::BOOL if !raw.is_empty() && t.data_type == data_type::BOOL => raw.iter().map(|&b| Val::I(i64::from(b))).collect(),
        data_type::INT32 if !raw.is_empty() => raw.chunks_exact(4).map(|c| Val::I(i64::from(i32::from_le_bytes(c.try_into().expect("4 bytes"))))).collect(),
        data_type::INT32 | data_type::BOOL => t.int32_data.iter().map(|&v| Val::I(i64::from(v))).collect(),
        data_type::FLOAT if !raw.is_empty() => raw.chunks_exact(4).map(|c| Val::F(f32::from_le_bytes(c.try_into().expect("4 bytes")))).collect(),
        data_type::FLOAT => t.float_data.iter().map(|&v| Val::F(v)).collect(),
        data_type::DOUBLE if !raw.is_empty() => raw.chunks_exact(8).map(|c| Val::F(f64::from_le_bytes(c.try_into().expect("8 bytes")) as f32)).collect(),
        data_type::DOUBLE => t.double_data.iter().map(|&v| Val::F(v as f32)).collect(),
        data_type::STRING => t.string_data.iter().map(|s| Val::S(String::from_utf8_lossy(s).into_owned())).collect(),
        other => return Err(format!("element type {other} is not supported")),
    })
}

fn cast(cx: &Ctx<'_>, e: &Elem, to: i32) -> Result<Elem, OnnxError> {
    let conv = move |v: &Val| -> Option<Val> {
        Some(match (to, v) {
            (data_type::FLOAT | data_type::DOUBLE, v) => Val::F(v.as_f32()?),
            (data_type::INT64 | data_type::INT32, Val::F(f)) => Val::I(*f as i64),
            (data_type::INT64 | data_type::INT32, Val::I(i)) => Val::I(*i),
            (data_type::BOOL, Val::F(f)) => Val::I(i64::from(*f != 0.0)),
            (data_type::BOOL, Val::I(i)) => Val::I(i64::from(*i != 0)),
            (data_type::STRING, Val::S(s)) => Val::S(s.clone()),
            (data_type::STRING, Val::I(i)) => Val::S(i.to_string()),
            _ => return None,
        })
    };
    match e {
        Elem::Num { .. } if matches!(to, data_type::FLOAT | data_type::DOUBLE) => Ok(e.clone()),
        Elem::Num { .. } => cx.err(format!("casts a numeric field to type {to}")),
        _ => apply(cx, e, &[], &conv),
    }
}

/// Applies an element-wise function; `extra` are strings the function treats specially (they
/// become explicit cases of a categorical element that still is its own string).
fn apply(cx: &Ctx<'_>, e: &Elem, extra: &[String], f: &dyn Fn(&Val) -> Option<Val>) -> Result<Elem, OnnxError> {
    let bad = || cx.error("an input has a type this operator does not take");
    Ok(match e {
        Elem::Const(v) => Elem::Const(f(v).ok_or_else(bad)?),
        Elem::Num { .. } => return cx.err("applies a categorical operation to a numeric field"),
        Elem::Cat { field, cases, other } => {
            let mut cases = cases.clone();
            if other.is_none() {
                for s in extra {
                    cases.entry(s.clone()).or_insert_with(|| Val::S(s.clone()));
                }
            }
            let mut out = BTreeMap::new();
            for (k, v) in cases {
                out.insert(k, f(&v).ok_or_else(bad)?);
            }
            let other_val = other.clone().unwrap_or_else(|| Val::S(OTHER.into()));
            let mapped = f(&other_val).ok_or_else(bad)?;
            Elem::Cat { field: *field, cases: out, other: if mapped == Val::S(OTHER.into()) { None } else { Some(mapped) } }
        }
    })
}

fn float_op(cx: &Ctx<'_>, e: &Elem, op: FloatOp) -> Result<Elem, OnnxError> {
    match e {
        Elem::Num { field, ops } => {
            let mut ops = ops.clone();
            ops.push(op);
            Ok(Elem::Num { field: *field, ops })
        }
        other => apply(cx, other, &[], &|v: &Val| Some(Val::F(op.apply(v.as_f32()?)))),
    }
}

/// Element-wise function of several tensors (numpy broadcasting of a single element).
fn zip(cx: &Ctx<'_>, args: &[&Tensor], f: impl Fn(&[Val]) -> Option<Val>, arithmetic: Option<&str>) -> Result<Tensor, OnnxError> {
    let n = args.iter().map(|a| a.len()).max().unwrap_or(0);
    if args.iter().any(|a| a.len() != n && a.len() != 1) {
        return cx.err("operand lengths do not broadcast");
    }
    let mut out = Vec::with_capacity(n);
    for k in 0..n {
        let elems: Vec<&Elem> = args.iter().map(|a| &a[if a.len() == 1 { 0 } else { k }]).collect();
        // A numeric field with constants: only arithmetic, kept as a float operation.
        if let Some(pos) = elems.iter().position(|e| matches!(e, Elem::Num { .. })) {
            let (Some(op), 2) = (arithmetic, elems.len()) else { return cx.err("combines a numeric field in a way that is not supported") };
            let other = elems[1 - pos];
            let Elem::Const(c) = other else { return cx.err("combines two fields element-wise; each model column must depend on one field") };
            let c = c.as_f32().ok_or_else(|| cx.error("arithmetic on a string"))?;
            let fop = match (op, pos) {
                ("Add", _) => FloatOp::Scale { offset: -c, scale: 1.0 },
                ("Sub", 0) => FloatOp::Scale { offset: c, scale: 1.0 },
                ("Mul", _) => FloatOp::Scale { offset: 0.0, scale: c },
                ("Div", 0) => FloatOp::Div { by: c },
                _ => return cx.err("subtracts or divides a field from a constant, which is not supported"),
            };
            out.push(float_op(cx, elems[pos], fop)?);
            continue;
        }
        let field = {
            let fs: BTreeSet<usize> = elems.iter().filter_map(|e| if let Elem::Cat { field, .. } = e { Some(*field) } else { None }).collect();
            if fs.len() > 1 {
                return cx.err("combines two fields element-wise; each model column must depend on one field");
            }
            fs.into_iter().next()
        };
        let bad = || cx.error("operand types are not supported");
        let at = |e: &Elem, key: Option<&str>| -> Val {
            match e {
                Elem::Const(v) => v.clone(),
                Elem::Cat { cases, other, .. } => match key.and_then(|k| cases.get(k)) {
                    Some(v) => v.clone(),
                    None => other.clone().unwrap_or_else(|| Val::S(key.unwrap_or(OTHER).to_string())),
                },
                Elem::Num { .. } => unreachable!("handled above"),
            }
        };
        match field {
            None => {
                let vals: Vec<Val> = elems.iter().map(|e| at(e, None)).collect();
                out.push(Elem::Const(f(&vals).ok_or_else(bad)?));
            }
            Some(field) => {
                let keys: BTreeSet<String> = elems.iter().flat_map(|e| if let Elem::Cat { cases, .. } = e { cases.keys().cloned().collect() } else { Vec::new() }).collect();
                let mut cases = BTreeMap::new();
                for k in keys {
                    let vals: Vec<Val> = elems.iter().map(|e| at(e, Some(&k))).collect();
                    cases.insert(k, f(&vals).ok_or_else(bad)?);
                }
                let vals: Vec<Val> = elems.iter().map(|e| at(e, Some(OTHER))).collect();
                let o = f(&vals).ok_or_else(bad)?;
                out.push(Elem::Cat { field, cases, other: if o == Val::S(OTHER.into()) { None } else { Some(o) } });
            }
        }
    }
    Ok(out)
}

fn select(cx: &Ctx<'_>, x: &Tensor, idx: &Tensor) -> Result<Tensor, OnnxError> {
    idx.iter()
        .map(|e| match e {
            Elem::Const(Val::I(i)) => {
                let i = if *i < 0 { *i + x.len() as i64 } else { *i };
                x.get(i as usize).cloned().ok_or_else(|| cx.error(format!("index {i} outside {} columns", x.len())))
            }
            _ => cx.err("indices must be constant integers"),
        })
        .collect()
}

fn slot(e: Elem, fields: &[Field]) -> Option<Slot> {
    Some(match e {
        Elem::Const(v) => Slot::Constant { value: v.as_f32()? },
        Elem::Num { field, ops } => Slot::Numeric { field: fields[field].name.clone(), ops },
        Elem::Cat { field, cases, other } => {
            let other = match other {
                Some(v) => v.as_f32()?,
                None => return None,
            };
            let mut values = Vec::with_capacity(cases.len());
            for (k, v) in cases {
                values.push((k, v.as_f32()?));
            }
            Slot::Categorical { field: fields[field].name.clone(), cases: values, other }
        }
    })
}

fn post_transform(cx: &Ctx<'_>) -> Result<PostTransform, OnnxError> {
    match cx.string("post_transform").as_deref().unwrap_or("NONE") {
        "NONE" => Ok(PostTransform::None),
        "LOGISTIC" => Ok(PostTransform::Logistic),
        "SOFTMAX" => Ok(PostTransform::Softmax),
        other => cx.err(format!("post_transform {other} is not supported (NONE, LOGISTIC, SOFTMAX are)")),
    }
}

/// The index of the positive class (label 1, `true`, or else the second of two).
fn positive_class(cx: &Ctx<'_>) -> Result<usize, OnnxError> {
    let ints = cx.ints("classlabels_ints");
    let ints = if ints.is_empty() { cx.ints("classlabels_int64s") } else { ints };
    if !ints.is_empty() {
        if ints.len() != 2 {
            return cx.err(format!("{} classes; a binary classifier (two classes) is required", ints.len()));
        }
        return Ok(ints.iter().position(|&c| c == 1).unwrap_or(1));
    }
    let strings = cx.strings("classlabels_strings");
    if strings.len() != 2 {
        return cx.err(format!("{} classes; a binary classifier (two classes) is required", strings.len()));
    }
    Ok(strings.iter().position(|s| s == "1" || s.eq_ignore_ascii_case("true") || s.eq_ignore_ascii_case("fraud")).unwrap_or(1))
}

fn linear(cx: &Ctx<'_>, width: usize) -> Result<Classifier, OnnxError> {
    let positive = positive_class(cx)?;
    let coefficients = cx.floats("coefficients");
    let intercepts = cx.floats("intercepts");
    let post_transform = post_transform(cx)?;
    if width == 0 || coefficients.len() % width != 0 {
        return cx.err(format!("{} coefficients for {width} input columns", coefficients.len()));
    }
    let rows = coefficients.len() / width;
    if !(rows == 1 || rows == 2) || (intercepts.len() != rows && !intercepts.is_empty()) {
        return cx.err(format!("{rows} coefficient rows and {} intercepts; a binary classifier has one or two", intercepts.len()));
    }
    let intercepts = if intercepts.is_empty() { vec![0.0; rows] } else { intercepts };
    // One row is the positive class's score (ONNX's binary form); two rows are per class.
    Ok(Classifier::Linear(LinearModel { coefficients, intercepts, rows, positive: if rows == 1 { 0 } else { positive }, post_transform }))
}

fn trees(cx: &Ctx<'_>, width: usize) -> Result<Classifier, OnnxError> {
    if cx.attr("nodes_values_as_tensor").is_some() || cx.attr("class_weights_as_tensor").is_some() {
        return cx.err("double-precision (_as_tensor) attributes are not supported");
    }
    let positive = positive_class(cx)?;
    let post_transform = post_transform(cx)?;
    if post_transform == PostTransform::Softmax {
        return cx.err("post_transform SOFTMAX on a tree ensemble is not supported");
    }
    let tree_ids = cx.ints("nodes_treeids");
    let node_ids = cx.ints("nodes_nodeids");
    let features = cx.ints("nodes_featureids");
    let thresholds = cx.floats("nodes_values");
    let modes = cx.strings("nodes_modes");
    let yes = cx.ints("nodes_truenodeids");
    let no = cx.ints("nodes_falsenodeids");
    let missing = cx.ints("nodes_missing_value_tracks_true");
    let n = tree_ids.len();
    if [node_ids.len(), features.len(), thresholds.len(), modes.len(), yes.len(), no.len()].iter().any(|&l| l != n) || (!missing.is_empty() && missing.len() != n) {
        return cx.err("the nodes_* attributes differ in length");
    }
    let class_ids = cx.ints("class_ids");
    let class_trees = cx.ints("class_treeids");
    let class_nodes = cx.ints("class_nodeids");
    let weights = cx.floats("class_weights");
    if [class_trees.len(), class_nodes.len(), weights.len()].iter().any(|&l| l != class_ids.len()) {
        return cx.err("the class_* attributes differ in length");
    }
    let ids: BTreeSet<i64> = class_ids.iter().copied().collect();
    // ONNX's binary form: weights for one class only are the positive class's score.
    let (scored_class, single) = if ids.len() <= 1 { (ids.into_iter().next().unwrap_or(0), true) } else { (positive as i64, false) };
    let base_values = cx.floats("base_values");
    let base = match (single, base_values.len()) {
        (_, 0) => 0.0,
        (true, 1) => base_values[0],
        (_, 2) => base_values[if single { 1 } else { positive }],
        (_, k) => return cx.err(format!("{k} base values for a binary classifier")),
    };
    // Trees in id order; node ids index within a tree.
    let mut by_tree: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
    for (k, &t) in tree_ids.iter().enumerate() {
        by_tree.entry(t).or_default().push(k);
    }
    let mut leaf_values: HashMap<(i64, i64), f64> = HashMap::new();
    for k in 0..class_ids.len() {
        if class_ids[k] == scored_class {
            *leaf_values.entry((class_trees[k], class_nodes[k])).or_default() += f64::from(weights[k]);
        }
    }
    let mut out_trees = Vec::with_capacity(by_tree.len());
    for (t, mut members) in by_tree {
        members.sort_by_key(|&k| node_ids[k]);
        let index: HashMap<i64, usize> = members.iter().enumerate().map(|(pos, &k)| (node_ids[k], pos)).collect();
        let root = *index.get(&0).ok_or_else(|| cx.error(format!("tree {t} has no node 0")))?;
        let mut nodes = Vec::with_capacity(members.len());
        for &k in &members {
            let mode = match modes[k].as_str() {
                "BRANCH_LEQ" => NodeMode::Leq,
                "BRANCH_LT" => NodeMode::Lt,
                "BRANCH_GTE" => NodeMode::Gte,
                "BRANCH_GT" => NodeMode::Gt,
                "BRANCH_EQ" => NodeMode::Eq,
                "BRANCH_NEQ" => NodeMode::Neq,
                "LEAF" => NodeMode::Leaf,
                other => return cx.err(format!("node mode {other}")),
            };
            let child = |id: i64| -> Result<u32, OnnxError> {
                index.get(&id).map(|&p| p as u32).ok_or_else(|| cx.error(format!("tree {t} refers to a missing node {id}")))
            };
            let leaf = mode == NodeMode::Leaf;
            if !leaf && (features[k] < 0 || features[k] as usize >= width) {
                return cx.err(format!("tree {t} splits on column {} of {width}", features[k]));
            }
            nodes.push(TreeNode {
                mode,
                feature: if leaf { 0 } else { features[k] as u32 },
                threshold: if leaf { 0.0 } else { thresholds[k] },
                yes: if leaf { 0 } else { child(yes[k])? },
                no: if leaf { 0 } else { child(no[k])? },
                missing_yes: missing.get(k).is_some_and(|&m| m != 0),
                value: if leaf { leaf_values.get(&(t, node_ids[k])).copied().unwrap_or(0.0) } else { 0.0 },
                cover: 0.0,
            });
        }
        if root != 0 {
            return cx.err(format!("tree {t}: node 0 must come first"));
        }
        out_trees.push(nodes);
    }
    Ok(Classifier::Trees(TreeEnsemble { trees: out_trees, base_value: f64::from(base), post_transform, cover: super::Cover::Count, expected_value: 0.0 }))
}
