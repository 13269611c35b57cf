// CUDA graphs and caching-allocator statistics for clip-core, over libtorch's C++ API, which tch
// does not expose: `at::cuda::CUDAGraph` (capture on a side stream, replay) and the CUDA caching
// allocator's peak-memory counters. A C interface for `src/cuda_graph.rs`; every function catches
// C++ exceptions and reports them as a malloc'd message (freed with clip_cuda_free_message).
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAStream.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <optional>
#include <string>

namespace {

char* copy_message(const std::string& message) {
  char* out = static_cast<char*>(std::malloc(message.size() + 1));
  if (out != nullptr) {
    std::memcpy(out, message.c_str(), message.size() + 1);
  }
  return out;
}

// Runs `body`; on a C++ exception stores its message in `*error` and returns 1.
template <typename F>
int guarded(char** error, F&& body) {
  try {
    body();
    return 0;
  } catch (const c10::Error& e) {
    *error = copy_message(e.what_without_backtrace());
  } catch (const std::exception& e) {
    *error = copy_message(e.what());
  } catch (...) {
    *error = copy_message("unknown C++ exception");
  }
  return 1;
}

// One capturable step: the graph, the side stream that warm-up and capture run on, and the stream
// that was current before entering it.
struct Graph {
  c10::DeviceIndex device;
  at::cuda::CUDAGraph graph;
  c10::cuda::CUDAStream side;
  std::optional<c10::cuda::CUDAStream> previous;
  bool captured = false;

  explicit Graph(c10::DeviceIndex d)
      : device(d), side(c10::cuda::getStreamFromPool(/*isHighPriority=*/false, d)) {}
};

}  // namespace

extern "C" {

void clip_cuda_free_message(char* message) { std::free(message); }

int clip_cuda_graph_new(int device, void** out, char** error) {
  return guarded(error, [&] { *out = new Graph(static_cast<c10::DeviceIndex>(device)); });
}

void clip_cuda_graph_free(void* graph) {
  try {
    delete static_cast<Graph*>(graph);
  } catch (...) {
  }
}

// Makes the graph's side stream current (after the work queued on the current stream).
int clip_cuda_graph_enter_side_stream(void* handle, char** error) {
  return guarded(error, [&] {
    auto* g = static_cast<Graph*>(handle);
    TORCH_CHECK(!g->previous.has_value(), "already on the side stream");
    // Capture and device_synchronize act on the thread's current device: make it the graph's
    // (tch names devices per tensor, so nothing else depends on it).
    c10::cuda::set_device(g->device);
    auto current = c10::cuda::getCurrentCUDAStream(g->device);
    // The side stream must see the work queued so far. A device synchronisation is coarser than
    // an event, but it happens only around warm-up and capture, and needs no call of the CUDA
    // runtime from this file (which would make every binary link libcudart itself).
    c10::cuda::device_synchronize();
    g->previous = current;
    c10::cuda::setCurrentCUDAStream(g->side);
  });
}

// Restores the stream that was current before, which then waits for the side stream's work.
int clip_cuda_graph_leave_side_stream(void* handle, char** error) {
  return guarded(error, [&] {
    auto* g = static_cast<Graph*>(handle);
    TORCH_CHECK(g->previous.has_value(), "not on the side stream");
    auto previous = *g->previous;
    g->previous.reset();
    c10::cuda::set_device(g->device);
    c10::cuda::device_synchronize();
    c10::cuda::setCurrentCUDAStream(previous);
  });
}

// Begins capturing on the side stream (enter it first); the default generator's state is
// registered by capture_begin, so random draws inside advance it at every replay.
int clip_cuda_graph_capture_begin(void* handle, char** error) {
  return guarded(error, [&] {
    auto* g = static_cast<Graph*>(handle);
    TORCH_CHECK(g->previous.has_value(), "capture must run on the side stream");
    g->graph.capture_begin();
  });
}

int clip_cuda_graph_capture_end(void* handle, char** error) {
  return guarded(error, [&] {
    auto* g = static_cast<Graph*>(handle);
    g->graph.capture_end();
    g->captured = true;
  });
}

// Ends a capture that failed part-way (a host synchronisation or an error in the captured code)
// so that the stream and torch's CUDA generator work eagerly again. `capture_end` ends the stream's
// capture even when the capture was invalidated, but then throws before it tells the generator
// that capturing is over; a second, empty capture on a fresh graph does that. The partial graph
// and its memory pool are given up with the graph object.
int clip_cuda_graph_abort_capture(void* handle, char** error) {
  return guarded(error, [&] {
    auto* g = static_cast<Graph*>(handle);
    try {
      g->graph.capture_end();
    } catch (...) {
    }
    at::cuda::CUDAGraph reset_generator;
    reset_generator.capture_begin();
    at::empty({1}, at::TensorOptions().device(at::kCUDA, g->device)).zero_();
    reset_generator.capture_end();
  });
}

// Replays the captured work on the current stream.
int clip_cuda_graph_replay(void* handle, char** error) {
  return guarded(error, [&] {
    auto* g = static_cast<Graph*>(handle);
    TORCH_CHECK(g->captured, "replay before a successful capture");
    g->graph.replay();
  });
}

// The caching allocator's peak of allocated bytes on `device` since the last reset.
int clip_cuda_peak_allocated(int device, uint64_t* bytes, char** error) {
  return guarded(error, [&] {
    auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(
        static_cast<c10::DeviceIndex>(device));
    auto aggregate = static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE);
    *bytes = static_cast<uint64_t>(stats.allocated_bytes[aggregate].peak);
  });
}

int clip_cuda_reset_peak(int device, char** error) {
  return guarded(error, [&] {
    c10::cuda::CUDACachingAllocator::resetPeakStats(static_cast<c10::DeviceIndex>(device));
  });
}

}  // extern "C"
