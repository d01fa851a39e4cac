//! A restricted pickle reader: the subset of the pickle virtual machine that
//! `torch.save` emits for a training checkpoint, and nothing more.
//!
//! Python's unpickler calls any importable function a file names; that is
//! how a malicious `.pth` runs code. Here a `GLOBAL` is looked up in a fixed
//! table of the few names a checkpoint needs ([`Global`]) and anything else
//! (`os.system`, `builtins.eval`, …) stops the reader with an error naming
//! it. "Calling" an allowed global (`REDUCE`, `NEWOBJ`, `BUILD`) only builds
//! plain data: a dict, a namespace, or a tensor *description* that points
//! into a storage. Nothing from the file is executed.
//!
//! Objects live in an arena (`Heap::objs`) and values refer to them by
//! index, so a crafted pickle can build cycles or deep nesting without
//! recursion anywhere (no stack overflow on drop or on reading). Every read
//! is bounds-checked and every length is checked before allocating, so a
//! pickle of n bytes allocates O(n).

use std::collections::HashMap;
use std::rc::Rc;

use super::tensor::{StorageDtype, StorageRef, TensorRef};
use super::PthError;

/// The Python globals a checkpoint may name. Everything else is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Global {
    /// `collections.OrderedDict` (state dicts, backward-hook dicts).
    OrderedDict,
    /// `argparse.Namespace` (the saved `opt`).
    Namespace,
    /// `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata])`.
    RebuildTensorV2,
    /// `torch._utils._rebuild_tensor(storage, offset, size, stride)` (very old releases).
    RebuildTensor,
    /// `torch._utils._rebuild_parameter(data, requires_grad, hooks)`.
    RebuildParameter,
    /// `torch._utils._rebuild_parameter_with_state(data, requires_grad, hooks, state)`.
    RebuildParameterWithState,
    /// `torch.FloatStorage`, … : only ever a tag inside a persistent id.
    Storage(StorageDtype),
}

impl Global {
    /// Looks `module.name` up in the allow-list.
    pub fn resolve(module: &str, name: &str) -> Result<Global, PthError> {
        let g = match (module, name) {
            ("collections", "OrderedDict") => Global::OrderedDict,
            ("argparse", "Namespace") => Global::Namespace,
            ("torch._utils", "_rebuild_tensor_v2") => Global::RebuildTensorV2,
            ("torch._utils", "_rebuild_tensor") => Global::RebuildTensor,
            ("torch._utils", "_rebuild_parameter") => Global::RebuildParameter,
            ("torch._utils", "_rebuild_parameter_with_state") => Global::RebuildParameterWithState,
            ("torch", s) => match StorageDtype::from_torch_name(s) {
                Some(d) => Global::Storage(d),
                None => return Err(PthError::RefusedGlobal(format!("{module}.{name}"))),
            },
            _ => return Err(PthError::RefusedGlobal(format!("{module}.{name}"))),
        };
        Ok(g)
    }

    pub fn name(&self) -> &'static str {
        match self {
            Global::OrderedDict => "collections.OrderedDict",
            Global::Namespace => "argparse.Namespace",
            Global::RebuildTensorV2 => "torch._utils._rebuild_tensor_v2",
            Global::RebuildTensor => "torch._utils._rebuild_tensor",
            Global::RebuildParameter => "torch._utils._rebuild_parameter",
            Global::RebuildParameterWithState => "torch._utils._rebuild_parameter_with_state",
            Global::Storage(d) => d.torch_name(),
        }
    }
}

/// One value on the pickle stack. Containers are indices into [`Heap::objs`].
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// An integer that does not fit in i64, as little-endian two's complement bytes.
    BigInt(Rc<[u8]>),
    Float(f64),
    Str(Rc<str>),
    Bytes(Rc<[u8]>),
    Global(Global),
    Obj(usize),     // Heap::objs
    Storage(usize), // Heap::storages
    Tensor(usize),  // Heap::tensors
}

/// A container built by the pickle.
#[derive(Clone, Debug, PartialEq)]
pub enum Obj {
    List(Vec<Value>),
    Tuple(Vec<Value>),
    /// `dict` and `collections.OrderedDict`, in insertion order. A repeated
    /// key is appended again; lookups take the last one (Python semantics).
    Dict(Vec<(Value, Value)>),
    /// `argparse.Namespace`: its `__dict__`.
    Namespace(Vec<(Value, Value)>),
}

/// Everything one pickle built.
#[derive(Debug, Default)]
pub struct Heap {
    pub objs: Vec<Obj>,
    pub storages: Vec<StorageRef>,
    pub tensors: Vec<TensorRef>,
}

impl Heap {
    fn alloc(&mut self, o: Obj) -> Value {
        self.objs.push(o);
        Value::Obj(self.objs.len() - 1)
    }

    fn obj(&self, v: &Value) -> Option<&Obj> {
        match v {
            Value::Obj(i) => self.objs.get(*i),
            _ => None,
        }
    }

    /// Items of a list or tuple.
    pub fn seq(&self, v: &Value) -> Option<&[Value]> {
        match self.obj(v)? {
            Obj::List(x) | Obj::Tuple(x) => Some(x),
            _ => None,
        }
    }

    /// Entries of a dict / OrderedDict.
    pub fn dict(&self, v: &Value) -> Option<&[(Value, Value)]> {
        match self.obj(v)? {
            Obj::Dict(x) => Some(x),
            _ => None,
        }
    }

    /// Attributes of an `argparse.Namespace`.
    pub fn namespace(&self, v: &Value) -> Option<&[(Value, Value)]> {
        match self.obj(v)? {
            Obj::Namespace(x) => Some(x),
            _ => None,
        }
    }

    /// The value under string key `key` (the last one, as Python keeps).
    pub fn lookup<'h>(entries: &'h [(Value, Value)], key: &str) -> Option<&'h Value> {
        entries.iter().rev().find(|(k, _)| matches!(k, Value::Str(s) if &**s == key)).map(|(_, v)| v)
    }

    /// Python-ish type name, for error messages.
    pub fn kind(&self, v: &Value) -> String {
        match v {
            Value::None => "None".into(),
            Value::Bool(_) => "bool".into(),
            Value::Int(_) | Value::BigInt(_) => "int".into(),
            Value::Float(_) => "float".into(),
            Value::Str(_) => "str".into(),
            Value::Bytes(_) => "bytes".into(),
            Value::Global(g) => format!("reference to {}", g.name()),
            Value::Storage(_) => "storage".into(),
            Value::Tensor(_) => "tensor".into(),
            Value::Obj(_) => match self.obj(v) {
                Some(Obj::List(x)) => format!("list of {}", x.len()),
                Some(Obj::Tuple(x)) => format!("tuple of {}", x.len()),
                Some(Obj::Dict(x)) => format!("dict of {} entries", x.len()),
                Some(Obj::Namespace(_)) => "argparse.Namespace".into(),
                None => "dangling reference".into(),
            },
        }
    }
}

/// Reads one pickle starting at `data[start]`, up to and including its STOP.
/// `persistent`: whether persistent ids (storages) may occur.
/// Returns the unpickled value, the objects it refers to, and the offset just
/// past STOP (where a legacy checkpoint's next pickle begins).
pub fn unpickle(data: &[u8], start: usize, persistent: bool) -> Result<(Value, Heap, usize), PthError> {
    let mut vm = Vm {
        data,
        pos: start,
        op_at: start,
        stack: Vec::new(),
        metastack: Vec::new(),
        memo: HashMap::new(),
        heap: Heap::default(),
        persistent,
        copied: 0,
    };
    let v = vm.run()?;
    Ok((v, vm.heap, vm.pos))
}

struct Vm<'a> {
    data: &'a [u8],
    pos: usize,   // next byte to read
    op_at: usize, // offset of the opcode being executed (for errors)
    stack: Vec<Value>,
    metastack: Vec<Vec<Value>>, // stacks saved by MARK
    memo: HashMap<u32, Value>,
    heap: Heap,
    persistent: bool,
    copied: usize, // values copied out of existing objects (see `charge`)
}

// Opcodes (pickletools names).
const MARK: u8 = b'(';
const STOP: u8 = b'.';
const POP: u8 = b'0';
const POP_MARK: u8 = b'1';
const DUP: u8 = b'2';
const BININT: u8 = b'J';
const BININT1: u8 = b'K';
const BININT2: u8 = b'M';
const NONE: u8 = b'N';
const BINPERSID: u8 = b'Q';
const REDUCE: u8 = b'R';
const BINSTRING: u8 = b'T';
const SHORT_BINSTRING: u8 = b'U';
const BINUNICODE: u8 = b'X';
const APPEND: u8 = b'a';
const BUILD: u8 = b'b';
const GLOBAL: u8 = b'c';
const DICT: u8 = b'd';
const EMPTY_DICT: u8 = b'}';
const APPENDS: u8 = b'e';
const BINGET: u8 = b'h';
const LONG_BINGET: u8 = b'j';
const LIST: u8 = b'l';
const EMPTY_LIST: u8 = b']';
const BINPUT: u8 = b'q';
const LONG_BINPUT: u8 = b'r';
const SETITEM: u8 = b's';
const TUPLE: u8 = b't';
const EMPTY_TUPLE: u8 = b')';
const SETITEMS: u8 = b'u';
const BINFLOAT: u8 = b'G';
const BINBYTES: u8 = b'B';
const SHORT_BINBYTES: u8 = b'C';
const PROTO: u8 = 0x80;
const NEWOBJ: u8 = 0x81;
const TUPLE1: u8 = 0x85;
const TUPLE2: u8 = 0x86;
const TUPLE3: u8 = 0x87;
const NEWTRUE: u8 = 0x88;
const NEWFALSE: u8 = 0x89;
const LONG1: u8 = 0x8a;
const LONG4: u8 = 0x8b;
const SHORT_BINUNICODE: u8 = 0x8c;
const BINUNICODE8: u8 = 0x8d;
const BINBYTES8: u8 = 0x8e;
const STACK_GLOBAL: u8 = 0x93;
const MEMOIZE: u8 = 0x94;
const FRAME: u8 = 0x95;

/// Name of an opcode this reader does not implement, for the error message.
fn unsupported_name(op: u8) -> &'static str {
    match op {
        b'I' => "INT",
        b'L' => "LONG",
        b'F' => "FLOAT",
        b'S' => "STRING",
        b'V' => "UNICODE",
        b'P' => "PERSID",
        b'p' => "PUT",
        b'g' => "GET",
        b'i' => "INST (calls a class)",
        b'o' => "OBJ (calls a class)",
        0x82..=0x84 => "EXT (extension registry)",
        0x8f => "EMPTY_SET",
        0x90 => "ADDITEMS",
        0x91 => "FROZENSET",
        0x92 => "NEWOBJ_EX",
        0x96 => "BYTEARRAY8",
        0x97 => "NEXT_BUFFER",
        0x98 => "READONLY_BUFFER",
        _ => "unknown opcode",
    }
}

impl<'a> Vm<'a> {
    fn err(&self, msg: impl Into<String>) -> PthError {
        PthError::Pickle { pos: self.op_at, msg: msg.into() }
    }

    // ---- reading operands -------------------------------------------------

    fn take(&mut self, n: u64) -> Result<&'a [u8], PthError> {
        let left = (self.data.len() - self.pos) as u64;
        if n > left {
            return Err(self.err(format!("truncated: the operand needs {n} bytes but only {left} are left")));
        }
        let s = &self.data[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, PthError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, PthError> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2 bytes")))
    }

    fn u32(&mut self) -> Result<u32, PthError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    fn i32(&mut self) -> Result<i32, PthError> {
        Ok(i32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    fn u64(&mut self) -> Result<u64, PthError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }

    /// A newline-terminated ASCII line (GLOBAL operands).
    fn line(&mut self) -> Result<&'a str, PthError> {
        let rest = &self.data[self.pos..];
        let n =
            rest.iter().take(256).position(|&b| b == b'\n').ok_or_else(|| self.err("GLOBAL name is not terminated"))?;
        self.pos += n + 1;
        std::str::from_utf8(&rest[..n]).map_err(|_| self.err("GLOBAL name is not text"))
    }

    fn utf8(&self, b: &[u8]) -> Result<Value, PthError> {
        std::str::from_utf8(b).map(|s| Value::Str(s.into())).map_err(|_| self.err("string is not valid UTF-8"))
    }

    // ---- the stack ---------------------------------------------------------

    fn pop(&mut self) -> Result<Value, PthError> {
        self.stack.pop().ok_or_else(|| self.err("stack underflow (malformed pickle)"))
    }

    fn top(&self) -> Result<&Value, PthError> {
        self.stack.last().ok_or_else(|| self.err("stack underflow (malformed pickle)"))
    }

    /// Items pushed since the last MARK; restores the stack before it.
    fn pop_mark(&mut self) -> Result<Vec<Value>, PthError> {
        let saved = self.metastack.pop().ok_or_else(|| self.err("no MARK to pop to (malformed pickle)"))?;
        Ok(std::mem::replace(&mut self.stack, saved))
    }

    /// The list/dict object on top of the stack, for APPEND(S)/SETITEM(S).
    fn top_obj(&mut self) -> Result<&mut Obj, PthError> {
        let i = match self.top()? {
            Value::Obj(i) => *i,
            _ => return Err(self.err("APPEND/SETITEM target is not a list or dict")),
        };
        Ok(&mut self.heap.objs[i])
    }

    fn append(&mut self, items: Vec<Value>) -> Result<(), PthError> {
        match self.top_obj()? {
            Obj::List(l) => {
                l.extend(items);
                Ok(())
            }
            _ => Err(self.err("APPEND target is not a list")),
        }
    }

    fn set_items(&mut self, items: Vec<Value>) -> Result<(), PthError> {
        if !items.len().is_multiple_of(2) {
            return Err(self.err("SETITEMS with an odd number of items"));
        }
        let mut pairs = Vec::with_capacity(items.len() / 2);
        let mut it = items.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            pairs.push((k, v));
        }
        match self.top_obj()? {
            Obj::Dict(d) => {
                d.extend(pairs);
                Ok(())
            }
            _ => Err(self.err("SETITEM target is not a dict")),
        }
    }

    /// Counts values copied out of existing objects (call arguments, BUILD
    /// state, OrderedDict items). A memoised object can be reused by a
    /// 2-byte BINGET, so without a bound a small pickle could copy a large
    /// list again and again (quadratic memory). A checkpoint copies far less
    /// than its own length.
    fn charge(&mut self, n: usize) -> Result<(), PthError> {
        self.copied = self.copied.saturating_add(n);
        if self.copied > 2 * self.data.len() + 4096 {
            return Err(self.err("the pickle copies more objects than a checkpoint would (a memory bomb?); refused"));
        }
        Ok(())
    }

    fn memo_get(&self, i: u32) -> Result<Value, PthError> {
        self.memo.get(&i).cloned().ok_or_else(|| self.err(format!("memo entry {i} was never stored")))
    }

    fn memo_put(&mut self, i: u32) -> Result<(), PthError> {
        let v = self.top()?.clone();
        self.memo.insert(i, v);
        Ok(())
    }

    // ---- the machine -------------------------------------------------------

    fn run(&mut self) -> Result<Value, PthError> {
        loop {
            self.op_at = self.pos;
            let op = self.u8().map_err(|_| self.err("truncated: the pickle ends before its STOP opcode"))?;
            match op {
                PROTO => {
                    let p = self.u8()?;
                    if !(2..=5).contains(&p) {
                        return Err(self.err(format!("pickle protocol {p}; PyTorch checkpoints use 2 to 5")));
                    }
                }
                FRAME => {
                    self.u64()?; // frame length: a read-ahead hint only
                }
                STOP => return self.pop(),
                MARK => {
                    let s = std::mem::take(&mut self.stack);
                    self.metastack.push(s);
                }
                POP => {
                    self.pop()?;
                }
                POP_MARK => {
                    self.pop_mark()?;
                }
                DUP => {
                    let v = self.top()?.clone();
                    self.stack.push(v);
                }
                // -- scalars
                NONE => self.stack.push(Value::None),
                NEWTRUE => self.stack.push(Value::Bool(true)),
                NEWFALSE => self.stack.push(Value::Bool(false)),
                BININT => {
                    let x = self.i32()?;
                    self.stack.push(Value::Int(x as i64));
                }
                BININT1 => {
                    let x = self.u8()?;
                    self.stack.push(Value::Int(x as i64));
                }
                BININT2 => {
                    let x = self.u16()?;
                    self.stack.push(Value::Int(x as i64));
                }
                LONG1 => {
                    let n = self.u8()? as u64;
                    let b = self.take(n)?;
                    self.stack.push(decode_long(b));
                }
                LONG4 => {
                    let n = self.i32()?;
                    if n < 0 {
                        return Err(self.err("LONG4 with a negative length"));
                    }
                    let b = self.take(n as u64)?;
                    self.stack.push(decode_long(b));
                }
                BINFLOAT => {
                    let b = self.take(8)?;
                    self.stack.push(Value::Float(f64::from_be_bytes(b.try_into().expect("8 bytes"))));
                }
                SHORT_BINUNICODE | BINUNICODE | BINUNICODE8 => {
                    let n = match op {
                        SHORT_BINUNICODE => self.u8()? as u64,
                        BINUNICODE => self.u32()? as u64,
                        _ => self.u64()?,
                    };
                    let b = self.take(n)?;
                    let v = self.utf8(b)?;
                    self.stack.push(v);
                }
                SHORT_BINSTRING | BINSTRING => {
                    // Python 2 str: decoded as Latin-1 (lossless).
                    let n = if op == SHORT_BINSTRING { self.u8()? as i64 } else { self.i32()? as i64 };
                    if n < 0 {
                        return Err(self.err("BINSTRING with a negative length"));
                    }
                    let b = self.take(n as u64)?;
                    self.stack.push(Value::Str(b.iter().map(|&c| c as char).collect::<String>().into()));
                }
                SHORT_BINBYTES | BINBYTES | BINBYTES8 => {
                    let n = match op {
                        SHORT_BINBYTES => self.u8()? as u64,
                        BINBYTES => self.u32()? as u64,
                        _ => self.u64()?,
                    };
                    let b = self.take(n)?;
                    self.stack.push(Value::Bytes(b.into()));
                }
                // -- containers
                EMPTY_DICT => {
                    let v = self.heap.alloc(Obj::Dict(Vec::new()));
                    self.stack.push(v);
                }
                EMPTY_LIST => {
                    let v = self.heap.alloc(Obj::List(Vec::new()));
                    self.stack.push(v);
                }
                EMPTY_TUPLE => {
                    let v = self.heap.alloc(Obj::Tuple(Vec::new()));
                    self.stack.push(v);
                }
                TUPLE1 | TUPLE2 | TUPLE3 => {
                    let n = (op - TUPLE1 + 1) as usize;
                    if self.stack.len() < n {
                        return Err(self.err("stack underflow (malformed pickle)"));
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    let v = self.heap.alloc(Obj::Tuple(items));
                    self.stack.push(v);
                }
                TUPLE => {
                    let items = self.pop_mark()?;
                    let v = self.heap.alloc(Obj::Tuple(items));
                    self.stack.push(v);
                }
                LIST => {
                    let items = self.pop_mark()?;
                    let v = self.heap.alloc(Obj::List(items));
                    self.stack.push(v);
                }
                DICT => {
                    let items = self.pop_mark()?;
                    let v = self.heap.alloc(Obj::Dict(Vec::new()));
                    self.stack.push(v);
                    self.set_items(items)?;
                }
                APPEND => {
                    let v = self.pop()?;
                    self.append(vec![v])?;
                }
                APPENDS => {
                    let items = self.pop_mark()?;
                    self.append(items)?;
                }
                SETITEM => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    self.set_items(vec![k, v])?;
                }
                SETITEMS => {
                    let items = self.pop_mark()?;
                    self.set_items(items)?;
                }
                // -- memo
                BINPUT => {
                    let i = self.u8()? as u32;
                    self.memo_put(i)?;
                }
                LONG_BINPUT => {
                    let i = self.u32()?;
                    self.memo_put(i)?;
                }
                MEMOIZE => {
                    let i = u32::try_from(self.memo.len()).map_err(|_| self.err("memo too large"))?;
                    self.memo_put(i)?;
                }
                BINGET => {
                    let i = self.u8()? as u32;
                    let v = self.memo_get(i)?;
                    self.stack.push(v);
                }
                LONG_BINGET => {
                    let i = self.u32()?;
                    let v = self.memo_get(i)?;
                    self.stack.push(v);
                }
                // -- globals and "calls": data only, from the allow-list
                GLOBAL => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.stack.push(Value::Global(Global::resolve(module, name)?));
                }
                STACK_GLOBAL => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (&module, &name) {
                        (Value::Str(m), Value::Str(n)) => {
                            let g = Global::resolve(m, n)?;
                            self.stack.push(Value::Global(g));
                        }
                        _ => return Err(self.err("STACK_GLOBAL operands are not strings")),
                    }
                }
                REDUCE => {
                    let args = self.pop()?;
                    let f = self.pop()?;
                    let v = self.reduce(f, args)?;
                    self.stack.push(v);
                }
                NEWOBJ => {
                    let args = self.pop()?;
                    let cls = self.pop()?;
                    let v = self.newobj(cls, args)?;
                    self.stack.push(v);
                }
                BUILD => {
                    let state = self.pop()?;
                    self.build(state)?;
                }
                BINPERSID => {
                    let pid = self.pop()?;
                    let v = self.persistent_load(pid)?;
                    self.stack.push(v);
                }
                other => {
                    return Err(self.err(format!(
                        "opcode 0x{other:02x} ({}) is not used by PyTorch checkpoints and is refused",
                        unsupported_name(other)
                    )))
                }
            }
        }
    }

    fn tuple_items(&mut self, v: &Value, what: &str) -> Result<Vec<Value>, PthError> {
        let items = match self.heap.obj(v) {
            Some(Obj::Tuple(x)) => x.clone(),
            _ => return Err(self.err(format!("{what}: arguments are a {}, expected a tuple", self.heap.kind(v)))),
        };
        self.charge(items.len())?;
        Ok(items)
    }

    /// `REDUCE`: `f(*args)` for an allowed global `f`, as data.
    fn reduce(&mut self, f: Value, args: Value) -> Result<Value, PthError> {
        let g = match f {
            Value::Global(g) => g,
            other => return Err(self.err(format!("REDUCE calls a {}, not an allowed global", self.heap.kind(&other)))),
        };
        let args = self.tuple_items(&args, g.name())?;
        match g {
            Global::OrderedDict => {
                // OrderedDict() or OrderedDict([(k, v), ...])
                let mut pairs = Vec::new();
                if let Some(items) = args.first() {
                    let items = self.heap.seq(items).ok_or_else(|| self.err("OrderedDict(x): x is not a list"))?;
                    for it in items {
                        match self.heap.seq(it) {
                            Some([k, v]) => pairs.push((k.clone(), v.clone())),
                            _ => return Err(self.err("OrderedDict(x): an item of x is not a (key, value) pair")),
                        }
                    }
                }
                if args.len() > 1 {
                    return Err(self.err("OrderedDict called with more than one argument"));
                }
                self.charge(pairs.len())?;
                Ok(self.heap.alloc(Obj::Dict(pairs)))
            }
            Global::Namespace if args.is_empty() => Ok(self.heap.alloc(Obj::Namespace(Vec::new()))),
            Global::RebuildTensorV2 | Global::RebuildTensor => self.rebuild_tensor(g, &args),
            Global::RebuildParameter | Global::RebuildParameterWithState => {
                let n = if g == Global::RebuildParameter { 3 } else { 4 };
                match args.first() {
                    Some(t @ Value::Tensor(_)) if args.len() == n => Ok(t.clone()),
                    _ => Err(self.err(format!("{} expects ({n} arguments) a tensor first", g.name()))),
                }
            }
            Global::Namespace | Global::Storage(_) => {
                Err(self.err(format!("{} cannot be called this way in a checkpoint", g.name())))
            }
        }
    }

    /// `_rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])`
    /// or `_rebuild_tensor(storage, storage_offset, size, stride)`: records the view.
    fn rebuild_tensor(&mut self, g: Global, args: &[Value]) -> Result<Value, PthError> {
        let ok_len = match g {
            Global::RebuildTensor => args.len() == 4,
            _ => args.len() == 6 || args.len() == 7,
        };
        if !ok_len {
            return Err(self.err(format!("{} called with {} arguments", g.name(), args.len())));
        }
        let storage = match args[0] {
            Value::Storage(i) => i,
            ref other => {
                return Err(self.err(format!(
                    "{}: first argument is a {}, not a storage",
                    g.name(),
                    self.heap.kind(other)
                )))
            }
        };
        let offset = self.non_negative(&args[1], "storage offset")?;
        let ints = |v: &Value, what: &str| -> Result<Vec<u64>, PthError> {
            let items = self.heap.seq(v).ok_or_else(|| self.err(format!("tensor {what} is not a tuple")))?;
            items.iter().map(|x| self.non_negative(x, what)).collect()
        };
        let shape = ints(&args[2], "size")?;
        let stride = ints(&args[3], "stride")?;
        if shape.len() != stride.len() {
            return Err(self.err(format!(
                "tensor size has {} dimensions but stride has {}",
                shape.len(),
                stride.len()
            )));
        }
        self.heap.tensors.push(TensorRef { storage, offset, shape, stride });
        Ok(Value::Tensor(self.heap.tensors.len() - 1))
    }

    fn non_negative(&self, v: &Value, what: &str) -> Result<u64, PthError> {
        match v {
            Value::Int(x) if *x >= 0 => Ok(*x as u64),
            other => Err(self.err(format!("tensor {what} is {}, expected a non-negative int", self.heap.kind(other)))),
        }
    }

    /// `NEWOBJ`: `cls.__new__(cls, *args)`; only `argparse.Namespace`.
    fn newobj(&mut self, cls: Value, args: Value) -> Result<Value, PthError> {
        let args = self.tuple_items(&args, "NEWOBJ")?;
        match cls {
            Value::Global(Global::Namespace) if args.is_empty() => Ok(self.heap.alloc(Obj::Namespace(Vec::new()))),
            other => Err(self.err(format!("NEWOBJ of a {} is not supported", self.heap.kind(&other)))),
        }
    }

    /// `BUILD`: `obj.__setstate__(state)` for the object on top of the stack.
    /// A Namespace takes the state dict as its attributes; an OrderedDict
    /// state dict's `_metadata` (module versions) is ignored.
    fn build(&mut self, state: Value) -> Result<(), PthError> {
        let target = self.top()?.clone();
        let i = match target {
            Value::Obj(i) => i,
            other => return Err(self.err(format!("BUILD on a {}", self.heap.kind(&other)))),
        };
        // state is a dict, or (dict, slots) as default object reduction gives.
        let state_dict = match self.heap.obj(&state) {
            Some(Obj::Dict(d)) => d.clone(),
            Some(Obj::Tuple(t)) if t.len() == 2 => match self.heap.obj(&t[0]) {
                Some(Obj::Dict(d)) => d.clone(),
                _ if t[0] == Value::None => Vec::new(),
                _ => return Err(self.err("BUILD state is not a dict")),
            },
            _ if state == Value::None => Vec::new(),
            _ => return Err(self.err(format!("BUILD state is a {}, expected a dict", self.heap.kind(&state)))),
        };
        self.charge(state_dict.len())?;
        match &mut self.heap.objs[i] {
            Obj::Namespace(attrs) => attrs.extend(state_dict),
            Obj::Dict(_) => {} // OrderedDict._metadata
            _ => return Err(self.err("BUILD on a list or tuple")),
        }
        Ok(())
    }

    /// `BINPERSID`: `('storage', storage_type, key, location, numel[, view_metadata])`.
    fn persistent_load(&mut self, pid: Value) -> Result<Value, PthError> {
        if !self.persistent {
            return Err(self.err("a persistent id (storage reference) where none may occur"));
        }
        let items = self.tuple_items(&pid, "persistent id")?;
        let bad = |vm: &Self, why: &str| {
            vm.err(format!("persistent id is not ('storage', torch.<Type>Storage, key, location, numel): {why}"))
        };
        if !(items.len() == 5 || items.len() == 6) || !matches!(&items[0], Value::Str(s) if &**s == "storage") {
            return Err(bad(self, "wrong tag or length"));
        }
        let dtype = match items[1] {
            Value::Global(Global::Storage(d)) => d,
            _ => return Err(bad(self, "second item is not a storage type")),
        };
        let key = match &items[2] {
            Value::Str(s) => s.to_string(),
            Value::Int(i) => i.to_string(),
            _ => return Err(bad(self, "key is not a string")),
        };
        let numel = match items[4] {
            Value::Int(n) if n >= 0 => n as u64,
            _ => return Err(bad(self, "numel is not a non-negative int")),
        };
        // Legacy storage views: (view_key, offset, size) inside the root storage.
        let view = match items.get(5) {
            None | Some(Value::None) => None,
            Some(v) => match self.heap.seq(v) {
                Some([_, Value::Int(off), Value::Int(size)]) if *off >= 0 && *size >= 0 => {
                    Some((*off as u64, *size as u64))
                }
                _ => return Err(bad(self, "view metadata is not (key, offset, size)")),
            },
        };
        self.heap.storages.push(StorageRef { key, dtype, numel, view });
        Ok(Value::Storage(self.heap.storages.len() - 1))
    }
}

/// LONG1/LONG4 operand: little-endian two's complement.
fn decode_long(b: &[u8]) -> Value {
    if b.is_empty() {
        return Value::Int(0);
    }
    let neg = b[b.len() - 1] & 0x80 != 0;
    let fill = if neg { 0xff } else { 0 };
    // Fits in i64 when every byte past the 8th is sign extension of the 8th.
    let fits = b.len() <= 8 || (b[8..].iter().all(|&x| x == fill) && ((b[7] & 0x80 != 0) == neg));
    if fits {
        let mut w = [fill; 8];
        let n = b.len().min(8);
        w[..n].copy_from_slice(&b[..n]);
        Value::Int(i64::from_le_bytes(w))
    } else {
        Value::BigInt(b.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longs() {
        assert_eq!(decode_long(&[]), Value::Int(0));
        assert_eq!(decode_long(&[0xff]), Value::Int(-1));
        assert_eq!(decode_long(&[0x00, 0x01]), Value::Int(256));
        assert_eq!(decode_long(&[0xff, 0x00]), Value::Int(255));
        assert_eq!(decode_long(&[1, 0, 0, 0, 0, 0, 0, 0, 0]), Value::Int(1));
        assert!(matches!(decode_long(&[0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19]), Value::BigInt(_)));
    }

    #[test]
    fn small_dict() {
        // {'a': [1, 2.5, True], 'b': (None,)}, protocol 2
        let p = b"\x80\x02}q\x00(X\x01\x00\x00\x00a]q\x01(K\x01G@\x04\x00\x00\x00\x00\x00\x00\x88eX\x01\x00\x00\x00bN\x85u.";
        let (v, heap, end) = unpickle(p, 0, false).unwrap();
        assert_eq!(end, p.len());
        let d = heap.dict(&v).unwrap();
        let a = heap.seq(Heap::lookup(d, "a").unwrap()).unwrap();
        assert_eq!(a, &[Value::Int(1), Value::Float(2.5), Value::Bool(true)]);
        assert_eq!(heap.seq(Heap::lookup(d, "b").unwrap()).unwrap(), &[Value::None]);
    }

    #[test]
    fn refuses_globals_and_code_opcodes() {
        let e = unpickle(b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00id\x85R.", 0, false).unwrap_err();
        assert!(matches!(&e, PthError::RefusedGlobal(g) if g == "os.system"), "{e}");
        let e = unpickle(b"\x80\x04\x8c\x08builtins\x8c\x04eval\x93.", 0, false).unwrap_err();
        assert!(matches!(&e, PthError::RefusedGlobal(g) if g == "builtins.eval"), "{e}");
        let e = unpickle(b"(ios\nsystem\n.", 0, false).unwrap_err();
        assert!(e.to_string().contains("INST"), "{e}");
    }

    #[test]
    fn cycles_and_deep_nesting_are_harmless() {
        // l = []; l.append(l)
        let (v, heap, _) = unpickle(b"]q\x00h\x00a.", 0, false).unwrap();
        assert_eq!(heap.seq(&v).unwrap(), std::slice::from_ref(&v));
        // 200k nested 1-tuples
        let mut p = vec![b'N'];
        p.extend(std::iter::repeat_n(TUPLE1, 200_000));
        p.push(b'.');
        let (_, heap, _) = unpickle(&p, 0, false).unwrap();
        assert_eq!(heap.objs.len(), 200_000);
    }
}
