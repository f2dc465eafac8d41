#!/usr/bin/env bash
# The GPU checks of the stacked launcher and the hot loop, as one device run; logs under $OUT.
# On the GPU machine (python3, no .venv, no make), after ../shared/gpu/prepare.sh here:
#   source .whl/bootstrap.sh && bash benchmarks/gpu_check.sh
# At most 9 minutes (one device call: timeout_s 600); each step has its own time limit, so one that hangs does not take the rest.
set -u
out=${OUT:-gpu-check}
mkdir -p "$out"
export LAYERSCOPE_OUTPUTS="$out/outputs"
step() {  # step NAME SECONDS COMMAND...: run it under a time limit into $out/NAME.log, print its tail
    local name=$1 limit=$2
    shift 2
    echo "== $name"
    timeout "$limit" "$@" >"$out/$name.log" 2>&1
    echo "exit status $?" >>"$out/$name.log"
    tail -n 14 "$out/$name.log"
}
nvidia-smi -L >"$out/device.txt" 2>&1
step cuda_paths 100 python3 -m pytest -q -x -p no:cacheprovider tests/test_cuda_graph.py tests/test_resume.py tests/test_stacked.py
step loop_b128 60 python3 benchmarks/throughput.py --device cuda --batch-size 128 --steps 600 --repeats 3
step loop_b512 60 python3 benchmarks/throughput.py --device cuda --batch-size 512 --steps 300 --repeats 3
step graph_b128 60 python3 benchmarks/throughput.py --device cuda --batch-size 128 --steps 600 --repeats 3 --cuda-graph
step sweep 120 python3 benchmarks/sweep.py --device cuda --ks 8,32 --steps 300 --ways sequential,stacked
step fast_suite 150 python3 -m pytest -q -m "not slow" -n 8 -p no:cacheprovider
