// byoc_sdk._native.simaccel: the simulated accelerator, seen from Python.
//
//   sim = Simulator(program_bytes, constants)   # validates, analyses timing, binds constants
//   outputs = sim.run(inputs)                    # flat float32 arrays, one per output slot
//   sim.stats()                                  # cycles, utilisation, bytes, host time...
//   validate(program_bytes)                      # the same checks, returns the stats
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <chrono>
#include <memory>
#include <mutex>
#include <string>

#include "registry.h"
#include "simaccel_program.h"

namespace py = pybind11;

namespace byoc::simaccel {

namespace {

using FloatArray = py::array_t<float, py::array::c_style>;

Program Parse(const py::bytes& data) {
  std::string_view view = data;  // no copy
  return ParseProgram(reinterpret_cast<const uint8_t*>(view.data()), view.size());
}

// `array` as a C-contiguous float32 array of `elements` elements, or a clear error.
FloatArray Checked(const py::handle& array, uint64_t elements, const std::string& what) {
  if (!py::isinstance<py::array>(array)) throw py::type_error(what + " is not a numpy array");
  auto a = py::reinterpret_borrow<py::array>(array);
  if (!py::isinstance<py::array_t<float>>(a)) {  // the dtype, by equivalence
    throw py::value_error(what + " must be float32, not " + std::string(py::str(a.dtype())));
  }
  if (!(a.flags() & py::array::c_style)) throw py::value_error(what + " is not C-contiguous");
  if (static_cast<uint64_t>(a.size()) != elements) {
    throw py::value_error(what + " has " + std::to_string(a.size()) + " elements, the program "
                          "expects " + std::to_string(elements));
  }
  return py::reinterpret_borrow<FloatArray>(a);
}

py::dict StatsDict(const Stats& s, const MachineConfig& m, double host_seconds) {
  const char* engines[kNumEngines] = {"dma", "mxu", "vpu"};
  py::dict d;
  d["cycles"] = s.cycles;
  d["time_us"] = static_cast<double>(s.cycles) / m.clock_mhz;
  d["macs"] = s.macs;
  const double peak = static_cast<double>(s.cycles) * m.array_rows * m.array_cols;
  d["mac_utilization"] = peak > 0 ? static_cast<double>(s.macs) / peak : 0.0;
  d["vector_elements"] = s.vector_elements;
  d["dram_read_bytes"] = s.dram_read_bytes;
  d["dram_write_bytes"] = s.dram_write_bytes;
  d["dram_bytes"] = s.dram_read_bytes + s.dram_write_bytes;
  d["sram_peak_bytes"] = s.sram_peak[0] + s.sram_peak[1] + s.sram_peak[2];
  for (int e = 0; e < kNumEngines; ++e) {
    d[(std::string(engines[e]) + "_busy_cycles").c_str()] = s.busy[e];
    d[(std::string(engines[e]) + "_stall_cycles").c_str()] = s.stall[e];
  }
  d["instructions"] = s.instructions[0] + s.instructions[1] + s.instructions[2];
  if (host_seconds > 0) {
    d["host_seconds"] = host_seconds;
    d["simulated_macs_per_second"] = static_cast<double>(s.macs) / host_seconds;
  }
  return d;
}

class Simulator {
 public:
  Simulator(const py::bytes& data, const py::list& constants) {
    Program program = Parse(data);
    if (constants.size() != program.constants) {
      throw py::value_error("the program takes " + std::to_string(program.constants) +
                            " constants, got " + std::to_string(constants.size()));
    }
    std::vector<const float*> pointers;
    for (uint32_t i = 0; i < program.constants; ++i) {
      uint64_t elements = program.slots[program.constant_slot[i]].elements;
      FloatArray array = Checked(constants[i], elements, "constant " + std::to_string(i));
      pointers.push_back(array.data());
      constants_.append(array);  // the machine reads them in place: keep them alive
    }
    machine_ = std::make_unique<Machine>(std::move(program), std::move(pointers));
  }

  py::list Run(const py::list& inputs) {
    const Program& p = machine_->program();
    if (inputs.size() != p.inputs) {
      throw py::value_error("the program takes " + std::to_string(p.inputs) + " inputs, got " +
                            std::to_string(inputs.size()));
    }
    std::vector<FloatArray> in_arrays;
    std::vector<const float*> in_ptrs;
    for (uint32_t i = 0; i < p.inputs; ++i) {
      in_arrays.push_back(Checked(inputs[i], machine_->InputElements(i),
                                  "input " + std::to_string(i)));
      in_ptrs.push_back(in_arrays.back().data());
    }
    py::list outputs;
    std::vector<float*> out_ptrs;
    for (uint32_t i = 0; i < p.outputs; ++i) {
      FloatArray out(static_cast<py::ssize_t>(machine_->OutputElements(i)));
      out_ptrs.push_back(out.mutable_data());
      outputs.append(out);
    }
    {
      py::gil_scoped_release release;
      std::lock_guard<std::mutex> lock(mutex_);
      auto start = std::chrono::steady_clock::now();
      machine_->Run(in_ptrs, out_ptrs);
      host_seconds_ =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    }
    return outputs;
  }

  py::dict StatsNow() const {
    return StatsDict(machine_->stats(), machine_->program().machine, host_seconds_);
  }

  py::list Elements(SlotKind kind) const {
    const Program& p = machine_->program();
    py::list sizes;
    const auto& slots = kind == kInput ? p.input_slot : kind == kOutput ? p.output_slot
                                                                         : p.constant_slot;
    for (uint32_t s : slots) sizes.append(p.slots[s].elements);
    return sizes;
  }

 private:
  std::unique_ptr<Machine> machine_;
  py::list constants_;
  std::mutex mutex_;
  double host_seconds_ = 0.0;
};

void BindSimAccel(py::module_& m) {
  m.doc() = "simaccel: the simulated accelerator's program validator, timing model and "
            "functional simulator.";
  m.attr("VERSION") = kVersion;
  m.attr("MAGIC") = py::bytes(kMagic, sizeof kMagic);
  m.attr("HEADER_SIZE") = kHeaderSize;
  m.attr("SLOT_SIZE") = kSlotSize;
  m.attr("INSTRUCTION_SIZE") = kInstructionSize;
  m.attr("NUM_SEMAPHORES") = kNumSemaphores;
  m.attr("GRANULE") = kGranule;
  py::register_exception<ProgramError>(m, "ProgramError", PyExc_ValueError);

  py::class_<Simulator>(m, "Simulator",
      "A simaccel core loaded with one program and its constants (float32 arrays, in the "
      "order of the program's constant slots).")
      .def(py::init<const py::bytes&, const py::list&>(), py::arg("program"),
           py::arg("constants"))
      .def("run", &Simulator::Run, py::arg("inputs"),
           "Run on float32 arrays (one per input slot); returns flat float32 outputs.")
      .def("stats", &Simulator::StatsNow,
           "Cycles, MAC utilisation, DRAM bytes, SRAM peak, engine busy and stall cycles "
           "(the same every run), and the host time of the last run.")
      .def_property_readonly("input_elements",
                             [](const Simulator& s) { return s.Elements(kInput); })
      .def_property_readonly("output_elements",
                             [](const Simulator& s) { return s.Elements(kOutput); })
      .def_property_readonly("constant_elements",
                             [](const Simulator& s) { return s.Elements(kConstant); });

  m.def("timeline",
        [](const py::bytes& data) {
          Program program = Parse(data);
          std::vector<Event> events;
          Analyze(program, &events);
          py::array_t<uint64_t> out({static_cast<py::ssize_t>(events.size()),
                                     static_cast<py::ssize_t>(4)});
          auto view = out.mutable_unchecked<2>();
          for (size_t i = 0; i < events.size(); ++i) {
            view(i, 0) = EngineOf(program.code[i]);
            view(i, 1) = events[i].start;
            view(i, 2) = events[i].issued;
            view(i, 3) = events[i].complete;
          }
          return out;
        },
        py::arg("program"),
        "Per instruction: engine (0 DMA, 1 array, 2 vector unit), start cycle, cycle its "
        "engine is free again, completion cycle; SIGNAL/WAIT: when they took effect.");

  m.def("validate",
        [](const py::bytes& data) {
          Program program = Parse(data);
          return StatsDict(Analyze(program), program.machine, 0.0);
        },
        py::arg("program"),
        "Validate a program (format, bounds, deadlocks, races) without running it; "
        "returns its timing statistics. Raises ProgramError.");
}

}  // namespace

}  // namespace byoc::simaccel

BYOC_REGISTER_BINDINGS(simaccel, byoc::simaccel::BindSimAccel)
