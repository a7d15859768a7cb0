"""Failure classes of an evaluation and the typed exception that carries one.

Every rejected evaluation names exactly one class. The classes, in the order the
pipeline meets them:

``syntax``           the file does not compile (``compile()`` in the parent)
``forbidden``        the static check or the runtime guard found a forbidden construct
                     (library attention, processes, file/network I/O, tampering ...)
``needs_gpu``        the candidate can only run on a CUDA GPU (a Gluon kernel) and this
                     machine has none: not a verdict on the kernel, evaluate it on a GPU
``import``           importing the candidate module raised
``compile``          a Triton kernel failed to compile on its first call
``runtime``          the candidate raised while running, or its process died
``cuda_fault``       a CUDA error (illegal address, misaligned access, launch failure)
``timeout``          the worker exceeded the wall-clock limit (hang, infinite loop)
``oom``              out of memory (CUDA or host)
``mismatch``         the output differs from the trusted reference beyond the tolerance
``nonfinite``        the output holds NaN or Inf
``contract``         wrong return type/shape/dtype/device, output aliases an input,
                     missing ``attention`` function
``unwritten``        output elements left unwritten (poisoned memory came back)
``mutation``         an input tensor was modified
``nondeterministic`` the same inputs twice gave different outputs
``timing_anomaly``   timing cross-checks failed (hidden streams/threads, thread count grew)
``implausible``      reported throughput beyond the physical bound of the card
``sandbox``          the isolation could not be set up
``internal``         an evaluator bug, never the candidate's fault
"""

from __future__ import annotations

FAILURE_CLASSES: dict[str, str] = {
    "syntax": "the file does not compile",
    "forbidden": "forbidden construct (static check or runtime guard)",
    "needs_gpu": "the candidate runs on a CUDA GPU only (Gluon); none here",
    "import": "importing the candidate raised",
    "compile": "a Triton kernel failed to compile",
    "runtime": "the candidate raised or its process died",
    "cuda_fault": "CUDA error (illegal address, launch failure)",
    "timeout": "wall-clock limit exceeded",
    "oom": "out of memory",
    "mismatch": "output differs from the reference beyond the tolerance",
    "nonfinite": "output holds NaN or Inf",
    "contract": "wrong return type, shape, dtype, device or aliasing",
    "unwritten": "output elements left unwritten",
    "mutation": "an input tensor was modified",
    "nondeterministic": "the same inputs gave different outputs",
    "timing_anomaly": "timing cross-checks failed",
    "implausible": "throughput beyond the physical bound of the card",
    "sandbox": "the isolation could not be set up",
    "internal": "evaluator bug (not the candidate's fault)",
}


class CandidateFailure(Exception):
    """Raised inside the evaluator when the candidate fails; carries the class."""

    def __init__(self, cls: str, message: str, shape: str | None = None, side: int | None = None):
        if cls not in FAILURE_CLASSES:
            raise ValueError(f"unknown failure class {cls!r}")
        super().__init__(f"{cls}: {message}")
        self.cls = cls
        self.message = message
        self.shape = shape
        self.side = side  # compare mode: 0 = challenger, 1 = champion


_CUDA_FAULT_MARKERS = (
    "illegal memory access", "illegal address", "misaligned address", "unspecified launch failure",
    "an illegal instruction", "cudaerrorillegaladdress", "device-side assert", "cuda error",
    "hardware exception", "invalid program counter",
)
_OOM_MARKERS = ("out of memory", "outofmemoryerror", "cuda_error_out_of_memory", "memoryerror",
                "cannot allocate memory")


def classify_text(text: str) -> str | None:
    """Map an error message or log tail to ``oom``/``cuda_fault``; None when neither shows."""
    low = text.lower()
    if any(m in low for m in _OOM_MARKERS):
        return "oom"
    if any(m in low for m in _CUDA_FAULT_MARKERS):
        return "cuda_fault"
    return None


def classify_exception(exc: BaseException, default: str = "runtime") -> str:
    """Failure class for an exception raised by candidate code."""
    name = type(exc).__name__
    mod = type(exc).__module__ or ""
    if name == "GuardViolation":
        return "forbidden"
    if isinstance(exc, MemoryError) or name == "OutOfMemoryError":
        return "oom"
    if mod.startswith("triton") and ("Compilation" in name or "CompileTimeAssertion" in name
                                     or "OutOfResources" in name):
        return "compile"
    return classify_text(f"{name}: {exc}") or default
