// simaccel: functional execution of a validated program, in program order.
//
// Every offset was checked by ParseProgram, so the loops here index without checks. The
// systolic array's GEMM packs its strided operands into dense panels and multiplies those
// with a blocked kernel whose inner loops have fixed trip counts (the compiler vectorises
// them); results are float32 with float32 accumulation, like the array.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "simaccel_program.h"

namespace byoc::simaccel {

namespace {

// Z[P][Q] = X[P][K] * Y[K][Q] for dense row-major panels.
constexpr int kRowBlock = 4;
constexpr int kColBlock = 64;

template <int Cols>
void Panel(int rows, int cols, int k_total, const float* x, const float* y, int ldy,
           float* z, int ldz) {
  float acc[kRowBlock][Cols > 0 ? Cols : kColBlock] = {};
  const int width = Cols > 0 ? Cols : cols;
  for (int k = 0; k < k_total; ++k) {
    const float* yk = y + static_cast<size_t>(k) * ldy;
    for (int r = 0; r < rows; ++r) {
      const float xv = x[static_cast<size_t>(r) * k_total + k];
      float* a = acc[r];
      if constexpr (Cols > 0) {
        for (int q = 0; q < Cols; ++q) a[q] += xv * yk[q];
      } else {
        for (int q = 0; q < width; ++q) a[q] += xv * yk[q];
      }
    }
  }
  for (int r = 0; r < rows; ++r) {
    std::memcpy(z + static_cast<size_t>(r) * ldz, acc[r], sizeof(float) * width);
  }
}

void DenseGemm(int p, int q, int k, const float* x, const float* y, float* z) {
  for (int p0 = 0; p0 < p; p0 += kRowBlock) {
    const int rows = std::min(kRowBlock, p - p0);
    const float* xp = x + static_cast<size_t>(p0) * k;
    float* zp = z + static_cast<size_t>(p0) * q;
    int q0 = 0;
    for (; q0 + kColBlock <= q; q0 += kColBlock) {
      Panel<kColBlock>(rows, kColBlock, k, xp, y + q0, q, zp + q0, q);
    }
    for (; q0 + 16 <= q; q0 += 16) Panel<16>(rows, 16, k, xp, y + q0, q, zp + q0, q);
    if (q0 < q) Panel<0>(rows, q - q0, k, xp, y + q0, q, zp + q0, q);
  }
}

// --- vector unit ------------------------------------------------------------------

// A NaN operand gives NaN, as onnxruntime's Max, Min, Relu and Clip do (std::max and
// std::min return their first operand when the second is NaN, hiding it).
inline float MaxNaN(float a, float b) { return (a > b || a != a) ? a : b; }
inline float MinNaN(float a, float b) { return (a < b || a != a) ? a : b; }

template <int Op>
inline float Apply(float a, float b, float c) {
  if constexpr (Op == kCopy) return a;
  if constexpr (Op == kAdd) return a + b;
  if constexpr (Op == kSub) return a - b;
  if constexpr (Op == kMul) return a * b;
  if constexpr (Op == kFma) return a * b + c;
  if constexpr (Op == kMax) return MaxNaN(a, b);
  if constexpr (Op == kMin) return MinNaN(a, b);
  return 0.0f;
}

template <int A>
inline float Activate(float x, float alpha, float beta) {
  if constexpr (A == kNone) return x;
  // Zero first: on a tie MaxNaN gives its second operand, so -0.0 stays -0.0 as in
  // onnxruntime (and a NaN still comes through).
  if constexpr (A == kRelu) return MaxNaN(0.0f, x);
  if constexpr (A == kLeakyRelu) return x >= 0.0f ? x : alpha * x;
  if constexpr (A == kClip) return MinNaN(MaxNaN(x, alpha), beta);
  if constexpr (A == kSigmoid) return 1.0f / (1.0f + std::exp(-x));
  if constexpr (A == kTanh) return std::tanh(x);
  if constexpr (A == kHardSigmoid) return MaxNaN(0.0f, MinNaN(1.0f, alpha * x + beta));
  if constexpr (A == kHardSwish) {
    return x * MaxNaN(0.0f, MinNaN(1.0f, x * (1.0f / 6.0f) + 0.5f));
  }
  return x;
}

// One row of a VEC: operands are gathered into small local arrays (any strides), combined
// there (a loop the compiler vectorises: locals cannot alias), and scattered back. The
// destination may be one of the sources (accumulation in place): each element is read
// before it is written.
constexpr size_t kChunk = 32;

struct Scratch {  // zeroed once per instruction: a short last chunk computes on zeros
  float a[kChunk] = {}, b[kChunk] = {}, c[kChunk] = {}, r[kChunk] = {};
};

template <int Op, int A>
void VecRow(Scratch& t, size_t len, float* d, size_t sd, const float* a, size_t sa,
            const float* b, size_t sb, const float* c, size_t sc, float alpha, float beta) {
  float *ta = t.a, *tb = t.b, *tc = t.c, *tr = t.r;
  for (size_t i = 0; i < len; i += kChunk) {
    const size_t m = std::min(kChunk, len - i);
    for (size_t j = 0; j < m; ++j) ta[j] = a[(i + j) * sa];
    if constexpr (Op != kCopy) {
      for (size_t j = 0; j < m; ++j) tb[j] = b[(i + j) * sb];
    }
    if constexpr (Op == kFma) {
      for (size_t j = 0; j < m; ++j) tc[j] = c[(i + j) * sc];
    }
    for (size_t j = 0; j < kChunk; ++j) {  // whole chunk: a fixed trip count vectorises
      tr[j] = Activate<A>(Apply<Op>(ta[j], tb[j], tc[j]), alpha, beta);
    }
    if (sd == 1) {
      std::memcpy(d + i, tr, sizeof(float) * m);
    } else {
      for (size_t j = 0; j < m; ++j) d[(i + j) * sd] = tr[j];
    }
  }
}

template <int Op, int A>
void VecLoop(const VecView& v, float* sram) {
  float* dst = sram + v.addr[0] / 4;
  const float* a = sram + v.addr[1] / 4;
  const float* b = sram + v.addr[2] / 4;
  const float* c = sram + v.addr[3] / 4;
  const size_t n0 = v.counts[0], n1 = v.counts[1], n2 = v.counts[2];
  size_t s[4][3];
  for (int o = 0; o < 4; ++o) {
    for (int d = 0; d < 3; ++d) s[o][d] = v.strides[o][d];
  }
  Scratch t;
  for (size_t i0 = 0; i0 < n0; ++i0) {
    for (size_t i1 = 0; i1 < n1; ++i1) {
      VecRow<Op, A>(t, n2, dst + i0 * s[0][0] + i1 * s[0][1], s[0][2],
                    a + i0 * s[1][0] + i1 * s[1][1], s[1][2], b + i0 * s[2][0] + i1 * s[2][1],
                    s[2][2], c + i0 * s[3][0] + i1 * s[3][1], s[3][2], v.alpha, v.beta);
    }
  }
}

template <int Op>
void VecWithAct(uint8_t act, const VecView& v, float* sram) {
  switch (act) {
    case kNone: return VecLoop<Op, kNone>(v, sram);
    case kRelu: return VecLoop<Op, kRelu>(v, sram);
    case kLeakyRelu: return VecLoop<Op, kLeakyRelu>(v, sram);
    case kClip: return VecLoop<Op, kClip>(v, sram);
    case kSigmoid: return VecLoop<Op, kSigmoid>(v, sram);
    case kTanh: return VecLoop<Op, kTanh>(v, sram);
    case kHardSigmoid: return VecLoop<Op, kHardSigmoid>(v, sram);
    default: return VecLoop<Op, kHardSwish>(v, sram);
  }
}

}  // namespace

Machine::Machine(Program program, std::vector<const float*> constants)
    : program_(std::move(program)) {
  stats_ = Analyze(program_);
  sram_.assign(program_.machine.sram_bytes() / 4, 0.0f);
  const size_t n = program_.slots.size();
  scratch_.resize(n);
  dram_.assign(n, nullptr);
  for (size_t s = 0; s < n; ++s) {
    const Slot& slot = program_.slots[s];
    if (slot.kind == kScratch) {
      scratch_[s].assign(slot.elements, 0.0f);
      dram_[s] = scratch_[s].data();
    } else if (slot.kind == kData) {
      dram_[s] = program_.data.data() + slot.data_offset / 4;
    } else if (slot.kind == kConstant) {
      // Never written: ParseProgram refuses stores to anything but outputs and scratch.
      dram_[s] = const_cast<float*>(constants.at(slot.index));
    }
  }
}

uint64_t Machine::InputElements(uint32_t i) const {
  return program_.slots[program_.input_slot[i]].elements;
}
uint64_t Machine::OutputElements(uint32_t i) const {
  return program_.slots[program_.output_slot[i]].elements;
}
uint64_t Machine::ConstantElements(uint32_t i) const {
  return program_.slots[program_.constant_slot[i]].elements;
}

float* Machine::Dram(uint32_t slot) { return dram_[slot]; }

void Machine::Run(const std::vector<const float*>& inputs, const std::vector<float*>& outputs) {
  for (uint32_t i = 0; i < program_.inputs; ++i) {
    dram_[program_.input_slot[i]] = const_cast<float*>(inputs[i]);  // loads only
  }
  for (uint32_t i = 0; i < program_.outputs; ++i) dram_[program_.output_slot[i]] = outputs[i];
  std::fill(sram_.begin(), sram_.end(), 0.0f);  // every run starts from the same state
  for (const Instruction& in : program_.code) Execute(in);
}

void Machine::Execute(const Instruction& in) {
  switch (in.opcode) {
    case kDmaLoad:
    case kDmaStore:
    case kDmaFill:
      return RunDma(in);
    case kGemm:
      return RunGemm(in);
    case kVec:
      return RunVec(in);
    case kPool:
      return RunPool(in);
    default:
      return;  // SIGNAL and WAIT only matter to the timing model
  }
}

void Machine::RunDma(const Instruction& in) {
  DmaView d = Dma(in);
  float* sram = sram_.data() + d.sram / 4;
  const uint32_t* n = d.counts;
  const uint32_t* ss = d.sram_strides;
  if (in.opcode == kDmaFill) {
    for (size_t i0 = 0; i0 < n[0]; ++i0)
      for (size_t i1 = 0; i1 < n[1]; ++i1)
        for (size_t i2 = 0; i2 < n[2]; ++i2) {
          float* row = sram + i0 * ss[0] + i1 * ss[1] + i2 * ss[2];
          for (size_t i3 = 0; i3 < n[3]; ++i3) row[i3 * ss[3]] = d.value;
        }
    return;
  }
  float* dram = Dram(d.slot) + d.dram_offset;
  const uint32_t* ds = d.dram_strides;
  const bool load = in.opcode == kDmaLoad;
  const bool contiguous = ds[3] == 1 && ss[3] == 1;
  for (size_t i0 = 0; i0 < n[0]; ++i0)
    for (size_t i1 = 0; i1 < n[1]; ++i1)
      for (size_t i2 = 0; i2 < n[2]; ++i2) {
        float* s = sram + i0 * ss[0] + i1 * ss[1] + i2 * ss[2];
        float* m = dram + i0 * ds[0] + i1 * ds[1] + i2 * ds[2];
        if (contiguous) {
          // memmove: a fuzzed but valid program may make the two ranges overlap
          if (load) {
            std::memmove(s, m, sizeof(float) * n[3]);
          } else {
            std::memmove(m, s, sizeof(float) * n[3]);
          }
        } else if (load) {
          for (size_t i3 = 0; i3 < n[3]; ++i3) s[i3 * ss[3]] = m[i3 * ds[3]];
        } else {
          for (size_t i3 = 0; i3 < n[3]; ++i3) m[i3 * ds[3]] = s[i3 * ss[3]];
        }
      }
}

void Machine::RunGemm(const Instruction& in) {
  const GemmView g = Gemm(in);
  const float* sram = sram_.data();
  const size_t M = g.m, K = g.k, N = g.n;
  const size_t m_outer = M / g.m_inner, k_outer = K / g.k_inner;
  const float* a = sram + g.a / 4;
  const float* b = sram + g.b / 4;
  // Orient the dense product so its long side is innermost: conv tiles have many rows
  // (pixels), fully connected layers many columns.
  const bool by_rows = M >= N;
  // A as [K][M] (by_rows) or [M][K]; B as [N][K] (by_rows) or [K][N].
  a_pack_.resize(M * K);
  b_pack_.resize(K * N);
  c_pack_.resize(M * N);
  for (size_t ko = 0; ko < k_outer; ++ko) {
    for (size_t ki = 0; ki < g.k_inner; ++ki) {
      const size_t k = ko * g.k_inner + ki;
      const float* ak = a + ko * g.a_k_outer + ki * g.a_k_inner;
      for (size_t mo = 0; mo < m_outer; ++mo) {
        const float* am = ak + mo * g.a_m_outer;
        const size_t m0 = mo * g.m_inner;
        if (by_rows && g.a_m_inner == 1) {  // a row of a stride-1 conv tile: contiguous
          std::memcpy(&a_pack_[k * M + m0], am, sizeof(float) * g.m_inner);
          continue;
        }
        for (size_t mi = 0; mi < g.m_inner; ++mi) {
          a_pack_[by_rows ? k * M + m0 + mi : (m0 + mi) * K + k] = am[mi * g.a_m_inner];
        }
      }
      const float* bk = b + ko * g.b_k_outer + ki * g.b_k_inner;
      for (size_t n = 0; n < N; ++n) b_pack_[by_rows ? n * K + k : k * N + n] = bk[n * g.b_n];
    }
  }
  if (by_rows) {
    DenseGemm(static_cast<int>(N), static_cast<int>(M), static_cast<int>(K), b_pack_.data(),
              a_pack_.data(), c_pack_.data());
  } else {
    DenseGemm(static_cast<int>(M), static_cast<int>(N), static_cast<int>(K), a_pack_.data(),
              b_pack_.data(), c_pack_.data());
  }
  float* c = sram_.data() + g.c / 4;
  const bool accumulate = in.a & 1;
  if (by_rows && g.c_m_inner == 1) {  // conv accumulators: [n][pixels], rows contiguous
    for (size_t n = 0; n < N; ++n) {
      for (size_t mo = 0; mo < m_outer; ++mo) {
        float* out = c + n * g.c_n + mo * g.c_m_outer;
        const float* value = &c_pack_[n * M + mo * g.m_inner];
        if (accumulate) {
          for (size_t mi = 0; mi < g.m_inner; ++mi) out[mi] += value[mi];
        } else {
          std::memcpy(out, value, sizeof(float) * g.m_inner);
        }
      }
    }
    return;
  }
  for (size_t mo = 0; mo < m_outer; ++mo) {
    for (size_t mi = 0; mi < g.m_inner; ++mi) {
      const size_t m = mo * g.m_inner + mi;
      float* cm = c + mo * g.c_m_outer + mi * g.c_m_inner;
      for (size_t n = 0; n < N; ++n) {
        const float value = by_rows ? c_pack_[n * M + m] : c_pack_[m * N + n];
        float& out = cm[n * g.c_n];
        out = accumulate ? out + value : value;
      }
    }
  }
}

void Machine::RunVec(const Instruction& in) {
  const VecView v = Vec(in);
  float* sram = sram_.data();
  switch (in.a) {
    case kCopy: return VecWithAct<kCopy>(in.b, v, sram);
    case kAdd: return VecWithAct<kAdd>(in.b, v, sram);
    case kSub: return VecWithAct<kSub>(in.b, v, sram);
    case kMul: return VecWithAct<kMul>(in.b, v, sram);
    case kFma: return VecWithAct<kFma>(in.b, v, sram);
    case kMax: return VecWithAct<kMax>(in.b, v, sram);
    default: return VecWithAct<kMin>(in.b, v, sram);
  }
}

void Machine::RunPool(const Instruction& in) {
  const PoolView q = Pool(in);
  const float* src = sram_.data() + q.src / 4;
  float* dst = sram_.data() + q.dst / 4;
  const bool average = in.a == kPoolAvg;
  for (size_t c = 0; c < q.channels; ++c) {
    const float* plane = src + c * q.src_c;
    for (int64_t oy = 0; oy < q.out_h; ++oy) {
      // Windows clip to the tile (validated to keep at least one cell).
      const int64_t y0 = oy * q.sh - q.pad_top;
      const int64_t ya = std::max<int64_t>(y0, 0), yb = std::min<int64_t>(y0 + q.kh, q.in_h);
      float* row = dst + c * q.dst_c + oy * q.dst_row;
      for (int64_t ox = 0; ox < q.out_w; ++ox) {
        const int64_t x0 = ox * q.sw - q.pad_left;
        const int64_t xa = std::max<int64_t>(x0, 0), xb = std::min<int64_t>(x0 + q.kw, q.in_w);
        float acc = average ? 0.0f : -std::numeric_limits<float>::infinity();
        for (int64_t y = ya; y < yb; ++y) {
          const float* line = plane + y * q.src_row;
          for (int64_t x = xa; x < xb; ++x) acc = average ? acc + line[x] : MaxNaN(acc, line[x]);
        }
        row[ox] = average ? acc / static_cast<float>((yb - ya) * (xb - xa)) : acc;
      }
    }
  }
}

}  // namespace byoc::simaccel
