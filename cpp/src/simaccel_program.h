// simaccel: the simulated accelerator's program format, validation, timing and execution.
//
// The format (version 1) is documented in docs/backends/simaccel.md and mirrored by
// reference_backends/simaccel/isa.py. Everything a program says is checked before it
// runs (ParseProgram): header, slot table, every field of every instruction, every
// DRAM and SRAM range, semaphore waits that could never be satisfied, and (Analyze)
// accesses to SRAM by two engines at once that no semaphore orders. A program that
// passes cannot make the simulator read or write outside its memories.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace byoc::simaccel {

constexpr char kMagic[8] = {'S', 'I', 'M', 'A', 'C', 'C', 'E', 'L'};
constexpr uint16_t kVersion = 1;
constexpr size_t kHeaderSize = 96;
constexpr size_t kSlotSize = 24;
constexpr size_t kInstructionSize = 96;
constexpr int kWords = 23;
constexpr int kNumSemaphores = 32;
constexpr int kNumEngines = 3;
// SRAM is tracked for hazards in granules of this many bytes.
constexpr uint32_t kGranule = 256;
// Limits that keep a hostile program from asking for unbounded memory or time.
constexpr uint32_t kMaxSlots = 1u << 16;
constexpr uint32_t kMaxInstructions = 1u << 24;
constexpr uint64_t kMaxSramBytes = 64ull << 20;
constexpr uint64_t kMaxSlotElements = 1ull << 28;
constexpr uint64_t kMaxWork = 1ull << 34;
constexpr uint64_t kMaxGemmPanel = 1ull << 24;

enum Opcode : uint8_t {
  kDmaLoad = 0x01,
  kDmaStore = 0x02,
  kDmaFill = 0x03,
  kGemm = 0x10,
  kVec = 0x20,
  kPool = 0x21,
  kSignal = 0x30,
  kWait = 0x31,
};

enum Engine : uint8_t { kDma = 0, kMxu = 1, kVpu = 2 };
enum VecOp : uint8_t { kCopy = 0, kAdd, kSub, kMul, kFma, kMax, kMin, kNumVecOps };
enum Act : uint8_t {
  kNone = 0, kRelu, kLeakyRelu, kClip, kSigmoid, kTanh, kHardSigmoid, kHardSwish, kNumActs
};
enum PoolKind : uint8_t { kPoolMax = 0, kPoolAvg = 1 };
enum SlotKind : uint8_t { kInput = 0, kOutput, kConstant, kScratch, kData };

// A program that must not run: malformed, truncated, out of bounds, racy.
class ProgramError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The machine a program was compiled for (from its header).
struct MachineConfig {
  uint32_t array_rows, array_cols, vector_lanes;
  uint32_t input_bytes, weight_bytes, accumulator_bytes;
  uint32_t dma_bytes_per_cycle, dma_latency, vector_latency, clock_mhz;
  uint64_t sram_bytes() const {
    return uint64_t{input_bytes} + weight_bytes + accumulator_bytes;
  }
};

struct Slot {
  SlotKind kind;
  uint32_t index;
  uint64_t elements;
  uint64_t data_offset;
};

struct Instruction {
  uint8_t opcode, a, b, dtype;
  uint32_t w[kWords];
};

// Views of the instruction words, by opcode.
struct DmaView {
  uint32_t slot, dram_offset, sram;
  const uint32_t* counts;  // 4, outermost first
  const uint32_t* dram_strides;
  const uint32_t* sram_strides;
  float value;  // DMA_FILL
};
DmaView Dma(const Instruction& in);

struct GemmView {
  uint32_t m, k, n;
  uint32_t a, m_inner, a_m_inner, a_m_outer, k_inner, a_k_inner, a_k_outer;
  uint32_t b, b_k_inner, b_k_outer, b_n;
  uint32_t c, c_m_inner, c_m_outer, c_n;
};
GemmView Gemm(const Instruction& in);

struct VecView {
  const uint32_t* counts;  // 3
  uint32_t addr[4];        // dst, a, b, c
  const uint32_t* strides[4];
  float alpha, beta;
};
VecView Vec(const Instruction& in);

struct PoolView {
  uint32_t channels, in_h, in_w, out_h, out_w, kh, kw, sh, sw;
  int32_t pad_top, pad_left;
  uint32_t src, src_c, src_row, dst, dst_c, dst_row;
};
PoolView Pool(const Instruction& in);

// A validated program. `data` holds the data section as floats (4-byte aligned).
struct Program {
  MachineConfig machine;
  std::vector<Slot> slots;
  std::vector<Instruction> code;
  std::vector<float> data;
  uint32_t inputs = 0, outputs = 0, constants = 0;
  std::vector<uint32_t> input_slot, output_slot, constant_slot;  // by index
};

// Parses and validates `size` bytes; throws ProgramError naming what is wrong and where.
Program ParseProgram(const uint8_t* bytes, size_t size);

const char* OpcodeName(uint8_t opcode);
Engine EngineOf(const Instruction& in);

// What the timing model says about one run (a program's timing does not depend on data).
struct Stats {
  uint64_t cycles = 0;
  uint64_t busy[kNumEngines] = {0, 0, 0};
  uint64_t stall[kNumEngines] = {0, 0, 0};
  uint64_t instructions[kNumEngines] = {0, 0, 0};
  uint64_t macs = 0;
  uint64_t vector_elements = 0;
  uint64_t dram_read_bytes = 0, dram_write_bytes = 0;
  uint64_t sram_peak[3] = {0, 0, 0};  // high-water mark per partition
};

// When one instruction ran, by the timing model: issue start, issue end, completion.
struct Event {
  uint64_t start, issued, complete;
};

// Runs the timing model and the hazard check; throws ProgramError for a race. With
// `timeline`, also records every instruction's Event (SIGNAL/WAIT: when they resolved).
Stats Analyze(const Program& program, std::vector<Event>* timeline = nullptr);

// One simulated core with its memories, bound to a program.
class Machine {
 public:
  Machine(Program program, std::vector<const float*> constants);

  // Runs the program functionally: inputs[i] and outputs[i] hold the elements of input
  // and output slot i (sizes checked by the caller against InputElements/OutputElements).
  void Run(const std::vector<const float*>& inputs, const std::vector<float*>& outputs);

  const Program& program() const { return program_; }
  const Stats& stats() const { return stats_; }
  uint64_t InputElements(uint32_t i) const;
  uint64_t OutputElements(uint32_t i) const;
  uint64_t ConstantElements(uint32_t i) const;

 private:
  float* Dram(uint32_t slot);
  void Execute(const Instruction& in);
  void RunDma(const Instruction& in);
  void RunGemm(const Instruction& in);
  void RunVec(const Instruction& in);
  void RunPool(const Instruction& in);

  Program program_;
  Stats stats_;
  std::vector<float> sram_;
  std::vector<std::vector<float>> scratch_;  // by slot (empty for other kinds)
  std::vector<float*> dram_;                 // by slot, bound for the current run
  std::vector<float> a_pack_, b_pack_, c_pack_;
};

}  // namespace byoc::simaccel
