// One model across the ranks of an MPI job (`mpirun -n N owl <cmd> MODEL --split ...`).
// Every rank opens the same model file and loads only its share; rank 0 runs the command
// (tokenizer, scheduler, sampler, server) and drives the others through Model::forward.
//   --split layers   pipeline: contiguous layer ranges; a batch's chunks of hidden states go
//                    rank 0 -> 1 -> ... -> N-1 -> 0 (rank 0 embeds and applies the output head)
//   --split experts  expert parallel (MoE families): every rank runs attention, router and
//                    shared experts on the whole batch and holds 1/N of every layer's routed
//                    experts; per MoE layer the routed rows' outputs are gathered by all ranks
//                    and summed in the single-process order
// Either way the logits equal the single process's bit for bit. docs/DISTRIBUTED.md has more.
#pragma once
#include <memory>
#include <string>

#include "model/model.h"
#include "model/source.h"

namespace owl::dist {

enum class Split { None, Layers, Experts };

// "" -> None, "layers", "experts"; anything else is an owl::UsageError.
Split parse_split(const std::string& name);

// Pipeline split: the micro-batches a step with several sequences is cut into (rank 0's value
// counts; 1: none; 0, the default: as many as ranks for mixture-of-experts models, none for dense
// ones). See pipeline_pieces (placement.h).
void set_micro_batches(int64_t n);

// Loads src's model for this process. One process (no mpirun, or one rank): the whole model.
// Under mpirun: every rank checks that all opened the same model file, loads its share, and
//   rank 0 gets a Model whose forward() runs the batch on every rank;
//   the other ranks serve those forward calls until rank 0's model is destroyed, then get
//   null (their command should then return).
// A failure on any rank while starting is an owl::Error on rank 0 naming that rank and host
// (the other ranks exit 1 quietly).
std::unique_ptr<Model> load_model(ModelSource& src, Split split);

}  // namespace owl::dist
