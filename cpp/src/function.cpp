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

py::array Function::Check(py::handle item, const TensorSpec& spec, const char* what, size_t i,
                          bool writable, bool convert) const {
  if (!py::isinstance<py::array>(item)) {
    throw std::invalid_argument(entry_ + ": " + what + " " + std::to_string(i) +
                                " is not a numpy array");
  }
  auto array = py::reinterpret_borrow<py::array>(item);
  const auto& numpy = py::detail::npy_api::get();
  if (!numpy.PyArray_EquivTypes_(array.dtype().ptr(), spec.dtype.ptr())) {
    const bool byte_order_only = array.dtype().kind() == spec.dtype.kind() &&
                                 array.dtype().itemsize() == spec.dtype.itemsize();
    if (!convert || !byte_order_only) {
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
    if (!convert) {
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
  return array;
}

byoc_tensor Function::Tensor(const py::array& array, const TensorSpec& spec) {
  byoc_tensor tensor;
  tensor.data = const_cast<void*>(array.data());
  tensor.dtype = spec.onnx_dtype;
  tensor.rank = static_cast<int32_t>(spec.shape.size());
  tensor.shape = spec.shape.data();
  tensor.strides = nullptr;
  return tensor;
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
    keep->push_back(Check(arrays[i], specs[i], what, i, writable, !writable));
    (*tensors)[i] = Tensor(keep->back(), specs[i]);
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
    keep_out.emplace_back(outputs_[i].dtype, outputs_[i].shape);
    out[i] = Tensor(keep_out.back(), outputs_[i]);
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

BoundFunction::BoundFunction(py::object function, const py::list& inputs,
                             const py::list& outputs, std::vector<std::string> input_names,
                             std::vector<std::string> output_names)
    : owner_(std::move(function)), function_(owner_.cast<const Function*>()) {
  const auto& in_specs = function_->inputs_;
  const auto& out_specs = function_->outputs_;
  if (inputs.size() != in_specs.size() || input_names.size() != in_specs.size() ||
      outputs.size() != out_specs.size() || output_names.size() != out_specs.size()) {
    throw std::invalid_argument(function_->entry_ + ": bind takes one array or None and one "
                                "name per input and per output");
  }
  in_.resize(in_specs.size());
  out_.resize(out_specs.size());
  for (size_t i = 0; i < in_specs.size(); ++i) {
    if (inputs[i].is_none()) {
      late_in_.emplace_back(i, py::str(input_names[i]));
    } else {
      // Bound as it is, never as a copy: later writes to the array must reach the module.
      fixed_.push_back(function_->Check(inputs[i], in_specs[i], "input", i, false, false));
      in_[i] = Function::Tensor(fixed_.back(), in_specs[i]);
    }
  }
  for (size_t i = 0; i < out_specs.size(); ++i) {
    if (outputs[i].is_none()) {
      late_out_.emplace_back(i, py::str(output_names[i]));
    } else {
      fixed_.push_back(function_->Check(outputs[i], out_specs[i], "output", i, true, false));
      out_[i] = Function::Tensor(fixed_.back(), out_specs[i]);
    }
  }
}

void BoundFunction::Call(const py::dict& values) {
  function_->RequireInit();
  // Copies, so that calls from two threads (which the runtime never makes, but Python
  // code may) each fill their own late slots.
  std::vector<byoc_tensor> in = in_, out = out_;
  std::vector<py::array> keep;
  keep.reserve(late_in_.size() + late_out_.size());
  for (const auto& [i, name] : late_in_) {
    PyObject* item = PyDict_GetItemWithError(values.ptr(), name.ptr());
    if (item == nullptr) {
      if (PyErr_Occurred()) throw py::error_already_set();
      throw std::invalid_argument(function_->entry_ + ": the run has no value '" +
                                  std::string(name) + "' for input " + std::to_string(i));
    }
    keep.push_back(function_->Check(item, function_->inputs_[i], "input", i, false, true));
    in[i] = Function::Tensor(keep.back(), function_->inputs_[i]);
  }
  for (const auto& [i, name] : late_out_) {
    const TensorSpec& spec = function_->outputs_[i];
    keep.emplace_back(spec.dtype, spec.shape);
    out[i] = Function::Tensor(keep.back(), spec);
  }
  function_->Invoke(in, out);
  // Only a call that went through puts its outputs in the table.
  size_t k = keep.size() - late_out_.size();
  for (const auto& [i, name] : late_out_) values[name] = keep[k++];
}

}  // namespace byoc
