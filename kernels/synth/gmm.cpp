#include "kernels/synth/gmm.h"

#include <algorithm>

#include "kernels/common/device.h"
#include "kernels/common/error.h"
#include "kernels/common/launch.h"  // ISS_CUDA_ONLY
#include "kernels/common/x86_simd.h"

namespace iss {

namespace {

// Philox4x32-10 over a run of counters, L::width at a time in vector lanes (random_bits'
// integers), L::chains vectors a loop with their rounds side by side (the rounds are a chain
// of dependent multiplies: two chains give the core work to overlap). Written out because the
// compiler's loop widens each 32x32-bit product to a 64-bit multiply and shuffles its halves
// back; vpmuludq multiplies the 32-bit halves directly, one for the even and one for the odd
// lanes.
template <class L>
void run_bits_in_lanes(const RandomKey& key, int64_t first, uint32_t (*bits)[gmm_cpu_run]) {
    constexpr int K = L::chains;  // counter vectors a loop, their rounds side by side
    static_assert(gmm_cpu_run % (L::width * K) == 0, "a run is whole vectors");
    using V = typename L::V;
    const V m0 = L::set1(philox_m0), m1 = L::set1(philox_m1);
    for (int64_t b = 0; b < gmm_cpu_run; b += L::width * K) {
        // The counter (index low, index high, sample, purpose), for the indices first + b + lane.
        V c0[K], c1[K], c2[K], c3[K];
        for (int k = 0; k < K; ++k) {
            L::counters(uint64_t(first + b + k * L::width), c0[k], c1[k]);
            c2[k] = L::set1(key.sample);
            c3[k] = L::set1(key.purpose);
        }
        uint32_t key0 = uint32_t(key.seed), key1 = uint32_t(key.seed >> 32);
        for (int round = 0; round < 10; ++round) {
            for (int k = 0; k < K; ++k) {
                V hi0, lo0, hi1, lo1;
                L::mul_hi_lo(c0[k], m0, hi0, lo0);
                L::mul_hi_lo(c2[k], m1, hi1, lo1);
                c0[k] = L::xor3(hi1, c1[k], L::set1(key0));
                c1[k] = lo1;
                c2[k] = L::xor3(hi0, c3[k], L::set1(key1));
                c3[k] = lo0;
            }
            key0 += philox_w0;
            key1 += philox_w1;
        }
        for (int k = 0; k < K; ++k) {
            L::store(bits[0] + b + k * L::width, c0[k]);
            L::store(bits[1] + b + k * L::width, c1[k]);
            L::store(bits[2] + b + k * L::width, c2[k]);
            L::store(bits[3] + b + k * L::width, c3[k]);
        }
    }
}

#if defined(__AVX512F__)
struct Avx512Lanes {
    using V = __m512i;
    static constexpr int width = 16;
    static constexpr int chains = 1;  // (not measured with more: this path was last tuned on a Xeon)
    static V set1(uint32_t x) { return _mm512_set1_epi32(int32_t(x)); }
    static V xor3(V a, V b, V c) { return _mm512_xor_si512(_mm512_xor_si512(a, b), c); }
    static void store(uint32_t* to, V v) { _mm512_storeu_si512(to, v); }
    static void counters(uint64_t index, V& low, V& high) {
        const V base = set1(uint32_t(index));
        low = _mm512_add_epi32(base, _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0));
        const __mmask16 carry = _mm512_cmplt_epu32_mask(low, base);
        high = set1(uint32_t(index >> 32));
        high = _mm512_mask_add_epi32(high, carry, high, set1(1));
    }
    static void mul_hi_lo(V x, V m, V& hi, V& lo) {
        const V even = _mm512_mul_epu32(x, m), odd = _mm512_mul_epu32(_mm512_srli_epi64(x, 32), m);
        hi = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(even, 32), odd);
        lo = _mm512_mask_blend_epi32(0xAAAA, even, _mm512_slli_epi64(odd, 32));
    }
};

void run_bits(const RandomKey& key, int64_t first, uint32_t (*bits)[gmm_cpu_run]) {
    run_bits_in_lanes<Avx512Lanes>(key, first, bits);
}
#elif defined(ISS_X86_AVX2)
struct Avx2Lanes {
    using V = __m256i;
    static constexpr int width = 8;
    static constexpr int chains = 2;  // (GMM 3.93-3.98 -> 3.78-3.83 ms on a Zen 2 EPYC; 4: 4.01-4.02)
    static V set1(uint32_t x) { return _mm256_set1_epi32(int32_t(x)); }
    static V xor3(V a, V b, V c) { return _mm256_xor_si256(_mm256_xor_si256(a, b), c); }
    static void store(uint32_t* to, V v) { _mm256_storeu_si256(reinterpret_cast<V*>(to), v); }
    static void counters(uint64_t index, V& low, V& high) {
        const V base = set1(uint32_t(index));
        low = _mm256_add_epi32(base, _mm256_set_epi32(7, 6, 5, 4, 3, 2, 1, 0));
        // low < base, unsigned (AVX2 compares signed: flip the sign bits): then 0xFFFFFFFF = -1.
        const V sign = set1(0x80000000u);
        const V carry = _mm256_cmpgt_epi32(_mm256_xor_si256(base, sign), _mm256_xor_si256(low, sign));
        high = _mm256_sub_epi32(set1(uint32_t(index >> 32)), carry);
    }
    static void mul_hi_lo(V x, V m, V& hi, V& lo) {
        const V even = _mm256_mul_epu32(x, m), odd = _mm256_mul_epu32(_mm256_srli_epi64(x, 32), m);
        hi = _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
        lo = _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
    }
};

void run_bits(const RandomKey& key, int64_t first, uint32_t (*bits)[gmm_cpu_run]) {
    run_bits_in_lanes<Avx2Lanes>(key, first, bits);
}
#else
void run_bits(const RandomKey& key, int64_t first, uint32_t (*bits)[gmm_cpu_run]) {
#pragma omp simd
    for (int64_t b = 0; b < gmm_cpu_run; ++b) {
        const Philox4 r = random_bits(key, uint64_t(first + b));
        for (int w = 0; w < 4; ++w) bits[w][b] = r.v[w];
    }
}
#endif

}  // namespace

void gmm_run_bits_cpu(const RandomKey& key, int64_t first, uint32_t (*bits)[gmm_cpu_run]) { run_bits(key, first, bits); }

namespace {

// Painting a run of voxels: GmmBody's operations, the tables' entries looked up per voxel.
// The targets' table is widened to int32, so that the loop vectorises (a gather of 32-bit words;
// there is none of bytes).
struct PaintTables {
    const GmmArgs& a;
    int32_t target_of[max_generation_labels + 1];
    explicit PaintTables(const GmmArgs& args) : a(args) {
        for (int g = 0; g <= max_generation_labels; ++g) target_of[g] = a.target_of[g];
    }
    void paint(const uint8_t* __restrict generation, const float* __restrict z, int32_t voxels, float* __restrict image,
               uint8_t* __restrict target) const {
#pragma omp simd
        for (int32_t e = 0; e < voxels; ++e) image[e] = painted(a, generation[e], z[e]);
        if (!target) return;
#pragma omp simd
        for (int32_t e = 0; e < voxels; ++e) target[e] = uint8_t(target_of[generation[e]]);
    }
};

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#define ISS_GMM_PERMUTED_TABLES 1
// Whether every index of the run is below 64: no byte has either of its top two bits set.
bool all_below_64(const uint8_t* indices, int32_t n) {
    __m512i bits = _mm512_setzero_si512();
    for (int32_t e = 0; e < n; e += 64) {
        const __mmask64 lanes = n - e >= 64 ? ~__mmask64(0) : (__mmask64(1) << (n - e)) - 1;
        bits = _mm512_or_si512(bits, _mm512_maskz_loadu_epi8(lanes, indices + e));
    }
    return _mm512_test_epi8_mask(bits, _mm512_set1_epi8(char(0xC0))) == 0;
}

// PaintTables where every generation index of the run is below 64 (the presets have 43): each table's
// first 64 entries held in four vectors, a look-up is two two-vector permutes and a blend in place
// of a gather, which took a third of the stage (3.1-3.4 against 2.2 ms without look-ups).
struct PaintTables64 {
    __m512 mean[4], std[4];
    __m512i target_of[4];
    explicit PaintTables64(const PaintTables& tables) {
        const GmmArgs& a = tables.a;
        for (int part = 0; part < 4; ++part) {
            mean[part] = _mm512_loadu_ps(a.mean + 16 * part);
            std[part] = _mm512_loadu_ps(a.std + 16 * part);
            target_of[part] = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a.target_of + 16 * part)));
        }
    }
    // Entries 0-31 from the first two vectors, 32-63 from the last two (bit 5 of the index).
    static __mmask16 upper(__m512i g) { return _mm512_test_epi32_mask(g, _mm512_set1_epi32(32)); }
    static __m512 look_up(const __m512 t[4], __m512i g) {
        return _mm512_mask_blend_ps(upper(g), _mm512_permutex2var_ps(t[0], g, t[1]), _mm512_permutex2var_ps(t[2], g, t[3]));
    }
    static __m512i look_up(const __m512i t[4], __m512i g) {
        return _mm512_mask_blend_epi32(upper(g), _mm512_permutex2var_epi32(t[0], g, t[1]),
                                       _mm512_permutex2var_epi32(t[2], g, t[3]));
    }
    void paint(const uint8_t* generation, const float* z, int32_t voxels, float* image, uint8_t* target) const {
        for (int32_t e = 0; e < voxels; e += 16) {
            const __mmask16 lanes = voxels - e >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (voxels - e)) - 1);
            const __m512i g = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(lanes, generation + e));
            // fmaf(std[g], z, mean[g]), as painted().
            const __m512 value = _mm512_fmadd_ps(look_up(std, g), _mm512_maskz_loadu_ps(lanes, z + e), look_up(mean, g));
            _mm512_mask_storeu_ps(image + e, lanes, value);
            if (target) _mm512_mask_cvtepi32_storeu_epi8(target + e, lanes, look_up(target_of, g));
        }
    }
    // Paints the run where every index of it is below 64 and says so; else paints nothing.
    bool paint_if_below_64(const uint8_t* generation, const float* z, int32_t voxels, float* image,
                           uint8_t* target) const {
        if (!all_below_64(generation, voxels)) return false;
        paint(generation, z, voxels, image, target);
        return true;
    }
};
#elif defined(ISS_X86_AVX2)
#define ISS_GMM_PERMUTED_TABLES 1
// The least of 8, 16, 32 and 64 that bounds every index of the run, or 0 if none does: by the
// OR of its bytes.
int indices_below(const uint8_t* indices, int32_t n) {
    __m256i bits = _mm256_setzero_si256();
    int32_t e = 0;
    for (; e + 32 <= n; e += 32)
        bits = _mm256_or_si256(bits, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(indices + e)));
    uint8_t rest = 0;
    for (; e < n; ++e) rest |= indices[e];
    const __m128i half = _mm_or_si128(_mm256_castsi256_si128(bits), _mm256_extracti128_si256(bits, 1));
    const __m128i quarter = _mm_or_si128(half, _mm_srli_si128(half, 8));
    uint64_t word = uint64_t(_mm_cvtsi128_si64(quarter));
    word |= word >> 32;
    word |= word >> 16;
    word |= word >> 8;
    const unsigned all = unsigned(word & 0xff) | rest;
    return all < 8 ? 8 : all < 16 ? 16 : all < 32 ? 32 : all < 64 ? 64 : 0;
}

// The AVX-512 path's PaintTables64 in AVX2, whose gathers are slow: each float table's first
// 64 entries in eight vectors, a look-up eight permutes (by the index's low 3 bits) and a tree
// of blends by its bits 3, 4 and 5; the targets' bytes in four 16-byte vectors, 32 look-ups four
// byte shuffles (low 4 bits) and blends by bits 4 and 5 (the 32 indices read once as bytes for
// those, and 8 at a time widened to 32 bits for the floats). A run whose indices are all below 8, 16 or
// 32 (the background, or a few structures: 11% off the stage in the infant preset) looks its
// floats up in the first 1, 2 or 4 vectors only. Voxels past the last whole 32 take
// PaintTables' loop.
struct PaintTables64 {
    const PaintTables& general;  // for the voxels past the last whole 32
    __m256 mean[8], std[8];
    __m256i target_of[4];
    explicit PaintTables64(const PaintTables& tables) : general(tables) {
        for (int part = 0; part < 8; ++part) {
            mean[part] = _mm256_loadu_ps(tables.a.mean + 8 * part);
            std[part] = _mm256_loadu_ps(tables.a.std + 8 * part);
        }
        for (int part = 0; part < 4; ++part)
            target_of[part] = _mm256_broadcastsi128_si256(
                _mm_loadu_si128(reinterpret_cast<const __m128i*>(tables.a.target_of + 16 * part)));
    }
    // blendv takes each lane's top bit: bit b of the index shifted up to bit 31 (or, for bytes
    // shifted in 16-bit lanes, to bit 7 of each byte).
    // Indices below 8 * Parts: Parts permutes, and blends by the bits above the low 3 that
    // those indices can have.
    template <int Parts>
    static __m256 look_up(const __m256 t[8], __m256i g) {
        __m256 level[Parts];
        for (int p = 0; p < Parts; ++p) level[p] = _mm256_permutevar8x32_ps(t[p], g);
        int count = Parts;
        for (int bit = 3; count > 1; ++bit, count /= 2) {
            const __m256 select = _mm256_castsi256_ps(_mm256_slli_epi32(g, 31 - bit));
            for (int p = 0; p < count / 2; ++p) level[p] = _mm256_blendv_ps(level[2 * p], level[2 * p + 1], select);
        }
        return level[0];
    }
    __m256i targets(__m256i g) const {
        const __m256i bit4 = _mm256_slli_epi16(g, 3);
        const __m256i low =
            _mm256_blendv_epi8(_mm256_shuffle_epi8(target_of[0], g), _mm256_shuffle_epi8(target_of[1], g), bit4);
        const __m256i high =
            _mm256_blendv_epi8(_mm256_shuffle_epi8(target_of[2], g), _mm256_shuffle_epi8(target_of[3], g), bit4);
        return _mm256_blendv_epi8(low, high, _mm256_slli_epi16(g, 2));
    }
    // Paints the run where every index of it is below 64 and says so; else paints nothing.
    bool paint_if_below_64(const uint8_t* generation, const float* z, int32_t voxels, float* image,
                           uint8_t* target) const {
        switch (indices_below(generation, voxels)) {
            case 8: paint<1>(generation, z, voxels, image, target); return true;
            case 16: paint<2>(generation, z, voxels, image, target); return true;
            case 32: paint<4>(generation, z, voxels, image, target); return true;
            case 64: paint<8>(generation, z, voxels, image, target); return true;
            default: return false;
        }
    }
    // The run, its indices below 8 * Parts.
    template <int Parts>
    void paint(const uint8_t* generation, const float* z, int32_t voxels, float* image, uint8_t* target) const {
        const int32_t whole = voxels - voxels % 32;
        for (int32_t e = 0; e < whole; e += 32) {
            const __m256i g32 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(generation + e));
            for (int part = 0; part < 4; ++part) {
                const __m256i g =
                    _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(generation + e + 8 * part)));
                // fmaf(std[g], z, mean[g]), as painted().
                const __m256 value =
                    _mm256_fmadd_ps(look_up<Parts>(std, g), _mm256_loadu_ps(z + e + 8 * part), look_up<Parts>(mean, g));
                _mm256_storeu_ps(image + e + 8 * part, value);
            }
            if (target) _mm256_storeu_si256(reinterpret_cast<__m256i*>(target + e), targets(g32));
        }
        general.paint(generation + whole, z + whole, voxels - whole, image + whole, target ? target + whole : nullptr);
    }
};

#endif

// The CPU path: runs of gmm_cpu_run blocks, their normals drawn in two vectorised loops (the same
// Philox and Box-Muller operations as random_normal4) in voxel order, then painted in another.
void paint_gmm_cpu(const GmmArgs& a) {
    const int64_t blocks = (a.count + 3) / 4;
    const PaintTables tables(a);
#if defined(ISS_GMM_PERMUTED_TABLES)
    const PaintTables64 tables64(tables);
#endif
#pragma omp parallel for schedule(static)
    for (int64_t first = 0; first < blocks; first += gmm_cpu_run) {
        const int32_t n = int32_t(std::min(gmm_cpu_run, blocks - first));
        float z[4 * gmm_cpu_run];
        uint32_t bits[4][gmm_cpu_run];
        run_bits(a.key, first, bits);
#pragma omp simd
        for (int32_t b = 0; b < n; ++b) {
            const NormalPair p = box_muller(bits[0][b], bits[1][b]), q = box_muller(bits[2][b], bits[3][b]);
            z[4 * b] = p.z0;
            z[4 * b + 1] = p.z1;
            z[4 * b + 2] = q.z0;
            z[4 * b + 3] = q.z1;
        }
        const int64_t start = first * 4;
        const int32_t voxels = int32_t(std::min(a.count, (first + n) * 4) - start);
        const uint8_t* generation = a.generation + start;
        uint8_t* target = a.target ? a.target + start : nullptr;
#if defined(ISS_GMM_PERMUTED_TABLES)
        if (tables64.paint_if_below_64(generation, z, voxels, a.image + start, target)) continue;
#endif
        tables.paint(generation, z, voxels, a.image + start, target);
    }
}

}  // namespace

void paint_gmm(DeviceContext& ctx, const GmmArgs& a) {
    ISS_REQUIRE(a.generation && a.image, "paint_gmm: null label or image pointer");
    ISS_REQUIRE(a.count >= 0, "paint_gmm: negative voxel count");
    if (ctx.is_cuda()) {
        ISS_CUDA_ONLY("paint_gmm", paint_gmm_cuda(ctx, a));
        return;
    }
    paint_gmm_cpu(a);
}

}  // namespace iss
