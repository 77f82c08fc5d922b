// simaccel: parsing and validating a program (format version 1).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>
#include <sstream>

#include "simaccel_program.h"

namespace byoc::simaccel {

namespace {

using u128 = unsigned __int128;

template <typename T>
T Read(const uint8_t* p) {
  T value;
  std::memcpy(&value, p, sizeof(T));  // the format is little-endian, like every host we build for
  return value;
}

float Float(uint32_t word) {
  float value;
  std::memcpy(&value, &word, sizeof value);
  return value;
}

std::string Where(size_t index, const Instruction& in) {
  std::ostringstream out;
  out << "instruction " << index << " (" << OpcodeName(in.opcode) << ")";
  return out.str();
}

[[noreturn]] void Fail(const std::string& message) { throw ProgramError(message); }

// The last element index of a box: base + sum (count_d - 1) * stride_d, in 128 bits so no
// combination of 32-bit fields can overflow.
u128 LastIndex(uint64_t base, const uint32_t* counts, const uint32_t* strides, int dims) {
  u128 last = base;
  for (int d = 0; d < dims; ++d) last += u128{counts[d] - 1u} * strides[d];
  return last;
}

// The number of elements of a box, saturated at kMaxWork + 1 (four 32-bit counts overflow
// 64 bits).
uint64_t Product(const uint32_t* counts, int dims) {
  u128 total = 1;
  for (int d = 0; d < dims; ++d) {
    total *= counts[d];
    if (total > kMaxWork) return kMaxWork + 1;
  }
  return static_cast<uint64_t>(total);
}

// The partition a byte range [lo, hi) of SRAM lies in; -1 if it crosses one or leaves SRAM.
int PartitionOf(const MachineConfig& m, u128 lo, u128 hi) {
  const uint64_t bounds[4] = {0, m.input_bytes, uint64_t{m.input_bytes} + m.weight_bytes,
                              m.sram_bytes()};
  for (int p = 0; p < 3; ++p) {
    if (lo >= bounds[p] && hi <= bounds[p + 1]) return p;
  }
  return -1;
}

// Whether a box visits no element twice: ordered by stride, every dim that repeats must
// step past everything the dims inside it reach. Destinations must be like this, which
// also bounds an instruction's work by the size of what it writes.
bool Injective(const uint32_t* counts, const uint32_t* strides, int dims) {
  std::pair<uint32_t, uint32_t> used[5];
  int n = 0;
  for (int d = 0; d < dims; ++d) {
    if (counts[d] > 1) used[n++] = {strides[d], counts[d]};
  }
  std::sort(used, used + n);
  u128 reach = 0;
  for (int i = 0; i < n; ++i) {
    if (used[i].first <= reach) return false;
    reach += u128{used[i].second - 1u} * used[i].first;
  }
  return true;
}

void CheckInjective(const std::string& where, const char* what, const uint32_t* counts,
                    const uint32_t* strides, int dims) {
  if (!Injective(counts, strides, dims)) {
    Fail(where + ": " + what + " writes some elements more than once (overlapping strides)");
  }
}

const char* kPartitionNames[3] = {"input buffer", "weight buffer", "accumulator buffer"};

// Checks one SRAM operand of f32 elements: aligned, inside SRAM, inside one partition
// (`want` >= 0: that partition). Returns the partition.
int CheckSram(const MachineConfig& m, const std::string& where, const char* what,
              uint32_t address, const uint32_t* counts, const uint32_t* strides, int dims,
              int want = -1) {
  if (address % 4) Fail(where + ": " + what + " address is not 4-byte aligned");
  for (int d = 0; d < dims; ++d) {
    if (counts[d] == 0) Fail(where + ": " + what + " has a zero count");
  }
  u128 hi = u128{address} + LastIndex(0, counts, strides, dims) * 4 + 4;
  int partition = PartitionOf(m, address, hi);
  if (partition < 0) {
    std::ostringstream out;
    out << where << ": " << what << " [" << address << ", " << static_cast<uint64_t>(hi)
        << ") is outside SRAM or crosses a buffer boundary (SRAM is " << m.sram_bytes()
        << " bytes)";
    Fail(out.str());
  }
  if (want >= 0 && partition != want) {
    Fail(where + ": " + what + " must be in the " + kPartitionNames[want] + ", not the " +
         kPartitionNames[partition]);
  }
  return partition;
}

void CheckZero(const std::string& where, const Instruction& in, int first, int last = kWords) {
  for (int i = first; i < last; ++i) {
    if (in.w[i] != 0) Fail(where + ": reserved word " + std::to_string(i) + " is not zero");
  }
}

void CheckFinite(const std::string& where, float value, const char* what) {
  if (std::isnan(value)) Fail(where + ": " + what + " is NaN");
}

MachineConfig ReadMachine(const uint8_t* p) {
  MachineConfig m{};
  m.array_rows = Read<uint32_t>(p + 40);
  m.array_cols = Read<uint32_t>(p + 44);
  m.vector_lanes = Read<uint32_t>(p + 48);
  m.input_bytes = Read<uint32_t>(p + 52);
  m.weight_bytes = Read<uint32_t>(p + 56);
  m.accumulator_bytes = Read<uint32_t>(p + 60);
  m.dma_bytes_per_cycle = Read<uint32_t>(p + 64);
  m.dma_latency = Read<uint32_t>(p + 68);
  m.vector_latency = Read<uint32_t>(p + 72);
  m.clock_mhz = Read<uint32_t>(p + 76);
  auto in_range = [](uint32_t v, uint32_t lo, uint32_t hi) { return v >= lo && v <= hi; };
  if (!in_range(m.array_rows, 1, 256) || !in_range(m.array_cols, 1, 256)) {
    Fail("header: systolic array size must be 1..256 x 1..256");
  }
  if (!in_range(m.vector_lanes, 1, 4096)) Fail("header: vector lanes must be 1..4096");
  for (uint32_t bytes : {m.input_bytes, m.weight_bytes, m.accumulator_bytes}) {
    if (bytes == 0 || bytes % kGranule) {
      Fail("header: SRAM partitions must be non-empty multiples of 256 bytes");
    }
  }
  if (m.sram_bytes() > kMaxSramBytes) Fail("header: SRAM larger than 64 MiB");
  if (!in_range(m.dma_bytes_per_cycle, 1, 1u << 16)) Fail("header: DMA bandwidth out of range");
  if (m.dma_latency > 1000000 || m.vector_latency > 10000) Fail("header: latency out of range");
  if (!in_range(m.clock_mhz, 1, 1000000)) Fail("header: clock out of range");
  return m;
}

void ValidateDma(const Program& p, size_t index, const Instruction& in) {
  std::string where = Where(index, in);
  DmaView d = Dma(in);
  if (in.a || in.b) Fail(where + ": operand bytes must be zero");
  CheckSram(p.machine, where, "SRAM box", d.sram, d.counts, d.sram_strides, 4);
  if (in.opcode != kDmaStore) CheckInjective(where, "SRAM box", d.counts, d.sram_strides, 4);
  if (in.opcode == kDmaFill) {
    if (d.slot || d.dram_offset) Fail(where + ": DMA_FILL has no DRAM side");
    CheckZero(where, in, 7, 11);
    CheckZero(where, in, 16);
    CheckFinite(where, d.value, "fill value");
    return;
  }
  CheckZero(where, in, 15);
  if (d.slot >= p.slots.size()) {
    Fail(where + ": slot " + std::to_string(d.slot) + " does not exist (" +
         std::to_string(p.slots.size()) + " slots)");
  }
  const Slot& slot = p.slots[d.slot];
  if (in.opcode == kDmaStore && slot.kind != kOutput && slot.kind != kScratch) {
    Fail(where + ": stores only go to output or scratch slots, slot " +
         std::to_string(d.slot) + " is read-only");
  }
  if (LastIndex(d.dram_offset, d.counts, d.dram_strides, 4) >= slot.elements) {
    Fail(where + ": DRAM box leaves slot " + std::to_string(d.slot) + " (" +
         std::to_string(slot.elements) + " elements)");
  }
  if (in.opcode == kDmaStore) CheckInjective(where, "DRAM box", d.counts, d.dram_strides, 4);
}

void ValidateGemm(const Program& p, size_t index, const Instruction& in) {
  std::string where = Where(index, in);
  GemmView g = Gemm(in);
  if (in.a > 1 || in.b) Fail(where + ": flags must be 0 or 1 (accumulate)");
  CheckZero(where, in, 18);
  if (!g.m || !g.k || !g.n || !g.m_inner || !g.k_inner) Fail(where + ": zero dimension");
  // The simulator packs the operands densely: bound what that may cost.
  const uint64_t mk = uint64_t{g.m} * g.k, kn = uint64_t{g.k} * g.n, mn = uint64_t{g.m} * g.n;
  if (mk > kMaxGemmPanel || kn > kMaxGemmPanel || mn > kMaxGemmPanel) {
    Fail(where + ": M x K, K x N and M x N may be at most 2^24 elements each");
  }
  if (g.m % g.m_inner || g.k % g.k_inner) {
    Fail(where + ": M and K must be multiples of their inner group sizes");
  }
  const uint32_t a_counts[4] = {g.m / g.m_inner, g.m_inner, g.k / g.k_inner, g.k_inner};
  const uint32_t a_strides[4] = {g.a_m_outer, g.a_m_inner, g.a_k_outer, g.a_k_inner};
  const uint32_t b_counts[3] = {g.k / g.k_inner, g.k_inner, g.n};
  const uint32_t b_strides[3] = {g.b_k_outer, g.b_k_inner, g.b_n};
  const uint32_t c_counts[3] = {g.m / g.m_inner, g.m_inner, g.n};
  const uint32_t c_strides[3] = {g.c_m_outer, g.c_m_inner, g.c_n};
  CheckSram(p.machine, where, "A", g.a, a_counts, a_strides, 4, 0);
  CheckSram(p.machine, where, "B", g.b, b_counts, b_strides, 3, 1);
  CheckSram(p.machine, where, "C", g.c, c_counts, c_strides, 3, 2);
  CheckInjective(where, "B (one weight per array cell)", b_counts, b_strides, 3);
  CheckInjective(where, "C", c_counts, c_strides, 3);
}

int VecSources(uint8_t op) { return op == kCopy ? 1 : op == kFma ? 3 : 2; }

void ValidateVec(const Program& p, size_t index, const Instruction& in) {
  std::string where = Where(index, in);
  if (in.a >= kNumVecOps) Fail(where + ": unknown vector op " + std::to_string(in.a));
  if (in.b >= kNumActs) Fail(where + ": unknown activation " + std::to_string(in.b));
  VecView v = Vec(in);
  CheckFinite(where, v.alpha, "alpha");
  CheckFinite(where, v.beta, "beta");
  const char* names[4] = {"dst", "a", "b", "c"};
  int used = 1 + VecSources(in.a);
  for (int o = 0; o < 4; ++o) {
    if (o < used) {
      CheckSram(p.machine, where, names[o], v.addr[o], v.counts, v.strides[o], 3);
      if (o == 0) CheckInjective(where, "dst", v.counts, v.strides[0], 3);
    } else {
      CheckZero(where, in, 3 + 4 * o, 7 + 4 * o);
    }
  }
}

void ValidatePool(const Program& p, size_t index, const Instruction& in) {
  std::string where = Where(index, in);
  if (in.a > kPoolAvg || in.b) Fail(where + ": unknown pooling kind");
  CheckZero(where, in, 17);
  PoolView q = Pool(in);
  if (!q.kh || !q.kw || !q.sh || !q.sw || !q.out_h || !q.out_w) {
    Fail(where + ": zero kernel, stride or output size");
  }
  if (q.pad_top < -(1 << 24) || q.pad_top > (1 << 24) || q.pad_left < -(1 << 24) ||
      q.pad_left > (1 << 24)) {
    Fail(where + ": padding out of range");
  }
  // Every window must keep at least one input cell: check the first and the last.
  int64_t first_row = -int64_t{q.pad_top}, first_col = -int64_t{q.pad_left};
  int64_t last_row = int64_t{q.out_h - 1} * q.sh - q.pad_top;
  int64_t last_col = int64_t{q.out_w - 1} * q.sw - q.pad_left;
  if (first_row + q.kh <= 0 || first_col + q.kw <= 0 || last_row >= int64_t{q.in_h} ||
      last_col >= int64_t{q.in_w}) {
    Fail(where + ": a pooling window lies wholly outside its input tile");
  }
  const uint32_t src_counts[3] = {q.channels, q.in_h, q.in_w};
  const uint32_t src_strides[3] = {q.src_c, q.src_row, 1};
  const uint32_t dst_counts[3] = {q.channels, q.out_h, q.out_w};
  const uint32_t dst_strides[3] = {q.dst_c, q.dst_row, 1};
  CheckSram(p.machine, where, "source", q.src, src_counts, src_strides, 3);
  CheckSram(p.machine, where, "destination", q.dst, dst_counts, dst_strides, 3);
  CheckInjective(where, "destination", dst_counts, dst_strides, 3);
}

// The work an instruction makes the host do, to refuse programs that would run for hours.
uint64_t Work(const Instruction& in) {
  switch (in.opcode) {
    case kDmaLoad:
    case kDmaStore:
    case kDmaFill:
      return Product(Dma(in).counts, 4);
    case kGemm: {
      GemmView g = Gemm(in);
      const uint32_t dims[3] = {g.m, g.k, g.n};
      return Product(dims, 3);
    }
    case kVec:
      return Product(Vec(in).counts, 3);
    case kPool: {
      PoolView q = Pool(in);
      const uint32_t dims[5] = {q.channels, q.out_h, q.out_w, q.kh, q.kw};
      return Product(dims, 5);
    }
    default:
      return 1;
  }
}

}  // namespace

const char* OpcodeName(uint8_t opcode) {
  switch (opcode) {
    case kDmaLoad: return "DMA_LOAD";
    case kDmaStore: return "DMA_STORE";
    case kDmaFill: return "DMA_FILL";
    case kGemm: return "GEMM";
    case kVec: return "VEC";
    case kPool: return "POOL";
    case kSignal: return "SIGNAL";
    case kWait: return "WAIT";
    default: return "unknown opcode";
  }
}

Engine EngineOf(const Instruction& in) {
  switch (in.opcode) {
    case kGemm: return kMxu;
    case kVec:
    case kPool: return kVpu;
    case kSignal:
    case kWait: return static_cast<Engine>(in.a);
    default: return kDma;
  }
}

DmaView Dma(const Instruction& in) {
  return DmaView{in.w[0], in.w[1], in.w[2], in.w + 3, in.w + 7, in.w + 11, Float(in.w[15])};
}

GemmView Gemm(const Instruction& in) {
  const uint32_t* w = in.w;
  return GemmView{w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7], w[8],
                  w[9], w[10], w[11], w[12], w[13], w[14], w[15], w[16], w[17]};
}

VecView Vec(const Instruction& in) {
  VecView v{};
  v.counts = in.w;
  for (int o = 0; o < 4; ++o) {
    v.addr[o] = in.w[3 + 4 * o];
    v.strides[o] = in.w + 4 + 4 * o;
  }
  v.alpha = Float(in.w[19]);
  v.beta = Float(in.w[20]);
  return v;
}

PoolView Pool(const Instruction& in) {
  const uint32_t* w = in.w;
  return PoolView{w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7], w[8],
                  static_cast<int32_t>(w[9]), static_cast<int32_t>(w[10]),
                  w[11], w[12], w[13], w[14], w[15], w[16]};
}

Program ParseProgram(const uint8_t* bytes, size_t size) {
  if (size < kHeaderSize) {
    Fail("program is " + std::to_string(size) + " bytes, shorter than its " +
         std::to_string(kHeaderSize) + "-byte header (truncated?)");
  }
  if (std::memcmp(bytes, kMagic, sizeof kMagic) != 0) {
    Fail("not a simaccel program (bad magic)");
  }
  uint16_t version = Read<uint16_t>(bytes + 8);
  if (version != kVersion) {
    Fail("program format version " + std::to_string(version) + ", this simulator runs " +
         std::to_string(kVersion));
  }
  if (Read<uint16_t>(bytes + 10) != kHeaderSize || Read<uint16_t>(bytes + 12) != kSlotSize ||
      Read<uint16_t>(bytes + 14) != kInstructionSize) {
    Fail("header: record sizes do not match format version 1");
  }
  for (size_t i = 80; i < kHeaderSize; ++i) {
    if (bytes[i]) Fail("header: reserved bytes are not zero");
  }
  Program p;
  uint32_t n_slots = Read<uint32_t>(bytes + 16);
  uint32_t n_code = Read<uint32_t>(bytes + 20);
  uint32_t n_data = Read<uint32_t>(bytes + 24);
  p.inputs = Read<uint32_t>(bytes + 28);
  p.outputs = Read<uint32_t>(bytes + 32);
  p.constants = Read<uint32_t>(bytes + 36);
  if (n_slots > kMaxSlots) Fail("header: too many slots");
  if (n_code > kMaxInstructions) Fail("header: too many instructions");
  if (uint64_t{p.inputs} + p.outputs + p.constants > n_slots) {
    Fail("header: more inputs, outputs and constants than slots");
  }
  uint64_t expected = kHeaderSize + uint64_t{n_slots} * kSlotSize +
                      uint64_t{n_code} * kInstructionSize + n_data;
  if (size != expected) {
    Fail("program is " + std::to_string(size) + " bytes, its header describes " +
         std::to_string(expected) + (size < expected ? " (truncated)" : " (trailing bytes)"));
  }
  p.machine = ReadMachine(bytes);

  // Slot table.
  const uint8_t* at = bytes + kHeaderSize;
  p.input_slot.assign(p.inputs, UINT32_MAX);
  p.output_slot.assign(p.outputs, UINT32_MAX);
  p.constant_slot.assign(p.constants, UINT32_MAX);
  uint64_t scratch = 0;
  for (uint32_t s = 0; s < n_slots; ++s, at += kSlotSize) {
    std::string where = "slot " + std::to_string(s);
    Slot slot{static_cast<SlotKind>(at[0]), Read<uint32_t>(at + 4), Read<uint64_t>(at + 8),
              Read<uint64_t>(at + 16)};
    if (at[0] > kData) Fail(where + ": unknown kind " + std::to_string(at[0]));
    if (at[1] != 0) Fail(where + ": only float32 tensors are supported");
    if (Read<uint16_t>(at + 2)) Fail(where + ": reserved bytes are not zero");
    if (slot.elements == 0 || slot.elements > kMaxSlotElements) {
      Fail(where + ": size must be 1 to 2^28 elements");
    }
    std::vector<uint32_t>* index = nullptr;
    if (slot.kind == kInput) index = &p.input_slot;
    if (slot.kind == kOutput) index = &p.output_slot;
    if (slot.kind == kConstant) index = &p.constant_slot;
    if (index) {
      if (slot.index >= index->size() || (*index)[slot.index] != UINT32_MAX) {
        Fail(where + ": index " + std::to_string(slot.index) + " is out of range or repeated");
      }
      (*index)[slot.index] = s;
    } else if (slot.index) {
      Fail(where + ": scratch and data slots take index 0");
    }
    if (slot.kind == kData) {
      if (slot.data_offset % 4 || slot.data_offset > n_data ||
          slot.elements * 4 > n_data - slot.data_offset) {
        Fail(where + ": data range is outside the data section");
      }
    } else if (slot.data_offset) {
      Fail(where + ": only data slots have a data offset");
    }
    if (slot.kind == kScratch || slot.kind == kOutput) {
      scratch += slot.elements;  // what running the program allocates
      if (scratch > kMaxSlotElements) Fail(where + ": outputs and scratch exceed 2^28 elements");
    }
    p.slots.push_back(slot);
  }
  for (auto* index : {&p.input_slot, &p.output_slot, &p.constant_slot}) {
    for (uint32_t s : *index) {
      if (s == UINT32_MAX) Fail("slot table: an input, output or constant has no slot");
    }
  }

  // Instructions.
  p.code.resize(n_code);
  uint32_t signals[kNumSemaphores] = {};
  uint64_t work = 0;
  for (uint32_t i = 0; i < n_code; ++i, at += kInstructionSize) {
    Instruction& in = p.code[i];
    in.opcode = at[0];
    in.a = at[1];
    in.b = at[2];
    in.dtype = at[3];
    std::memcpy(in.w, at + 4, sizeof in.w);
    std::string where = Where(i, in);
    if (in.dtype != 0) Fail(where + ": only float32 (dtype 0) is supported");
    switch (in.opcode) {
      case kDmaLoad:
      case kDmaStore:
      case kDmaFill:
        ValidateDma(p, i, in);
        break;
      case kGemm:
        ValidateGemm(p, i, in);
        break;
      case kVec:
        ValidateVec(p, i, in);
        break;
      case kPool:
        ValidatePool(p, i, in);
        break;
      case kSignal:
      case kWait: {
        if (in.a >= kNumEngines || in.b) Fail(where + ": unknown engine");
        uint32_t sem = in.w[0];
        if (sem >= kNumSemaphores) Fail(where + ": semaphore " + std::to_string(sem) +
                                        " does not exist");
        if (in.opcode == kSignal) {
          CheckZero(where, in, 1);
          ++signals[sem];
        } else {
          CheckZero(where, in, 2);
          if (in.w[1] == 0 || in.w[1] > signals[sem]) {
            Fail(where + ": waits for semaphore " + std::to_string(sem) + " to reach " +
                 std::to_string(in.w[1]) + " but only " + std::to_string(signals[sem]) +
                 " signals come before it (deadlock)");
          }
        }
        break;
      }
      default:
        Fail("instruction " + std::to_string(i) + ": unknown opcode " +
             std::to_string(in.opcode));
    }
    work += Work(in);
    if (work > kMaxWork) Fail(where + ": the program asks for more work than the simulator "
                                      "will do");
  }

  // Data section, copied to aligned floats.
  p.data.resize((n_data + 3) / 4);
  if (n_data) std::memcpy(p.data.data(), at, n_data);
  return p;
}

}  // namespace byoc::simaccel
