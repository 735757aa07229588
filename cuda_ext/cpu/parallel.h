// OpenMP helpers for the CPU kernels (they also build, single-threaded, without OpenMP).
#pragma once

#include <atomic>
#include <cstdint>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace ff {

inline int worker_id() {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

// Striped spin locks: a worker adds one Gaussian's partial gradient (all D channels at once) under the lock of its
// stripe. Contention is rare (workers are on different tiles, hence mostly different Gaussians) and no per-worker
// copy of the [N, D] gradient is needed.
class StripedLocks {
  public:
    static constexpr int kStripes = 4096;
    void lock(int64_t key) {
        std::atomic_flag& f = flags_[key & (kStripes - 1)];
        while (f.test_and_set(std::memory_order_acquire)) {
#if defined(__x86_64__) || defined(__i386__)
            __builtin_ia32_pause();
#endif
        }
    }
    void unlock(int64_t key) { flags_[key & (kStripes - 1)].clear(std::memory_order_release); }

  private:
    std::atomic_flag flags_[kStripes] = {};
};

}  // namespace ff
