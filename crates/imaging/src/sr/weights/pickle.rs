//! A pickle reader for what `torch.save` writes into a checkpoint's `data.pkl`, written
//! for untrusted files (candle's reader panics on short tuples and deep-copies memoized
//! objects, so a 1 KB pickle can ask for gigabytes):
//! - the input is one byte slice: a declared string length past its end is an error,
//!   never an allocation;
//! - every object lives in one arena and is referred to by index, so BINGET shares an
//!   object instead of copying it, nothing is nested in memory (no recursive drop), and a
//!   self-containing list is just an index cycle;
//! - the arena, the memo and the stack have caps, and each opcode adds at most one object,
//!   so memory is bounded by a small multiple of the input's length.
//!
//! Opcodes: protocol 2 as `torch.save` writes it, plus protocol 4's framing, short
//! strings, STACK_GLOBAL and MEMOIZE. Anything else is refused by name.

use std::collections::HashMap;

/// Index of an object in [`Pickle::get`]'s arena.
pub type ObjectId = usize;

/// Most objects one pickle may create.
const MAX_OBJECTS: usize = 1 << 21;
/// Most memo entries.
const MAX_MEMO: usize = 1 << 20;
/// Most values on the stack (all marks' parts together).
const MAX_STACK: usize = 1 << 20;
/// Longest module or class name of a GLOBAL.
const MAX_NAME: usize = 1024;

/// One unpickled value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    /// `module.name`, as GLOBAL or STACK_GLOBAL names it (never imported, only compared).
    Global {
        module: String,
        name: String,
    },
    Tuple(Vec<ObjectId>),
    List(Vec<ObjectId>),
    Dict(Vec<(ObjectId, ObjectId)>),
    /// `callable(*args)`, kept unevaluated.
    Reduce {
        callable: ObjectId,
        args: ObjectId,
    },
    /// `object.__setstate__(state)`, kept unevaluated.
    Build {
        object: ObjectId,
        state: ObjectId,
    },
    /// BINPERSID: in PyTorch checkpoints, the tuple naming a storage.
    PersistentId(ObjectId),
}

/// Why a pickle was refused, with the byte offset of the opcode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PickleError {
    pub offset: usize,
    pub message: String,
}

impl std::fmt::Display for PickleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "at byte {}: {}", self.offset, self.message)
    }
}

impl std::error::Error for PickleError {}

/// A parsed pickle: the objects and the one STOP left on the stack.
#[derive(Debug)]
pub struct Pickle {
    arena: Vec<Value>,
    root: ObjectId,
}

impl Pickle {
    /// Runs the pickle machine over `bytes` up to its STOP opcode.
    pub fn parse(bytes: &[u8]) -> Result<Self, PickleError> {
        Machine::new(bytes).run()
    }

    pub fn root(&self) -> ObjectId {
        self.root
    }

    /// The object behind an id from this pickle (`None` for a foreign id).
    pub fn get(&self, id: ObjectId) -> Option<&Value> {
        self.arena.get(id)
    }

    pub fn as_str(&self, id: ObjectId) -> Option<&str> {
        match self.get(id)? {
            Value::Str(text) => Some(text),
            _ => None,
        }
    }

    pub fn as_int(&self, id: ObjectId) -> Option<i64> {
        match self.get(id)? {
            Value::Int(value) => Some(*value),
            _ => None,
        }
    }

    pub fn as_tuple(&self, id: ObjectId) -> Option<&[ObjectId]> {
        match self.get(id)? {
            Value::Tuple(items) => Some(items),
            _ => None,
        }
    }

    pub fn as_dict(&self, id: ObjectId) -> Option<&[(ObjectId, ObjectId)]> {
        match self.get(id)? {
            Value::Dict(items) => Some(items),
            _ => None,
        }
    }

    /// Whether `id` is the global `module.name`.
    pub fn is_global(&self, id: ObjectId, module: &str, name: &str) -> bool {
        matches!(self.get(id), Some(Value::Global { module: m, name: n }) if m == module && n == name)
    }

    /// The value under a string key of a dict.
    pub fn dict_get(&self, dict: ObjectId, key: &str) -> Option<ObjectId> {
        self.as_dict(dict)?
            .iter()
            .find(|(k, _)| self.as_str(*k) == Some(key))
            .map(|(_, v)| *v)
    }
}

struct Machine<'a> {
    bytes: &'a [u8],
    position: usize,
    /// Where the current opcode started, for errors.
    opcode_at: usize,
    arena: Vec<Value>,
    stack: Vec<ObjectId>,
    /// Stack lengths at each MARK.
    marks: Vec<usize>,
    memo: HashMap<u32, ObjectId>,
}

impl<'a> Machine<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self {
            bytes,
            position: 0,
            opcode_at: 0,
            arena: Vec::new(),
            stack: Vec::new(),
            marks: Vec::new(),
            memo: HashMap::new(),
        }
    }

    fn error(&self, message: impl Into<String>) -> PickleError {
        PickleError {
            offset: self.opcode_at,
            message: message.into(),
        }
    }

    fn take(&mut self, count: usize) -> Result<&'a [u8], PickleError> {
        let bytes: &'a [u8] = self.bytes;
        let end = self
            .position
            .checked_add(count)
            .filter(|end| *end <= bytes.len())
            .ok_or_else(|| {
                self.error(format!(
                    "the pickle ends early ({count} more bytes declared, {} left)",
                    bytes.len() - self.position
                ))
            })?;
        let slice = &bytes[self.position..end];
        self.position = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], PickleError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, PickleError> {
        Ok(self.array::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, PickleError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn length(&mut self, declared: u64) -> Result<usize, PickleError> {
        usize::try_from(declared).map_err(|_| self.error(format!("length {declared} is too large")))
    }

    fn line(&mut self) -> Result<String, PickleError> {
        let rest = &self.bytes[self.position..];
        let end = rest
            .iter()
            .take(MAX_NAME + 1)
            .position(|&b| b == b'\n')
            .ok_or_else(|| {
                self.error(format!(
                    "GLOBAL names must be lines of at most {MAX_NAME} bytes"
                ))
            })?;
        let line = self.take(end + 1)?;
        let line = &line[..end];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        String::from_utf8(line.to_vec()).map_err(|_| self.error("a GLOBAL name is not UTF-8"))
    }

    fn string(&mut self, length: usize) -> Result<String, PickleError> {
        let bytes = self.take(length)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| self.error("a string is not valid UTF-8"))
    }

    fn new_object(&mut self, value: Value) -> Result<ObjectId, PickleError> {
        if self.arena.len() >= MAX_OBJECTS {
            return Err(self.error(format!("more than {MAX_OBJECTS} objects")));
        }
        self.arena.push(value);
        Ok(self.arena.len() - 1)
    }

    fn push_id(&mut self, id: ObjectId) -> Result<(), PickleError> {
        if self.stack.len() >= MAX_STACK {
            return Err(self.error(format!("the stack grows past {MAX_STACK} values")));
        }
        self.stack.push(id);
        Ok(())
    }

    fn push(&mut self, value: Value) -> Result<(), PickleError> {
        let id = self.new_object(value)?;
        self.push_id(id)
    }

    /// The stack length below which the current mark's values end.
    fn floor(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    fn pop(&mut self) -> Result<ObjectId, PickleError> {
        if self.stack.len() <= self.floor() {
            return Err(self.error("pop from an empty stack"));
        }
        self.stack
            .pop()
            .ok_or_else(|| self.error("pop from an empty stack"))
    }

    fn top(&self) -> Result<ObjectId, PickleError> {
        if self.stack.len() <= self.floor() {
            return Err(self.error("the stack is empty"));
        }
        self.stack
            .last()
            .copied()
            .ok_or_else(|| self.error("the stack is empty"))
    }

    fn pop_mark(&mut self) -> Result<Vec<ObjectId>, PickleError> {
        let mark = self
            .marks
            .pop()
            .ok_or_else(|| self.error("no MARK to collect values up to"))?;
        Ok(self.stack.split_off(mark.min(self.stack.len())))
    }

    fn memo_put(&mut self, key: u32) -> Result<(), PickleError> {
        let id = self.top()?;
        if self.memo.len() >= MAX_MEMO && !self.memo.contains_key(&key) {
            return Err(self.error(format!("more than {MAX_MEMO} memo entries")));
        }
        self.memo.insert(key, id);
        Ok(())
    }

    fn memo_get(&mut self, key: u32) -> Result<(), PickleError> {
        let id = *self
            .memo
            .get(&key)
            .ok_or_else(|| self.error(format!("memo entry {key} was never stored")))?;
        self.push_id(id)
    }

    fn pairs(&self, items: Vec<ObjectId>) -> Result<Vec<(ObjectId, ObjectId)>, PickleError> {
        if !items.len().is_multiple_of(2) {
            return Err(self.error("a dict needs as many keys as values"));
        }
        Ok(items
            .chunks_exact(2)
            .map(|pair| (pair[0], pair[1]))
            .collect())
    }

    fn dict_at_top(&mut self) -> Result<&mut Vec<(ObjectId, ObjectId)>, PickleError> {
        let id = self.top()?;
        let kind = describe(&self.arena[id]);
        match &mut self.arena[id] {
            Value::Dict(items) => Ok(items),
            _ => Err(PickleError {
                offset: self.opcode_at,
                message: format!("SETITEM(S) on {kind}, not a dict"),
            }),
        }
    }

    fn list_at_top(&mut self) -> Result<&mut Vec<ObjectId>, PickleError> {
        let id = self.top()?;
        let kind = describe(&self.arena[id]);
        match &mut self.arena[id] {
            Value::List(items) => Ok(items),
            _ => Err(PickleError {
                offset: self.opcode_at,
                message: format!("APPEND(S) on {kind}, not a list"),
            }),
        }
    }

    fn reduce(&mut self) -> Result<(), PickleError> {
        let args = self.pop()?;
        let callable = self.pop()?;
        // an OrderedDict is filled by SETITEMS after REDUCE, as a plain dict would be
        let ordered_dict = matches!(
            &self.arena[callable],
            Value::Global { module, name } if module == "collections" && name == "OrderedDict"
        );
        if ordered_dict {
            self.push(Value::Dict(Vec::new()))
        } else {
            self.push(Value::Reduce { callable, args })
        }
    }

    fn run(mut self) -> Result<Pickle, PickleError> {
        loop {
            self.opcode_at = self.position;
            if self.position >= self.bytes.len() {
                return Err(self.error("the pickle ends without a STOP opcode"));
            }
            let opcode = self.u8()?;
            match opcode {
                0x80 => {
                    let version = self.u8()?;
                    if version > 5 {
                        return Err(self.error(format!("pickle protocol {version} is unknown")));
                    }
                }
                // FRAME: a length hint only
                0x95 => {
                    self.take(8)?;
                }
                b'.' => {
                    let root = self.pop()?;
                    return Ok(Pickle {
                        arena: self.arena,
                        root,
                    });
                }
                b'N' => self.push(Value::None)?,
                0x88 => self.push(Value::Bool(true))?,
                0x89 => self.push(Value::Bool(false))?,
                b'K' => {
                    let value = self.u8()?;
                    self.push(Value::Int(i64::from(value)))?
                }
                b'M' => {
                    let value = u16::from_le_bytes(self.array()?);
                    self.push(Value::Int(i64::from(value)))?
                }
                b'J' => {
                    let value = i32::from_le_bytes(self.array()?);
                    self.push(Value::Int(i64::from(value)))?
                }
                0x8a | 0x8b => {
                    let length = if opcode == 0x8a {
                        usize::from(self.u8()?)
                    } else {
                        let declared = self.u32()?;
                        self.length(u64::from(declared))?
                    };
                    let value = self.long(length)?;
                    self.push(Value::Int(value))?
                }
                b'G' => {
                    let value = f64::from_be_bytes(self.array()?);
                    self.push(Value::Float(value))?
                }
                b'X' => {
                    let declared = self.u32()?;
                    let length = self.length(u64::from(declared))?;
                    let text = self.string(length)?;
                    self.push(Value::Str(text))?
                }
                0x8c => {
                    let length = usize::from(self.u8()?);
                    let text = self.string(length)?;
                    self.push(Value::Str(text))?
                }
                0x8d => {
                    let declared = u64::from_le_bytes(self.array()?);
                    let length = self.length(declared)?;
                    let text = self.string(length)?;
                    self.push(Value::Str(text))?
                }
                b'C' | b'B' | 0x8e => {
                    let length = match opcode {
                        b'C' => usize::from(self.u8()?),
                        b'B' => {
                            let declared = self.u32()?;
                            self.length(u64::from(declared))?
                        }
                        _ => {
                            let declared = u64::from_le_bytes(self.array()?);
                            self.length(declared)?
                        }
                    };
                    let bytes = self.take(length)?.to_vec();
                    self.push(Value::Bytes(bytes))?
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.push(Value::Global { module, name })?
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Value::Str(module), Value::Str(name)) =
                        (&self.arena[module], &self.arena[name])
                    else {
                        return Err(self.error("STACK_GLOBAL needs two strings"));
                    };
                    let (module, name) = (module.clone(), name.clone());
                    self.push(Value::Global { module, name })?
                }
                b')' => self.push(Value::Tuple(Vec::new()))?,
                b']' => self.push(Value::List(Vec::new()))?,
                b'}' => self.push(Value::Dict(Vec::new()))?,
                b'(' => {
                    if self.marks.len() >= MAX_STACK {
                        return Err(self.error(format!("more than {MAX_STACK} marks")));
                    }
                    self.marks.push(self.stack.len())
                }
                b't' => {
                    let items = self.pop_mark()?;
                    self.push(Value::Tuple(items))?
                }
                0x85..=0x87 => {
                    let count = usize::from(opcode - 0x84);
                    let mut items = Vec::with_capacity(count);
                    for _ in 0..count {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    self.push(Value::Tuple(items))?
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    self.push(Value::List(items))?
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    let pairs = self.pairs(items)?;
                    self.push(Value::Dict(pairs))?
                }
                b'a' => {
                    let value = self.pop()?;
                    self.list_at_top()?.push(value)
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    self.list_at_top()?.extend(items)
                }
                b's' => {
                    let value = self.pop()?;
                    let key = self.pop()?;
                    self.dict_at_top()?.push((key, value))
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let pairs = self.pairs(items)?;
                    self.dict_at_top()?.extend(pairs)
                }
                b'Q' => {
                    let id = self.pop()?;
                    self.push(Value::PersistentId(id))?
                }
                b'R' | 0x81 => self.reduce()?,
                b'b' => {
                    let state = self.pop()?;
                    let object = self.pop()?;
                    // a dict's state (an OrderedDict's attributes such as `_metadata`) is
                    // not part of its items
                    if matches!(self.arena[object], Value::Dict(_)) {
                        self.push_id(object)?
                    } else {
                        self.push(Value::Build { object, state })?
                    }
                }
                b'q' => {
                    let key = self.u8()?;
                    self.memo_put(u32::from(key))?
                }
                b'r' => {
                    let key = self.u32()?;
                    self.memo_put(key)?
                }
                0x94 => {
                    let key = u32::try_from(self.memo.len())
                        .map_err(|_| self.error("the memo is full"))?;
                    self.memo_put(key)?
                }
                b'h' => {
                    let key = self.u8()?;
                    self.memo_get(u32::from(key))?
                }
                b'j' => {
                    let key = self.u32()?;
                    self.memo_get(key)?
                }
                b'0' => {
                    if self.stack.len() == self.floor() && !self.marks.is_empty() {
                        self.marks.pop();
                    } else {
                        self.pop()?;
                    }
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let top = self.top()?;
                    self.push_id(top)?
                }
                other => {
                    return Err(self.error(format!(
                        "opcode 0x{other:02x} is not one PyTorch checkpoints use"
                    )))
                }
            }
        }
    }

    /// LONG1/LONG4: a little-endian two's-complement integer of `length` bytes.
    fn long(&mut self, length: usize) -> Result<i64, PickleError> {
        let bytes = self.take(length)?;
        if length > 8 {
            return Err(self.error(format!("a {length}-byte integer does not fit 64 bits")));
        }
        let mut buffer = [0u8; 8];
        buffer[..length].copy_from_slice(bytes);
        if bytes.last().is_some_and(|last| last & 0x80 != 0) {
            buffer[length..].fill(0xff);
        }
        Ok(i64::from_le_bytes(buffer))
    }
}

fn describe(value: &Value) -> &'static str {
    match value {
        Value::None => "None",
        Value::Bool(_) => "a bool",
        Value::Int(_) => "an int",
        Value::Float(_) => "a float",
        Value::Str(_) => "a string",
        Value::Bytes(_) => "bytes",
        Value::Global { .. } => "a global",
        Value::Tuple(_) => "a tuple",
        Value::List(_) => "a list",
        Value::Dict(_) => "a dict",
        Value::Reduce { .. } => "a reduce",
        Value::Build { .. } => "a build",
        Value::PersistentId(_) => "a persistent id",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> Result<Pickle, PickleError> {
        Pickle::parse(bytes)
    }

    #[test]
    fn reads_a_dict_with_shared_memo_entries() {
        // {'a': (1, 'x'), 'b': <same tuple>}
        let bytes = b"\x80\x02}q\x00(X\x01\x00\x00\x00aK\x01X\x01\x00\x00\x00x\x86q\x01X\x01\x00\x00\x00bh\x01u.";
        let pickle = parse(bytes).map_err(|e| e.to_string());
        let Ok(pickle) = pickle else {
            panic!("{pickle:?}");
        };
        let a = pickle.dict_get(pickle.root(), "a");
        let b = pickle.dict_get(pickle.root(), "b");
        assert!(a.is_some() && a == b);
        let items = a.and_then(|a| pickle.as_tuple(a)).unwrap_or_default();
        assert_eq!(items.len(), 2);
        assert_eq!(pickle.as_int(items[0]), Some(1));
        assert_eq!(pickle.as_str(items[1]), Some("x"));
    }

    #[test]
    fn malformed_pickles_are_errors_not_panics() {
        let cases: [&[u8]; 12] = [
            b"",
            b"\x80\x02",
            b"t.",
            b"\x85.",
            b"X\xff\xff\xff\xff",
            b"h\x05.",
            b"(u.",
            b"](K\x01K\x02u.",
            b"c no newline",
            b"\x8a\x09\x01\x02\x03\x04\x05\x06\x07\x08\x09.",
            b"\xff.",
            b"(0\x85.",
        ];
        for case in cases {
            assert!(parse(case).is_err(), "{case:?} was accepted");
        }
    }

    #[test]
    fn memo_reuse_does_not_copy() {
        // a list appended to itself, then fetched from the memo 10 000 times: with copies
        // this would be exponential, here it is 10 000 stack entries.
        let mut bytes = b"\x80\x02]q\x00h\x00a".to_vec();
        bytes.push(b'(');
        for _ in 0..10_000 {
            bytes.extend_from_slice(b"h\x00");
        }
        bytes.extend_from_slice(b"t.");
        let pickle = parse(&bytes);
        assert!(
            matches!(&pickle, Ok(p) if p.as_tuple(p.root()).map(<[_]>::len) == Some(10_000)),
            "{pickle:?}"
        );
    }

    #[test]
    fn longs_are_sign_extended() {
        let pickle = parse(b"\x8a\x02\xff\xff.");
        assert!(
            matches!(&pickle, Ok(p) if p.as_int(p.root()) == Some(-1)),
            "{pickle:?}"
        );
        let pickle = parse(b"\x8a\x05\x00\x00\x00\x00\x01.");
        assert!(
            matches!(&pickle, Ok(p) if p.as_int(p.root()) == Some(1 << 32)),
            "{pickle:?}"
        );
    }
}
