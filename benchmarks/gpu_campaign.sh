#!/usr/bin/env bash
# The whole GPU measurement of issues 2, 3 and 5 in one go, in priority order, on a machine with
# one GPU (run from the repository root; Ray, torch and transformers importable):
#
#   benchmarks/gpu_campaign.sh OUTDIR [BUDGET_S]
#
# Every sweep goes through the product (`python -m sweep run`, a local Ray instance, one GPU per
# trial) into OUTDIR/h200.db. Steps that would start after BUDGET_S seconds (default 1200) are
# skipped and say so. STEPS="name name ..." in the environment runs only those steps, in the order
# given, e.g. STEPS="repeats max_batch" for what a lease did not finish; STEPS=issue11 runs
# issue 11's steps (CUDA graphs, compile modes, the 2020 method); STEPS=issue15 issue 15's (N-GPU
# trials and N one-GPU trials at once: a host with several GPUs).
# OUTDIR/campaign.log has each step's wall time; OUTDIR/DONE marks the end.
#
# On the lent H200 (no Ray there; the bundle from ../shared/gpu/make-bundle travels as .gpu),
# start it detached so that it outlives one 10-minute command, and collect with later calls:
#   .gpu/install-bundle .gpu /tmp/site >/dev/null &&
#   chmod +x /tmp/site/ray/core/src/ray/gcs/gcs_server /tmp/site/ray/core/src/ray/raylet/raylet &&
#   export PYTHONPATH=/tmp/site:$PWD TSWEEP_GIT_COMMIT=<git rev-parse HEAD, pasted here> &&
#   mkdir -p /tmp/camp &&
#   (setsid nohup bash benchmarks/gpu_campaign.sh /tmp/camp 1000 >/tmp/camp/stdout 2>&1 </dev/null &)
# (the bundle's Ray binaries lose their executable bit when the wheel is unpacked: chmod them).
# Each later call: wait, then `tar czf $OUT/camp.tgz -C /tmp/camp .` before its time is up,
# and call again within 30 s, or the machine (and the campaign) is given back. On 2026-12-02 the
# second call missed that window (the first call's output was long, and reading it took the 30 s):
# the campaign died with the machine and the second call slept 9 minutes on a fresh one. Keep
# each call's output to a few lines, and have the waiting call check that /tmp/camp exists first
# (`[ -d /tmp/camp ] || { echo "campaign gone: fresh machine"; exit 3; }`) so that it fails at once.
set -u
D=${1:?usage: gpu_campaign.sh OUTDIR [BUDGET_S]}
BUDGET=${2:-1200}
mkdir -p "$D"
export PYTHONUNBUFFERED=1 GRADIO_ANALYTICS_ENABLED=False
LOG=$D/campaign.log
T0=$(date +%s)
say() { echo "$(date +%T) [$(( $(date +%s) - T0 ))s] $*" | tee -a "$LOG"; }

step() {  # step NAME COMMAND...: runs unless the budget is spent; logs wall time and exit code
  local name=$1; shift
  if (( $(date +%s) - T0 > BUDGET )); then say "SKIPPED $name (budget of ${BUDGET}s spent)"; return; fi
  say "START $name: $*"
  local s=$(date +%s.%N)
  "$@" > "$D/$name.out" 2> "$D/$name.err"
  local rc=$?
  say "END $name rc=$rc wall=$(python3 -c "print(round($(date +%s.%N) - $s, 1))")s"
}

sweep() {  # sweep NAME SWEEP DB [OPTIONS...]: a step through the product, then every record of
  # that database as JSONL text too, so that the records come back even if a database does not
  local name=$1 what=$2 db=$3; shift 3
  step "$name" python3 -m sweep run "$what" --db "$db" "$@"
  [ -f "$db" ] && python3 -m sweep export --format jsonl --db "$db" -o "$D/$(basename "$db" .db).jsonl" \
    2>> "$D/$name.err"
}

{ nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.max.sm,memory.total --format=csv
  python3 -m pip list 2>/dev/null | grep -iE "^(torch|transformers|pytorch-lightning|ray|pandas|pyarrow|nvidia-ml-py) "
  nproc; } >> "$LOG" 2>&1

DB=$D/h200.db
ref_sweep() {  # ref_sweep NAME SWEEP DB: `sweep` through the code in .reftree (see seed_ref)
  local name=$1 what=$2 db=$3
  step "$name" bash -c 'cd .reftree && export PYTHONPATH="$PWD:$PYTHONPATH" \
    TSWEEP_GIT_COMMIT=$(cat REF_COMMIT 2>/dev/null || echo reftree) && python3 -m sweep run "$1" --db "$2"
    rc=$?; python3 -m sweep export --format jsonl --db "$2" -o "${2%.db}.jsonl"; exit $rc' _ "$what" "$db"
}
run() {  # run NAME: one step of the campaign
  case $1 in
    gpu_tests) step gpu_tests python3 -m pytest -q -ra -m gpu tests/test_gpu.py -p no:cacheprovider ;;
    seed) sweep seed seed "$DB" ;;
    harness) step harness python3 benchmarks/harness_overhead.py --json "$D/harness.json" ;;
    mfu) step mfu python3 benchmarks/mfu_ceiling.py --compile true --batch-sizes 128 256 \
           --json "$D/mfu.json" ;;
    repeats) sweep repeats benchmarks/sweeps/h200-repeats.yaml "$DB" ;;
    # per-trial overhead, side by side: a fresh Ray worker per trial (before) against trials
    # forked from the worker's warm fork server (after, the default)
    overhead_fresh_worker) sweep overhead_fresh_worker benchmarks/sweeps/h200-overhead.yaml \
           "$D/overhead-fresh-worker.db" --no-isolate ;;
    overhead_isolated) sweep overhead_isolated benchmarks/sweeps/h200-overhead.yaml \
           "$D/overhead-isolated.db" ;;
    seed_fp16) sweep seed_fp16 seed-fp16 "$DB" ;;
    harness_sweep) sweep harness_sweep benchmarks/sweeps/h200-harness.yaml "$DB" ;;
    families) sweep families benchmarks/sweeps/h200-families.yaml "$DB" ;;
    llama) sweep llama benchmarks/sweeps/h200-llama.yaml "$DB" ;;
    max_batch) sweep max_batch benchmarks/sweeps/h200-max-batch.yaml "$DB" ;;
    max_batch6) sweep max_batch6 max-batch "$DB" ;;  # the six-model preset
    # issue 11: the CUDA-graph and compile-mode acceptance tests first (they print the figures:
    # -s), then the graphed seed grid beside seed's eager rows, the 2020 method, the compile
    # modes, and the hand-written whole-step capture against the cuda_graph trial
    gpu_tests_graph) step gpu_tests_graph python3 -m pytest -q -ra -s -m gpu tests/test_gpu.py \
           -p no:cacheprovider -k "graph or profiled or compile_modes" ;;
    seed_graph) sweep seed_graph seed-graph "$DB" ;;
    # issue 22's "the figures must not move", side by side on one machine: a grid through the code
    # that made the shipped 2026-12-02 rows (10448d0: `git archive 10448d0a927b | tar x -C .reftree;
    # echo 10448d0a927b > .reftree/REF_COMMIT`, the commit its records carry; carried as .reftree,
    # git-excluded; its records exported by that code), then through this tree
    seed_ref) ref_sweep seed_ref seed "$D/seed-ref.db" ;;
    gpu_bound_ref) ref_sweep gpu_bound_ref "$PWD/benchmarks/sweeps/seed-gpu-bound.yaml" "$D/gb-ref.db" ;;
    gpu_bound) sweep gpu_bound benchmarks/sweeps/seed-gpu-bound.yaml "$D/gb-new.db" ;;
    seed_2020) sweep seed_2020 seed-2020 "$DB" ;;
    compile_modes) sweep compile_modes benchmarks/sweeps/h200-compile-modes.yaml "$DB" ;;
    graph_harness) step graph_harness bash -c 'for shape in "roberta-base 8 128" \
           "bert-base-uncased 64 128" "bert-large-uncased 8 512"; do set -- $shape;
           python3 benchmarks/harness_overhead.py --model $1 --batch-size $2 --seq-len $3 \
             --rounds 3 --graph true --json "'"$D"'/graph-harness-$1-$2-$3.json" || exit; done' ;;
    # the layout (issue 10), the graph step and the profiled step after their fixes (issue 11),
    # then the seed grid eager and graphed through the product: issue 12's wall time and time
    # budget per trial, issue 11's GPU-busy share, the same figures as earlier runs (issue 10)
    gpu_tests_quick) step gpu_tests_quick timeout 150 python3 -m pytest -q -ra --tb=short -m gpu \
           tests/test_gpu.py -p no:cacheprovider -k "graph_trial_record or profiled or \
           options_run or graphed_inference or record_is_complete or memory_and_nvml or \
           real_oom or isolated_trials" ;;
    # 2026-12-02: after the mask fix (the captured forward gave SDPA a full mask: no flash
    # kernel): the graph's correctness and attention-kernel tests, then seed-graph beside seed
    # in one run, the hand-written capture, a second seed-graph into its own database (the
    # repeatability pair: the same database would find every row stored), issue 12's live
    # max-batch and the memory model on capped cards, then the 2020 method and compile modes
    gpu_tests_graph_quick) step gpu_tests_graph_quick timeout 240 python3 -m pytest -q -ra -s \
           --tb=short -m gpu tests/test_gpu.py -p no:cacheprovider -k "graph_trial_record or \
           profiled or graphed_inference or graph_options_run" ;;
    seed_graph_repeat) sweep seed_graph_repeat seed-graph "$D/h200-repeat.db" ;;
    memory_check) step memory_check python3 benchmarks/memory_model_check.py --budget-s 330 \
           --json "$D/memory-check.json" ;;
    compile_modes_small) sweep compile_modes_small benchmarks/sweeps/h200-compile-modes-small.yaml \
           "$DB" ;;
    # 2026-12-03: issue 11's last GPU work, one self-contained call each (chained calls missed
    # the 30 s idle window twice; the raw files of 2026-12-02's compile rows went with them).
    # The compile-mode memory test (a physical check: the trial fits under its reported peak),
    # where the memory of compile default and reduce-overhead goes, and the rows to ship.
    gpu_tests_compile_pool) step gpu_tests_compile_pool timeout 300 python3 -m pytest -q -ra -s \
           --tb=short -m gpu tests/test_gpu.py -p no:cacheprovider -k compiled_graphs_report ;;
    compile_memory) step compile_memory timeout 200 python3 benchmarks/compile_pool_memory.py \
           --shapes bert-mini:32:128 --fit --json "$D/compile-memory.jsonl" ;;
    compile_bert) sweep compile_bert benchmarks/sweeps/h200-compile-bert.yaml \
           "$D/compile-bert.db" ;;
    compile_gpt2) sweep compile_gpt2 benchmarks/sweeps/h200-compile-gpt2.yaml \
           "$D/compile-gpt2.db" ;;
    compile_autotune) sweep compile_autotune benchmarks/sweeps/h200-compile-autotune.yaml \
           "$D/compile-autotune.db" ;;
    # issue 15 (a host with several GPUs): the N-GPU tests (NCCL; they print the figures), the
    # DDP scaling sweep (bert-large seq 512 batch 32 per GPU on 1/2/4/8 GPUs: the summary prints
    # the efficiency and the bus bandwidth), and the seed grid on every GPU of the node against
    # one GPU of it (CUDA_VISIBLE_DEVICES=0): the wall times in campaign.log give the speed-up of
    # N one-GPU trials at once, the two databases each configuration's figures side by side
    gpu_tests_ddp) step gpu_tests_ddp python3 -m pytest -q -ra -s -m gpu tests/test_gpu_ddp.py \
           -p no:cacheprovider ;;
    ddp_scaling) sweep ddp_scaling benchmarks/sweeps/ddp-bert-large.yaml "$D/ddp.db" ;;
    seed_all_gpus) sweep seed_all_gpus seed "$D/seed-all-gpus.db" ;;
    seed_one_gpu) CUDA_VISIBLE_DEVICES=0 sweep seed_one_gpu seed "$D/seed-one-gpu.db" ;;
    # the interference check: a host-bound and a GPU-bound reference, each alone on the node and
    # again among the seed grid's trials (the summary prints the slowdown); a database each, or
    # the second would find the grid stored and run its reference beside nothing
    interference_host) sweep interference_host benchmarks/sweeps/interference-host.yaml \
           "$D/interference-host.db" ;;
    interference_gpu) sweep interference_gpu benchmarks/sweeps/interference-gpu.yaml \
           "$D/interference-gpu.db" ;;
    interference_host_pinned) sweep interference_host_pinned \
           benchmarks/sweeps/interference-host-pinned.yaml "$D/interference-host-pinned.db" ;;
    # 2026-12-06: issue 22 (the same figures after the seams: every GPU test, seed and seed-graph
    # through the product) and issue 23's first H200 figures (the checkpointed decoder by hand
    # and through the product, the product against a plain loop of the same step, gradient
    # checkpointing on every catalog decoder with full/LoRA/QLoRA, the target shapes and knobs)
    ckpt_diagnose) step ckpt_diagnose timeout 240 python3 benchmarks/ckpt_matrix.py --diagnose \
           --models smollm2-135m --out "$D/ckpt-small.jsonl" ;;
    truth_qwen) step truth_qwen python3 benchmarks/decoder_truth.py --model qwen2.5-0.5b \
           --finetune full --batch-size 8 --json "$D/truth-qwen.json" ;;
    truth_1b) step truth_1b python3 benchmarks/decoder_truth.py --model llama-3.2-1b \
           --finetune full --batch-size 8 --json "$D/truth-1b.json" ;;
    truth_8b) step truth_8b python3 benchmarks/decoder_truth.py --model llama-3.1-8b \
           --finetune lora --batch-size 4 --json "$D/truth-8b.json" ;;
    gpu_tests_all) step gpu_tests_all timeout 320 python3 -m pytest -q -ra --tb=short -m gpu \
           tests/test_gpu.py -p no:cacheprovider ;;
    ckpt_all) step ckpt_all python3 benchmarks/ckpt_matrix.py --out "$D/ckpt.jsonl" ;;
    finetune_core) sweep finetune_core benchmarks/sweeps/h200-finetune-core.yaml "$D/finetune.db" ;;
    atlas_1b) sweep atlas_1b benchmarks/sweeps/h200-atlas-1b.yaml "$D/atlas.db" ;;
    import_cost) step import_cost timeout 300 python3 benchmarks/import_cost.py --json "$D/import-cost.jsonl" ;;
    # 2026-12-07: why the capped H100 fitted 48,128 tokens short of the real card (docs/RESULTS.md):
    # the capped trial as is, without emptying the cache after the warm-up, with expandable segments
    cap_history) step cap_history timeout 420 python3 benchmarks/cap_history.py \
           --json "$D/cap-history.jsonl" ;;
    cap_history_all) step cap_history_all timeout 560 python3 benchmarks/cap_history.py \
           --variants default keep-cache expandable whole whole-empty --json "$D/cap-history.jsonl" ;;
    # the allocator option on the whole card, where the default allocator failed by fragmentation
    cap_whole) step cap_whole timeout 420 python3 benchmarks/cap_history.py \
           --variants whole whole-expandable --json "$D/cap-history.jsonl" ;;
    q5) sweep q5 benchmarks/sweeps/h200-q5.yaml "$D/finetune.db" ;;  # issue 25's fifth question
    *) say "UNKNOWN step $1 (no such step)"; return 1 ;;
  esac
}
ORDER="gpu_tests seed harness mfu repeats overhead_fresh_worker overhead_isolated seed_fp16
       harness_sweep families llama max_batch"
# issue 11's run: STEPS="$ISSUE11" benchmarks/gpu_campaign.sh OUTDIR
ISSUE11="gpu_tests_graph seed_graph seed graph_harness compile_modes seed_2020"
[ "${STEPS:-}" = issue11 ] && STEPS=$ISSUE11
# the session of 2026-12-01's one GPU call (budget: about 9 minutes): STEPS=final
FINAL="gpu_tests_quick seed seed_graph max_batch6"
[ "${STEPS:-}" = final ] && STEPS=$FINAL
# the session of 2026-12-02 (about 26 minutes of GPU time over three chained calls)
SESSION3="gpu_tests_graph_quick seed_graph graph_harness seed seed_graph_repeat max_batch6
          memory_check seed_2020 compile_modes_small"
[ "${STEPS:-}" = session3 ] && STEPS=$SESSION3
# 2026-12-03, one call each: STEPS=compile1 (about 8 minutes), then STEPS=compile2 (about 8)
[ "${STEPS:-}" = compile1 ] && STEPS="compile_memory gpu_tests_compile_pool compile_bert"
[ "${STEPS:-}" = compile2 ] && STEPS="compile_gpt2 compile_autotune"
# issue 15's run, on a host with several GPUs: STEPS=issue15 benchmarks/gpu_campaign.sh OUTDIR
ISSUE15="gpu_tests_ddp ddp_scaling seed_all_gpus seed_one_gpu interference_host interference_gpu
         interference_host_pinned"
[ "${STEPS:-}" = issue15 ] && STEPS=$ISSUE15
# 2026-12-06, issues 22 and 23: STEPS=ft1 (about 18 minutes, detached, collected over two calls)
[ "${STEPS:-}" = ft1 ] && STEPS="ckpt_diagnose truth_qwen truth_8b truth_1b gpu_tests_all seed seed_graph finetune_core ckpt_all"
[ "${STEPS:-}" = ft2 ] && STEPS="ckpt_all finetune_core"
# the same, issue 22's figures first (an H200 lease that may be the session's only one)
[ "${STEPS:-}" = ft22 ] && STEPS="gpu_tests_all seed seed_graph ckpt_diagnose truth_8b truth_1b
                                   truth_qwen finetune_core ckpt_all"
# the second session of 2026-12-06: issue 22 on the final trial code, issue 23's checkpointing
# matrix, issue 24's first atlas rows (about 28 minutes, detached, collected over three calls)
[ "${STEPS:-}" = at1 ] && STEPS="gpu_tests_all seed_graph ckpt_all atlas_1b"
# the next lease: the searches changed after at1 (allocated-peak seeding, the max-seq guide, no
# FLOP count on capped rows) run the same atlas again; on an H200 its 80 GB cap against the H100's
# own 80 GB answers of at1 measures the emulation's error; then the finetune preset's first part
[ "${STEPS:-}" = at2 ] && STEPS="atlas_1b gpu_tests_all finetune_core"
# what closes issues 22 and 25 after 2026-12-07 (about 9 minutes on the H200): STEPS=close;
# then what a LoRA probe's imports cost with bitsandbytes hidden (about 20 s)
[ "${STEPS:-}" = close ] && STEPS="gpu_tests_all seed q5 import_cost"
# the first H200 lease of 2026-12-07 (about 23 minutes, collected over three calls): close,
# issue 23's truth and target rows on the final code, the capped allocator's history, the
# checkpointing matrix (last: the steps that would start after the budget are skipped)
[ "${STEPS:-}" = close2 ] && STEPS="gpu_tests_all seed q5 import_cost truth_8b truth_1b finetune_core
                                    cap_history ckpt_all"
# the same day, no H200 in five tries, on an H100 80GB (the card whose real 80 GB the capped run
# missed): the GPU tests on the final trial code, the allocator's history capped and whole, q5
[ "${STEPS:-}" = h100a ] && STEPS="gpu_tests_all cap_history_all q5"
[ "${STEPS:-}" = h100b ] && STEPS="cap_history_all gpu_tests_all q5"  # under 15 minutes left
# 2026-12-07, fifth sitting, if only an H100 comes: the GPU tests of the allocator option, and
# the option on the whole card at the length its default allocator failed by fragmentation
[ "${STEPS:-}" = h100c ] && STEPS="gpu_tests_all cap_whole"
for name in ${STEPS:-$ORDER}; do run "$name"; done
say "ALL DONE"
touch "$D/DONE"
