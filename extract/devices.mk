# devices: library sources, tests and benchmarks of ofa-extract's devices part.
