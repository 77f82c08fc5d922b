// Calling one region's entry function with numpy arrays, without copies.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "byoc/abi.h"
#include "library.h"

namespace byoc {

namespace py = pybind11;

// A module call that failed: the status it returned and the message it wrote.
class ModuleError : public std::runtime_error {
 public:
  ModuleError(int status, const std::string& message)
      : std::runtime_error(message), status_(status) {}
  int status() const { return status_; }

 private:
  int status_;
};

// The ONNX element type (enum byoc_dtype) of a numpy dtype; throws for types the ABI
// has no number for.
int32_t OnnxDtype(const py::dtype& dtype);

// What a region declares for one of its inputs, outputs or constants.
struct TensorSpec {
  TensorSpec(py::dtype dtype_, std::vector<int64_t> shape_)
      : onnx_dtype(OnnxDtype(dtype_)), dtype(std::move(dtype_)), shape(std::move(shape_)) {}
  int32_t onnx_dtype;
  py::dtype dtype;
  std::vector<int64_t> shape;
};

// One region's entry function, with the specs of its tensors.
//
// Calls check every array against its spec before the module sees it (a wrong dtype
// or shape gets a clear error, not a corrupted buffer), release the GIL while the
// module runs, and allocate outputs as fresh C-contiguous numpy arrays.
class Function {
 public:
  Function(std::shared_ptr<Library> library, const std::string& entry,
           std::vector<TensorSpec> inputs, std::vector<TensorSpec> outputs);

  // Runs <entry>_init with `constants` (kept alive by this object) if the module
  // exports it. Called once, before the first call.
  void Init(const py::list& constants);
  py::list Call(const py::list& inputs) const;
  // Like Call, but writes into caller-provided output arrays.
  void CallInto(const py::list& inputs, const py::list& outputs) const;

  const std::string& entry() const { return entry_; }
  bool has_init() const { return init_ != nullptr; }
  bool has_stats() const { return stats_ != nullptr; }
  // The JSON text <entry>_stats writes; throws when the module has none or it fails.
  std::string Stats() const;

  ~Function();

 private:
  friend class BoundFunction;

  // `item` as an array the module can read (or, if `writable`, write) for `spec`: with
  // `convert`, converted from the other byte order or made contiguous (a copy), else
  // refused with a clear error naming the entry and the `what` number `i`.
  py::array Check(py::handle item, const TensorSpec& spec, const char* what, size_t i,
                  bool writable, bool convert) const;
  static byoc_tensor Tensor(const py::array& array, const TensorSpec& spec);
  void Describe(const py::list& arrays, const std::vector<TensorSpec>& specs, const char* what,
                std::vector<byoc_tensor>* tensors, std::vector<py::array>* keep,
                bool writable) const;
  void Invoke(const std::vector<byoc_tensor>& in, const std::vector<byoc_tensor>& out) const;
  // Refuses calls to a module whose _init exists but has not run.
  void RequireInit() const;

  std::shared_ptr<Library> library_;
  std::string entry_;
  byoc_entry_fn fn_;
  byoc_init_fn init_;
  byoc_release_fn release_;
  byoc_stats_fn stats_;
  std::vector<TensorSpec> inputs_;
  std::vector<TensorSpec> outputs_;
  py::list constants_;  // the init buffers must outlive the module's use of them
  bool initialized_ = false;
};

// A Function bound to fixed arrays — a runtime frame's buffers, checked once here — for
// the inputs and outputs that are not None at bind time. A call takes the run's table
// of values: it reads the other inputs from it and puts fresh arrays for the other
// outputs into it, so a runtime step costs one call from Python and no list building.
// Fixed arrays are bound as they are (a strided or byte-swapped one is refused, since a
// copy would not see later writes). Calls from several threads are safe, but they share
// the fixed arrays: the runtime gives each run a frame of its own.
class BoundFunction {
 public:
  BoundFunction(py::object function, const py::list& inputs, const py::list& outputs,
                std::vector<std::string> input_names, std::vector<std::string> output_names);
  void Call(const py::dict& values);

 private:
  py::object owner_;  // keeps the Function (and its module) alive
  const Function* function_;
  std::vector<py::array> fixed_;
  std::vector<byoc_tensor> in_, out_;
  std::vector<std::pair<size_t, py::str>> late_in_, late_out_;
};

}  // namespace byoc
