// Scheduler bookkeeping without a model: slot choice, prefix reuse, KV budget, chunked prefill.
#include "runtime/scheduler.h"

#include "base/error.h"

#include <gtest/gtest.h>

namespace owl {
namespace {

SchedulerOptions opts(int slots, int64_t ctx, int64_t budget = 0, int64_t chunk = 256) {
  SchedulerOptions o;
  o.n_slots = slots;
  o.n_ctx = ctx;
  o.kv_budget_tokens = budget;
  o.page_tokens = 16;
  o.prefill_chunk = chunk;
  return o;
}

TEST(Scheduler, ReusesTheLongestCachedPrefixButReevaluatesTheLastPromptToken) {
  Scheduler s(opts(2, 256));
  std::vector<int32_t> a = {1, 2, 3, 4, 5, 6};
  auto p = s.place(a, 20);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->reused, 0);
  s.append(p->slot, a);
  s.append(p->slot, std::vector<int32_t>{7, 8});  // generated tokens are cached too
  s.release(p->slot, true);

  std::vector<int32_t> b = {1, 2, 3, 4, 9};
  auto q = s.place(b, 20);
  ASSERT_TRUE(q);
  EXPECT_EQ(q->slot, p->slot);
  EXPECT_EQ(q->reused, 4);
  EXPECT_EQ(s.tokens(q->slot), (std::vector<int32_t>{1, 2, 3, 4}));  // cut to the shared prefix
  s.release(q->slot, true);

  // The same prompt again: all but its last token come from the cache.
  auto r = s.place(b, 20);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->reused, 4);
}

TEST(Scheduler, BusySlotsAreNeverShared) {
  Scheduler s(opts(2, 256));
  std::vector<int32_t> a = {1, 2, 3};
  auto p1 = s.place(a, 10), p2 = s.place(a, 10);
  ASSERT_TRUE(p1 && p2);
  EXPECT_NE(p1->slot, p2->slot);
  EXPECT_FALSE(s.place(a, 10));  // both slots busy
  EXPECT_EQ(s.busy_slots(), 2);
  s.release(p1->slot, false);
  EXPECT_TRUE(s.place(a, 10));
}

TEST(Scheduler, BudgetQueuesAndEvictsIdleCachesLeastRecentlyUsedFirst) {
  Scheduler s(opts(3, 256, /*budget=*/64));
  EXPECT_EQ(s.budget_tokens(), 64);
  EXPECT_TRUE(s.could_fit(64));
  EXPECT_FALSE(s.could_fit(65));
  std::vector<int32_t> a(20, 1), b(20, 2), c(20, 3);
  auto pa = s.place(a, 32);  // 2 pages
  ASSERT_TRUE(pa);
  auto pb = s.place(b, 32);
  ASSERT_TRUE(pb);
  EXPECT_FALSE(s.place(c, 32));  // budget full: wait
  s.append(pa->slot, a);
  s.release(pa->slot, true);  // a stays cached (20 tokens -> 2 pages)
  auto pc = s.place(c, 32);   // needs a's room: its cache is evicted
  ASSERT_TRUE(pc);
  EXPECT_EQ(pc->reused, 0);
  EXPECT_LE(s.committed_tokens(), 64);
  if (pc->slot != pa->slot) {
    EXPECT_EQ(pc->evicted, (std::vector<int>{pa->slot}));
  }
  EXPECT_TRUE(s.tokens(pa->slot).empty());
}

TEST(Scheduler, PlanGivesDecodersOneRowAndSplitsThePrefillChunk) {
  Scheduler s(opts(4, 4096, 0, /*chunk=*/100));
  std::vector<int64_t> need = {1, 300, 1, 50};
  std::vector<uint8_t> decoding = {1, 0, 1, 0};
  auto rows = s.plan(need, decoding);
  EXPECT_EQ(rows, (std::vector<int64_t>{1, 100, 1, 0}));  // the long prompt takes the chunk, FIFO
  need = {1, 30, 1, 50};
  rows = s.plan(need, decoding);
  EXPECT_EQ(rows, (std::vector<int64_t>{1, 30, 1, 50}));
}

TEST(Scheduler, RejectsNonsenseOptions) {
  EXPECT_THROW(Scheduler(opts(0, 256)), Error);
  EXPECT_THROW(Scheduler(opts(1, 1)), Error);
}

}  // namespace
}  // namespace owl
