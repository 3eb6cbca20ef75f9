// normkit._cuda: the CUDA half, built when NORMKIT_CUDA is on: device queries, device buffers
// for libraries that cannot allocate for normkit (JAX), and `backend`, the table of the CUDA
// entry points that normkit._core runs after validating the arguments (backend.h, array.h).
// Importing this module never needs a GPU or a driver (the CUDA runtime is linked statically and
// loads the driver on first use).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "backend.h"
#include "dlpack_abi.h"
#include "normkit/cuda.h"

namespace py = pybind11;

namespace nk::bind {
namespace {

void check(const char* err, const char* what) {
  if (err) throw std::runtime_error(std::string(what) + ": CUDA error: " + err);
}

void* stream_of(uintptr_t s) { return reinterpret_cast<void*>(s); }

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

// ---- the kernel table handed to normkit._core (backend.h) -------------------------------------

const Backend& cuda_backend() {
  static const Backend b{
      "cuda",
      true,
      nk::cuda::layer_norm_fwd,
      nk::cuda::rms_norm_fwd,
      nk::cuda::layer_norm_bwd,
      nk::cuda::rms_norm_bwd,
      nk::cuda::dropout,
      nk::cuda::batch_norm_fwd,
      nk::cuda::batch_norm_bwd,
      nk::cuda::group_norm_fwd,
      nk::cuda::group_norm_bwd,
      nk::cuda::running_update,
      nk::cuda::instance_batch_stats,
      nk::cuda::lrn_fwd,
      nk::cuda::lrn_bwd,
      nk::cuda::reg_row_sum,
      nk::cuda::reg_apply,
      nk::cuda::max_norm,
      nk::cuda::convert,
      nk::cuda::copy_to_host,
      nk::cuda::scratch_alloc,
      nk::cuda::scratch_free,
  };
  return b;
}

}  // namespace
}  // namespace nk::bind

PYBIND11_MODULE(_cuda, m) {
  using namespace nk::bind;
  m.doc() = "normkit CUDA kernels (low level; use the normkit functions with GPU arrays).";
  m.def("device_count", &nk::cuda::device_count, "Usable CUDA devices (0 without a driver or GPU).");
  m.def("device_name", &nk::cuda::device_name, py::arg("dev"));
  m.attr("backend") = py::capsule(static_cast<const void*>(&cuda_backend()), kBackendCapsule);
  py::class_<DeviceBuffer>(m, "DeviceBuffer")
      .def(py::init<int, std::vector<int64_t>, int, int, std::string>(), py::arg("device"), py::arg("shape"),
           py::arg("code"), py::arg("bits"), py::arg("typestr"))
      .def_property_readonly("ptr", &DeviceBuffer::ptr)
      .def_property_readonly("shape", [](const DeviceBuffer& b) { return py::tuple(py::cast(b.shape())); })
      .def("__dlpack_device__",
           [](const DeviceBuffer& b) { return py::make_tuple(static_cast<int>(dl::kCUDA), b.device()); })
      .def("_dlpack", &DeviceBuffer::dlpack, py::arg("producer_stream"))
      .def_property_readonly("__cuda_array_interface__", &DeviceBuffer::cuda_array_interface);
}
