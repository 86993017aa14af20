# search: library sources, tests and benchmarks of ofa-extract's search part.
