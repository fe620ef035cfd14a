// Every tensor of every quantised golden GGUF (written by llama.cpp's quantiser) dequantises
// to within its format's error bound of the same tensor in the f32.gguf of the same folder.
// Bounds are relative RMS error over the whole tensor, 1.4-1.7x the worst observed over the
// 416 tensors (observed maxima: Q8_0 0.0054, Q5_0 0.043, Q4_K 0.072, Q5_K 0.036, Q6_K 0.018;
// F32 tensors are exact). Types absent from the goldens get bounds in the same proportion.
// The low-bit files (README "Low-bit files", 1417 tensors with the above) add Q2_K 0.30, Q3_K 0.15,
// IQ1_S 0.51, IQ1_M 0.48, IQ2_XXS 0.36, IQ2_XS 0.32, IQ2_S 0.26, IQ3_XXS 0.19, IQ3_S 0.17 (bounds
// 1.3-1.5x these). A wrong bit order or scale unpacking gives errors near 1.4 (uncorrelated values
// of the same size) or above, past these.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <set>
#include <vector>

#include "formats/gguf.h"
#include "kernels/kernels.h"
#include "tensor/quants.h"
#include "test_util.h"

namespace owl {
namespace {

double bound_for(DType t) {
  switch (t) {
    case DType::F32:
      return 0.0;
    case DType::F16:
      return 5e-4;
    case DType::BF16:
      return 4e-3;
    case DType::Q8_0:
      return 0.0075;
    case DType::Q6_K:
      return 0.027;
    case DType::Q5_0:
    case DType::Q5_1:
    case DType::Q5_K:
      return 0.06;
    case DType::Q4_0:
    case DType::Q4_1:
    case DType::Q4_K:
    case DType::IQ4_NL:
    case DType::IQ4_XS:
      return 0.125;
    case DType::Q3_K:
      return 0.25;
    case DType::Q2_K:
      return 0.45;
    case DType::IQ3_S:
      return 0.23;
    case DType::IQ3_XXS:
      return 0.27;
    case DType::IQ2_S:
      return 0.36;
    case DType::IQ2_XS:
      return 0.45;
    case DType::IQ2_XXS:
      return 0.5;
    case DType::IQ1_M:
      return 0.65;
    case DType::IQ1_S:
      return 0.7;
    default:
      return -1;
  }
}

TEST(GoldenDequant, EveryQuantisedTensorMatchesF32) {
  const std::string root = test::shared_path("golden");
  std::map<DType, double> worst;
  int files = 0, tensors = 0;
  for (const auto& dir : std::filesystem::directory_iterator(root)) {
    if (!dir.is_directory()) continue;
    const auto f32_path = dir.path() / "f32.gguf";
    if (!std::filesystem::exists(f32_path)) continue;
    auto ref = gguf::File::open(f32_path.string());
    for (const char* q : {"q8_0.gguf", "q4_k_m.gguf", "iq1_s.gguf", "iq1_m.gguf", "iq2_xxs.gguf", "iq2_xs.gguf",
                          "iq2_s.gguf", "iq3_xxs.gguf", "iq3_s.gguf", "q2_k.gguf", "q3_k_m.gguf"}) {
      const auto qpath = dir.path() / q;
      if (!std::filesystem::exists(qpath)) continue;
      ++files;
      auto file = gguf::File::open(qpath.string());
      for (const auto& ti : file->tensor_infos()) {
        SCOPED_TRACE(qpath.string() + " " + ti.name + " " + dtype_name(ti.type));
        const double bound = bound_for(ti.type);
        ASSERT_GE(bound, 0) << "no stated bound for this type";
        const TensorView qv = file->view(ti);
        auto rv = ref->tensor(ti.name);
        ASSERT_TRUE(rv.has_value());
        ASSERT_EQ(rv->type, DType::F32);
        ASSERT_EQ(rv->n_elements(), qv.n_elements());
        const int64_t n = qv.ne[0];
        std::vector<float> row(static_cast<size_t>(n));
        double err = 0, norm = 0;
        for (int64_t r = 0; r < qv.rows(); ++r) {
          kernels::dequantize_row(qv.type, qv.row(r), row.data(), n);
          const float* want = reinterpret_cast<const float*>(rv->row(r));
          for (int64_t i = 0; i < n; ++i) {
            err += (row[i] - want[i]) * static_cast<double>(row[i] - want[i]);
            norm += static_cast<double>(want[i]) * want[i];
          }
        }
        const double rel = norm > 0 ? std::sqrt(err / norm) : std::sqrt(err);
        EXPECT_LE(rel, bound);
        worst[ti.type] = std::max(worst[ti.type], rel);
        ++tensors;
      }
    }
  }
  EXPECT_GE(files, 37);  // q8_0 + q4_k_m of the 8 models (some have only q4_k_m), 9 low-bit files x 3 models
  std::string summary;
  for (auto [t, e] : worst) summary += std::string(dtype_name(t)) + "=" + std::to_string(e) + " ";
  std::printf("worst relative RMS per type over %d tensors: %s\n", tensors, summary.c_str());
  // The golden files must exercise at least these formats.
  for (DType t : {DType::Q8_0, DType::Q4_K, DType::Q6_K, DType::Q2_K, DType::Q3_K, DType::IQ1_S, DType::IQ1_M,
                  DType::IQ2_XXS, DType::IQ2_XS, DType::IQ2_S, DType::IQ3_XXS, DType::IQ3_S})
    EXPECT_TRUE(worst.count(t)) << dtype_name(t);
}

}  // namespace
}  // namespace owl
