"""Development tools, never imported by production code: the embedded broker, child-process
runners, the hospital simulator and its publisher, the demo and its views, the paging report,
the in-memory worker and the small aiokafka helpers of tests and benchmarks."""
