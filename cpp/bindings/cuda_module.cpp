// normkit._cuda: the CUDA half, built when NORMKIT_CUDA is on. Low level: device queries, DLPack
// import/export and the kernels' entry points taking raw device pointers (Python ints, 0 for
// none). normkit/_gpu.py validates arrays and calls these; importing this module never needs a
// GPU or a driver (the CUDA runtime is linked statically and loads the driver on first use).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "dlpack_abi.h"
#include "normkit/cuda.h"

namespace py = pybind11;

namespace nk::bind {
namespace {

void check(const char* err, const char* what) {
  if (err) throw std::runtime_error(std::string(what) + ": CUDA error: " + err);
}

template <class P> P* ptr(uintptr_t p) { return reinterpret_cast<P*>(p); }

// Runs an entry point without the GIL (launches only enqueue work) and raises its error.
template <class F> void run(const char* what, F&& f) {
  const char* err;
  {
    py::gil_scoped_release nogil;
    err = f();
  }
  check(err, what);
}
void* stream_of(uintptr_t s) { return reinterpret_cast<void*>(s); }

// ---- DLPack import ---------------------------------------------------------------------------

// obj.__dlpack__(stream=...) read without taking ownership: the returned dict keeps the capsule,
// whose destructor releases the producer's export when the dict is dropped.
py::dict dlpack_info(py::object obj, py::object stream) {
  py::object cap = stream.is_none() ? obj.attr("__dlpack__")() : obj.attr("__dlpack__")(py::arg("stream") = stream);
  const dl::Tensor* t = nullptr;
  if (PyCapsule_IsValid(cap.ptr(), "dltensor")) {
    t = &static_cast<dl::ManagedTensor*>(PyCapsule_GetPointer(cap.ptr(), "dltensor"))->dl_tensor;
  } else if (PyCapsule_IsValid(cap.ptr(), "dltensor_versioned")) {
    t = &static_cast<dl::ManagedTensorVersioned*>(PyCapsule_GetPointer(cap.ptr(), "dltensor_versioned"))->dl_tensor;
  } else {
    throw py::type_error("__dlpack__() did not return a DLPack capsule");
  }
  py::list shape, strides;
  for (int32_t d = 0; d < t->ndim; ++d) {
    shape.append(t->shape[d]);
    if (t->strides) strides.append(t->strides[d]);
  }
  py::dict r;
  r["ptr"] = reinterpret_cast<uintptr_t>(t->data) + t->byte_offset;
  r["shape"] = py::tuple(shape);
  r["strides"] = t->strides ? py::object(py::tuple(strides)) : py::object(py::none());
  r["dtype"] = py::make_tuple(t->dtype.code, t->dtype.bits, t->dtype.lanes);
  r["device"] = py::make_tuple(t->device.device_type, t->device.device_id);
  r["capsule"] = cap;
  return r;
}

// ---- device buffers (DLPack export) ----------------------------------------------------------

struct Memory {
  int dev;
  void* p = nullptr;
  Memory(int d, int64_t bytes) : dev(d) { check(nk::cuda::malloc_device(d, bytes, &p), "cudaMalloc"); }
  ~Memory() {
    if (p) nk::cuda::free_device(dev, p);
  }
};

// Device memory owned by normkit, handed to libraries that cannot allocate for normkit (JAX)
// through DLPack or __cuda_array_interface__. C-contiguous.
class DeviceBuffer {
 public:
  DeviceBuffer(int dev, std::vector<int64_t> shape, int code, int bits, std::string typestr)
      : shape_(std::move(shape)), dtype_{static_cast<uint8_t>(code), static_cast<uint8_t>(bits), 1},
        typestr_(std::move(typestr)) {
    int64_t n = 1;
    for (int64_t s : shape_) n *= s;
    mem_ = std::make_shared<Memory>(dev, n * (bits / 8));
  }
  uintptr_t ptr() const { return reinterpret_cast<uintptr_t>(mem_->p); }
  int device() const { return mem_->dev; }

  // The consumer may use the data on any stream: the producing stream is synchronized first.
  py::capsule dlpack(uintptr_t producer_stream) const {
    check(nk::cuda::stream_synchronize(mem_->dev, stream_of(producer_stream)), "cudaStreamSynchronize");
    struct Ctx {
      std::shared_ptr<Memory> mem;
      std::vector<int64_t> shape;
    };
    auto* ctx = new Ctx{mem_, shape_};
    auto* m = new dl::ManagedTensor{};
    m->dl_tensor.data = mem_->p;
    m->dl_tensor.device = {dl::kCUDA, mem_->dev};
    m->dl_tensor.ndim = static_cast<int32_t>(shape_.size());
    m->dl_tensor.dtype = dtype_;
    m->dl_tensor.shape = ctx->shape.data();
    m->dl_tensor.strides = nullptr;
    m->dl_tensor.byte_offset = 0;
    m->manager_ctx = ctx;
    m->deleter = [](dl::ManagedTensor* self) {
      delete static_cast<Ctx*>(self->manager_ctx);
      delete self;
    };
    // An unconsumed capsule (still named "dltensor") releases the export itself.
    PyObject* cap = PyCapsule_New(m, "dltensor", [](PyObject* c) {
      if (PyCapsule_IsValid(c, "dltensor")) {
        auto* mt = static_cast<dl::ManagedTensor*>(PyCapsule_GetPointer(c, "dltensor"));
        mt->deleter(mt);
      }
    });
    if (!cap) {
      m->deleter(m);
      throw py::error_already_set();
    }
    return py::reinterpret_steal<py::capsule>(cap);
  }

  py::dict cuda_array_interface() const {
    py::dict d;
    d["shape"] = py::tuple(py::cast(shape_));
    d["typestr"] = typestr_;
    d["data"] = py::make_tuple(ptr(), false);
    d["strides"] = py::none();
    d["version"] = 3;
    d["stream"] = py::none();  // the data is ready: dlpack()/the caller synchronized
    return d;
  }
  const std::vector<int64_t>& shape() const { return shape_; }

 private:
  std::shared_ptr<Memory> mem_;
  std::vector<int64_t> shape_;
  dl::DataType dtype_;
  std::string typestr_;
};

// ---- ops -------------------------------------------------------------------------------------

void row_norm_fwd(bool rms, int dtype, int64_t M, int64_t N, uintptr_t x, int64_t ldx, uintptr_t res, int64_t ldr,
                  uintptr_t weight, uintptr_t bias, uintptr_t y, uintptr_t h, uintptr_t mean, uintptr_t rstd,
                  double eps, int dev, uintptr_t stream, bool param_in_dtype) {
  RowNormFwdArgs a{};
  a.param_in_dtype = param_in_dtype;
  a.dtype = static_cast<DType>(dtype);
  a.M = M;
  a.N = N;
  a.x = ptr<const void>(x);
  a.ldx = ldx;
  a.res = ptr<const void>(res);
  a.ldr = ldr;
  a.weight = ptr<const void>(weight);
  a.bias = ptr<const void>(bias);
  a.y = ptr<void>(y);
  a.h = ptr<void>(h);
  a.mean = ptr<void>(mean);
  a.rstd = ptr<void>(rstd);
  a.eps = eps;
  run(rms ? "rms_norm forward" : "layer_norm forward", [&] {
    void* s = stream_of(stream);
    return rms ? nk::cuda::rms_norm_fwd(a, dev, s) : nk::cuda::layer_norm_fwd(a, dev, s);
  });
}

void row_norm_bwd(bool rms, int dtype, int64_t M, int64_t N, uintptr_t dy, int64_t lddy, uintptr_t x, int64_t ldx,
                  uintptr_t mean, uintptr_t rstd, uintptr_t weight, uintptr_t dx, uintptr_t dweight, uintptr_t dbias,
                  int dev, uintptr_t stream, bool param_in_dtype) {
  RowNormBwdArgs a{};
  a.param_in_dtype = param_in_dtype;
  a.dtype = static_cast<DType>(dtype);
  a.M = M;
  a.N = N;
  a.dy = ptr<const void>(dy);
  a.lddy = lddy;
  a.x = ptr<const void>(x);
  a.ldx = ldx;
  a.mean = ptr<const void>(mean);
  a.rstd = ptr<const void>(rstd);
  a.weight = ptr<const void>(weight);
  a.dx = ptr<void>(dx);
  a.dweight = ptr<void>(dweight);
  a.dbias = ptr<void>(dbias);
  run(rms ? "rms_norm backward" : "layer_norm backward", [&] {
    void* s = stream_of(stream);
    return rms ? nk::cuda::rms_norm_bwd(a, dev, s) : nk::cuda::layer_norm_bwd(a, dev, s);
  });
}

void dropout(int dtype, int64_t n, uintptr_t x, uintptr_t y, uintptr_t mask_in, uintptr_t mask_out, uint64_t seed,
             uint32_t threshold, double scale, int dev, uintptr_t stream) {
  DropoutArgs a{};
  a.dtype = static_cast<DType>(dtype);
  a.n = n;
  a.x = ptr<const void>(x);
  a.y = ptr<void>(y);
  a.mask_in = ptr<const uint8_t>(mask_in);
  a.mask_out = ptr<uint8_t>(mask_out);
  a.seed = seed;
  a.threshold = threshold;
  a.scale = scale;
  run("dropout", [&] { return nk::cuda::dropout(a, dev, stream_of(stream)); });
}

// Sum of |x| (l1) or x^2 (l2) of each of M rows of N values (row stride ld) into out (double[M]).
void reg_row_sum(int dtype, bool l2, int64_t M, int64_t N, int64_t ld, uintptr_t x, uintptr_t out, int dev,
                 uintptr_t stream) {
  const RegRowSumArgs a{static_cast<DType>(dtype), l2 ? RegNorm::l2 : RegNorm::l1, M, N, ld, ptr<const void>(x),
                        ptr<double>(out)};
  run(l2 ? "l2 sum" : "l1 sum", [&] { return nk::cuda::reg_row_sum(a, dev, stream_of(stream)); });
}

void reg_apply(int dtype, int op, int64_t n, uintptr_t x, uintptr_t y, double c, int dev, uintptr_t stream) {
  const RegApplyArgs a{static_cast<DType>(dtype), static_cast<RegOp>(op), n, ptr<const void>(x), ptr<void>(y), c};
  run("regularizer update", [&] { return nk::cuda::reg_apply(a, dev, stream_of(stream)); });
}

void max_norm(int dtype, int64_t A, int64_t K, int64_t B, uintptr_t w, double max_value, int dev, uintptr_t stream) {
  run("max_norm", [&] {
    return nk::cuda::max_norm(static_cast<DType>(dtype), A, K, B, ptr<void>(w), max_value, dev, stream_of(stream));
  });
}

// Channel norms: layout 0 = NCHW (ncs), 1 = channels-last (nsc); all pointers device memory.
void batch_norm_fwd(int dtype, int layout, int64_t N, int64_t C, int64_t S, uintptr_t x, uintptr_t y, uintptr_t w,
                    uintptr_t b, uintptr_t run_mean, uintptr_t run_var, bool training, double eps, uintptr_t save_mean,
                    uintptr_t save_rstd, uintptr_t batch_mean, uintptr_t batch_var, int dev, uintptr_t stream) {
  const BatchNormFwdArgs a{static_cast<DType>(dtype), static_cast<Layout>(layout), N, C, S, ptr<const void>(x),
                           ptr<void>(y), ptr<const void>(w), ptr<const void>(b), ptr<const void>(run_mean),
                           ptr<const void>(run_var), training, eps, ptr<void>(save_mean), ptr<void>(save_rstd),
                           ptr<double>(batch_mean), ptr<double>(batch_var)};
  run("batch_norm forward", [&] { return nk::cuda::batch_norm_fwd(a, dev, stream_of(stream)); });
}

void batch_norm_bwd(int dtype, int layout, int64_t N, int64_t C, int64_t S, uintptr_t x, uintptr_t dy, uintptr_t dx,
                    uintptr_t mean, uintptr_t rstd, uintptr_t w, bool training, uintptr_t dweight, uintptr_t dbias,
                    int dev, uintptr_t stream) {
  const BatchNormBwdArgs a{static_cast<DType>(dtype), static_cast<Layout>(layout), N, C, S, ptr<const void>(x),
                           ptr<const void>(dy), ptr<void>(dx), ptr<const void>(mean), ptr<const void>(rstd),
                           ptr<const void>(w), training, ptr<double>(dweight), ptr<double>(dbias)};
  run("batch_norm backward", [&] { return nk::cuda::batch_norm_bwd(a, dev, stream_of(stream)); });
}

void group_norm_fwd(int dtype, int layout, int64_t N, int64_t C, int64_t S, int64_t G, uintptr_t x, uintptr_t y,
                    uintptr_t w, uintptr_t b, double eps, uintptr_t mean, uintptr_t m2, uintptr_t rstd, int dev,
                    uintptr_t stream) {
  const GroupFwdArgs a{static_cast<DType>(dtype), N, C, S, G, ptr<const void>(x), ptr<void>(y), ptr<const void>(w),
                       ptr<const void>(b), eps, ptr<double>(mean), ptr<double>(m2), ptr<double>(rstd)};
  run("group_norm forward",
      [&] { return nk::cuda::group_norm_fwd(a, static_cast<Layout>(layout), dev, stream_of(stream)); });
}

void group_norm_bwd(int dtype, int layout, int64_t N, int64_t C, int64_t S, int64_t G, uintptr_t x, uintptr_t dy,
                    uintptr_t dx, uintptr_t mean, uintptr_t rstd, uintptr_t w, bool affine_only, uintptr_t sdy,
                    uintptr_t sdyx, uintptr_t dweight, uintptr_t dbias, int dev, uintptr_t stream) {
  const GroupBwdArgs a{static_cast<DType>(dtype), N, C, S, G, ptr<const void>(x), ptr<const void>(dy), ptr<void>(dx),
                       ptr<const void>(mean), ptr<const void>(rstd), ptr<const void>(w), affine_only, ptr<double>(sdy),
                       ptr<double>(sdyx), ptr<double>(dweight), ptr<double>(dbias)};
  run("group_norm backward",
      [&] { return nk::cuda::group_norm_bwd(a, static_cast<Layout>(layout), dev, stream_of(stream)); });
}

void running_update(int run_dtype, int64_t C, uintptr_t run, uintptr_t batch, double momentum, int dev,
                    uintptr_t stream) {
  check(nk::cuda::running_update(static_cast<DType>(run_dtype), C, ptr<void>(run), ptr<const double>(batch), momentum,
                                 dev, stream_of(stream)),
        "running statistics update");
}

void instance_batch_stats(int64_t N, int64_t C, int64_t S, uintptr_t mean, uintptr_t m2, uintptr_t bm, uintptr_t bv,
                          int dev, uintptr_t stream) {
  check(nk::cuda::instance_batch_stats(N, C, S, ptr<const double>(mean), ptr<const double>(m2), ptr<double>(bm),
                                       ptr<double>(bv), dev, stream_of(stream)),
        "instance_norm batch statistics");
}

void lrn_fwd(int dtype, int layout, int64_t N, int64_t C, int64_t S, uintptr_t x, uintptr_t y, uintptr_t scale,
             int64_t size, double alpha, double beta, double k, int dev, uintptr_t stream) {
  const LrnFwdArgs a{static_cast<DType>(dtype), static_cast<Layout>(layout), N, C, S, ptr<const void>(x), ptr<void>(y),
                     ptr<void>(scale), size, alpha, beta, k};
  run("local_response_norm forward", [&] { return nk::cuda::lrn_fwd(a, dev, stream_of(stream)); });
}

void lrn_bwd(int dtype, int layout, int64_t N, int64_t C, int64_t S, uintptr_t dy, uintptr_t x, uintptr_t y,
             uintptr_t scale, uintptr_t dx, int64_t size, double alpha, double beta, double k, int dev,
             uintptr_t stream) {
  const LrnBwdArgs a{static_cast<DType>(dtype), static_cast<Layout>(layout), N, C, S, ptr<const void>(dy),
                     ptr<const void>(x), ptr<const void>(y), ptr<const void>(scale), ptr<void>(dx), size, alpha, beta,
                     k};
  run("local_response_norm backward", [&] { return nk::cuda::lrn_bwd(a, dev, stream_of(stream)); });
}

}  // namespace
}  // namespace nk::bind

PYBIND11_MODULE(_cuda, m) {
  using namespace nk::bind;
  m.doc() = "normkit CUDA kernels (low level; use the normkit functions with GPU arrays).";
  m.def("device_count", &nk::cuda::device_count, "Usable CUDA devices (0 without a driver or GPU).");
  m.def("device_name", &nk::cuda::device_name, py::arg("dev"));
  m.def("convert", [](int src, int dst, int64_t n, uintptr_t from, uintptr_t to, int dev, uintptr_t stream) {
    check(nk::cuda::convert(static_cast<nk::DType>(src), static_cast<nk::DType>(dst), n, ptr<const void>(from),
                            ptr<void>(to), dev, stream_of(stream)),
          "dtype conversion");
  });
  m.def("read_doubles", [](int dev, uintptr_t src, int64_t n, uintptr_t stream) {
    std::vector<double> out(static_cast<size_t>(n));
    check(nk::cuda::copy_to_host(dev, ptr<const void>(src), n * 8, out.data(), stream_of(stream)), "device read");
    return out;
  }, "n doubles from device memory, after the stream's work so far (a synchronizing read).");
  m.def("dlpack_info", &dlpack_info, py::arg("obj"), py::arg("stream") = py::none(),
        "obj.__dlpack__() read as a dict: ptr, shape, strides (elements or None), dtype (code, bits, lanes), "
        "device (type, id), capsule (keeps the export alive).");
  py::class_<DeviceBuffer>(m, "DeviceBuffer")
      .def(py::init<int, std::vector<int64_t>, int, int, std::string>(), py::arg("device"), py::arg("shape"),
           py::arg("code"), py::arg("bits"), py::arg("typestr"))
      .def_property_readonly("ptr", &DeviceBuffer::ptr)
      .def_property_readonly("shape", [](const DeviceBuffer& b) { return py::tuple(py::cast(b.shape())); })
      .def("__dlpack_device__",
           [](const DeviceBuffer& b) { return py::make_tuple(static_cast<int>(dl::kCUDA), b.device()); })
      .def("_dlpack", &DeviceBuffer::dlpack, py::arg("producer_stream"))
      .def_property_readonly("__cuda_array_interface__", &DeviceBuffer::cuda_array_interface);
  m.def("row_norm_fwd", &row_norm_fwd);
  m.def("row_norm_bwd", &row_norm_bwd);
  m.def("dropout", &dropout);
  m.def("reg_row_sum", &reg_row_sum);
  m.def("reg_apply", &reg_apply);
  m.def("max_norm", &max_norm);
  m.def("batch_norm_fwd", &batch_norm_fwd);
  m.def("batch_norm_bwd", &batch_norm_bwd);
  m.def("group_norm_fwd", &group_norm_fwd);
  m.def("group_norm_bwd", &group_norm_bwd);
  m.def("running_update", &running_update);
  m.def("instance_batch_stats", &instance_batch_stats);
  m.def("lrn_fwd", &lrn_fwd);
  m.def("lrn_bwd", &lrn_bwd);
}
