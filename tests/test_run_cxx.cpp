// SPDX-License-Identifier: MIT
// test_run_cxx.cpp - an ordinary C++ program that test_run.sh runs under uzram-run: aligned new
// for every power-of-two size and alignment 16 B..64 KiB, containers and exceptions across
// threads. Exit 0 pass, 1 fail.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #c);             \
            std::exit(1);                                                                          \
        }                                                                                          \
    } while (0)

int main()
{
    for (std::size_t al = 16; al <= 65536; al *= 2)
        for (std::size_t sz = 16; sz <= 65536; sz *= 2) {
            void *p = ::operator new(sz, std::align_val_t(al));
            CHECK(reinterpret_cast<std::uintptr_t>(p) % al == 0);
            std::memset(p, 0x3c, sz);
            ::operator delete(p, std::align_val_t(al));
        }
    struct alignas(256) Big {
        char b[512];
    };
    std::vector<Big *> bigs;
    for (int i = 0; i < 1000; i++) {
        bigs.push_back(new Big);
        CHECK(reinterpret_cast<std::uintptr_t>(bigs.back()) % 256 == 0);
    }
    for (Big *b : bigs)
        delete b;

    std::vector<std::thread> ts;
    std::vector<std::map<int, std::string>> maps(8);
    for (int t = 0; t < 8; t++)
        ts.emplace_back([t, &maps] {
            for (int i = 0; i < 20000; i++)
                maps[t][i] = std::to_string(i * 7 + t) + std::string(40, 'x');
            for (int i = 0; i < 200; i++) {
                try {
                    throw std::runtime_error("thrown in thread " + std::to_string(t));
                } catch (const std::runtime_error &e) {
                    CHECK(std::string(e.what()).find("thread") != std::string::npos);
                }
            }
        });
    for (auto &t : ts)
        t.join();
    ts.clear();
    // Freed on other threads than the ones that allocated.
    for (int t = 0; t < 8; t++)
        ts.emplace_back([t, &maps] {
            auto &m = maps[(t + 1) % 8];
            for (int i = 0; i < 20000; i++)
                CHECK(m[i] == std::to_string(i * 7 + (t + 1) % 8) + std::string(40, 'x'));
            m.clear();
        });
    for (auto &t : ts)
        t.join();
    std::puts("cxx: ok");
    return 0;
}
