// Kernels write every scratch element they read; zeroing stackalloc'd tiles would only cost time
// (and a helper call that forces the JIT to spill vector accumulators around it).
[module: System.Runtime.CompilerServices.SkipLocalsInit]
