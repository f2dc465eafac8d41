#!/usr/bin/env bash
# The GPU checks of the stacked launcher and the hot loop, as one device run; logs under $OUT.
# On the GPU machine (python3, no .venv, no make), after ../shared/gpu/prepare.sh here:
#   source .whl/bootstrap.sh && bash benchmarks/gpu_check.sh
#   bash benchmarks/gpu_check.sh [STEP ...]   (default: every step; e.g. "cuda_paths loops sweep", then "fast_suite")
# Each step has its own time limit, so one that hangs does not take the rest; together they take at
# most about 12 minutes, so run them as two device calls (timeout_s 600 each) while the machine is warm.
# Measured on an H100 (2026-11-28): the three CUDA test files need over 100 s, a 600-step loop benchmark over 60 s.
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
wanted=" ${*:-cuda_paths loops sweep fast_suite} "
want() { [[ $wanted == *" $1 "* ]]; }
nvidia-smi -L >"$out/device.txt" 2>&1
want cuda_paths && step cuda_paths 200 python3 -m pytest -q -p no:cacheprovider --tb=line -rfE tests/test_cuda_graph.py tests/test_resume.py tests/test_stacked.py
if want loops; then
    step loop_b128 120 python3 benchmarks/throughput.py --device cuda --batch-size 128 --steps 300 --repeats 3
    step loop_b512 120 python3 benchmarks/throughput.py --device cuda --batch-size 512 --steps 300 --repeats 3
    step graph_b128 120 python3 benchmarks/throughput.py --device cuda --batch-size 128 --steps 300 --repeats 3 --cuda-graph
fi
want sweep && step sweep 180 python3 benchmarks/sweep.py --device cuda --ks 8,32 --steps 300 --ways sequential,stacked
want fast_suite && step fast_suite 540 python3 -m pytest -q -m "not slow" -n 14 -p no:cacheprovider --tb=line -rfE
true
