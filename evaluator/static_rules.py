"""The allow/deny lists of the static check, as data (see knowledge/evaluator-rules.md).

Names are dotted, fully resolved through the candidate's import aliases
(``import torch.nn.functional as F``; ``F.softmax`` -> ``torch.nn.functional.softmax``).
A prefix rule matches the name itself and everything below it.
"""

from __future__ import annotations

# Modules a candidate may import (the module itself and its submodules unless listed
# in DENIED_MODULES). Everything else is forbidden: kernels need torch, triton and a
# little of the standard library, nothing more.
ALLOWED_MODULES: tuple[str, ...] = (
    "__future__", "torch", "triton", "math", "functools", "typing", "dataclasses",
    "itertools", "operator", "enum", "collections", "numbers", "abc", "typing_extensions",
)

# Denied even though a parent is allowed (checked before ALLOWED_MODULES).
DENIED_MODULES: dict[str, str] = {
    "torch.nn": "torch.nn holds SDPA/softmax/linear routes; write the math in Triton",
    "torch.ops": "raw aten operators (SDPA, mm) are off limits",
    "torch._C": "torch internals are off limits",
    "torch.backends": "backend switches (cuDNN/flash SDPA) are off limits",
    "torch.library": "registering operators is off limits",
    "torch.utils": "torch.utils (cpp_extension, dlpack, _python_dispatch) is off limits",
    "torch.cuda.graphs": "CUDA graphs are off limits (the evaluator times plain launches)",
    "torch.jit": "TorchScript is off limits",
    "torch.compile": "torch.compile is off limits",
    "torch.fx": "torch.fx is off limits",
    "torch.func": "torch.func is off limits",
    "torch.autograd": "autograd machinery is not needed for a forward kernel",
    "torch.multiprocessing": "processes are off limits",
    "torch.distributed": "distributed is off limits",
    "torch.linalg": "torch linear algebra (cuBLAS) is off limits on the hot path",
    "torch.special": "torch.special is off limits",
    "torch.testing": "torch.testing is off limits",
    "torch.profiler": "the profiler is off limits",
    "triton.testing": "triton.testing (do_bench) belongs to the evaluator",
    "triton.runtime.jit": "Triton's launcher internals are off limits",
    "triton.runtime.autotuner": "use the public triton.autotune / triton.Config",
    "triton.compiler": "Triton compiler internals are off limits",
    "triton.backends": "Triton backend internals are off limits",
    "triton._C": "Triton internals are off limits",
    "triton.tools": "only triton.tools.tensor_descriptor is allowed",
}

# Exceptions below a denied prefix (the longest matching rule wins).
ALLOWED_NAMES: tuple[str, ...] = (
    "triton.tools.tensor_descriptor",
    # torch.cuda is denied except for device queries
    "torch.cuda.is_available", "torch.cuda.get_device_capability", "torch.cuda.get_device_properties",
    "torch.cuda.current_device", "torch.cuda.device_count", "torch.cuda.get_device_name",
    "torch.cuda.current_stream", "torch.cuda.default_stream", "torch.cuda.synchronize",
    "torch.cuda.device", "torch.cuda.is_bf16_supported",
)

# Attribute names that lead from an allowed module to a dangerous one (``torch.sys``,
# ``typing.sys.modules``, ``triton.runtime.build.subprocess`` ...): denied anywhere in a
# module-rooted chain after the first component.
DANGEROUS_COMPONENTS: frozenset[str] = frozenset({
    "os", "sys", "subprocess", "ctypes", "builtins", "importlib", "gc", "inspect", "socket",
    "threading", "_thread", "multiprocessing", "shutil", "pickle", "marshal", "signal", "io",
    "pathlib", "tempfile", "time", "weakref", "code", "traceback", "runpy", "pty", "select",
    "asyncio", "concurrent", "urllib", "http", "requests", "ssl", "mmap", "resource", "atexit",
    "linecache", "tokenize", "dis", "zipfile", "tarfile", "glob", "fnmatch", "uuid", "random",
})

# Human reasons for well-known forbidden imports (any non-allowed import is forbidden).
KNOWN_BAD_IMPORTS: dict[str, str] = {
    "ctypes": "foreign-function calls", "cffi": "foreign-function calls",
    "threading": "threads", "_thread": "threads", "multiprocessing": "processes",
    "concurrent": "threads/processes", "subprocess": "processes", "os": "os access",
    "sys": "interpreter internals", "socket": "network", "asyncio": "event loops",
    "http": "network", "urllib": "network", "requests": "network", "ssl": "network",
    "signal": "signals", "gc": "heap walking", "inspect": "introspection",
    "importlib": "dynamic imports", "builtins": "builtins manipulation",
    "pickle": "deserialisation", "marshal": "deserialisation", "shelve": "deserialisation",
    "evaluator": "the evaluator's own modules", "evolve": "the orchestrator's modules",
    "flash_attn": "a library attention kernel", "xformers": "a library attention kernel",
    "cudnn": "a library attention kernel", "cuda": "raw CUDA bindings",
    "cupy": "raw CUDA bindings", "numba": "other kernel compilers", "time": "timers",
    "io": "file I/O", "pathlib": "file I/O", "shutil": "file I/O", "tempfile": "file I/O",
    "random": "not needed", "numpy": "host compute", "weakref": "object tracking",
    "atexit": "exit hooks", "code": "dynamic code", "types": "dynamic code",
    "contextlib": "exception suppression", "traceback": "frame access",
}

# Fully qualified names (and everything below them) a candidate may not reference:
# DENIED_MODULES plus the names below.
_CUBLAS = ("torch.matmul", "torch.mm", "torch.bmm", "torch.baddbmm", "torch.addmm", "torch.addbmm",
           "torch.addmv", "torch.mv", "torch.dot", "torch.vdot", "torch.inner", "torch.outer",
           "torch.tensordot", "torch.chain_matmul")
_SIDE_STREAMS = ("torch.cuda.Stream", "torch.cuda.ExternalStream", "torch.cuda.stream",
                 "torch.cuda.set_stream", "torch.cuda.StreamContext", "torch.Stream")
_CUDA_GRAPHS = ("torch.cuda.graph", "torch.cuda.CUDAGraph", "torch.cuda.make_graphed_callables")
_SOFTMAX = ("torch.softmax", "torch.log_softmax", "torch._softmax")

DENIED_NAMES: dict[str, str] = {
    **DENIED_MODULES,
    **dict.fromkeys(_CUBLAS, "torch matmul (cuBLAS)"),
    **dict.fromkeys(_SOFTMAX, "torch softmax"),
    **dict.fromkeys(_SIDE_STREAMS, "side streams"),
    **dict.fromkeys(_CUDA_GRAPHS, "CUDA graphs"),
    "torch.einsum": "torch einsum (cuBLAS)", "torch.kron": "torch matmul",
    "torch.cdist": "torch distance matmul",
    **dict.fromkeys(("torch.conv_tbc", "torch.cudnn_convolution", "torch.cudnn_convolution_transpose",
                     "torch.cudnn_convolution_relu", "torch.cudnn_convolution_add_relu",
                     "torch.miopen_convolution", "torch.miopen_convolution_transpose",
                     "torch.miopen_depthwise_convolution", "torch.mkldnn_convolution"),
                    "a GEMM disguised as a convolution (cuBLAS/cuDNN)"),
    "torch.functional": "torch.functional (einsum, tensordot)",
    "torch.cuda": "only device queries of torch.cuda are allowed",
    "torch.cuda.jiterator": "runtime-compiled CUDA", "torch.package": "file I/O",
    "torch.serialization": "file I/O", "torch.classes": "custom classes",
    "triton.runtime.build": "Triton build internals (runs the C compiler)",
    "torch.cuda.cudart": "raw CUDA runtime",
    "torch.cuda.caching_allocator_alloc": "raw allocations", "torch.cuda.memory": "allocator internals",
    "torch.cuda.Event": "events belong to the timing harness",
    "torch.Tensor._make_subclass": "tensor subclasses (lazy outputs)",
    "torch.load": "deserialisation", "torch.save": "file I/O", "torch.from_file": "file I/O",
    "torch.UntypedStorage": "raw storages (from_file writes files)",
    "torch.TypedStorage": "raw storages (from_file writes files)",
    "torch.storage": "raw storages (from_file writes files)",
    "torch.set_num_threads": "thread count changes", "torch.set_num_interop_threads": "thread count changes",
    "torch.manual_seed": "RNG state is the evaluator's", "torch.seed": "RNG state is the evaluator's",
    "torch.set_default_device": "global torch state", "torch.set_default_dtype": "global torch state",
    "torch.overrides": "__torch_function__ machinery", "torch.hub": "network",
    "triton.runtime.cache": "Triton cache internals", "triton.knobs": "Triton global knobs",
    "triton.compile": "Triton compiler internals",
    "triton.runtime.driver.active.utils.load_binary": "loading a foreign GPU binary (not a Triton kernel)",
    "triton.runtime.driver.active.launcher_cls": "launching a foreign GPU binary (not a Triton kernel)",
    "operator.matmul": "matmul operator (cuBLAS)", "operator.imatmul": "matmul operator (cuBLAS)",
    "operator.attrgetter": "string-built attribute access", "operator.methodcaller": "string-built calls",
}


# Attribute names forbidden on any object whose type the check cannot know (tensor
# methods that reach cuBLAS/softmax, raw access to a jitted function's Python body).
DENIED_METHODS: dict[str, str] = {
    "matmul": "tensor matmul (cuBLAS)", "mm": "tensor matmul (cuBLAS)", "bmm": "tensor matmul (cuBLAS)",
    "baddbmm": "tensor matmul (cuBLAS)", "addmm": "tensor matmul (cuBLAS)", "addbmm": "tensor matmul",
    "baddbmm_": "tensor matmul (cuBLAS)", "addmm_": "tensor matmul (cuBLAS)",
    "addbmm_": "tensor matmul", "addmv_": "tensor matmul", "addr_": "tensor matmul",
    "mv": "tensor matmul", "einsum": "einsum", "tensordot": "tensor matmul",
    "dot": "tensor matmul", "vdot": "tensor matmul", "inner": "tensor matmul", "outer": "tensor matmul",
    "ger": "tensor matmul", "kron": "tensor matmul", "addr": "tensor matmul", "addmv": "tensor matmul",
    "chain_matmul": "tensor matmul", "linalg": "torch linear algebra",
    "softmax": "tensor softmax", "log_softmax": "tensor softmax",
    "scaled_dot_product_attention": "library SDPA", "flex_attention": "library attention",
    "fn": "raw Python body of a jitted kernel (runs torch ops instead of Triton)",
    "_make_subclass": "tensor subclasses", "as_subclass": "tensor subclasses",
    "record_stream": "side streams", "wait_stream": "side streams",
    "data_ptr": "address-keyed caching (every timed call gets fresh inputs anyway)",
    "untyped_storage": "storage tricks", "storage": "storage tricks", "set_": "storage tricks",
    "from_file": "file I/O (a shared storage writes the file from C++, unseen by the guard)",
    "load_binary": "loading a foreign GPU binary (not a Triton kernel)",
    "launcher_cls": "launching a foreign GPU binary (not a Triton kernel)",
    "_version": "version-keyed caching", "f_globals": "frame access", "f_locals": "frame access",
    "f_back": "frame access", "gi_frame": "frame access", "tb_frame": "frame access",
    "cr_frame": "frame access", "f_code": "frame access", "ag_frame": "frame access",
    "f_builtins": "frame access", "tb_next": "frame access", "gi_code": "frame access",
}
# Receivers on which DENIED_METHODS does not apply (Triton's language has e.g. tl.softmax).
TRITON_ROOTS: tuple[str, ...] = ("triton",)

# Builtins a candidate may not call or even name.
DENIED_BUILTINS: dict[str, str] = {
    "eval": "dynamic code", "exec": "dynamic code", "compile": "dynamic code",
    "__import__": "dynamic imports", "open": "file I/O (kernels need none)",
    "globals": "namespace access", "locals": "namespace access", "vars": "namespace access",
    "setattr": "attribute patching", "delattr": "attribute patching",
    "breakpoint": "debugger", "memoryview": "raw memory",
    "__builtins__": "builtins manipulation", "__loader__": "import machinery",
    "__spec__": "import machinery",
    "getattr": "attribute access with a computed name (literal names are allowed)",
}

# Builtins that are harmless to shadow: flagged only when called and never bound by the module.
SHADOWABLE_BUILTINS: dict[str, str] = {"id": "address-keyed caching", "exit": "process exit",
                                       "quit": "process exit"}

# Dunder attributes a candidate may read; every other ``obj.__x__`` is forbidden
# (``__globals__``, ``__subclasses__``, ``__code__``, ``__class__``, ``__dict__`` ...).
ALLOWED_DUNDER_ATTRS: frozenset[str] = frozenset({"__name__", "__doc__", "__qualname__"})

# Dunder methods a candidate class may not define (lazy outputs, finalizers, module hooks).
DENIED_DUNDER_DEFS: frozenset[str] = frozenset({
    "__torch_function__", "__torch_dispatch__", "__del__", "__getattr__", "__getattribute__",
    "__setattr__", "__init_subclass__", "__class_getitem__", "__set_name__", "__reduce__",
    "__reduce_ex__", "__array__", "__array_ufunc__", "__dlpack__", "__cuda_array_interface__",
})

# Decorators that mark a Triton kernel (inside one, ``a @ b`` is tl.dot on blocks; a Gluon
# kernel runs on the GPU only, like any other Triton kernel).
TRITON_DECORATORS: frozenset[str] = frozenset({
    "triton.jit", "triton.autotune", "triton.heuristics", "triton.language.core.builtin",
    "triton.experimental.gluon.jit",
})

# Modules whose kernels only run on a CUDA GPU: the Triton interpreter cannot execute them,
# so a candidate importing one is answered ``needs_gpu`` on a machine without a GPU (it is
# allowed, with the same rules as any candidate, everywhere else). Gluon
# (``triton.experimental.gluon``: explicit layouts, shared memory, mbarriers, TMA, wgmma,
# warp specialization) is a first-class candidate language.
GPU_ONLY_MODULES: dict[str, str] = {
    "triton.experimental.gluon": "Gluon kernels (triton.experimental.gluon) compile for NVIDIA "
                                 "GPUs only; the Triton interpreter cannot run them",
}

# Limits that bound the check's own work.
MAX_SOURCE_BYTES = 400_000
