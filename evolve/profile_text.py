"""Text of the evaluator's profiling records (compile info per specialisation, one shape's
profile) for the agent's tools and `evolve show`; dicts as in `EvalResult.to_dict()`,
lines within 80 columns."""

from __future__ import annotations

from typing import Any

from evaluator import NCU_METRICS

def _n(x: Any, fmt: str = "{}") -> str:
    return "-" if x is None else fmt.format(x)


def compile_info_lines(items: list[dict[str, Any]]) -> list[str]:
    """A table: one row per specialisation, its constexpr arguments indented below."""
    if not items:
        return ["(no compiled specialisations recorded)"]
    out = [f"{'kernel':<24} {'regs':>5} {'spills':>6} {'smem KiB':>8} {'warps':>5} "
           f"{'stages':>6} {'compile s':>9}"]
    for c in items:
        smem = c.get("shared")
        comp = _n(c.get("compile_s"), "{:.2f}") + (" (cached)" if c.get("cache_hit") else "")
        out.append(f"{str(c.get('kernel'))[:24]:<24} {_n(c.get('registers')):>5} "
                   f"{_n(c.get('spills')):>6} "
                   f"{_n(smem / 1024 if smem is not None else None, '{:.1f}'):>8} "
                   f"{_n(c.get('num_warps')):>5} {_n(c.get('num_stages')):>6} {comp:>9}")
        if c.get("spec"):
            out.append(f"  {str(c['spec'])[:76]}")
        if c.get("ex2_in_flight") is not None:
            out.append(f"  {overlap_text(c['ex2_in_flight'], c.get('f2fp_in_flight'))}")
    return out


def overlap_text(n: int, cvt: int | None = None) -> str:
    """A specialisation's `ex2_in_flight` (and `f2fp_in_flight`; evaluator/sass.py) in words."""
    return f"exp2s issued while a wgmma group is in flight: {n}" + (
        " (overlap lost)" if n == 0 else "") + (f", conversions {cvt}" if cvt is not None else "")


def overlap_lines(items: list[dict[str, Any]]) -> list[str]:
    """The specialisations whose SASS was read for the wgmma overlap (with a profile)."""
    rows = [c for c in items if c.get("ex2_in_flight") is not None]
    if not rows:
        return []
    out = ["intra-warpgroup overlap in the SASS: exp2s issued while a wgmma group is in",
           "flight, per specialisation (0: ptxas retired the PV before the softmax), and",
           "conversions of P to 16 bits (cvt 0: all after the wait, the next wgmmas wait)"]
    for c in rows:
        n, cvt = c["ex2_in_flight"], c.get("f2fp_in_flight")
        out.append(f"  {str(c.get('kernel'))[:24]}: {n}" + (" (overlap lost)" if n == 0 else "")
                   + (f", cvt {cvt}" if cvt is not None else ""))
        if c.get("spec"):
            out.append(f"    {str(c['spec'])[:74]}")
    return out


def profile_lines(p: dict[str, Any]) -> list[str]:
    """One shape's profile: times, kernels, and what was not available."""
    out = [f"profile of shape {p.get('shape')}"]
    if p.get("tool"):
        out.append(f"measured with {p['tool']}")
    if not p.get("available"):
        out.append("not available: " + (p.get("note") or "no reason given"))
        return out
    out.append(f"time: {_n(p.get('ms'), '{:.4f}')} ms in this evaluation's timing "
               f"(L2 flushed)")
    out.append(f"      {_n(p.get('event_ms'), '{:.4f}')} ms median of the profile's "
               f"CUDA-event calls (warm L2)")
    if p.get("kernels"):
        out.append("GPU kernels per attention call (torch.profiler):")
        for k in p["kernels"]:
            out.append(f"  {str(k.get('name'))[:52]:<52} x{k.get('calls')} "
                       f"{_n(k.get('mean_us'), '{:.1f}'):>9} us")
    if p.get("counters"):
        out.append("Nsight Compute counters of one call (ncu replays each kernel: its time")
        out.append("is not the timing above):")
        for k in p["counters"]:
            out.append(f"  {str(k.get('name'))[:76]}")
            for metric, value in (k.get("metrics") or {}).items():
                label, unit = NCU_METRICS.get(metric, (metric, ""))
                out.append(f"    {label[:40]:<40} {_n(value, '{:.1f}'):>10} {unit}".rstrip())
    if p.get("note"):
        out.append("note: " + str(p["note"]))
    return out
