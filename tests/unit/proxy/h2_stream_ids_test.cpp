// SkippedStreamIds: HEADERS on an id the client skipped is a protocol error; on ids it used
// (open or closed) and on new ones it is not.
#include "proxy/h2_stream_ids.h"

#include <gtest/gtest.h>

namespace revgate::proxy {
namespace {

TEST(SkippedStreamIds, InOrderStreamsSkipNothing) {
  SkippedStreamIds ids;
  for (int id = 1; id < 200; id += 2) EXPECT_TRUE(ids.headers_begin(id)) << id;
  EXPECT_TRUE(ids.headers_begin(51)) << "a stream that ran (its trailers, late frames)";
}

TEST(SkippedStreamIds, AnIdSkippedEarlierIsUnexpected) {
  SkippedStreamIds ids;
  EXPECT_TRUE(ids.headers_begin(5));  // 1 and 3 skipped
  EXPECT_FALSE(ids.headers_begin(3));
  EXPECT_FALSE(ids.headers_begin(1));
  EXPECT_TRUE(ids.headers_begin(5)) << "stream 5 itself was used";
  EXPECT_TRUE(ids.headers_begin(7));
  EXPECT_TRUE(ids.headers_begin(13));  // 9 and 11 skipped
  EXPECT_FALSE(ids.headers_begin(9));
  EXPECT_FALSE(ids.headers_begin(11));
  EXPECT_TRUE(ids.headers_begin(7));
  EXPECT_FALSE(ids.headers_begin(3)) << "the first gap is still known";
}

TEST(SkippedStreamIds, OnlyTheMostRecentGapsAreKept) {
  SkippedStreamIds ids;
  int id = 1;
  for (std::size_t gap = 0; gap < SkippedStreamIds::kMaxGaps + 1; ++gap) {
    id += 4;  // skips id - 2
    ASSERT_TRUE(ids.headers_begin(id));
  }
  EXPECT_TRUE(ids.headers_begin(3)) << "the oldest gap was forgotten: nghttp2 ignores the frame";
  EXPECT_FALSE(ids.headers_begin(id - 2)) << "the newest is known";
}

}  // namespace
}  // namespace revgate::proxy
