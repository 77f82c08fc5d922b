// byoc_sdk._native: the native core, seen from Python.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "byoc/abi.h"
#include "function.h"
#include "library.h"
#include "registry.h"

namespace py = pybind11;

namespace {

std::vector<byoc::TensorSpec> Specs(const py::iterable& items) {
  std::vector<byoc::TensorSpec> specs;
  for (py::handle item : items) {
    auto pair = item.cast<py::tuple>();
    if (pair.size() != 2) throw std::invalid_argument("a tensor spec is (dtype, shape)");
    specs.emplace_back(py::dtype::from_args(pair[0]), pair[1].cast<std::vector<int64_t>>());
  }
  return specs;
}

}  // namespace

PYBIND11_MODULE(_native, m) {
  m.doc() = "byoc native core: load compiled modules and call their regions.";
  m.attr("ABI_VERSION") = BYOC_ABI_VERSION;

  py::register_exception<byoc::LoadError>(m, "LoadError", PyExc_RuntimeError);
  // ModuleError carries the module's status code as `status`.
  static py::exception<byoc::ModuleError> module_error(m, "ModuleError", PyExc_RuntimeError);
  py::register_exception_translator([](std::exception_ptr thrown) {
    try {
      if (thrown) std::rethrow_exception(thrown);
    } catch (const byoc::ModuleError& error) {
      auto type = py::reinterpret_borrow<py::object>(module_error.ptr());
      py::object instance = type(error.what());
      instance.attr("status") = error.status();
      PyErr_SetObject(type.ptr(), instance.ptr());
    }
  });

  py::class_<byoc::Library, std::shared_ptr<byoc::Library>>(m, "Library",
      "An open compiled module (shared library), checked for the byoc ABI version.")
      .def(py::init(&byoc::Library::Open), py::arg("path"))
      .def_property_readonly("path", &byoc::Library::path)
      .def_property_readonly("abi_version", &byoc::Library::abi_version)
      .def("has_symbol",
           [](const byoc::Library& library, const std::string& name) {
             return library.Find(name) != nullptr;
           },
           py::arg("name"));

  py::class_<byoc::Function>(m, "Function",
      "One region's entry function. inputs/outputs are sequences of (dtype, shape).")
      .def(py::init([](std::shared_ptr<byoc::Library> library, const std::string& entry,
                       const py::iterable& inputs, const py::iterable& outputs) {
             return new byoc::Function(std::move(library), entry, Specs(inputs), Specs(outputs));
           }),
           py::arg("library"), py::arg("entry"), py::arg("inputs"), py::arg("outputs"))
      .def("init", &byoc::Function::Init, py::arg("constants"),
           "Hand the module its constants (once, before the first call).")
      .def("__call__", &byoc::Function::Call, py::arg("inputs"),
           "Run the region on a list of arrays; returns a list of fresh output arrays.")
      .def("call_into", &byoc::Function::CallInto, py::arg("inputs"), py::arg("outputs"),
           "Run the region writing into caller-provided output arrays.")
      .def_property_readonly("entry", &byoc::Function::entry)
      .def_property_readonly("has_init", &byoc::Function::has_init)
      .def_property_readonly("has_stats", &byoc::Function::has_stats)
      .def("stats", &byoc::Function::Stats,
           "The JSON text of the module's <entry>_stats counters.")
      .def("bind",
           [](py::object self, const py::list& inputs, const py::list& outputs,
              std::vector<std::string> input_names, std::vector<std::string> output_names) {
             return new byoc::BoundFunction(std::move(self), inputs, outputs,
                                            std::move(input_names), std::move(output_names));
           },
           py::arg("inputs"), py::arg("outputs"), py::arg("input_names"),
           py::arg("output_names"),
           "Bind to fixed arrays (None where a run supplies its own); the result is called "
           "with a dict of the run's values, reads the unbound inputs from it by name and "
           "stores fresh arrays for the unbound outputs in it.");

  py::class_<byoc::BoundFunction>(m, "BoundFunction",
      "A Function bound to fixed arrays; call it with the run's dict of values.")
      .def("__call__", &byoc::BoundFunction::Call, py::arg("values"));

  for (const auto& [name, binder] : byoc::Binders()) {
    py::module_ sub = m.def_submodule(name);
    binder(sub);
  }
}
