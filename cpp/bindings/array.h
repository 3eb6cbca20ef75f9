// One description for every array argument, host or device, and one call context: the argument
// rules of every op are written once against these and hold alike for NumPy arrays and for GPU
// arrays (CuPy, PyTorch, JAX); then the kernels of the arrays' device run (backend.h).
//
// What stays library-specific is small and lives in normkit/_gpu.py: recognising the caller's
// library, its current stream, and allocating results in it (an "adapter" object).
#pragma once
#include <pybind11/pybind11.h>

#include <cstdint>
#include <deque>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "backend.h"
#include "checks.h"

namespace nk::bind {

// Element kinds; the four float ones share DType's numbering.
enum class Kind : uint8_t { f32 = 0, f64 = 1, f16 = 2, bf16 = 3, boolean = 4, other = 5 };

// Pointer, shape, strides, dtype and device of an array argument (absent: obj is None).
struct Arr {
  py::object obj = py::none();  // the caller's array, or an array this call made
  py::object keep;              // keeps a DLPack export alive
  uintptr_t ptr = 0;
  std::vector<int64_t> shape, strides;  // strides in bytes
  Kind kind = Kind::other;
  int64_t itemsize = 1;
  std::string dtype_str;  // as the caller's library names it, for messages (empty: see dtype_obj)
  py::object dtype_obj;   // a NumPy array's dtype, named only when a message needs it
  bool writeable = true;

  bool given() const { return !obj.is_none(); }
  std::string dtype_name() const;
  bool is_float() const { return kind <= Kind::bf16; }
  DType dt() const { return static_cast<DType>(kind); }
  int64_t ndim() const { return static_cast<int64_t>(shape.size()); }
  int64_t size() const;
  bool aligned() const;
  bool c_contiguous() const;
  bool dense() const { return c_contiguous() && aligned(); }
  // Row stride (elements) when the array is rows of the contiguous block shape[axis:] with one row
  // stride, and aligned; false otherwise.
  bool rows_ld(int64_t axis, int64_t* ld) const;
  template <class T = void> T* data() const { return reinterpret_cast<T*>(ptr); }
};

bool overlaps(const Arr& a, const Arr& b);
// The same elements at the same addresses (exactly in place).
bool same_layout(const Arr& a, const Arr& b);

class Call {
 public:
  // Describes the array arguments (None for absent ones): all on the host (NumPy arrays), or all
  // on one GPU and of one library (ValueError / TypeError otherwise).
  Call(const char* op, std::initializer_list<std::pair<const char*, py::handle>> arrays);

  bool on_host() const { return dev_ < 0; }
  const std::string& op() const { return op_; }
  bool has(const char* name) const { return get(name).given(); }
  Arr& operator[](const char* name) { return get(name); }
  const Arr& get(const char* name) const;
  Arr& get(const char* name);

  // ---- argument rules (TypeError / ValueError with the argument's name)
  // The argument's float dtype.
  DType floats(const char* name) const;
  // `name` (when given) has the dtype and shape of `like`.
  void same_as(const char* name, const char* like) const;
  // Optional weight/bias: dtype dt or float32, shape `shape`.
  void param(const char* name, DType dt, const std::vector<int64_t>& shape) const;
  // Saved statistic: float32, float64 or float16, shape `shape` (`what` explains the shape).
  void stat(const char* name, DType dt, const std::vector<int64_t>& shape,
            const char* what = " (the input's shape before axis)") const;
  // Updated in place: a float array the caller's library lets normkit write.
  void in_place(const char* name) const;
  // out= (when given): exact shape and dtype, C-contiguous, aligned, writeable.
  void out(const char* name, const std::vector<int64_t>& shape, DType dt) const;
  void out(const char* name, const std::vector<int64_t>& shape, Kind kind) const;
  void out_bool(const char* name, const std::vector<int64_t>& shape) const { out(name, shape, Kind::boolean); }

  // ---- memory of the arrays' device
  Arr empty(const std::vector<int64_t>& shape, Kind kind);
  Arr empty(const std::vector<int64_t>& shape, DType dt) { return empty(shape, static_cast<Kind>(dt)); }
  // A temporary of the call, never handed to the caller: on a GPU, stream-ordered scratch from
  // normkit's pool (no allocation through the caller's library); on the host, a NumPy array.
  Arr scratch(const std::vector<int64_t>& shape, DType dt);
  // The output `name` (out= when given, else a new C-contiguous array), stored under `as`.
  Arr& output(const char* name, const char* as, const std::vector<int64_t>& shape, DType dt);
  // Replaces the argument by a C-contiguous aligned copy when it is not one; returns it.
  Arr& dense(const char* name);
  // Pointer and row stride of the argument as rows of shape[axis:] (copied once when needed).
  const void* rows(const char* name, int64_t axis, int64_t* ld);
  // Pointer to the argument's values as a C-contiguous array of dtype `to` (a converted copy when
  // needed).
  const void* in_dtype(const char* name, DType to);
  // Re-reads `name` from a copy when it overlaps `out` other than exactly in place (any overlap
  // when `any_overlap`).
  void protect(const char* name, const char* out, bool any_overlap = false);
  // A new array with a's values in dtype `to` (a itself when it has it).
  Arr cast(const Arr& a, DType to);
  void fill(Arr& a, double value);
  // dst[...] = src for an in-place op whose target was copied.
  void write_back(const py::object& dst, const Arr& src);
  std::vector<double> read_doubles(const Arr& a, int64_t n);
  // The object handed back to the caller.
  py::object result(const Arr& a);
  // (n, *a.shape) repeating a, handed back to the caller.
  py::object broadcast_rows(const Arr& a, int64_t n);

  // Runs f(backend, device, stream) without the GIL; raises RuntimeError with its error text.
  template <class F> void run(const char* what, F&& f) {
    const char* err;
    {
      py::gil_scoped_release nogil;
      err = f(*be_, dev_, stream_);
    }
    if (!on_host()) record(what);
    if (err) raise(what, err);
  }
  const Backend& backend() const { return *be_; }

 private:
  Arr make(py::object obj, uintptr_t ptr, const std::vector<int64_t>& shape, Kind kind);
  Arr copy_of(const Arr& a);
  void record(const char* what) const;
  [[noreturn]] void raise(const char* what, const char* err) const;

  std::string op_;
  std::deque<std::pair<const char*, Arr>> args_;  // stable references
  int dev_ = -1;
  py::object adapter_;
  bool finishes_ = false;  // the adapter converts results before they are handed back (JAX)
  void* stream_ = nullptr;
  const Backend* be_;
};

// Where an argument lives, for messages ("a NumPy array on the host", "a torch array on cuda:0").
std::string where(py::handle obj);
// CUDA device of a GPU array, -1 for anything else.
int device_of(py::handle obj);
// Name of a dtype kind.
const char* kind_name(Kind k);

void bind_array(py::module_& m);

}  // namespace nk::bind
