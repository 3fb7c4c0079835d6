"""`fastlstm bench`: fastlstm's backends side by side with the NumPy reference, PyTorch and
ONNX Runtime on the standard configs, plus a scaling study.

configs.py   the workloads (shapes, FLOP counts)
timing.py    interleaved medians (A B A B ...) and the machine's GEMM peak
runners.py   one object per implementation: forward(), train(), output()
peers.py     PyTorch and ONNX Runtime runners (optional, imported only when asked for)
suite.py     checks every implementation against the reference, then times them
report.py    tables, JSON, plot
scaling.py   time against threads and against B, T, H
isa.py       --isa: one kernel variant, the other libraries held to its instruction sets
"""
