// DeepSeek-V2/V3/R1, Kimi K2 and Cogito v2.1 (GGUF arch "deepseek2"; the members
// differ only in metadata). Per layer:
//   x += MLA(RMSNorm(x))                       multi-head latent attention, see mla.h
//   x += FFN(RMSNorm(x))                       SwiGLU for the leading_dense_block_count
//                                              first layers, DeepSeekMoE (moe.h) after
// The KV cache holds one [latent | k_pe] row per token and layer. A NextN/MTP layer (the last
// nextn_predict_layers blocks) is loaded and checked but not run.
#include <algorithm>

#include "base/error.h"
#include "model/blocks.h"
#include "model/mla.h"
#include "model/moe.h"
#include "model/moe_families.h"

namespace owl {
namespace {

class Deepseek2Model : public Model {
 public:
  explicit Deepseek2Model(const ModelSource& src) : Model(src.config()) {
    head_ = blocks::load_output_head(src, config_);
    config_.n_vocab = head_.output.ne[1];
    mla_ = MlaParams::from_config(config_);
    n_trunk_ = config_.n_layer - nextn_predict_layers(src);
    if (config_.n_leading_dense < config_.n_layer) moe_ = MoeOptions::from_config(config_);
    if (config_.n_leading_dense > 0 && config_.n_ff <= 0)
      throw Error("model '" + src.path() + "' has dense layers but no feed_forward_length");
    for (int64_t il = 0; il < config_.n_layer; ++il) {
      Layer L;
      const std::string p = "blk." + std::to_string(il) + ".";
      L.attn_norm = blocks::load_vector(src, p + "attn_norm.weight", config_.n_embd);
      L.attn = load_mla_weights(src, il, mla_);
      L.dense = il < config_.n_leading_dense;
      if (L.dense) {
        L.mlp = blocks::load_mlp(src, config_, il, config_.n_ff);
      } else {
        L.ffn_norm = blocks::load_vector(src, p + "ffn_norm.weight", config_.n_embd);
        // exp_probs_b (V3's e_score_correction_bias) is optional: V2 routes without it.
        L.moe = load_moe_weights(src, il, /*require_bias=*/false);
      }
      layers_.push_back(std::move(L));
    }
  }

  std::vector<KVLayerShape> kv_shape() const override {
    return std::vector<KVLayerShape>(static_cast<size_t>(n_trunk_), {mla_.cache_width(), 0});
  }

  std::span<const float> forward(const Batch& batch, KVStore& kv) override {
    prepare_batch(batch, config_.n_vocab, kv);
    const int64_t n = batch.size(), d = config_.n_embd;
    const int64_t nh = mla_.n_head, cw = mla_.cache_width(), qd = mla_.q_head_dim(), vd = mla_.v_dim;
    float* x = blocks::scratch(x_, n * d);
    float* h = blocks::scratch(h_, n * d);
    float* y = blocks::scratch(y_, n * d);
    float* q = blocks::scratch(q_, n * nh * qd);
    float* rows = blocks::scratch(rows_, n * cw);
    float* heads = blocks::scratch(heads_, n * nh * vd);
    float* gq = blocks::scratch(group_q_, n * nh * qd);
    float* gheads = blocks::scratch(group_heads_, n * nh * vd);
    blocks::embed(head_.token_embd, batch, x);
    const auto groups = sequence_groups(batch);
    for (int64_t il = 0; il < n_trunk_; ++il) {
      const Layer& L = layers_[static_cast<size_t>(il)];
      const int layer = static_cast<int>(il);
      blocks::rms_norm_rows(x, L.attn_norm, h, n, d, config_.rms_eps);
      mla_project(L.attn, mla_, h, batch.positions.data(), n, q, rows, mla_ws_);
      for (int64_t r = 0; r < n; ++r) kv.store(layer, batch.seq_ids[r], batch.positions[r], rows + r * cw, nullptr);
      // Each sequence's rows attend over its cache (which now holds them too), in whichever exact
      // form costs fewer multiply-adds: absorbed for decode, expanded for long prefills.
      for (const auto& g : groups) {
        const int64_t m = static_cast<int64_t>(g.rows.size());
        for (int64_t i = 0; i < m; ++i) std::copy_n(q + g.rows[i] * nh * qd, nh * qd, gq + i * nh * qd);
        const kernels::KVSpan span = kv.keys(layer, g.seq);
        if (mla_prefer_expanded(mla_, g.positions.data(), m))
          mla_attend_expanded(L.attn, mla_, gq, g.positions.data(), m, span, mla_ws_, gheads);
        else
          mla_attend_absorbed(L.attn, mla_, gq, g.positions.data(), m, span, mla_ws_, gheads);
        for (int64_t i = 0; i < m; ++i) std::copy_n(gheads + i * nh * vd, nh * vd, heads + g.rows[i] * nh * vd);
      }
      kernels::matmul(L.attn.output, heads, n, y);
      kernels::add(x, y, x, n * d);

      if (L.dense) {
        blocks::mlp(L.mlp, config_.rms_eps, x, n, mlp_ws_, y);
      } else {
        blocks::rms_norm_rows(x, L.ffn_norm, h, n, d, config_.rms_eps);
        moe_forward(L.moe, moe_, h, n, moe_ws_, y);
      }
      kernels::add(x, y, x, n * d);
    }
    return blocks::output_logits(head_, config_.rms_eps, x, batch, head_ws_);
  }

 private:
  // The rows of each sequence in the batch (in batch order) and their positions.
  struct SequenceRows {
    int32_t seq = 0;
    std::vector<int64_t> rows, positions;
  };
  static std::vector<SequenceRows> sequence_groups(const Batch& batch) {
    std::vector<SequenceRows> groups;
    for (int64_t r = 0; r < batch.size(); ++r) {
      auto it = std::find_if(groups.begin(), groups.end(), [&](const SequenceRows& g) { return g.seq == batch.seq_ids[r]; });
      if (it == groups.end()) it = groups.insert(groups.end(), SequenceRows{batch.seq_ids[r], {}, {}});
      it->rows.push_back(r);
      it->positions.push_back(batch.positions[r]);
    }
    return groups;
  }

  struct Layer {
    std::vector<float> attn_norm;
    MlaWeights attn;
    bool dense = false;
    blocks::MlpWeights mlp;      // dense layers
    std::vector<float> ffn_norm;  // MoE layers
    MoeWeights moe;
  };
  int64_t n_trunk_ = 0;  // layers run; the rest are NextN/MTP layers
  blocks::OutputHead head_;
  MlaParams mla_;
  MoeOptions moe_;
  std::vector<Layer> layers_;
  std::vector<float> x_, h_, y_, q_, rows_, heads_, group_q_, group_heads_;
  MlaScratch mla_ws_;
  blocks::MlpScratch mlp_ws_;
  MoeScratch moe_ws_;
  blocks::HeadScratch head_ws_;
};

}  // namespace

std::unique_ptr<Model> make_deepseek2_family(const ModelSource& source) {
  return std::make_unique<Deepseek2Model>(source);
}

}  // namespace owl
