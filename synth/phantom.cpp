// Procedural infant-like label map (see phantom.h for the output contract).
//
// Every shape is laid out once in a "canonical" 12-month head (mm, RAS, origin at the grid
// centre) and the map for age A samples it at world position / phantom_scale(A), so the whole
// head grows uniformly; only the thin things that should not grow with the head (cortical
// ribbon, interhemispheric fissure, CSF layer) are set in real voxels. Shapes are evaluated
// at (|x|, y, z) and the side is applied afterwards, which makes the left/right mirror exact.
// Three passes: (1) each voxel gets its structure, or "cortex candidate" in the outer shell of
// the cerebrum; (2) a candidate becomes cortex when cerebral WM lies within the ribbon radius,
// else sulcal CSF, so the ribbon follows the folded WM surface with a constant thickness;
// (3) stray voxels cut off from a compact structure by a carving join their neighbours.
#include "synth/phantom.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/common/error.h"
#include "kernels/common/philox.h"
#include "synth/labels.h"

namespace iss {
namespace {

constexpr float two_pi = 6.28318530717958648f;
constexpr float far_away = 1e30f;  // "radius" of a point culled by a shape's bounding box
constexpr int32_t candidate = -1;  // pass-1 marker: cortex or sulcal CSF, decided in pass 2

// Head size in canonical mm at 12 months, and the grid half-extents that hold it with margin.
constexpr int64_t half_extent[3] = {75, 85, 70};

// Thin structures in real voxels (mm), not scaled with the head.
constexpr float ribbon_radius = 2.5f;     // cortex = within this distance of cerebral WM
constexpr float crown_depth = 2.0f;       // WM depth under a gyral crown (< ribbon: no CSF gaps)
constexpr float fissure_half = 1.0f;      // interhemispheric CSF: |x| < 1 -> two voxels wide
constexpr float csf_layer = 3.0f;         // extra-cerebral CSF around the cerebrum

// Growth curve: 0 at birth, 1 at 12 months; fast early growth, slow after (like head
// circumference charts).
double growth(double age_months) {
    return (1.0 - std::exp(-age_months / 6.0)) / (1.0 - std::exp(-2.0));
}

void check_age(double age_months) {
    ISS_INPUT(std::isfinite(age_months) && age_months >= phantom_min_age_months && age_months <= phantom_max_age_months,
              "phantom: age ", age_months, " months is outside [", phantom_min_age_months, ", ", phantom_max_age_months,
              "]");
}

// A smooth random function of position: a sum of sinusoids with random directions,
// frequencies (cycles per unit of the input coordinates) and phases, scaled to unit variance.
// Cheap, analytic, and identical for a seed on any machine.
struct SineNoise {
    static constexpr int max_terms = 16;
    int terms = 0;
    float k[max_terms][3] = {};
    float phase[max_terms] = {};
    float gain = 0;

    float operator()(float x, float y, float z) const {
        float sum = 0;
        for (int t = 0; t < terms; ++t) sum += std::sin(k[t][0] * x + k[t][1] * y + k[t][2] * z + phase[t]);
        return gain * sum;
    }
    float bound() const { return gain * float(terms); }
};

SineNoise make_noise(uint64_t seed, uint32_t purpose, int terms, float freq_lo, float freq_hi) {
    SineNoise n;
    n.terms = std::min(terms, SineNoise::max_terms);
    n.gain = std::sqrt(2.0f / float(n.terms));  // each sinusoid with a random phase has variance 1/2
    const RandomKey key{seed, 0, purpose};
    for (int t = 0; t < n.terms; ++t) {
        float z[4], u[4];
        random_normal4(key, uint64_t(2 * t), z);  // isotropic direction
        random_uniform4(key, uint64_t(2 * t + 1), u);
        const float norm = std::max(std::sqrt(z[0] * z[0] + z[1] * z[1] + z[2] * z[2]), 1e-6f);
        const float freq = two_pi * (freq_lo + (freq_hi - freq_lo) * u[0]);
        for (int c = 0; c < 3; ++c) n.k[t][c] = z[c] / norm * freq;
        n.phase[t] = two_pi * u[1];
    }
    return n;
}

// An ellipsoid (centre, semi-axes in canonical mm) whose surface is pushed in and out by
// smooth noise of amplitude `amp` (in units of the normalised radius); `shear` tilts it in
// the sagittal plane (the centre's z moves by shear * (y - centre y)).
struct Blob {
    float c[3] = {};
    float a[3] = {1, 1, 1};
    float shear = 0;
    float amp = 0;
    SineNoise noise;

    // Normalised radius minus the noise (< 1 inside), or far_away when the point is surely
    // beyond `limit`, which skips the sinusoids for most of the head.
    float radius(float ax, float y, float z, float limit = 1.0f) const {
        const float qx = (ax - c[0]) / a[0];
        const float qy = (y - c[1]) / a[1];
        const float qz = (z - c[2] - shear * (y - c[1])) / a[2];
        const float reach = limit + amp * noise.bound();
        if (std::fabs(qx) > reach || std::fabs(qy) > reach || std::fabs(qz) > reach) return far_away;
        const float r = std::sqrt(qx * qx + qy * qy + qz * qz);
        if (r > reach) return far_away;
        return r - amp * noise(qx, qy, qz);
    }
    bool inside(float ax, float y, float z) const { return radius(ax, y, z) < 1.0f; }
};

// The shape's axes get a per-seed jitter of +-5% so seeds differ in proportions, not only in
// surface wiggles.
Blob make_blob(uint64_t seed, uint32_t purpose, std::array<float, 3> centre, std::array<float, 3> semi, float amp,
               float shear = 0) {
    Blob b;
    float u[4];
    random_uniform4(RandomKey{seed, 0, purpose}, 1000, u);
    for (int c = 0; c < 3; ++c) {
        b.c[c] = centre[c];
        b.a[c] = semi[c] * (1.0f + 0.1f * (u[c] - 0.5f));
    }
    b.amp = amp;
    b.shear = shear;
    b.noise = make_noise(seed, purpose, 4, 0.3f, 0.7f);  // about one bump per half-axis
    return b;
}

// Philox purposes: blobs use 100 + their (left) label, so each shape has its own stream.
enum Purpose : uint32_t {
    purpose_envelope = 1,
    purpose_folding = 2,
    purpose_myelin = 3,
    purpose_brainstem = 4,
    purpose_cerebellum_core = 6,
    purpose_blob = 100,
};

// All shapes of one phantom, in canonical (12-month) mm; left_label() gives the label of the
// left-hemisphere version of a point (x <= 0), at |x| = ax.
struct Shapes {
    float scale = 1;  // real mm per canonical mm
    bool cerebellar_wm = true;

    Blob third_ventricle, fourth_ventricle, pons, cb_hemisphere, vermis, cb_core;
    Blob lateral_ventricle, inf_lateral_ventricle, caudate, thalamus, pallidum, putamen, accumbens, amygdala,
        hippocampus, ventral_dc;
    SineNoise brainstem_noise, envelope_noise, folding, myelin;

    // Cerebrum: a tapered ellipsoid (narrower in front).
    float env_c[3] = {0, 0, 12};
    float env_a[3] = {57, 70, 47};
    float env_taper = 0.07f;
    float env_amp = 0.03f;
    // Diencephalic core (sagittal ellipse): inside it the hemispheres are joined (corpus
    // callosum, septum, fornix), so there is no medial surface and no fissure.
    float core_c[2] = {-4, 6};
    float core_a[2] = {30, 21};

    float sulcus_depth = 8;     // canonical mm, added to the WM depth along sulcal valleys
    float sulcus_width = 0.4f;  // valley half-width in units of the folding noise (std 1)
    float myelin_threshold = 1;
    float cb_margin = 0.1f;                 // cerebellar CSF margin in normalised radius
    float csf = 3, crown = 2, fissure = 1;  // canonical mm versions of the real constants

    float brainstem_radius(float ax, float y, float z) const {
        // A vertical column from the midbrain (top, z = -10) to the medulla leaving the grid's
        // floor, thickest at the pons (z = -40), leaning forward as it descends.
        const float zn = (z + 40.0f) / 30.0f;
        if (std::fabs(zn) > 1.3f) return far_away;
        const float dz = (z + 40.0f) / 12.0f;
        const float r = 9.0f + 3.0f * std::exp(-dz * dz);
        const float yc = -14.0f + 0.1f * (z + 40.0f);
        const float rad2 = (ax * ax + (y - yc) * (y - yc)) / (r * r);
        if (rad2 > 1.7f) return far_away;
        const float zn2 = zn * zn;
        const float rho = std::sqrt(std::sqrt(rad2 * rad2 + zn2 * zn2));  // rounded cylinder
        return rho - 0.06f * brainstem_noise(ax / 10.0f, y / 10.0f, z / 10.0f);
    }

    float cerebellum_radius(float ax, float y, float z, float limit) const {
        return std::min(cb_hemisphere.radius(ax, y, z, limit), vermis.radius(ax, y, z, limit));
    }

    int32_t left_label(float ax, float y, float z) const;
};

int32_t Shapes::left_label(float ax, float y, float z) const {
    // Midline ventricles first: they carve the structures around them.
    if (ax < fissure && third_ventricle.inside(0, y, z)) return 14;
    if (fourth_ventricle.inside(ax, y, z)) return 15;

    const float bs = brainstem_radius(ax, y, z);
    if (bs < 1.0f) return pons.inside(ax, y, z) ? 170 : 16;

    const float cb = cerebellum_radius(ax, y, z, 1.0f + cb_margin + 0.8f);
    if (cb < 1.0f) {
        if (ax < 5.0f) return 172;  // vermis: the midline strip between the hemispheres
        return cerebellar_wm && cb_core.inside(ax, y, z) ? 7 : 8;
    }
    if (cb < 1.0f + cb_margin) return 24;  // CSF around the cerebellum (tentorium, cisterns)
    const bool low = z < -18.0f;           // below the diencephalon the brainstem lies in CSF
    const float bs_margin = 0.15f;
    if (low && bs < 1.0f + bs_margin) return 24;

    // Deep grey matter and ventricles, in carving order.
    if (lateral_ventricle.inside(ax, y, z)) return 4;
    if (inf_lateral_ventricle.inside(ax, y, z)) return 5;
    if (caudate.inside(ax, y, z)) return 11;
    if (thalamus.inside(ax, y, z)) return 10;
    if (pallidum.inside(ax, y, z)) return 13;
    if (putamen.inside(ax, y, z)) return 12;
    if (accumbens.inside(ax, y, z)) return 26;
    if (amygdala.inside(ax, y, z)) return 18;
    if (hippocampus.inside(ax, y, z)) return 17;
    if (ventral_dc.inside(ax, y, z)) return 28;

    // Cerebrum: depth below the nearest outer surface (convexity, medial surface, tentorium,
    // brainstem cistern), in canonical mm.
    const float taper = 1.0f - env_taper * (y - env_c[1]) / env_a[1];
    const float ex = ax / (env_a[0] * taper), ey = (y - env_c[1]) / env_a[1], ez = (z - env_c[2]) / env_a[2];
    const float r = std::sqrt(ex * ex + ey * ey + ez * ez);
    if (r > 1.3f) return 0;
    const float rn = std::max(r - env_amp * envelope_noise(ex, ey, ez), 1e-3f);
    const float dist = std::sqrt(ax * ax + (y - env_c[1]) * (y - env_c[1]) + (z - env_c[2]) * (z - env_c[2]));
    const float d_env = dist * (1.0f / rn - 1.0f);
    if (d_env < 0) return d_env > -csf ? 24 : 0;

    const float cy = (y - core_c[0]) / core_a[0], cz = (z - core_c[1]) / core_a[1];
    const bool in_core = cy * cy + cz * cz < 1.0f;
    float depth = d_env;
    if (!in_core) depth = std::min(depth, ax - fissure);
    if (cb < far_away) depth = std::min(depth, (cb - 1.0f - cb_margin) * 14.0f);
    if (low && bs < far_away) depth = std::min(depth, (bs - 1.0f - bs_margin) * 10.0f);
    if (depth < 0) return 24;  // interhemispheric fissure

    if (depth < crown + sulcus_depth) {
        // Folding: the WM surface dips along the zero lines of smooth noise on the sphere of
        // directions, so sulci are narrow valleys between broad gyri.
        const float inv = 1.0f / std::max(r, 1e-6f);
        const float g = folding(ex * inv, ey * inv, ez * inv) / sulcus_width;
        if (depth < crown + sulcus_depth * std::exp(-g * g)) return candidate;
    }
    // Less myelinated WM: smooth patches, favouring the frontal lobe (myelinates last).
    const float score = myelin(ax, y, z) + 0.5f * y / env_a[1];
    return score > myelin_threshold ? 21 : 2;
}

Shapes make_shapes(double age_months, uint64_t seed) {
    Shapes s;
    const float g = float(growth(age_months));
    s.scale = float(phantom_scale(age_months));
    s.cerebellar_wm = age_months >= 2.0;

    auto blob = [&](int32_t label, std::array<float, 3> centre, std::array<float, 3> semi, float amp, float shear = 0) {
        return make_blob(seed, purpose_blob + uint32_t(label), centre, semi, amp, shear);
    };
    // Layout in canonical mm: x = distance from the midline, y anterior, z superior.
    s.third_ventricle = blob(14, {0, -6, 2}, {1, 14, 9}, 0.06f);
    s.fourth_ventricle = blob(15, {0, -28, -38}, {5, 3, 7}, 0.06f);
    s.pons = blob(170, {0, -6, -40}, {10, 6, 10}, 0.06f);
    s.cb_hemisphere = blob(8, {19, -45, -37}, {21, 18, 14}, 0.05f);
    s.vermis = blob(172, {0, -45, -36}, {7, 16, 13}, 0.05f);
    // Cerebellar WM appears at about 2 months and grows towards 12.
    const float cb_wm = 0.5f + 0.5f * std::clamp(float(age_months - 2.0) / 10.0f, 0.0f, 1.0f);
    s.cb_core = make_blob(seed, purpose_cerebellum_core, {16, -42, -36}, {8 * cb_wm, 8 * cb_wm, 6 * cb_wm}, 0.15f);
    s.lateral_ventricle = blob(4, {9, -2, 16}, {4.5f, 26, 5.5f}, 0.08f);
    s.inf_lateral_ventricle = blob(5, {28.5f, -14, -10}, {2.6f, 10, 2.6f}, 0.06f, -0.3f);
    s.caudate = blob(11, {13, 12, 12}, {4.5f, 11, 6.5f}, 0.08f);
    s.thalamus = blob(10, {8, -12, 5}, {7, 11, 7}, 0.06f);
    s.pallidum = blob(13, {18, 2, 2}, {3, 7, 5}, 0.06f);
    s.putamen = blob(12, {23, 4, 4}, {4.5f, 14, 8}, 0.06f);
    s.accumbens = blob(26, {11, 16, -1}, {4, 5, 4}, 0.06f);
    s.amygdala = blob(18, {21, 2, -16}, {5, 6, 5}, 0.06f);
    s.hippocampus = blob(17, {24, -16, -14}, {5, 14, 4.5f}, 0.06f, -0.3f);
    s.ventral_dc = blob(28, {7, -9, -8}, {5, 7, 4.5f}, 0.06f);

    s.brainstem_noise = make_noise(seed, purpose_brainstem, 4, 0.3f, 0.6f);
    s.envelope_noise = make_noise(seed, purpose_envelope, 6, 0.5f, 1.0f);
    s.folding = make_noise(seed, purpose_folding, 16, 2.8f, 4.2f);         // gyri about 8 mm wide
    s.myelin = make_noise(seed, purpose_myelin, 8, 1 / 40.0f, 1 / 20.0f);  // patches 10-20 mm

    // Per-seed size of the cerebrum (+-3%).
    float u[4];
    random_uniform4(RandomKey{seed, 0, purpose_envelope}, 1000, u);
    for (int c = 0; c < 3; ++c) s.env_a[c] *= 1.0f + 0.06f * (u[c] - 0.5f);

    // Real-voxel constants in canonical mm; sulci deepen from about 4 mm at birth to 8 mm.
    s.csf = csf_layer / s.scale;
    s.crown = crown_depth / s.scale;
    s.fissure = fissure_half / s.scale;
    s.sulcus_depth = (4.0f + 4.0f * std::min(g, 1.2f)) / s.scale;
    // About half the WM is less myelinated at birth, a tenth at 12 months.
    s.myelin_threshold = -0.2f + 1.5f * g;
    return s;
}

// Carving one shape out of another can leave a few voxels of the carved shape cut off (a
// corner of the caudate beyond the ventricle). Compact structures must be one piece, so every
// 6-connected piece smaller than its label's largest joins its most common neighbour label.
// Mirror-safe: each piece and its mirror image see twin neighbours, and ties are broken by the
// left version of a label (left labels are always smaller than their right twins).
void remove_stray_pieces(LabelMap& map) {
    auto compact = [](int32_t v) {
        return v != 0 && v != 24 && v != 2 && v != 41 && v != 21 && v != 61 && v != 3 && v != 42;
    };
    std::vector<int32_t> piece(map.data.size(), -1);
    std::vector<int64_t> piece_size, stack;
    std::vector<int32_t> piece_label;
    for (int64_t start = 0; start < int64_t(map.data.size()); ++start) {
        const int32_t label = map.data[size_t(start)];
        if (!compact(label) || piece[size_t(start)] >= 0) continue;
        const int32_t id = int32_t(piece_size.size());
        int64_t size = 0;
        stack.assign(1, start);
        piece[size_t(start)] = id;
        while (!stack.empty()) {
            const int64_t v = stack.back();
            stack.pop_back();
            ++size;
            for_each_face_neighbour(map.grid.dim, v, [&](int64_t w) {
                if (map.data[size_t(w)] == label && piece[size_t(w)] < 0) {
                    piece[size_t(w)] = id;
                    stack.push_back(w);
                }
            });
        }
        piece_size.push_back(size);
        piece_label.push_back(label);
    }
    std::vector<int64_t> largest(256, 0);
    for (size_t p = 0; p < piece_size.size(); ++p)
        largest[size_t(piece_label[p])] = std::max(largest[size_t(piece_label[p])], piece_size[p]);

    // Votes of each stray piece's outside neighbours, then one relabel per piece.
    std::vector<std::vector<int64_t>> votes(piece_size.size());
    for (int64_t v = 0; v < int64_t(map.data.size()); ++v) {
        const int32_t p = piece[size_t(v)];
        if (p < 0 || piece_size[size_t(p)] == largest[size_t(piece_label[size_t(p)])]) continue;
        if (votes[size_t(p)].empty()) votes[size_t(p)].assign(256, 0);
        for_each_face_neighbour(map.grid.dim, v, [&](int64_t n) {
            const int32_t w = map.data[size_t(n)];
            if (w != piece_label[size_t(p)] && w >= 0 && w < 256) ++votes[size_t(p)][size_t(w)];
        });
    }
    std::vector<int32_t> target(piece_size.size(), -1);
    for (size_t p = 0; p < votes.size(); ++p) {
        if (votes[p].empty()) continue;
        int32_t best = -1;
        for (int32_t w = 0; w < 256; ++w) {
            if (votes[p][size_t(w)] == 0) continue;
            const auto key = [](int32_t x) { return std::min(x, labels::lr_twin(x)); };
            if (best < 0 || votes[p][size_t(w)] > votes[p][size_t(best)] ||
                (votes[p][size_t(w)] == votes[p][size_t(best)] && key(w) < key(best)))
                best = w;
        }
        target[p] = best;
    }
    for (size_t v = 0; v < map.data.size(); ++v)
        if (piece[v] >= 0 && target[size_t(piece[v])] >= 0) map.data[v] = target[size_t(piece[v])];
}

}  // namespace

double phantom_scale(double age_months) {
    check_age(age_months);
    return 0.8 + 0.2 * growth(age_months);
}

std::array<int64_t, 3> phantom_dims(double age_months) {
    const double f = phantom_scale(age_months);
    std::array<int64_t, 3> dims{};
    for (int c = 0; c < 3; ++c) dims[c] = 2 * int64_t(std::lround(double(half_extent[c]) * f));
    return dims;
}

LabelMap make_phantom(double age_months, uint64_t seed) {
    const Shapes shapes = make_shapes(age_months, seed);
    Grid grid;
    grid.dim = phantom_dims(age_months);
    const int64_t nx = grid.dim[0], ny = grid.dim[1], nz = grid.dim[2];
    // RAS, 1 mm, world origin at the grid centre.
    for (int c = 0; c < 3; ++c) grid.affine.m[c][3] = -0.5 * double(grid.dim[c] - 1);

    // lr_twin as a table: pass 1 calls it for half the voxels.
    std::vector<int32_t> twin(256);
    for (int32_t v = 0; v < 256; ++v) twin[size_t(v)] = labels::lr_twin(v);

    LabelMap base(grid);
    const float inv_scale = 1.0f / shapes.scale;
    const float hx = 0.5f * float(nx - 1), hy = 0.5f * float(ny - 1), hz = 0.5f * float(nz - 1);
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t k = 0; k < nz; ++k) {
        const float z = (float(k) - hz) * inv_scale;
        for (int64_t j = 0; j < ny; ++j) {
            const float y = (float(j) - hy) * inv_scale;
            for (int64_t i = 0; i < nx; ++i) {
                // i - hx is exact (a multiple of 0.5), so voxel i and nx-1-i see the same |x|.
                const float x = (float(i) - hx) * inv_scale;
                int32_t label = shapes.left_label(std::fabs(x), y, z);
                if (x > 0 && label > 0) label = twin[size_t(label)];
                base.at(i, j, k) = label;
            }
        }
    }

    // Pass 2: ribbon offsets within ribbon_radius voxels, nearest first for an early exit.
    struct Offset {
        int di, dj, dk, d2;
    };
    std::vector<Offset> offsets;
    const int reach = int(ribbon_radius);
    for (int dk = -reach; dk <= reach; ++dk)
        for (int dj = -reach; dj <= reach; ++dj)
            for (int di = -reach; di <= reach; ++di) {
                const int d2 = di * di + dj * dj + dk * dk;
                if (d2 > 0 && float(d2) <= ribbon_radius * ribbon_radius) offsets.push_back({di, dj, dk, d2});
            }
    std::stable_sort(offsets.begin(), offsets.end(), [](const Offset& a, const Offset& b) { return a.d2 < b.d2; });

    auto cerebral_wm = [](int32_t v) { return v == 2 || v == 41 || v == 21 || v == 61; };
    LabelMap out = base;
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t k = 0; k < nz; ++k)
        for (int64_t j = 0; j < ny; ++j)
            for (int64_t i = 0; i < nx; ++i) {
                if (base.at(i, j, k) != candidate) continue;
                bool near_wm = false;
                for (const Offset& o : offsets) {
                    const int64_t a = i + o.di, b = j + o.dj, c = k + o.dk;
                    if (a < 0 || b < 0 || c < 0 || a >= nx || b >= ny || c >= nz) continue;
                    if (cerebral_wm(base.at(a, b, c))) {
                        near_wm = true;
                        break;
                    }
                }
                const bool left = 2 * i < nx - 1;
                out.at(i, j, k) = near_wm ? (left ? 3 : 42) : 24;
            }
    remove_stray_pieces(out);
    return out;
}

}  // namespace iss
