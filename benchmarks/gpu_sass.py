"""Machine code of the GPU pooling kernel's inner loop, counted without a GPU.

For each case the fused pooling kernel (``nwattn._cuda.kernels.pool_kernel``)
is built with the launch sizes of :mod:`nwattn._config` as
``nwattn._cuda.launch.pool`` would launch it (128 threads per block, the key
tile shrunk to the shared-memory budget, value chunks of up to 32
columns; no key weights, no squares for the standard deviation, no
self-exclusion: a plain prediction) and compiled for sm_90 (H100, H200):

1. numba-cuda's ``compile_ptx`` turns the kernel's Python function, with the
   argument types a launch on device arrays gives it, into PTX (NVVM, the
   CUDA toolkit's compiler library, with libdevice);
2. ``ptxas -arch=sm_90 -v`` assembles it to a cubin and reports the
   registers, the local memory (stack frame, spills included) and the static
   shared memory per thread block;
3. ``nvdisasm -g`` prints the SASS with the source line of every instruction.

The inner loop is the innermost loop (a backward branch) around the code of
the source line ``if rise:``, the one branch per key, which asks whether the
key raises the running maximum of any of the thread's queries. What is
counted is the loop's common path: the shortest path through its body that
reaches the accumulation (``st[k, 0] += e``), i.e. without the rescale of
the states when a running maximum rises, which almost no key takes after
the first ones. The default cases have no other branch in a key (no
``-inf`` scores, no self-exclusion). A score whose formula branches (the
compact kernels) makes the shortest path a lower bound: it may combine the
cheapest branch of the formula with the accumulation, even where no pair
does both. The branch ``if rise:`` appears once per key, and a key is scored
against the thread's queries (``queries_per_thread``); the pairs per
iteration are their product (an unrolled loop handles several keys), and the
counts are divided by it.

Columns, per pair: all instructions; of which 64-bit integer (both halves of
every carry-chained 64-bit add, subtract or compare, and widening
multiplies: moves and selects of 64-bit values are not counted, so this is a
lower bound of the 64-bit bookkeeping); float64 arithmetic and conversions;
MUFU (the special-function unit: ``ex2``, ``rcp``...). Below the plain-text
table, each case's instructions by kind and the size of the whole loop body.

The code is the PTX a launch would hand to the driver (should a kernel call
a CPU ``@njit`` function, for which numba-cuda asks the driver for the
device's compute capability, sm_90 stands in for the answer; none does
now); the driver's own
assembler, of another CUDA version, may allocate registers slightly
differently. The source lines change nothing: ``--check`` compares the SASS
with and without them. Measured first with numba-cuda 0.30.4 (NVVM of CUDA
13.0), ptxas 13.0.88 and nvdisasm 13.5.37 (the PyPI wheel
``nvidia-cuda-nvdisasm``).

Needs no GPU and no driver, only NVVM and libdevice (found by numba-cuda:
``pip install 'numba-cuda[cu13]'`` or a CUDA toolkit; set ``CUDA_HOME`` to
the toolkit if they are not found), ``ptxas`` and ``nvdisasm`` (found
through ``cuda-pathfinder``, then on ``PATH``; ``--ptxas`` and ``--nvdisasm``
name them).

Usage::

    python benchmarks/gpu_sass.py                         # the table
    python benchmarks/gpu_sass.py --rst sass.rst          # also as a reST table
    python benchmarks/gpu_sass.py --case laplacian:3:1:float32   # another case
    python benchmarks/gpu_sass.py --check                 # fast self-test

A case is ``score:d:p:dtype``, the score a name of :func:`nwattn.kernels.get_kernel`.
"""

import argparse
import inspect
import os
import re
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

ARCH = (9, 0)

#: Exit status when a tool is missing, so that callers (the tests) can skip.
EXIT_NO_TOOLS = 3

DEFAULT_CASES = (
    "gaussian:3:1:float32",
    "gaussian:3:1:float64",
    "gaussian:8:1:float32",
    "scaled_dot:64:64:float32",
)
CHECK_CASE = "gaussian:3:1:float32"

# Source line that marks the inner loop: compiled once per key, as the one
# conditional branch around the rescale of the thread's states.
MARKER = "if rise:"
# ... and a line of the work every pair in the support does.
ACCUMULATE = "st[k, 0] += e"

COLUMNS = ("case", "registers", "local bytes", "shared bytes", "instructions per pair",
           "of which 64-bit integer", "float64", "MUFU")

_FLOAT64_OPS = {"DADD", "DMUL", "DFMA", "DSETP", "DSET", "DMNMX", "DMMA"}


class ToolError(RuntimeError):
    """A compiler or disassembler that the measurement needs is missing."""


@dataclass
class Tools:
    ptxas: str
    nvdisasm: str
    versions: dict = field(default_factory=dict)


@dataclass
class Instruction:
    address: int
    guard: str  # "" or the predicate, e.g. "!P1"
    opcode: str  # with its modifiers, e.g. "ISETP.GT.U32.AND"
    operands: list
    line: int  # source line, 0 if unknown
    labels: list  # labels just before the instruction

    @property
    def base(self):
        return self.opcode.split(".")[0]

    @property
    def modifiers(self):
        return self.opcode.split(".")[1:]

    @property
    def target(self):
        if self.base != "BRA" or not self.operands:
            return None
        m = re.search(r"\((\.L\w*)\)", self.operands[-1])
        return m.group(1) if m else None

    @property
    def conditional(self):
        return self.guard not in ("", "PT")

    def text(self):
        guard = f"@{self.guard} " if self.guard else ""
        return f"{guard}{self.opcode} {', '.join(self.operands)}".strip()


@dataclass
class Row:
    case: str
    registers: int
    local_bytes: int
    shared_bytes: int
    per_pair: float
    int64: float
    float64: float
    mufu: float
    pairs_per_iteration: int = 1
    body: int = 0  # instructions of the whole loop body, rare paths included
    kinds: dict = field(default_factory=dict)  # per pair
    spills: tuple = (0, 0)  # spill stores, spill loads (bytes)

    def cells(self):
        return (self.case, str(self.registers), str(self.local_bytes), str(self.shared_bytes),
                _fmt(self.per_pair), _fmt(self.int64), _fmt(self.float64), _fmt(self.mufu))


def _fmt(x):
    if float(x).is_integer():
        return str(int(x))
    return f"{x:.2f}".rstrip("0")


# --- tools ---------------------------------------------------------------


def _find_binary(name, given):
    if given:
        if not (os.path.isfile(given) and os.access(given, os.X_OK)):
            raise ToolError(f"{name} not found at {given}")
        return given
    try:
        from cuda.pathfinder import find_nvidia_binary_utility

        found = find_nvidia_binary_utility(name)
    except Exception:  # no cuda-pathfinder, or one without this function
        found = None
    found = found or shutil.which(name)
    if not found:
        hint = ("pip install nvidia-cuda-nvdisasm" if name == "nvdisasm"
                else "install the CUDA toolkit's compiler (pip install nvidia-cuda-nvcc)")
        raise ToolError(f"{name} not found ({hint}, or pass --{name} PATH)")
    return found


def _version(path):
    out = subprocess.run([path, "--version"], capture_output=True, text=True).stdout
    m = re.search(r"V(\d+\.\d+\.\d+)", out)
    return m.group(1) if m else "?"


def find_tools(ptxas=None, nvdisasm=None):
    """The tools and their versions; :class:`ToolError` names whatever is missing."""
    tools = Tools(_find_binary("ptxas", ptxas), _find_binary("nvdisasm", nvdisasm))
    try:
        from numba.cuda.cudadrv import nvvm

        nvvm.NVVM()
        try:  # which library: its API version (2.0) does not name the CUDA release
            from numba.cuda.cuda_paths import _get_nvvm_path

            library = str(_get_nvvm_path().info)
        except Exception:
            library = "?"
        from numba.cuda.cudadrv.libs import get_libdevice

        get_libdevice()
    except Exception as exc:
        where = os.environ.get("CUDA_HOME")
        hint = (f"CUDA_HOME={where} does not hold them" if where else
                "pip install 'numba-cuda[cu13]', or set CUDA_HOME to a CUDA toolkit, "
                "e.g. CUDA_HOME=/usr/local/cuda")
        raise ToolError(f"numba-cuda cannot load NVVM or libdevice ({hint}): "
                        f"{type(exc).__name__}: {exc}") from exc
    from importlib.metadata import version as dist_version

    tools.versions = {"numba-cuda": dist_version("numba-cuda"), "NVVM": library,
                      "ptxas": _version(tools.ptxas), "nvdisasm": _version(tools.nvdisasm)}
    return tools


# --- compilation ---------------------------------------------------------


def parse_case(spec):
    """``(score, d, p, dtype)`` of ``"score:d:p:dtype"``."""
    try:
        score, d, p, dtype = spec.split(":")
        return score, int(d), int(p), dtype
    except ValueError:
        raise SystemExit(f"a case is score:d:p:dtype, e.g. gaussian:3:1:float32; got {spec!r}")


def case_label(spec):
    score, d, p, dtype = parse_case(spec)
    return f"{score} d={d} p={p} {dtype}"


def kernel_and_signature(spec):
    """A case's pooling kernel, as ``nwattn._cuda.launch.pool`` builds it, its types and its
    queries per thread."""
    import numpy as np
    from numba import types

    from nwattn import _config
    from nwattn._cuda import kernels as cuda_kernels
    from nwattn._cuda.launch import queries_per_thread, tile_size
    from nwattn._layout import pool_layout
    from nwattn.kernels import get_kernel

    score, d, p, dtype = parse_case(spec)
    kernel = get_kernel(score)
    chunk = max(1, min(_config.CUDA_VALUE_CHUNK, p))
    tile = tile_size(d, chunk, np.dtype(dtype).itemsize)
    qpt = queries_per_thread(d, pool_layout(chunk, False).width)
    dispatcher = cuda_kernels.pool_kernel(dtype, d, kernel.family, kernel.code, False, False,
                                          False, _config.CUDA_THREADS_PER_BLOCK, tile, chunk, 0,
                                          qpt)
    # What typeof gives the device arrays and scalars of a launch: C-contiguous
    # arrays, the scale in the dtype, self_shift and split_size as int64, the
    # unused discrete placeholders as int32 codes and a table in the dtype.
    f = types.float32 if dtype == "float32" else types.float64

    def arr(ndim, t=f):
        return types.Array(t, ndim, "C")

    codes = arr(2, types.int32)
    signature = (arr(2), arr(2), arr(2), arr(1), f, arr(1), types.int64, types.int64,
                 codes, codes, arr(3), arr(2), arr(3))
    return dispatcher, signature, qpt


@contextmanager
def _target_device():
    """Make numba-cuda compile called functions for sm_90 rather than for the current device.

    A kernel that calls an ``@njit`` function which is not inlined at the
    Numba level (the catalogue's ``log_weight``, for the distance kernels
    other than the gaussian) has it compiled as a device function for the
    current device's compute capability, which asks the driver and fails
    without one. The device function is the same for a real sm_90 device.
    """
    try:
        from numba.cuda import dispatcher as cuda_dispatcher
    except ImportError:
        yield
        return
    saved = getattr(cuda_dispatcher, "get_current_device", None)
    if saved is None:
        yield
        return
    cuda_dispatcher.get_current_device = lambda: SimpleNamespace(compute_capability=ARCH)
    try:
        yield
    finally:
        cuda_dispatcher.get_current_device = saved


def compile_cubin(spec, tools, workdir, lineinfo):
    """PTX -> cubin of a case; returns the cubin's path and ptxas's report."""
    from numba import cuda

    dispatcher, signature, _ = kernel_and_signature(spec)
    opts = dispatcher.targetoptions
    with _target_device():
        ptx, _ = cuda.compile_ptx(dispatcher.py_func, signature, cc=ARCH, lineinfo=lineinfo,
                                  fastmath=opts.get("fastmath", False))
    stem = Path(workdir) / (re.sub(r"\W", "_", spec) + ("_li" if lineinfo else ""))
    ptx_path, cubin_path = stem.with_suffix(".ptx"), stem.with_suffix(".cubin")
    ptx_path.write_text(ptx)
    cmd = [tools.ptxas, f"-arch=sm_{ARCH[0]}{ARCH[1]}", "-v", str(ptx_path), "-o", str(cubin_path)]
    if lineinfo:
        cmd.insert(1, "-lineinfo")
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"ptxas failed on {spec}:\n{done.stderr}")
    return cubin_path, done.stdout + done.stderr


def parse_resources(report):
    """Registers, local bytes, shared bytes, (spill stores, spill loads) of ptxas -v."""
    def grab(pattern):
        m = re.search(pattern, report)
        return int(m.group(1)) if m else 0

    registers = grab(r"Used (\d+) registers")
    if not registers:
        raise RuntimeError(f"no register count in ptxas's report:\n{report}")
    return (registers, grab(r"(\d+) bytes stack frame"), grab(r"(\d+) bytes smem"),
            (grab(r"(\d+) bytes spill stores"), grab(r"(\d+) bytes spill loads")))


# "/*0ab0*/  @!P1 ISETP.GT.U32.AND P1, PT, R15, RZ, PT ;": address, guard,
# opcode with modifiers, operands.
_INSTR = re.compile(r"^\s*/\*([0-9a-f]+)\*/\s+(?:@(!?U?P(?:T|\d+))\s+)?"
                    r"([A-Z][A-Z0-9_.]*)\s*(.*?)\s*;")
_LABEL = re.compile(r"^\s*(\.L\w*):")
_LINE = re.compile(r'//## File "([^"]*)", line (\d+)')


def disassemble(cubin_path, tools, lineinfo):
    cmd = [tools.nvdisasm, "-c"] + (["-g"] if lineinfo else []) + [str(cubin_path)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"nvdisasm failed:\n{done.stderr}")
    return parse_sass(done.stdout)


def parse_sass(text):
    """The instructions of nvdisasm's listing, with their labels and source lines."""
    out, labels, line = [], [], 0
    for raw in text.splitlines():
        m = _LINE.search(raw)
        if m:
            line = int(m.group(2)) if os.path.basename(m.group(1)) == "kernels.py" else 0
            continue
        m = _LABEL.match(raw)
        if m:
            labels.append(m.group(1))
            continue
        m = _INSTR.match(raw)
        if m:
            operands = [op.strip() for op in m.group(4).split(",")] if m.group(4) else []
            out.append(Instruction(int(m.group(1), 16), m.group(2) or "", m.group(3), operands,
                                   line, labels))
            labels = []
    return out


# --- the inner loop ------------------------------------------------------


def marker_line(text=MARKER):
    """Line of ``text`` (a whole source line) in ``pool_kernel``'s source."""
    from nwattn._cuda import kernels as cuda_kernels

    lines, first = inspect.getsourcelines(cuda_kernels.pool_kernel)
    hits = [first + k for k, line in enumerate(lines) if line.strip() == text]
    if len(hits) != 1:
        raise RuntimeError(f"expected the line {text!r} once in pool_kernel, found {len(hits)}: "
                           "the inner loop cannot be located")
    return hits[0]


def inner_loop(instrs, line):
    """``(start, end)``: indices of the innermost loop whose body holds ``line``'s branch."""
    where = {label: k for k, ins in enumerate(instrs) for label in ins.labels}
    marks = [k for k, ins in enumerate(instrs) if ins.line == line and ins.base == "BRA"]
    if not marks:
        raise RuntimeError(f"no branch from source line {line} ({MARKER!r}) in the SASS")
    loops = []
    for k, ins in enumerate(instrs):
        start = where.get(ins.target)
        if start is not None and start <= k and any(start <= j <= k for j in marks):
            loops.append((k - start, start, k))
    if not loops:
        raise RuntimeError("no loop around the comparison with the running maximum")
    _, start, end = min(loops)
    return start, end


def hot_path(instrs, start, end, through):
    """Indices of the shortest path from the loop's first instruction to its backward branch
    that passes through an instruction of source line ``through``."""
    where = {label: k for k, ins in enumerate(instrs) for label in ins.labels}
    inf = float("inf")
    # States (instruction, whether the path has met line `through`): a pair
    # that skips its work (-inf score, the query itself) must not be counted.
    dist = {(k, f): inf for k in range(start, end + 1) for f in (0, 1)}
    prev = {}
    first = (start, int(instrs[start].line == through))
    dist[first] = 1
    for k in range(start, end):
        ins = instrs[k]
        succ = []
        if ins.base == "BRA":
            t = where.get(ins.target)
            if t is not None and k < t <= end:
                succ.append(t)
            if ins.conditional:
                succ.append(k + 1)
        elif not (ins.base == "EXIT" and not ins.conditional):
            succ.append(k + 1)
        for f in (0, 1):
            if dist[k, f] == inf:
                continue
            for j in succ:
                state = (j, f or int(instrs[j].line == through))
                if dist[k, f] + 1 < dist[state]:
                    dist[state], prev[state] = dist[k, f] + 1, (k, f)
    if dist[end, 1] == inf:
        raise RuntimeError("no path through the loop body accumulates a pair")
    path, state = [end], (end, 1)
    while state != first:
        state = prev[state]
        path.append(state[0])
    return path[::-1]


def _outputs(ins):
    """Destination operands: the first, and the predicates right after it."""
    outs = ins.operands[:1]
    for op in ins.operands[1:]:
        if re.fullmatch(r"!?U?P(T|\d+)", op):
            outs.append(op)
        else:
            break
    return outs


def _is_float64(ins):
    mods = ins.modifiers
    return (ins.base in _FLOAT64_OPS or any("F64" in m for m in mods)
            or (ins.base == "MUFU" and any("64H" in m for m in mods)))


def int64_instructions(path_instrs):
    """Positions in ``path_instrs`` of 64-bit integer work: carry chains, widening products."""
    marked = set()
    for k, ins in enumerate(path_instrs):
        mods = ins.modifiers
        if "WIDE" in mods or any(m in ("U64", "S64") for m in mods):
            marked.add(k)
            continue
        if not ("X" in mods or "EX" in mods):
            continue
        marked.add(k)
        n_out = len(_outputs(ins))
        preds = [op.lstrip("!") for op in ins.operands[n_out:] if re.fullmatch(r"!?U?P\d+", op)]
        if ins.base.endswith("SETP"):
            preds = preds[-1:]  # the chained low-half comparison
        # The low half: the latest instruction before it that writes its carry.
        for p in preds:
            for j in range(k - 1, -1, -1):
                if p in {o.lstrip("!") for o in _outputs(path_instrs[j])}:
                    marked.add(j)
                    break
    return marked


def kind(ins):
    """Coarse class of an instruction, for the breakdown under the table."""
    b = ins.base
    if b == "MUFU":
        return "MUFU"
    if _is_float64(ins):
        return "float64"
    if b in ("FADD", "FMUL", "FFMA", "FSETP", "FMNMX", "FSEL", "FCHK", "FSET", "HADD2", "HMUL2",
             "HFMA2", "FSWZADD") or b.startswith("F2") or b.startswith("I2F"):
        return "float32"
    if b in ("LDS", "STS", "LDSM"):
        return "shared"
    if b in ("LDL", "STL"):
        return "local"
    if b in ("LDG", "STG", "LD", "ST", "LDC", "ULDC", "ATOM", "RED", "LDGSTS"):
        return "global/const"
    if b in ("BRA", "BSSY", "BSYNC", "BAR", "WARPSYNC", "EXIT", "NOP", "CALL", "RET", "BREAK",
             "YIELD", "DEPBAR"):
        return "control"
    return "integer/move"


def measure(spec, tools, workdir, compare_lineinfo=False):
    """One row of the table."""
    cubin, report = compile_cubin(spec, tools, workdir, lineinfo=False)
    registers, local, shared, spills = parse_resources(report)
    cubin_li, _ = compile_cubin(spec, tools, workdir, lineinfo=True)
    instrs = disassemble(cubin_li, tools, lineinfo=True)
    if compare_lineinfo:
        plain = disassemble(cubin, tools, lineinfo=False)
        if [i.text() for i in plain] != [i.text() for i in instrs]:
            raise RuntimeError(f"{spec}: the SASS differs with source lines; counts would not "
                               "describe the code a launch runs")
    line = marker_line()
    start, end = inner_loop(instrs, line)
    path = [instrs[k] for k in hot_path(instrs, start, end, marker_line(ACCUMULATE))]
    keys = sum(1 for ins in path if ins.line == line and ins.base == "BRA" and ins.conditional)
    pairs = max(keys, 1) * kernel_and_signature(spec)[2]
    int64 = int64_instructions(path)
    kinds = {}
    for ins in path:
        kinds[kind(ins)] = kinds.get(kind(ins), 0) + 1
    return Row(case_label(spec), registers, local, shared, len(path) / pairs,
               len(int64) / pairs, sum(map(_is_float64, path)) / pairs,
               sum(ins.base == "MUFU" for ins in path) / pairs, pairs, end - start + 1,
               {k: v / pairs for k, v in sorted(kinds.items())}, spills)


# --- tables --------------------------------------------------------------


def format_text(rows):
    cells = [COLUMNS] + [r.cells() for r in rows]
    widths = [max(len(c[j]) for c in cells) for j in range(len(COLUMNS))]

    def fmt(row):
        return "  ".join(c.ljust(w) if j == 0 else c.rjust(w)
                         for j, (c, w) in enumerate(zip(row, widths)))

    return "\n".join([fmt(cells[0]), "  ".join("-" * w for w in widths)]
                     + [fmt(c) for c in cells[1:]])


def format_rst(rows):
    """A reST simple table."""
    cells = [COLUMNS] + [r.cells() for r in rows]
    widths = [max(len(c[j]) for c in cells) for j in range(len(COLUMNS))]
    rule = " ".join("=" * w for w in widths)

    def fmt(row):
        return " ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip()

    return "\n".join([rule, fmt(cells[0]), rule] + [fmt(c) for c in cells[1:]] + [rule]) + "\n"


def parse_rst(text):
    """The rows (header first) of a simple table written by :func:`format_rst`."""
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("..")]
    rule = lines[0]
    spans = [(m.start(), m.end()) for m in re.finditer(r"=+", rule)]
    rows = [[ln[a:b if k < len(spans) - 1 else None].strip() for k, (a, b) in enumerate(spans)]
            for ln in lines if ln != rule]
    return rows


def notes(rows):
    out = []
    for r in rows:
        kinds = ", ".join(f"{k} {_fmt(v)}" for k, v in r.kinds.items())
        out.append(f"{r.case}: {r.pairs_per_iteration} pair(s) per loop iteration; loop body "
                   f"{r.body} instructions with its rare paths; per pair: {kinds}; "
                   f"spill stores/loads {r.spills[0]}/{r.spills[1]} bytes")
    return "\n".join(out)


def run(specs, tools, compare_lineinfo=False):
    """``(rows, failures)``: the measured cases, and ``(case, reason)`` for the others."""
    rows, failures = [], []
    with tempfile.TemporaryDirectory() as workdir:
        for spec in specs:
            try:
                rows.append(measure(spec, tools, workdir, compare_lineinfo))
            except Exception as exc:  # one case that does not compile spoils no other
                reason = " ".join(str(exc).split())
                failures.append((case_label(spec), f"{type(exc).__name__}: {reason}"))
    return rows, failures


def _check(tools):
    rows, failures = run([CHECK_CASE], tools, compare_lineinfo=True)
    assert not failures, failures
    r = rows[0]
    assert r.registers > 0 and r.shared_bytes > 0, r
    # a whole number of instructions per iteration, which scores its keys
    # against the thread's 1 to 4 queries
    assert r.per_pair > 0 and float(r.per_pair * 12).is_integer(), r
    assert r.mufu >= 1, "the float32 exp is one MUFU.EX2 per pair"
    assert r.float64 == 0, "float64 work in a float32 gaussian kernel"
    parsed = parse_rst(format_rst(rows))
    assert parsed[0] == list(COLUMNS) and parsed[1] == list(r.cells()), parsed
    print(format_text(rows))
    print("check passed")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", action="append", metavar="SCORE:D:P:DTYPE",
                        help="a case instead of the default ones (repeatable)")
    parser.add_argument("--rst", metavar="FILE", help="also write the table as reST")
    parser.add_argument("--check", action="store_true",
                        help="one small case, with sanity checks (a few seconds)")
    parser.add_argument("--ptxas", help="path of ptxas")
    parser.add_argument("--nvdisasm", help="path of nvdisasm")
    args = parser.parse_args(argv)
    # The simulator has no compiler: this needs numba-cuda's real one, which
    # compiles without a GPU. numba reads the variable when first imported.
    if "numba" not in sys.modules:
        os.environ.pop("NUMBA_ENABLE_CUDASIM", None)

    try:
        tools = find_tools(args.ptxas, args.nvdisasm)
    except ToolError as exc:
        print(f"gpu_sass: {exc}", file=sys.stderr)
        return EXIT_NO_TOOLS
    versions = ", ".join(f"{k} {v}" for k, v in tools.versions.items())
    print(f"sm_{ARCH[0]}{ARCH[1]}; {versions}")
    if args.check:
        _check(tools)
        return 0
    rows, failures = run(args.case or DEFAULT_CASES, tools)
    if rows:
        print(format_text(rows))
        print()
        print(notes(rows))
    for label, reason in failures:
        print(f"{label}: failed: {reason}", file=sys.stderr)
    if args.rst and rows:
        header = f".. benchmarks/gpu_sass.py, sm_{ARCH[0]}{ARCH[1]}; {versions}\n\n"
        Path(args.rst).write_text(header + format_rst(rows))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
