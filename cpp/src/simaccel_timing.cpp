// simaccel: the timing model and the hazard check.
//
// Three engines (DMA, MXU = systolic array, VPU = vector unit) take instructions from one
// stream, each in order. An instruction starts when its engine is free (WAITs move that
// point later) and keeps the engine busy for its issue time; its results are complete
// a latency later (DMA: latency; MXU: fill and drain of the array; VPU: pipeline depth),
// while the engine already issues the next one. SIGNAL fires when everything its engine
// issued before has completed. Timing does not depend on the data, so one analysis per
// program gives every run's cycles.
//
// The same walk checks that no two engines touch the same SRAM granule at overlapping
// times unless one writes nothing: a program that would race on real hardware is refused
// even though this simulator, executing in program order, would compute the same result.
#include <algorithm>
#include <sstream>

#include "simaccel_program.h"

namespace byoc::simaccel {

namespace {

const char* kEngineNames[kNumEngines] = {"DMA engine", "systolic array", "vector unit"};

struct Range {
  uint64_t lo, hi;  // bytes, [lo, hi)
  bool write;
};

uint64_t CeilDiv(uint64_t a, uint64_t b) { return (a + b - 1) / b; }

uint64_t Hi(uint32_t address, const uint32_t* counts, const uint32_t* strides, int dims) {
  uint64_t last = 0;
  for (int d = 0; d < dims; ++d) last += uint64_t{counts[d] - 1u} * strides[d];
  return address + last * 4 + 4;  // validated to lie inside SRAM: no overflow
}

// The SRAM byte ranges (bounding boxes of the operands) an instruction reads and writes.
int Accesses(const Instruction& in, Range* out) {
  switch (in.opcode) {
    case kDmaLoad:
    case kDmaStore:
    case kDmaFill: {
      DmaView d = Dma(in);
      out[0] = {d.sram, Hi(d.sram, d.counts, d.sram_strides, 4), in.opcode != kDmaStore};
      return 1;
    }
    case kGemm: {
      GemmView g = Gemm(in);
      const uint32_t a_counts[4] = {g.m / g.m_inner, g.m_inner, g.k / g.k_inner, g.k_inner};
      const uint32_t a_strides[4] = {g.a_m_outer, g.a_m_inner, g.a_k_outer, g.a_k_inner};
      const uint32_t b_counts[3] = {g.k / g.k_inner, g.k_inner, g.n};
      const uint32_t b_strides[3] = {g.b_k_outer, g.b_k_inner, g.b_n};
      const uint32_t c_counts[3] = {g.m / g.m_inner, g.m_inner, g.n};
      const uint32_t c_strides[3] = {g.c_m_outer, g.c_m_inner, g.c_n};
      out[0] = {g.a, Hi(g.a, a_counts, a_strides, 4), false};
      out[1] = {g.b, Hi(g.b, b_counts, b_strides, 3), false};
      out[2] = {g.c, Hi(g.c, c_counts, c_strides, 3), true};
      return 3;
    }
    case kVec: {
      VecView v = Vec(in);
      int sources = in.a == kCopy ? 1 : in.a == kFma ? 3 : 2;
      for (int o = 1; o <= sources; ++o) {
        out[o - 1] = {v.addr[o], Hi(v.addr[o], v.counts, v.strides[o], 3), false};
      }
      out[sources] = {v.addr[0], Hi(v.addr[0], v.counts, v.strides[0], 3), true};
      return sources + 1;
    }
    case kPool: {
      PoolView q = Pool(in);
      const uint32_t src_counts[3] = {q.channels, q.in_h, q.in_w};
      const uint32_t src_strides[3] = {q.src_c, q.src_row, 1};
      const uint32_t dst_counts[3] = {q.channels, q.out_h, q.out_w};
      const uint32_t dst_strides[3] = {q.dst_c, q.dst_row, 1};
      out[0] = {q.src, Hi(q.src, src_counts, src_strides, 3), false};
      out[1] = {q.dst, Hi(q.dst, dst_counts, dst_strides, 3), true};
      return 2;
    }
    default:
      return 0;
  }
}

uint64_t Elements(const uint32_t* counts, int dims) {
  uint64_t total = 1;
  for (int d = 0; d < dims; ++d) total *= counts[d];  // bounded by the work limit
  return total;
}

// DMA issue cycles: DRAM is read or written in contiguous runs, each taking whole cycles
// of the bus (a 4-byte run costs as much as a full beat). Dims whose stride continues the
// run below them merge into it.
uint64_t DmaCycles(const MachineConfig& m, const DmaView& d) {
  uint64_t run = 1;
  bool open = true;
  for (int dim = 3; dim >= 0; --dim) {
    if (d.counts[dim] == 1) continue;
    if (open && d.dram_strides[dim] == run) {
      run *= d.counts[dim];
    } else {
      open = false;
    }
  }
  uint64_t runs = Elements(d.counts, 4) / run;
  return runs * CeilDiv(run * 4, m.dma_bytes_per_cycle);
}

struct Granule {
  uint64_t write_done = 0;
  uint32_t writer = 0;
  int8_t write_engine = -1;
  uint64_t read_done[kNumEngines] = {0, 0, 0};
  uint32_t reader[kNumEngines] = {0, 0, 0};
};

[[noreturn]] void Race(const char* kind, const Program& p, uint32_t later, uint32_t earlier,
                       const Range& range, uint64_t start, uint64_t until) {
  const Instruction& a = p.code[later];
  const Instruction& b = p.code[earlier];
  std::ostringstream out;
  out << "race (" << kind << "): instruction " << later << " (" << OpcodeName(a.opcode)
      << " on the " << kEngineNames[EngineOf(a)] << ") " << (range.write ? "writes" : "reads")
      << " SRAM [" << range.lo << ", " << range.hi << ") from cycle " << start
      << " while instruction " << earlier << " (" << OpcodeName(b.opcode) << " on the "
      << kEngineNames[EngineOf(b)] << ") uses it until cycle " << until
      << "; a SIGNAL/WAIT pair is missing";
  throw ProgramError(out.str());
}

// Signal times of one semaphore; the n-th smallest is when a WAIT for n is satisfied.
struct Semaphore {
  std::vector<uint64_t> times;
  bool sorted = true;
  void Signal(uint64_t t) {
    if (!times.empty() && t < times.back()) sorted = false;
    times.push_back(t);
  }
  uint64_t Reached(uint32_t count) {
    if (!sorted) {
      std::sort(times.begin(), times.end());
      sorted = true;
    }
    return times[count - 1];  // ParseProgram made sure count <= times.size()
  }
};

}  // namespace

Stats Analyze(const Program& p, std::vector<Event>* timeline) {
  const MachineConfig& m = p.machine;
  Stats stats;
  uint64_t free[kNumEngines] = {0, 0, 0};  // when each engine can issue
  uint64_t done[kNumEngines] = {0, 0, 0};  // when all it issued has completed
  bool primed = false;  // the array's weights were preloaded while the last GEMM streamed
  std::vector<Semaphore> semaphores(kNumSemaphores);
  std::vector<Granule> granules(m.sram_bytes() / kGranule);
  const uint64_t bases[3] = {0, m.input_bytes, uint64_t{m.input_bytes} + m.weight_bytes};

  for (uint32_t i = 0; i < p.code.size(); ++i) {
    const Instruction& in = p.code[i];
    const Engine e = EngineOf(in);
    if (in.opcode == kWait) {
      uint64_t t = semaphores[in.w[0]].Reached(in.w[1]);
      if (timeline) timeline->push_back({free[e], std::max(t, free[e]), std::max(t, free[e])});
      if (t > free[e]) {
        stats.stall[e] += t - free[e];
        free[e] = t;
        if (e == kMxu) primed = false;
      }
      continue;
    }
    if (in.opcode == kSignal) {
      uint64_t t = std::max(free[e], done[e]);
      semaphores[in.w[0]].Signal(t);
      if (timeline) timeline->push_back({t, t, t});
      continue;
    }
    uint64_t busy = 0, latency = 0;
    switch (in.opcode) {
      case kDmaLoad:
      case kDmaStore: {
        DmaView d = Dma(in);
        busy = DmaCycles(m, d);
        latency = m.dma_latency;
        uint64_t bytes = Elements(d.counts, 4) * 4;
        (in.opcode == kDmaLoad ? stats.dram_read_bytes : stats.dram_write_bytes) += bytes;
        break;
      }
      case kDmaFill:
        busy = CeilDiv(Elements(Dma(in).counts, 4) * 4, m.dma_bytes_per_cycle);
        break;
      case kGemm: {
        GemmView g = Gemm(in);
        // Each R x C block of weights streams all M rows; the next block's weights load
        // (R cycles) behind it, so a block takes max(M, R). Without a GEMM just before,
        // the first block's weights load in the open.
        busy = CeilDiv(g.k, m.array_rows) * CeilDiv(g.n, m.array_cols) *
               std::max<uint64_t>(g.m, m.array_rows);
        if (!primed) busy += m.array_rows;
        latency = m.array_rows + m.array_cols;
        stats.macs += uint64_t{g.m} * g.k * g.n;
        primed = true;
        break;
      }
      case kVec: {
        uint64_t n = Elements(Vec(in).counts, 3);
        busy = CeilDiv(n, m.vector_lanes);
        latency = m.vector_latency;
        stats.vector_elements += n;
        break;
      }
      case kPool: {
        PoolView q = Pool(in);
        uint64_t n = uint64_t{q.channels} * q.out_h * q.out_w * q.kh * q.kw;
        busy = CeilDiv(n, m.vector_lanes);
        latency = m.vector_latency;
        stats.vector_elements += n;
        break;
      }
      default:
        break;
    }
    const uint64_t start = free[e];
    const uint64_t complete = start + busy + latency;
    free[e] = start + busy;
    done[e] = std::max(done[e], complete);
    stats.busy[e] += busy;
    stats.instructions[e] += 1;
    if (timeline) timeline->push_back({start, start + busy, complete});

    Range ranges[5];
    int n = Accesses(in, ranges);
    for (int r = 0; r < n; ++r) {  // reads are checked before writes: in-place ops are fine
      const Range& range = ranges[r];
      for (int part = 2; part >= 0; --part) {
        if (range.lo >= bases[part]) {
          stats.sram_peak[part] = std::max(stats.sram_peak[part], range.hi - bases[part]);
          break;
        }
      }
      for (uint64_t g = range.lo / kGranule; g * kGranule < range.hi; ++g) {
        Granule& cell = granules[g];
        if (cell.write_engine >= 0 && cell.write_engine != e && cell.write_done > start) {
          Race(range.write ? "write after write" : "read after write", p, i, cell.writer,
               range, start, cell.write_done);
        }
        if (range.write) {
          for (int f = 0; f < kNumEngines; ++f) {
            if (f != e && cell.read_done[f] > start) {
              Race("write after read", p, i, cell.reader[f], range, start, cell.read_done[f]);
            }
          }
        }
      }
    }
    for (int r = 0; r < n; ++r) {
      const Range& range = ranges[r];
      for (uint64_t g = range.lo / kGranule; g * kGranule < range.hi; ++g) {
        Granule& cell = granules[g];
        if (range.write) {
          cell.write_done = cell.write_engine == e ? std::max(cell.write_done, complete)
                                                   : complete;
          cell.write_engine = static_cast<int8_t>(e);
          cell.writer = i;
        } else if (complete >= cell.read_done[e]) {
          cell.read_done[e] = complete;
          cell.reader[e] = i;
        }
      }
    }
  }
  for (int e = 0; e < kNumEngines; ++e) {
    stats.cycles = std::max({stats.cycles, free[e], done[e]});
  }
  return stats;
}

}  // namespace byoc::simaccel
