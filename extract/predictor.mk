# predictor: library sources, tests and benchmarks of ofa-extract's predictor part.
