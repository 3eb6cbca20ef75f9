#include "array.h"

#include <pybind11/stl.h>

#include <cstring>
#include <sstream>
#include <tuple>

#include "dlpack_abi.h"

namespace nk::bind {
namespace {

constexpr int kAbsent = -2;

std::string type_name(py::handle obj) { return py::str(py::type::handle_of(obj).attr("__name__")); }

// Leaked references to modules and types looked up once (no destructors at interpreter exit).
PyObject* gpu_module() {
  static PyObject* m = py::module_::import("normkit._gpu").release().ptr();
  return m;
}

// torch.Tensor and the torch float dtypes, once PyTorch has been imported by the caller.
struct Torch {
  PyObject* tensor = nullptr;
  PyObject* dtypes[5] = {};  // float32, float64, float16, bfloat16, bool (Kind order)
};
const Torch& torch() {
  static Torch t;
  if (!t.tensor) {
    PyObject* mods = PyImport_GetModuleDict();
    PyObject* mod = PyDict_GetItemString(mods, "torch");  // borrowed; never imports torch
    if (mod && PyObject_HasAttrString(mod, "Tensor")) {
      const py::handle m(mod);
      const char* names[5] = {"float32", "float64", "float16", "bfloat16", "bool"};
      for (int i = 0; i < 5; ++i) t.dtypes[i] = py::object(m.attr(names[i])).release().ptr();
      t.tensor = py::object(m.attr("Tensor")).release().ptr();
    }
  }
  return t;
}

// Attribute names interned once (a call reads a few attributes of every tensor argument).
struct Names {
  PyObject *data_ptr, *shape, *stride, *dtype, *get_device;
};
const Names& names() {
  static const Names n{PyUnicode_InternFromString("data_ptr"), PyUnicode_InternFromString("shape"),
                       PyUnicode_InternFromString("stride"), PyUnicode_InternFromString("dtype"),
                       PyUnicode_InternFromString("get_device")};
  return n;
}
py::object get_attr(py::handle obj, PyObject* name) {
  PyObject* r = PyObject_GetAttr(obj.ptr(), name);
  if (!r) throw py::error_already_set();
  return py::reinterpret_steal<py::object>(r);
}
py::object call_method(py::handle obj, PyObject* name) {
  PyObject* r = PyObject_CallMethodNoArgs(obj.ptr(), name);
  if (!r) throw py::error_already_set();
  return py::reinterpret_steal<py::object>(r);
}
// A tuple (or tuple subclass: torch.Size) of ints as a vector.
std::vector<int64_t> int_tuple(const py::object& t) {
  if (!PyTuple_Check(t.ptr())) return py::cast<std::vector<int64_t>>(t);
  const Py_ssize_t n = PyTuple_GET_SIZE(t.ptr());
  std::vector<int64_t> v(static_cast<size_t>(n));
  for (Py_ssize_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = PyLong_AsLongLong(PyTuple_GET_ITEM(t.ptr(), i));
  if (PyErr_Occurred()) throw py::error_already_set();
  return v;
}

bool is_torch(py::handle obj) {
  const Torch& t = torch();
  return t.tensor && PyObject_IsInstance(obj.ptr(), t.tensor) == 1;
}

Kind numpy_kind(const py::dtype& dt, int64_t* itemsize) {
  *itemsize = dt.itemsize();
  if (dt.kind() == 'b') return Kind::boolean;
  DType f;
  return float_dtype_of(dt, &f) ? static_cast<Kind>(f) : Kind::other;
}

void contiguous_strides(Arr& a) {
  a.strides.assign(a.shape.size(), 0);
  int64_t acc = a.itemsize;
  for (size_t d = a.shape.size(); d-- > 0;) {
    a.strides[d] = acc;
    acc *= a.shape[d];
  }
}

Arr describe_host(py::handle obj, const char* name) {
  const py::array a = as_ndarray(obj, name);
  Arr r;
  r.obj = a;
  r.ptr = reinterpret_cast<uintptr_t>(a.data());
  r.shape.assign(a.shape(), a.shape() + a.ndim());
  r.strides.assign(a.strides(), a.strides() + a.ndim());
  r.kind = numpy_kind(a.dtype(), &r.itemsize);
  r.dtype_obj = a.dtype();  // str(dtype) runs Python code in NumPy: named only for messages
  r.writeable = a.writeable();
  return r;
}

const char* dl_kind(uint8_t code) {
  switch (code) {
    case 0: return "int";
    case 1: return "uint";
    case 2: return "float";
    case 4: return "bfloat";
    case 5: return "complex";
    case 6: return "bool";
  }
  return "code";
}

Arr describe_dlpack(py::handle obj) {
  py::object cap = obj.attr("__dlpack__")();
  const dl::Tensor* t = nullptr;
  if (PyCapsule_IsValid(cap.ptr(), "dltensor"))
    t = &static_cast<dl::ManagedTensor*>(PyCapsule_GetPointer(cap.ptr(), "dltensor"))->dl_tensor;
  else if (PyCapsule_IsValid(cap.ptr(), "dltensor_versioned"))
    t = &static_cast<dl::ManagedTensorVersioned*>(PyCapsule_GetPointer(cap.ptr(), "dltensor_versioned"))->dl_tensor;
  else
    throw py::type_error("__dlpack__() did not return a DLPack capsule");
  Arr r;
  r.obj = py::reinterpret_borrow<py::object>(obj);
  r.keep = cap;  // the capsule's destructor releases the export
  r.ptr = reinterpret_cast<uintptr_t>(t->data) + t->byte_offset;
  r.shape.assign(t->shape, t->shape + t->ndim);
  const uint8_t code = t->dtype.code, bits = t->dtype.bits;
  r.itemsize = std::max<int64_t>(1, bits / 8) * t->dtype.lanes;
  if (t->dtype.lanes == 1) {
    if (code == 2 && bits == 32) r.kind = Kind::f32;
    else if (code == 2 && bits == 64) r.kind = Kind::f64;
    else if (code == 2 && bits == 16) r.kind = Kind::f16;
    else if (code == 4 && bits == 16) r.kind = Kind::bf16;
    else if (code == 6 && bits == 8) r.kind = Kind::boolean;
  }
  r.dtype_str = r.kind == Kind::boolean ? std::string("bool") : std::string(dl_kind(code)) + std::to_string(bits);
  if (t->dtype.lanes != 1) r.dtype_str += "x" + std::to_string(t->dtype.lanes);
  if (t->strides) {
    r.strides.assign(t->strides, t->strides + t->ndim);
    for (auto& s : r.strides) s *= r.itemsize;
  } else {
    contiguous_strides(r);
  }
  return r;
}

Arr describe_cai(py::handle obj) {
  const py::dict cai = obj.attr("__cuda_array_interface__");
  Arr r;
  r.obj = py::reinterpret_borrow<py::object>(obj);
  const py::dtype dt = py::dtype(std::string(py::str(cai["typestr"])));
  r.kind = numpy_kind(dt, &r.itemsize);
  r.dtype_str = py::str(dt);
  r.ptr = py::cast<uintptr_t>(py::tuple(cai["data"])[0]);
  r.shape = py::cast<std::vector<int64_t>>(cai["shape"]);
  if (cai.contains("strides") && !cai["strides"].is_none()) r.strides = py::cast<std::vector<int64_t>>(cai["strides"]);
  else contiguous_strides(r);
  return r;
}

Arr describe_device(py::handle obj) {
  if (is_torch(obj)) {  // PyTorch: its attributes (no DLPack export, no synchronization)
    const Torch& t = torch();
    Arr r;
    r.obj = py::reinterpret_borrow<py::object>(obj);
    r.ptr = static_cast<uintptr_t>(PyLong_AsUnsignedLongLong(call_method(obj, names().data_ptr).ptr()));
    r.shape = int_tuple(get_attr(obj, names().shape));
    r.strides = int_tuple(call_method(obj, names().stride));
    const py::object dt = get_attr(obj, names().dtype);
    for (int i = 0; i < 5; ++i)
      if (dt.ptr() == t.dtypes[i]) r.kind = static_cast<Kind>(i);
    if (PyErr_Occurred()) throw py::error_already_set();
    r.itemsize = r.kind == Kind::other ? py::cast<int64_t>(obj.attr("element_size")())
                 : r.kind == Kind::f64 ? 8 : r.kind == Kind::f32 ? 4 : r.kind == Kind::boolean ? 1 : 2;
    for (auto& st : r.strides) st *= r.itemsize;
    if (r.kind != Kind::other) {
      r.dtype_str = kind_name(r.kind);
    } else {
      r.dtype_str = py::str(dt);
      if (r.dtype_str.rfind("torch.", 0) == 0) r.dtype_str = r.dtype_str.substr(6);
    }
    return r;
  }
  if (py::hasattr(obj, "__dlpack__")) return describe_dlpack(obj);
  return describe_cai(obj);
}

// Adapters remembered per (array type, device): those whose class says `per_call = False`.
struct Adapter {
  PyTypeObject* type;
  py::object type_ref;  // keeps the type alive (its address is the key)
  int dev;
  py::object obj;        // the adapter
  py::object raw_stream;  // adapter.raw_stream(dev) or adapter.stream()
  bool finishes;
  const Backend* backend;
  py::object stream() const { return raw_stream.is_none() ? obj.attr("stream")() : raw_stream(dev); }
};
std::deque<Adapter>* g_adapters = new std::deque<Adapter>();  // leaked: no destructors at exit

const Adapter* find_adapter(PyTypeObject* type, int dev) {
  for (const Adapter& a : *g_adapters)
    if (a.type == type && a.dev == dev) return &a;
  return nullptr;
}

const Adapter* remember_adapter(PyTypeObject* type, int dev, const py::object& adapter) {
  if (py::cast<bool>(adapter.attr("per_call"))) return nullptr;
  const py::capsule cap = adapter.attr("backend");
  const auto* be = static_cast<const Backend*>(PyCapsule_GetPointer(cap.ptr(), kBackendCapsule));
  if (!be) throw py::error_already_set();
  g_adapters->push_back(Adapter{type, py::reinterpret_borrow<py::object>(reinterpret_cast<PyObject*>(type)), dev, adapter, py::getattr(adapter, "raw_stream", py::none()),
                                py::cast<bool>(adapter.attr("finishes")), be});
  return &g_adapters->back();
}

// Device calls recorded for the tests (the stand-in GPU), off unless switched on.
bool g_record = false;
std::vector<std::tuple<std::string, int, uintptr_t>> g_calls;

}  // namespace

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::boolean: return "bool";
    case Kind::other: return "?";
    default: return dtype_name(static_cast<DType>(k));
  }
}

int device_of(py::handle obj) {
  if (obj.is_none() || py::isinstance<py::array>(obj)) return -1;
  if (is_torch(obj)) return static_cast<int>(PyLong_AsLong(call_method(obj, names().get_device).ptr()));  // -1: host
  if (py::hasattr(obj, "__dlpack_device__")) {
    int kind = 0, dev = 0;
    try {
      const py::tuple d = obj.attr("__dlpack_device__")();
      kind = py::cast<int>(d[0]);
      dev = py::cast<int>(d[1]);
    } catch (py::error_already_set&) {  // a producer that cannot say where it lives is not a GPU array
      return -1;
    }
    return kind == dl::kCUDA || kind == dl::kCUDAManaged ? dev : -1;
  }
  PyObject* cai = PyObject_GetAttrString(obj.ptr(), "__cuda_array_interface__");  // raises on host tensors
  if (!cai) {
    PyErr_Clear();
    return -1;
  }
  Py_DECREF(cai);
  const py::object d = py::getattr(obj, "device", py::none());
  const py::object id = py::getattr(d, "id", py::getattr(d, "index", py::none()));
  return id.is_none() ? 0 : py::cast<int>(id);
}

std::string where(py::handle obj) {
  const int dev = device_of(obj);
  if (dev >= 0) {
    std::string lib = py::str(py::type::handle_of(obj).attr("__module__"));
    lib = lib.substr(0, lib.find('.'));
    return "a " + (lib == "jaxlib" ? std::string("jax") : lib) + " array on cuda:" + std::to_string(dev);
  }
  if (py::isinstance<py::array>(obj)) return "a NumPy array on the host";
  return "a " + type_name(obj) + " on the host";
}

// ---- Arr

std::string Arr::dtype_name() const {
  if (!dtype_str.empty() || !dtype_obj) return dtype_str;
  return py::str(dtype_obj);
}

int64_t Arr::size() const { return prod(shape, 0, shape.size()); }

bool Arr::aligned() const {
  if (ptr % static_cast<uintptr_t>(itemsize)) return false;
  for (int64_t s : strides)
    if (s % itemsize) return false;
  return true;
}

bool Arr::c_contiguous() const {
  int64_t expect = itemsize;
  for (size_t d = shape.size(); d-- > 0;) {
    if (shape[d] != 1 && strides[d] != expect) return size() == 0;
    expect *= shape[d];
  }
  return true;
}

bool Arr::rows_ld(int64_t axis, int64_t* ld) const {
  if (!aligned()) return false;
  const int64_t nd = ndim();
  int64_t expect = itemsize;
  for (int64_t d = nd - 1; d >= axis; --d) {
    if (shape[d] != 1 && strides[d] != expect) return false;
    expect *= shape[d];
  }
  int64_t l = expect / itemsize, next = 0;
  bool have = false;
  for (int64_t d = axis - 1; d >= 0; --d) {
    if (shape[d] == 1) continue;
    if (!have) {
      l = strides[d] / itemsize;
      have = true;
    } else if (strides[d] != next) {
      return false;
    }
    next = strides[d] * shape[d];
  }
  *ld = l;
  return true;
}

static void byte_range(const Arr& a, intptr_t* lo, intptr_t* hi) {
  intptr_t l = static_cast<intptr_t>(a.ptr), h = l;
  for (size_t d = 0; d < a.shape.size(); ++d) {
    const intptr_t ext = static_cast<intptr_t>(a.shape[d] - 1) * a.strides[d];
    if (ext < 0) l += ext; else h += ext;
  }
  *lo = l;
  *hi = h + a.itemsize;
}

bool overlaps(const Arr& a, const Arr& b) {
  if (!a.given() || !b.given() || a.size() == 0 || b.size() == 0) return false;
  intptr_t al, ah, bl, bh;
  byte_range(a, &al, &ah);
  byte_range(b, &bl, &bh);
  return al < bh && bl < ah;
}

bool same_layout(const Arr& a, const Arr& b) {
  if (a.ptr != b.ptr || a.shape != b.shape || a.itemsize != b.itemsize) return false;
  for (size_t d = 0; d < a.shape.size(); ++d)
    if (a.shape[d] > 1 && a.strides[d] != b.strides[d]) return false;
  return true;
}

// ---- Call

Call::Call(const char* op, std::initializer_list<std::pair<const char*, py::handle>> arrays) : op_(op) {
  std::vector<int> devs;
  devs.reserve(arrays.size());
  int first = -1, i = 0;
  for (const auto& [name, h] : arrays) {
    devs.push_back(h.is_none() ? kAbsent : device_of(h));
    if (first < 0 && devs.back() >= 0) first = i;
    ++i;
  }
  if (first < 0) {  // host arrays: NumPy only
    be_ = &host_backend();
    for (const auto& [name, h] : arrays) args_.emplace_back(name, h.is_none() ? Arr{} : describe_host(h, name));
    return;
  }
  const auto* a = arrays.begin();
  const char* fname = a[first].first;
  const py::handle fobj = a[first].second;
  dev_ = devs[first];
  bool one_type = true;
  for (size_t k = 0; k < arrays.size(); ++k) {
    if (devs[k] == kAbsent) continue;
    if (devs[k] < 0)
      throw py::value_error(op_ + ": " + fname + " is " + where(fobj) + " but " + a[k].first + " is " +
                            where(a[k].second) +
                            "; pass all arrays on the same device (normkit does not copy between host and GPU)");
    if (devs[k] != dev_)
      throw py::value_error(op_ + ": " + fname + " is on cuda:" + std::to_string(dev_) + " but " + a[k].first +
                            " is on cuda:" + std::to_string(devs[k]));
    one_type = one_type && Py_TYPE(a[k].second.ptr()) == Py_TYPE(fobj.ptr());
  }
  // The library's adapter: checks one library, readies the arrays, its current stream. Adapters
  // that need nothing per call but the stream (PyTorch, CuPy) are remembered per (array type,
  // device) and asked only for the stream when every array is of that type.
  const Adapter* known = one_type ? find_adapter(Py_TYPE(fobj.ptr()), dev_) : nullptr;
  if (known) {
    adapter_ = known->obj;
    stream_ = reinterpret_cast<void*>(PyLong_AsUnsignedLongLong(known->stream().ptr()));
    if (PyErr_Occurred()) throw py::error_already_set();
  } else {
    py::list names, objs;
    for (size_t k = 0; k < arrays.size(); ++k) {
      if (devs[k] == kAbsent) continue;
      names.append(a[k].first);
      objs.append(a[k].second);
    }
    const py::tuple r = py::handle(gpu_module()).attr("adapter")(op_, names, objs, dev_);
    adapter_ = r[0];
    stream_ = reinterpret_cast<void*>(py::cast<uintptr_t>(r[1]));
    known = remember_adapter(Py_TYPE(fobj.ptr()), dev_, adapter_);
  }
  finishes_ = known ? known->finishes : py::cast<bool>(adapter_.attr("finishes"));
  if (known) {
    be_ = known->backend;
  } else {
    const py::capsule cap = adapter_.attr("backend");
    be_ = static_cast<const Backend*>(PyCapsule_GetPointer(cap.ptr(), kBackendCapsule));
    if (!be_) throw py::error_already_set();
  }
  for (const auto& [name, h] : arrays) args_.emplace_back(name, h.is_none() ? Arr{} : describe_device(h));
}

const Arr& Call::get(const char* name) const {
  for (const auto& [n, a] : args_)
    if (std::strcmp(n, name) == 0) return a;
  static const Arr absent;
  return absent;
}

Arr& Call::get(const char* name) {
  for (auto& [n, a] : args_)
    if (std::strcmp(n, name) == 0) return a;
  args_.emplace_back(name, Arr{});
  return args_.back().second;
}

DType Call::floats(const char* name) const {
  const Arr& a = get(name);
  if (!a.given()) throw py::type_error(std::string(name) + " must be a numpy.ndarray, got NoneType");
  if (!a.is_float())
    throw py::type_error(std::string(name) + " has dtype " + a.dtype_name() +
                         "; expected float32, float64, float16 or bfloat16 (native byte order)");
  return a.dt();
}

void Call::same_as(const char* name, const char* like) const {
  const Arr& a = get(name);
  const Arr& ref = get(like);
  if (!a.given()) return;
  if (a.kind != ref.kind || (a.kind == Kind::other && a.dtype_name() != ref.dtype_name()))
    throw py::type_error(std::string(name) + " has dtype " + a.dtype_name() + "; expected " + ref.dtype_name() +
                         " (the dtype of " + like + ")");
  if (a.shape != ref.shape)
    throw py::value_error(std::string(name) + " has shape " + shape_str(a.shape) + "; expected " +
                          shape_str(ref.shape) + " (the shape of " + like + ")");
}

void Call::param(const char* name, DType dt, const std::vector<int64_t>& shape) const {
  const Arr& a = get(name);
  if (!a.given()) return;
  if (!a.is_float() || (a.dt() != dt && a.dt() != DType::f32))
    throw py::type_error(std::string(name) + " has dtype " + a.dtype_name() + "; expected " +
                         (dt == DType::f32 ? std::string("float32 (the input's dtype)")
                                           : std::string(dtype_name(dt)) + " (the input's dtype) or float32"));
  if (a.shape != shape)
    throw py::value_error(std::string(name) + " has shape " + shape_str(a.shape) + "; expected " + shape_str(shape));
}

void Call::stat(const char* name, DType dt, const std::vector<int64_t>& shape, const char* what) const {
  const Arr& a = get(name);
  if (!a.given()) throw py::type_error(std::string(name) + " must be a numpy.ndarray, got NoneType");
  if (a.kind != Kind::f32 && a.kind != Kind::f64 && a.kind != Kind::f16)
    throw py::type_error(std::string(name) + " has dtype " + a.dtype_name() +
                         "; expected float32, float64 or float16 (converted to " +
                         (dt == DType::f64 ? "float64" : "float32") + ")");
  if (a.shape != shape)
    throw py::value_error(std::string(name) + " has shape " + shape_str(a.shape) + "; expected " + shape_str(shape) +
                          what);
}

void Call::in_place(const char* name) const {
  const Arr& a = get(name);
  (void)floats(name);
  if (!on_host() && !py::cast<bool>(adapter_.attr("writable")))
    throw py::type_error(std::string(name) + " is a JAX array; JAX arrays are immutable and cannot be updated in place");
  if (!a.writeable) throw py::value_error(std::string(name) + " is read-only; it is updated in place");
}

void Call::out(const char* name, const std::vector<int64_t>& shape, Kind kind) const {
  const Arr& o = get(name);
  if (!o.given()) return;
  if (!on_host() && !py::cast<bool>(adapter_.attr("writable")))
    throw py::type_error(std::string(name) + "= cannot be used with JAX arrays (they are immutable)");
  if (o.kind != kind)
    throw py::type_error(std::string(name) + " has dtype " + o.dtype_name() + "; expected " + kind_name(kind));
  if (o.shape != shape)
    throw py::value_error(std::string(name) + " has shape " + shape_str(o.shape) + "; expected " + shape_str(shape));
  if (!o.c_contiguous()) throw py::value_error(std::string(name) + " must be C-contiguous");
  if (!o.writeable) throw py::value_error(std::string(name) + " is read-only");
  if (!o.aligned()) throw py::value_error(std::string(name) + " is not aligned to its itemsize");
}

void Call::out(const char* name, const std::vector<int64_t>& shape, DType dt) const {
  out(name, shape, static_cast<Kind>(dt));
}

// NumPy dtypes of the kinds, made once (bfloat16: ml_dtypes', registered at import).
static const py::dtype& dtype_of(Kind k) {
  static py::dtype* cache[5] = {};  // leaked: no destructors after the interpreter is gone
  const int i = static_cast<int>(k);
  if (!cache[i]) cache[i] = new py::dtype(k == Kind::boolean ? py::dtype("bool") : numpy_dtype(static_cast<DType>(k)));
  return *cache[i];
}

Arr Call::make(py::object obj, uintptr_t ptr, const std::vector<int64_t>& shape, Kind kind) {
  Arr r;
  r.obj = std::move(obj);
  r.ptr = ptr;
  r.shape = shape;
  r.kind = kind;
  r.itemsize = kind == Kind::f64 ? 8 : kind == Kind::f32 ? 4 : kind == Kind::boolean ? 1 : 2;
  r.dtype_str = kind_name(kind);
  contiguous_strides(r);
  return r;
}

Arr Call::empty(const std::vector<int64_t>& shape, Kind kind) {
  if (on_host()) {
    py::array a(dtype_of(kind), std::vector<py::ssize_t>(shape.begin(), shape.end()));
    return make(a, reinterpret_cast<uintptr_t>(a.mutable_data()), shape, kind);
  }
  const py::tuple r = adapter_.attr("empty")(py::tuple(py::cast(shape)), dtype_of(kind));
  return make(r[0], py::cast<uintptr_t>(r[1]), shape, kind);
}

namespace {
struct ScratchMem {
  const Backend* be;
  int dev;
  void* ptr;
  void* stream;
};
}  // namespace

Arr Call::scratch(const std::vector<int64_t>& shape, DType dt) {
  if (on_host()) return empty(shape, dt);
  const int64_t bytes = prod(shape, 0, shape.size()) * (dt == DType::f64 ? 8 : dt == DType::f32 ? 4 : 2);
  auto* m = new ScratchMem{be_, dev_, nullptr, stream_};
  if (const char* err = be_->scratch_alloc(dev_, bytes, stream_, &m->ptr)) {
    delete m;
    raise("scratch memory", err);
  }
  // Released in stream order when the last Arr holding it goes (after the kernels are enqueued).
  py::capsule owner(m, [](void* p) {
    auto* sm = static_cast<ScratchMem*>(p);
    sm->be->scratch_free(sm->dev, sm->ptr, sm->stream);
    delete sm;
  });
  return make(owner, reinterpret_cast<uintptr_t>(m->ptr), shape, static_cast<Kind>(dt));
}

Arr& Call::output(const char* name, const char* as, const std::vector<int64_t>& shape, DType dt) {
  Arr& o = get(name);
  Arr& dst = get(as);
  if (!o.given()) dst = empty(shape, dt);
  else if (&dst != &o) dst = o;
  return dst;
}

Arr Call::copy_of(const Arr& a) {
  if (on_host()) {
    py::array c = py::module_::import("numpy").attr("ascontiguousarray")(a.obj);
    if (reinterpret_cast<uintptr_t>(c.data()) % static_cast<uintptr_t>(c.itemsize()) || c.is(a.obj))
      c = c.attr("copy")();
    Arr r = describe_host(c, "copy");
    r.dtype_str = a.dtype_str;
    r.dtype_obj = a.dtype_obj;
    return r;
  }
  const py::tuple r = adapter_.attr("copy")(a.obj);
  Arr c = make(r[0], py::cast<uintptr_t>(r[1]), a.shape, a.kind);
  c.dtype_str = a.dtype_str;
  c.dtype_obj = a.dtype_obj;
  return c;
}

Arr& Call::dense(const char* name) {
  Arr& a = get(name);
  if (a.given() && !a.dense()) a = copy_of(a);
  return a;
}

const void* Call::rows(const char* name, int64_t axis, int64_t* ld) {
  Arr& a = get(name);
  if (a.size() == 0 || !a.rows_ld(axis, ld)) {
    if (a.size() != 0) a = copy_of(a);
    *ld = prod(a.shape, static_cast<size_t>(axis), a.shape.size());
  }
  return a.data<const void>();
}

Arr Call::cast(const Arr& a, DType to) {
  if (a.kind == static_cast<Kind>(to)) return a;
  if (on_host()) {
    py::array c = py::array(a.obj).attr("astype")(numpy_dtype(to));
    return make(c, reinterpret_cast<uintptr_t>(c.data()), a.shape, static_cast<Kind>(to));
  }
  Arr src = a.dense() ? a : copy_of(a);
  Arr d = empty(a.shape, to);
  const int64_t n = a.size();
  if (n > 0)
    run("convert", [&](const Backend& be, int dev, void* s) {
      return be.convert(src.dt(), to, n, src.data<const void>(), d.data<void>(), dev, s);
    });
  return d;
}

const void* Call::in_dtype(const char* name, DType to) {
  Arr& a = get(name);
  if (!a.given()) return nullptr;
  if (a.kind == static_cast<Kind>(to)) return dense(name).data<const void>();
  if (on_host()) {
    py::array c = py::module_::import("numpy").attr("ascontiguousarray")(a.obj, numpy_dtype(to));
    a = make(c, reinterpret_cast<uintptr_t>(c.data()), a.shape, static_cast<Kind>(to));
    return a.data<const void>();
  }
  a = cast(a, to);
  return a.data<const void>();
}

void Call::protect(const char* name, const char* out, bool any_overlap) {
  Arr& a = get(name);
  const Arr& o = get(out);
  if (overlaps(a, o) && (any_overlap || !same_layout(a, o))) {
    Arr c = on_host() ? describe_host(py::array(a.obj).attr("copy")(), name) : copy_of(a);
    c.dtype_str = a.dtype_str;
    c.dtype_obj = a.dtype_obj;
    a = c;
  }
}

void Call::fill(Arr& a, double value) {
  if (on_host()) {
    a.obj.attr("fill")(value);
    return;
  }
  a.obj = adapter_.attr("fill")(a.obj, value);
}

void Call::write_back(const py::object& dst, const Arr& src) {
  if (on_host()) py::module_::import("numpy").attr("copyto")(dst, src.obj);
  else adapter_.attr("write_back")(dst, src.obj);
}

std::vector<double> Call::read_doubles(const Arr& a, int64_t n) {
  std::vector<double> out(static_cast<size_t>(n));
  run("read", [&](const Backend& be, int dev, void* s) {
    return be.copy_to_host(dev, a.data<const void>(), n * 8, out.data(), s);
  });
  return out;
}

py::object Call::result(const Arr& a) { return finishes_ ? adapter_.attr("finish")(a.obj) : a.obj; }

py::object Call::broadcast_rows(const Arr& a, int64_t n) {
  std::vector<int64_t> shape{n};
  shape.insert(shape.end(), a.shape.begin(), a.shape.end());
  if (on_host()) {
    py::object np = py::module_::import("numpy");
    return np.attr("ascontiguousarray")(np.attr("broadcast_to")(a.obj, py::tuple(py::cast(shape))));
  }
  return adapter_.attr("broadcast_rows")(result(a), n);
}

void Call::record(const char* what) const {
  if (g_record) g_calls.emplace_back(what, dev_, reinterpret_cast<uintptr_t>(stream_));
}

void Call::raise(const char* what, const char* err) const {
  throw std::runtime_error(op_ + ": " + what + ": CUDA error: " + err);
}

void bind_array(py::module_& m) {
  m.def("_host_backend", [] {
    return py::capsule(static_cast<const void*>(&host_backend()), kBackendCapsule);
  }, "Test hook: the CPU kernels' table, for a stand-in GPU whose 'device memory' is host memory.");
  m.def("_forget_adapters", [] { g_adapters->clear(); },
        "Test hook: forget the remembered adapters (after a test registered a stand-in library).");
  m.def("_record_device_calls", [](bool on) {
    g_record = on;
    g_calls.clear();
  }, py::arg("on"), "Test hook: record (kernel, device, stream) of every device-array kernel call.");
  m.def("_device_calls", [] { return g_calls; });
  m.def("_device_of", &device_of, py::arg("obj"), "CUDA device of a GPU array, -1 for anything else.");
  m.def("_where", &where, py::arg("obj"), "Where an array lives, as error messages say it.");
  m.def("_describe", [](py::handle obj) {
    const Arr a = device_of(obj) >= 0 ? describe_device(obj) : describe_host(obj, "obj");
    py::dict d;
    d["ptr"] = a.ptr;
    d["shape"] = py::tuple(py::cast(a.shape));
    d["strides"] = py::tuple(py::cast(a.strides));
    d["dtype"] = a.dtype_name();
    d["device"] = device_of(obj);
    return d;
  }, py::arg("obj"), "The array description normkit reads from a NumPy or GPU array (strides in bytes).");
}

}  // namespace nk::bind
