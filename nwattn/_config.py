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

#: Dot-product scores with at least this many features are computed a tile
#: at a time by one matrix product (BLAS) instead of feature by feature.
GEMM_MIN_FEATURES = 32

#: With at least this many value columns the weighted sums of a tile are one
#: matrix product instead of one dot product per column.
GEMM_MIN_OUTPUTS = 16

#: Queries per task on the matrix-product path: larger blocks make larger,
#: more efficient products while the scores of a tile stay in cache.
GEMM_QUERY_BLOCK = 128

#: Floating-point relaxations allowed in the CPU kernels. ``reassoc`` lets
#: LLVM vectorise reductions and ``contract`` fuse multiply-adds; the flags
#: that assume no NaN or infinity are deliberately absent, because ``-inf``
#: scores mark keys outside a kernel's support.
FASTMATH = {"reassoc", "contract", "nsz", "arcp"}
