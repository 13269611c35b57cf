//! A whitelisting unpickler for PyTorch checkpoints that never executes anything.
//!
//! Mirrors what `torch.load` / `torch.jit.load` read from a checkpoint's `data.pkl`
//! (`torch/serialization.py` `_load`, `torch/_utils.py` `_rebuild_tensor_v2`): Python pickle
//! protocols 0–5 minus the parts torch never writes. Globals are resolved against a fixed list
//! (tensor rebuilders, `collections.OrderedDict`, `torch.*Storage`, dtypes, `torch.jit._pickle`
//! list builders and TorchScript `__torch__.*` classes, the latter kept as plain attribute
//! objects); anything else (`os.system`, `builtins.eval`, …) is an error naming the global.
//! Tensors come out as [`TensorRecord`]s (dtype, shape, strides, offset, storage key), so this
//! file does not depend on tch and can be fuzzed on its own.
//!
//! Memory and recursion are bounded: every length is checked against the input, the stack,
//! mark stack, memo and value nesting depth are capped, and containers are shared through `Rc`
//! (copy-on-write), so a memo reference costs O(1) and no value can contain itself.

use std::collections::HashMap;
use std::rc::Rc;

/// Deepest value nesting accepted; TorchScript module trees are a few dozen levels deep.
pub const MAX_DEPTH: usize = 1_000;
/// Most values on the stack (and open marks) at once.
pub const MAX_STACK: usize = 1_000_000;
/// Most memo entries.
pub const MAX_MEMO: usize = 10_000_000;
/// Most container elements copied by copy-on-write over one pickle.
const MAX_COPIED: usize = 100_000_000;

/// Why a pickle was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PickleError {
    #[error(
        "refused global `{module}.{name}`: only the globals PyTorch checkpoints use are allowed \
         (nothing in a checkpoint is ever executed)"
    )]
    UnknownGlobal { module: String, name: String },
    #[error("unsupported pickle opcode 0x{opcode:02x} at byte {offset}")]
    UnsupportedOpcode { opcode: u8, offset: usize },
    #[error("pickle ends early at byte {offset}")]
    Truncated { offset: usize },
    #[error("pickle nests values deeper than {MAX_DEPTH} levels (at byte {offset})")]
    TooDeep { offset: usize },
    #[error("pickle {what} exceeds its limit of {limit} (at byte {offset})")]
    TooLarge { what: &'static str, limit: usize, offset: usize },
    #[error("malformed pickle at byte {offset}: {reason}")]
    Malformed { offset: usize, reason: String },
}

/// Element type of a stored tensor, as named by its storage class or dtype global.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dtype {
    Half,
    BFloat16,
    Float,
    Double,
    Int64,
    Int32,
    Int16,
    Int8,
    UInt8,
    Bool,
    /// A dtype torch knows but this crate does not load (complex, float8, quantized, uint16…).
    Other(String),
    /// `torch.storage.UntypedStorage`: bytes, typed by the tensor that uses it.
    Untyped,
}

impl Dtype {
    /// Bytes per element, `None` for dtypes this crate does not load.
    pub fn size(&self) -> Option<usize> {
        Some(match self {
            Dtype::Bool | Dtype::Int8 | Dtype::UInt8 | Dtype::Untyped => 1,
            Dtype::Half | Dtype::BFloat16 | Dtype::Int16 => 2,
            Dtype::Float | Dtype::Int32 => 4,
            Dtype::Double | Dtype::Int64 => 8,
            Dtype::Other(_) => return None,
        })
    }

    /// The torch name (`float16`, …).
    pub fn name(&self) -> &str {
        match self {
            Dtype::Half => "float16",
            Dtype::BFloat16 => "bfloat16",
            Dtype::Float => "float32",
            Dtype::Double => "float64",
            Dtype::Int64 => "int64",
            Dtype::Int32 => "int32",
            Dtype::Int16 => "int16",
            Dtype::Int8 => "int8",
            Dtype::UInt8 => "uint8",
            Dtype::Bool => "bool",
            Dtype::Other(name) => name,
            Dtype::Untyped => "untyped",
        }
    }

    /// `torch.<name>Storage` → dtype; `None` if `name` is not a torch storage class.
    fn from_storage_class(name: &str) -> Option<Dtype> {
        Some(match name {
            "HalfStorage" => Dtype::Half,
            "BFloat16Storage" => Dtype::BFloat16,
            "FloatStorage" => Dtype::Float,
            "DoubleStorage" => Dtype::Double,
            "LongStorage" => Dtype::Int64,
            "IntStorage" => Dtype::Int32,
            "ShortStorage" => Dtype::Int16,
            "CharStorage" => Dtype::Int8,
            "ByteStorage" => Dtype::UInt8,
            "BoolStorage" => Dtype::Bool,
            "ComplexHalfStorage"
            | "ComplexFloatStorage"
            | "ComplexDoubleStorage"
            | "QInt8Storage"
            | "QUInt8Storage"
            | "QInt32Storage"
            | "QUInt4x2Storage"
            | "QUInt2x4Storage" => Dtype::Other(name.trim_end_matches("Storage").to_string()),
            _ => return None,
        })
    }

    /// `torch.<name>` dtype global (as `_rebuild_tensor_v3` uses) → dtype.
    fn from_dtype_global(name: &str) -> Option<Dtype> {
        Some(match name {
            "float16" | "half" => Dtype::Half,
            "bfloat16" => Dtype::BFloat16,
            "float32" | "float" => Dtype::Float,
            "float64" | "double" => Dtype::Double,
            "int64" | "long" => Dtype::Int64,
            "int32" | "int" => Dtype::Int32,
            "int16" | "short" => Dtype::Int16,
            "int8" => Dtype::Int8,
            "uint8" => Dtype::UInt8,
            "bool" => Dtype::Bool,
            "uint16" | "uint32" | "uint64" | "complex32" | "complex64" | "complex128" | "chalf"
            | "cfloat" | "cdouble" | "float8_e4m3fn" | "float8_e5m2" | "float8_e4m3fnuz"
            | "float8_e5m2fnuz" | "float8_e8m0fnu" | "float4_e2m1fn_x2" | "qint8" | "quint8"
            | "qint32" | "quint4x2" | "quint2x4" => Dtype::Other(name.to_string()),
            _ => return None,
        })
    }
}

/// A storage named by a persistent id `('storage', torch.HalfStorage, key, location, numel)`:
/// the bytes live in the archive entry `data/<key>`.
#[derive(Debug, Clone, PartialEq)]
pub struct StorageRef {
    pub key: String,
    pub dtype: Dtype,
    /// Elements of `dtype` (bytes for untyped storages).
    pub numel: u64,
}

/// A tensor as `_rebuild_tensor_v2(storage, offset, size, stride, …)` describes it; offset and
/// strides count elements of `dtype`.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorRecord {
    pub storage: StorageRef,
    pub dtype: Dtype,
    pub offset: u64,
    pub shape: Vec<i64>,
    pub strides: Vec<i64>,
}

/// A callable or class the whitelist lets through; only ever interpreted, never run.
#[derive(Debug, Clone, PartialEq)]
pub enum Global {
    RebuildTensorV2,
    RebuildTensorV3,
    RebuildParameter,
    RebuildParameterWithState,
    OrderedDict,
    /// `torch.jit._pickle.build_*list`: returns its list argument.
    BuildList,
    /// `torch.jit._pickle.restore_type_tag(value, type)`: returns `value`.
    RestoreTypeTag,
    StorageClass(Dtype),
    DtypeGlobal(Dtype),
    /// A TorchScript class (`__torch__.…`), instantiated as a plain [`Object`].
    Class(String),
}

/// A TorchScript module (or other `__torch__` class) instance: its class name and the state
/// `BUILD` gave it (for modules, a dict of attributes: submodules, parameters, buffers, flags).
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    pub class: String,
    pub state: Value,
}

/// A list, tuple or dict body plus its nesting depth (kept so depth checks are O(1)).
#[derive(Debug, Clone, PartialEq)]
pub struct Seq<T> {
    pub depth: usize,
    pub items: Vec<T>,
}

/// An unpickled value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Rc<Seq<Value>>),
    List(Rc<Seq<Value>>),
    /// Insertion-ordered; a repeated key keeps every pair, the last one wins when read.
    Dict(Rc<Seq<(Value, Value)>>),
    Object(Rc<Object>),
    Global(Global),
    Storage(Rc<StorageRef>),
    Tensor(Rc<TensorRecord>),
}

impl Value {
    /// Nesting depth: 0 for scalars, 1 + the deepest element for containers.
    pub fn depth(&self) -> usize {
        match self {
            Value::Tuple(s) | Value::List(s) => s.depth,
            Value::Dict(s) => s.depth,
            Value::Object(o) => 1 + o.state.depth(),
            _ => 0,
        }
    }

    /// The (key, value) pairs of a dict in pickle order, repeats included; `None` if not a dict.
    pub fn as_dict(&self) -> Option<&[(Value, Value)]> {
        match self {
            Value::Dict(s) => Some(&s.items),
            _ => None,
        }
    }

    /// A short description for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
            Value::Object(_) => "object",
            Value::Global(_) => "global",
            Value::Storage(_) => "storage",
            Value::Tensor(_) => "tensor",
        }
    }
}

/// Unpickles `data` (one pickle, up to its STOP opcode).
pub fn unpickle(data: &[u8]) -> Result<Value, PickleError> {
    Unpickler {
        data,
        pos: 0,
        op_start: 0,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        copied: 0,
    }
    .run()
}

/// Resolves `module.name` against the whitelist.
fn resolve_global(module: &str, name: &str) -> Result<Global, PickleError> {
    let refused =
        || PickleError::UnknownGlobal { module: module.to_string(), name: name.to_string() };
    Ok(match (module, name) {
        ("torch._utils", "_rebuild_tensor_v2") => Global::RebuildTensorV2,
        ("torch._utils", "_rebuild_tensor_v3") => Global::RebuildTensorV3,
        ("torch._utils", "_rebuild_parameter") => Global::RebuildParameter,
        ("torch._utils", "_rebuild_parameter_with_state") => Global::RebuildParameterWithState,
        ("collections", "OrderedDict") => Global::OrderedDict,
        ("torch.storage", "UntypedStorage") => Global::StorageClass(Dtype::Untyped),
        (
            "torch.jit._pickle",
            "build_intlist" | "build_floatlist" | "build_doublelist" | "build_boollist"
            | "build_tensorlist",
        ) => Global::BuildList,
        ("torch.jit._pickle", "restore_type_tag") => Global::RestoreTypeTag,
        ("torch", n) => match (Dtype::from_storage_class(n), Dtype::from_dtype_global(n)) {
            (Some(d), _) => Global::StorageClass(d),
            (None, Some(d)) => Global::DtypeGlobal(d),
            (None, None) => return Err(refused()),
        },
        (m, n) if m == "__torch__" || m.starts_with("__torch__.") => {
            Global::Class(format!("{m}.{n}"))
        }
        _ => return Err(refused()),
    })
}

struct Unpickler<'a> {
    data: &'a [u8],
    pos: usize,
    op_start: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u64, Value>,
    copied: usize,
}

impl Unpickler<'_> {
    fn malformed(&self, reason: impl Into<String>) -> PickleError {
        PickleError::Malformed { offset: self.op_start, reason: reason.into() }
    }

    fn take(&mut self, n: usize) -> Result<&[u8], PickleError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        let end = end.ok_or(PickleError::Truncated { offset: self.data.len() })?;
        let bytes = &self.data[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn take_array<const N: usize>(&mut self) -> Result<[u8; N], PickleError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn take_len(&mut self, width: usize) -> Result<usize, PickleError> {
        let n = match width {
            1 => u64::from(self.take_array::<1>()?[0]),
            4 => u64::from(u32::from_le_bytes(self.take_array()?)),
            _ => u64::from_le_bytes(self.take_array()?),
        };
        // Longer than what is left is truncation; this also keeps allocations bounded.
        usize::try_from(n)
            .ok()
            .filter(|&n| n <= self.data.len() - self.pos)
            .ok_or(PickleError::Truncated { offset: self.data.len() })
    }

    fn take_line(&mut self) -> Result<&str, PickleError> {
        let rest = &self.data[self.pos..];
        let nl = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or(PickleError::Truncated { offset: self.data.len() })?;
        self.pos += nl + 1;
        std::str::from_utf8(&rest[..nl]).map_err(|_| PickleError::Malformed {
            offset: self.op_start,
            reason: "non-UTF-8 text line".into(),
        })
    }

    fn push(&mut self, v: Value) -> Result<(), PickleError> {
        if v.depth() > MAX_DEPTH {
            return Err(PickleError::TooDeep { offset: self.op_start });
        }
        if self.stack.len() >= MAX_STACK {
            return Err(PickleError::TooLarge {
                what: "stack",
                limit: MAX_STACK,
                offset: self.op_start,
            });
        }
        self.stack.push(v);
        Ok(())
    }

    fn pop(&mut self) -> Result<Value, PickleError> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(self.malformed("pop from an empty stack"));
        }
        self.stack.pop().ok_or_else(|| self.malformed("pop from an empty stack"))
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>, PickleError> {
        let mark = self.marks.pop().ok_or_else(|| self.malformed("no MARK to pop to"))?;
        Ok(self.stack.split_off(mark))
    }

    fn top(&mut self) -> Result<&mut Value, PickleError> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(self.malformed("empty stack"));
        }
        let offset = self.op_start;
        self.stack.last_mut().ok_or(PickleError::Malformed { offset, reason: "empty stack".into() })
    }

    fn seq(&self, items: Vec<Value>) -> Result<Rc<Seq<Value>>, PickleError> {
        let depth = 1 + items.iter().map(Value::depth).max().unwrap_or(0);
        if depth > MAX_DEPTH {
            return Err(PickleError::TooDeep { offset: self.op_start });
        }
        Ok(Rc::new(Seq { depth, items }))
    }

    fn dict(&self, items: Vec<Value>) -> Result<Value, PickleError> {
        if !items.len().is_multiple_of(2) {
            return Err(self.malformed("odd number of items for a dict"));
        }
        let mut pairs = Vec::with_capacity(items.len() / 2);
        let mut it = items.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            pairs.push((k, v));
        }
        let depth = 1 + pairs.iter().map(|(k, v)| k.depth().max(v.depth())).max().unwrap_or(0);
        if depth > MAX_DEPTH {
            return Err(PickleError::TooDeep { offset: self.op_start });
        }
        Ok(Value::Dict(Rc::new(Seq { depth, items: pairs })))
    }

    /// Appends to the list on top of the stack (APPEND/APPENDS).
    fn extend_list(&mut self, items: Vec<Value>) -> Result<(), PickleError> {
        let offset = self.op_start;
        let added = 1 + items.iter().map(Value::depth).max().unwrap_or(0);
        let mut copied = self.copied;
        let Value::List(list) = self.top()? else {
            return Err(PickleError::Malformed { offset, reason: "APPEND to a non-list".into() });
        };
        if Rc::strong_count(list) > 1 {
            copied += list.items.len();
        }
        let list = Rc::make_mut(list);
        list.depth = list.depth.max(added);
        list.items.extend(items);
        let depth = list.depth;
        self.note_copied(copied)?;
        if depth > MAX_DEPTH {
            return Err(PickleError::TooDeep { offset });
        }
        Ok(())
    }

    /// Adds pairs to the dict on top of the stack (SETITEM/SETITEMS).
    fn extend_dict(&mut self, items: Vec<Value>) -> Result<(), PickleError> {
        let offset = self.op_start;
        let Value::Dict(new) = self.dict(items)? else {
            return Err(self.malformed("internal: dict expected"));
        };
        let mut copied = self.copied;
        let Value::Dict(dict) = self.top()? else {
            return Err(PickleError::Malformed { offset, reason: "SETITEM on a non-dict".into() });
        };
        if Rc::strong_count(dict) > 1 {
            copied += dict.items.len();
        }
        let dict = Rc::make_mut(dict);
        dict.depth = dict.depth.max(new.depth);
        dict.items.extend(Rc::unwrap_or_clone(new).items);
        let depth = dict.depth;
        self.note_copied(copied)?;
        if depth > MAX_DEPTH {
            return Err(PickleError::TooDeep { offset });
        }
        Ok(())
    }

    fn note_copied(&mut self, copied: usize) -> Result<(), PickleError> {
        self.copied = copied;
        if copied > MAX_COPIED {
            return Err(PickleError::TooLarge {
                what: "copy-on-write volume",
                limit: MAX_COPIED,
                offset: self.op_start,
            });
        }
        Ok(())
    }

    fn memo_put(&mut self, key: u64) -> Result<(), PickleError> {
        if self.memo.len() >= MAX_MEMO && !self.memo.contains_key(&key) {
            return Err(PickleError::TooLarge {
                what: "memo",
                limit: MAX_MEMO,
                offset: self.op_start,
            });
        }
        let v = self.top()?.clone();
        self.memo.insert(key, v);
        Ok(())
    }

    fn memo_get(&mut self, key: u64) -> Result<(), PickleError> {
        let v = self
            .memo
            .get(&key)
            .cloned()
            .ok_or_else(|| self.malformed(format!("memo key {key} is unset")))?;
        self.push(v)
    }

    fn int_arg(&self, v: &Value, what: &str) -> Result<i64, PickleError> {
        match v {
            Value::Int(i) => Ok(*i),
            Value::Bool(b) => Ok(i64::from(*b)),
            other => Err(self.malformed(format!("{what} is a {}, not an int", other.kind()))),
        }
    }

    fn int_tuple(&self, v: &Value, what: &str) -> Result<Vec<i64>, PickleError> {
        match v {
            Value::Tuple(s) | Value::List(s) => {
                s.items.iter().map(|x| self.int_arg(x, what)).collect()
            }
            other => Err(self.malformed(format!("{what} is a {}, not a tuple", other.kind()))),
        }
    }

    /// `persistent_load(('storage', storage_class, key, location, numel))`.
    fn persistent_load(&self, pid: Value) -> Result<Value, PickleError> {
        let Value::Tuple(t) = &pid else {
            return Err(self.malformed(format!("persistent id is a {}, not a tuple", pid.kind())));
        };
        match t.items.as_slice() {
            [Value::Str(tag), Value::Global(Global::StorageClass(dtype)), Value::Str(key), _location, numel]
                if tag == "storage" =>
            {
                let numel = u64::try_from(self.int_arg(numel, "storage size")?)
                    .map_err(|_| self.malformed("negative storage size"))?;
                Ok(Value::Storage(Rc::new(StorageRef {
                    key: key.clone(),
                    dtype: dtype.clone(),
                    numel,
                })))
            }
            _ => Err(self.malformed(
                "persistent id is not ('storage', <storage class>, key, location, size)",
            )),
        }
    }

    fn rebuild_tensor(&self, args: &[Value], dtype: Option<&Value>) -> Result<Value, PickleError> {
        let (storage, offset, shape, strides) = match args {
            [Value::Storage(s), offset, shape, strides, ..] => (s, offset, shape, strides),
            _ => {
                return Err(self.malformed(
                    "_rebuild_tensor arguments are not (storage, offset, size, stride, …)",
                ))
            }
        };
        let dtype = match dtype {
            Some(Value::Global(Global::DtypeGlobal(d))) => d.clone(),
            Some(other) => {
                return Err(self.malformed(format!("tensor dtype is a {}", other.kind())))
            }
            None => storage.dtype.clone(),
        };
        let offset = u64::try_from(self.int_arg(offset, "storage offset")?)
            .map_err(|_| self.malformed("negative storage offset"))?;
        let shape = self.int_tuple(shape, "tensor size")?;
        let strides = self.int_tuple(strides, "tensor stride")?;
        if shape.len() != strides.len() {
            return Err(self.malformed("tensor size and stride differ in length"));
        }
        if shape.iter().chain(&strides).any(|&x| x < 0) {
            return Err(self.malformed("negative tensor size or stride"));
        }
        Ok(Value::Tensor(Rc::new(TensorRecord {
            storage: (**storage).clone(),
            dtype,
            offset,
            shape,
            strides,
        })))
    }

    /// REDUCE: interprets a whitelisted callable applied to `args`.
    fn reduce(&self, func: Value, args: Value) -> Result<Value, PickleError> {
        let Value::Tuple(args) = args else {
            return Err(
                self.malformed(format!("REDUCE arguments are a {}, not a tuple", args.kind()))
            );
        };
        let args = args.items.as_slice();
        let Value::Global(g) = func else {
            return Err(self.malformed(format!("REDUCE on a {}, not a callable", func.kind())));
        };
        match (g, args) {
            (Global::RebuildTensorV2, _) if (6..=7).contains(&args.len()) => {
                self.rebuild_tensor(args, None)
            }
            (Global::RebuildTensorV3, _) if (7..=8).contains(&args.len()) => {
                self.rebuild_tensor(args, args.get(6))
            }
            (Global::RebuildParameter, [t @ Value::Tensor(_), _, _])
            | (Global::RebuildParameterWithState, [t @ Value::Tensor(_), _, _, _]) => Ok(t.clone()),
            (Global::OrderedDict, []) => self.dict(Vec::new()),
            (Global::BuildList, [l @ Value::List(_)]) | (Global::RestoreTypeTag, [l, _]) => {
                Ok(l.clone())
            }
            (Global::Class(class), []) => {
                Ok(Value::Object(Rc::new(Object { class, state: Value::None })))
            }
            (g, _) => {
                Err(self.malformed(format!("cannot apply {g:?} to {} arguments", args.len())))
            }
        }
    }

    fn build(&mut self, state: Value) -> Result<(), PickleError> {
        let offset = self.op_start;
        match self.top()? {
            Value::Object(obj) => {
                let obj = Rc::make_mut(obj);
                obj.state = state;
                if obj.state.depth() + 1 > MAX_DEPTH {
                    return Err(PickleError::TooDeep { offset });
                }
                Ok(())
            }
            // OrderedDict state is its `_metadata` attribute; tensors' is hooks; neither matters.
            Value::Dict(_) | Value::Tensor(_) => Ok(()),
            other => Err(PickleError::Malformed {
                offset,
                reason: format!("BUILD on a {}", other.kind()),
            }),
        }
    }

    fn run(mut self) -> Result<Value, PickleError> {
        loop {
            self.op_start = self.pos;
            let op = self.take_array::<1>()?[0];
            match op {
                0x80 => {
                    self.take(1)?; // PROTO
                }
                0x95 => {
                    self.take(8)?; // FRAME: a hint only
                }
                b'.' => {
                    // STOP
                    let v = self.pop()?;
                    return Ok(v);
                }
                b'(' => {
                    if self.marks.len() >= MAX_STACK {
                        return Err(PickleError::TooLarge {
                            what: "mark stack",
                            limit: MAX_STACK,
                            offset: self.op_start,
                        });
                    }
                    self.marks.push(self.stack.len());
                }
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let v = self.top()?.clone();
                    self.push(v)?;
                }
                b'N' => self.push(Value::None)?,
                0x88 => self.push(Value::Bool(true))?,
                0x89 => self.push(Value::Bool(false))?,
                b'J' => {
                    let v = i32::from_le_bytes(self.take_array()?);
                    self.push(Value::Int(v.into()))?;
                }
                b'K' => {
                    let v = self.take_array::<1>()?[0];
                    self.push(Value::Int(v.into()))?;
                }
                b'M' => {
                    let v = u16::from_le_bytes(self.take_array()?);
                    self.push(Value::Int(v.into()))?;
                }
                0x8a | 0x8b => {
                    // LONG1 / LONG4: little-endian two's complement
                    let n = self.take_len(if op == 0x8a { 1 } else { 4 })?;
                    if n > 8 {
                        return Err(self.malformed("integer wider than 64 bits"));
                    }
                    let bytes = self.take(n)?;
                    let mut buf = if bytes.last().is_some_and(|b| b & 0x80 != 0) {
                        [0xff; 8]
                    } else {
                        [0; 8]
                    };
                    buf[..n].copy_from_slice(bytes);
                    self.push(Value::Int(i64::from_le_bytes(buf)))?;
                }
                b'I' | b'L' => {
                    let line = self.take_line()?.trim_end_matches('L').to_string();
                    let v = match line.as_str() {
                        "00" if op == b'I' => Value::Bool(false),
                        "01" if op == b'I' => Value::Bool(true),
                        s => Value::Int(
                            s.parse().map_err(|_| self.malformed(format!("bad integer {s:?}")))?,
                        ),
                    };
                    self.push(v)?;
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.take_array()?);
                    self.push(Value::Float(v))?;
                }
                b'F' => {
                    let line = self.take_line()?.to_string();
                    let v =
                        line.parse().map_err(|_| self.malformed(format!("bad float {line:?}")))?;
                    self.push(Value::Float(v))?;
                }
                b'X' | 0x8c | 0x8d => {
                    let n = self.take_len(match op {
                        0x8c => 1,
                        b'X' => 4,
                        _ => 8,
                    })?;
                    let offset = self.op_start;
                    let s = std::str::from_utf8(self.take(n)?)
                        .map_err(|_| PickleError::Malformed {
                            offset,
                            reason: "non-UTF-8 string".into(),
                        })?
                        .to_string();
                    self.push(Value::Str(s))?;
                }
                b'T' | b'U' => {
                    // Python 2 str: read as Latin-1, as `encoding='latin1'` would.
                    let n = self.take_len(if op == b'U' { 1 } else { 4 })?;
                    let s = self.take(n)?.iter().map(|&b| char::from(b)).collect();
                    self.push(Value::Str(s))?;
                }
                b'B' | b'C' | 0x8e | 0x96 => {
                    let n = self.take_len(match op {
                        b'C' => 1,
                        b'B' => 4,
                        _ => 8,
                    })?;
                    let b = self.take(n)?.to_vec();
                    self.push(Value::Bytes(b))?;
                }
                b')' => {
                    let t = self.seq(Vec::new())?;
                    self.push(Value::Tuple(t))?;
                }
                b't' => {
                    let items = self.pop_mark()?;
                    let t = self.seq(items)?;
                    self.push(Value::Tuple(t))?;
                }
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    let t = self.seq(items)?;
                    self.push(Value::Tuple(t))?;
                }
                b']' => {
                    let l = self.seq(Vec::new())?;
                    self.push(Value::List(l))?;
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    let l = self.seq(items)?;
                    self.push(Value::List(l))?;
                }
                b'a' => {
                    let v = self.pop()?;
                    self.extend_list(vec![v])?;
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    self.extend_list(items)?;
                }
                b'}' => self.push(self.dict(Vec::new())?)?,
                b'd' => {
                    let items = self.pop_mark()?;
                    let d = self.dict(items)?;
                    self.push(d)?;
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    self.extend_dict(vec![k, v])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    self.extend_dict(items)?;
                }
                b'c' => {
                    let module = self.take_line()?.to_string();
                    let name = self.take_line()?.to_string();
                    let g = resolve_global(&module, &name)?;
                    self.push(Value::Global(g))?;
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Value::Str(module), Value::Str(name)) = (module, name) else {
                        return Err(self.malformed("STACK_GLOBAL needs two strings"));
                    };
                    let g = resolve_global(&module, &name)?;
                    self.push(Value::Global(g))?;
                }
                b'i' => {
                    // INST would instantiate a class: name it in the error if it is not ours.
                    let module = self.take_line()?.to_string();
                    let name = self.take_line()?.to_string();
                    resolve_global(&module, &name)?;
                    return Err(PickleError::UnsupportedOpcode {
                        opcode: op,
                        offset: self.op_start,
                    });
                }
                b'R' => {
                    let args = self.pop()?;
                    let func = self.pop()?;
                    let v = self.reduce(func, args)?;
                    self.push(v)?;
                }
                0x81 => {
                    // NEWOBJ: cls.__new__(cls, *args)
                    let args = self.pop()?;
                    let cls = self.pop()?;
                    let v = match (cls, args) {
                        (Value::Global(Global::Class(class)), Value::Tuple(a))
                            if a.items.is_empty() =>
                        {
                            Value::Object(Rc::new(Object { class, state: Value::None }))
                        }
                        (Value::Global(Global::OrderedDict), Value::Tuple(a))
                            if a.items.is_empty() =>
                        {
                            self.dict(Vec::new())?
                        }
                        (cls, _) => {
                            return Err(self.malformed(format!("NEWOBJ on a {}", cls.kind())))
                        }
                    };
                    self.push(v)?;
                }
                b'b' => {
                    let state = self.pop()?;
                    self.build(state)?;
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let v = self.persistent_load(pid)?;
                    self.push(v)?;
                }
                b'q' => {
                    let k = self.take_array::<1>()?[0];
                    self.memo_put(k.into())?;
                }
                b'r' => {
                    let k = u32::from_le_bytes(self.take_array()?);
                    self.memo_put(k.into())?;
                }
                b'p' => {
                    let line = self.take_line()?.to_string();
                    let k = line
                        .parse()
                        .map_err(|_| self.malformed(format!("bad memo key {line:?}")))?;
                    self.memo_put(k)?;
                }
                0x94 => {
                    let k = self.memo.len() as u64;
                    self.memo_put(k)?;
                }
                b'h' => {
                    let k = self.take_array::<1>()?[0];
                    self.memo_get(k.into())?;
                }
                b'j' => {
                    let k = u32::from_le_bytes(self.take_array()?);
                    self.memo_get(k.into())?;
                }
                b'g' => {
                    let line = self.take_line()?.to_string();
                    let k = line
                        .parse()
                        .map_err(|_| self.malformed(format!("bad memo key {line:?}")))?;
                    self.memo_get(k)?;
                }
                _ => {
                    return Err(PickleError::UnsupportedOpcode {
                        opcode: op,
                        offset: self.op_start,
                    })
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memo_nesting_is_refused() {
        // Nesting built through the memo keeps the stack small; the depth check still catches it.
        // EMPTY_LIST BINPUT 0, then repeatedly: EMPTY_LIST BINGET 0 APPEND BINPUT 0 POP
        let mut p = vec![0x80, 2, b']', b'q', 0];
        for _ in 0..5_000 {
            p.extend_from_slice(&[b']', b'h', 0, b'a', b'q', 0, b'0']);
        }
        p.push(b'.');
        assert!(matches!(unpickle(&p), Err(PickleError::TooDeep { .. })));
    }

    #[test]
    fn stack_global_is_checked() {
        // SHORT_BINUNICODE 'builtins' SHORT_BINUNICODE 'eval' STACK_GLOBAL
        let mut p = vec![0x80, 4, 0x8c, 8];
        p.extend_from_slice(b"builtins");
        p.extend_from_slice(&[0x8c, 4]);
        p.extend_from_slice(b"eval");
        p.extend_from_slice(&[0x93, b'.']);
        let err = unpickle(&p).unwrap_err();
        assert_eq!(
            err,
            PickleError::UnknownGlobal { module: "builtins".into(), name: "eval".into() }
        );
    }

    #[test]
    fn truncated_and_garbage_inputs_are_errors() {
        assert!(matches!(
            unpickle(&[0x80, 2, b'X', 0xff, 0xff, 0xff, 0x7f]),
            Err(PickleError::Truncated { .. })
        ));
        assert!(unpickle(&[0x80, 2, b'a', b'.']).is_err());
        assert!(unpickle(&[]).is_err());
        assert!(matches!(
            unpickle(&[0xff]),
            Err(PickleError::UnsupportedOpcode { opcode: 0xff, .. })
        ));
    }
}
