"""Tuning constants of the compute kernels, kept in one place.

The CPU kernels take these as run-time arguments rather than reading them as
compile-time globals, so tests can lower them (``monkeypatch.setattr``) to
make tiny inputs span several query blocks, key tiles and key splits without
triggering a recompilation.
"""

#: Queries handled together by one CPU task; each task owns these output rows.
QUERY_BLOCK = 32

#: Keys scored at once against one query; the scores of a tile live in a
#: thread-local buffer of this length.
KEY_TILE = 512

#: When there are fewer query blocks than this, the keys are also split so
#: that the machine's threads have enough independent tasks; the partial
#: states are merged exactly. The rule depends on the shape only, never on
#: the thread count, so results do not change with the number of threads.
TARGET_TASKS = 64

#: A key split is never made shorter than this many keys.
MIN_SPLIT_KEYS = 4096

#: The rbf training objective cuts its points into about this many blocks of
#: rows; the blocks are paired round-robin (see ``nwattn._cpu.pairs``), so a
#: round has about half this many tasks to spread over the threads.
PAIR_BLOCKS = 32

#: ... and never into blocks of fewer rows than this (nor more than
#: KEY_TILE).
PAIR_MIN_ROWS = 64

#: Dot-product scores with at least this many features are computed a tile
#: at a time by one matrix product (BLAS) instead of feature by feature.
GEMM_MIN_FEATURES = 32

#: With at least this many value columns the weighted sums of a tile are one
#: matrix product instead of one dot product per column.
GEMM_MIN_OUTPUTS = 16

#: Queries per task on the matrix-product path: larger blocks make larger,
#: more efficient products while the scores of a tile stay in cache.
GEMM_QUERY_BLOCK = 128

#: ... and in causal order, where the tile on a block's diagonal is scored
#: whole and half of it discarded: smaller blocks discard less (a causal
#: pass over 1024 tokens measured 0.46 of the full one's time with 64, 0.63
#: with 128).
GEMM_CAUSAL_QUERY_BLOCK = 64

#: Floating-point relaxations allowed in the CPU kernels. ``reassoc`` lets
#: LLVM vectorise reductions and ``contract`` fuse multiply-adds; the flags
#: that assume no NaN or infinity are deliberately absent, because ``-inf``
#: scores mark keys outside a kernel's support.
FASTMATH = {"reassoc", "contract", "nsz", "arcp"}

#: Work per thread in one chunk of the CPU sweep, in (query, key) pairs times
#: (features + state columns), an eighth of that on the matrix body: a few
#: hundredths of a second for a gaussian kernel in 8 dimensions, a tenth on a
#: slow or busy core. Between chunks the interpreter runs, so a Ctrl-C stops
#: a long call within about that time; chunks only group independent tasks,
#: so their size changes no result.
SWEEP_CHUNK_WORK = 2**27

#: ... and, for the pruned tile schedule (whose tasks cost what the data
#: make them), the time a chunk aims at, in seconds.
SWEEP_CHUNK_SECONDS = 0.05

#: Keys per tile of the pruned schedule: the leaves of the k-d tree that
#: orders the keys. Smaller tiles fit a neighbourhood more closely; the
#: visited tiles that follow each other in the keys' order are scored as one
#: run of up to KEY_TILE keys, which keeps the bookkeeping per key low (a
#: leave-one-out pass over 10**6 points in 2-D with 1700 neighbours each
#: measured 8.3 s with 32, 9.6 s with 64, 12.1 s with 128).
TREE_LEAF_KEYS = 32

# --- GPU (numba-cuda) launch sizes. Read at every launch; tests lower them
# so tiny inputs span several blocks, key tiles, splits and value chunks.

#: Threads per block of the pooling kernel.
CUDA_THREADS_PER_BLOCK = 128

#: Queries per thread of the pooling kernel, at most: a key read from shared
#: memory then serves that many scores, and the loop's bookkeeping is shared
#: by them. Fewer when their features and states would not fit
#: CUDA_QUERY_REGISTERS (one query per thread for 64 features).
CUDA_QUERIES_PER_THREAD = 4

#: Registers a thread may spend on its queries' features and states
#: (``queries x (features + state columns)``).
CUDA_QUERY_REGISTERS = 96

#: Keys loaded into shared memory at once by a block. Lowered automatically
#: when the tile of keys and values would not fit CUDA_SHARED_BYTES.
CUDA_KEY_TILE = 128

#: Budget of static shared memory per block, below the 48 KiB every CUDA
#: device offers.
CUDA_SHARED_BYTES = 40 * 1024

#: Value columns accumulated by one thread; more columns are spread over the
#: grid's z dimension (each chunk recomputes the scores). 32 rather than 16:
#: at 64 features and 64 outputs a pair then costs 2 x 214 machine
#: instructions for sm_90 instead of 4 x 182, without spills; at 64 columns
#: the state no longer fits the registers (benchmarks/gpu_sass.py).
CUDA_VALUE_CHUNK = 32

#: Blocks wanted in flight to fill a large GPU. With fewer query blocks the
#: keys are split and the partial states merged exactly, as on the CPU.
CUDA_TARGET_BLOCKS = 1024

#: A key split on the GPU is never shorter than this many keys.
CUDA_MIN_SPLIT_KEYS = 2048

#: Threads per block of the element-wise kernels (scores, softmax, merge).
CUDA_SIMPLE_THREADS = 128

#: ``device="auto"`` uses the GPU from this many (query, key) pairs on; below
#: it the transfers cost more than the CPU's work.
CUDA_AUTO_MIN_PAIRS = 2**24
