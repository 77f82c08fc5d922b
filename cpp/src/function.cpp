#include "function.h"

#include <sstream>

namespace byoc {

namespace {

constexpr size_t kErrorSize = 4096;

std::string ShapeText(const int64_t* dims, size_t rank) {
  std::ostringstream text;
  text << "(";
  for (size_t i = 0; i < rank; ++i) text << (i ? ", " : "") << dims[i];
  text << (rank == 1 ? ",)" : ")");
  return text.str();
}

}  // namespace

int32_t OnnxDtype(const py::dtype& dtype) {
  const char kind = dtype.kind();
  const auto size = dtype.itemsize();
  switch (kind) {
    case 'f':
      if (size == 2) return BYOC_FLOAT16;
      if (size == 4) return BYOC_FLOAT32;
      if (size == 8) return BYOC_FLOAT64;
      break;
    case 'i':
      if (size == 1) return BYOC_INT8;
      if (size == 2) return BYOC_INT16;
      if (size == 4) return BYOC_INT32;
      if (size == 8) return BYOC_INT64;
      break;
    case 'u':
      if (size == 1) return BYOC_UINT8;
      if (size == 2) return BYOC_UINT16;
      if (size == 4) return BYOC_UINT32;
      if (size == 8) return BYOC_UINT64;
      break;
    case 'b':
      return BYOC_BOOL;
    default:
      break;
  }
  throw std::invalid_argument("the byoc ABI has no element type for numpy dtype " +
                              std::string(py::str(dtype)));
}

Function::Function(std::shared_ptr<Library> library, const std::string& entry,
                   std::vector<TensorSpec> inputs, std::vector<TensorSpec> outputs)
    : library_(std::move(library)),
      entry_(entry),
      fn_(reinterpret_cast<byoc_entry_fn>(library_->Require(entry))),
      init_(reinterpret_cast<byoc_init_fn>(library_->Find(entry + "_init"))),
      release_(reinterpret_cast<byoc_release_fn>(library_->Find(entry + "_release"))),
      stats_(reinterpret_cast<byoc_stats_fn>(library_->Find(entry + "_stats"))),
      inputs_(std::move(inputs)),
      outputs_(std::move(outputs)) {}

std::string Function::Stats() const {
  if (stats_ == nullptr) throw std::logic_error(entry_ + " exports no _stats function");
  std::vector<char> text(4096);
  const int32_t status = stats_(text.data(), text.size());
  if (status != BYOC_OK) {
    throw ModuleError(status, entry_ + "_stats failed (status " + std::to_string(status) + ")");
  }
  text.back() = '\0';
  return std::string(text.data());
}

Function::~Function() {
  if (initialized_ && release_ != nullptr) release_();
}

void Function::Describe(const py::list& arrays, const std::vector<TensorSpec>& specs,
                        const char* what, std::vector<byoc_tensor>* tensors,
                        std::vector<py::array>* keep, bool writable) const {
  if (arrays.size() != specs.size()) {
    throw std::invalid_argument(entry_ + " takes " + std::to_string(specs.size()) + " " + what +
                                "s, got " + std::to_string(arrays.size()));
  }
  tensors->resize(specs.size());
  keep->reserve(specs.size());
  for (size_t i = 0; i < specs.size(); ++i) {
    const TensorSpec& spec = specs[i];
    py::handle item = arrays[i];
    if (!py::isinstance<py::array>(item)) {
      throw std::invalid_argument(entry_ + ": " + what + " " + std::to_string(i) +
                                  " is not a numpy array");
    }
    auto array = py::reinterpret_borrow<py::array>(item);
    const auto& numpy = py::detail::npy_api::get();
    if (!numpy.PyArray_EquivTypes_(array.dtype().ptr(), spec.dtype.ptr())) {
      const bool byte_order_only = array.dtype().kind() == spec.dtype.kind() &&
                                   array.dtype().itemsize() == spec.dtype.itemsize();
      if (writable || !byte_order_only) {
        throw std::invalid_argument(entry_ + ": " + what + " " + std::to_string(i) + " is " +
                                    std::string(py::str(array.dtype())) + ", expected " +
                                    std::string(py::str(spec.dtype)));
      }
      // The same type in the other byte order: modules read native order, so convert.
      array = array.attr("astype")(spec.dtype).cast<py::array>();
    }
    const size_t rank = static_cast<size_t>(array.ndim());
    bool same = rank == spec.shape.size();
    for (size_t d = 0; same && d < rank; ++d) same = array.shape(d) == spec.shape[d];
    if (!same) {
      std::vector<int64_t> got(array.shape(), array.shape() + rank);
      throw std::invalid_argument(entry_ + ": " + what + " " + std::to_string(i) + " has shape " +
                                  ShapeText(got.data(), rank) + ", expected " +
                                  ShapeText(spec.shape.data(), spec.shape.size()));
    }
    if (!(array.flags() & py::array::c_style)) {
      if (writable) {
        throw std::invalid_argument(entry_ + ": " + what + " " + std::to_string(i) +
                                    " must be C-contiguous");
      }
      // Modules see contiguous row-major data: copy the rare strided input once.
      array = py::array::ensure(array, py::array::c_style);
    }
    if (writable && !array.writeable()) {
      throw std::invalid_argument(entry_ + ": " + what + " " + std::to_string(i) +
                                  " is read-only");
    }
    keep->push_back(array);
    byoc_tensor& tensor = (*tensors)[i];
    tensor.data = const_cast<void*>(keep->back().data());
    tensor.dtype = spec.onnx_dtype;
    tensor.rank = static_cast<int32_t>(spec.shape.size());
    tensor.shape = spec.shape.data();
    tensor.strides = nullptr;
  }
}

void Function::Invoke(const std::vector<byoc_tensor>& in,
                      const std::vector<byoc_tensor>& out) const {
  char error[kErrorSize] = {0};
  int32_t status;
  {
    py::gil_scoped_release released;
    status = fn_(in.data(), static_cast<int32_t>(in.size()), out.data(),
                 static_cast<int32_t>(out.size()), error, sizeof(error));
  }
  if (status != BYOC_OK) {
    error[kErrorSize - 1] = '\0';
    throw ModuleError(status, error[0] ? error : "the module failed without a message");
  }
}

void Function::Init(const py::list& constants) {
  if (init_ == nullptr) return;
  if (initialized_) throw std::logic_error(entry_ + " is already initialized");
  std::vector<byoc_tensor> tensors;
  std::vector<py::array> keep;
  std::vector<TensorSpec> specs;
  specs.reserve(constants.size());
  for (py::handle item : constants) {
    if (!py::isinstance<py::array>(item)) {
      throw std::invalid_argument(entry_ + ": constants must be numpy arrays");
    }
    auto array = py::reinterpret_borrow<py::array>(item);
    specs.emplace_back(array.dtype(),
                       std::vector<int64_t>(array.shape(), array.shape() + array.ndim()));
  }
  Describe(constants, specs, "constant", &tensors, &keep, false);
  py::list kept;
  for (auto& array : keep) kept.append(array);
  char error[kErrorSize] = {0};
  int32_t status;
  {
    py::gil_scoped_release released;
    status = init_(tensors.data(), static_cast<int32_t>(tensors.size()), error, sizeof(error));
  }
  if (status != BYOC_OK) {
    error[kErrorSize - 1] = '\0';
    throw ModuleError(status, error[0] ? error : "the module's init failed without a message");
  }
  constants_ = kept;
  initialized_ = true;
}

void Function::RequireInit() const {
  if (init_ != nullptr && !initialized_) {
    throw std::logic_error(entry_ + " has an _init that has not run: call init() first");
  }
}

py::list Function::Call(const py::list& inputs) const {
  RequireInit();
  std::vector<byoc_tensor> in, out;
  std::vector<py::array> keep_in, keep_out;
  Describe(inputs, inputs_, "input", &in, &keep_in, false);
  py::list results;
  out.resize(outputs_.size());
  keep_out.reserve(outputs_.size());
  for (size_t i = 0; i < outputs_.size(); ++i) {
    const TensorSpec& spec = outputs_[i];
    keep_out.emplace_back(spec.dtype, spec.shape);
    byoc_tensor& tensor = out[i];
    tensor.data = keep_out.back().mutable_data();
    tensor.dtype = spec.onnx_dtype;
    tensor.rank = static_cast<int32_t>(spec.shape.size());
    tensor.shape = spec.shape.data();
    tensor.strides = nullptr;
  }
  Invoke(in, out);
  for (auto& array : keep_out) results.append(array);
  return results;
}

void Function::CallInto(const py::list& inputs, const py::list& outputs) const {
  RequireInit();
  std::vector<byoc_tensor> in, out;
  std::vector<py::array> keep_in, keep_out;
  Describe(inputs, inputs_, "input", &in, &keep_in, false);
  Describe(outputs, outputs_, "output", &out, &keep_out, true);
  Invoke(in, out);
}

}  // namespace byoc
