// The nghttp2 session heap (proxy/h2_memory.h): blocks as malloc's contract says, reuse of
// freed blocks by the thread, and real nghttp2 sessions exchanging a request through it.
#include "proxy/h2_memory.h"

#include <cstdint>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace revgate::proxy {
namespace {

nghttp2_mem& mem() { return *h2_session_memory(); }

TEST(H2Memory, BlocksHoldWhatWasAskedAndAreAligned) {
  for (std::size_t size : {1u, 31u, 32u, 33u, 200u, 4096u, 32768u, 32769u, 1u << 20}) {
    auto* block = static_cast<unsigned char*>(mem().malloc(size, nullptr));
    ASSERT_NE(block, nullptr) << size;
    EXPECT_GE(h2_memory::capacity(block), size);
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(block) % 16, 0u) << size;
    std::memset(block, 0xab, h2_memory::capacity(block));  // all of it is usable
    mem().free(block, nullptr);
  }
  mem().free(nullptr, nullptr);
}

TEST(H2Memory, FreedBlocksAreReusedByTheThread) {
  void* first = mem().malloc(100, nullptr);
  mem().free(first, nullptr);
  const auto cached = h2_memory::cached_blocks();
  EXPECT_GE(cached, 1u);
  void* again = mem().malloc(120, nullptr);  // the same size class (128)
  EXPECT_EQ(again, first);
  EXPECT_EQ(h2_memory::cached_blocks(), cached - 1);
  mem().free(again, nullptr);
}

TEST(H2Memory, WhatAThreadKeepsIsBounded) {
  std::vector<void*> blocks;
  for (int i = 0; i < 4096; ++i) blocks.push_back(mem().malloc(1024, nullptr));
  const auto before = h2_memory::cached_blocks();
  for (void* block : blocks) mem().free(block, nullptr);
  // 256 KiB per size class: 256 blocks of 1 KiB kept, the rest back to malloc
  EXPECT_LE(h2_memory::cached_blocks() - before, 256u);
}

TEST(H2Memory, SizeClassesWasteAtMostAThird) {
  for (std::size_t size = 1; size <= 4096; ++size) {
    void* block = mem().malloc(size, nullptr);
    const std::size_t capacity = h2_memory::capacity(block);
    ASSERT_GE(capacity, size);
    if (size > 32) {
      ASSERT_LT(capacity, size * 3 / 2 + 1) << size;
    }
    mem().free(block, nullptr);
  }
  EXPECT_EQ(mem().malloc(SIZE_MAX - 8, nullptr), nullptr) << "no wrap-around";
}

TEST(H2Memory, CallocZeroesAndReallocKeepsTheContent) {
  auto* zeroed = static_cast<unsigned char*>(mem().calloc(10, 30, nullptr));
  ASSERT_NE(zeroed, nullptr);
  for (int i = 0; i < 300; ++i) ASSERT_EQ(zeroed[i], 0) << i;
  std::memset(zeroed, 0x5a, 300);
  auto* grown = static_cast<unsigned char*>(mem().realloc(zeroed, 50000, nullptr));
  ASSERT_NE(grown, nullptr);
  for (int i = 0; i < 300; ++i) ASSERT_EQ(grown[i], 0x5a) << i;
  EXPECT_GE(h2_memory::capacity(grown), 50000u);
  EXPECT_EQ(mem().realloc(grown, 10, nullptr), grown) << "shrinking keeps the block";
  EXPECT_EQ(mem().calloc(SIZE_MAX / 2, 4, nullptr), nullptr) << "overflow";
  void* fresh = mem().realloc(nullptr, 64, nullptr);
  ASSERT_NE(fresh, nullptr);
  EXPECT_EQ(mem().realloc(fresh, 0, nullptr), nullptr);
  mem().free(grown, nullptr);
}

TEST(H2Memory, ABlockFreedOnAnotherThreadIsFine) {
  void* block = mem().malloc(500, nullptr);
  std::thread([block] {
    mem().free(block, nullptr);
    void* again = mem().malloc(500, nullptr);
    EXPECT_EQ(again, block) << "it joined this thread's lists";
    mem().free(again, nullptr);
  }).join();  // the thread's cache is released with it
}

// A client and a server session on this heap: a GET and its 200 go through, then both are
// deleted (under ASan the heap passes every block to malloc and free, so ASan sees them all).
struct Pipe {
  std::string to_server, to_client;
  int responses = 0;
  int status = 0;
};

TEST(H2Memory, SessionsExchangeARequestThroughIt) {
  Pipe pipe;
  nghttp2_session_callbacks* callbacks = nullptr;
  nghttp2_session_callbacks_new(&callbacks);
  nghttp2_session_callbacks_set_on_frame_recv_callback(
      callbacks, [](nghttp2_session* session, const nghttp2_frame* frame, void* user) {
        auto& p = *static_cast<Pipe*>(user);
        if (nghttp2_session_check_server_session(session) != 0 &&
            frame->hd.type == NGHTTP2_HEADERS && (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
          const nghttp2_nv status[] = {{const_cast<std::uint8_t*>(
                                            reinterpret_cast<const std::uint8_t*>(":status")),
                                        const_cast<std::uint8_t*>(
                                            reinterpret_cast<const std::uint8_t*>("200")),
                                        7, 3, NGHTTP2_NV_FLAG_NONE}};
          nghttp2_submit_response(session, frame->hd.stream_id, status, 1, nullptr);
        } else if (nghttp2_session_check_server_session(session) == 0 &&
                   frame->hd.type == NGHTTP2_HEADERS) {
          ++p.responses;
        }
        return 0;
      });
  nghttp2_session_callbacks_set_on_header_callback(
      callbacks, [](nghttp2_session* session, const nghttp2_frame*, const std::uint8_t* name,
                    std::size_t namelen, const std::uint8_t* value, std::size_t valuelen,
                    std::uint8_t, void* user) {
        if (nghttp2_session_check_server_session(session) == 0 &&
            std::string_view(reinterpret_cast<const char*>(name), namelen) == ":status") {
          static_cast<Pipe*>(user)->status =
              std::stoi(std::string(reinterpret_cast<const char*>(value), valuelen));
        }
        return 0;
      });
  nghttp2_session* client = nullptr;
  nghttp2_session* server = nullptr;
  ASSERT_EQ(nghttp2_session_client_new3(&client, callbacks, &pipe, nullptr, h2_session_memory()), 0);
  ASSERT_EQ(nghttp2_session_server_new3(&server, callbacks, &pipe, nullptr, h2_session_memory()), 0);
  nghttp2_session_callbacks_del(callbacks);
  nghttp2_submit_settings(client, NGHTTP2_FLAG_NONE, nullptr, 0);
  nghttp2_submit_settings(server, NGHTTP2_FLAG_NONE, nullptr, 0);
  auto nv = [](const char* name, const char* value) {
    return nghttp2_nv{const_cast<std::uint8_t*>(reinterpret_cast<const std::uint8_t*>(name)),
                      const_cast<std::uint8_t*>(reinterpret_cast<const std::uint8_t*>(value)),
                      std::strlen(name), std::strlen(value), NGHTTP2_NV_FLAG_NONE};
  };
  const nghttp2_nv request[] = {nv(":method", "GET"), nv(":scheme", "http"),
                                nv(":authority", "hello.test"), nv(":path", "/")};
  for (int i = 0; i < 50; ++i) {
    ASSERT_GT(nghttp2_submit_request(client, nullptr, request, 4, nullptr, nullptr), 0);
  }
  auto pump = [](nghttp2_session* from, nghttp2_session* to) {
    const std::uint8_t* data = nullptr;
    ssize_t n = 0;
    bool moved = false;
    while ((n = nghttp2_session_mem_send(from, &data)) > 0) {
      EXPECT_EQ(nghttp2_session_mem_recv(to, data, static_cast<std::size_t>(n)), n);
      moved = true;
    }
    return moved;
  };
  for (int round = 0; round < 20 && (pump(client, server) | pump(server, client)); ++round) {
  }
  EXPECT_EQ(pipe.responses, 50);
  EXPECT_EQ(pipe.status, 200);
  nghttp2_session_del(client);
  nghttp2_session_del(server);
}

}  // namespace
}  // namespace revgate::proxy
