"""`fastlstm bench`: fastlstm's backends side by side with the NumPy reference, PyTorch and
ONNX Runtime on the standard configs, plus a scaling study.

configs.py     the workloads (shapes, FLOP counts)
runners.py     one object per implementation: forward(), train(), step(), output()
peers.py       PyTorch and ONNX Runtime runners (optional, imported only when asked for)
worker.py      one implementation's process: checks, then timed calls on command
pool.py        the parent's side of the workers: commands, time limits, clear errors
suite.py       checks every worker against the reference, then times them in rounds
timing.py      back-to-back and idle calls, median and p90, quiet threads, GEMM peak
cold_start.py  a fresh process from start to its first forward
machine.py     the machine in a few words (CPU, cores, kernel instruction sets)
report.py      tables, summary, plot
first_call.py  a JIT backend's first call in fresh processes (compile, then cached)
scaling.py     time against threads and against B, T, H
isa.py         --isa: one kernel variant, the other libraries held to its instruction sets
seed_fit.py    the classic Keras program's whole fit, each implementation a fresh process
"""
