"""The machine a benchmark ran on, in a few words: CPU model, usable cores, and the
instruction sets fastlstm's compiled kernels use (from fastlstm.info's report)."""
from ..threads import default_num_threads


def machine_summary(info):
    """{"cpu", "cores", "isa"} from `fastlstm.info.collect_info()`'s dict: the CPU model,
    the cores this process may run on, and the compiled kernels' variant (None when the
    extension is not built)."""
    isa = (info.get("extension") or {}).get("isa") or {}
    return {"cpu": info.get("cpu"), "cores": default_num_threads(),
            "isa": isa.get("chosen")}


def machine_text(summary):
    """One phrase naming the machine, e.g. "AMD EPYC, 2 cores, kernels avx512"."""
    cores = summary["cores"]
    text = f"{summary['cpu']}, {cores} core{'s' if cores != 1 else ''}"
    return text + (f", fastlstm kernels {summary['isa']}" if summary["isa"]
                   else ", no compiled kernels")
